# Real-stack end to end (root + BPF, docs/testing.md): uvicorn + FastAPI (vLLM and SGLang wire
# formats, h11 and httptools), a cpp-httplib server in llama.cpp's format, HAProxy and nginx as
# gateways, aiohttp/httpx/curl/slow-upload clients; records and metrics compared with the servers'
# own ground truth. Debian packages from scripts/install-deps.sh; a missing one fails the test
# (with the command that installs it) instead of skipping it.
pkg_check_modules(CPP_HTTPLIB IMPORTED_TARGET cpp-httplib)
set(realstack_llamacpp "")
if(CPP_HTTPLIB_FOUND)
  add_executable(realstack-llamacpp realstack/llamacpp_server.cc)
  target_link_libraries(realstack-llamacpp PRIVATE PkgConfig::CPP_HTTPLIB
                        nlohmann_json::nlohmann_json Threads::Threads)
  target_compile_options(realstack-llamacpp PRIVATE ${INFERTAP_WARNINGS})
  set(realstack_llamacpp "$<TARGET_FILE:realstack-llamacpp>")
else()
  message(STATUS "libcpp-httplib-dev not found: realstack_e2e_test will fail until "
                 "scripts/install-deps.sh installed it")
endif()

infertap_test(realstack_e2e_test LABEL e2e TIMEOUT 300
  SOURCES realstack/realstack_e2e_test.cc realstack/stack.cc accuracy_util.cc
  LIBS infertap_e2e_util nlohmann_json::nlohmann_json Threads::Threads)
target_compile_definitions(realstack_e2e_test PRIVATE
  INFERTAP_REALSTACK_LLAMACPP="${realstack_llamacpp}")
add_dependencies(realstack_e2e_test infertap)
if(CPP_HTTPLIB_FOUND)
  add_dependencies(realstack_e2e_test realstack-llamacpp)
endif()
