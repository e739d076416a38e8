// Offline pipeline / parser throughput (docs/performance.md: "offline pipeline throughput ≥ 1 GB/s per core,
// and ≥ 50% of llhttp alone on the same bytes").
//
// One synthetic capture of vLLM streaming traffic is generated in memory, then four cases consume
// exactly the same payload bytes, segment by segment, in the same interleaved order:
//   BM_Llhttp            bare llhttp, no-op callbacks, both directions: the reference.
//   BM_ExchangeAssembler the parsers alone (HTTP + SSE + JSON), records to a counting observer.
//   BM_Pipeline          ABI events → ConnectionTracker → Pipeline → Metrics, from memory.
//   BM_Replay            the same events through a capture file and CaptureReader, as
//                        `infertap replay` runs them (the file sits in the page cache).
// bytes_per_second is always payload bytes (what llhttp sees), so the cases compare directly; the
// event headers and the file framing are overhead that the pipeline cases must carry.
//
// Every case checks what it produced (messages, records, tokens, errors) against what the
// generator wrote and fails with SkipWithError otherwise: a fast benchmark that silently stopped
// parsing would be worse than none.
#include <benchmark/benchmark.h>
#include <llhttp.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/capture/abi.hpp"
#include "agent/capture/capture_file.hpp"
#include "agent/capture/tracker.hpp"
#include "agent/metrics/metrics.hpp"
#include "agent/pipeline/pipeline.hpp"
#include "parsers/exchange.hpp"

namespace infertap::bench {
namespace {

// ---------------------------------------------------------------------------------------------
// The capture
// ---------------------------------------------------------------------------------------------

enum class Kind : uint8_t { kRequest, kResponse, kClose };

// One syscall's worth of bytes as the server-side kernel hook sees it: a read() of a request, or
// one write() of the response (uvicorn writes the header block, each SSE chunk and the terminal
// chunk separately, so each is its own segment).
struct Segment {
  uint32_t conn;  // index into the capture's connections, 0-based
  Kind kind;
  uint64_t ts_ns;
  uint64_t offset;  // into Capture::bytes
  uint32_t len;
};

struct Capture {
  std::string bytes;  // every payload back to back
  std::vector<Segment> segments;
  uint32_t connections = 0;
  uint64_t exchanges = 0;
  uint64_t streaming = 0;
  uint64_t output_tokens = 0;  // sum of usage.completion_tokens over all exchanges
  uint64_t payload_bytes = 0;  // == bytes.size()
};

// Deterministic: every run and every case sees the same capture.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 7;
    s_ ^= s_ << 17;
    return s_;
  }
  uint32_t Below(uint32_t n) { return static_cast<uint32_t>(Next() % n); }

 private:
  uint64_t s_;
};

constexpr uint32_t kConcurrent = 64;        // streams in flight at once (interleaved writes)
constexpr uint32_t kTokensPerStream = 64;   // docs/performance.md's streamed request
constexpr uint32_t kNonStreamingEvery = 8;  // one exchange in 8 is a plain JSON response
constexpr uint64_t kSegmentSpacingNs = 5'000;

constexpr std::string_view kModels[] = {"meta-llama/Llama-3.1-8B-Instruct",
                                        "Qwen/Qwen2.5-7B-Instruct",
                                        "mistralai/Mistral-7B-Instruct-v0.3"};
// Tokens as they appear inside a JSON string: a few need escaping, as real output does.
constexpr std::string_view kTokens[] = {
    "Hello", "!",       " How",    " can",    " I",    " help", " you",        " today",
    "?",     " The",    " answer", " is",     " \\\"", "42",    "\\n",         " because",
    " of",   " the",    " way",    " models", " work", ".",     " In",         " short",
    ",",     " tokens", " stream", " one",    " by",   " one",  " caf\\u00e9", " ok"};
constexpr std::string_view kPromptWords[] = {
    "Explain ", "the ",  "difference ", "between ", "a ",    "process ", "and ", "thread ", "in ",
    "Linux, ",  "with ", "examples ",   "of ",      "when ", "to ",      "use ", "each. "};

