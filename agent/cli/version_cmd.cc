#include <cstdio>

#include "agent/cli/commands.hpp"
#include "agent/common/version.hpp"

extern "C" {
#include "bpf/infertap_abi.h"
}

namespace infertap::cli {

Runner RegisterVersion(CLI::App& app) {
  app.add_subcommand("version", "Print version and build information");
  return [] {
    std::printf("infertap %s (revision %s, event ABI %d, built %s)\n", kVersion, kRevision,
                IT_ABI_VERSION, kBuildType);
    return 0;
  };
}

}  // namespace infertap::cli
