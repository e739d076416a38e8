// Tiny reader over a fuzzer input: control bytes and payload slices taken from the same buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace infertap::fuzz {

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t U16() { return uint16_t(Byte() | (Byte() << 8)); }
  // Up to n bytes (fewer at the end of the input).
  std::span<const uint8_t> Take(size_t n) {
    size_t k = n < size_ - pos_ ? n : size_ - pos_;
    std::span<const uint8_t> out(data_ + pos_, k);
    pos_ += k;
    return out;
  }
  std::span<const uint8_t> Rest() { return Take(size_ - pos_); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace infertap::fuzz
