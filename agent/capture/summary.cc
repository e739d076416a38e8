#include "agent/capture/summary.hpp"

#include <nlohmann/json.hpp>

namespace infertap {

std::string SummaryLine(const ConnInfo& c) {
  nlohmann::ordered_json j;
  j["pid"] = c.tgid;
  j["fd"] = c.fd;
  j["role"] = std::string(RoleName(c.role));
  j["local"] = c.addresses_known ? c.local.ToString() : "";
  j["remote"] = c.addresses_known ? c.remote.ToString() : "";
  j["bytes_in"] = c.counters.bytes_in;
  j["bytes_out"] = c.counters.bytes_out;
  j["gap_bytes"] = c.counters.gap_bytes;
  j["events"] = c.counters.events;
  j["conn_id"] = c.conn_id;
  return j.dump();
}

void SummarySink::OnClose(const ConnInfo& conn, uint64_t) {
  lines_[conn.conn_id] = SummaryLine(conn);
}

void SummarySink::Print(FILE* out) const {
  for (const auto& [id, line] : lines_) std::fprintf(out, "%s\n", line.c_str());
  std::fflush(out);
}

}  // namespace infertap
