// The capture file of `infertap capture -o FILE` (docs/capture.md), read back by `infertap replay`.
//
// Layout (all integers little-endian, the byte order of every machine infertap runs on):
//
//   header, 64 bytes:
//     0  char[8]  magic "INFRTCAP"
//     8  u32      format version (kCaptureFormatVersion)
//     12 u32      ABI version of the event records (IT_ABI_VERSION)
//     16 i64      wall offset: add to an event's CLOCK_MONOTONIC ns to get UNIX-epoch ns
//     24 u64      creation time, UNIX-epoch ns
//     32 u32      header length (64; readers skip what they do not know)
//     36 byte[28] reserved, zero
//   then records, each:
//     0  u32      length L of the event (kMaxRecordBytes at most)
//     4  u32      reserved, zero
//     8  byte[L]  one event exactly as the kernel emitted it (bpf/infertap_abi.h)
//
// A file that ends inside a record is truncated: the reader reports it with the offset.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "agent/capture/event_source.hpp"

namespace infertap {

inline constexpr char kCaptureMagic[8] = {'I', 'N', 'F', 'R', 'T', 'C', 'A', 'P'};
inline constexpr uint32_t kCaptureFormatVersion = 1;
inline constexpr uint32_t kCaptureHeaderBytes = 64;
inline constexpr uint32_t kMaxRecordBytes = 64 * 1024;

class CaptureWriter {
 public:
  ~CaptureWriter();
  static std::unique_ptr<CaptureWriter> Create(const std::string& path, int64_t wall_offset_ns,
                                               Status* status);
  Status Write(std::span<const uint8_t> record);
  Status Close();  // flushes; also called by the destructor (errors then are lost)
  uint64_t records() const { return records_; }

 private:
  explicit CaptureWriter(FILE* f, std::string path) : f_(f), path_(std::move(path)) {}
  FILE* f_;
  std::string path_;
  uint64_t records_ = 0;
};

// Replays a capture file as an EventSource.
class CaptureReader : public EventSource {
 public:
  ~CaptureReader() override;
  static std::unique_ptr<CaptureReader> Open(const std::string& path, Status* status);
  PollResult Poll(EventSink& sink, int timeout_ms) override;
  int64_t WallOffsetNs() const override { return wall_offset_ns_; }
  uint32_t abi_version() const { return abi_version_; }

 private:
  CaptureReader(FILE* f, std::string path) : f_(f), path_(std::move(path)) {}
  PollResult PollMapped(EventSink& sink);
  FILE* f_;
  std::string path_;
  // Regular files are mapped: records are handed out in place, with no copy and no syscall per
  // record (bench/parser case d). Pipes and other streams use stdio.
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  int64_t wall_offset_ns_ = 0;
  uint32_t abi_version_ = 0;
  uint64_t offset_ = 0;
  std::vector<uint8_t> buf_;
};

// Sniffs the first bytes: true when the file starts with kCaptureMagic.
bool LooksLikeCaptureFile(const std::string& path);

// Forwards every event to `next` and also writes it to a capture file.
class RecordingSink : public EventSink {
 public:
  RecordingSink(CaptureWriter& writer, EventSink* next) : writer_(writer), next_(next) {}
  void OnEvent(std::span<const uint8_t> record) override;
  const Status& status() const { return status_; }

 private:
  CaptureWriter& writer_;
  EventSink* next_;
  Status status_;
};

}  // namespace infertap
