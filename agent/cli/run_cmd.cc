// `infertap run`: the agent (docs/cli.md). Standalone mode: capture → parse → records → metrics
// live, pool gauges from the model servers' /metrics, Prometheus on --metrics-addr, the local
// inspection API for `top`/`trace` on --inspect-addr.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "agent/cli/commands.hpp"
#include "agent/cli/targets.hpp"
#include "agent/common/log.hpp"
#include "agent/common/version.hpp"
#include "agent/core/agent.hpp"
#include "agent/serve/auth.hpp"
#include "agent/topology/static_source.hpp"

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
  std::vector<std::string> extra_paths;
};

int Fail(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "infertap run: %s\n", msg.c_str());
  return code;
}

// Flags → options → Agent → run until a signal (agent/core/agent.hpp).
int RunAgent(const RunArgs& a) {
  // Before anything can be announced: a signal that arrives right after "running" is printed
  // must stop us gracefully (detaching), not kill us.
  InstallStopSignals();
  // ---- flags → topology and options (usage errors exit 2) ----
  topology::StaticTopologyOptions topts;
  topts.targets = a.targets.targets;
  topts.pool = a.attribution.pool;
  topts.engine = a.engine;
  topts.metrics_path = a.metrics_path;
  topts.model_alias = a.attribution.model_alias;
  topts.config = a.config;
  Status st;
  std::unique_ptr<topology::StaticTopologySource> source =
      topology::StaticTopologySource::Create(topts, &st);
  if (!source) return Fail(st.message(), 2);

  AgentOptions o;
  o.side = a.targets.side;
  o.roles = a.targets.side == "client" ? IT_ROLE_CLIENT
            : a.targets.side == "both" ? (IT_ROLE_SERVER | IT_ROLE_CLIENT)
                                       : IT_ROLE_SERVER;
  // Node name only: model names and pools come from the topology.
  AttributionArgs node_only = a.attribution;
  node_only.model_alias.clear();
  std::vector<EndpointAttribution> unused;
  if (Status s = ResolveAttribution(node_only, {}, &o.pipeline, &unused); !s)
    return Fail(s.message(), 2);
  o.pipeline.exchange.extra_inference_paths = a.extra_paths;

  if (Status s = serve::ValidateAuthMode(a.metrics_auth, serve::InClusterFromEnv(), &o.auth_mode);
      !s)
    return Fail(s.message());
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

  Agent agent(std::move(o), std::move(source));
  if (Status s = agent.Start(); !s) return Fail(s.message());
  Status run = agent.Run([] { return StopRequested(); });
  if (!run) LOG_ERROR("%s", run.message().c_str());
  LOG_INFO("shutting down");
  agent.Shutdown();
  return 0;
}

}  // namespace

Runner RegisterRun(CLI::App& app) {
  auto args = std::make_shared<RunArgs>();
  auto* cmd = app.add_subcommand(
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
  cmd->add_option("--inference-path", args->extra_paths,
                  "Extra POST path counted as inference traffic (repeatable)");
  return [args] { return RunAgent(*args); };
}

}  // namespace infertap::cli
