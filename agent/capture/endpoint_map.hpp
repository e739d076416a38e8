// Applying a new traced endpoint set to the kernel filter (docs/capture.md, "Endpoint changes")
// as a diff, so the map is never empty or half-written while the set changes:
//   1. insert the endpoints that are new or whose value changed (an update of one hash element
//      is atomic for the BPF programs: they see the old value or the new one);
//   2. only when every insert succeeded, delete the endpoints that left (until then the old set
//      stays, so the map never holds less than the old or the new set).
// Endpoints kept by both sets are never touched. A failed step is not rolled back: the result
// says exactly what the map holds afterwards (the user-space copy is rebuilt from the steps that
// succeeded), and the status names how many steps failed and the first error, so the caller can
// retry the same desired set later.
//
// Pure (no libbpf): the map is reached through EndpointMapWriter, which the loader implements
// with bpf_map_update_elem/bpf_map_delete_elem and tests implement with a fake.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "agent/capture/abi.hpp"
#include "agent/common/status.hpp"

namespace infertap {

struct TracedEndpoint {
  Endpoint endpoint;
  uint32_t roles = IT_ROLE_SERVER;  // IT_ROLE_* mask
  uint32_t pool_index = 0;
  bool operator==(const TracedEndpoint&) const = default;
};

class EndpointMapWriter {
 public:
  virtual ~EndpointMapWriter() = default;
  // Inserts or overwrites one element. Returns 0 or an errno value.
  virtual int Upsert(const TracedEndpoint& endpoint) = 0;
  // Removes one element. Returns 0 or an errno value (ENOENT counts as removed).
  virtual int Remove(const Endpoint& endpoint) = 0;
};

struct EndpointDiffResult {
  Status status;                       // Ok when every step succeeded
  std::vector<TracedEndpoint> in_map;  // what the map holds now (the new user-space copy)
  size_t added = 0, updated = 0, removed = 0, failed = 0;
  bool changed() const { return added + updated + removed > 0; }
};

// `current` is what the map holds (the user-space copy); `desired` the new set. Duplicate
// endpoints in `desired` keep their first entry. More than `capacity` distinct endpoints is
// refused before anything is written.
EndpointDiffResult ApplyEndpointDiff(EndpointMapWriter& writer,
                                     const std::vector<TracedEndpoint>& current,
                                     const std::vector<TracedEndpoint>& desired, size_t capacity);

}  // namespace infertap
