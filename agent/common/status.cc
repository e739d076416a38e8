#include "agent/common/status.hpp"

#include <cstring>

namespace infertap {

Status Status::FromErrno(const std::string& what, int err) {
  if (err < 0) err = -err;
  return Status(what + ": " + std::strerror(err));
}

}  // namespace infertap
