# The agent end to end on one machine: infertap-sim in a network namespace, `infertap run`
# tracing it, curl as the client, promtool and a real Prometheus reading the exposition.
# Root + real BPF, like capture_e2e_test.
infertap_test(agent_e2e_test LABEL e2e TIMEOUT 300
  SOURCES agent_e2e_test.cc agent_e2e_util.cc
  LIBS infertap_e2e_util nlohmann_json::nlohmann_json Threads::Threads)
add_dependencies(agent_e2e_test infertap infertap-sim)
