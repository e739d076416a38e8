#include "agent/capture/bpf_capture.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "agent/capture/bpf_common.hpp"
#include "agent/common/log.hpp"
#include "capture.skel.h"
#include "capture_compat.skel.h"

namespace infertap {
Status CheckCapturePrivileges() {
  return CheckCapabilities({{kCapBpf, "CAP_BPF"}, {kCapPerfmon, "CAP_PERFMON"}});
}

namespace {

// Loads a tiny program whose atomic fetch-and-add result is used (BPF_ATOMIC | BPF_FETCH, 5.12);
// older verifiers reject the encoding ("reserved fields").
bool ProbeFetchAtomics() {
  const bpf_insn insns[] = {
      // *(u64 *)(r10 - 8) = 0
      {BPF_ST | BPF_MEM | BPF_DW, BPF_REG_10, 0, -8, 0},
      // r1 = 1
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 1},
      // r1 = atomic_fetch_add((u64 *)(r10 - 8), r1)
      {BPF_STX | BPF_ATOMIC | BPF_DW, BPF_REG_10, BPF_REG_1, -8, BPF_ADD | BPF_FETCH},
      // r0 = r1; exit
      {BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_0, BPF_REG_1, 0, 0},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  const int fd = bpf_prog_load(BPF_PROG_TYPE_SOCKET_FILTER, nullptr, "GPL", insns,
                               sizeof(insns) / sizeof(insns[0]), nullptr);
  if (fd < 0) return false;
  close(fd);
  return true;
}

bool HelperIn(bpf_prog_type type, bpf_func_id id) {
  return libbpf_probe_bpf_helper(type, id, nullptr) == 1;
}

}  // namespace

std::string_view BpfVariantName(BpfVariant v) {
  switch (v) {
    case BpfVariant::kModern:
      return "modern";
    case BpfVariant::kCompat:
      return "compat";
    default:
      return "auto";
  }
}

BpfVariant VariantFromEnvironment(std::string* error) {
  const char* env = std::getenv("INFERTAP_BPF_VARIANT");
  const std::string v = env ? env : "";
  if (v.empty() || v == "auto") return BpfVariant::kAuto;
  if (v == "modern") return BpfVariant::kModern;
  if (v == "compat") return BpfVariant::kCompat;
  *error = "INFERTAP_BPF_VARIANT='" + v + "' is not one of auto, modern, compat";
  return BpfVariant::kAuto;
}

KernelFeatures ProbeKernelFeatures() {
  KernelFeatures f;
  // libbpf's probes print their failures at warning level: keep them out of the log.
  InstallLibbpfLogging();
  struct stat st {};
  f.btf = stat("/sys/kernel/btf/vmlinux", &st) == 0;
  const int rb = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr);
  if (rb < 0 && rb != -EOPNOTSUPP) {
    f.error = std::string("cannot probe the kernel's BPF features: ") + std::strerror(-rb) +
              " (root or CAP_BPF is needed)";
    return f;
  }
  f.probed = true;
  f.ringbuf = rb == 1;
  f.task_storage = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_TASK_STORAGE, nullptr) == 1 &&
                   HelperIn(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_task_storage_get);
  f.current_task_btf = HelperIn(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_get_current_task_btf);
  f.fetch_atomics = ProbeFetchAtomics();
  f.for_each_map_elem = HelperIn(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_for_each_map_elem);
  f.loop = HelperIn(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_loop);
  return f;
}

std::string KernelFeatures::MissingForModern() const {
  std::string out;
  auto add = [&](bool ok, const char* name) {
    if (ok) return;
    if (!out.empty()) out += ", ";
    out += name;
  };
  add(task_storage, "task storage in tracepoints (5.11/5.13)");
  add(current_task_btf, "bpf_get_current_task_btf (5.11)");
  add(fetch_atomics, "atomic fetch-and-add (5.12)");
  add(for_each_map_elem, "bpf_for_each_map_elem (5.13)");
  add(loop, "bpf_loop (5.17)");
  return out;
}

