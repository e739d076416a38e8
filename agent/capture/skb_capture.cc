#include "agent/capture/skb_capture.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/capture/abi.hpp"
#include "agent/capture/bpf_common.hpp"
#include "agent/common/log.hpp"
#include "capture_skb.skel.h"

namespace infertap {

Status CheckSkbCapturePrivileges() {
  return CheckCapabilities({{kCapBpf, "CAP_BPF"}, {kCapNetAdmin, "CAP_NET_ADMIN"}});
}

std::string CheckCgroupDirectory(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return "cgroup directory " + path + " does not exist";
    return "cannot stat cgroup directory " + path + ": " + std::strerror(errno);
  }
  if (!S_ISDIR(st.st_mode)) return path + " is not a directory (a cgroup v2 directory is needed)";
  struct statfs fs {};
  if (statfs(path.c_str(), &fs) != 0) return "cannot statfs " + path + ": " + std::strerror(errno);
  if (fs.f_type != CGROUP2_SUPER_MAGIC)
    return path +
           " is not on a cgroup v2 (cgroup2) filesystem; with a hybrid layout the v2 hierarchy "
           "is usually /sys/fs/cgroup/unified";
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return "cannot open cgroup directory " + path + ": " + std::strerror(errno);
  close(fd);
  return "";
}

namespace {

// Both programs' links on one cgroup.
class SkbLinks : public CgroupAttacher::Attachment {
 public:
  ~SkbLinks() override {
    for (bpf_link* l : links)
      if (l) bpf_link__destroy(l);
  }
  bpf_link* links[2] = {nullptr, nullptr};
};

}  // namespace

SkbCapture::~SkbCapture() {
  ring_.reset();
  attachments_.reset();
  if (skel_) capture_skb_bpf__destroy(skel_);
}

std::unique_ptr<CgroupAttacher::Attachment> SkbCapture::Attach(const std::string& path,
                                                               uint64_t* cgroup_id,
                                                               std::string* error) {
  if (std::string why = CheckCgroupDirectory(path); !why.empty()) {
    *error = why;
    return nullptr;
  }
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *error = "cannot open cgroup directory " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  // The cgroup v2 id bpf_skb_cgroup_id() reports is the directory's kernfs id, its inode number.
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    *error = "cannot stat cgroup directory " + path + ": " + std::strerror(errno);
    close(fd);
    return nullptr;
  }
  *cgroup_id = uint64_t(st.st_ino);
  // A BPF link per program and cgroup (5.7): attached with BPF_F_ALLOW_MULTI semantics, so
  // programs others attached to the same cgroup (systemd's, a CNI's) keep running, and the
  // link goes away with our fd even if we are killed. The cgroup fd is not needed after.
  auto links = std::make_unique<SkbLinks>();
  int i = 0;
  for (bpf_program* prog : {skel_->progs.skb_ingress, skel_->progs.skb_egress}) {
    bpf_link* link = bpf_program__attach_cgroup(prog, fd);
    if (!link) {
      const int err = errno;
      *error = "cannot attach " + std::string(bpf_program__name(prog)) + " to " + path + ": " +
               std::strerror(err) +
               (err == EPERM || err == EACCES ? " (needs root or CAP_BPF+CAP_NET_ADMIN)" : "");
      close(fd);
      return nullptr;  // `links` detaches the program attached already
    }
    links->links[i++] = link;
  }
  close(fd);
  return links;
}

CgroupSetChange SkbCapture::SetCgroups(const std::vector<std::string>& wanted) {
  return attachments_->Set(wanted);
}

