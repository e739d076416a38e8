// The accuracy property (docs/testing.md#accuracy): randomized capture event streams,
// driven through the real ConnectionTracker → Pipeline → ExchangeAssembler → Metrics registry,
// the same code path as live. The generator knows the truth of every exchange.
//
// Streams: keep-alive connections with many exchanges, every segmentation (each syscall's bytes
// split anywhere into several events), pipelining clients, client aborts (close mid-exchange),
// early responses (a 401/400 written after the request headers, before the body has arrived,
// sometimes finished first), requests without `model`, streaming and non-streaming, embeddings,
// mid-stream errors, 4xx/5xx, and ring events dropped at random in either direction (a lost
// event is a contiguous byte range missing from one direction; close events may be lost too).
//
// Invariants checked for every case:
//  1. Every record belongs to one generated exchange (by its start time) and at most one record
//     per exchange.
//  2. No record is ever wrong: it is EXACT (every field equals the truth) or INCOMPLETE. An
//     Incomplete record has error_code Incomplete, or the exchange's own true error, and claims
//     nothing of another exchange: method/path/start equal the truth; status is 0 or the true
//     status (and then `stream` is the true one); request_bytes, response_bytes and chunks are at
//     most the true ones; tokens are absent or the true ones; target_model_name is "" or the true
//     one; first_token_ns is absent or not earlier than the true one.
//  3. With no event dropped, every exchange the client did not abort has an exact record.
//  4. For every model pair, sums over the records equal the metric families of the registry:
//     request_total, error_total by code, request/response size count and sum, input/output
//     token count and sum (recording rules of docs/metrics.md#seed-metrics); running_requests
//     ends at 0 and never has a series for the empty model; requests_incomplete_total counts the
//     rest.
//  5. No connection leaks: after the idle reconciliation, tracker and pipeline track nothing.
//
// Premise the generator respects (docs/parsing.md#pairing-and-loss): a pipelining client pipelines
// from its first exchanges, and those are never lost, so the connection is known to pipeline before
// any request-direction gap. (No byte count or timestamp can bound how many requests a gap hid from
// a client that pipelines; the assembler then keeps the connection in doubt.)
//
// Reproduce a failure: INFERTAP_PROPERTY_SEED=<seed printed> INFERTAP_PROPERTY_CASES=1.
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "agent/capture/tracker.hpp"
#include "agent/metrics/metrics.hpp"
#include "agent/pipeline/pipeline.hpp"
#include "test/unit/agent/event_builder.hpp"