std::string KernelFeatures::Describe() const {
  if (!probed) return error;
  std::string out;
  auto line = [&](const char* name, bool ok, const char* what) {
    out += std::string(name) + ": " + (ok ? "yes" : "no") + " (" + what + ")\n";
  };
  line("btf", btf, "/sys/kernel/btf/vmlinux, needed by both variants");
  line("ringbuf", ringbuf, "BPF ring buffer, 5.8, needed by both variants");
  line("task_storage", task_storage, "modern: per-thread syscall state");
  line("get_current_task_btf", current_task_btf, "modern");
  line("fetch_atomics", fetch_atomics, "modern: connection ids and stream positions");
  line("for_each_map_elem", for_each_map_elem, "modern: process-exit sweep");
  line("bpf_loop", loop, "modern: payload copy loop");
  return out;
}

namespace {

template <class Skel>
struct SkelOps;
template <>
struct SkelOps<capture_bpf> {
  static capture_bpf* Open() { return capture_bpf__open(); }
  static int Load(capture_bpf* s) { return capture_bpf__load(s); }
  static void Destroy(void* s) { capture_bpf__destroy(static_cast<capture_bpf*>(s)); }
};
template <>
struct SkelOps<capture_compat_bpf> {
  static capture_compat_bpf* Open() { return capture_compat_bpf__open(); }
  static int Load(capture_compat_bpf* s) { return capture_compat_bpf__load(s); }
  static void Destroy(void* s) { capture_compat_bpf__destroy(static_cast<capture_compat_bpf*>(s)); }
};

// What BpfCapture keeps of a loaded object, the same for both skeletons.
struct LoadedObject {
  void* skel = nullptr;
  void (*destroy)(void*) = nullptr;
  bpf_object_skeleton* skeleton = nullptr;
  bpf_map* events = nullptr;
  bpf_map* endpoints = nullptr;
  bpf_map* stats = nullptr;
  __u64* filter_epoch = nullptr;
};

// Opens, configures and loads one variant. On failure nothing stays loaded.
template <class Skel>
Status LoadVariant(const CaptureOptions& options, uint32_t ring, LoadedObject* out) {
  Skel* s = SkelOps<Skel>::Open();
  if (!s) return Status::FromErrno("cannot open the capture BPF object", errno);
  s->rodata->agent_tgid = options.trace_self ? 0 : static_cast<uint32_t>(getpid());
  s->rodata->syscall_cap = options.syscall_cap;
  // The mark scales with the ring: a fixed one above the ring size would never wake us.
  s->rodata->wakeup_bytes = IT_WAKEUP_BYTES(uint64_t(ring));
  if (int err = bpf_map__set_max_entries(s->maps.events, ring); err) {
    SkelOps<Skel>::Destroy(s);
    return Status::FromErrno("cannot size the capture ring buffer", err);
  }
  if (options.conns_max > 0) {
    if (int err = bpf_map__set_max_entries(s->maps.conns, options.conns_max); err) {
      SkelOps<Skel>::Destroy(s);
      return Status::FromErrno("cannot size the kernel connection table", err);
    }
  }
  if (int err = SkelOps<Skel>::Load(s); err) {
    Status st = Status::FromErrno(
        "cannot load the capture BPF programs (" + LastLibbpfMessage() + ")", err);
    SkelOps<Skel>::Destroy(s);
    return st;
  }
  out->skel = s;
  out->destroy = &SkelOps<Skel>::Destroy;
  out->skeleton = s->skeleton;
  out->events = s->maps.events;
  out->endpoints = s->maps.endpoints;
  out->stats = s->maps.stats;
  out->filter_epoch = &s->data->filter_epoch;
  return Status::Ok();
}

Status LoadChosen(BpfVariant v, const CaptureOptions& options, uint32_t ring, LoadedObject* out) {
  return v == BpfVariant::kCompat ? LoadVariant<capture_compat_bpf>(options, ring, out)
                                  : LoadVariant<capture_bpf>(options, ring, out);
}

}  // namespace

