// `infertap top` (docs/cli.md): a live full-screen table of a running agent's pools and models,
// refreshed every --interval seconds from its local inspection API (docs/serving.md).
//
//   infertap top [--agent URL] [--once] [--live] [--interval S] [--window S]
//
// Live mode (stdout is a terminal, or --live): alternate screen, one frame per interval, `q`
// (or Ctrl-C, SIGTERM, SIGHUP) quits with 0, resizes redraw at once. Rates (req/s, tokens/s) and
// percentiles cover the records that completed in the last --window seconds.
//
// --once (the default when stdout is not a terminal): connect, collect records for one --interval
// so that the rates are measured rather than zero, fetch /v1/state once, print one frame without
// control sequences, exit 0. The agent sends only records that complete after the connection, so
// a shorter interval gives noisier rates, not older ones.
//
// An agent that cannot be reached at start exits 1 with one line naming the URL and the reason.
// If it goes away later, live mode says so in the footer and reconnects every interval.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace infertap::cli {

using Runner = std::function<int()>;

struct TopOptions {
  std::string agent = "http://127.0.0.1:9091";
  bool once = false;
  bool live = false;  // full screen even when stdout is not a terminal
  double interval_s = 1;
  double window_s = 10;
};

// Adds the "top" subcommand to `app`; the runner returns 0 ok, 1 runtime error, 2 usage error.
Runner RegisterTop(CLI::App& app);
int RunTop(const TopOptions& options);

}  // namespace infertap::cli
