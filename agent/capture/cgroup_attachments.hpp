// The set of cgroups the cgroup backend's programs are attached to, changed by a diff at run
// time (docs/capture.md "The cgroup backend", docs/kubernetes.md): Set(wanted) attaches the
// cgroups that are new, detaches those that left, and leaves the others alone, so a pod that
// stays keeps its links (no packet of it is missed while another pod comes or goes).
//
// - A failed attach is not fatal: the cgroup stays wanted, is counted, logged once (its first
//   failure, and again once it succeeds), and tried again on the next Set() with it — the agent
//   calls Set() on every topology change and every periodic tick.
// - A cgroup that vanished (its pod deleted and the kubelet removed the directory) detaches like
//   any other: the kernel already auto-detached the links when the cgroup died; destroying them
//   only closes their fds.
// - Detach() reports the cgroup ids that were detached, so the caller can end the connections
//   whose packets came from those cgroups (no more packets of them will arrive).
//
// Pure: the BPF side is reached through CgroupAttacher (SkbCapture implements it with
// bpf_program__attach_cgroup; tests with a fake).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace infertap {

class CgroupAttacher {
 public:
  // What keeps one cgroup's programs attached; destroying it detaches them.
  class Attachment {
   public:
    virtual ~Attachment() = default;
  };
  virtual ~CgroupAttacher() = default;
  // Attaches to the cgroup v2 directory `path`; null with *error (one line) on failure.
  // *cgroup_id is the cgroup's id (its directory's inode number, what bpf_skb_cgroup_id gives).
  virtual std::unique_ptr<Attachment> Attach(const std::string& path, uint64_t* cgroup_id,
                                             std::string* error) = 0;
};

struct CgroupAttachmentState {
  std::string path;
  bool attached = false;
  uint64_t cgroup_id = 0;  // when attached
  std::string error;       // the last attach failure, when not attached
  uint64_t failures = 0;   // failed attempts for this cgroup
  bool operator==(const CgroupAttachmentState&) const = default;
};

struct CgroupSetChange {
  std::vector<std::string> attached;   // newly attached by this call
  std::vector<uint64_t> detached_ids;  // cgroup ids detached by this call
  std::vector<std::string> detached;   // their paths
  std::vector<std::string> failed;     // wanted and still not attached
  std::string first_error;             // of the first one in `failed` ("" when none)
};

class CgroupAttachments {
 public:
  explicit CgroupAttachments(CgroupAttacher& attacher) : attacher_(attacher) {}
  ~CgroupAttachments();  // detaches everything, in path order
  CgroupAttachments(const CgroupAttachments&) = delete;
  CgroupAttachments& operator=(const CgroupAttachments&) = delete;

  // What a failed attach is: retried later (logged once per cgroup, "retrying"), or the
  // caller's error to report (not logged here: the caller fails with it, e.g. at start).
  enum class Failure { kRetry, kReport };

  // Makes `wanted` (duplicates ignored) the attached set: detach gone ones first, then attach
  // the new ones and retry the failed ones.
  CgroupSetChange Set(const std::vector<std::string>& wanted, Failure on_failure = Failure::kRetry);

  // Every wanted cgroup, in path order.
  std::vector<CgroupAttachmentState> States() const;
  std::vector<std::string> AttachedPaths() const;
  size_t attached() const;
  uint64_t attach_failures() const { return attach_failures_; }  // every failed attempt
  uint64_t detaches() const { return detaches_; }

 private:
  struct Entry {
    std::unique_ptr<CgroupAttacher::Attachment> link;
    CgroupAttachmentState state;
  };
  CgroupAttacher& attacher_;
  std::map<std::string, Entry> entries_;  // by path
  uint64_t attach_failures_ = 0, detaches_ = 0;
};

}  // namespace infertap
