// Replay tier: the whole offline pipeline (`infertap replay`, the same code as the live agent)
// on committed captures — real pcaps (test/data/) and infertap capture files
// (test/replay/data/). Each test asserts the values the traffic is known to carry (see the
// READMEs), and the complete record output is compared with a golden file, rewritten only when
// INFERTAP_UPDATE_GOLDENS=1.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "parsers/promtext/promtext.hpp"

namespace {

using nlohmann::json;

const std::string kSrc = INFERTAP_SOURCE_DIR;
const std::string kBin = std::string(INFERTAP_BINARY_DIR) + "/infertap";

struct CliRun {
  int code = -1;
  std::string out, err;
};

CliRun Exec(const std::string& args) {
  const std::string err_file = "/tmp/infertap-replay-test-" + std::to_string(getpid()) + ".err";
  CliRun r;
  FILE* p = popen((kBin + " " + args + " 2>" + err_file).c_str(), "r");
  if (!p) return r;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err_file);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  std::remove(err_file.c_str());
  return r;
}

std::vector<json> Records(const std::string& file, const std::string& target) {
  CliRun r = Exec("replay " + file + " --records --node replay-test --target " + target);
  EXPECT_EQ(r.code, 0) << r.err;
  std::vector<json> out;
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// The whole --records output must equal the golden file (ts, durations and all: a replay is
// deterministic).
void ExpectGolden(const std::string& name, const std::string& file, const std::string& target) {
  CliRun r = Exec("replay " + file + " --records --node replay-test --target " + target);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string golden = kSrc + "/test/replay/golden/" + name + ".records.jsonl";
  const char* update = std::getenv("INFERTAP_UPDATE_GOLDENS");
  if (update && std::string(update) == "1") {
    std::ofstream(golden) << r.out;
    return;
  }
  std::ifstream in(golden);
  ASSERT_TRUE(in) << "missing golden " << golden << " (INFERTAP_UPDATE_GOLDENS=1 writes it)";
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(r.out, ss.str()) << "records of " << file << " differ from " << golden;
}

TEST(ReplayPcap, StreamingChatWithUsageGivesExactRecord) {
  const std::string f = kSrc + "/test/data/vllm_chat_stream_include_usage.pcap";
  auto recs = Records(f, "127.0.0.1:18101");
  ASSERT_EQ(recs.size(), 1u);
  const json& r = recs[0];
  EXPECT_EQ(r["method"], "POST");
  EXPECT_EQ(r["path"], "/v1/chat/completions");
  EXPECT_EQ(r["status"], 200);
  EXPECT_EQ(r["stream"], true);
  EXPECT_EQ(r["error_code"], "");
  EXPECT_EQ(r["input_tokens"], 5);
  EXPECT_EQ(r["output_tokens"], 8);
  EXPECT_EQ(r["chunks"], 8);
  EXPECT_EQ(r["role"], "server");
  EXPECT_EQ(r["pool"], "default");
  EXPECT_EQ(r["target_model_name"], "meta-llama/Llama-3.1-8B-Instruct");
  EXPECT_EQ(r["model_name"], "meta-llama/Llama-3.1-8B-Instruct");
  EXPECT_GT(r["request_bytes"].get<uint64_t>(), 100u);
  EXPECT_GT(r["response_bytes"].get<uint64_t>(), 2000u);
  // TTFT is measured to the first content event, after the headers and the role chunk; the
  // stream then runs 8 tokens 2 ms apart: duration exceeds ttft by at least ~7 × 2 ms.
  const double ttft = r["ttft_s"], dur = r["duration_s"];
  EXPECT_GT(ttft, 0.0);
  EXPECT_GT(dur, ttft + 0.012);
  EXPECT_LT(dur, 1.0);
  EXPECT_NEAR(r["tpot_s"].get<double>(), (dur - ttft) / 7, 1e-6);
  ExpectGolden("vllm_chat_stream_include_usage", f, "127.0.0.1:18101");
}

TEST(ReplayPcap, KeepAliveConnectionPairsEveryExchange) {
  const std::string f = kSrc + "/test/data/vllm_keepalive_mixed.pcap";
  auto recs = Records(f, "127.0.0.1:18102");
  ASSERT_EQ(recs.size(), 3u);  // GET /metrics is not an inference exchange
  EXPECT_EQ(recs[0]["stream"], false);
  EXPECT_EQ(recs[0]["status"], 200);
  EXPECT_EQ(recs[0]["input_tokens"], 5);
  EXPECT_EQ(recs[0]["output_tokens"], 5);
  EXPECT_FALSE(recs[0].contains("ttft_s"));
  EXPECT_EQ(recs[1]["path"], "/v1/completions");
  EXPECT_EQ(recs[1]["stream"], true);
  EXPECT_EQ(recs[1]["input_tokens"], 3);
  EXPECT_EQ(recs[1]["output_tokens"], 4);
  EXPECT_EQ(recs[1]["chunks"], 4);
  EXPECT_EQ(recs[2]["status"], 400);
  EXPECT_EQ(recs[2]["error_code"], "BadRequest");
  EXPECT_FALSE(recs[2].contains("output_tokens"));
  ExpectGolden("vllm_keepalive_mixed", f, "127.0.0.1:18102");
}

TEST(ReplayPcap, MidStreamErrorUnder200IsAModelServerError) {
  const std::string f = kSrc + "/test/data/vllm_midstream_error.pcap";
  auto recs = Records(f, "127.0.0.1:18103");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0]["status"], 200);
  EXPECT_EQ(recs[0]["error_code"], "ModelServerError");
  EXPECT_EQ(recs[0]["chunks"], 3);
  EXPECT_FALSE(recs[0].contains("output_tokens"));
  ExpectGolden("vllm_midstream_error", f, "127.0.0.1:18103");
}

