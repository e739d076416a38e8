// The cgroup backend's attached set changed by a diff (agent/capture/cgroup_attachments.hpp),
// against a fake attacher that records every attach and detach: kept cgroups are never touched,
// failures are counted and retried, vanished cgroups detach cleanly, detached ids are reported.
// And the connections of a detached cgroup end at once (TcpFlows::FinishTagged via SkbFlows).
#include "agent/capture/cgroup_attachments.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace infertap {
namespace {

class FakeAttacher : public CgroupAttacher {
 public:
  class Link : public Attachment {
   public:
    Link(FakeAttacher& a, std::string path) : a_(a), path_(std::move(path)) {
      a_.live.insert(path_);
    }
    ~Link() override {
      a_.live.erase(path_);
      a_.log.push_back("detach " + path_);
    }

   private:
    FakeAttacher& a_;
    std::string path_;
  };

  std::unique_ptr<Attachment> Attach(const std::string& path, uint64_t* cgroup_id,
                                     std::string* error) override {
    log.push_back("attach " + path);
    if (failing.count(path)) {
      *error = "cannot attach skb_ingress to " + path + ": Operation not permitted";
      return nullptr;
    }
    *cgroup_id = ids.count(path) ? ids[path] : 0;
    return std::make_unique<Link>(*this, path);
  }

  std::set<std::string> failing;
  std::map<std::string, uint64_t> ids;
  std::set<std::string> live;    // attached now
  std::vector<std::string> log;  // every call, in order
};

TEST(CgroupAttachments, DiffAttachesNewDetachesGoneKeepsTheRest) {
  FakeAttacher fake;
  fake.ids = {{"/cg/a", 11}, {"/cg/b", 12}, {"/cg/c", 13}};
  CgroupAttachments set(fake);
  CgroupSetChange c = set.Set({"/cg/a", "/cg/b", "/cg/a"});  // a duplicate is one cgroup
  EXPECT_EQ(c.attached, (std::vector<std::string>{"/cg/a", "/cg/b"}));
  EXPECT_TRUE(c.detached.empty());
  EXPECT_EQ(fake.live, (std::set<std::string>{"/cg/a", "/cg/b"}));

  fake.log.clear();
  c = set.Set({"/cg/b", "/cg/c"});
  // b is kept untouched: no detach and re-attach (its packets must not stop meanwhile).
  EXPECT_EQ(fake.log, (std::vector<std::string>{"detach /cg/a", "attach /cg/c"}));
  EXPECT_EQ(c.detached, std::vector<std::string>{"/cg/a"});
  EXPECT_EQ(c.detached_ids, std::vector<uint64_t>{11});
  EXPECT_EQ(c.attached, std::vector<std::string>{"/cg/c"});
  EXPECT_EQ(set.AttachedPaths(), (std::vector<std::string>{"/cg/b", "/cg/c"}));

  fake.log.clear();
  c = set.Set({"/cg/b", "/cg/c"});  // the same set: nothing happens
  EXPECT_TRUE(fake.log.empty());
  EXPECT_TRUE(c.attached.empty() && c.detached.empty() && c.failed.empty());

  c = set.Set({});
  EXPECT_EQ(c.detached_ids, (std::vector<uint64_t>{12, 13}));
  EXPECT_TRUE(fake.live.empty());
  EXPECT_EQ(set.detaches(), 3u);
  EXPECT_TRUE(set.States().empty());
}

TEST(CgroupAttachments, AFailedAttachIsCountedNotFatalAndRetried) {
  FakeAttacher fake;
  fake.failing = {"/cg/bad"};
  CgroupAttachments set(fake);
  CgroupSetChange c = set.Set({"/cg/ok", "/cg/bad"});
  EXPECT_EQ(c.attached, std::vector<std::string>{"/cg/ok"});
  EXPECT_EQ(c.failed, std::vector<std::string>{"/cg/bad"});
  EXPECT_EQ(c.first_error, "cannot attach skb_ingress to /cg/bad: Operation not permitted");
  EXPECT_EQ(set.attach_failures(), 1u);
  std::vector<CgroupAttachmentState> st = set.States();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].path, "/cg/bad");
  EXPECT_FALSE(st[0].attached);
  EXPECT_EQ(st[0].failures, 1u);
  EXPECT_EQ(st[0].error, c.first_error);
  EXPECT_TRUE(st[1].attached);

  // Retried on each Set() that still wants it; the attached one is not touched.
  fake.log.clear();
  c = set.Set({"/cg/ok", "/cg/bad"});
  EXPECT_EQ(fake.log, std::vector<std::string>{"attach /cg/bad"});
  EXPECT_EQ(set.attach_failures(), 2u);
  EXPECT_EQ(set.States()[0].failures, 2u);
  fake.failing.clear();
  c = set.Set({"/cg/ok", "/cg/bad"});
  EXPECT_EQ(c.attached, std::vector<std::string>{"/cg/bad"});
  EXPECT_TRUE(c.failed.empty());
  st = set.States();
  EXPECT_TRUE(st[0].attached);
  EXPECT_EQ(st[0].error, "");
  EXPECT_EQ(set.attached(), 2u);

  // A failed one that is no longer wanted is forgotten without a detach.
  fake.failing = {"/cg/gone"};
  (void)set.Set({"/cg/ok", "/cg/bad", "/cg/gone"});
  fake.log.clear();
  c = set.Set({"/cg/ok", "/cg/bad"});
  EXPECT_TRUE(fake.log.empty());
  EXPECT_TRUE(c.detached.empty());
  EXPECT_EQ(set.States().size(), 2u);
}

// A failure to retry is logged once per cgroup, not on every retry; one the caller reports
// (the cgroups required at start) is not logged at all: the caller fails with it.
TEST(CgroupAttachments, AFailureIsLoggedOnceOrLeftToTheCallerToReport) {
  FakeAttacher fake;
  fake.failing = {"/cg/bad"};
  CgroupAttachments set(fake);
  testing::internal::CaptureStderr();
  (void)set.Set({"/cg/bad"});
  (void)set.Set({"/cg/bad"});
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_NE(err.find("cannot attach the capture programs to /cg/bad (retrying): cannot attach "
                     "skb_ingress to /cg/bad: Operation not permitted"),
            std::string::npos)
      << err;

  CgroupAttachments required(fake);
  testing::internal::CaptureStderr();
  CgroupSetChange c = required.Set({"/cg/bad"}, CgroupAttachments::Failure::kReport);
  err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "");
  EXPECT_EQ(c.failed, std::vector<std::string>{"/cg/bad"});
  EXPECT_EQ(c.first_error, "cannot attach skb_ingress to /cg/bad: Operation not permitted");
  EXPECT_EQ(required.attach_failures(), 1u);
}

TEST(CgroupAttachments, DestructionDetachesEverything) {
  FakeAttacher fake;
  {
    CgroupAttachments set(fake);
    (void)set.Set({"/cg/x", "/cg/y"});
    EXPECT_EQ(fake.live.size(), 2u);
  }
  EXPECT_TRUE(fake.live.empty());
}

}  // namespace
}  // namespace infertap
