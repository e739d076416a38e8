// `infertap run`: the agent (docs/cli.md): capture → parse → records → metrics live, pool
// gauges from the model servers' /metrics, Prometheus on --metrics-addr, the local inspection
// API for `top`/`trace` on --inspect-addr.
//
// Mode (docs/kubernetes.md): Kubernetes when --kubeconfig is given, or when running in a pod
// (KUBERNETES_SERVICE_HOST set) and neither --target nor --config is; otherwise standalone
// (flags / --config). The choice and its reason are logged at startup.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "agent/capture/pod_cgroup.hpp"
#include "agent/capture/skb_capture.hpp"
#include "agent/cli/commands.hpp"
#include "agent/cli/targets.hpp"
#include "agent/common/log.hpp"
#include "agent/common/version.hpp"
#include "agent/core/agent.hpp"
#include "agent/serve/auth.hpp"
#include "agent/topology/kubernetes_source.hpp"
#include "agent/topology/static_source.hpp"
#include "k8s/authorizer.hpp"
#include "k8s/config.hpp"
#include "k8s/rest_client.hpp"

namespace infertap::cli {
namespace {

struct RunArgs {
  TargetArgs targets;
  AttributionArgs attribution;
  std::string engine = "auto";
  std::string config;
  std::string metrics_addr = ":9090";
  std::string metrics_auth = "auto";
  std::string tls_cert, tls_key;
  std::string inspect_addr = "127.0.0.1:9091";
  bool inspect_allow_remote = false;
  std::string metrics_path = "/metrics";
  double poll_interval_s = 1.0;
  double staleness_s = 2.0;
  uint32_t ring_bytes = 16u << 20;
  uint32_t syscall_cap = IT_DEFAULT_SYSCALL_CAP;
  std::string capture_backend;  // "": cgroup when --capture-cgroup is given, else syscall
  std::vector<std::string> capture_cgroups;
  std::string cgroup_root;  // Kubernetes mode, cgroup backend: where the pods' cgroups are
  std::vector<std::string> extra_paths;
  std::string kubeconfig;
  std::string kube_context;
  std::string ns;  // --namespace; "" = all
  // Set by RegisterRun: which flags were given explicitly (for mode selection and warnings).
  CLI::App* cmd = nullptr;
};

int Fail(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "infertap run: %s\n", msg.c_str());
  return code;
}

// Which topology source, from the flags and the environment.
struct Mode {
  bool kubernetes = false;
  std::string why;  // for the startup log
};

Status ChooseMode(const RunArgs& a, bool in_cluster, Mode* out) {
  const bool standalone_flags = !a.targets.targets.empty() || !a.config.empty();
  if (!a.kube_context.empty() && a.kubeconfig.empty())
    return Status::Error("--kube-context needs --kubeconfig");
  if (!a.kubeconfig.empty()) {
    if (standalone_flags)
      return Status::Error(
          "--kubeconfig selects Kubernetes mode; --target and --config are for standalone mode "
          "(give one or the other)");
    *out = {true, "--kubeconfig " + a.kubeconfig};
    return Status::Ok();
  }
  if (in_cluster && !standalone_flags) {
    *out = {true, "running in a pod (KUBERNETES_SERVICE_HOST is set, no --target/--config)"};
    return Status::Ok();
  }
  if (!a.ns.empty())
    return Status::Error("--namespace needs Kubernetes mode (--kubeconfig or a pod)");
  *out = {false, !a.config.empty()            ? "--config " + a.config
                 : !a.targets.targets.empty() ? std::string("--target")
                 : in_cluster                 ? std::string("--target/--config given in a pod")
                                              : std::string("no --kubeconfig and not in a pod")};
  return Status::Ok();
}

// --capture-backend, --capture-cgroup and --cgroup-root, checked before anything starts (usage
// errors). In Kubernetes mode the cgroup backend attaches to each model-server pod's cgroup,
// found from its UID under the cgroup root (*pod_cgroup_root; docs/kubernetes.md).
// --capture-cgroup is refused there: every pod is found already, and a directory above the
// pods' (kubepods.slice) would run the programs twice for each of their packets.
Status ChooseBackend(const RunArgs& a, bool kubernetes, CaptureBackend* out,
                     std::string* pod_cgroup_root) {
  // docs/capture-backends.md#decision: where the model servers' cgroup is given, the cgroup
  // backend is the default; everywhere else the syscall backend.
  if (a.capture_backend.empty()) {
    *out = a.capture_cgroups.empty() ? CaptureBackend::kSyscall : CaptureBackend::kCgroup;
  } else if (!ParseCaptureBackend(a.capture_backend, out)) {
    return Status::Error("--capture-backend must be syscall or cgroup, not '" + a.capture_backend +
                         "'");
  }
  if (!a.capture_cgroups.empty() && kubernetes)
    return Status::Error(
        "--capture-cgroup is for standalone mode; in Kubernetes mode --capture-backend cgroup "
        "finds each model-server pod's cgroup from its UID under --cgroup-root");
  if (!a.cgroup_root.empty() && !kubernetes)
    return Status::Error(
        "--cgroup-root is for Kubernetes mode (pods' cgroups found from their UIDs); standalone, "
        "give the model servers' cgroup v2 directories with --capture-cgroup PATH");
  if (*out == CaptureBackend::kSyscall) {
    if (!a.capture_cgroups.empty())
      return Status::Error(
          "--capture-cgroup is for the cgroup backend, not --capture-backend syscall");
    if (!a.cgroup_root.empty())
      return Status::Error(
          "--cgroup-root is for --capture-backend cgroup, not the syscall backend");
    return Status::Ok();
  }
  if (a.capture_cgroups.empty() && !kubernetes)
    return Status::Error(
        "--capture-backend cgroup needs --capture-cgroup PATH (the model-server pods' cgroup v2 "
        "directory)");
  if (a.targets.side != "server")
    return Status::Error("--capture-backend cgroup captures the server side only (--capture-side " +
                         a.targets.side + " needs --capture-backend syscall)");
  for (const std::string& path : a.capture_cgroups)
    if (std::string why = CheckCgroupDirectory(path); !why.empty())
      return Status::Error("--capture-cgroup: " + why);
  if (!kubernetes) return Status::Ok();
  std::string root = a.cgroup_root;
  if (root.empty()) {
    root = FindCgroup2Mount();
    if (root.empty())
      return Status::Error(
          "no cgroup v2 mount in /proc/self/mountinfo: give --cgroup-root PATH (the host's cgroup "
          "v2 hierarchy, e.g. /host/sys/fs/cgroup in the DaemonSet)");
  }
  if (std::string why = CheckCgroupDirectory(root); !why.empty())
    return Status::Error("--cgroup-root: " + why);
  *pod_cgroup_root = root;
  return Status::Ok();
}

// Flags → options → Agent → run until a signal (agent/core/agent.hpp).
int RunAgent(const RunArgs& a) {
  // Before anything can be announced: a signal that arrives right after "running" is printed
  // must stop us gracefully (detaching), not kill us.
  InstallStopSignals();
  const bool in_cluster = serve::InClusterFromEnv();
  Mode mode;
  if (Status s = ChooseMode(a, in_cluster, &mode); !s) return Fail(s.message(), 2);
  CaptureBackend backend = CaptureBackend::kSyscall;
  std::string pod_cgroup_root;
  if (Status s = ChooseBackend(a, mode.kubernetes, &backend, &pod_cgroup_root); !s)
    return Fail(s.message(), 2);
  if (!pod_cgroup_root.empty())
    LOG_INFO(
        "capture: cgroup backend on this node's model-server pods, their cgroups found from "
        "their UIDs under %s%s",
        pod_cgroup_root.c_str(),
        a.cgroup_root.empty() ? " (the cgroup v2 mount, /proc/self/mountinfo)" : "");

  std::string node = a.attribution.node;
  if (mode.kubernetes) {
    if (node.empty())
      if (const char* n = std::getenv("NODE_NAME"); n && *n) node = n;
    if (node.empty())
      return Fail("Kubernetes mode (" + mode.why +
                      ") needs the node name: --node NAME or NODE_NAME (downward API "
                      "spec.nodeName)",
                  2);
  }

  // ---- --metrics-auth (resolved before anything starts) ----
  std::string auth_mode;
  if (Status s = serve::ValidateAuthMode(a.metrics_auth, in_cluster, &auth_mode); !s)
    return Fail(s.message(), 2);
  if (auth_mode == "kubernetes" && !in_cluster && a.kubeconfig.empty())
    return Fail(
        "--metrics-auth=kubernetes outside a cluster needs --kubeconfig (the API server that "
        "reviews the scrapers' tokens)",
        2);

  // ---- the cluster connection, when one is needed ----
  std::unique_ptr<k8s::RestClient> client;
  if (mode.kubernetes || auth_mode == "kubernetes") {
    k8s::ClusterConfig cfg;
    Status s = a.kubeconfig.empty() ? k8s::LoadInClusterConfig("", &cfg)
                                    : k8s::LoadKubeconfig(a.kubeconfig, a.kube_context, &cfg);
    if (!s) return Fail(s.message(), 2);
    LOG_INFO("kubernetes API %s (%s)", cfg.server.c_str(), cfg.source.c_str());
    client = std::make_unique<k8s::RestClient>(std::move(cfg));
  }

  // ---- flags → topology source (usage errors exit 2) ----
  std::unique_ptr<topology::TopologySource> source;
  if (mode.kubernetes) {
    for (const char* f : {"--pool", "--engine", "--model-server-metrics-path"})
      if (a.cmd && a.cmd->count(f))
        LOG_WARN("%s is ignored in Kubernetes mode (the InferencePools say it)", f);
    k8s::ClusterWatchOptions wopts;
    wopts.node = node;
    wopts.ns = a.ns;
    if (Status s = topology::ParseModelAliases(a.attribution.model_alias, &wopts.aliases); !s)
      return Fail(s.message(), 2);
    LOG_INFO("mode: kubernetes (%s): node %s, %s", mode.why.c_str(), node.c_str(),
             a.ns.empty() ? "all namespaces" : ("namespace " + a.ns).c_str());
    source = std::make_unique<topology::KubernetesTopologySource>(*client, std::move(wopts));
  } else {
    topology::StaticTopologyOptions topts;
    topts.targets = a.targets.targets;
    topts.pool = a.attribution.pool;
    topts.engine = a.engine;
    topts.metrics_path = a.metrics_path;
    topts.model_alias = a.attribution.model_alias;
    topts.config = a.config;
    Status st;
    source = topology::StaticTopologySource::Create(topts, &st);
    if (!source) return Fail(st.message(), 2);
    LOG_INFO("mode: standalone (%s)", mode.why.c_str());
  }

  AgentOptions o;
  o.side = a.targets.side;
  o.roles = a.targets.side == "client" ? IT_ROLE_CLIENT
            : a.targets.side == "both" ? (IT_ROLE_SERVER | IT_ROLE_CLIENT)
                                       : IT_ROLE_SERVER;
  // Node name only: model names and pools come from the topology.
  AttributionArgs node_only = a.attribution;
  node_only.model_alias.clear();
  node_only.node = node;
  std::vector<EndpointAttribution> unused;
  if (Status s = ResolveAttribution(node_only, {}, &o.pipeline, &unused); !s)
    return Fail(s.message(), 2);
  o.pipeline.exchange.extra_inference_paths = a.extra_paths;

  o.auth_mode = auth_mode;
  if (auth_mode == "kubernetes")
    o.authorizer =
        std::make_shared<k8s::KubernetesAuthorizer>(std::make_shared<k8s::RestReviewApi>(*client));
  LOG_INFO("metrics auth: %s (--metrics-auth=%s%s)", auth_mode.c_str(), a.metrics_auth.c_str(),
           a.metrics_auth == "auto" ? (in_cluster ? ", in a pod" : ", not in a pod") : "");
  if (a.tls_cert.empty() != a.tls_key.empty())
    return Fail("--tls-cert and --tls-key go together", 2);

  o.metrics.metric_prefix = a.attribution.metric_prefix;
  o.metrics.max_models = a.attribution.max_models;
  o.metrics.version = kVersion;
  o.metrics.revision = kRevision;
  o.metrics_addr = a.metrics_addr;
  o.tls_cert = a.tls_cert;
  o.tls_key = a.tls_key;
  o.inspect_addr = a.inspect_addr;
  o.inspect_allow_remote = a.inspect_allow_remote;
  o.poller.poll_interval = std::chrono::milliseconds(int64_t(a.poll_interval_s * 1000));
  o.poller.staleness = std::chrono::milliseconds(int64_t(a.staleness_s * 1000));
  o.capture.ring_buffer_bytes = a.ring_bytes;
  o.capture.syscall_cap = a.syscall_cap;
  o.capture_backend = backend;
  o.capture_cgroups = a.capture_cgroups;
  o.pod_cgroup_root = pod_cgroup_root;
  if (backend == CaptureBackend::kCgroup && a.cmd && a.cmd->count("--syscall-cap"))
    LOG_WARN("--syscall-cap is ignored by the cgroup backend (packets are copied whole)");

  {
    Agent agent(std::move(o), std::move(source));
    if (Status s = agent.Start(); !s) return Fail(s.message());
    Status run = agent.Run([] { return StopRequested(); });
    if (!run) LOG_ERROR("%s", run.message().c_str());
    LOG_INFO("shutting down");
    agent.Shutdown();
  }  // the source and the authorizer (users of the client) are gone before the client
  if (client) client->Stop();
  return 0;
}

}  // namespace

