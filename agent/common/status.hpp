// A small error type for boundaries where failure is expected (kernel, files, network): a
// message a person can act on, never an exception across an API.
#pragma once

#include <string>
#include <utility>

namespace infertap {

// [[nodiscard]]: a Status that is dropped is a failure nobody sees; ignoring one is a visible
// decision, `(void)` with a comment.
class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }
  // For libbpf's negative errno returns: "<what>: <strerror(-err)>".
  static Status FromErrno(const std::string& what, int err);

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const std::string& message() const { return message_; }

 private:
  explicit Status(std::string message) : failed_(true), message_(std::move(message)) {}
  bool failed_ = false;
  std::string message_;
};

}  // namespace infertap
