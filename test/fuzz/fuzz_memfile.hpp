// For fuzz targets whose entry point reads a file by path (the capture reader, the pcap reader):
// the input as an anonymous in-memory file, reachable as /proc/self/fd/N.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace infertap::fuzz {

class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = memfd_create("fuzz-input", MFD_CLOEXEC);
    if (fd_ < 0) return;
    size_t off = 0;
    while (off < size) {
      ssize_t n = write(fd_, data + off, size - off);
      if (n <= 0) break;
      off += size_t(n);
    }
    ok_ = off == size;
  }
  ~MemFile() {
    if (fd_ >= 0) close(fd_);
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  bool ok() const { return ok_; }
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

}  // namespace infertap::fuzz
