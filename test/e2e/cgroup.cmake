# The cgroup backend end to end (root + real BPF; docs/capture.md "The cgroup backend"): the
# agent with --capture-backend cgroup on a test cgroup under the cgroup v2 hierarchy, infertap-sim
# inside it, infertap-load's per-request truth against the records and metrics; a simulator
# outside the cgroup whose traffic must produce nothing. Each case starts its own agent.
infertap_test(cgroup_e2e_test LABEL e2e TIMEOUT 300
  SOURCES cgroup_e2e_test.cc agent_e2e_util.cc faults/faults_util.cc
  LIBS infertap_e2e_util nlohmann_json::nlohmann_json Threads::Threads)
add_dependencies(cgroup_e2e_test infertap infertap-sim infertap-load)
