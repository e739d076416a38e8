#include "agent/capture/cgroup_attachments.hpp"

#include <set>

#include "agent/common/log.hpp"

namespace infertap {

CgroupAttachments::~CgroupAttachments() {
  for (auto& [path, e] : entries_) e.link.reset();
}

CgroupSetChange CgroupAttachments::Set(const std::vector<std::string>& wanted,
                                       Failure on_failure) {
  CgroupSetChange change;
  const std::set<std::string> want(wanted.begin(), wanted.end());
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    if (it->second.link) {
      it->second.link.reset();
      ++detaches_;
      change.detached.push_back(it->first);
      change.detached_ids.push_back(it->second.state.cgroup_id);
      LOG_INFO("capture programs detached from %s", it->first.c_str());
    }
    it = entries_.erase(it);
  }
  for (const std::string& path : want) {
    Entry& e = entries_[path];
    if (e.link) continue;
    e.state.path = path;
    std::string error;
    uint64_t id = 0;
    e.link = attacher_.Attach(path, &id, &error);
    if (e.link) {
      if (e.state.failures > 0)
        LOG_INFO("capture programs attached to %s after %llu failed attempt(s)", path.c_str(),
                 (unsigned long long)e.state.failures);
      else
        LOG_INFO("capture programs attached to %s", path.c_str());
      e.state.attached = true;
      e.state.cgroup_id = id;
      e.state.error.clear();
      change.attached.push_back(path);
      continue;
    }
    // Logged once per cgroup (the first failure), not on every retry of every tick; a failure
    // the caller reports is its to tell.
    if (on_failure == Failure::kRetry && e.state.failures == 0)
      LOG_WARN("cannot attach the capture programs to %s (retrying): %s", path.c_str(),
               error.c_str());
    ++e.state.failures;
    ++attach_failures_;
    e.state.attached = false;
    e.state.error = error;
    change.failed.push_back(path);
    if (change.first_error.empty()) change.first_error = error;
  }
  return change;
}

std::vector<CgroupAttachmentState> CgroupAttachments::States() const {
  std::vector<CgroupAttachmentState> out;
  for (const auto& [path, e] : entries_) out.push_back(e.state);
  return out;
}

std::vector<std::string> CgroupAttachments::AttachedPaths() const {
  std::vector<std::string> out;
  for (const auto& [path, e] : entries_)
    if (e.link) out.push_back(path);
  return out;
}

size_t CgroupAttachments::attached() const {
  size_t n = 0;
  for (const auto& [path, e] : entries_) n += e.link ? 1 : 0;
  return n;
}

}  // namespace infertap
