#include "k8s/config.hpp"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace infertap::k8s {
namespace {

constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";
// A token or CA file larger than this is not a token or a CA bundle.
constexpr size_t kMaxCredentialFile = 1 << 20;

bool ReadSmallFile(const std::string& path, std::string* out, std::string* err) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *err = "cannot read " + path;
    return false;
  }
  std::string data;
  char buf[8192];
  while (f.read(buf, sizeof buf) || f.gcount() > 0) {
    data.append(buf, static_cast<size_t>(f.gcount()));
    if (data.size() > kMaxCredentialFile) {
      *err = path + " is larger than 1 MiB";
      return false;
    }
  }
  *out = std::move(data);
  return true;
}

std::string Trim(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// kubectl resolves relative paths in a kubeconfig against the kubeconfig's directory.
std::string Resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  return base_dir + "/" + p;
}

std::string BracketHost(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

// The entry named `name` in a kubeconfig list (`clusters`, `users`, `contexts`), whose payload
// is under `field`.
YAML::Node FindNamed(const YAML::Node& list, const std::string& name, const char* field) {
  if (!list || !list.IsSequence()) return YAML::Node(YAML::NodeType::Undefined);
  for (const auto& item : list) {
    if (item.IsMap() && item["name"] && item["name"].IsScalar() &&
        item["name"].as<std::string>() == name) {
      return item[field];
    }
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

std::string Str(const YAML::Node& m, const char* key) {
  if (!m || !m.IsMap()) return "";
  YAML::Node v = m[key];
  if (!v || !v.IsScalar()) return "";
  return v.as<std::string>();
}

}  // namespace

bool Base64Decode(std::string_view in, std::string* out) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string res;
  uint32_t acc = 0;
  int bits = 0;
  bool pad = false;
  for (char c : in) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      pad = true;
      continue;
    }
    if (pad) return false;  // data after padding
    int v = val(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      res.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 6) return false;  // a lone sextet cannot encode a byte
  *out = std::move(res);
  return true;
}

Status LoadInClusterConfig(const std::string& root, ClusterConfig* out,
                           std::function<const char*(const char*)> getenv) {
  if (!getenv) getenv = [](const char* n) { return static_cast<const char*>(std::getenv(n)); };
  const char* host = getenv("KUBERNETES_SERVICE_HOST");
  const char* port = getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || host[0] == '\0' || port == nullptr || port[0] == '\0') {
    return Status::Error(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set "
        "(not running in a pod? use --kubeconfig)");
  }
  ClusterConfig c;
  c.server = "https://" + BracketHost(host) + ":" + port;
  std::string dir = root + kServiceAccountDir;
  c.token_file = dir + "/token";
  std::string data, err;
  if (!ReadSmallFile(c.token_file, &data, &err)) {
    return Status::Error("in-cluster config: " + err + " (service-account token not mounted?)");
  }
  if (Trim(data).empty()) return Status::Error("in-cluster config: " + c.token_file + " is empty");
  c.ca_file = dir + "/ca.crt";
  if (!ReadSmallFile(c.ca_file, &data, &err)) return Status::Error("in-cluster config: " + err);
  if (data.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return Status::Error("in-cluster config: " + c.ca_file + " holds no PEM certificate");
  }
  if (ReadSmallFile(dir + "/namespace", &data, &err)) c.default_namespace = Trim(data);
  c.source = "in-cluster";
  *out = std::move(c);
  return Status::Ok();
}

