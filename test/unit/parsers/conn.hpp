// A connection under test: one assembler, a recorder, and feeding helpers with explicit
// timestamps (a fake clock: tests choose every syscall's time).
#pragma once

#include <string_view>

#include "test_util.hpp"

namespace infertap::test {

struct Conn {
  ExchangeConfig cfg;
  Recorder rec;
  ExchangeAssembler a;
  explicit Conn(ExchangeConfig c = {}) : cfg(std::move(c)), a(cfg, rec) {}
  void Req(uint64_t ts, std::string_view s) { a.OnRequestBytes(ts, Bytes(s)); }
  void Resp(uint64_t ts, std::string_view s) { a.OnResponseBytes(ts, Bytes(s)); }
  // Feeds `s` in pieces of `piece` bytes, all with timestamp ts.
  void RespPieces(uint64_t ts, std::string_view s, size_t piece) {
    for (size_t i = 0; i < s.size(); i += piece) Resp(ts, s.substr(i, piece));
  }
  void ReqPieces(uint64_t ts, std::string_view s, size_t piece) {
    for (size_t i = 0; i < s.size(); i += piece) Req(ts, s.substr(i, piece));
  }
  const RequestRecord& Only() const {
    if (rec.records.size() != 1) throw std::runtime_error("expected exactly one record");
    return rec.records[0];
  }
};

constexpr uint64_t kMs = 1'000'000;

}  // namespace infertap::test
