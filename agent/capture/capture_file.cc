#include "agent/capture/capture_file.hpp"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <ctime>

extern "C" {
#include "bpf/infertap_abi.h"
}

namespace infertap {
namespace {

template <typename T>
void PutLe(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(v));  // little-endian hosts only (x86_64, arm64)
}
template <typename T>
T GetLe(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

int64_t ClockNs(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

int64_t CurrentWallOffsetNs() { return ClockNs(CLOCK_REALTIME) - ClockNs(CLOCK_MONOTONIC); }

// A destructor has no one to report to: callers that care call Close() and check it (as
// `infertap capture` does); this only closes a file an early return left open.
CaptureWriter::~CaptureWriter() { (void)Close(); }

std::unique_ptr<CaptureWriter> CaptureWriter::Create(const std::string& path,
                                                     int64_t wall_offset_ns, Status* status) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) {
    *status = Status::FromErrno("cannot create capture file " + path, errno);
    return nullptr;
  }
  std::setvbuf(f, nullptr, _IOFBF, 1 << 20);
  uint8_t hdr[kCaptureHeaderBytes] = {};
  std::memcpy(hdr, kCaptureMagic, sizeof(kCaptureMagic));
  PutLe<uint32_t>(hdr + 8, kCaptureFormatVersion);
  PutLe<uint32_t>(hdr + 12, IT_ABI_VERSION);
  PutLe<int64_t>(hdr + 16, wall_offset_ns);
  PutLe<uint64_t>(hdr + 24, uint64_t(ClockNs(CLOCK_REALTIME)));
  PutLe<uint32_t>(hdr + 32, kCaptureHeaderBytes);
  if (std::fwrite(hdr, 1, sizeof(hdr), f) != sizeof(hdr)) {
    *status = Status::FromErrno("cannot write capture file " + path, errno);
    std::fclose(f);
    return nullptr;
  }
  *status = Status::Ok();
  return std::unique_ptr<CaptureWriter>(new CaptureWriter(f, path));
}

Status CaptureWriter::Write(std::span<const uint8_t> record) {
  if (!f_) return Status::Error("capture file " + path_ + " is closed");
  if (record.size() > kMaxRecordBytes)
    return Status::Error("event of " + std::to_string(record.size()) + " bytes is too large");
  uint8_t rh[8] = {};
  PutLe<uint32_t>(rh, uint32_t(record.size()));
  if (std::fwrite(rh, 1, sizeof(rh), f_) != sizeof(rh) ||
      std::fwrite(record.data(), 1, record.size(), f_) != record.size())
    return Status::FromErrno("cannot write capture file " + path_, errno);
  ++records_;
  return Status::Ok();
}

Status CaptureWriter::Close() {
  if (!f_) return Status::Ok();
  const bool ok = std::fflush(f_) == 0;
  const int err = errno;
  const bool closed = std::fclose(f_) == 0;
  f_ = nullptr;
  if (!ok || !closed) return Status::FromErrno("cannot finish capture file " + path_, err);
  return Status::Ok();
}

CaptureReader::~CaptureReader() {
  if (map_) munmap(const_cast<uint8_t*>(map_), map_size_);
  if (f_) std::fclose(f_);
}

std::unique_ptr<CaptureReader> CaptureReader::Open(const std::string& path, Status* status) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    *status = Status::FromErrno("cannot open " + path, errno);
    return nullptr;
  }
  // Records are up to ~4 KiB: stdio's default buffer would mean a read() per record.
  std::setvbuf(f, nullptr, _IOFBF, 1 << 20);
  std::unique_ptr<CaptureReader> r(new CaptureReader(f, path));
  uint8_t hdr[kCaptureHeaderBytes];
  const size_t n = std::fread(hdr, 1, 36, f);
  if (n < 8 || std::memcmp(hdr, kCaptureMagic, sizeof(kCaptureMagic)) != 0) {
    *status = Status::Error(path + ": not an infertap capture file (bad magic)");
    return nullptr;
  }
  if (n < 36) {
    *status = Status::Error(path + ": truncated capture file header");
    return nullptr;
  }
  const uint32_t version = GetLe<uint32_t>(hdr + 8);
  if (version != kCaptureFormatVersion) {
    *status =
        Status::Error(path + ": unsupported capture format version " + std::to_string(version) +
                      " (this build reads " + std::to_string(kCaptureFormatVersion) + ")");
    return nullptr;
  }
  r->abi_version_ = GetLe<uint32_t>(hdr + 12);
  if (r->abi_version_ != IT_ABI_VERSION) {
    *status =
        Status::Error(path + ": capture made with event ABI " + std::to_string(r->abi_version_) +
                      ", this build reads " + std::to_string(IT_ABI_VERSION));
    return nullptr;
  }
  r->wall_offset_ns_ = GetLe<int64_t>(hdr + 16);
  const uint32_t hlen = GetLe<uint32_t>(hdr + 32);
  if (hlen < 36 || hlen > 4096) {
    *status =
        Status::Error(path + ": corrupt capture file header (length " + std::to_string(hlen) + ")");
    return nullptr;
  }
  if (std::fseek(f, hlen, SEEK_SET) != 0) {
    *status = Status::Error(path + ": truncated capture file header");
    return nullptr;
  }
  r->offset_ = hlen;
  struct stat st {};
  if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    void* m = mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fileno(f), 0);
    if (m != MAP_FAILED) {
      madvise(m, size_t(st.st_size), MADV_SEQUENTIAL);
      r->map_ = static_cast<const uint8_t*>(m);
      r->map_size_ = size_t(st.st_size);
    }
  }
  *status = Status::Ok();
  return r;
}

