// libFuzzer target: the pcap/pcapng reader (agent/replay/pcap_replay.hpp): arbitrary bytes as a
// packet capture, through libpcap, link-layer/IP/TCP decoding and TCP reassembly, as
// `infertap replay FILE.pcap` does. Invariants: no more payload bytes come out than went in, and
// every connection opened is closed when Replay returns (also after a corrupt record).
#include <cstdint>
#include <set>

#include "agent/replay/pcap_replay.hpp"
#include "fuzz_memfile.hpp"

namespace {

struct Sink : infertap::StreamSink {
  uint64_t data = 0;
  std::set<uint64_t> open;
  void OnOpen(const infertap::ConnInfo& c) override { open.insert(c.conn_id); }
  void OnData(const infertap::ConnInfo& c, infertap::Direction, uint64_t,
              std::span<const uint8_t> b) override {
    data += b.size();
    open.insert(c.conn_id);
  }
  void OnGap(const infertap::ConnInfo& c, infertap::Direction, uint64_t, uint64_t) override {
    open.insert(c.conn_id);
  }
  void OnClose(const infertap::ConnInfo& c, uint64_t) override { open.erase(c.conn_id); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  infertap::fuzz::MemFile file(data, size);
  if (!file.ok()) return 0;
  Sink sink;
  infertap::PcapReplay replay;
  infertap::PcapStats stats;
  (void)replay.Replay(file.path(), {}, sink, &stats);  // errors are expected; crashes are not
  if (sink.data > size) __builtin_trap();
  if (!sink.open.empty()) __builtin_trap();
  return 0;
}
