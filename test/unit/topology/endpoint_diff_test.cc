// The endpoint map diff (agent/capture/endpoint_map.hpp): insert first, delete after, never an
// empty or half-written map, an honest copy and status when a step fails.
#include <gtest/gtest.h>

#include <cerrno>
#include <map>
#include <set>

#include "agent/capture/endpoint_map.hpp"

namespace infertap {
namespace {

Endpoint Ep(const std::string& s) {
  std::string err;
  auto e = ParseEndpoint(s, &err);
  EXPECT_TRUE(e) << err;
  return *e;
}

TracedEndpoint T(const std::string& s, uint32_t pool = 0) { return {Ep(s), IT_ROLE_SERVER, pool}; }

// A map that checks an invariant after every write and fails the Nth call (1-based) with EIO.
class FakeMap : public EndpointMapWriter {
 public:
  std::map<std::string, TracedEndpoint> map;
  int fail_call = 0;  // 0: never
  int calls = 0;
  std::vector<std::string> log;     // "+ep" / "-ep" in call order
  std::set<std::string> must_stay;  // entries that must be present after every call
  size_t min_size_seen = SIZE_MAX;

  int Upsert(const TracedEndpoint& e) override {
    ++calls;
    log.push_back("+" + e.endpoint.ToString());
    if (calls == fail_call) return EIO;
    map[e.endpoint.ToString()] = e;
    Check();
    return 0;
  }
  int Remove(const Endpoint& e) override {
    ++calls;
    log.push_back("-" + e.ToString());
    if (calls == fail_call) return EIO;
    if (!map.erase(e.ToString())) return ENOENT;
    Check();
    return 0;
  }
  void Load(const std::vector<TracedEndpoint>& v) {
    for (const auto& e : v) map[e.endpoint.ToString()] = e;
  }
  void Check() {
    min_size_seen = std::min(min_size_seen, map.size());
    for (const std::string& k : must_stay) EXPECT_TRUE(map.count(k)) << k << " vanished";
  }
};

std::set<std::string> Keys(const std::vector<TracedEndpoint>& v) {
  std::set<std::string> s;
  for (const auto& e : v) s.insert(e.endpoint.ToString());
  return s;
}
std::set<std::string> Keys(const std::map<std::string, TracedEndpoint>& m) {
  std::set<std::string> s;
  for (const auto& [k, v] : m) s.insert(k);
  return s;
}

TEST(EndpointDiff, InsertsBeforeDeletingAndKeepsUnchangedEntriesUntouched) {
  FakeMap fake;
  std::vector<TracedEndpoint> cur = {T("10.0.0.1:8000"), T("10.0.0.2:8000")};
  fake.Load(cur);
  fake.must_stay = {"10.0.0.2:8000"};
  std::vector<TracedEndpoint> want = {T("10.0.0.2:8000"), T("10.0.0.3:8000")};
  EndpointDiffResult r = ApplyEndpointDiff(fake, cur, want, 4096);
  ASSERT_TRUE(r.status) << r.status.message();
  EXPECT_EQ(fake.log, (std::vector<std::string>{"+10.0.0.3:8000", "-10.0.0.1:8000"}));
  EXPECT_EQ(r.added, 1u);
  EXPECT_EQ(r.removed, 1u);
  EXPECT_EQ(r.updated, 0u);
  EXPECT_EQ(Keys(r.in_map), Keys(fake.map));
  EXPECT_EQ(r.in_map, want);
}

TEST(EndpointDiff, ReplacingTheWholeSetNeverEmptiesTheMap) {
  FakeMap fake;
  std::vector<TracedEndpoint> cur = {T("10.0.0.1:8000")};
  fake.Load(cur);
  std::vector<TracedEndpoint> want = {T("10.0.0.5:8000"), T("10.0.0.6:8001")};
  EndpointDiffResult r = ApplyEndpointDiff(fake, cur, want, 4096);
  ASSERT_TRUE(r.status);
  EXPECT_GE(fake.min_size_seen, 1u);
  EXPECT_EQ(Keys(fake.map), Keys(want));
}

TEST(EndpointDiff, ChangedValueIsOverwrittenInPlace) {
  FakeMap fake;
  std::vector<TracedEndpoint> cur = {T("10.0.0.1:8000", 0)};
  fake.Load(cur);
  fake.must_stay = {"10.0.0.1:8000"};
  EndpointDiffResult r = ApplyEndpointDiff(fake, cur, {T("10.0.0.1:8000", 3)}, 4096);
  ASSERT_TRUE(r.status);
  EXPECT_EQ(r.updated, 1u);
  EXPECT_EQ(fake.log, (std::vector<std::string>{"+10.0.0.1:8000"}));
  EXPECT_EQ(fake.map["10.0.0.1:8000"].pool_index, 3u);
}

TEST(EndpointDiff, NoChangeWritesNothing) {
  FakeMap fake;
  std::vector<TracedEndpoint> cur = {T("10.0.0.1:8000"), T(":9000")};
  fake.Load(cur);
  EndpointDiffResult r = ApplyEndpointDiff(fake, cur, cur, 4096);
  ASSERT_TRUE(r.status);
  EXPECT_FALSE(r.changed());
  EXPECT_TRUE(fake.log.empty());
}

// Fail each call in turn: the copy always equals the map, the status names the failure, kept
// entries never vanish and the map never becomes empty.
TEST(EndpointDiff, FailureOnEveryNthCallLeavesAnHonestCopy) {
  const std::vector<TracedEndpoint> cur = {T("10.0.0.1:8000"), T("10.0.0.2:8000"),
                                           T("10.0.0.3:8000", 1)};
  const std::vector<TracedEndpoint> want = {T("10.0.0.2:8000"), T("10.0.0.3:8000", 2),
                                            T("10.0.0.4:8000"), T("10.0.0.5:8000")};
  // 3 upserts (.3 changed, .4, .5) + 1 removal (.1).
  for (int n = 1; n <= 4; ++n) {
    SCOPED_TRACE("failing call " + std::to_string(n));
    FakeMap fake;
    fake.Load(cur);
    fake.must_stay = {"10.0.0.2:8000", "10.0.0.3:8000"};
    fake.fail_call = n;
    EndpointDiffResult r = ApplyEndpointDiff(fake, cur, want, 4096);
    EXPECT_FALSE(r.status);
    EXPECT_EQ(r.failed, 1u);
    EXPECT_NE(r.status.message().find("1 endpoint map change(s) failed"), std::string::npos)
        << r.status.message();
    EXPECT_GE(fake.min_size_seen, 1u);
    // The copy is exactly the map, values included.
    ASSERT_EQ(Keys(r.in_map), Keys(fake.map));
    for (const auto& e : r.in_map) EXPECT_EQ(fake.map[e.endpoint.ToString()], e);
    // Retrying from the copy converges.
    fake.fail_call = 0;
    EndpointDiffResult again = ApplyEndpointDiff(fake, r.in_map, want, 4096);
    EXPECT_TRUE(again.status) << again.status.message();
    EXPECT_EQ(Keys(fake.map), Keys(want));
    EXPECT_EQ(again.in_map, want);
  }
}

TEST(EndpointDiff, FailedInsertPostponesRemovalsAndNamesTheEndpoint) {
  FakeMap fake;
  std::vector<TracedEndpoint> cur = {T("10.0.0.1:8000")};
  fake.Load(cur);
  fake.must_stay = {"10.0.0.1:8000"};
  fake.fail_call = 1;  // the insert of .9
  EndpointDiffResult r = ApplyEndpointDiff(fake, cur, {T("10.0.0.9:8000")}, 4096);
  EXPECT_FALSE(r.status);
  EXPECT_NE(r.status.message().find("cannot add endpoint 10.0.0.9:8000"), std::string::npos)
      << r.status.message();
  EXPECT_NE(r.status.message().find("removals postponed"), std::string::npos);
  // .1 stays until the new set is in: never an empty map.
  EXPECT_EQ(Keys(fake.map), (std::set<std::string>{"10.0.0.1:8000"}));
  EXPECT_EQ(r.in_map, cur);
  fake.must_stay.clear();
  EndpointDiffResult again = ApplyEndpointDiff(fake, r.in_map, {T("10.0.0.9:8000")}, 4096);
  EXPECT_TRUE(again.status);
  EXPECT_EQ(Keys(fake.map), (std::set<std::string>{"10.0.0.9:8000"}));
}

TEST(EndpointDiff, FailedRemovalStaysInTheCopy) {
  FakeMap fake;
  std::vector<TracedEndpoint> cur = {T("10.0.0.1:8000"), T("10.0.0.2:8000")};
  fake.Load(cur);
  fake.fail_call = 1;  // the removal of .1 (nothing to insert)
  EndpointDiffResult r = ApplyEndpointDiff(fake, cur, {T("10.0.0.2:8000")}, 4096);
  EXPECT_FALSE(r.status);
  EXPECT_NE(r.status.message().find("cannot remove endpoint 10.0.0.1:8000"), std::string::npos);
  EXPECT_EQ(Keys(r.in_map), Keys(fake.map));
  EXPECT_EQ(Keys(fake.map), Keys(cur));
}

TEST(EndpointDiff, DuplicatesKeepTheFirstAndCapacityIsCheckedFirst) {
  FakeMap fake;
  EndpointDiffResult r =
      ApplyEndpointDiff(fake, {}, {T("10.0.0.1:8000", 0), T("10.0.0.1:8000", 1)}, 4096);
  ASSERT_TRUE(r.status);
  ASSERT_EQ(r.in_map.size(), 1u);
  EXPECT_EQ(r.in_map[0].pool_index, 0u);

  FakeMap full;
  std::vector<TracedEndpoint> cur = {T("10.0.0.1:8000")};
  full.Load(cur);
  EndpointDiffResult over =
      ApplyEndpointDiff(full, cur, {T("10.0.0.2:8000"), T("10.0.0.3:8000")}, 1);
  EXPECT_FALSE(over.status);
  EXPECT_NE(over.status.message().find("at most 1"), std::string::npos);
  EXPECT_TRUE(full.log.empty());
  EXPECT_EQ(over.in_map, cur);
}

}  // namespace
}  // namespace infertap