std::string Hex(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof(buf), "%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Builds one connection's traffic, exchange by exchange, as a list of pending segments.
class ConnScript {
 public:
  struct Piece {
    Kind kind;
    std::string bytes;
  };

  // Appends the segments of one exchange (request read, then the response writes).
  static void Exchange(Rng& rng, uint64_t serial, bool stream, std::vector<Piece>& out,
                       uint64_t* output_tokens) {
    const std::string_view model = kModels[serial % std::size(kModels)];
    std::string prompt;
    // Prompts from a few words to a few KB: some requests exceed one 4 KiB capture event.
    const uint32_t prompt_len = 32 + rng.Below(6000);
    while (prompt.size() < prompt_len) prompt += kPromptWords[rng.Below(std::size(kPromptWords))];
    const uint32_t prompt_tokens = static_cast<uint32_t>(prompt.size() / 4) + 8;

    std::string body = "{\"model\":\"" + std::string(model) +
                       "\",\"messages\":[{\"role\":\"user\",\"content\":\"" + prompt +
                       "\"}],\"max_tokens\":" + std::to_string(kTokensPerStream);
    if (stream) body += ",\"stream\":true,\"stream_options\":{\"include_usage\":true}";
    body += "}";
    // What the OpenAI Python client (httpx) sends; the server reads it in one read().
    std::string req =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: 10.0.0.1:8000\r\naccept-encoding: gzip, "
        "deflate\r\nconnection: keep-alive\r\naccept: application/json\r\ncontent-type: "
        "application/json\r\nuser-agent: OpenAI/Python 1.82.0\r\nauthorization: Bearer "
        "sk-bench\r\ncontent-length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    out.push_back({Kind::kRequest, std::move(req)});

    char id[40];
    std::snprintf(id, sizeof(id), "chatcmpl-%016llx",
                  static_cast<unsigned long long>(serial * 0x9e3779b97f4a7c15ull));
    const std::string created = std::to_string(1779192000 + serial / 16);
    const std::string usage =
        "{\"prompt_tokens\":" + std::to_string(prompt_tokens) +
        ",\"total_tokens\":" + std::to_string(prompt_tokens + kTokensPerStream) +
        ",\"completion_tokens\":" + std::to_string(kTokensPerStream);
    *output_tokens += kTokensPerStream;

    if (!stream) {
      std::string text;
      for (uint32_t i = 0; i < kTokensPerStream; ++i)
        text += kTokens[rng.Below(std::size(kTokens))];
      // Byte-for-byte the shape of fixtures/wire/vllm_chat_nonstream_response.http.
      std::string json =
          "{\"id\":\"" + std::string(id) +
          "\",\"object\":\"chat.completion\",\"created\":" + created + ",\"model\":\"" +
          std::string(model) +
          "\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"" + text +
          "\",\"refusal\":null,\"annotations\":null,\"audio\":null,\"function_call\":null,"
          "\"tool_calls\":[],\"reasoning\":null},\"logprobs\":null,\"finish_reason\":\"stop\","
          "\"stop_reason\":null,\"token_ids\":null}],\"service_tier\":null,\"system_fingerprint\":"
          "\"vllm-0.22.0-1a2b3c4d\",\"usage\":" +
          usage +
          ",\"prompt_tokens_details\":null},\"prompt_logprobs\":null,\"prompt_token_ids\":null,"
          "\"prompt_text\":null,\"kv_transfer_params\":null}";
      out.push_back({Kind::kResponse,
                     "HTTP/1.1 200 OK\r\ndate: Tue, 19 May 2026 12:00:00 GMT\r\nserver: "
                     "uvicorn\r\ncontent-length: " +
                         std::to_string(json.size()) +
                         "\r\ncontent-type: application/json\r\n\r\n"});
      out.push_back({Kind::kResponse, std::move(json)});
      return;
    }

    // Byte-for-byte the shape of fixtures/wire/vllm_chat_stream_include_usage.http.
    out.push_back({Kind::kResponse,
                   "HTTP/1.1 200 OK\r\ndate: Tue, 19 May 2026 12:00:00 GMT\r\nserver: "
                   "uvicorn\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
                   "transfer-encoding: chunked\r\n\r\n"});
    const std::string head = "{\"id\":\"" + std::string(id) +
                             "\",\"object\":\"chat.completion.chunk\",\"created\":" + created +
                             ",\"model\":\"" + std::string(model) + "\",\"choices\":[";
    auto chunk = [&](std::string_view event_json) {
      std::string event = "data: ";
      event += event_json;
      event += "\n\n";
      out.push_back({Kind::kResponse, Hex(event.size()) + "\r\n" + event + "\r\n"});
    };
    chunk(head +
          "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
          "\"finish_reason\":null}],\"prompt_token_ids\":null,\"prompt_text\":null}");
    for (uint32_t i = 0; i < kTokensPerStream; ++i) {
      chunk(head + "{\"index\":0,\"delta\":{\"content\":\"" +
            std::string(kTokens[rng.Below(std::size(kTokens))]) +
            "\"},\"logprobs\":null,\"finish_reason\":null,\"token_ids\":null}]}");
    }
    chunk(head +
          "{\"index\":0,\"delta\":{\"content\":\"\"},\"logprobs\":null,\"finish_reason\":\"stop\","
          "\"stop_reason\":null,\"token_ids\":null}]}");
    chunk(head + "],\"usage\":" + usage + "},\"system_fingerprint\":\"vllm-0.22.0-1a2b3c4d\"}");
    chunk("[DONE]");
    // h11 writes the terminal chunk on its own (EndOfMessage).
    out.push_back({Kind::kResponse, "0\r\n\r\n"});
  }
};

// kConcurrent connections are active at once; each write goes to a random one of them, so the
// segments of different streams interleave as they do on a busy server. A connection carries a
// few keep-alive exchanges, then closes and a new connection takes its slot.
Capture Generate(uint64_t target_bytes) {
  Capture cap;
  Rng rng(0x1f2e3d4c5b6a7988ull);
  struct Slot {
    uint32_t conn = 0;
    uint32_t exchanges_left = 0;
    std::vector<ConnScript::Piece> pending;
    size_t next = 0;
  };
  std::vector<Slot> slots(kConcurrent);
  uint64_t serial = 0;
  uint64_t ts = 1'000'000'000;
  auto new_conn = [&](Slot& s) {
    s.conn = cap.connections++;
    s.exchanges_left = 2 + rng.Below(30);
  };
  for (Slot& s : slots) new_conn(s);
  auto emit = [&](uint32_t conn, Kind kind, std::string_view bytes) {
    cap.segments.push_back(
        Segment{conn, kind, ts, cap.bytes.size(), static_cast<uint32_t>(bytes.size())});
    cap.bytes.append(bytes);
    ts += kSegmentSpacingNs;
  };
  bool draining = false;
  size_t idle = 0;
  while (idle < slots.size()) {
    Slot& s = slots[rng.Below(kConcurrent)];
    if (s.next == s.pending.size()) {
      s.pending.clear();
      s.next = 0;
      if (!draining && cap.bytes.size() >= target_bytes) draining = true;
      if (s.exchanges_left == 0 || draining) {
        if (s.exchanges_left == static_cast<uint32_t>(-1)) continue;  // already closed
        emit(s.conn, Kind::kClose, {});
        if (draining) {
          s.exchanges_left = static_cast<uint32_t>(-1);
          ++idle;
          continue;
        }
        new_conn(s);
      }
      const bool stream = (serial % kNonStreamingEvery) != 0;
      ConnScript::Exchange(rng, serial, stream, s.pending, &cap.output_tokens);
      ++serial;
      ++cap.exchanges;
      cap.streaming += stream;
      --s.exchanges_left;
    }
    const ConnScript::Piece& p = s.pending[s.next++];
    emit(s.conn, p.kind, p.bytes);
  }
  cap.payload_bytes = cap.bytes.size();
  return cap;
}

uint64_t g_capture_mib = 64;

const Capture& TheCapture() {
  static const Capture cap = Generate(g_capture_mib << 20);
  return cap;
}

std::span<const uint8_t> Bytes(const Capture& cap, const Segment& s) {
  return {reinterpret_cast<const uint8_t*>(cap.bytes.data()) + s.offset, s.len};
}

void ReportCommon(benchmark::State& state, const Capture& cap) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * cap.payload_bytes));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * cap.exchanges));
  state.counters["capture_MiB"] = static_cast<double>(cap.payload_bytes) / (1 << 20);
  state.counters["exchanges"] = static_cast<double>(cap.exchanges);
  state.counters["connections"] = static_cast<double>(cap.connections);
}

