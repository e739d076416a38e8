// infertap: the agent and its CLI. See `infertap --help`.
#include <cstdio>
#include <map>
#include <string>

#include "agent/cli/commands.hpp"
#include "agent/cli/inspect/top.hpp"
#include "agent/cli/inspect/trace.hpp"
#include "agent/common/log.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "infertap — eBPF node agent for LLM inference observability.\n"
      "Captures the plaintext HTTP between gateway and model servers and turns it into the\n"
      "inference gateway's metrics, request records and live views."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every subcommand");
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "debug|info|warn|error|off")
      ->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}))
      ->capture_default_str();

  std::map<CLI::App*, infertap::cli::Runner> runners;
  auto add = [&](infertap::cli::Runner r) { runners[app.get_subcommands({}).back()] = r; };
  add(infertap::cli::RegisterRun(app));
  add(infertap::cli::RegisterTop(app));
  add(infertap::cli::RegisterTrace(app));
  add(infertap::cli::RegisterCapture(app));
  add(infertap::cli::RegisterReplay(app));
  add(infertap::cli::RegisterVersion(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return e.get_exit_code() == 0 ? 0 : 2;
  }
  infertap::LogLevel lvl;
  infertap::ParseLogLevel(log_level.c_str(), &lvl);
  infertap::SetLogLevel(lvl);
  for (auto& [sub, run] : runners)
    if (sub->parsed()) return run();
  std::fprintf(stderr, "infertap: no command given (see --help)\n");
  return 2;
}
