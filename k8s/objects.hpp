// The few fields infertap keeps from each watched Kubernetes object (docs/kubernetes.md).
//
// Reflectors store these small structs, never whole objects: a pod's spec/status can be tens of
// KiB (env, volumes, managedFields) and the agent only needs its name, IP, labels, readiness and
// whether it is terminating. Decoders take nlohmann::json objects as the API server sends them
// and return false (with a reason) for an object missing its identity; optional fields that are
// absent or malformed simply stay empty.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <variant>
#include <vector>

namespace infertap::k8s {

using Labels = std::map<std::string, std::string>;

struct PodInfo {
  std::string ns, name, uid;
  std::string node;
  std::string ip;  // status.podIP ("" until assigned)
  Labels labels;
  bool ready = false;        // status.conditions[type=Ready].status == "True"
  bool terminating = false;  // metadata.deletionTimestamp set
  bool operator==(const PodInfo&) const = default;
};

struct PoolInfo {
  std::string ns, name;
  std::string api_version;      // "inference.networking.k8s.io/v1" or "...x-k8s.io/v1alpha2"
  Labels selector;              // v1 spec.selector.matchLabels; v1alpha2 spec.selector
  std::vector<uint16_t> ports;  // v1 spec.targetPorts[].number; v1alpha2 [spec.targetPortNumber]
  bool operator==(const PoolInfo&) const = default;
};

// InferenceModel (x-k8s.io/v1alpha2): the client-facing spec.modelName is served as each of
// spec.targetModels[].name (or as itself when there are none) by the pool spec.poolRef.name.
struct ModelInfo {
  std::string ns, name;
  std::string pool;        // spec.poolRef.name (same namespace)
  std::string model_name;  // spec.modelName
  std::vector<std::string> targets;
  bool operator==(const ModelInfo&) const = default;
};

// InferenceModelRewrite (x-k8s.io/v1alpha2): per rule, the exact model matches and the rewrite
// targets.
struct RewriteInfo {
  struct Rule {
    std::vector<std::string> exact_matches;  // matches[].model.value where type is Exact/unset
    size_t non_exact_matches = 0;            // matches of another type (not understood)
    std::vector<std::string> targets;        // targets[].modelRewrite
    bool operator==(const Rule&) const = default;
  };
  std::string ns, name;
  std::string pool;  // spec.poolRef.name
  std::vector<Rule> rules;
  bool operator==(const RewriteInfo&) const = default;
};

enum class Kind { kPod, kPoolV1, kPoolV1Alpha2, kModel, kRewrite };

using Object = std::variant<PodInfo, PoolInfo, ModelInfo, RewriteInfo>;

// Decodes one object of `kind`. false with *err for an object without metadata.name/namespace.
bool DecodeObject(Kind kind, const nlohmann::json& obj, Object* out, std::string* err);

// "namespace/name", the store key.
std::string ObjectKey(const Object& o);

}  // namespace infertap::k8s