// ---------------------------------------------------------------------------------------------
// a. llhttp alone
// ---------------------------------------------------------------------------------------------

int NoopData(llhttp_t*, const char*, size_t) { return 0; }
int Noop(llhttp_t*) { return 0; }
// The only work beyond parsing: a message count, so the case can prove it parsed everything.
int CountMessage(llhttp_t* p) {
  ++*static_cast<uint64_t*>(p->data);
  return 0;
}

void BM_Llhttp(benchmark::State& state) {
  const Capture& cap = TheCapture();
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  // No-op callbacks for every span a real consumer needs (url, headers, body): llhttp then does
  // the same span bookkeeping it does under our HttpParser, minus our work in the callbacks.
  settings.on_message_begin = Noop;
  settings.on_url = NoopData;
  settings.on_status = NoopData;
  settings.on_header_field = NoopData;
  settings.on_header_value = NoopData;
  settings.on_headers_complete = Noop;
  settings.on_body = NoopData;
  settings.on_message_complete = CountMessage;

  struct Conn {
    llhttp_t req, resp;
  };
  std::vector<Conn> conns(cap.connections);
  uint64_t messages = 0, errors = 0;
  for (auto _ : state) {
    messages = errors = 0;
    for (Conn& c : conns) {
      llhttp_init(&c.req, HTTP_REQUEST, &settings);
      llhttp_init(&c.resp, HTTP_RESPONSE, &settings);
      c.req.data = c.resp.data = &messages;
    }
    for (const Segment& s : cap.segments) {
      if (s.kind == Kind::kClose) continue;
      llhttp_t* p = s.kind == Kind::kRequest ? &conns[s.conn].req : &conns[s.conn].resp;
      const auto b = Bytes(cap, s);
      if (llhttp_execute(p, reinterpret_cast<const char*>(b.data()), b.size()) != HPE_OK) ++errors;
    }
    benchmark::DoNotOptimize(messages);
  }
  if (errors != 0 || messages != 2 * cap.exchanges) {
    state.SkipWithError(("llhttp: " + std::to_string(messages) + " messages, " +
                         std::to_string(errors) + " errors; expected " +
                         std::to_string(2 * cap.exchanges) + " messages")
                            .c_str());
    return;
  }
  ReportCommon(state, cap);
}

