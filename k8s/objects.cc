#include "k8s/objects.hpp"

#include <nlohmann/json.hpp>

namespace infertap::k8s {
namespace {

using nlohmann::json;

std::string Str(const json& o, const char* key) {
  if (!o.is_object()) return "";
  auto it = o.find(key);
  if (it == o.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

const json& Sub(const json& o, const char* key) {
  static const json kNull;
  if (!o.is_object()) return kNull;
  auto it = o.find(key);
  return it == o.end() ? kNull : *it;
}

Labels StringMap(const json& o) {
  Labels m;
  if (!o.is_object()) return m;
  for (auto it = o.begin(); it != o.end(); ++it) {
    if (it->is_string()) m[it.key()] = it->get<std::string>();
  }
  return m;
}

bool ValidPort(const json& v, uint16_t* out) {
  if (!v.is_number_integer()) return false;
  long long p = v.get<long long>();
  if (p < 1 || p > 65535) return false;
  *out = static_cast<uint16_t>(p);
  return true;
}

}  // namespace

bool DecodeObject(Kind kind, const json& obj, Object* out, std::string* err) {
  const json& meta = Sub(obj, "metadata");
  std::string ns = Str(meta, "namespace"), name = Str(meta, "name");
  if (name.empty() || ns.empty()) {
    *err = "object without metadata.name/namespace";
    return false;
  }
  const json& spec = Sub(obj, "spec");
  switch (kind) {
    case Kind::kPod: {
      PodInfo p;
      p.ns = ns;
      p.name = name;
      p.uid = Str(meta, "uid");
      p.labels = StringMap(Sub(meta, "labels"));
      p.terminating = meta.is_object() && meta.contains("deletionTimestamp") &&
                      !meta["deletionTimestamp"].is_null();
      p.node = Str(spec, "nodeName");
      const json& status = Sub(obj, "status");
      p.ip = Str(status, "podIP");
      const json& conds = Sub(status, "conditions");
      if (conds.is_array()) {
        for (const auto& c : conds) {
          if (Str(c, "type") == "Ready") p.ready = Str(c, "status") == "True";
        }
      }
      *out = std::move(p);
      return true;
    }
    case Kind::kPoolV1:
    case Kind::kPoolV1Alpha2: {
      PoolInfo p;
      p.ns = ns;
      p.name = name;
      const json& sel = Sub(spec, "selector");
      if (kind == Kind::kPoolV1) {
        p.api_version = "inference.networking.k8s.io/v1";
        p.selector = StringMap(Sub(sel, "matchLabels"));
        const json& tps = Sub(spec, "targetPorts");
        if (tps.is_array()) {
          for (const auto& tp : tps) {
            uint16_t port;
            if (ValidPort(Sub(tp, "number"), &port)) p.ports.push_back(port);
          }
        }
      } else {
        p.api_version = "inference.networking.x-k8s.io/v1alpha2";
        p.selector = StringMap(sel);
        uint16_t port;
        if (ValidPort(Sub(spec, "targetPortNumber"), &port)) p.ports.push_back(port);
      }
      *out = std::move(p);
      return true;
    }
    case Kind::kModel: {
      ModelInfo m;
      m.ns = ns;
      m.name = name;
      m.pool = Str(Sub(spec, "poolRef"), "name");
      m.model_name = Str(spec, "modelName");
      const json& tms = Sub(spec, "targetModels");
      if (tms.is_array()) {
        for (const auto& t : tms) {
          if (std::string n = Str(t, "name"); !n.empty()) m.targets.push_back(n);
        }
      }
      *out = std::move(m);
      return true;
    }
    case Kind::kRewrite: {
      RewriteInfo r;
      r.ns = ns;
      r.name = name;
      r.pool = Str(Sub(spec, "poolRef"), "name");
      const json& rules = Sub(spec, "rules");
      if (rules.is_array()) {
        for (const auto& rj : rules) {
          RewriteInfo::Rule rule;
          const json& matches = Sub(rj, "matches");
          if (matches.is_array()) {
            for (const auto& mj : matches) {
              const json& model = Sub(mj, "model");
              std::string type = Str(model, "type");
              std::string value = Str(model, "value");
              if ((type.empty() || type == "Exact") && !value.empty()) {
                rule.exact_matches.push_back(value);
              } else {
                ++rule.non_exact_matches;
              }
            }
          }
          const json& targets = Sub(rj, "targets");
          if (targets.is_array()) {
            for (const auto& tj : targets) {
              if (std::string t = Str(tj, "modelRewrite"); !t.empty()) rule.targets.push_back(t);
            }
          }
          r.rules.push_back(std::move(rule));
        }
      }
      *out = std::move(r);
      return true;
    }
  }
  *err = "unknown kind";
  return false;
}

std::string ObjectKey(const Object& o) {
  return std::visit([](const auto& v) { return v.ns + "/" + v.name; }, o);
}

}  // namespace infertap::k8s
