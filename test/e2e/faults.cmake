# The faults tier (label `faults`, root + real BPF; docs/faults.md, docs/testing.md): overload
# of a tiny ring buffer, 10,000 streams, model-server faults, hostile bytes, pool scrapes, agent
# restarts, the Kubernetes control plane. Serial: each case loads the machine on purpose. Bounded:
# every case has a TIMEOUT; together they take about three minutes (bench/RESULTS.md#faults).
add_executable(faults_e2e_test faults/faults_e2e_test.cc faults/faults_util.cc agent_e2e_util.cc)
target_link_libraries(faults_e2e_test PRIVATE infertap_e2e_util nlohmann_json::nlohmann_json
                      Threads::Threads GTest::gtest GTest::gtest_main)
target_compile_options(faults_e2e_test PRIVATE ${INFERTAP_WARNINGS})
target_include_directories(faults_e2e_test PRIVATE ${PROJECT_SOURCE_DIR})
target_compile_definitions(faults_e2e_test PRIVATE INFERTAP_BINARY_DIR="${PROJECT_BINARY_DIR}")
gtest_discover_tests(faults_e2e_test PROPERTIES LABELS faults TIMEOUT 180 RUN_SERIAL ON
                     DISCOVERY_TIMEOUT 60)
add_dependencies(faults_e2e_test infertap infertap-sim infertap-load)

# The Kubernetes API server misbehaving (500s, garbage, 5 s answers, down, a watch cut inside an
# event) under a running agent: test/e2e/faults/controlplane_e2e.sh. Exit 77 = skipped.
add_test(NAME Faults.ControlPlane
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/faults/controlplane_e2e.sh ${PROJECT_BINARY_DIR}
                 ${PROJECT_SOURCE_DIR})
set_tests_properties(Faults.ControlPlane PROPERTIES LABELS faults TIMEOUT 240 SKIP_RETURN_CODE 77
                     RUN_SERIAL ON)