std::unique_ptr<SkbCapture> SkbCapture::Start(const SkbCaptureOptions& options, Status* status) {
  InstallLibbpfLogging();
  if (Status s = CheckSkbCapturePrivileges(); !s) {
    *status = s;
    return nullptr;
  }
  for (const std::string& path : options.cgroups) {
    if (std::string why = CheckCgroupDirectory(path); !why.empty()) {
      *status = Status::Error(why);
      return nullptr;
    }
  }
  const uint32_t ring = options.ring_buffer_bytes;
  if (std::string why = CheckRingBufferSize(ring); !why.empty()) {
    *status = Status::Error(why);
    return nullptr;
  }
  if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr) != 1) {
    *status = Status::Error(
        "this kernel has no BPF ring buffer: the cgroup backend needs Linux 5.10+ "
        "(docs/capture.md#the-cgroup-backend)");
    return nullptr;
  }

  std::unique_ptr<SkbCapture> cap(new SkbCapture());
  cap->skel_ = capture_skb_bpf__open();
  if (!cap->skel_) {
    *status = Status::FromErrno("cannot open the cgroup capture BPF object", errno);
    return nullptr;
  }
  cap->skel_->rodata->wakeup_bytes = IT_WAKEUP_BYTES(uint64_t(ring));
  if (int err = bpf_map__set_max_entries(cap->skel_->maps.events, ring); err) {
    *status = Status::FromErrno("cannot size the capture ring buffer", err);
    return nullptr;
  }
  if (int err = capture_skb_bpf__load(cap->skel_); err) {
    *status = Status::FromErrno(
        "cannot load the cgroup capture BPF programs (" + LastLibbpfMessage() + ")", err);
    return nullptr;
  }
  CgroupAttacher& attacher = *cap;  // a private base: reachable here, not from make_unique
  cap->attachments_ = std::make_unique<CgroupAttachments>(attacher);
  // The cgroups given at start are required: a failure here is the caller's error, reported
  // once by it (no "retrying" warning first: nothing retries it).
  if (CgroupSetChange c =
          cap->attachments_->Set(options.cgroups, CgroupAttachments::Failure::kReport);
      !c.failed.empty()) {
    *status = Status::Error(c.first_error);
    return nullptr;
  }
  cap->ring_ = std::make_unique<RingReader>();
  if (Status st = cap->ring_->Open(bpf_map__fd(cap->skel_->maps.events)); !st) {
    *status = st;
    return nullptr;
  }
  cap->wall_offset_ns_ = CurrentWallOffsetNs();
  std::string list;
  for (const std::string& c : cap->cgroups()) list += (list.empty() ? "" : ", ") + c;
  LOG_INFO("capture programs: cgroup_skb ingress+egress on %s",
           list.empty() ? "no cgroup yet (attached as they are found)" : list.c_str());
  *status = Status::Ok();
  return cap;
}

Status SkbCapture::SetEndpoints(const std::vector<TracedEndpoint>& endpoints) {
  // Role server only: the packets' local side is what the programs match.
  std::vector<TracedEndpoint> servers;
  for (const TracedEndpoint& e : endpoints)
    if (e.roles & IT_ROLE_SERVER) servers.push_back({e.endpoint, IT_ROLE_SERVER, e.pool_index});
  KernelEndpointMap map(bpf_map__fd(skel_->maps.endpoints));
  EndpointDiffResult res =
      ApplyEndpointDiff(map, endpoints_, servers, bpf_map__max_entries(skel_->maps.endpoints));
  endpoints_ = std::move(res.in_map);
  return res.status;
}

PollResult SkbCapture::Poll(EventSink& sink, int timeout_ms) {
  return ring_->Poll(sink, timeout_ms);
}

SkbKernelStats SkbCapture::ReadStats() const {
  const std::vector<uint64_t> v =
      SumPerCpuCounters(bpf_map__fd(skel_->maps.skb_stats), IT_SKB_STAT_MAX);
  SkbKernelStats s;
  s.packets = v[IT_SKB_STAT_PACKETS];
  s.events = v[IT_SKB_STAT_EVENTS];
  s.bytes = v[IT_SKB_STAT_BYTES];
  s.lost_events = v[IT_SKB_STAT_LOST_EVENTS];
  s.lost_bytes = v[IT_SKB_STAT_LOST_BYTES];
  s.skipped = v[IT_SKB_STAT_SKIPPED];
  s.acks = v[IT_SKB_STAT_ACKS];
  s.unreadable = v[IT_SKB_STAT_UNREADABLE];
  return s;
}

std::vector<std::pair<std::string, int>> SkbCapture::ProgramFds() const {
  return {{bpf_program__name(skel_->progs.skb_ingress), bpf_program__fd(skel_->progs.skb_ingress)},
          {bpf_program__name(skel_->progs.skb_egress), bpf_program__fd(skel_->progs.skb_egress)}};
}

}  // namespace infertap
