#include "agent/capture/endpoint_map.hpp"

#include <cerrno>
#include <cstring>
#include <map>

namespace infertap {
namespace {

using Key = std::pair<std::array<uint8_t, 16>, uint16_t>;
Key KeyOf(const Endpoint& e) { return {e.addr, e.port}; }

}  // namespace

EndpointDiffResult ApplyEndpointDiff(EndpointMapWriter& writer,
                                     const std::vector<TracedEndpoint>& current,
                                     const std::vector<TracedEndpoint>& desired, size_t capacity) {
  EndpointDiffResult res;
  // Ordered by first appearance, deduplicated by endpoint.
  std::map<Key, size_t> want_index;
  std::vector<TracedEndpoint> want;
  for (const TracedEndpoint& e : desired)
    if (want_index.emplace(KeyOf(e.endpoint), want.size()).second) want.push_back(e);
  std::map<Key, TracedEndpoint> have;
  for (const TracedEndpoint& e : current) have.emplace(KeyOf(e.endpoint), e);

  if (want.size() > capacity) {
    res.in_map = current;
    res.status =
        Status::Error("cannot trace " + std::to_string(want.size()) +
                      " endpoints: the kernel filter holds at most " + std::to_string(capacity));
    return res;
  }

  std::string first_error;
  auto note = [&](const std::string& what, int err) {
    ++res.failed;
    if (first_error.empty()) first_error = what + ": " + std::strerror(err);
  };

  // 1. Insert new and changed entries; kept entries are not touched.
  for (const TracedEndpoint& e : want) {
    auto it = have.find(KeyOf(e.endpoint));
    if (it != have.end() && it->second == e) continue;
    if (int err = writer.Upsert(e); err != 0) {
      note("cannot add endpoint " + e.endpoint.ToString() + " to the kernel filter", err);
      continue;  // a failed overwrite leaves the old value in place: `have` still says so
    }
    if (it != have.end()) {
      ++res.updated;
      it->second = e;
    } else {
      ++res.added;
      have.emplace(KeyOf(e.endpoint), e);
    }
  }
  // 2. Remove what left, only once every insertion succeeded: until the new set is complete the
  // old one stays (a retry finishes the job), so a failure never leaves the map emptier than
  // either set.
  const bool inserts_failed = res.failed > 0;
  for (auto it = have.begin(); !inserts_failed && it != have.end();) {
    if (want_index.count(it->first)) {
      ++it;
      continue;
    }
    int err = writer.Remove(it->second.endpoint);
    if (err != 0 && err != ENOENT) {
      note("cannot remove endpoint " + it->second.endpoint.ToString() + " from the kernel filter",
           err);
      ++it;
      continue;
    }
    ++res.removed;
    it = have.erase(it);
  }

  // The copy: desired order for what is wanted, then leftovers that could not be removed.
  for (const TracedEndpoint& e : want)
    if (auto it = have.find(KeyOf(e.endpoint)); it != have.end()) res.in_map.push_back(it->second);
  for (const auto& [k, e] : have)
    if (!want_index.count(k)) res.in_map.push_back(e);

  if (res.failed > 0)
    res.status =
        Status::Error(std::to_string(res.failed) + " endpoint map change(s) failed" +
                      (inserts_failed ? " (removals postponed)" : "") + ", first: " + first_error);
  return res;
}

}  // namespace infertap