Runner RegisterRun(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  auto* cmd = args->cmd = app.add_subcommand(
      "run",
      "Run the agent: trace model-server endpoints, serve Prometheus metrics and the local "
      "inspection API (needs root or CAP_BPF+CAP_PERFMON)");
  AddTargetOptions(*cmd, args->targets);
  AddAttributionOptions(*cmd, args->attribution);
  cmd->add_option("--engine", args->engine,
                  "Model-server engine for pool gauges: auto, vllm, sglang, tgi, llama.cpp, "
                  "triton-trtllm, trtllm-serve")
      ->capture_default_str();
  cmd->add_option("--config", args->config,
                  "JSON file with several pools: {\"pools\":[{\"name\",\"targets\",\"engine\","
                  "\"metrics_path\",\"model_alias\"}]}");
  cmd->add_option("--kubeconfig", args->kubeconfig,
                  "Kubernetes mode with this kubeconfig (token, client cert, CA; current-context). "
                  "In a pod the service account is used without it");
  cmd->add_option("--kube-context", args->kube_context,
                  "Context of --kubeconfig to use (default: its current-context)");
  cmd->add_option("--namespace", args->ns,
                  "Kubernetes mode: watch pods and InferencePools of this namespace only "
                  "(default: all)");
  cmd->add_option("--metrics-addr", args->metrics_addr, "Prometheus /metrics, /healthz, /readyz")
      ->capture_default_str();
  cmd->add_option("--metrics-auth", args->metrics_auth,
                  "none, kubernetes (TokenReview + SubjectAccessReview), or auto (kubernetes in "
                  "a cluster, else none)")
      ->check(CLI::IsMember({"none", "auto", "kubernetes"}))
      ->capture_default_str();
  cmd->add_option("--tls-cert", args->tls_cert, "Serve /metrics over TLS with this PEM cert");
  cmd->add_option("--tls-key", args->tls_key, "PEM private key for --tls-cert");
  cmd->add_option("--inspect-addr", args->inspect_addr,
                  "Local inspection API for `infertap top`/`trace` (loopback only)")
      ->capture_default_str();
  cmd->add_flag("--inspect-allow-remote", args->inspect_allow_remote,
                "Allow a non-loopback --inspect-addr (records metadata becomes reachable)");
  cmd->add_option("--model-server-metrics-path", args->metrics_path,
                  "Path of the model servers' Prometheus endpoint")
      ->capture_default_str();
  cmd->add_option("--poll-interval", args->poll_interval_s, "Seconds between pool scrapes")
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  cmd->add_option("--metrics-staleness", args->staleness_s,
                  "Seconds a pod's scraped values stay fresh")
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  AddRingBufferOption(*cmd, args->ring_bytes);
  cmd->add_option("--syscall-cap", args->syscall_cap,
                  "Bytes captured per syscall; the rest is counted as a gap")
      ->check(CLI::Range(1u, 16u << 20))
      ->capture_default_str();
  cmd->add_option("--capture-backend", args->capture_backend,
                  "How to capture: syscall (tracepoints on every process's socket syscalls) or "
                  "cgroup (cgroup_skb programs on the model-server pods' cgroup v2 directories, "
                  "TCP reassembled in user space; server side only; needs CAP_NET_ADMIN too; "
                  "docs/capture.md). Default: cgroup when --capture-cgroup is given, else "
                  "syscall. In Kubernetes mode the cgroup backend finds each model-server pod's "
                  "cgroup from its UID under --cgroup-root");
  cmd->add_option("--capture-cgroup", args->capture_cgroups,
                  "cgroup v2 directory whose sockets are captured by the cgroup backend "
                  "(repeatable; e.g. the model server's directory under /sys/fs/cgroup). "
                  "Standalone mode only (Kubernetes mode finds the pods' cgroups itself)");
  cmd->add_option("--cgroup-root", args->cgroup_root,
                  "Kubernetes mode, --capture-backend cgroup: the host's cgroup v2 hierarchy, "
                  "where the kubelet's kubepods cgroups are looked for (at it and one level "
                  "down; e.g. /host/sys/fs/cgroup in a pod). Default: the cgroup v2 mount in "
                  "/proc/self/mountinfo");
  cmd->add_option("--inference-path", args->extra_paths,
                  "Extra POST path counted as inference traffic (repeatable)");
  return [args] { return RunAgent(*args); };
}

}  // namespace infertap::cli
