// infertap-sim: a model-server simulator that speaks vLLM's (and SGLang's, TGI's, llama.cpp's)
// HTTP/SSE wire format byte for byte, with deterministic tokens and per-request fault injection.
// See test/sim/README.md.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <string>

#include "sim_server.hpp"

namespace {

// "30us", "1.5ms", "200ns", "0.002s", "0" -> nanoseconds; -1 when unparsable.
int64_t ParseDurationNs(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) return -1;
  double v = 0;
  try {
    v = std::stod(s.substr(0, i));
  } catch (...) {
    return -1;
  }
  std::string unit = s.substr(i);
  double mult = unit == "ns" ? 1 : unit == "us" ? 1e3 : unit == "ms" ? 1e6 : unit == "s" ? 1e9 : -1;
  if (unit.empty() && v == 0) mult = 1;
  if (mult < 0) return -1;
  return static_cast<int64_t>(v * mult);
}

}  // namespace

int main(int argc, char** argv) {
  using infertap::sim::MetricsMode;
  infertap::sim::SimConfig cfg;
  CLI::App app{
      "infertap-sim: a vLLM-compatible model-server simulator (OpenAI HTTP/1.1 + SSE).\n"
      "Generates deterministic tokens (\"tok0 \", \"tok1 \", ...); per-request x-sim-* headers\n"
      "override timing and inject faults (see test/sim/README.md)."};
  app.add_option("--listen", cfg.listen,
                 "HOST:PORT to listen on, repeatable; [::1]:PORT for IPv6, "
                 "port 0 picks a free port (printed at startup)")
      ->capture_default_str();
  app.add_option("--model", cfg.models,
                 "served model name, repeatable; the first is the base model, the others are "
                 "listed like LoRA adapters")
      ->capture_default_str();
  app.add_flag("--strict-model", cfg.strict_model,
               "answer 404 for a request `model` that is not served (vLLM's behaviour); by "
               "default such requests are served by the base model");
  app.add_option("--tokens", cfg.default_tokens,
                 "completion tokens when the request has no max_tokens")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ttft-ms", cfg.ttft_ms, "time to first token (after a slot is free), ms")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--itl-ms", cfg.itl_ms, "inter-token latency, ms")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  std::string cpu = "0";
  app.add_option("--cpu-per-token", cpu,
                 "busy-loop CPU time per generated token (e.g. 30us, 1ms), for benchmarks")
      ->capture_default_str();
  app.add_option("--threads", cfg.threads, "worker threads (each with its own epoll loop)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--max-running", cfg.max_running,
                 "concurrent requests in generation; more wait in a FIFO queue "
                 "(vllm:num_requests_waiting). 0 = unlimited")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--kv-capacity-tokens", cfg.kv_capacity_tokens,
                 "KV cache size: kv usage = (prompt + generated tokens of running requests) / this")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--max-model-len", cfg.max_model_len, "context length shown in /v1/models")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  std::string engine = "vllm";
  app.add_option("--engine", engine, "wire format and /metrics names to imitate")
      ->check(CLI::IsMember({"vllm", "sglang", "tgi", "llamacpp"}))
      ->capture_default_str();
  std::string metrics_mode = "ok";
  app.add_option("--metrics-mode", metrics_mode,
                 "GET /metrics behaviour: ok, garbage (200 with non-Prometheus text), slow "
                 "(answers after --metrics-delay-ms), down (connection reset). Changeable at run "
                 "time with POST /sim/metrics-mode")
      ->check(CLI::IsMember({"ok", "garbage", "slow", "down"}))
      ->capture_default_str();
  app.add_option("--metrics-delay-ms", cfg.metrics_delay_ms, "delay of --metrics-mode slow")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--tgi-data-no-space", cfg.tgi_data_no_space,
               "write `data:` without the space (TGI before 2.1)");
  app.add_option("--error-rate", cfg.error_rate,
                 "fraction of generation requests answered with HTTP 500 (seeded)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--seed", cfg.seed, "seed of --error-rate")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Usage errors exit 2 like the infertap CLI (docs/cli.md); --help exits 0.
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  infertap::sim::ParseEngine(engine, &cfg.engine);
  const std::map<std::string, MetricsMode> modes = {{"ok", MetricsMode::kOk},
                                                    {"garbage", MetricsMode::kGarbage},
                                                    {"slow", MetricsMode::kSlow},
                                                    {"down", MetricsMode::kDown}};
  cfg.metrics_mode = modes.at(metrics_mode);

  cfg.cpu_per_token_ns = ParseDurationNs(cpu);
  if (cfg.cpu_per_token_ns < 0) {
    std::fprintf(stderr, "infertap-sim: bad --cpu-per-token '%s' (e.g. 30us, 1ms)\n", cpu.c_str());
    return 2;
  }

  // Block the stop signals in every thread; the main thread collects them with sigwait.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  infertap::sim::Server server(cfg);
  std::string error;
  if (!server.Bind(&error)) {
    std::fprintf(stderr, "infertap-sim: %s\n", error.c_str());
    return 1;
  }
  server.Start();
  std::string addrs;
  for (const auto& a : server.bound()) addrs += (addrs.empty() ? "" : " ") + a;
  // Tests and scripts wait for this exact line (first address after "listening on ").
  std::printf("infertap-sim listening on %s\n", addrs.c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "infertap-sim: engine %s, model %s, %d thread(s), max-running %d\n",
               std::string(infertap::sim::EngineName(cfg.engine)).c_str(), cfg.models[0].c_str(),
               cfg.threads, cfg.max_running);

  int sig = 0;
  sigwait(&set, &sig);
  std::fprintf(stderr, "infertap-sim: signal %d, exiting\n", sig);
  server.Stop();
  return 0;
}
