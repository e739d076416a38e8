#include "agent/cli/inspect/top.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "agent/cli/inspect/agent_client.hpp"
#include "agent/cli/inspect/agent_json.hpp"
#include "agent/cli/inspect/frame.hpp"
#include "agent/cli/inspect/terminal.hpp"
#include "agent/cli/inspect/top_model.hpp"

namespace infertap::cli {
namespace {

// Longer than the client's own connect (3 s) and state (5 s) timeouts, so those report first
// with a precise reason; this is only the backstop for an agent that accepts and never answers.
constexpr double kStartupTimeoutS = 8;

int ToMs(double s) { return int(std::ceil(std::max(0.0, s) * 1000)); }

std::string FormatSecondsShort(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%gs", s);
  return buf;
}

bool IsStopSignal(int s) { return s == SIGINT || s == SIGTERM || s == SIGHUP; }

// Width for a frame printed to a pipe or file: the terminal's if there is one, else $COLUMNS
// (set by interactive shells), else the 80 columns every layout is designed for.
int OnceWidth() {
  int w = 0;
  int h = 0;
  if (TerminalSize(STDOUT_FILENO, &w, &h)) return w;
  if (const char* c = std::getenv("COLUMNS")) {
    int v = std::atoi(c);
    if (v >= 20 && v <= 1000) return v;
  }
  return 80;
}

// Everything one `top` invocation holds; the loops below are its methods so that they share the
// client, the model and the status line without globals.
class TopSession {
 public:
  TopSession(const TopOptions& options, std::string url)
      : options_(options),
        url_(url),
        client_(url),
        model_(TopModel::Options{.window_s = options.window_s}),
        signals_({SIGINT, SIGTERM, SIGHUP, SIGWINCH}) {}

  // Connects (state + record stream). Returns -1 when connected, else the exit code.
  int Connect() {
    client_.StartState();
    client_.StartRecords();
    const double deadline = MonotonicSeconds() + kStartupTimeoutS;
    bool have_state = false;
    while (!have_state || !client_.records_open()) {
      if (MonotonicSeconds() >= deadline) {
        return Fail("no answer within " + std::to_string(int(kStartupTimeoutS)) + " s");
      }
      pollfd fd{signals_.fd(), POLLIN, 0};
      client_.Poll(100, std::span(&fd, 1));
      for (int s : signals_.Drain()) {
        if (IsStopSignal(s)) return 0;
      }
      if (auto r = client_.TakeStateResult()) {
        if (!r->ok) return Fail(r->error);
        AgentState state;
        std::string error;
        if (!ParseAgentState(r->body, &state, &error)) return Fail("/v1/state: " + error);
        model_.SetState(std::move(state));
        have_state = true;
      }
      if (auto f = client_.TakeRecordsFailure()) return Fail("/v1/records: " + *f);
    }
    model_.StartWindow(MonotonicSeconds());
    records_were_open_ = true;
    return -1;
  }

  int RunOnce() {
    const double end = MonotonicSeconds() + options_.interval_s;
    for (;;) {
      double now = MonotonicSeconds();
      if (now >= end) break;
      pollfd fd{signals_.fd(), POLLIN, 0};
      client_.Poll(ToMs(end - now), std::span(&fd, 1));
      Ingest(MonotonicSeconds());
      if (auto f = client_.TakeRecordsFailure()) {
        std::fprintf(stderr, "infertap top: lost the agent at %s: %s\n", url_.c_str(), f->c_str());
        return 1;
      }
      bool stop = false;
      for (int s : signals_.Drain()) stop = stop || IsStopSignal(s);
      // Interrupted: print what was measured so far; the footer says over how long.
      if (stop) break;
    }
    model_.SetNow(MonotonicSeconds());
    model_.set_info({url_, LocalClock(), Status(), /*interactive=*/false});
    std::string frame = RenderFrame(model_, OnceWidth(), 0);
    return WriteAll(STDOUT_FILENO, frame) ? 0 : 1;
  }