namespace infertap {
namespace {

using Rng = std::mt19937_64;

uint64_t Pick(Rng& rng, uint64_t n) { return rng() % n; }
bool Chance(Rng& rng, int percent) { return int(Pick(rng, 100)) < percent; }

struct Truth {
  std::string path;
  int status = 0;
  bool stream = false;
  ErrorCode error = ErrorCode::kNone;
  uint64_t request_bytes = 0, response_bytes = 0;
  std::optional<uint64_t> input_tokens, output_tokens;
  std::string target;
  uint32_t chunks = 0;
  int start_ev = -1, end_ev = -1, first_token_ev = -1;  // into the case's event list
  uint64_t start_ns = 0, end_ns = 0;
  std::optional<uint64_t> first_token_ns;
  bool aborted = false;  // the client closed the connection before the exchange completed
  bool touched = false;  // one of its events was dropped
};

// One capture event before time assignment. `t` orders the events of one connection causally;
// connections are merged by it.
struct Ev {
  uint64_t conn = 0;
  int kind = 0;  // 0 data, 1 open, 2 close
  Direction dir = Direction::kIngress;
  std::string bytes;
  uint64_t pos = 0;
  uint64_t in_total = 0, out_total = 0;  // close: the stream positions the kernel saw
  double t = 0;
  bool protect = false;
  int truth = -1;
  uint64_t ts = 0;
};

// The wire of one exchange (vLLM's formats, docs/wire-formats.md).
struct Wire {
  std::string request;
  size_t header_len = 0;
  std::vector<std::string> writes;  // response syscalls, in order
  int first_token_write = -1;
  size_t first_token_last_byte = 0;  // offset, in that write, of the byte completing the event
  bool early_ok = false;             // may be answered before the body arrives
  Truth truth;
};

std::string Filler(Rng& rng, size_t max) {
  std::string s(Pick(rng, max + 1), 'a');
  for (char& c : s) c = char('a' + Pick(rng, 26));
  return s;
}

std::string ChunkOf(const std::string& data) {
  char size[16];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  return size + data + "\r\n";
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    default:
      return "Service Unavailable";
  }
}

Wire MakeExchange(Rng& rng) {
  Wire w;
  Truth& t = w.truth;
  const int kind = int(Pick(rng, 3));  // 0 chat stream, 1 chat, 2 embeddings
  const bool has_model = !Chance(rng, 25);
  const std::string model = "m" + std::to_string(Pick(rng, 3));
  const std::string served = has_model ? model : "served-" + std::to_string(Pick(rng, 2));
  static const int kErrors[] = {400, 401, 404, 429, 500, 503};
  t.status = Chance(rng, 70) ? 200 : kErrors[Pick(rng, 6)];
  t.path = kind == 2 ? "/v1/embeddings" : "/v1/chat/completions";
  std::string body = "{";
  if (has_model) body += "\"model\":\"" + model + "\",";
  if (kind == 2) {
    body += "\"input\":\"" + Filler(rng, 300) + "\"}";
  } else {
    body += "\"messages\":[{\"role\":\"user\",\"content\":\"" + Filler(rng, 300) + "\"}]";
    body += kind == 0 ? ",\"stream\":true}" : "}";
  }
  w.request = "POST " + t.path + " HTTP/1.1\r\nhost: sim\r\ncontent-type: application/json\r\n" +
              "content-length: " + std::to_string(body.size()) + "\r\n\r\n";
  w.header_len = w.request.size();
  w.request += body;
  t.request_bytes = body.size();
  t.target = has_model ? model : (t.status == 200 ? served : "");

  if (t.status != 200) {
    std::string eb = t.status == 401
                         ? R"({"error":"Unauthorized"})"
                         : R"({"error":{"message":"no","type":"E","param":null,"code":)" +
                               std::to_string(t.status) + "}}";
    std::string head =
        "HTTP/1.1 " + std::to_string(t.status) + " " + Reason(t.status) +
        "\r\ncontent-type: application/json\r\ncontent-length: " + std::to_string(eb.size()) +
        "\r\n\r\n";
    if (Chance(rng, 50)) {
      w.writes = {head + eb};
    } else {
      w.writes = {head, eb};
    }
    t.error = ErrorCodeForStatus(t.status);
    t.response_bytes = eb.size();
    w.early_ok = t.status == 401 || t.status == 400;
    return w;
  }
  const uint64_t prompt = 1 + Pick(rng, 500);
  if (kind != 0) {
    std::string rb;
    if (kind == 2) {
      rb =
          R"({"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,0.25]}],"model":")" +
          served + R"(","usage":{"prompt_tokens":)" + std::to_string(prompt) +
          R"(,"total_tokens":)" + std::to_string(prompt) + R"(,"completion_tokens":0}})";
      t.output_tokens = 0;
    } else {
      const uint64_t completion = 1 + Pick(rng, 300);
      rb = R"({"id":"c","object":"chat.completion","model":")" + served +
           R"(","choices":[{"index":0,"message":{"role":"assistant","content":")" +
           Filler(rng, 200) + R"("},"finish_reason":"stop"}],"usage":{"prompt_tokens":)" +
           std::to_string(prompt) + R"(,"completion_tokens":)" + std::to_string(completion) +
           R"(,"total_tokens":)" + std::to_string(prompt + completion) + "}}";
      t.output_tokens = completion;
    }
    t.input_tokens = prompt;
    std::string head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " +
                       std::to_string(rb.size()) + "\r\n\r\n";
    w.writes = {head + rb};
    t.response_bytes = rb.size();
    return w;
  }
  // A vLLM stream: headers before prefill, one SSE event per chunk.
  t.stream = true;
  w.writes.push_back(
      "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
      "transfer-encoding: chunked\r\n\r\n");
  auto event = [&](const std::string& json) {
    std::string data = "data: " + json + "\n\n";
    t.response_bytes += data.size();
    w.writes.push_back(ChunkOf(data));
    return data.size();
  };
  const std::string pre =
      R"({"id":"c","object":"chat.completion.chunk","model":")" + served + "\",";
  event(pre + R"("choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})");
  const uint32_t tokens = 1 + uint32_t(Pick(rng, 8));
  const bool mid_error = Chance(rng, 10);
  const uint32_t error_after = mid_error ? uint32_t(Pick(rng, tokens + 1)) : tokens;
  for (uint32_t i = 0; i < error_after; ++i) {
    size_t n = event(pre + R"("choices":[{"index":0,"delta":{"content":"tok"}}]})");
    if (w.first_token_write < 0) {
      w.first_token_write = int(w.writes.size() - 1);
      char size[16];
      w.first_token_last_byte = size_t(std::snprintf(size, sizeof(size), "%zx\r\n", n)) + n - 1;
    }
    ++t.chunks;
  }
  if (mid_error) {
    event(R"({"error": {"message": "boom", "type": "InternalServerError", "code": 500}})");
    t.error = ErrorCode::kModelServerError;
  } else {
    event(pre + R"("choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})");
    if (Chance(rng, 80)) {
      event(pre + R"("choices":[],"usage":{"prompt_tokens":)" + std::to_string(prompt) +
            R"(,"completion_tokens":)" + std::to_string(tokens) + R"(,"total_tokens":)" +
            std::to_string(prompt + tokens) + "}}");
      t.input_tokens = prompt;
      t.output_tokens = tokens;
    }
  }
  {
    std::string data = "data: [DONE]\n\n";
    t.response_bytes += data.size();
    w.writes.push_back(ChunkOf(data));
  }
  w.writes.push_back("0\r\n\r\n");
  return w;
}

