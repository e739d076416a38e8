#include "agent/cli/inspect/agent_client.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>

#include "fake_agent.hpp"

namespace infertap::cli {
namespace {

using infertap::testing::FakeAgent;

TEST(LineSplitter, SplitsAcrossFeedsAndSkipsHeartbeats) {
  LineSplitter s;
  std::vector<std::string> lines;
  s.Feed("{\"a\":1}\n\n{\"b\"", &lines);
  s.Feed(":2}\r\n", &lines);
  s.Feed("\n\n{\"c\":3}", &lines);
  EXPECT_EQ(lines, (std::vector<std::string>{"{\"a\":1}", "{\"b\":2}"}));
  s.Feed("\n", &lines);
  EXPECT_EQ(lines.back(), "{\"c\":3}");
}

TEST(LineSplitter, DropsOverlongLinesWhole) {
  LineSplitter s(8);
  std::vector<std::string> lines;
  s.Feed("12345", &lines);
  s.Feed("6789abc", &lines);  // now 12 bytes without a newline: over the cap
  s.Feed("def\nok\n", &lines);
  EXPECT_EQ(lines, std::vector<std::string>{"ok"});
  EXPECT_EQ(s.overlong_lines(), 1u);
}

TEST(NormalizeAgentUrl, AcceptsHostPortAndHttpUrls) {
  std::string error;
  EXPECT_EQ(NormalizeAgentUrl("127.0.0.1:9091", &error), "http://127.0.0.1:9091");
  EXPECT_EQ(NormalizeAgentUrl("http://localhost:9091/", &error), "http://localhost:9091");
  EXPECT_EQ(NormalizeAgentUrl("https://[::1]:9091", &error), "https://[::1]:9091");
  EXPECT_FALSE(NormalizeAgentUrl("", &error));
  EXPECT_FALSE(NormalizeAgentUrl("ftp://x", &error));
  EXPECT_NE(error.find("http://"), std::string::npos) << error;
  EXPECT_FALSE(NormalizeAgentUrl("http://", &error));
}

// Polls until `done` or a deadline; the client is single-threaded, so the test drives it.
bool PollUntil(AgentClient& c, const std::function<bool()>& done, int timeout_ms = 5000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    c.Poll(20, {});
  }
  return true;
}

TEST(AgentClient, FetchesStateAndStreamsRecordLines) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  agent.SetState(R"({"node":"n1"})");
  AgentClient c(agent.url());
  c.StartState();
  c.StartRecords();
  std::optional<AgentClient::StateResult> state;
  ASSERT_TRUE(PollUntil(c, [&] {
    if (!state) state = c.TakeStateResult();
    return state && c.records_open();
  }));
  EXPECT_TRUE(state->ok) << state->error;
  EXPECT_EQ(state->body, R"({"node":"n1"})");
  ASSERT_TRUE(agent.WaitForStreams(1, 2000));

  agent.Publish(R"({"pool":"a"})");
  agent.Heartbeat();
  agent.Publish(R"({"pool":"b"})");
  std::vector<std::string> lines;
  ASSERT_TRUE(PollUntil(c, [&] {
    for (auto& l : c.TakeRecordLines()) lines.push_back(l);
    return lines.size() >= 2;
  }));
  EXPECT_EQ(lines, (std::vector<std::string>{R"({"pool":"a"})", R"({"pool":"b"})"}));
  EXPECT_FALSE(c.TakeRecordsFailure());
  // JSON lines are asked for explicitly.
  std::vector<std::string> targets = agent.targets();
  EXPECT_NE(std::find(targets.begin(), targets.end(), "/v1/records?format=json"), targets.end());

  // The agent ends the stream: the client reports it (and that it had been open).
  agent.CloseStreams();
  std::optional<std::string> failure;
  ASSERT_TRUE(PollUntil(c, [&] { return (failure = c.TakeRecordsFailure()).has_value(); }));
  EXPECT_EQ(*failure, "the agent closed the record stream");
  EXPECT_FALSE(c.records_never_opened());
  EXPECT_FALSE(c.records_open());

  // And reconnects when asked.
  c.StartRecords();
  ASSERT_TRUE(PollUntil(c, [&] { return c.records_open(); }));
}

TEST(AgentClient, ReportsARefusedConnection) {
  uint16_t port;
  {
    FakeAgent gone;  // a port that was just free
    ASSERT_TRUE(gone.Start());
    port = gone.port();
  }
  AgentClient c("http://127.0.0.1:" + std::to_string(port));
  c.StartState();
  c.StartRecords();
  std::optional<AgentClient::StateResult> state;
  std::optional<std::string> failure;
  ASSERT_TRUE(PollUntil(c, [&] {
    if (!state) state = c.TakeStateResult();
    if (!failure) failure = c.TakeRecordsFailure();
    return state && failure;
  }));
  EXPECT_FALSE(state->ok);
  EXPECT_NE(state->error.find("onnect"), std::string::npos) << state->error;
  EXPECT_TRUE(c.records_never_opened());
}

TEST(AgentClient, HttpErrorsAreFailuresWithTheStatus) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  agent.SetRecordsStatus(404);
  AgentClient c(agent.url());
  c.StartRecords();
  std::optional<std::string> failure;
  ASSERT_TRUE(PollUntil(c, [&] { return (failure = c.TakeRecordsFailure()).has_value(); }));
  EXPECT_NE(failure->find("404"), std::string::npos) << *failure;
  EXPECT_TRUE(c.records_never_opened());
}

TEST(AgentClient, PollWakesForTheCallersDescriptors) {
  FakeAgent agent;
  ASSERT_TRUE(agent.Start());
  AgentClient c(agent.url());
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ASSERT_EQ(write(p[1], "x", 1), 1);
  pollfd fd{p[0], POLLIN, 0};
  auto start = std::chrono::steady_clock::now();
  c.Poll(5000, std::span(&fd, 1));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_TRUE(fd.revents & POLLIN);
  close(p[0]);
  close(p[1]);
}

}  // namespace
}  // namespace infertap::cli
