// A fake agent process for test/e2e/top_tmux_test.sh: serves the state document of the brief's
// example (connections = number of /v1/state requests so far, so every refresh of `top` changes
// a visible number) and publishes --rate records per second of pool "default", model "llama".
// Listens on --port (default: ephemeral) and writes the port to --port-file once listening; runs
// until SIGTERM/SIGINT.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>

#include "fake_agent.hpp"

namespace {
volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

std::string NowRfc3339() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm tm{};
  gmtime_r(&ts.tv_sec, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
  return buf;
}
}  // namespace

int main(int argc, char** argv) {
  std::string port_file;
  double rate = 20;
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--port-file") == 0) port_file = argv[i + 1];
    if (std::strcmp(argv[i], "--rate") == 0) rate = std::atof(argv[i + 1]);
    if (std::strcmp(argv[i], "--port") == 0) port = std::atoi(argv[i + 1]);
  }
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);

  infertap::testing::FakeAgent agent;
  int state_requests = 0;
  agent.SetStateFunction([&state_requests] {
    ++state_requests;
    return R"({"node":"n1","version":"0.1.0","uptime_s":12.5,)"
           R"("pools":[{"name":"default","ready_pods":1,"average_queue_size":0.5,)"
           R"("average_kv_cache_utilization":0.12,"average_running_requests":3,)"
           R"("pods":[{"name":"127.0.0.1:8000","address":"127.0.0.1:8000","fresh":true,)"
           R"("queue":0.5,"running":3,"kv_cache_utilization":0.12,"scrape_errors":0}]}],)"
           R"("models":[{"pool":"default","model_name":"llama",)"
           R"("target_model_name":"meta-llama/Llama-3.1-8B-Instruct","in_flight":2}],)"
           R"("endpoints":["127.0.0.1:8000"],"connections":)" +
           std::to_string(state_requests) +
           R"(,"counters":{"capture_events":123,"capture_lost_events":0,"parse_errors":0,)"
           R"("requests":42,"records":40}})";
  });
  if (!agent.Start(uint16_t(port))) {
    std::perror("fake agent: cannot listen");
    return 1;
  }
  {
    // Written whole then renamed, so the test never reads half a port number.
    std::ofstream(port_file + ".tmp") << agent.port() << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  const auto period = std::chrono::duration<double>(1.0 / rate);
  while (!g_stop) {
    agent.Publish(R"({"ts":")" + NowRfc3339() +
                  R"(","node":"n1","pool":"default","namespace":"","pod":"127.0.0.1:8000",)"
                  R"("role":"server","model_name":"llama",)"
                  R"("target_model_name":"meta-llama/Llama-3.1-8B-Instruct","method":"POST",)"
                  R"("path":"/v1/chat/completions","status":200,"stream":true,"error_code":"",)"
                  R"("request_bytes":100,"response_bytes":2000,"input_tokens":10,)"
                  R"("output_tokens":100,"duration_s":0.5,"ttft_s":0.05,"tpot_s":0.0045,)"
                  R"("chunks":100})");
    std::this_thread::sleep_for(period);
  }
  return 0;
}