class CaseBuilder {
 public:
  explicit CaseBuilder(Rng& rng) : rng_(rng) {}
  std::vector<Ev> events;
  std::vector<Truth> truths;

  void Connection(uint64_t conn, double t0) {
    conn_ = conn;
    t_ = t0;
    pos_[0] = pos_[1] = 0;
    Ev open;
    open.conn = conn;
    open.kind = 1;
    open.t = Tick();
    open.protect = true;
    events.push_back(open);
    const bool pipelining = Chance(rng_, 25);
    const int n = 1 + int(Pick(rng_, 8));
    const bool abort_last = Chance(rng_, 12);
    for (int k = 0; k < n;) {
      const int depth = pipelining ? std::min(n - k, 2 + int(Pick(rng_, 2))) : 1;
      // The first pipelined burst is never lost (the premise above).
      const bool protect = pipelining && k == 0;
      const bool last = k + depth == n;
      Burst(depth, protect, last && abort_last);
      k += depth;
    }
    Ev close;
    close.conn = conn;
    close.kind = 2;
    close.t = Tick();
    close.in_total = pos_[0];
    close.out_total = pos_[1];
    events.push_back(close);
  }

 private:
  double Tick() { return t_ += 1.0 + double(Pick(rng_, 4)); }

  // Splits one syscall's bytes into 1..3 events (ring events: any split) and returns the index
  // of the event that carries byte `mark` of it (or of the last byte).
  int Emit(Direction d, const std::string& bytes, int truth, bool protect,
           size_t mark = ~size_t(0)) {
    std::vector<size_t> cuts = {0, bytes.size()};
    for (uint64_t i = Pick(rng_, 3); i > 0 && bytes.size() > 1; --i)
      cuts.push_back(1 + Pick(rng_, bytes.size() - 1));
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    if (mark == ~size_t(0)) mark = bytes.size() - 1;
    int marked = -1;
    const double t = Tick();
    for (size_t i = 0; i + 1 < cuts.size(); ++i) {
      Ev e;
      e.conn = conn_;
      e.dir = d;
      e.bytes = bytes.substr(cuts[i], cuts[i + 1] - cuts[i]);
      e.pos = pos_[int(d)];
      pos_[int(d)] += e.bytes.size();
      e.t = t + double(i) * 0.01;  // pieces of one syscall
      e.protect = protect;
      e.truth = truth;
      if (mark >= cuts[i] && mark < cuts[i + 1]) marked = int(events.size());
      events.push_back(std::move(e));
    }
    return marked;
  }

  // A request as 1..3 syscalls, each split further by Emit. Returns the first event's index.
  int EmitRequest(const std::string& req, size_t from, size_t to, int truth, bool protect) {
    int first = -1;
    size_t at = from;
    while (at < to) {
      size_t n = to - at;
      if (n > 1 && Chance(rng_, 50)) n = 1 + Pick(rng_, n - 1);
      int i = Emit(Direction::kIngress, req.substr(at, n), truth, protect, 0);
      if (first < 0) first = i;
      at += n;
    }
    return first;
  }

  int EmitResponse(const Wire& w, size_t from, int truth, bool protect) {
    int last = -1;
    for (size_t i = from; i < w.writes.size(); ++i) {
      size_t mark = int(i) == w.first_token_write ? w.first_token_last_byte : ~size_t(0);
      int e = Emit(Direction::kEgress, w.writes[i], truth, protect, mark);
      if (int(i) == w.first_token_write) truths[truth].first_token_ev = e;
      last = e;
    }
    return last;
  }

