// `infertap trace` (docs/cli.md): one line per completed request, as the agent publishes it.
//
//   infertap trace [--agent URL] [--json] [--count N] [--duration S]
//
// Exits 0 after N records, after S seconds, on SIGINT/SIGTERM/SIGHUP, or when stdout closes;
// 1 when the agent cannot be reached or the stream breaks (the trace would be incomplete).
// --json prints each record line exactly as the agent sent it (docs/records.md JSON). The human
// format has fixed columns (see FormatTraceLine), so `sort`, `awk` and eyes can line it up.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "agent/cli/inspect/agent_json.hpp"

namespace infertap::cli {

using Runner = std::function<int()>;

struct TraceOptions {
  std::string agent = "http://127.0.0.1:9091";
  bool json = false;
  uint64_t count = 0;     // 0 = no limit
  double duration_s = 0;  // 0 = no limit
};

// Adds the "trace" subcommand to `app`; the runner returns 0 ok, 1 runtime error, 2 usage error.
Runner RegisterTrace(CLI::App& app);
int RunTrace(const TraceOptions& options);

// One human line, without '\n'. Columns (widths fixed; a longer pool or model is cut with '~'):
//   time 12 | pool 12 | model 24 | status 3 | stream/unary 6 | duration 7 | "ttft" ttft 7 |
//   "in" input tokens 6 | "out" output tokens 6 | "err" error_code or "-"
//   18:04:05.123 default      llama                    200 stream  1.234s ttft  0.080s in     12
//   out     64 err -
// The time is the request start (`ts`) in local time; "-" marks an unknown value.
std::string FormatTraceLine(const TopRecord& record);
// "2025-01-02T18:04:05.123456789Z" (or with a ±HH:MM offset) → local "18:04:05.123";
// "??:??:??.???" when `ts` is not RFC 3339.
std::string FormatTraceTime(std::string_view ts);

}  // namespace infertap::cli
