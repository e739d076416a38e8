#include "agent/capture/pod_cgroup.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace infertap {
namespace {

bool IsDir(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string Join(const std::string& dir, std::string_view name) {
  if (dir.empty() || dir.back() == '/') return dir + std::string(name);
  return dir + "/" + std::string(name);
}

std::string_view BaseName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && s.size() - i >= 4 && s[i + 1] >= '0' && s[i + 1] <= '3' &&
        s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out.push_back(char((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

bool ValidPodUid(std::string_view uid) {
  if (uid.empty() || uid.size() > 64) return false;
  return std::all_of(uid.begin(), uid.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '-';
  });
}

std::string Cgroup2MountFromMountinfo(std::string_view mountinfo) {
  std::string first;
  std::istringstream in{std::string(mountinfo)};
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mount-point options [optional fields...] - type source opts
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string w; fields >> w;) f.push_back(w);
    const auto sep = std::find(f.begin(), f.end(), "-");
    if (f.size() < 5 || sep == f.end() || sep + 1 == f.end() || sep - f.begin() < 5) continue;
    if (*(sep + 1) != "cgroup2") continue;
    std::string mount = Unescape(f[4]);
    if (f[3] == "/") return mount;
    if (first.empty()) first = std::move(mount);
  }
  return first;
}

std::string FindCgroup2Mount() {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  return Cgroup2MountFromMountinfo(ss.str());
}

std::vector<std::string> PodCgroupResolver::KubepodsDirs() const {
  std::vector<std::string> out;
  auto consider = [&out](const std::string& base) {
    std::vector<std::string> names = {"kubepods", "kubepods.slice"};
    // systemd nests slices by name: under kubelet.slice the kubelet's is kubelet-kubepods.slice.
    const std::string_view b = BaseName(base);
    if (b.size() > 6 && b.ends_with(".slice"))
      names.push_back(std::string(b.substr(0, b.size() - 6)) + "-kubepods.slice");
    for (const std::string& n : names) {
      const std::string p = Join(base, n);
      if (IsDir(p) && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
  };
  consider(root_);
  DIR* d = opendir(root_.c_str());
  if (!d) return out;
  std::vector<std::string> children;
  size_t seen = 0;
  while (dirent* e = readdir(d)) {
    if (++seen > kMaxRootEntries) break;
    const std::string_view n = e->d_name;
    if (n.empty() || n[0] == '.') continue;
    // A kubepods directory itself was considered above; its children are the pods.
    if (n == "kubepods" || n == "kubepods.slice") continue;
    if (e->d_type != DT_DIR && e->d_type != DT_UNKNOWN) continue;
    children.emplace_back(n);
  }
  closedir(d);
  std::sort(children.begin(), children.end());  // deterministic order
  for (const std::string& c : children) {
    const std::string p = Join(root_, c);
    if (IsDir(p)) consider(p);
  }
  return out;
}

PodCgroupLookup PodCgroupResolver::Find(std::string_view uid,
                                        const std::vector<std::string>& kubepods_dirs) const {
  if (!ValidPodUid(uid))
    return {"", "invalid pod UID '" + std::string(uid.substr(0, 80)) +
                    "' (expected hex digits and '-'): no cgroup path built from it"};
  std::string uid_(uid);
  std::replace(uid_.begin(), uid_.end(), '-', '_');
  for (const std::string& k : kubepods_dirs) {
    const std::string_view name = BaseName(k);
    std::vector<std::string> candidates;
    if (name.ends_with(".slice")) {
      const std::string stem(name.substr(0, name.size() - 6));  // kubepods, kubelet-kubepods
      candidates = {
          Join(k, stem + "-pod" + uid_ + ".slice"),
          Join(k, stem + "-burstable.slice/" + stem + "-burstable-pod" + uid_ + ".slice"),
          Join(k, stem + "-besteffort.slice/" + stem + "-besteffort-pod" + uid_ + ".slice")};
    } else {
      const std::string pod = "pod" + std::string(uid);
      candidates = {Join(k, pod), Join(k, "burstable/" + pod), Join(k, "besteffort/" + pod)};
    }
    for (const std::string& c : candidates)
      if (IsDir(c)) return {c, ""};
  }
  std::string where;
  for (const std::string& k : kubepods_dirs) where += (where.empty() ? "" : ", ") + k;
  return {"", "cgroup not found under " + root_ +
                  (where.empty() ? " (no kubepods directory there or one level down)"
                                 : " (looked in " + where + ")")};
}

}  // namespace infertap
