// A small OpenAI-compatible server in llama.cpp's wire format, built on cpp-httplib (the HTTP
// library llama.cpp's own server uses), for the real-stack end-to-end tests (docs/testing.md).
//
//   realstack-llamacpp --listen ADDR:PORT --model NAME --truth FILE
//
// The wire, as llama.cpp's server writes it (docs/wire-formats.md): chunked SSE where one write
// carries several events, a role chunk with `"content":null`, token chunks, usage and a `timings`
// object on the finish chunk (no separate usage chunk), and `data: [DONE]` without the final
// blank line. Errors are `{"error":{"code","message","type"}}`. A request without `model` is
// answered with the served model.
//
// Per request knobs (headers, a test device): x-test-status, x-test-tokens, x-test-itl-ms,
// x-test-ttft-ms, x-test-events-per-write (default 3).
//
// Ground truth: one JSON line per request in --truth, keyed by the client's x-request-id: body
// bytes read, status, body bytes written (before chunk framing), tokens, and CLOCK_MONOTONIC
// times of the request head's read, the first write carrying generated content and the write that
// ended the body.
#include <httplib.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

namespace {

using json = nlohmann::json;

// When this connection's thread finished reading the current request's head (set by the
// pre-routing handler, which cpp-httplib calls before it reads the body).
thread_local uint64_t head_read_ns = 0;

uint64_t MonoNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

struct Truth {
  std::string rid, path;
  uint64_t start_ns = 0, first_content_ns = 0, last_byte_ns = 0;
  uint64_t request_bytes = 0, response_bytes = 0;
  int status = 0;
  bool stream = false;
  int content_events = 0;
  int64_t input_tokens = -1, output_tokens = -1;
  std::string model;
};

class TruthLog {
 public:
  explicit TruthLog(const std::string& path) : out_(path, std::ios::app) {}
  void Write(const Truth& t) {
    json j = {{"server", "llamacpp"},
              {"rid", t.rid},
              {"path", t.path},
              {"start_ns", t.start_ns},
              {"request_bytes", t.request_bytes},
              {"content_length", t.request_bytes},
              {"status", t.status},
              {"response_bytes", t.response_bytes},
              {"stream", t.stream},
              {"content_events", t.content_events},
              {"first_content_ns", t.first_content_ns ? json(t.first_content_ns) : json(nullptr)},
              {"last_byte_ns", t.last_byte_ns},
              {"input_tokens", t.input_tokens >= 0 ? json(t.input_tokens) : json(nullptr)},
              {"output_tokens", t.output_tokens >= 0 ? json(t.output_tokens) : json(nullptr)},
              {"model", t.model}};
    std::lock_guard lock(mu_);
    out_ << j.dump() << "\n";
    out_.flush();
  }