// ---------------------------------------------------------------------------------------------
// b. ExchangeAssembler
// ---------------------------------------------------------------------------------------------

class CountingObserver : public ExchangeObserver {
 public:
  uint64_t received = 0, records = 0, ok = 0, tokens = 0, ignored = 0, errors = 0;
  void OnRequestReceived(const RequestRecord&) override { ++received; }
  void OnRecord(RequestRecord&& rec) override {
    ++records;
    ok += rec.error == ErrorCode::kNone && rec.response_complete;
    tokens += rec.output_tokens.value_or(0);
  }
  void OnIgnoredExchange() override { ++ignored; }
  void OnParseError(std::string_view) override { ++errors; }
};

// Empty when the counts match the capture, else what went wrong.
std::string CheckCounts(const Capture& cap, uint64_t received, uint64_t records, uint64_t ok,
                        uint64_t tokens, uint64_t parse_errors) {
  if (received == cap.exchanges && records == cap.exchanges && ok == cap.exchanges &&
      tokens == cap.output_tokens && parse_errors == 0)
    return {};
  return "expected " + std::to_string(cap.exchanges) + " records / " +
         std::to_string(cap.output_tokens) + " tokens; got received=" + std::to_string(received) +
         " records=" + std::to_string(records) + " ok=" + std::to_string(ok) +
         " tokens=" + std::to_string(tokens) + " parse_errors=" + std::to_string(parse_errors);
}