Status LoadKubeconfig(const std::string& path, const std::string& context, ClusterConfig* out) {
  const std::string what = "kubeconfig " + path;
  std::string text, err;
  if (!ReadSmallFile(path, &text, &err)) return Status::Error(what + ": " + err);
  YAML::Node doc;
  try {
    doc = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::Error(what + ": invalid YAML at line " + std::to_string(e.mark.line + 1) + ": " +
                         e.msg);
  }
  if (!doc.IsMap()) return Status::Error(what + ": not a kubeconfig (top level is not a map)");
  std::string base_dir = ".";
  if (size_t slash = path.rfind('/'); slash != std::string::npos) {
    base_dir = slash == 0 ? "/" : path.substr(0, slash);
  }
  try {
    std::string ctx_name = context.empty() ? Str(doc, "current-context") : context;
    if (ctx_name.empty()) return Status::Error(what + ": no current-context set (pass a context)");
    YAML::Node ctx = FindNamed(doc["contexts"], ctx_name, "context");
    if (!ctx || !ctx.IsMap())
      return Status::Error(what + ": context \"" + ctx_name + "\" not found");
    std::string cluster_name = Str(ctx, "cluster");
    std::string user_name = Str(ctx, "user");
    if (cluster_name.empty()) {
      return Status::Error(what + ": context \"" + ctx_name + "\" names no cluster");
    }
    YAML::Node cluster = FindNamed(doc["clusters"], cluster_name, "cluster");
    if (!cluster || !cluster.IsMap()) {
      return Status::Error(what + ": cluster \"" + cluster_name + "\" not found");
    }
    ClusterConfig c;
    c.default_namespace = Str(ctx, "namespace");
    c.server = Str(cluster, "server");
    while (!c.server.empty() && c.server.back() == '/') c.server.pop_back();
    if (c.server.empty()) {
      return Status::Error(what + ": cluster \"" + cluster_name + "\" has no server");
    }
    if (c.server.rfind("https://", 0) != 0 && c.server.rfind("http://", 0) != 0) {
      return Status::Error(what + ": cluster \"" + cluster_name + "\" server \"" + c.server +
                           "\" is not an http(s) URL");
    }
    std::string skip = Str(cluster, "insecure-skip-tls-verify");
    c.insecure_skip_tls_verify = skip == "true";
    if (std::string ca = Str(cluster, "certificate-authority-data"); !ca.empty()) {
      if (!Base64Decode(ca, &c.ca_pem)) {
        return Status::Error(what + ": cluster \"" + cluster_name +
                             "\" certificate-authority-data is not valid base64");
      }
    } else if (std::string f = Str(cluster, "certificate-authority"); !f.empty()) {
      c.ca_file = Resolve(base_dir, f);
      std::string data;
      if (!ReadSmallFile(c.ca_file, &data, &err)) {
        return Status::Error(what + ": certificate-authority: " + err);
      }
    }
    if (!c.ca_pem.empty() && c.ca_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return Status::Error(what + ": cluster \"" + cluster_name +
                           "\" certificate-authority-data holds no PEM certificate");
    }
    if (!user_name.empty()) {
      YAML::Node user = FindNamed(doc["users"], user_name, "user");
      if (!user) return Status::Error(what + ": user \"" + user_name + "\" not found");
      if (user.IsMap()) {
        if (user["exec"]) {
          return Status::Error(what + ": user \"" + user_name +
                               "\" uses an exec credential plugin, which is not supported (use a "
                               "token, tokenFile or client certificate)");
        }
        if (user["auth-provider"]) {
          return Status::Error(what + ": user \"" + user_name +
                               "\" uses an auth-provider plugin, which is not supported (use a "
                               "token, tokenFile or client certificate)");
        }
        if (user["username"] || user["password"]) {
          return Status::Error(what + ": user \"" + user_name +
                               "\" uses basic auth, which is not supported");
        }
        c.token = Str(user, "token");
        if (std::string f = Str(user, "tokenFile"); !f.empty() && c.token.empty()) {
          c.token_file = Resolve(base_dir, f);
          std::string data;
          if (!ReadSmallFile(c.token_file, &data, &err)) {
            return Status::Error(what + ": tokenFile: " + err);
          }
        }
        auto load_pem = [&](const char* data_key, const char* file_key, std::string* pem,
                            std::string* file) -> Status {
          if (std::string d = Str(user, data_key); !d.empty()) {
            if (!Base64Decode(d, pem)) {
              return Status::Error(what + ": user \"" + user_name + "\" " + data_key +
                                   " is not valid base64");
            }
          } else if (std::string f = Str(user, file_key); !f.empty()) {
            *file = Resolve(base_dir, f);
            if (!ReadSmallFile(*file, pem, &err)) {
              return Status::Error(what + ": " + file_key + ": " + err);
            }
            pem->clear();  // curl reads the file itself; the read only checked it exists
          }
          return Status::Ok();
        };
        if (Status s = load_pem("client-certificate-data", "client-certificate", &c.client_cert_pem,
                                &c.client_cert_file);
            !s) {
          return s;
        }
        if (Status s =
                load_pem("client-key-data", "client-key", &c.client_key_pem, &c.client_key_file);
            !s) {
          return s;
        }
        bool have_cert = !c.client_cert_pem.empty() || !c.client_cert_file.empty();
        bool have_key = !c.client_key_pem.empty() || !c.client_key_file.empty();
        if (have_cert != have_key) {
          return Status::Error(
              what + ": user \"" + user_name + "\" has a client " +
              (have_cert ? "certificate without a key" : "key without a certificate"));
        }
      }
    }
    c.source = what + " (context " + ctx_name + ")";
    *out = std::move(c);
    return Status::Ok();
  } catch (const YAML::Exception& e) {
    return Status::Error(what + ": unexpected structure: " + e.msg);
  }
}

TokenSource::TokenSource(const ClusterConfig& config, std::chrono::seconds max_age, Clock clock)
    : inline_token_(config.token),
      file_(config.token.empty() ? config.token_file : ""),
      max_age_(max_age),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })) {}

std::string TokenSource::Get(std::string* error) {
  if (file_.empty()) return inline_token_;
  std::lock_guard<std::mutex> lock(mu_);
  auto now = clock_();
  struct stat st {};
  bool stat_ok = ::stat(file_.c_str(), &st) == 0;
  long long mtime =
      stat_ok ? static_cast<long long>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec : -1;
  long long size = stat_ok ? static_cast<long long>(st.st_size) : -1;
  bool reread = !loaded_ || invalid_ || now - read_at_ >= max_age_ ||
                (stat_ok && (mtime != mtime_ns_ || size != size_));
  if (reread) {
    std::string data, err;
    if (ReadSmallFile(file_, &data, &err) && !Trim(data).empty()) {
      token_ = Trim(data);
      loaded_ = true;
      invalid_ = false;
      read_at_ = now;
      mtime_ns_ = mtime;
      size_ = size;
    } else if (error != nullptr) {
      *error = err.empty() ? file_ + " is empty" : err;
    }
  }
  return token_;
}

void TokenSource::Invalidate() {
  std::lock_guard<std::mutex> lock(mu_);
  invalid_ = true;
}

}  // namespace infertap::k8s