 private:
  std::mutex mu_;
  std::ofstream out_;
};

int HeaderInt(const httplib::Request& req, const char* name, int fallback) {
  return req.has_header(name) ? std::atoi(req.get_header_value(name).c_str()) : fallback;
}

int64_t PromptTokens(const json& body) {
  // A stand-in tokenizer: whitespace-separated words of the messages or the prompt.
  auto words = [](const std::string& s) {
    int64_t n = 0;
    bool in = false;
    for (char c : s) {
      const bool space = c == ' ' || c == '\n' || c == '\t';
      if (!space && !in) ++n;
      in = !space;
    }
    return n;
  };
  int64_t n = 0;
  if (body.contains("messages") && body["messages"].is_array()) {
    for (const auto& m : body["messages"])
      if (m.is_object() && m.contains("content") && m["content"].is_string())
        n += words(m["content"].get<std::string>());
  }
  if (body.contains("prompt") && body["prompt"].is_string())
    n += words(body["prompt"].get<std::string>());
  return n > 0 ? n : 1;
}

json Timings(int64_t prompt, int64_t predicted) {
  return {{"prompt_n", prompt},
          {"prompt_ms", 1.5},
          {"predicted_n", predicted},
          {"predicted_ms", 2.5},
          {"predicted_per_token_ms", 0.1},
          {"predicted_per_second", 400.0}};
}

void SetError(httplib::Response& res, int status, const std::string& type, Truth& t) {
  const json body = {
      {"error", {{"code", status}, {"message", "The test asked for this error."}, {"type", type}}}};
  res.status = status;
  res.set_content(body.dump(), "application/json; charset=utf-8");
  t.status = status;
  t.response_bytes = res.body.size();
}

void Handle(const httplib::Request& req, httplib::Response& res, TruthLog& log,
            const std::string& served, bool chat) {
  auto t = std::make_shared<Truth>();
  t->start_ns = head_read_ns ? head_read_ns : MonoNs();
  t->rid = req.get_header_value("x-request-id");
  t->path = req.path;
  t->request_bytes = req.body.size();
  const json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  const int want = HeaderInt(req, "x-test-status", 0);
  if (req.has_header("authorization") &&
      req.get_header_value("authorization") != "Bearer test-key") {
    const json b = {
        {"error",
         {{"code", 401}, {"message", "Invalid API Key"}, {"type", "authentication_error"}}}};
    res.status = 401;
    res.set_content(b.dump(), "application/json; charset=utf-8");
    t->status = 401;
    t->response_bytes = res.body.size();
  } else if (body.is_discarded() || !body.is_object()) {
    SetError(res, 400, "invalid_request_error", *t);
  } else if (want >= 400) {
    SetError(res, want, want >= 500 ? "server_error" : "invalid_request_error", *t);
  }
  if (t->status != 0) {
    t->last_byte_ns = MonoNs();
    log.Write(*t);
    return;
  }
  const std::string model =
      body.value("model", std::string()).empty() ? served : body["model"].get<std::string>();
  t->model = model;
  const int tokens = HeaderInt(req, "x-test-tokens", body.value("max_tokens", 8));
  const int itl_ms = HeaderInt(req, "x-test-itl-ms", 0);
  const int ttft_ms = HeaderInt(req, "x-test-ttft-ms", 0);
  const int per_write = std::max(1, HeaderInt(req, "x-test-events-per-write", 3));
  const int64_t prompt = PromptTokens(body);
  const std::string id = "chatcmpl-" + t->rid;
  const int64_t created = int64_t(std::time(nullptr));
  const char* object = chat ? "chat.completion.chunk" : "text_completion";
  t->status = 200;

  if (!body.value("stream", false)) {
    if (ttft_ms + itl_ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(ttft_ms + itl_ms * (tokens - 1)));
    std::string text;
    for (int i = 0; i < tokens; ++i) text += " tok";
    json choice = {{"finish_reason", "length"}, {"index", 0}};
    if (chat) {
      choice["message"] = {{"content", text}, {"role", "assistant"}};
    } else {
      choice["text"] = text;
    }
    const json out = {{"choices", json::array({choice})},
                      {"created", created},
                      {"model", model},
                      {"system_fingerprint", "b1-test"},
                      {"object", chat ? "chat.completion" : "text_completion"},
                      {"usage",
                       {{"completion_tokens", tokens},
                        {"prompt_tokens", prompt},
                        {"total_tokens", prompt + tokens}}},
                      {"id", id},
                      {"timings", Timings(prompt, tokens)}};
    res.set_content(out.dump(), "application/json; charset=utf-8");
    t->response_bytes = res.body.size();
    t->input_tokens = prompt;
    t->output_tokens = tokens;
    t->last_byte_ns = MonoNs();
    log.Write(*t);
    return;
  }

  t->stream = true;
  auto event = [=](const json& choices, const json& extra) {
    json c = {{"choices", choices},
              {"created", created},
              {"id", id},
              {"model", model},
              {"system_fingerprint", "b1-test"},
              {"object", object}};
    for (const auto& [k, v] : extra.items()) c[k] = v;
    return "data: " + c.dump() + "\n\n";
  };
  res.set_header("Server", "llama.cpp");
  res.set_chunked_content_provider(
      "text/event-stream",
      [=, &log](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s, bool content) {
          const uint64_t now = MonoNs();
          if (content && t->first_content_ns == 0) t->first_content_ns = now;
          t->response_bytes += s.size();
          return sink.write(s.data(), s.size());
        };
        json role = {{"finish_reason", nullptr}, {"index", 0}};
        if (chat) {
          role["delta"] = {{"role", "assistant"}, {"content", nullptr}};
        } else {
          role["text"] = "";
        }
        std::string pending = event(json::array({role}), json::object());
        if (ttft_ms > 0) {
          if (!write(pending, false)) return false;
          pending.clear();
          std::this_thread::sleep_for(std::chrono::milliseconds(ttft_ms));
        }
        int in_pending = pending.empty() ? 0 : 1;
        bool pending_content = false;
        for (int i = 0; i < tokens; ++i) {
          if (i > 0 && itl_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(itl_ms));
          json ch = {{"finish_reason", nullptr}, {"index", 0}};
          if (chat) {
            ch["delta"] = {{"content", " tok"}};
          } else {
            ch["text"] = " tok";
          }
          pending += event(json::array({ch}), json::object());
          pending_content = true;
          ++t->content_events;
          // Tokens queue up between writes, as when llama.cpp's HTTP thread lags the generation.
          if (++in_pending >= per_write) {
            if (!write(pending, pending_content)) return false;
            pending.clear();
            in_pending = 0;
            pending_content = false;
          }
        }
        json fin = {{"finish_reason", "length"}, {"index", 0}};
        if (chat) {
          fin["delta"] = json::object();
        } else {
          fin["text"] = "";
        }
        pending += event(json::array({fin}), {{"usage",
                                               {{"completion_tokens", tokens},
                                                {"prompt_tokens", prompt},
                                                {"total_tokens", prompt + tokens}}},
                                              {"timings", Timings(prompt, tokens)}});
        // [DONE] without the final blank line, as some llama.cpp builds send it.
        pending += "data: [DONE]\n";
        if (!write(pending, pending_content)) return false;
        t->input_tokens = prompt;
        t->output_tokens = tokens;
        // The terminal chunk leaves right after done(), from this thread.
        t->last_byte_ns = MonoNs();
        sink.done();
        return true;
      },
      [t, &log](bool /*success*/) { log.Write(*t); });
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen, model = "served-llamacpp", truth = "/dev/null";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--listen") {
      listen = argv[i + 1];
    } else if (flag == "--model") {
      model = argv[i + 1];
    } else if (flag == "--truth") {
      truth = argv[i + 1];
    } else {
      std::fprintf(stderr, "realstack-llamacpp: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::fprintf(stderr, "usage: realstack-llamacpp --listen ADDR:PORT [--model M] [--truth F]\n");
    return 2;
  }
  TruthLog log(truth);
  httplib::Server svr;
  // One thread per connection, as many as the overload test opens at once.
  svr.new_task_queue = [] { return new httplib::ThreadPool(192); };
  svr.set_keep_alive_max_count(1000000);
  svr.set_keep_alive_timeout(60);
  svr.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    head_read_ns = MonoNs();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr.Post("/v1/chat/completions", [&](const httplib::Request& req, httplib::Response& res) {
    Handle(req, res, log, model, true);
  });
  svr.Post("/v1/completions", [&](const httplib::Request& req, httplib::Response& res) {
    Handle(req, res, log, model, false);
  });
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  const std::string host = listen.substr(0, colon);
  const int port = std::atoi(listen.c_str() + colon + 1);
  const int bound =
      port == 0 ? svr.bind_to_any_port(host) : (svr.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    std::fprintf(stderr, "realstack-llamacpp: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::printf("listening on %s:%d\n", host.c_str(), bound);
  std::fflush(stdout);
  return svr.listen_after_bind() ? 0 : 1;
}
