// Helpers shared by the parsers unit tests: fixtures, wire builders and a recording observer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/exchange.hpp"

namespace infertap::test {

std::string ReadFixture(std::string_view relative);  // relative to test/fixtures
std::span<const uint8_t> Bytes(std::string_view s);

// An HTTP/1.1 request with Content-Length.
std::string PostJson(std::string_view path, std::string_view body, std::string_view extra = "");
// A response with Content-Length.
std::string JsonResponse(int status, std::string_view body, std::string_view extra = "");
// vLLM-style streaming response head (chunked text/event-stream).
std::string SseHead(int status = 200);
// One HTTP chunk (lower-case hex size, like uvicorn).
std::string Chunk(std::string_view payload);
std::string LastChunk();
// "data: <json>\n\n" for each JSON line, one chunk per event, then [DONE] and the last chunk.
std::string ChunkedSse(const std::vector<std::string>& events, bool done = true);
std::string Gzip(std::string_view data);
// Every "data: ..." payload of an .sse fixture (without the prefix), in order.
std::vector<std::string> SseDataLines(std::string_view sse);

struct Recorder : ExchangeObserver {
  std::vector<RequestRecord> received;
  std::vector<RequestRecord> records;
  int ignored = 0;
  std::vector<std::string> errors;
  void OnRequestReceived(const RequestRecord& partial) override { received.push_back(partial); }
  void OnRecord(RequestRecord&& rec) override { records.push_back(std::move(rec)); }
  void OnIgnoredExchange() override { ++ignored; }
  void OnParseError(std::string_view reason) override { errors.emplace_back(reason); }
  int CountErrors(std::string_view reason) const;
};

}  // namespace infertap::test
