#include "agent/cli/inspect/terminal.hpp"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <ctime>

namespace infertap::cli {
namespace {

// Written only while a SignalWatcher exists; read by the handler.
volatile std::sig_atomic_t g_signal_fd = -1;

void OnSignal(int signo) {
  int saved = errno;  // the interrupted code may be about to read errno
  unsigned char b = static_cast<unsigned char>(signo);
  if (g_signal_fd >= 0) {
    // A full pipe just loses a duplicate wake-up; the loop drains it soon.
    [[maybe_unused]] ssize_t n = write(g_signal_fd, &b, 1);
  }
  errno = saved;
}

// Alternate screen + hidden cursor on entry; shown cursor, normal screen and attributes on exit.
constexpr char kEnter[] = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J";
constexpr char kLeave[] = "\x1b[0m\x1b[?25h\x1b[?1049l";

}  // namespace

SignalWatcher::SignalWatcher(std::initializer_list<int> signals) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    g_signal_fd = write_fd_;
  }
  for (int s : signals) {
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    struct sigaction old {};
    sigaction(s, &sa, &old);
    previous_.emplace_back(s, old);
  }
}

SignalWatcher::~SignalWatcher() {
  for (auto& [s, old] : previous_) sigaction(s, &old, nullptr);
  g_signal_fd = -1;
  if (read_fd_ >= 0) close(read_fd_);
  if (write_fd_ >= 0) close(write_fd_);
}

std::vector<int> SignalWatcher::Drain() {
  std::vector<int> out;
  unsigned char buf[64];
  ssize_t n;
  while (read_fd_ >= 0 && (n = read(read_fd_, buf, sizeof(buf))) > 0) {
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

TerminalScreen::TerminalScreen(int in_fd, int out_fd) : in_fd_(in_fd), out_fd_(out_fd) {
  if (isatty(in_fd_) && tcgetattr(in_fd_, &saved_) == 0) {
    struct termios raw = saved_;
    // No line buffering, no echo, no XON/XOFF (Ctrl-S would freeze the view). ISIG stays on so
    // Ctrl-C still sends SIGINT, which the view handles like q. Output processing stays on.
    raw.c_lflag &= ~tcflag_t(ICANON | ECHO);
    raw.c_iflag &= ~tcflag_t(IXON);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    raw_ = tcsetattr(in_fd_, TCSAFLUSH, &raw) == 0;
  }
  WriteAll(out_fd_, kEnter);
}

TerminalScreen::~TerminalScreen() {
  WriteAll(out_fd_, kLeave);
  if (raw_) tcsetattr(in_fd_, TCSAFLUSH, &saved_);
}

bool TerminalScreen::Size(int* width, int* height) const {
  return TerminalSize(out_fd_, width, height);
}

void TerminalScreen::Draw(const std::vector<std::string>& lines) {
  std::string out = "\x1b[H";
  for (size_t i = 0; i < lines.size(); ++i) {
    out += lines[i];
    out += "\x1b[K";  // erase the rest of the previous frame's line
    // No newline after the last line: on the bottom row it would scroll the screen.
    if (i + 1 < lines.size()) out += "\r\n";
  }
  out += "\x1b[J";  // and anything below (the terminal may have grown)
  WriteAll(out_fd_, out);
}

bool WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

bool TerminalSize(int fd, int* width, int* height) {
  struct winsize ws {};
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0 || ws.ws_col == 0 || ws.ws_row == 0) return false;
  *width = ws.ws_col;
  *height = ws.ws_row;
  return true;
}

double MonotonicSeconds() {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

std::string LocalClock() {
  time_t now = time(nullptr);
  struct tm tm {};
  localtime_r(&now, &tm);
  char buf[16];
  strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  return buf;
}

}  // namespace infertap::cli