BpfCapture::~BpfCapture() {
  ring_.reset();
  // Destroying the skeleton detaches every link and closes every map and program fd.
  if (skel_) destroy_(skel_);
}

size_t BpfCapture::CountLinks() const {
  size_t n = 0;
  for (int i = 0; i < skeleton_->prog_cnt; ++i)
    if (skeleton_->progs[i].link && *skeleton_->progs[i].link) ++n;
  return n;
}

std::unique_ptr<BpfCapture> BpfCapture::Start(const CaptureOptions& options, Status* status) {
  InstallLibbpfLogging();
  if (Status s = CheckCapturePrivileges(); !s) {
    *status = s;
    return nullptr;
  }
  uint32_t ring = options.ring_buffer_bytes;
  if (std::string why = CheckRingBufferSize(ring); !why.empty()) {
    *status = Status::Error(why);
    return nullptr;
  }

  BpfVariant want = options.variant;
  std::string forced_by = "the caller";
  if (want == BpfVariant::kAuto) {
    std::string err;
    want = VariantFromEnvironment(&err);
    if (!err.empty()) {
      *status = Status::Error(err);
      return nullptr;
    }
    forced_by = "INFERTAP_BPF_VARIANT";
  }
  const KernelFeatures f = ProbeKernelFeatures();
  if (!f.probed) {
    *status = Status::Error(f.error);
    return nullptr;
  }
  if (!f.btf) {
    *status = Status::Error(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): infertap needs Linux 5.10+ "
        "built with CONFIG_DEBUG_INFO_BTF=y (docs/capture.md#kernel-requirements)");
    return nullptr;
  }
  if (!f.ringbuf) {
    *status = Status::Error(
        "this kernel has no BPF ring buffer: infertap needs Linux 5.10+ "
        "(docs/capture.md#kernel-requirements)");
    return nullptr;
  }

  std::unique_ptr<BpfCapture> cap(new BpfCapture());

  LoadedObject obj;
  BpfVariant chosen = want;
  std::string reason;
  const std::string missing = f.MissingForModern();
  if (want != BpfVariant::kAuto) {
    reason = "forced by " + forced_by;
    if (Status st = LoadChosen(want, options, ring, &obj); !st) {
      *status = st;
      return nullptr;
    }
  } else if (!missing.empty()) {
    chosen = BpfVariant::kCompat;
    reason = "the kernel lacks " + missing;
    if (Status st = LoadChosen(chosen, options, ring, &obj); !st) {
      *status = st;
      return nullptr;
    }
  } else {
    chosen = BpfVariant::kModern;
    reason = "the kernel has every feature it uses";
    if (Status st = LoadChosen(chosen, options, ring, &obj); !st) {
      // The probes passed but the verifier still refused: the compatible object may load.
      LOG_WARN("the modern capture object failed to load (%s); trying the compatible one",
               st.message().c_str());
      chosen = BpfVariant::kCompat;
      reason = "the modern object failed to load: " + st.message();
      if (Status st2 = LoadChosen(chosen, options, ring, &obj); !st2) {
        *status = st2;
        return nullptr;
      }
    }
  }
  int attach_err = bpf_object__attach_skeleton(obj.skeleton);
  if (attach_err && want == BpfVariant::kAuto && chosen == BpfVariant::kModern) {
    // The modern object's BTF-typed tracepoints (tp_btf) loaded but a kernel refused to
    // attach them: the compatible object uses untyped raw tracepoints.
    const std::string why = LastLibbpfMessage();
    LOG_WARN("the modern capture programs failed to attach (%s); trying the compatible ones",
             why.c_str());
    obj.destroy(obj.skel);
    obj = LoadedObject{};
    chosen = BpfVariant::kCompat;
    reason = "the modern programs failed to attach: " + why;
    if (Status st = LoadChosen(chosen, options, ring, &obj); !st) {
      *status = st;
      return nullptr;
    }
    attach_err = bpf_object__attach_skeleton(obj.skeleton);
  }
  // From here the capture owns the object (its destructor destroys it).
  cap->skel_ = obj.skel;
  cap->destroy_ = obj.destroy;
  cap->skeleton_ = obj.skeleton;
  cap->events_map_ = obj.events;
  cap->endpoints_map_ = obj.endpoints;
  cap->stats_map_ = obj.stats;
  cap->filter_epoch_ = obj.filter_epoch;
  cap->variant_ = chosen;
  cap->variant_reason_ = reason;
  if (attach_err) {
    *status = Status::FromErrno(
        "cannot attach the capture tracepoints (" + LastLibbpfMessage() + ")", attach_err);
    return nullptr;
  }
  LOG_INFO("capture programs: %s variant (%s)", std::string(BpfVariantName(chosen)).c_str(),
           reason.c_str());
  cap->links_ = cap->CountLinks();

  cap->ring_ = std::make_unique<RingReader>();
  if (Status st = cap->ring_->Open(bpf_map__fd(cap->events_map_)); !st) {
    *status = st;
    return nullptr;
  }
  cap->wall_offset_ns_ = CurrentWallOffsetNs();
  *status = Status::Ok();
  return cap;
}

