// Text of one `infertap top` frame. Pure: the same model and size give the same bytes, which the
// unit tests compare against golden strings; the terminal layer only positions the lines.
//
// Layout (80x24 shown; wider terminals widen the POOL / MODEL column up to 40, narrower ones drop
// the least important columns first: P99, IN/S, OUT/S, TTFT, QUEUE, KV%, ...):
//
//   infertap top  node n1  agent http://127.0.0.1:9091                      18:04:05
//   req/s 3.0  in-flight 2  err 10.0%  pods 1/1  conns 4  lost 0  parse-err 0
//
//   POOL / MODEL      REQ/S INFL  ERR%    P50    P99   TTFT   IN/S  OUT/S QUEUE  KV%
//   default             3.0    2 10.0% 1.500s 3.000s 0.080s    120    600   0.5  12%
//     llama             3.0    2 10.0% 1.500s 3.000s 0.080s    120    600
//   ...                  (rows that do not fit end with "  ... N more rows")
//   q quit  rates over 10s  agent 0.1.0 up 12s      (footer on the last line of the frame)
//
// TTFT is the p50 over streaming records; IN/S and OUT/S are tokens per second; QUEUE and KV%
// are the pool's averages over its fresh pods (docs/pool-gauges.md). A status (agent unreachable,
// malformed records) goes into the footer right after "q quit".
//
// Pool rows aggregate their models and carry the pool gauges (average queue, KV cache %), model
// rows are indented under their pool. Unknown values are "-". Every byte of text that came from
// the agent is made printable ASCII first, so a model name cannot smuggle escape sequences into
// the operator's terminal.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/cli/inspect/top_model.hpp"

namespace infertap::cli {

// Exactly `height` lines when height > 0 (blank lines between the table and the footer), or as
// many lines as the content needs when height <= 0 (for --once). No line is longer than `width`
// bytes, none has trailing spaces, and there is no terminal control sequence anywhere.
std::vector<std::string> RenderFrameLines(const TopModel& model, int width, int height);
// The same lines, each followed by '\n'.
std::string RenderFrame(const TopModel& model, int width, int height);

// Cell formats, exposed for tests. Each returns "-" for nullopt and fits the column it feeds.
std::string FormatRate(std::optional<double> per_s);     // 6 wide: 3.0  250  12345  123k
std::string FormatSeconds(std::optional<double> s);      // 6 wide: 0.080s 12.35s 123.5s 1234s
std::string FormatPercent(std::optional<double> ratio);  // 5 wide: 0.0% 12.5% 100%
std::string FormatCount(std::optional<int64_t> n, int width);
std::string FormatDuration(double seconds);  // uptime: 12s 5m03s 2h05m 3d04h
// Printable ASCII only: control bytes and non-ASCII bytes become '?'.
std::string Printable(std::string_view text);
// Cuts to `width` bytes, marking a cut with a trailing '~'.
std::string Truncate(std::string_view text, size_t width);

}  // namespace infertap::cli