  void Burst(int depth, bool protect, bool abort) {
    std::vector<Wire> wires;
    std::vector<int> ids;
    const size_t first_event = events.size();
    for (int i = 0; i < depth; ++i) {
      wires.push_back(MakeExchange(rng_));
      ids.push_back(int(truths.size()));
      truths.push_back(wires.back().truth);
    }
    if (depth == 1 && wires[0].early_ok && Chance(rng_, 50)) {
      // Early response: headers (and maybe part of the body) first, then the response and the
      // rest of the body interleaved; the response may finish first.
      Wire& w = wires[0];
      Truth& t = truths[ids[0]];
      size_t split = w.header_len + Pick(rng_, w.request.size() - w.header_len);
      t.start_ev = EmitRequest(w.request, 0, split, ids[0], protect);
      size_t at = split, wi = 0;
      while (at < w.request.size() || wi < w.writes.size()) {
        if (wi < w.writes.size() && (at == w.request.size() || Chance(rng_, 50))) {
          t.end_ev = Emit(Direction::kEgress, w.writes[wi++], ids[0], protect);
        } else {
          size_t n = 1 + Pick(rng_, w.request.size() - at);
          Emit(Direction::kIngress, w.request.substr(at, n), ids[0], protect, 0);
          at += n;
        }
      }
    } else {
      for (int i = 0; i < depth; ++i)
        truths[ids[i]].start_ev =
            EmitRequest(wires[i].request, 0, wires[i].request.size(), ids[i], protect);
      for (int i = 0; i < depth; ++i)
        truths[ids[i]].end_ev = EmitResponse(wires[i], 0, ids[i], protect);
    }
    if (abort) {
      // The client closes the connection somewhere inside the burst's last exchange.
      size_t begin = first_event;
      while (begin < events.size() && events[begin].truth != ids.back()) ++begin;
      const size_t keep = begin + 1 + Pick(rng_, events.size() - begin);
      if (keep < events.size()) {
        for (size_t i = keep; i < events.size(); ++i) {
          if (events[i].kind == 0) pos_[int(events[i].dir)] -= events[i].bytes.size();
          // Every exchange of the burst that lost an event to the close is aborted (pipelined
          // ones lose their responses).
          if (events[i].truth >= 0) truths[size_t(events[i].truth)].aborted = true;
        }
        // Positions were assigned in emission order per direction, so cutting a suffix of the
        // event list keeps each direction a prefix.
        events.resize(keep);
        for (int id : ids) {
          Truth& t = truths[size_t(id)];
          if (t.first_token_ev >= int(keep)) t.first_token_ev = -2;
          if (t.end_ev >= int(keep)) t.end_ev = -1;
        }
      }
    }
  }

  Rng& rng_;
  uint64_t conn_ = 0;
  double t_ = 0;
  uint64_t pos_[2] = {0, 0};
};

struct Collector : RecordListener {
  std::vector<RequestRecord> records;
  void OnRecord(const RequestRecord& r) override { records.push_back(r); }
};

std::string Describe(const RequestRecord& r) {
  std::ostringstream o;
  o << "start=" << r.start_ns << " end=" << r.end_ns << " " << r.path << " status=" << r.status
    << " stream=" << r.stream << " err=" << ErrorCodeName(r.error) << " req=" << r.request_bytes
    << " resp=" << r.response_bytes
    << " in=" << (r.input_tokens ? std::to_string(*r.input_tokens) : "-")
    << " out=" << (r.output_tokens ? std::to_string(*r.output_tokens) : "-")
    << " target=" << r.target_model_name << " chunks=" << r.chunks
    << " ttft=" << (r.first_token_ns ? std::to_string(*r.first_token_ns) : "-")
    << " rc=" << r.request_complete << " pc=" << r.response_complete
    << " cif=" << r.counted_in_flight;
  return o.str();
}

std::string Describe(const Truth& t) {
  std::ostringstream o;
  o << "start=" << t.start_ns << " end=" << t.end_ns << " " << t.path << " status=" << t.status
    << " stream=" << t.stream << " err=" << ErrorCodeName(t.error) << " req=" << t.request_bytes
    << " resp=" << t.response_bytes
    << " in=" << (t.input_tokens ? std::to_string(*t.input_tokens) : "-")
    << " out=" << (t.output_tokens ? std::to_string(*t.output_tokens) : "-")
    << " target=" << t.target << " chunks=" << t.chunks
    << " ttft=" << (t.first_token_ns ? std::to_string(*t.first_token_ns) : "-")
    << (t.aborted ? " ABORTED" : "") << (t.touched ? " TOUCHED" : "");
  return o.str();
}

bool Exact(const RequestRecord& r, const Truth& t) {
  return r.method == "POST" && r.path == t.path && r.status == t.status && r.stream == t.stream &&
         r.error == t.error && r.request_bytes == t.request_bytes &&
         r.response_bytes == t.response_bytes && r.input_tokens == t.input_tokens &&
         r.output_tokens == t.output_tokens && r.target_model_name == t.target &&
         r.model_name == t.target && r.chunks == t.chunks && r.start_ns == t.start_ns &&
         r.end_ns == t.end_ns && r.first_token_ns == t.first_token_ns && r.request_complete &&
         r.response_complete;
}

