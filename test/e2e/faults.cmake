# The faults tier (label `faults`, root + real BPF; docs/faults.md, docs/testing.md): overload
# of a tiny ring buffer, model-server faults, agent restarts. Serial: each case loads the machine
# on purpose. Bounded: see the TIMEOUT (the cases take about a minute together).
add_executable(faults_e2e_test faults/faults_e2e_test.cc faults/faults_util.cc agent_e2e_util.cc)
target_link_libraries(faults_e2e_test PRIVATE infertap_e2e_util nlohmann_json::nlohmann_json
                      Threads::Threads GTest::gtest GTest::gtest_main)
target_compile_options(faults_e2e_test PRIVATE ${INFERTAP_WARNINGS})
target_include_directories(faults_e2e_test PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_definitions(faults_e2e_test PRIVATE INFERTAP_BINARY_DIR="${PROJECT_BINARY_DIR}")
gtest_discover_tests(faults_e2e_test PROPERTIES LABELS faults TIMEOUT 180 RUN_SERIAL ON
                     DISCOVERY_TIMEOUT 60)
add_dependencies(faults_e2e_test infertap infertap-sim infertap-load)