TEST(ReplayPcap, ClientAbortIsIncompleteWithTheChunksSeen) {
  const std::string f = kSrc + "/test/data/vllm_client_abort.pcap";
  auto recs = Records(f, "127.0.0.1:18104");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0]["status"], 200);
  EXPECT_EQ(recs[0]["error_code"], "Incomplete");
  EXPECT_EQ(recs[0]["stream"], true);
  EXPECT_EQ(recs[0]["chunks"], 4);
  EXPECT_FALSE(recs[0].contains("output_tokens"));
  EXPECT_GT(recs[0]["ttft_s"].get<double>(), 0.0);
  // 4 tokens 300 ms apart were received before the client gave up at 1 s.
  EXPECT_GT(recs[0]["duration_s"].get<double>(), 0.9);
  ExpectGolden("vllm_client_abort", f, "127.0.0.1:18104");
}

TEST(ReplayPcap, Ipv6CookedCaptureWithInferredServerSide) {
  const std::string f = kSrc + "/test/data/vllm_ipv6_any.pcap";
  // No --target: the server side is inferred from the SYN.
  CliRun r = Exec("replay " + f + " --records --node replay-test");
  ASSERT_EQ(r.code, 0) << r.err;
  json rec = json::parse(r.out.substr(0, r.out.find('\n')));
  EXPECT_EQ(rec["input_tokens"], 5);
  EXPECT_EQ(rec["output_tokens"], 3);
  EXPECT_EQ(rec["pool"], "default");
  ExpectGolden("vllm_ipv6_any", f, "[::1]:18105");
}

TEST(ReplayCapture, InfertapCaptureFileOfMixedTraffic) {
  const std::string f = kSrc + "/test/replay/data/sim_mixed.cap";
  auto recs = Records(f, "127.0.0.1:18201");
  ASSERT_EQ(recs.size(), 5u);  // GET /v1/models is ignored
  EXPECT_EQ(recs[0]["input_tokens"], 5);
  EXPECT_EQ(recs[0]["output_tokens"], 7);
  EXPECT_EQ(recs[0]["chunks"], 7);
  EXPECT_EQ(recs[0]["request_bytes"], 167);  // the JSON body curl sent (see the script)
  EXPECT_EQ(recs[1]["stream"], false);
  EXPECT_EQ(recs[1]["output_tokens"], 3);
  EXPECT_EQ(recs[2]["status"], 429);
  EXPECT_EQ(recs[2]["error_code"], "ResourceExhausted");
  EXPECT_EQ(recs[2]["target_model_name"], "other-model");
  EXPECT_EQ(recs[3]["error_code"], "ModelServerError");
  EXPECT_EQ(recs[3]["chunks"], 2);
  EXPECT_EQ(recs[4]["path"], "/v1/embeddings");
  EXPECT_EQ(recs[4]["input_tokens"], 4);
  ExpectGolden("sim_mixed", f, "127.0.0.1:18201");
}

