// Where a Kubernetes pod's cgroup v2 directory is, from its UID (docs/kubernetes.md "The cgroup
// backend"): what the cgroup backend attaches to in Kubernetes mode.
//
// The kubelet puts every pod in one directory under its "kubepods" cgroup, named from the pod's
// UID and QoS class, spelt by its cgroup driver:
//   cgroupfs  kubepods/pod<uid>                      (Guaranteed)
//             kubepods/burstable/pod<uid>
//             kubepods/besteffort/pod<uid>
//   systemd   kubepods.slice/kubepods-pod<uid_>.slice
//             kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice
//             kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice
// where uid_ is the UID with '-' replaced by '_' (systemd reserves '-' for slice nesting).
//
// The kubelet's --cgroup-root moves "kubepods" below another cgroup (/kubelet/kubepods, or with
// systemd /kubelet.slice/kubelet-kubepods.slice, whose children carry the "kubelet-kubepods"
// prefix). So the kubepods directory is looked for at the given root and one level down, never
// further: the lookup lists the root's entries (bounded) and stats a fixed set of names below
// each, it never walks the tree. Point the root deeper for anything else.
//
// Pure file-system reads (stat, opendir), no BPF: unit-tested on a fake directory tree.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace infertap {

// True when `uid` is a plausible pod UID: 1..64 characters of [0-9a-fA-F-] (an RFC 4122 UUID as
// the API server assigns). Anything else is refused before a path is built from it.
bool ValidPodUid(std::string_view uid);

// The cgroup v2 mount point from /proc/self/mountinfo's text: the first mount of type cgroup2
// whose root is "/" (a cgroup namespace's or bind-mounted subtree has another root), else the
// first cgroup2 mount; "" when there is none. Octal escapes (\040) are decoded.
std::string Cgroup2MountFromMountinfo(std::string_view mountinfo);
// The same for this process ("" when /proc/self/mountinfo cannot be read or has none).
std::string FindCgroup2Mount();

struct PodCgroupLookup {
  std::string path;   // the pod's cgroup directory, "" when not found
  std::string error;  // why not, one line ("" when found)
};

class PodCgroupResolver {
 public:
  explicit PodCgroupResolver(std::string root) : root_(std::move(root)) {}
  const std::string& root() const { return root_; }

  // The kubepods directories under root (at the root, then one level down), as they are now.
  // Listing the root is capped (kMaxRootEntries): a root with more entries is not a cgroup root.
  std::vector<std::string> KubepodsDirs() const;
  // The pod's directory in one of `kubepods_dirs` (from KubepodsDirs(): one scan serves every pod
  // of a pass), trying each QoS class in both spellings; the first that exists wins.
  PodCgroupLookup Find(std::string_view uid, const std::vector<std::string>& kubepods_dirs) const;
  PodCgroupLookup Find(std::string_view uid) const { return Find(uid, KubepodsDirs()); }

  static constexpr size_t kMaxRootEntries = 4096;

 private:
  std::string root_;
};

}  // namespace infertap