// What an Incomplete record may claim (see the file comment). Empty when it is acceptable.
std::string IncompleteViolation(const RequestRecord& r, const Truth& t) {
  if (r.error != ErrorCode::kIncomplete && !(t.error != ErrorCode::kNone && r.error == t.error))
    return "error code is neither Incomplete nor the exchange's own";
  if (r.request_complete && r.response_complete && r.error != ErrorCode::kIncomplete)
    return "a complete-looking record that is not exact";
  if (r.method != "POST" || r.path != t.path) return "method/path";
  if (r.status != 0 && r.status != t.status) return "status of another exchange";
  if (r.status != 0 && r.stream != t.stream) return "stream flag";
  if (r.status == 0 && (r.stream || r.response_bytes || r.chunks))
    return "response data without a status";
  if (r.request_bytes > t.request_bytes) return "request bytes";
  if (r.response_bytes > t.response_bytes) return "response bytes";
  if (r.chunks > t.chunks) return "chunks";
  if (r.input_tokens && r.input_tokens != t.input_tokens) return "input tokens";
  if (r.output_tokens && r.output_tokens != t.output_tokens) return "output tokens";
  if (!r.target_model_name.empty() && r.target_model_name != t.target) return "target model";
  if (r.model_name != r.target_model_name) return "model name";
  if (r.first_token_ns && (!t.first_token_ns || *r.first_token_ns < *t.first_token_ns))
    return "first token time";
  return "";
}

struct PairSums {
  double request_total = 0, req_count = 0, req_sum = 0, resp_count = 0, resp_sum = 0;
  double in_count = 0, in_sum = 0, out_count = 0, out_sum = 0;
  std::map<std::string, double> errors;
  bool operator==(const PairSums&) const = default;
};

std::string Describe(const PairSums& s) {
  std::ostringstream o;
  o << "total=" << s.request_total << " req=" << s.req_count << "/" << s.req_sum
    << " resp=" << s.resp_count << "/" << s.resp_sum << " in=" << s.in_count << "/" << s.in_sum
    << " out=" << s.out_count << "/" << s.out_sum << " errors={";
  for (const auto& [k, v] : s.errors) o << k << ":" << v << " ";
  return o.str() + "}";
}

using PairKey = std::pair<std::string, std::string>;

std::string Label(const prometheus::ClientMetric& m, const std::string& name) {
  for (const auto& l : m.label)
    if (l.name == name) return l.value;
  return "";
}

struct CaseResult {
  std::string failure;  // empty: passed
  size_t exchanges = 0, exact = 0, incomplete = 0, untouched_sequential = 0, untouched_exact = 0;
  bool dropped_any = false;
};

