// The `top` and `trace` subcommands behind a CLI11 front end that parses exactly like
// agent/cli/main.cc (exit 2 on usage errors), so the CLI and tmux tests run the real commands
// without depending on the rest of the agent being built.
#include <CLI/CLI.hpp>
#include <map>

#include "agent/cli/inspect/top.hpp"
#include "agent/cli/inspect/trace.hpp"

int main(int argc, char** argv) {
  CLI::App app{"infertap top/trace (test driver)"};
  app.require_subcommand(1);
  std::map<CLI::App*, infertap::cli::Runner> runners;
  auto add = [&](infertap::cli::Runner r) { runners[app.get_subcommands({}).back()] = r; };
  add(infertap::cli::RegisterTop(app));
  add(infertap::cli::RegisterTrace(app));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return e.get_exit_code() == 0 ? 0 : 2;
  }
  for (auto& [sub, run] : runners) {
    if (sub->parsed()) return run();
  }
  return 2;
}
