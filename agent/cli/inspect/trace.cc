#include "agent/cli/inspect/trace.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <memory>

#include "agent/cli/inspect/agent_client.hpp"
#include "agent/cli/inspect/frame.hpp"
#include "agent/cli/inspect/terminal.hpp"

namespace infertap::cli {
namespace {

// Reads exactly `n` digits at `*p`.
bool Digits(std::string_view s, size_t* p, size_t n, int* out) {
  if (*p + n > s.size()) return false;
  int v = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = s[*p + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *p += n;
  *out = v;
  return true;
}

bool Expect(std::string_view s, size_t* p, std::string_view chars) {
  if (*p >= s.size() || chars.find(s[*p]) == std::string_view::npos) return false;
  ++*p;
  return true;
}

std::string PadTo(std::string s, size_t width, bool right) {
  if (s.size() >= width) return s;
  return right ? std::string(width - s.size(), ' ') + s : s + std::string(width - s.size(), ' ');
}

std::string Tokens(std::optional<int64_t> n) {
  return PadTo(n ? std::to_string(*n) : "-", 6, /*right=*/true);
}

}  // namespace

std::string FormatTraceTime(std::string_view ts) {
  const std::string bad = "??:??:??.???";
  size_t p = 0;
  struct tm tm {};
  int year, mon, day, hour, min, sec;
  if (!Digits(ts, &p, 4, &year) || !Expect(ts, &p, "-") || !Digits(ts, &p, 2, &mon) ||
      !Expect(ts, &p, "-") || !Digits(ts, &p, 2, &day) || !Expect(ts, &p, "Tt ") ||
      !Digits(ts, &p, 2, &hour) || !Expect(ts, &p, ":") || !Digits(ts, &p, 2, &min) ||
      !Expect(ts, &p, ":") || !Digits(ts, &p, 2, &sec)) {
    return bad;
  }
  int ms = 0;
  if (p < ts.size() && ts[p] == '.') {
    ++p;
    size_t digits = 0;
    while (p < ts.size() && ts[p] >= '0' && ts[p] <= '9') {
      // Truncate to milliseconds: a request that started at .1239 did not start at .124.
      if (digits < 3) ms = ms * 10 + (ts[p] - '0');
      ++digits;
      ++p;
    }
    if (digits == 0) return bad;
    for (; digits < 3; ++digits) ms *= 10;
  }
  long offset_s = 0;
  if (p < ts.size() && (ts[p] == 'Z' || ts[p] == 'z')) {
    ++p;
  } else if (p < ts.size() && (ts[p] == '+' || ts[p] == '-')) {
    int sign = ts[p] == '-' ? -1 : 1;
    ++p;
    int oh, om;
    if (!Digits(ts, &p, 2, &oh) || !Expect(ts, &p, ":") || !Digits(ts, &p, 2, &om)) return bad;
    offset_s = sign * (oh * 3600L + om * 60L);
  } else {
    return bad;
  }
  if (p != ts.size() || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
      sec > 60) {
    return bad;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  time_t utc = timegm(&tm) - offset_s;
  struct tm local {};
  localtime_r(&utc, &local);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%02d:%02d:%02d.%03d", local.tm_hour, local.tm_min, local.tm_sec,
                ms);
  return buf;
}

std::string FormatTraceLine(const TopRecord& r) {
  std::string line = FormatTraceTime(r.ts);
  line += ' ' + PadTo(Truncate(Printable(r.pool.empty() ? "-" : r.pool), 12), 12, false);
  line +=
      ' ' + PadTo(Truncate(Printable(r.model_name.empty() ? "-" : r.model_name), 24), 24, false);
  line += ' ' + PadTo(Truncate(std::to_string(r.status), 3), 3, true);
  line += r.stream ? " stream" : " unary ";
  line += ' ' + PadTo(FormatSeconds(r.duration_s), 7, true);
  line += " ttft " + PadTo(FormatSeconds(r.ttft_s), 7, true);
  line += " in " + Tokens(r.input_tokens);
  line += " out " + Tokens(r.output_tokens);
  line += " err " + (r.error_code.empty() ? std::string("-") : Printable(r.error_code));
  return line;
}

int RunTrace(const TraceOptions& options) {
  std::string error;
  std::optional<std::string> url = NormalizeAgentUrl(options.agent, &error);
  if (!url) {
    std::fprintf(stderr, "infertap trace: %s\n", error.c_str());
    return 2;
  }
  // `trace | head` closes our stdout: that is a normal end, seen as a write error (EPIPE).
  std::signal(SIGPIPE, SIG_IGN);
  SignalWatcher signals({SIGINT, SIGTERM, SIGHUP});
  AgentClient client(*url);
  client.StartRecords();

  const double deadline = options.duration_s > 0 ? MonotonicSeconds() + options.duration_s
                                                 : std::numeric_limits<double>::infinity();
  uint64_t printed = 0;
  uint64_t malformed = 0;
  for (;;) {
    double now = MonotonicSeconds();
    if (now >= deadline) return 0;
    pollfd fd{signals.fd(), POLLIN, 0};
    client.Poll(int(std::ceil(std::min(1.0, deadline - now) * 1000)), std::span(&fd, 1));

    std::string out;
    for (const std::string& line : client.TakeRecordLines()) {
      TopRecord r;
      if (!ParseTopRecord(line, &r, &error)) {
        // Say so (a few times), but keep tracing: one bad line is no reason to stop.
        if (++malformed <= 3)
          std::fprintf(stderr, "infertap trace: skipped a record: %s\n", error.c_str());
        continue;
      }
      out += options.json ? line : FormatTraceLine(r);
      out += '\n';
      if (options.count > 0 && ++printed >= options.count) break;
    }
    // One write per batch, flushed at once: `trace | grep` must see lines as they happen.
    if (!out.empty() && !WriteAll(STDOUT_FILENO, out)) {
      if (errno == EPIPE) return 0;
      std::fprintf(stderr, "infertap trace: cannot write to stdout: %s\n", std::strerror(errno));
      return 1;
    }
    if (options.count > 0 && printed >= options.count) return 0;
    if (auto failure = client.TakeRecordsFailure()) {
      if (client.records_never_opened()) {
        std::fprintf(stderr, "%s\n", UnreachableMessage("trace", *url, *failure).c_str());
      } else {
        std::fprintf(stderr, "infertap trace: lost the agent at %s: %s\n", url->c_str(),
                     failure->c_str());
      }
      return 1;
    }
    for (int s : signals.Drain()) {
      if (s == SIGINT || s == SIGTERM || s == SIGHUP) return 0;
    }
  }
}

Runner RegisterTrace(CLI::App& app) {
  auto options = std::make_shared<TraceOptions>();
  CLI::App* sub = app.add_subcommand(
      "trace", "One line per completed request from a running agent (--json for JSON lines)");
  sub->add_option("--agent", options->agent, "URL of the agent's inspection API (--inspect-addr)")
      ->capture_default_str();
  sub->add_flag("--json", options->json,
                "Print each record as the agent's JSON line (docs/records.md)");
  sub->add_option("--count", options->count, "Exit after N records (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--duration", options->duration_s, "Exit after S seconds (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  return [options] { return RunTrace(*options); };
}

}  // namespace infertap::cli
