// libFuzzer target: the capture-event decoder. Arbitrary bytes as an `infertap capture` file
// (agent/capture/capture_file.hpp) read by CaptureReader, every record decoded by the
// ConnectionTracker (bounds checks of bpf/infertap_abi.h events, reassembly, gaps), as
// `infertap replay FILE.cap` does. Invariants: no more payload bytes come out than went in, every
// opened connection is closed at the end, and nothing is left tracked.
#include <cstdint>
#include <memory>
#include <set>

#include "agent/capture/capture_file.hpp"
#include "agent/capture/tracker.hpp"
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
  infertap::Status status;
  std::unique_ptr<infertap::CaptureReader> reader =
      infertap::CaptureReader::Open(file.path(), &status);
  if (!reader) return 0;  // not a capture file: a one-line error in `infertap replay`
  Sink sink;
  infertap::TrackerOptions opt;
  opt.max_connections = 64;  // keep the fuzzer's memory small; the cap itself is exercised
  infertap::ConnectionTracker tracker(sink, opt);
  for (int polls = 0; polls < 100000; ++polls) {
    infertap::PollResult r = reader->Poll(tracker, 0);
    tracker.Flush(tracker.newest_ts_ns());
    if (!r.status || r.at_end) break;
  }
  tracker.FinishAll(tracker.newest_ts_ns());
  if (sink.data > size) __builtin_trap();  // payload out of nothing
  if (tracker.connections() != 0) __builtin_trap();
  if (!sink.open.empty()) __builtin_trap();  // a connection never closed
  return 0;
}
