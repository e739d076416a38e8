// Subcommands of the `infertap` CLI (docs/cli.md). Each Register* adds its CLI11 subcommand and
// returns the function that runs it after parsing. Exit codes: 0 ok, 1 runtime error, 2 usage.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace infertap::cli {

using Runner = std::function<int()>;

Runner RegisterRun(CLI::App& app);
Runner RegisterCapture(CLI::App& app);
Runner RegisterReplay(CLI::App& app);
Runner RegisterVersion(CLI::App& app);

// Shared by commands that loop until a deadline or a signal.
void InstallStopSignals();
bool StopRequested();

}  // namespace infertap::cli
