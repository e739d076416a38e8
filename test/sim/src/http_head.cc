#include "http_head.hpp"

#include <cstdio>

namespace infertap::sim {

std::string ResponseHead(Engine engine, const HeadOptions& o, std::string_view date) {
  std::string h =
      "HTTP/1.1 " + std::to_string(o.status) + " " + std::string(ReasonPhrase(o.status)) + "\r\n";
  std::string len = std::to_string(o.content_length);
  switch (engine) {
    case Engine::kVllm:
    case Engine::kSglang:
      // uvicorn: date and server first, then the app's headers (fixtures *.http).
      h += "date: " + std::string(date) + "\r\nserver: uvicorn\r\n";
      if (o.chunked) {
        h += "content-type: " + std::string(o.content_type) + "\r\ntransfer-encoding: chunked\r\n";
      } else {
        h += "content-length: " + len + "\r\n";
        // Starlette's bare Response (e.g. /health) has no content-type at all.
        if (!o.content_type.empty()) h += "content-type: " + std::string(o.content_type) + "\r\n";
      }
      if (o.close) h += "connection: close\r\n";
      break;
    case Engine::kTgi:
      // hyper: handler headers first, then framing, date last.
      h += "content-type: " + std::string(o.content_type) + "\r\n";
      if (o.chunked) h += "cache-control: no-cache\r\n";
      h += "x-compute-type: gpu+optimized\r\naccess-control-allow-origin: *\r\n"
           "vary: origin, access-control-request-method, access-control-request-headers\r\n";
      if (o.close) h += "connection: close\r\n";
      h += o.chunked ? "transfer-encoding: chunked\r\n" : "content-length: " + len + "\r\n";
      h += "date: " + std::string(date) + "\r\n";
      break;
    case Engine::kLlamaCpp:
      // cpp-httplib: capitalised names, sorted, no Date.
      h += "Access-Control-Allow-Origin: \r\n";
      if (o.close) h += "Connection: close\r\n";
      if (!o.chunked) h += "Content-Length: " + len + "\r\n";
      h += "Content-Type: " + std::string(o.content_type) + "\r\n";
      if (!o.close) h += "Keep-Alive: timeout=5, max=100\r\n";
      h += "Server: llama.cpp\r\n";
      if (o.chunked) h += "Transfer-Encoding: chunked\r\n";
      break;
  }
  h += "\r\n";
  return h;
}

std::string HttpDate(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

std::string_view SseContentType(Engine engine) {
  return engine == Engine::kVllm || engine == Engine::kSglang ? "text/event-stream; charset=utf-8"
                                                              : "text/event-stream";
}

std::string_view JsonContentType(Engine engine) {
  return engine == Engine::kLlamaCpp ? "application/json; charset=utf-8" : "application/json";
}

std::string_view MetricsContentType(Engine engine) {
  switch (engine) {
    case Engine::kVllm:
    case Engine::kSglang:
      return "text/plain; version=0.0.4; charset=utf-8";
    case Engine::kTgi:
      return "text/plain; charset=utf-8";
    case Engine::kLlamaCpp:
      return "text/plain; version=0.0.4";
  }
  return "text/plain";
}

std::string Chunk(std::string_view payload) {
  char size[24];
  int n = std::snprintf(size, sizeof size, "%zx\r\n", payload.size());
  std::string out;
  out.reserve(static_cast<size_t>(n) + payload.size() + 2);
  out.append(size, static_cast<size_t>(n));
  out.append(payload);
  out.append("\r\n");
  return out;
}

}  // namespace infertap::sim
