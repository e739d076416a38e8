// `--summary` of `infertap capture` and `infertap replay`: one JSON object per connection.
#pragma once

#include <cstdio>
#include <map>
#include <string>

#include "agent/capture/tracker.hpp"

namespace infertap {

class SummarySink : public StreamSink {
 public:
  void OnData(const ConnInfo&, Direction, uint64_t, std::span<const uint8_t>) override {}
  void OnGap(const ConnInfo&, Direction, uint64_t, uint64_t) override {}
  void OnClose(const ConnInfo& conn, uint64_t ts_ns) override;
  // Prints every connection seen, in connection-id order:
  // {"pid","fd","role","local","remote","bytes_in","bytes_out","gap_bytes","events"}.
  void Print(FILE* out) const;
  size_t size() const { return lines_.size(); }

 private:
  std::map<uint64_t, std::string> lines_;
};

std::string SummaryLine(const ConnInfo& conn);

}  // namespace infertap
