// `infertap run` startup and shutdown behaviour (docs/cli.md, docs/faults.md): clear one-line
// errors with the right exit codes, and nothing left in the kernel after a graceful stop.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test/common/require.hpp"
#include "test/e2e/e2e_util.hpp"

namespace infertap::e2e {
namespace {

std::string Bin() { return InfertapBinary(); }

// BPF program ids a process holds open (its fdinfo shows "prog_id:" for program fds).
std::vector<int> ProgramIdsOf(pid_t pid) {
  std::vector<int> ids;
  std::string out;
  Sh("grep -h '^prog_id:' /proc/" + std::to_string(pid) + "/fdinfo/* 2>/dev/null", &out);
  std::istringstream in(out);
  std::string key;
  int id;
  while (in >> key >> id) ids.push_back(id);
  return ids;
}

bool ProgramExists(int id) { return Sh("bpftool prog show id " + std::to_string(id)) == 0; }

TEST(RunCli, BadFlagsAreUsageErrors) {
  std::string out;
  EXPECT_EQ(Sh(Bin() + " run --target nonsense --metrics-auth none", &out), 2) << out;
  EXPECT_NE(out.find("invalid endpoint 'nonsense'"), std::string::npos) << out;
  EXPECT_EQ(Sh(Bin() + " run --metrics-auth sometimes", &out), 2) << out;
  EXPECT_EQ(Sh(Bin() + " run --engine nope --metrics-auth none", &out), 2) << out;
  EXPECT_NE(out.find("unknown --engine 'nope'"), std::string::npos) << out;
  EXPECT_EQ(Sh(Bin() + " run --config /nonexistent.json --metrics-auth none", &out), 2) << out;
  EXPECT_NE(out.find("cannot read --config /nonexistent.json"), std::string::npos) << out;
  const std::string cfg = TempFile("bad-config.json");
  std::ofstream(cfg) << R"({"pools":[{"name":"p","targets":["1.2.3.4"]}]})";
  EXPECT_EQ(Sh(Bin() + " run --config " + cfg + " --metrics-auth none", &out), 2) << out;
  EXPECT_NE(out.find("pool p: invalid endpoint '1.2.3.4'"), std::string::npos) << out;
  std::remove(cfg.c_str());
  EXPECT_EQ(Sh(Bin() + " run --model-alias broken --metrics-auth none", &out), 2) << out;
  EXPECT_NE(out.find("expected TARGET=MODEL"), std::string::npos) << out;
}

// Mode selection and Kubernetes-mode usage errors (docs/kubernetes.md): all exit 2 with one line,
// before anything starts.
TEST(RunCli, KubernetesModeUsageErrors) {
  std::string out;
  // kubernetes auth outside a cluster needs the API server to review tokens.
  EXPECT_EQ(Sh("env -u KUBERNETES_SERVICE_HOST " + Bin() + " run --metrics-auth kubernetes", &out),
            2)
      << out;
  EXPECT_NE(out.find("--metrics-auth=kubernetes outside a cluster needs --kubeconfig"),
            std::string::npos)
      << out;
  // Kubernetes mode with no node name.
  EXPECT_EQ(
      Sh("env -u NODE_NAME " + Bin() + " run --kubeconfig /nonexistent --metrics-auth none", &out),
      2)
      << out;
  EXPECT_NE(out.find("needs the node name: --node NAME or NODE_NAME"), std::string::npos) << out;
  EXPECT_NE(out.find("(--kubeconfig /nonexistent)"), std::string::npos) << out;
  // In a pod (auto mode) with no node name: the same error, naming why it is Kubernetes mode.
  EXPECT_EQ(Sh("env -u NODE_NAME KUBERNETES_SERVICE_HOST=10.0.0.1 " + Bin() + " run", &out), 2)
      << out;
  EXPECT_NE(out.find("running in a pod"), std::string::npos) << out;
  // A kubeconfig that cannot be read.
  EXPECT_EQ(Sh(Bin() + " run --kubeconfig /nonexistent --node n1 --metrics-auth none", &out), 2)
      << out;
  EXPECT_NE(out.find("/nonexistent"), std::string::npos) << out;
  // In a pod without the service-account files: the in-cluster config error, never a start.
  EXPECT_EQ(Sh("KUBERNETES_SERVICE_HOST=10.0.0.1 KUBERNETES_SERVICE_PORT=443 NODE_NAME=n1 " +
                   Bin() + " run",
               &out),
            2)
      << out;
  // --kubeconfig and --target are exclusive; --namespace needs Kubernetes mode.
  EXPECT_EQ(Sh(Bin() + " run --kubeconfig k --target :8000 --node n1", &out), 2) << out;
  EXPECT_NE(out.find("give one or the other"), std::string::npos) << out;
  EXPECT_EQ(Sh("env -u KUBERNETES_SERVICE_HOST " + Bin() +
                   " run --namespace ml --metrics-auth none --target :8000",
               &out),
            2)
      << out;
  EXPECT_NE(out.find("--namespace needs Kubernetes mode"), std::string::npos) << out;
  EXPECT_EQ(Sh(Bin() + " run --kube-context c --node n1 --metrics-auth none", &out), 2) << out;
  EXPECT_NE(out.find("--kube-context needs --kubeconfig"), std::string::npos) << out;
}

TEST(RunCli, WithoutPrivilegesExitsOneSayingWhatIsMissing) {
  if (geteuid() != 0) {
    std::string out;
    EXPECT_EQ(Sh(Bin() + " run --metrics-auth none", &out), 1);
    EXPECT_NE(out.find("CAP_BPF"), std::string::npos) << out;
    return;
  }
  INFERTAP_NEED_TOOL("setpriv");
  const std::string bin = InfertapBinaryForNobody();
  ASSERT_FALSE(bin.empty());
  std::string out;
  EXPECT_EQ(Sh("setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all " + bin +
                   " run --metrics-auth none --metrics-addr 127.0.0.1:0",
               &out),
            1);
  EXPECT_NE(out.find("needs root or CAP_BPF+CAP_PERFMON"), std::string::npos) << out;
}

TEST(RunCli, MetricsPortInUseIsAClearError) {
  INFERTAP_REQUIRE_BPF_OR_SKIP();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string port = std::to_string(ntohs(a.sin_port));
  std::string out;
  EXPECT_EQ(Sh(Bin() + " run --metrics-auth none --metrics-addr 127.0.0.1:" + port, &out), 1);
  EXPECT_NE(out.find("cannot listen on 127.0.0.1:" + port + ": Address already in use"),
            std::string::npos)
      << out;
  close(fd);
}

// Graceful stop on SIGTERM and SIGINT releases every BPF program (no leaked links or pins).
TEST(RunCli, GracefulStopReleasesEveryProgram) {
  INFERTAP_REQUIRE_BPF_OR_SKIP();
  ASSERT_EQ(Sh("command -v bpftool || test -x /usr/sbin/bpftool"), 0)
      << "bpftool is a build dependency (scripts/install-deps.sh)";
  for (int sig : {SIGTERM, SIGINT}) {
    CaptureProcess agent({"run", "--target", "127.0.0.1:18999", "--metrics-auth", "none",
                          "--metrics-addr", "127.0.0.1:0", "--inspect-addr", "127.0.0.1:0"});
    std::string err;
    ASSERT_TRUE(agent.Start(&err, "running: tracing")) << err;
    std::vector<int> ids = ProgramIdsOf(agent.pid());  // program fds and link fds name them
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    // sys_enter, sys_exit and sched_process_exit (the compatible variant adds its tail call).
    EXPECT_GE(ids.size(), 3u);
    for (int id : ids) EXPECT_TRUE(ProgramExists(id)) << "program " << id;
    EXPECT_EQ(agent.Stop(sig), 0) << agent.err();
    EXPECT_NE(agent.err().find("shutting down"), std::string::npos) << agent.err();
    // The kernel frees a released program after an RCU grace period, so give it a moment; a
    // program held by a leaked link or pin stays.
    for (int id : ids) {
      bool gone = false;
      for (int i = 0; i < 100 && !(gone = !ProgramExists(id)); ++i) usleep(20000);
      EXPECT_TRUE(gone) << "program " << id << " left in the kernel 2 s after signal " << sig;
    }
  }
}

}  // namespace
}  // namespace infertap::e2e
