// What an untraced process pays for the capture (bench/backends/run.sh, figure a): a tight loop
// of small write()+read() pairs on a pipe or a socketpair (unix sockets: never traced, by either
// backend), run by a process outside every traced cgroup. Prints one JSON object: ns per
// iteration (one write and one read) over the whole loop.
//
//   infertap-bench-loop [--mode pipe|socketpair] [--iters N] [--bytes B]
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::string mode = "pipe";
  long iters = 200000;
  size_t bytes = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--mode")
      mode = argv[i + 1];
    else if (k == "--iters")
      iters = std::atol(argv[i + 1]);
    else if (k == "--bytes")
      bytes = std::strtoul(argv[i + 1], nullptr, 10);
    else {
      std::fprintf(stderr, "infertap-bench-loop: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (iters <= 0 || bytes == 0 || bytes > 65536 || (mode != "pipe" && mode != "socketpair")) {
    std::fprintf(stderr, "infertap-bench-loop: bad arguments\n");
    return 2;
  }
  int fds[2];
  const int rc = mode == "pipe" ? pipe(fds) : socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
  if (rc != 0) {
    std::perror("infertap-bench-loop");
    return 1;
  }
  std::vector<char> buf(bytes, 'x');
  const auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < iters; ++i) {
    if (write(fds[1], buf.data(), bytes) != static_cast<ssize_t>(bytes) ||
        read(fds[0], buf.data(), bytes) != static_cast<ssize_t>(bytes)) {
      std::perror("infertap-bench-loop");
      return 1;
    }
  }
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  std::printf("{\"mode\":\"%s\",\"bytes\":%zu,\"iters\":%ld,\"ns_per_iter\":%.2f}\n", mode.c_str(),
              bytes, iters, ns / double(iters));
  return 0;
}
