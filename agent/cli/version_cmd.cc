#include <cstdio>
#include <memory>
#include <string>

#include "agent/capture/bpf_capture.hpp"
#include "agent/cli/commands.hpp"
#include "agent/common/version.hpp"

extern "C" {
#include "bpf/infertap_abi.h"
}

namespace infertap::cli {

Runner RegisterVersion(CLI::App& app) {
  auto* cmd = app.add_subcommand("version", "Print version and build information");
  auto features = std::make_shared<bool>(false);
  cmd->add_flag("--features", *features,
                "Also probe this kernel's BPF features and say which capture variant would run "
                "(docs/capture.md#kernel-requirements; needs root or CAP_BPF)");
  return [features] {
    std::printf("infertap %s (revision %s, event ABI %d, built %s)\n", kVersion, kRevision,
                IT_ABI_VERSION, kBuildType);
    if (!*features) return 0;
    const KernelFeatures f = ProbeKernelFeatures();
    if (!f.probed) {
      std::fprintf(stderr, "infertap: %s\n", f.error.c_str());
      return 1;
    }
    std::printf("%s", f.Describe().c_str());
    std::string err;
    const BpfVariant forced = VariantFromEnvironment(&err);
    if (!err.empty()) {
      std::fprintf(stderr, "infertap: %s\n", err.c_str());
      return 1;
    }
    const std::string missing = f.MissingForModern();
    if (!f.btf || !f.ringbuf)
      std::printf("capture variant: none (this kernel cannot run the capture programs)\n");
    else if (forced != BpfVariant::kAuto)
      std::printf("capture variant: %s (forced by INFERTAP_BPF_VARIANT)\n",
                  std::string(BpfVariantName(forced)).c_str());
    else if (missing.empty())
      std::printf("capture variant: modern (the kernel has every feature it uses)\n");
    else
      std::printf("capture variant: compat (the kernel lacks %s)\n", missing.c_str());
    return 0;
  };
}

}  // namespace infertap::cli