  int RunLive() {
    TerminalScreen screen(STDIN_FILENO, STDOUT_FILENO);
    bool keys = screen.reads_keys();
    double next_tick = MonotonicSeconds();
    for (;;) {
      double now = MonotonicSeconds();
      if (now >= next_tick) {
        // Reconnect at most once per interval; the footer shows why the stream stopped.
        if (records_failed_) {
          records_failed_ = false;
          client_.StartRecords();
        }
        client_.StartState();
        Draw(screen, keys, now);
        next_tick += options_.interval_s;
        if (next_tick <= now) next_tick = now + options_.interval_s;  // we were suspended
      }
      pollfd fds[2] = {{signals_.fd(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
      client_.Poll(ToMs(next_tick - now), std::span(fds, keys ? 2 : 1));
      now = MonotonicSeconds();
      HandleNetwork(now);
      for (int s : signals_.Drain()) {
        if (IsStopSignal(s)) return 0;
        if (s == SIGWINCH) Draw(screen, keys, now);
      }
      if (keys && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
        char buf[64];
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        // With VMIN=0 a read of 0 only means "nothing", unless the terminal hung up.
        if ((n == 0 && (fds[1].revents & POLLHUP)) ||
            (n < 0 && errno != EINTR && errno != EAGAIN)) {
          keys = false;  // the terminal went away; SIGHUP normally follows
        }
        for (ssize_t i = 0; i < n; ++i) {
          // Ctrl-C arrives as a byte only if the terminal's ISIG was off; honour it anyway.
          if (buf[i] == 'q' || buf[i] == 'Q' || buf[i] == 3) return 0;
        }
      }
    }
  }

 private:
  int Fail(const std::string& reason) {
    std::fprintf(stderr, "%s\n", UnreachableMessage("top", url_, reason).c_str());
    return 1;
  }

  void Ingest(double now) {
    for (const std::string& line : client_.TakeRecordLines()) {
      TopRecord r;
      std::string error;
      if (ParseTopRecord(line, &r, &error)) {
        model_.AddRecord(r, now);
      } else {
        ++bad_lines_;
      }
    }
  }

  void HandleNetwork(double now) {
    if (!records_were_open_ && client_.records_open()) {
      // A new stream: the samples from before the gap would make the rates lie.
      model_.StartWindow(now);
      records_status_.clear();
    }
    records_were_open_ = client_.records_open();
    Ingest(now);
    if (client_.TakeRecordsFailure()) {
      records_failed_ = true;
      // The footer is one line: the gist, not curl's full sentence (the URL is in the title).
      records_status_ = "agent unreachable (" + client_.records_failure_brief() +
                        "), retrying every " + FormatSecondsShort(options_.interval_s);
    }
    if (auto r = client_.TakeStateResult()) {
      AgentState state;
      std::string error;
      if (!r->ok) {
        state_status_ = "/v1/state: " + r->error;
      } else if (!ParseAgentState(r->body, &state, &error)) {
        state_status_ = "/v1/state: " + error;
      } else {
        model_.SetState(std::move(state));
        state_status_.clear();
      }
    }
  }

  std::string Status() const {
    std::string s = records_status_;
    // With the stream down, a failing /v1/state is the same news; say it once.
    if (records_status_.empty() && !state_status_.empty()) {
      s += (s.empty() ? "" : "; ") + state_status_;
    }
    uint64_t bad = bad_lines_ + client_.overlong_record_lines();
    if (bad > 0) s += (s.empty() ? "" : "; ") + std::to_string(bad) + " malformed records skipped";
    return s;
  }

  void Draw(TerminalScreen& screen, bool keys, double now) {
    int w = 80;
    int h = 24;
    screen.Size(&w, &h);
    model_.SetNow(now);
    model_.set_info({url_, LocalClock(), Status(), keys});
    screen.Draw(RenderFrameLines(model_, w, h));
  }

  const TopOptions& options_;
  std::string url_;
  AgentClient client_;
  TopModel model_;
  SignalWatcher signals_;
  bool records_were_open_ = false;
  bool records_failed_ = false;
  std::string records_status_;
  std::string state_status_;
  uint64_t bad_lines_ = 0;
};

}  // namespace

int RunTop(const TopOptions& options) {
  std::string error;
  std::optional<std::string> url = NormalizeAgentUrl(options.agent, &error);
  if (!url) {
    std::fprintf(stderr, "infertap top: %s\n", error.c_str());
    return 2;
  }
  // A closed pipe (`top --once | head -1`) must end in a write error, not a silent kill.
  std::signal(SIGPIPE, SIG_IGN);
  TopSession session(options, *url);
  if (int rc = session.Connect(); rc >= 0) return rc;
  bool once = options.once || (!options.live && !isatty(STDOUT_FILENO));
  return once ? session.RunOnce() : session.RunLive();
}

Runner RegisterTop(CLI::App& app) {
  auto options = std::make_shared<TopOptions>();
  CLI::App* sub = app.add_subcommand(
      "top",
      "Live table of a running agent: per pool/model req/s, in-flight, error %, p50/p99 "
      "duration, p50 TTFT, tokens/s in and out, queue, KV cache %. q quits.");
  sub->add_option("--agent", options->agent, "URL of the agent's inspection API (--inspect-addr)")
      ->capture_default_str();
  CLI::Option* once = sub->add_flag(
      "--once", options->once,
      "Collect records for one --interval, print one frame without control codes, exit "
      "(the default when stdout is not a terminal)");
  sub->add_flag("--live", options->live, "Full screen even when stdout is not a terminal")
      ->excludes(once);
  sub->add_option("--interval", options->interval_s, "Seconds between refreshes")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  sub->add_option("--window", options->window_s, "Seconds of records behind rates and percentiles")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  return [options] { return RunTop(*options); };
}

}  // namespace infertap::cli
