#include "test_util.hpp"

#include <zlib.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace infertap::test {

std::string ReadFixture(std::string_view relative) {
  std::string path = std::string(INFERTAP_FIXTURES_DIR) + "/" + std::string(relative);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("missing fixture " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string PostJson(std::string_view path, std::string_view body, std::string_view extra) {
  std::string r = "POST " + std::string(path) + " HTTP/1.1\r\nHost: pod:8000\r\n" +
                  "Content-Type: application/json\r\n" + std::string(extra) +
                  "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  r += body;
  return r;
}

std::string JsonResponse(int status, std::string_view body, std::string_view extra) {
  return "HTTP/1.1 " + std::to_string(status) +
         " X\r\ndate: Tue, 19 May 2026 12:00:00 GMT\r\nserver: uvicorn\r\n" + std::string(extra) +
         "content-length: " + std::to_string(body.size()) +
         "\r\ncontent-type: application/json\r\n\r\n" + std::string(body);
}

std::string SseHead(int status) {
  return "HTTP/1.1 " + std::to_string(status) +
         " OK\r\ndate: Tue, 19 May 2026 12:00:00 GMT\r\nserver: uvicorn\r\n"
         "content-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n";
}

std::string Chunk(std::string_view payload) {
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", payload.size());
  return std::string(size) + std::string(payload) + "\r\n";
}

std::string LastChunk() { return "0\r\n\r\n"; }

std::string ChunkedSse(const std::vector<std::string>& events, bool done) {
  std::string out;
  for (const auto& e : events) out += Chunk("data: " + e + "\n\n");
  if (done) out += Chunk("data: [DONE]\n\n");
  return out + LastChunk();
}

std::string Gzip(std::string_view data) {
  z_stream zs{};
  deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, data.size()) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = uInt(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::vector<std::string> SseDataLines(std::string_view sse) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < sse.size()) {
    size_t nl = sse.find('\n', pos);
    if (nl == std::string_view::npos) nl = sse.size();
    std::string_view line = sse.substr(pos, nl - pos);
    if (line.starts_with("data: ")) out.emplace_back(line.substr(6));
    pos = nl + 1;
  }
  return out;
}

int Recorder::CountErrors(std::string_view reason) const {
  int n = 0;
  for (const auto& e : errors) n += e == reason;
  return n;
}

}  // namespace infertap::test