CaseResult RunCase(uint64_t seed) {
  CaseResult res;
  Rng rng(seed);
  CaseBuilder b(rng);
  const int conns = 1 + int(Pick(rng, 3));
  for (int c = 0; c < conns; ++c) b.Connection(uint64_t(c + 1), double(Pick(rng, 50)));
  static const int kDropPercent[] = {0, 0, 2, 5, 12, 30};
  const int drop = kDropPercent[Pick(rng, 6)];
  const bool drop_closes = Chance(rng, 30);

  // Merge the connections by causal time, then assign kernel timestamps.
  std::vector<size_t> order(b.events.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return b.events[x].t < b.events[y].t; });
  uint64_t ts = 1'000'000'000'000ull;
  std::vector<bool> dropped(b.events.size(), false);
  for (size_t i : order) {
    ts += 1000 + Pick(rng, 1000);
    Ev& e = b.events[i];
    e.ts = ts;
    if (e.kind == 0 && !e.protect && Chance(rng, drop)) dropped[i] = true;
    if (e.kind == 2 && drop_closes && drop > 0 && Chance(rng, 50)) dropped[i] = true;
    if (dropped[i] && e.truth >= 0) b.truths[size_t(e.truth)].touched = true;
    if (dropped[i]) res.dropped_any = true;
  }
  for (Truth& t : b.truths) {
    t.start_ns = t.start_ev >= 0 ? b.events[size_t(t.start_ev)].ts : 0;
    t.end_ns = t.end_ev >= 0 ? b.events[size_t(t.end_ev)].ts : 0;
    if (t.first_token_ev >= 0) t.first_token_ns = b.events[size_t(t.first_token_ev)].ts;
    if (t.first_token_ev == -2) t.first_token_ns = std::nullopt;
  }

  Metrics metrics;
  PipelineOptions popts;
  Pipeline pipeline(popts, &metrics);
  pipeline.SetEndpoints({EndpointAttribution{Endpoint{}, "pool", "", ""}});
  Collector collector;
  pipeline.AddListener(&collector);
  ConnectionTracker tracker(pipeline);
  for (size_t i : order) {
    if (dropped[i]) continue;
    const Ev& e = b.events[i];
    const uint32_t fd = uint32_t(10 + e.conn);
    if (e.kind == 1) {
      tracker.OnEvent(testing::ConnEvent(IT_EV_OPEN, e.conn, e.ts, 0, 0, fd));
    } else if (e.kind == 2) {
      tracker.OnEvent(testing::ConnEvent(IT_EV_CLOSE, e.conn, e.ts, e.in_total, e.out_total, fd));
    } else {
      tracker.OnEvent(testing::DataEvent(e.conn, e.dir, e.pos, e.bytes, e.ts, 0, fd));
    }
    tracker.Flush(e.ts);
  }
  // Connections whose close event was lost end at the idle reconciliation.
  tracker.Flush(ts + 400'000'000'000ull);

  std::ostringstream fail;
  if (tracker.connections() != 0 || pipeline.connections() != 0)
    fail << "leak: tracker " << tracker.connections() << " pipeline " << pipeline.connections()
         << "\n";

  // 1-3: records against the truth.
  std::map<uint64_t, size_t> by_start;
  for (size_t i = 0; i < b.truths.size(); ++i) by_start[b.truths[i].start_ns] = i;
  std::vector<int> seen(b.truths.size(), 0);
  for (const RequestRecord& r : collector.records) {
    auto it = by_start.find(r.start_ns);
    if (it == by_start.end() || r.start_ns == 0) {
      fail << "record of no exchange: " << Describe(r) << "\n";
      continue;
    }
    const Truth& t = b.truths[it->second];
    if (++seen[it->second] > 1) fail << "two records for one exchange: " << Describe(r) << "\n";
    if (Exact(r, t)) {
      if (t.aborted) fail << "an aborted exchange recorded as complete: " << Describe(r) << "\n";
      ++res.exact;
      continue;
    }
    ++res.incomplete;
    std::string why = IncompleteViolation(r, t);
    if (!why.empty())
      fail << "WRONG record (" << why << "):\n  record " << Describe(r) << "\n  truth  "
           << Describe(t) << "\n";
    else if (!res.dropped_any && !t.aborted)
      fail << "not exact without any loss:\n  record " << Describe(r) << "\n  truth  "
           << Describe(t) << "\n";
  }
  res.exchanges = b.truths.size();
  if (!res.dropped_any) {
    for (size_t i = 0; i < b.truths.size(); ++i)
      if (!seen[i] && !b.truths[i].aborted)
        fail << "no record without any loss: " << Describe(b.truths[i]) << "\n";
  }
  for (size_t i = 0; i < b.truths.size(); ++i) {
    if (b.truths[i].touched || b.truths[i].aborted) continue;
    ++res.untouched_sequential;
    for (const RequestRecord& r : collector.records)
      if (r.start_ns == b.truths[i].start_ns && Exact(r, b.truths[i])) ++res.untouched_exact;
  }

  // 4: the registry against sums over the records, by the recording rules.
  std::map<PairKey, PairSums> want;
  double incomplete_requests = 0;
  for (const RequestRecord& r : collector.records) {
    if (!r.counted_in_flight && !r.request_complete && r.status == 0) {
      ++incomplete_requests;
      continue;
    }
    PairSums& s = want[{r.model_name, r.target_model_name}];
    ++s.request_total;
    ++s.req_count;
    s.req_sum += double(r.request_bytes);
    if (r.status != 0) {
      ++s.resp_count;
      s.resp_sum += double(r.response_bytes);
    }
    if (r.error != ErrorCode::kNone) ++s.errors[std::string(ErrorCodeName(r.error))];
    if (r.input_tokens && *r.input_tokens > 0) {
      ++s.in_count;
      s.in_sum += double(*r.input_tokens);
    }
    if (r.output_tokens && *r.output_tokens > 0) {
      ++s.out_count;
      s.out_sum += double(*r.output_tokens);
    }
  }
  std::map<PairKey, PairSums> got;
  double got_incomplete = 0;
  for (const auto& fam : metrics.registry()->Collect()) {
    for (const auto& m : fam.metric) {
      PairKey key{Label(m, "model_name"), Label(m, "target_model_name")};
      const auto& h = m.histogram;
      if (fam.name == "inference_model_request_total") {
        got[key].request_total += m.counter.value;
      } else if (fam.name == "inference_model_request_error_total") {
        if (m.counter.value != 0) got[key].errors[Label(m, "error_code")] += m.counter.value;
      } else if (fam.name == "inference_model_request_sizes") {
        got[key].req_count += double(h.sample_count);
        got[key].req_sum += h.sample_sum;
      } else if (fam.name == "inference_model_response_sizes") {
        got[key].resp_count += double(h.sample_count);
        got[key].resp_sum += h.sample_sum;
      } else if (fam.name == "inference_model_input_tokens") {
        got[key].in_count += double(h.sample_count);
        got[key].in_sum += h.sample_sum;
      } else if (fam.name == "inference_model_output_tokens") {
        got[key].out_count += double(h.sample_count);
        got[key].out_sum += h.sample_sum;
      } else if (fam.name == "inference_model_running_requests") {
        if (m.gauge.value != 0)
          fail << "running_requests " << key.first << " = " << m.gauge.value << "\n";
        if (key.first.empty()) fail << "running_requests has a series for the empty model\n";
      } else if (fam.name == "infertap_requests_incomplete_total") {
        got_incomplete += m.counter.value;
      }
    }
  }
  for (auto it = got.begin(); it != got.end();) {
    if (it->second == PairSums{}) {
      it = got.erase(it);
    } else {
      ++it;
    }
  }
  if (want != got) {
    fail << "metrics disagree with the records:\n";
    for (const auto& [k, s] : want)
      fail << "  records (" << k.first << "," << k.second << ") " << Describe(s) << "\n";
    for (const auto& [k, s] : got)
      fail << "  metrics (" << k.first << "," << k.second << ") " << Describe(s) << "\n";
  }
  if (got_incomplete != incomplete_requests)
    fail << "requests_incomplete_total " << got_incomplete << " != " << incomplete_requests << "\n";

  res.failure = fail.str();
  if (!res.failure.empty()) {
    std::ostringstream o;
    o << res.failure << "truths:\n";
    for (const Truth& t : b.truths) o << "  " << Describe(t) << "\n";
    o << "records:\n";
    for (const RequestRecord& r : collector.records) o << "  " << Describe(r) << "\n";
    o << "events (conn dir pos len ts dropped):\n";
    for (size_t i : order) {
      const Ev& e = b.events[i];
      o << "  c" << e.conn << " "
        << (e.kind == 1                    ? "open"
            : e.kind == 2                  ? "close"
            : e.dir == Direction::kIngress ? "req "
                                           : "resp")
        << " " << e.pos << " " << e.bytes.size() << " " << e.ts << (dropped[i] ? " DROPPED" : "")
        << " truth=" << e.truth << "\n";
    }
    res.failure = o.str();
  }
  return res;
}

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 10) : fallback;
}