void BM_ExchangeAssembler(benchmark::State& state) {
  const Capture& cap = TheCapture();
  const ExchangeConfig config;
  CountingObserver obs;
  std::vector<std::unique_ptr<ExchangeAssembler>> conns(cap.connections);
  for (auto _ : state) {
    obs = CountingObserver{};
    for (const Segment& s : cap.segments) {
      auto& a = conns[s.conn];
      // Created at first sight and destroyed at close, as the pipeline does.
      if (!a) a = std::make_unique<ExchangeAssembler>(config, obs);
      switch (s.kind) {
        case Kind::kRequest:
          a->OnRequestBytes(s.ts_ns, Bytes(cap, s));
          break;
        case Kind::kResponse:
          a->OnResponseBytes(s.ts_ns, Bytes(cap, s));
          break;
        case Kind::kClose:
          a->OnClose(s.ts_ns);
          a.reset();
          break;
      }
    }
  }
  if (std::string err =
          CheckCounts(cap, obs.received, obs.records, obs.ok, obs.tokens, obs.errors + obs.ignored);
      !err.empty()) {
    state.SkipWithError(("ExchangeAssembler: " + err).c_str());
    return;
  }
  ReportCommon(state, cap);
}

// ---------------------------------------------------------------------------------------------
// c, d. The offline pipeline
// ---------------------------------------------------------------------------------------------

// The capture as the kernel would emit it: open, data events (≤ IT_CHUNK_MAX payload each, a
// larger syscall split into pieces with consecutive positions), close with the final positions.
struct Events {
  std::vector<uint8_t> arena;
  std::vector<std::pair<uint64_t, uint32_t>> records;  // offset, length
};

void AppendRecord(Events& ev, const void* hdr, size_t hdr_len, std::span<const uint8_t> payload) {
  // Ring-buffer records are 8-byte aligned; keep that so the tracker sees realistic layouts.
  const uint64_t off = (ev.arena.size() + 7) & ~uint64_t{7};
  ev.arena.resize(off + hdr_len + payload.size());
  std::memcpy(ev.arena.data() + off, hdr, hdr_len);
  if (!payload.empty())
    std::memcpy(ev.arena.data() + off + hdr_len, payload.data(), payload.size());
  ev.records.emplace_back(off, static_cast<uint32_t>(hdr_len + payload.size()));
}

it_conn_event ConnEvent(uint16_t type, uint32_t conn, uint64_t ts, uint64_t in, uint64_t out) {
  it_conn_event ev{};
  ev.hdr.type = type;
  ev.hdr.version = IT_ABI_VERSION;
  ev.hdr.tgid = 4242;
  ev.hdr.conn_id = 1000 + conn;
  ev.hdr.ts_ns = ts;
  ev.local_addr[10] = ev.local_addr[11] = 0xff;
  ev.local_addr[12] = 10;
  ev.local_addr[15] = 1;
  ev.remote_addr[10] = ev.remote_addr[11] = 0xff;
  ev.remote_addr[12] = 10;
  ev.remote_addr[13] = static_cast<uint8_t>(conn >> 8);
  ev.remote_addr[14] = static_cast<uint8_t>(conn);
  ev.remote_addr[15] = 2;
  ev.local_port = 8000;
  ev.remote_port = static_cast<uint16_t>(30000 + conn % 30000);
  ev.family = 2;  // AF_INET
  ev.role = IT_ROLE_SERVER;
  ev.fd = 10 + conn % 1000;
  ev.cgroup_id = 77;
  ev.bytes_ingress = in;
  ev.bytes_egress = out;
  return ev;
}