// The default output is the Prometheus exposition, built by the same registry as live.
TEST(ReplayCapture, ExpositionCarriesTheRecordedTraffic) {
  const std::string f = kSrc + "/test/replay/data/sim_mixed.cap";
  CliRun r = Exec("replay " + f +
                  " --target 127.0.0.1:18201 --model-alias "
                  "meta-llama/Llama-3.1-8B-Instruct=llama");
  ASSERT_EQ(r.code, 0) << r.err;
  auto parsed = infertap::promtext::Parse(r.out, infertap::promtext::Format::kText004, {});
  ASSERT_TRUE(parsed.ok()) << parsed.error.message;
  auto value = [&](const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& labels) {
    for (const auto& fam : parsed.families)
      for (const auto& s : fam.samples) {
        if (s.name != name) continue;
        bool match = true;
        for (const auto& [k, v] : labels) {
          bool found = false;
          for (const auto& [sk, sv] : s.labels) found |= (sk == k && sv == v);
          match &= found;
        }
        if (match) return s.value;
      }
    return -1.0;
  };
  const std::vector<std::pair<std::string, std::string>> llama = {
      {"model_name", "llama"}, {"target_model_name", "meta-llama/Llama-3.1-8B-Instruct"}};
  EXPECT_EQ(value("inference_model_request_total", llama), 4);
  EXPECT_EQ(value("inference_model_request_total", {{"model_name", "other-model"}}), 1);
  EXPECT_EQ(value("inference_model_request_error_total",
                  {{"error_code", "ResourceExhausted"}, {"model_name", "other-model"}}),
            1);
  EXPECT_EQ(value("inference_model_request_error_total",
                  {{"error_code", "ModelServerError"}, {"model_name", "llama"}}),
            1);
  EXPECT_EQ(value("inference_model_output_tokens_sum", llama), 10);  // 7 + 3 (embeddings: 0)
  EXPECT_EQ(value("inference_model_output_tokens_count", llama), 2);
  EXPECT_EQ(value("inference_model_input_tokens_sum", llama), 11);  // 5 + 2 + 4
  EXPECT_EQ(value("inference_model_request_ttft_seconds_count", llama), 2);
  EXPECT_EQ(value("infertap_http_exchanges_ignored_total", {}), 1);
  // promtool (Debian's prometheus package) must accept the exposition.
  const std::string tmp = "/tmp/infertap-replay-expo-" + std::to_string(getpid()) + ".prom";
  std::ofstream(tmp) << r.out;
  FILE* p = popen(("promtool check metrics < " + tmp + " 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  std::remove(tmp.c_str());
  EXPECT_EQ(WEXITSTATUS(st), 0) << "promtool: " << out;
  EXPECT_EQ(out, "") << "promtool reported problems";
}

TEST(ReplayErrors, TruncatedForeignAndMissingFilesAreOneLineErrors) {
  const std::string cap = kSrc + "/test/replay/data/sim_mixed.cap";
  const std::string tmp = "/tmp/infertap-replay-trunc-" + std::to_string(getpid());
  {
    std::ifstream in(cap, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(tmp + ".cap", std::ios::binary) << all.substr(0, all.size() - 10);
    std::ifstream pin(kSrc + "/test/data/vllm_keepalive_mixed.pcap", std::ios::binary);
    std::string pall((std::istreambuf_iterator<char>(pin)), std::istreambuf_iterator<char>());
    std::ofstream(tmp + ".pcap", std::ios::binary) << pall.substr(0, pall.size() - 10);
    std::ofstream(tmp + ".txt") << "hello, I am not a capture\n";
  }
  CliRun r = Exec("replay " + tmp + ".cap --records");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("truncated capture file"), std::string::npos) << r.err;
  r = Exec("replay " + tmp + ".pcap --records");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("truncated at packet"), std::string::npos) << r.err;
  r = Exec("replay " + tmp + ".txt");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("not an infertap capture file"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not a pcap"), std::string::npos) << r.err;
  r = Exec("replay /nonexistent/file.cap");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot open"), std::string::npos) << r.err;
  r = Exec("replay");
  EXPECT_EQ(r.code, 2);
  r = Exec("replay " + cap + " --records --summary");
  EXPECT_EQ(r.code, 2);
  for (const char* ext : {".cap", ".pcap", ".txt"}) std::remove((tmp + ext).c_str());
  // Every error is one line.
  r = Exec("replay " + tmp + ".missing");
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(ReplayCapture, SummaryListsTheConnection) {
  CliRun r = Exec("replay " + kSrc + "/test/replay/data/sim_mixed.cap --summary");
  ASSERT_EQ(r.code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  uint64_t in = 0;
  int conns = 0;
  while (std::getline(lines, line)) {
    json j = json::parse(line);
    EXPECT_EQ(j["role"], "server");
    EXPECT_EQ(j["gap_bytes"], 0);
    in += j["bytes_in"].get<uint64_t>();
    ++conns;
  }
  EXPECT_EQ(conns, 6);  // curl opened one connection per command
  EXPECT_GT(in, 167u + 94u + 66u + 105u);
}

}  // namespace