TEST(AccuracyProperty, NoRecordIsEverWrongAndMetricsAreTheSumOfTheRecords) {
  const uint64_t seed0 = EnvOr("INFERTAP_PROPERTY_SEED", 20261201);
  const uint64_t cases = EnvOr("INFERTAP_PROPERTY_CASES", 3000);
  size_t exchanges = 0, exact = 0, incomplete = 0, untouched = 0, untouched_exact = 0;
  int failures = 0;
  for (uint64_t i = 0; i < cases; ++i) {
    const uint64_t seed = seed0 + i;
    CaseResult r = RunCase(seed);
    exchanges += r.exchanges;
    exact += r.exact;
    incomplete += r.incomplete;
    untouched += r.untouched_sequential;
    untouched_exact += r.untouched_exact;
    if (!r.failure.empty() && failures++ < 3)
      ADD_FAILURE() << "seed " << seed << " (INFERTAP_PROPERTY_SEED=" << seed
                    << " INFERTAP_PROPERTY_CASES=1):\n"
                    << r.failure;
  }
  EXPECT_EQ(failures, 0) << "failing cases";
  std::printf(
      "%llu cases, %zu exchanges: %zu exact records, %zu incomplete; %zu of %zu exchanges "
      "none of whose events was lost are exact\n",
      (unsigned long long)cases, exchanges, exact, incomplete, untouched_exact, untouched);
  // Loss must cost the exchanges it touches and a few around them, not whole connections: most
  // exchanges that lost nothing are exact again.
  if (cases >= 100) {
    EXPECT_GE(double(untouched_exact), 0.85 * double(untouched));
  }
}

double Sample(Metrics& m, const std::string& family, const PairKey& key) {
  double v = 0;
  for (const auto& fam : m.registry()->Collect()) {
    if (fam.name != family) continue;
    for (const auto& metric : fam.metric) {
      if (Label(metric, "model_name") != key.first) continue;
      if (family != "inference_model_running_requests" &&
          Label(metric, "target_model_name") != key.second)
        continue;
      v += family == "inference_model_running_requests" ? metric.gauge.value : metric.counter.value;
    }
  }
  return v;
}

size_t Series(Metrics& m, const std::string& family) {
  for (const auto& fam : m.registry()->Collect())
    if (fam.name == family) return fam.metric.size();
  return 0;
}

