#include "agent/cli/targets.hpp"

namespace infertap::cli {

const char* CaptureSideName(const std::string& side) { return side.c_str(); }

void AddTargetOptions(CLI::App& cmd, TargetArgs& args) {
  cmd.add_option("-t,--target", args.targets,
                 "Model-server endpoint HOST:PORT, [V6]:PORT or :PORT for any address "
                 "(repeatable; default :8000)");
  cmd.add_option("--capture-side", args.side,
                 "Trace the model server's own sockets (server), the upstream sockets of "
                 "clients/gateways connecting to it (client), or both")
      ->check(CLI::IsMember({"server", "client", "both"}))
      ->capture_default_str();
}

Status ResolveTargets(const TargetArgs& args, std::vector<TracedEndpoint>* out) {
  uint32_t roles = IT_ROLE_SERVER;
  if (args.side == "client") roles = IT_ROLE_CLIENT;
  if (args.side == "both") roles = IT_ROLE_SERVER | IT_ROLE_CLIENT;
  std::vector<std::string> targets = args.targets;
  if (targets.empty()) targets.push_back(":8000");
  out->clear();
  for (const std::string& t : targets) {
    std::string err;
    auto ep = ParseEndpoint(t, &err);
    if (!ep) return Status::Error(err);
    out->push_back(TracedEndpoint{*ep, roles, 0});
  }
  return Status::Ok();
}

}  // namespace infertap::cli
