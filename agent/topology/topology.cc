#include "agent/topology/topology.hpp"

namespace infertap::topology {

std::string Topology::ModelNameFor(size_t pool_index, const std::string& target) const {
  if (pool_index < pools.size()) {
    const ModelNames& m = pools[pool_index].models;
    if (auto it = m.find(target); it != m.end()) return it->second.model;
  }
  if (auto it = models.find(target); it != models.end()) return it->second.model;
  return target;
}

void AddModelName(ModelNames& names, const std::string& target, const std::string& model,
                  const std::string& origin) {
  auto [it, inserted] = names.try_emplace(target, ModelName{model, origin, false});
  if (inserted || it->second.model == model || it->second.ambiguous) return;
  it->second = ModelName{target, it->second.origin + ", " + origin, true};
}

Status PushTopologySource::Start(OnChange on_change) {
  std::lock_guard lock(mu_);
  on_change_ = std::move(on_change);
  if (current_ && on_change_) on_change_(current_);
  return Status::Ok();
}

void PushTopologySource::Stop() {
  std::lock_guard lock(mu_);
  on_change_ = nullptr;
}

std::shared_ptr<const Topology> PushTopologySource::Current() const {
  std::lock_guard lock(mu_);
  return current_;
}

void PushTopologySource::Publish(Topology topology) {
  std::lock_guard lock(mu_);  // held across the callback: notifications stay in version order
  topology.version = next_version_++;
  topology.source = name_;
  current_ = std::make_shared<const Topology>(std::move(topology));
  if (on_change_) on_change_(current_);
}

}  // namespace infertap::topology
