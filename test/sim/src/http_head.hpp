// Response heads as each engine's HTTP stack writes them (uvicorn for vLLM and SGLang, hyper for
// TGI, cpp-httplib for llama.cpp): header order, case and the set of headers differ, and tracers
// must cope with all of them.
#pragma once

#include <cstddef>
#include <ctime>
#include <string>
#include <string_view>

#include "wire_format.hpp"

namespace infertap::sim {

struct HeadOptions {
  int status = 200;
  std::string_view content_type;
  bool chunked = false;
  size_t content_length = 0;
  bool close = false;  // adds `connection: close`
};

std::string ResponseHead(Engine engine, const HeadOptions& opt, std::string_view date);

// IMF-fixdate ("Tue, 19 May 2026 12:00:00 GMT").
std::string HttpDate(std::time_t t);

// Content types per engine.
std::string_view SseContentType(Engine engine);
std::string_view JsonContentType(Engine engine);
std::string_view MetricsContentType(Engine engine);

// One HTTP chunk: "%x\r\n" + payload + "\r\n" (lowercase hex, as uvicorn writes it).
std::string Chunk(std::string_view payload);

}  // namespace infertap::sim
