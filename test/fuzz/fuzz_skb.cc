// libFuzzer target: the cgroup backend's record decoder and packet reassembly
// (agent/capture/skb_events.hpp, skb_flows.hpp → agent/replay/tcp_flows.hpp). The input is a
// sequence of ring records, each framed as [u16 length, little-endian][length bytes], fed to
// SkbFlows as the agent does, with its periodic Flush at the newest record time every 16
// records. Invariants: no more payload bytes come out than went in, every opened connection is
// closed at the end, and nothing is left tracked.
#include <cstdint>
#include <cstring>
#include <set>

#include "agent/capture/skb_flows.hpp"

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
  Sink sink;
  infertap::SinkConsumers consumers(sink);
  infertap::pcap::FlowOptions opt = infertap::LiveFlowOptions();
  opt.max_flows = 64;  // keep the fuzzer's memory small; the cap itself is exercised
  infertap::SkbFlows flows(consumers, opt);
  uint64_t newest = 0, records = 0;
  size_t at = 0;
  while (at + 2 <= size) {
    const size_t len = size_t(data[at]) | size_t(data[at + 1]) << 8;
    at += 2;
    const size_t n = len < size - at ? len : size - at;
    flows.OnEvent(std::span<const uint8_t>(data + at, n));
    if (n >= 24) {
      uint64_t ts;
      std::memcpy(&ts, data + at + 16, sizeof(ts));  // it_skb_event.ts_ns
      if (ts > newest && ts < (uint64_t(1) << 62)) newest = ts;
    }
    at += n;
    if (++records % 16 == 0) flows.Flush(newest);
  }
  flows.FinishAll(newest);
  if (sink.data > size) __builtin_trap();  // payload out of nothing
  if (flows.connections() != 0) __builtin_trap();
  if (!sink.open.empty()) __builtin_trap();  // a connection never closed
  return 0;
}
