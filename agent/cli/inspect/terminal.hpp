// The terminal and signal plumbing of `infertap top` / `trace`: plain ANSI (VT100) sequences, no
// ncurses, so the views work in any terminal that `kubectl exec -it` gives (and in a scratch image
// without terminfo).
#pragma once

#include <signal.h>
#include <termios.h>

#include <initializer_list>
#include <string>
#include <vector>

namespace infertap::cli {

// Turns signals into bytes on a pipe that a poll loop can wait on (the self-pipe trick), so a
// signal wakes the loop instead of interrupting it at an arbitrary point. The handler only writes
// one byte, which is async-signal-safe. One watcher at a time: the handler needs a process-global
// pipe, the only global state here. The previous dispositions come back on destruction.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::initializer_list<int> signals);
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

  int fd() const { return read_fd_; }
  // The signals delivered since the last call, in order.
  std::vector<int> Drain();

 private:
  int read_fd_ = -1;
  int write_fd_ = -1;
  std::vector<std::pair<int, struct sigaction>> previous_;
};

// Full-screen session: alternate screen, hidden cursor, and (when `in_fd` is a terminal) input
// without line buffering or echo so that a single `q` arrives at once. Everything is undone in
// the destructor, which runs on every exit path of the view (q, SIGINT/SIGTERM/SIGHUP via the
// SignalWatcher, errors), so the user's shell is never left raw.
class TerminalScreen {
 public:
  TerminalScreen(int in_fd, int out_fd);
  ~TerminalScreen();
  TerminalScreen(const TerminalScreen&) = delete;
  TerminalScreen& operator=(const TerminalScreen&) = delete;

  bool reads_keys() const { return raw_; }
  // Current size of the output terminal; false when unknown.
  bool Size(int* width, int* height) const;
  // Draws the lines from the top-left corner in one write, clearing what each line does not
  // cover; lines must already fit the width (RenderFrameLines guarantees it).
  void Draw(const std::vector<std::string>& lines);

 private:
  int in_fd_;
  int out_fd_;
  bool raw_ = false;
  struct termios saved_ {};
};

// Writes all of `data` (retrying short writes and EINTR); false on error.
bool WriteAll(int fd, const std::string& data);

// Terminal size of `fd`; false when `fd` is not a terminal or the size is unknown.
bool TerminalSize(int fd, int* width, int* height);

// Seconds on CLOCK_MONOTONIC.
double MonotonicSeconds();
// The local wall-clock time, "HH:MM:SS".
std::string LocalClock();

}  // namespace infertap::cli