// docs/metrics.md#seed-metrics: a streamed request without `model` is counted (request_total,
// running_requests) when the first response event names the served model, under that pair;
// nothing is ever counted under the empty model.
TEST(AccuracyPipeline, RequestWithoutModelIsCountedUnderTheServedModelWhileItStreams) {
  Metrics metrics;
  Pipeline pipeline(PipelineOptions{}, &metrics);
  pipeline.SetEndpoints({EndpointAttribution{Endpoint{}, "pool", "", ""}});
  ConnectionTracker tracker(pipeline);
  uint64_t ts = 1'000'000'000'000ull, in = 0, out = 0;
  auto send = [&](Direction d, const std::string& bytes) {
    uint64_t& pos = d == Direction::kIngress ? in : out;
    tracker.OnEvent(testing::DataEvent(1, d, pos, bytes, ts += 1000, 0, 11));
    pos += bytes.size();
  };
  tracker.OnEvent(testing::ConnEvent(IT_EV_OPEN, 1, ts, 0, 0, 11));
  const std::string body = R"({"messages":[],"stream":true})";
  send(Direction::kIngress, "POST /v1/chat/completions HTTP/1.1\r\ncontent-length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body);
  send(Direction::kEgress,
       "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
  EXPECT_EQ(Series(metrics, "inference_model_request_total"), 0u);  // pair not known yet
  EXPECT_EQ(Series(metrics, "inference_model_running_requests"), 0u);
  send(Direction::kEgress,
       ChunkOf("data: {\"model\":\"served\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"));
  EXPECT_EQ(Sample(metrics, "inference_model_request_total", {"served", "served"}), 1.0);
  EXPECT_EQ(Sample(metrics, "inference_model_running_requests", {"served", ""}), 1.0);
  EXPECT_EQ(Series(metrics, "inference_model_running_requests"), 1u);
  ASSERT_EQ(metrics.InFlight().size(), 1u);
  EXPECT_EQ(metrics.InFlight().begin()->first.target_model_name, "served");
  EXPECT_EQ(metrics.InFlight().begin()->second, 1);
  send(Direction::kEgress, ChunkOf("data: [DONE]\n\n") + "0\r\n\r\n");
  EXPECT_EQ(Sample(metrics, "inference_model_request_total", {"served", "served"}), 1.0);
  EXPECT_EQ(Sample(metrics, "inference_model_running_requests", {"served", ""}), 0.0);
  EXPECT_EQ(Series(metrics, "inference_model_request_total"), 1u);
  EXPECT_TRUE(metrics.InFlight().empty());
  tracker.OnEvent(testing::ConnEvent(IT_EV_CLOSE, 1, ts += 1000, in, out, 11));
  EXPECT_EQ(tracker.connections(), 0u);
  EXPECT_EQ(pipeline.connections(), 0u);
}

// The connection's consumer (Pipeline::Conn) reads the tracker's ConnInfo in place: a connection
// whose open event arrives after its first data is attributed when the open event arrives, one
// whose open event never arrives stays unattributed, and each consumer ends with its connection.
TEST(AccuracyPipeline, ConnectionIsAttributedWhenItsLateOpenEventArrives) {
  Metrics metrics;
  PipelineOptions popts;
  popts.default_pool = "unattributed";
  Pipeline pipeline(popts, &metrics);
  Endpoint port_8000;  // wildcard address: any address on the port the events carry
  port_8000.port = 8000;
  pipeline.SetEndpoints({EndpointAttribution{port_8000, "pool-a", "ns", "pod-1"}});
  Collector out;
  pipeline.AddListener(&out);
  ConnectionTracker tracker(pipeline);
  const std::string body = R"({"model":"m","prompt":"x"})";
  const std::string req =
      "POST /v1/completions HTTP/1.1\r\ncontent-length: " + std::to_string(body.size()) +
      "\r\n\r\n" + body;
  const std::string rbody = R"({"model":"m","choices":[{"text":"y"}]})";
  const std::string resp = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " +
                           std::to_string(rbody.size()) + "\r\n\r\n" + rbody;
  uint64_t ts = 1'000'000'000'000ull;
  for (uint64_t id : {1, 2}) {
    const uint32_t fd = uint32_t(10 + id);
    tracker.OnEvent(testing::DataEvent(id, Direction::kIngress, 0, req, ts += 1000, 0, fd));
    if (id == 1) tracker.OnEvent(testing::ConnEvent(IT_EV_OPEN, id, ts += 1000, 0, 0, fd));
    tracker.OnEvent(testing::DataEvent(id, Direction::kEgress, 0, resp, ts += 1000, 0, fd));
  }
  EXPECT_EQ(pipeline.connections(), 2u);
  ASSERT_EQ(out.records.size(), 2u);
  EXPECT_EQ(out.records[0].pool, "pool-a");
  EXPECT_EQ(out.records[0].pod, "pod-1");
  EXPECT_EQ(out.records[0].status, 200);
  EXPECT_EQ(out.records[1].pool, "unattributed");
  EXPECT_EQ(out.records[1].pod, "");
  tracker.OnEvent(testing::ConnEvent(IT_EV_CLOSE, 1, ts += 1000, req.size(), resp.size(), 11));
  EXPECT_EQ(pipeline.connections(), 1u);
  tracker.FinishAll(ts += 1000);
  EXPECT_EQ(pipeline.connections(), 0u);
  EXPECT_EQ(out.records.size(), 2u);
}

}  // namespace
}  // namespace infertap