const Events& TheEvents() {
  static const Events events = [] {
    const Capture& cap = TheCapture();
    Events ev;
    ev.arena.reserve(cap.payload_bytes + cap.segments.size() * 72);
    struct Pos {
      bool open = false;
      uint64_t in = 0, out = 0;
    };
    std::vector<Pos> pos(cap.connections);
    for (const Segment& s : cap.segments) {
      Pos& p = pos[s.conn];
      if (!p.open) {
        const it_conn_event o = ConnEvent(IT_EV_OPEN, s.conn, s.ts_ns, 0, 0);
        AppendRecord(ev, &o, sizeof(o), {});
        p.open = true;
      }
      if (s.kind == Kind::kClose) {
        const it_conn_event c = ConnEvent(IT_EV_CLOSE, s.conn, s.ts_ns, p.in, p.out);
        AppendRecord(ev, &c, sizeof(c), {});
        continue;
      }
      // The server reads requests (ingress) and writes responses (egress).
      const bool in = s.kind == Kind::kRequest;
      uint64_t& stream_pos = in ? p.in : p.out;
      const auto bytes = Bytes(cap, s);
      for (size_t done = 0; done < bytes.size(); done += IT_CHUNK_MAX) {
        const auto piece = bytes.subspan(done, std::min<size_t>(IT_CHUNK_MAX, bytes.size() - done));
        it_data_event d{};
        d.hdr.type = IT_EV_DATA;
        d.hdr.version = IT_ABI_VERSION;
        d.hdr.tgid = 4242;
        d.hdr.conn_id = 1000 + s.conn;
        d.hdr.ts_ns = s.ts_ns;
        d.pos = stream_pos;
        d.len = d.cap_len = static_cast<uint32_t>(piece.size());
        d.syscall_len = s.len;
        d.fd = 10 + s.conn % 1000;
        d.direction = in ? IT_DIR_INGRESS : IT_DIR_EGRESS;
        d.role = IT_ROLE_SERVER;
        d.syscall = in ? IT_SYS_READ : IT_SYS_WRITE;
        AppendRecord(ev, &d, sizeof(d), piece);
        stream_pos += piece.size();
      }
    }
    return ev;
  }();
  return events;
}

class RecordCounter : public RecordListener {
 public:
  uint64_t ok = 0, tokens = 0;
  void OnRecord(const RequestRecord& rec) override {
    ok += rec.error == ErrorCode::kNone && rec.response_complete;
    tokens += rec.output_tokens.value_or(0);
  }
};

// After a run: empty when the pipeline produced exactly what the capture holds.
std::string CheckPipeline(const Capture& cap, const ConnectionTracker& tracker,
                          const Pipeline& pipeline, const RecordCounter& counter) {
  const TrackerStats& t = tracker.stats();
  if (t.malformed != 0 || t.gap_bytes != 0 || t.data_bytes != cap.payload_bytes)
    return "tracker: malformed=" + std::to_string(t.malformed) +
           " gap_bytes=" + std::to_string(t.gap_bytes) +
           " data_bytes=" + std::to_string(t.data_bytes) + " (expected " +
           std::to_string(cap.payload_bytes) + ")";
  const PipelineStats& p = pipeline.stats();
  return CheckCounts(cap, p.requests_received, p.records, counter.ok, counter.tokens,
                     p.parse_errors + p.ignored_exchanges);
}

// `infertap replay` flushes the tracker after every batch of this many events.
constexpr size_t kReplayBatch = 4096;

