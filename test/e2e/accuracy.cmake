# Accuracy end to end (root + BPF): curl and the openai npm client through nginx to infertap-sim,
# compared request by request with the agent's records and metrics. Needs nginx, node and
# test/e2e/node/node_modules (scripts/install-deps.sh installs all three).
infertap_test(accuracy_e2e_test LABEL e2e TIMEOUT 300
  SOURCES accuracy_e2e_test.cc accuracy_util.cc
  LIBS infertap_e2e_util nlohmann_json::nlohmann_json Threads::Threads)
target_compile_definitions(accuracy_e2e_test PRIVATE
  INFERTAP_SIM_BINARY="$<TARGET_FILE:infertap-sim>")
add_dependencies(accuracy_e2e_test infertap infertap-sim)