PollResult CaptureReader::PollMapped(EventSink& sink) {
  PollResult res;
  for (int i = 0; i < 4096; ++i) {
    if (offset_ == map_size_) {
      res.at_end = true;
      return res;
    }
    if (map_size_ - offset_ < 8) {
      res.status = Status::Error(path_ + ": truncated capture file (record header at offset " +
                                 std::to_string(offset_) + ")");
      return res;
    }
    const uint32_t len = GetLe<uint32_t>(map_ + offset_);
    if (len < sizeof(it_event_header) || len > kMaxRecordBytes) {
      res.status = Status::Error(path_ + ": corrupt record length " + std::to_string(len) +
                                 " at offset " + std::to_string(offset_));
      return res;
    }
    if (map_size_ - offset_ - 8 < len) {
      res.status = Status::Error(path_ + ": truncated capture file (record at offset " +
                                 std::to_string(offset_) + ")");
      return res;
    }
    sink.OnEvent(std::span<const uint8_t>(map_ + offset_ + 8, len));
    offset_ += 8 + len;
    ++res.events;
  }
  return res;
}

PollResult CaptureReader::Poll(EventSink& sink, int /*timeout_ms*/) {
  if (map_) return PollMapped(sink);
  PollResult res;
  // Hand out a batch at a time so a replay interleaves with periodic work like live capture.
  for (int i = 0; i < 4096; ++i) {
    uint8_t rh[8];
    const size_t n = std::fread(rh, 1, sizeof(rh), f_);
    if (n == 0 && std::feof(f_)) {
      res.at_end = true;
      return res;
    }
    if (n < sizeof(rh)) {
      res.status = Status::Error(path_ + ": truncated capture file (record header at offset " +
                                 std::to_string(offset_) + ")");
      return res;
    }
    const uint32_t len = GetLe<uint32_t>(rh);
    if (len < sizeof(it_event_header) || len > kMaxRecordBytes) {
      res.status = Status::Error(path_ + ": corrupt record length " + std::to_string(len) +
                                 " at offset " + std::to_string(offset_));
      return res;
    }
    buf_.resize(len);
    if (std::fread(buf_.data(), 1, len, f_) != len) {
      res.status = Status::Error(path_ + ": truncated capture file (record at offset " +
                                 std::to_string(offset_) + ")");
      return res;
    }
    offset_ += sizeof(rh) + len;
    sink.OnEvent(buf_);
    ++res.events;
  }
  return res;
}

bool LooksLikeCaptureFile(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char magic[8] = {};
  const bool ok = std::fread(magic, 1, 8, f) == 8 && std::memcmp(magic, kCaptureMagic, 8) == 0;
  std::fclose(f);
  return ok;
}

void RecordingSink::OnEvent(std::span<const uint8_t> record) {
  if (status_.ok()) status_ = writer_.Write(record);
  if (next_) next_->OnEvent(record);
}

}  // namespace infertap