void BM_Pipeline(benchmark::State& state) {
  const Capture& cap = TheCapture();
  const Events& ev = TheEvents();
  // One registry for the whole run, as in the agent: series are created on the first iteration
  // and only updated afterwards.
  Metrics metrics;
  std::string err;
  for (auto _ : state) {
    RecordCounter counter;
    Pipeline pipeline(PipelineOptions{}, &metrics);
    pipeline.AddListener(&counter);
    ConnectionTracker tracker(pipeline);
    size_t n = 0;
    for (const auto& [off, len] : ev.records) {
      tracker.OnEvent({ev.arena.data() + off, len});
      if (++n % kReplayBatch == 0) tracker.Flush(tracker.newest_ts_ns());
    }
    tracker.FinishAll(tracker.newest_ts_ns());
    err = CheckPipeline(cap, tracker, pipeline, counter);
    if (!err.empty()) break;
  }
  if (!err.empty()) {
    state.SkipWithError(("pipeline: " + err).c_str());
    return;
  }
  ReportCommon(state, cap);
  state.counters["events"] = static_cast<double>(ev.records.size());
}

void BM_Replay(benchmark::State& state) {
  const Capture& cap = TheCapture();
  const Events& ev = TheEvents();
  const char* tmp = std::getenv("TMPDIR");
  const std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/infertap-parser-bench-" +
                           std::to_string(getpid()) + ".cap";
  {
    Status st;
    auto w = CaptureWriter::Create(path, 0, &st);
    if (!w) {
      state.SkipWithError(("capture file: " + st.message()).c_str());
      return;
    }
    for (const auto& [off, len] : ev.records) {
      if (Status s = w->Write({ev.arena.data() + off, len}); !s) {
        state.SkipWithError(("capture file: " + s.message()).c_str());
        std::remove(path.c_str());
        return;
      }
    }
    if (Status s = w->Close(); !s) {
      state.SkipWithError(("capture file: " + s.message()).c_str());
      std::remove(path.c_str());
      return;
    }
  }
  Metrics metrics;
  std::string err;
  for (auto _ : state) {
    // The loop of RunReplay (agent/cli/replay_cmd.cc), minus printing the exposition.
    Status st;
    auto reader = CaptureReader::Open(path, &st);
    if (!reader) {
      err = st.message();
      break;
    }
    RecordCounter counter;
    Pipeline pipeline(PipelineOptions{}, &metrics);
    pipeline.AddListener(&counter);
    ConnectionTracker tracker(pipeline);
    for (;;) {
      PollResult r = reader->Poll(tracker, 0);
      if (!r.status) {
        err = r.status.message();
        break;
      }
      tracker.Flush(tracker.newest_ts_ns());
      if (r.at_end) break;
    }
    if (!err.empty()) break;
    tracker.FinishAll(tracker.newest_ts_ns());
    err = CheckPipeline(cap, tracker, pipeline, counter);
    if (!err.empty()) break;
  }
  std::remove(path.c_str());
  if (!err.empty()) {
    state.SkipWithError(("replay: " + err).c_str());
    return;
  }
  ReportCommon(state, cap);
}

// Each iteration is a whole capture (tens of ms), so times read best in milliseconds.
BENCHMARK(BM_Llhttp)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ExchangeAssembler)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Pipeline)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Replay)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace infertap::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  // Our own flag, after Google Benchmark has taken its --benchmark_* flags out of argv.
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--capture_mib=")) {
      infertap::bench::g_capture_mib = std::strtoull(argv[i] + 14, nullptr, 10);
      if (infertap::bench::g_capture_mib == 0) {
        std::fprintf(stderr, "--capture_mib must be a positive number of MiB\n");
        return 2;
      }
    } else {
      std::fprintf(stderr, "unknown argument %s (own flag: --capture_mib=N, default 64)\n",
                   argv[i]);
      return 2;
    }
  }
  benchmark::AddCustomContext("capture_mib", std::to_string(infertap::bench::g_capture_mib));
  // Built up front so that a profiler toggled on one case sees only that case's work.
  infertap::bench::TheEvents();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
