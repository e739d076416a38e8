// The pod UID → cgroup directory resolver (agent/capture/pod_cgroup.hpp) on fake kubepods trees
// made in a temp directory: both kubelet cgroup drivers, every QoS class, a kubepods moved by the
// kubelet's --cgroup-root, not found, bad UIDs; and the cgroup2 mount from mountinfo text.
#include "agent/capture/pod_cgroup.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>

namespace infertap {
namespace {

namespace fs = std::filesystem;

constexpr char kUid[] = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
constexpr char kUidUnderscores[] = "0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0";

class PodCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/infertap-podcg-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string Make(const std::string& rel) {
    const std::string p = root_ + "/" + rel;
    fs::create_directories(p);
    return p;
  }
  std::string root_;
};

TEST_F(PodCgroupTest, CgroupfsDriverEveryQosClass) {
  const std::string guaranteed = Make(std::string("kubepods/pod") + kUid);
  EXPECT_EQ(PodCgroupResolver(root_).Find(kUid).path, guaranteed);
  fs::remove_all(guaranteed);
  const std::string burstable = Make(std::string("kubepods/burstable/pod") + kUid);
  EXPECT_EQ(PodCgroupResolver(root_).Find(kUid).path, burstable);
  fs::remove_all(burstable);
  const std::string besteffort = Make(std::string("kubepods/besteffort/pod") + kUid);
  const PodCgroupLookup r = PodCgroupResolver(root_).Find(kUid);
  EXPECT_EQ(r.path, besteffort);
  EXPECT_EQ(r.error, "");
}

TEST_F(PodCgroupTest, SystemdDriverEveryQosClassWithTheUnderscoreForm) {
  const std::string guaranteed =
      Make(std::string("kubepods.slice/kubepods-pod") + kUidUnderscores + ".slice");
  EXPECT_EQ(PodCgroupResolver(root_).Find(kUid).path, guaranteed);
  fs::remove_all(guaranteed);
  const std::string burstable =
      Make(std::string("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod") +
           kUidUnderscores + ".slice");
  EXPECT_EQ(PodCgroupResolver(root_).Find(kUid).path, burstable);
  fs::remove_all(burstable);
  const std::string besteffort =
      Make(std::string("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod") +
           kUidUnderscores + ".slice");
  EXPECT_EQ(PodCgroupResolver(root_).Find(kUid).path, besteffort);
  // The dashed spelling is not what systemd names it: a directory with it is not the pod's.
  fs::remove_all(besteffort);
  Make(std::string("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod") + kUid +
       ".slice");
  EXPECT_EQ(PodCgroupResolver(root_).Find(kUid).path, "");
}

TEST_F(PodCgroupTest, KubepodsOneLevelDownAsTheKubeletsCgroupRootPutsIt) {
  // --cgroup-driver=cgroupfs --cgroup-root=/kubelet
  const std::string a = Make(std::string("kubelet/kubepods/burstable/pod") + kUid);
  EXPECT_EQ(PodCgroupResolver(root_).Find(kUid).path, a);
  fs::remove_all(root_ + "/kubelet");
  // --cgroup-driver=systemd --cgroup-root=/kubelet.slice: systemd prefixes the nested names.
  const std::string b =
      Make(std::string("kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
                       "kubelet-kubepods-besteffort-pod") +
           kUidUnderscores + ".slice");
  EXPECT_EQ(PodCgroupResolver(root_).Find(kUid).path, b);
  EXPECT_EQ(PodCgroupResolver(root_).KubepodsDirs(),
            std::vector<std::string>{root_ + "/kubelet.slice/kubelet-kubepods.slice"});
  // The root may also be given deeper, at the kubepods parent itself.
  EXPECT_EQ(PodCgroupResolver(root_ + "/kubelet.slice").Find(kUid).path, b);
}

TEST_F(PodCgroupTest, NeverLooksTwoLevelsDown) {
  Make(std::string("a/b/kubepods/pod") + kUid);
  const PodCgroupLookup r = PodCgroupResolver(root_).Find(kUid);
  EXPECT_EQ(r.path, "");
  EXPECT_EQ(r.error,
            "cgroup not found under " + root_ + " (no kubepods directory there or one level down)");
}

TEST_F(PodCgroupTest, NotFoundNamesWhereItLooked) {
  Make("kubepods.slice/kubepods-burstable.slice");
  Make("kubepods/burstable");
  Make(std::string("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod") +
       "11111111_2222_3333_4444_555555555555.slice");  // another pod
  const PodCgroupLookup r = PodCgroupResolver(root_).Find(kUid);
  EXPECT_EQ(r.path, "");
  EXPECT_EQ(r.error, "cgroup not found under " + root_ + " (looked in " + root_ + "/kubepods, " +
                         root_ + "/kubepods.slice)");
  // Created later (the kubelet makes it after the pod object exists): found on the next look.
  const std::string later = Make(std::string("kubepods/burstable/pod") + kUid);
  EXPECT_EQ(PodCgroupResolver(root_).Find(kUid).path, later);
}

TEST_F(PodCgroupTest, BadUidsBuildNoPath) {
  Make("kubepods/pod..");
  Make("kubepods/burstable");
  for (const char* bad :
       {"", "..", "../../etc", "a/b", "0f1e2d3c_4b5a", "0f1e 2d3c", "xyz",
        "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}) {
    const PodCgroupLookup r = PodCgroupResolver(root_).Find(bad);
    EXPECT_EQ(r.path, "") << bad;
    EXPECT_NE(r.error.find("invalid pod UID"), std::string::npos) << bad << ": " << r.error;
  }
  EXPECT_TRUE(ValidPodUid(kUid));
  EXPECT_TRUE(ValidPodUid("ABCDEF01-2345"));
  EXPECT_FALSE(ValidPodUid(kUidUnderscores));  // the path form is derived, never accepted
}

TEST_F(PodCgroupTest, MissingRoot) {
  const PodCgroupLookup r = PodCgroupResolver(root_ + "/nope").Find(kUid);
  EXPECT_EQ(r.path, "");
  EXPECT_NE(r.error.find("cgroup not found under " + root_ + "/nope"), std::string::npos);
}

TEST(Cgroup2Mount, FromMountinfo) {
  // A hybrid layout: v1 controllers and the v2 hierarchy at /sys/fs/cgroup/unified.
  const char* hybrid =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(Cgroup2MountFromMountinfo(hybrid), "/sys/fs/cgroup/unified");
  // In a pod: its own namespaced /sys/fs/cgroup (root not "/") and the host's bind mount.
  const char* pod =
      "700 600 0:30 /kubepods.slice/x /sys/fs/cgroup ro - cgroup2 cgroup rw\n"
      "701 600 0:30 / /host/sys/fs\\040cgroup ro,relatime - cgroup2 cgroup2 rw\n";
  EXPECT_EQ(Cgroup2MountFromMountinfo(pod), "/host/sys/fs cgroup");
  EXPECT_EQ(Cgroup2MountFromMountinfo("700 600 0:30 /sub /x ro - cgroup2 c rw\n"), "/x");
  EXPECT_EQ(Cgroup2MountFromMountinfo("32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw\n"),
            "");
  EXPECT_EQ(Cgroup2MountFromMountinfo(""), "");
}

}  // namespace
}  // namespace infertap
