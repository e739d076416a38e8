// What a test needs from the machine (a tool on PATH, ptrace, an IPv6 loopback, root + BPF).
//
// On a developer's machine a test whose need is not met is skipped with the reason. Under
// INFERTAP_REQUIRE_BPF=1 — what .ci/run sets — it fails instead, naming what is missing: CI and
// the fresh-machine check install everything (scripts/install-deps.sh), so a missing need there
// is a defect of the project, never something to pass quietly (docs/testing.md).
#pragma once

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

namespace infertap::test_env {

// INFERTAP_REQUIRE_BPF=1: every test must run.
inline bool EveryTestMustRun() {
  const char* v = std::getenv("INFERTAP_REQUIRE_BPF");
  return v != nullptr && std::string(v) == "1";
}

// True when `tool` is an executable on PATH.
inline bool HaveTool(const std::string& tool) {
  const std::string cmd = "command -v '" + tool + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace infertap::test_env

// In a test body (or SetUp): the test cannot run because of `why`. Skips, or fails under
// INFERTAP_REQUIRE_BPF=1.
#define INFERTAP_CANNOT_RUN(why)                                                  \
  do {                                                                            \
    const std::string infertap_why_ = (why);                                      \
    if (::infertap::test_env::EveryTestMustRun())                                  \
      FAIL() << "INFERTAP_REQUIRE_BPF=1, but this test cannot run: " << infertap_why_; \
    GTEST_SKIP() << infertap_why_;                                                \
  } while (0)

// In a test body: `tool` must be on PATH (installed by scripts/install-deps.sh).
#define INFERTAP_NEED_TOOL(tool)                                                           \
  do {                                                                                     \
    if (!::infertap::test_env::HaveTool(tool))                                              \
      INFERTAP_CANNOT_RUN(std::string(tool) + " is not installed (scripts/install-deps.sh)"); \
  } while (0)