Status BpfCapture::SetEndpoints(const std::vector<TracedEndpoint>& endpoints) {
  KernelEndpointMap map(bpf_map__fd(endpoints_map_));
  EndpointDiffResult res =
      ApplyEndpointDiff(map, endpoints_, endpoints, bpf_map__max_entries(endpoints_map_));
  endpoints_ = std::move(res.in_map);
  // Cached per-fd decisions carry the epoch they were made in; moving it re-decides them.
  if (res.changed()) __atomic_add_fetch(filter_epoch_, 1, __ATOMIC_SEQ_CST);
  return res.status;
}

PollResult BpfCapture::Poll(EventSink& sink, int timeout_ms) {
  return ring_->Poll(sink, timeout_ms);
}

Status BpfCapture::SetAttached(bool attached) {
  if (!attached) {
    bpf_object__detach_skeleton(skeleton_);
    links_ = CountLinks();
    return Status::Ok();
  }
  const int err = bpf_object__attach_skeleton(skeleton_);
  links_ = CountLinks();
  if (err)
    return Status::FromErrno("cannot attach the capture tracepoints (" + LastLibbpfMessage() + ")",
                             err);
  return Status::Ok();
}

std::vector<std::pair<std::string, int>> BpfCapture::ProgramFds() const {
  std::vector<std::pair<std::string, int>> out;
  // The skeleton of whichever variant runs lists its programs.
  for (int i = 0; i < skeleton_->prog_cnt; ++i) {
    const bpf_program* prog = *skeleton_->progs[i].prog;
    out.emplace_back(bpf_program__name(prog), bpf_program__fd(prog));
  }
  return out;
}

KernelStats BpfCapture::ReadStats() const {
  const std::vector<uint64_t> v = SumPerCpuCounters(bpf_map__fd(stats_map_), IT_STAT_MAX);
  KernelStats out;
  out.events = v[IT_STAT_EVENTS];
  out.bytes = v[IT_STAT_BYTES];
  out.lost_events = v[IT_STAT_LOST_EVENTS];
  out.lost_bytes = v[IT_STAT_LOST_BYTES];
  out.conns_full = v[IT_STAT_CONNS_FULL];
  out.gap_bytes = v[IT_STAT_GAP_BYTES];
  out.resolves = v[IT_STAT_RESOLVES];
  return out;
}

}  // namespace infertap
