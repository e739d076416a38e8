// libFuzzer target: the exchange assembler over a scripted connection.
// Input: a sequence of operations [op][len lo][len hi][payload...]:
//   op % 6: 0 request bytes, 1 response bytes, 2 request gap, 3 response gap, 4 close (the
//   assembler is then reused as if for a new connection), 5 request+response bytes split at the
//   same payload. op / 6 advances the fake clock.
#include <cstdint>
#include <string>

#include "fuzz_input.hpp"
#include "parsers/exchange.hpp"

namespace {

struct Observer : infertap::ExchangeObserver {
  int in_flight = 0;
  void OnRequestReceived(const infertap::RequestRecord& r) override {
    if (r.method != "POST") __builtin_trap();  // only inference exchanges are reported
    ++in_flight;
  }
  void OnRecord(infertap::RequestRecord&& r) override {
    if (r.counted_in_flight) --in_flight;
    if (in_flight < 0) __builtin_trap();  // OnRecord without its OnRequestReceived
    if (r.target_model_name.size() > 256) __builtin_trap();
    std::string json = infertap::RecordToJson(r, 0);
    if (json.empty() || json.front() != '{' || json.back() != '}') __builtin_trap();
  }
  void OnIgnoredExchange() override {}
  void OnParseError(std::string_view) override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  infertap::fuzz::Input in(data, size);
  infertap::ExchangeConfig cfg;
  cfg.max_header_bytes = 2048;
  cfg.max_json_body_bytes = 4096;
  cfg.max_sse_event_bytes = 2048;
  cfg.max_pipelined = 8;
  cfg.extra_inference_paths = {"/generate"};
  Observer obs;
  infertap::ExchangeAssembler a(cfg, obs);
  uint64_t ts = 1;
  while (!in.empty()) {
    uint8_t op = in.Byte();
    ts += op / 6;
    size_t len = in.U16();
    switch (op % 6) {
      case 0:
        a.OnRequestBytes(ts, in.Take(len));
        break;
      case 1:
        a.OnResponseBytes(ts, in.Take(len));
        break;
      case 2:
        a.OnRequestGap(ts, len);
        break;
      case 3:
        a.OnResponseGap(ts, len);
        break;
      case 4:
        a.OnClose(ts);
        if (obs.in_flight != 0 || a.pending() != 0) __builtin_trap();  // close settles everything
        break;
      case 5: {
        auto bytes = in.Take(len);
        a.OnRequestBytes(ts, bytes.first(bytes.size() / 2));
        a.OnResponseBytes(ts, bytes.subspan(bytes.size() / 2));
        break;
      }
    }
    if (a.pending() > cfg.max_pipelined) __builtin_trap();
  }
  a.OnClose(ts + 1);
  if (obs.in_flight != 0) __builtin_trap();
  return 0;
}
