// Exchange assembler mechanics: timing, pairing, splits, gaps, garbage, caps.
#include <gtest/gtest.h>
#include <malloc.h>

#include <random>

#include "conn.hpp"

namespace infertap {
namespace {

using test::Conn;
using test::kMs;
using test::ReadFixture;

std::string StreamRequest() {
  return test::PostJson("/v1/chat/completions",
                        ReadFixture("wire/vllm_chat_request_stream_include_usage.json"));
}

// Splits the vLLM fixture response into its head and its HTTP chunks (one SSE event each).
std::vector<std::string> FixtureStreamPieces() {
  std::string all = ReadFixture("wire/vllm_chat_stream_include_usage.http");
  std::vector<std::string> pieces;
  size_t head_end = all.find("\r\n\r\n") + 4;
  pieces.push_back(all.substr(0, head_end));
  size_t pos = head_end;
  while (pos < all.size()) {
    size_t line_end = all.find("\r\n", pos);
    size_t n = std::stoul(all.substr(pos, line_end - pos), nullptr, 16);
    size_t end = line_end + 2 + n + 2;
    if (n == 0) end = all.size();
    pieces.push_back(all.substr(pos, end - pos));
    pos = end;
  }
  return pieces;
}

uint64_t FixtureBodyBytes() {
  uint64_t n = 0;
  for (const auto& l : test::SseDataLines(ReadFixture("wire/vllm_chat_stream_include_usage.sse")))
    n += 6 + l.size() + 2;
  return n;
}

TEST(Exchange, VllmStreamTimingTokensAndSizes) {
  Conn c;
  std::string req = StreamRequest();
  c.Req(1000 * kMs, req.substr(0, 40));
  c.Req(1001 * kMs, req.substr(40));
  ASSERT_EQ(c.rec.received.size(), 1u);
  EXPECT_EQ(c.rec.received[0].target_model_name, "meta-llama/Llama-3.1-8B-Instruct");
  EXPECT_TRUE(c.rec.records.empty());
  auto pieces = FixtureStreamPieces();
  ASSERT_EQ(pieces.size(), 15u);  // head, role, 9 content, finish, usage, [DONE], terminal
  uint64_t ts = 1005 * kMs;
  for (const auto& p : pieces) c.Resp(ts += 10 * kMs, p);
  const RequestRecord& r = c.Only();
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/v1/chat/completions");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.stream);
  EXPECT_EQ(r.error, ErrorCode::kNone);
  EXPECT_TRUE(r.request_complete);
  EXPECT_TRUE(r.response_complete);
  EXPECT_EQ(r.target_model_name, "meta-llama/Llama-3.1-8B-Instruct");
  EXPECT_EQ(r.request_bytes,
            ReadFixture("wire/vllm_chat_request_stream_include_usage.json").size());
  EXPECT_EQ(r.response_bytes, FixtureBodyBytes());
  EXPECT_EQ(r.input_tokens, 12u);
  EXPECT_EQ(r.output_tokens, 10u);
  EXPECT_FALSE(r.cached_tokens);
  EXPECT_EQ(r.chunks, 9u);  // the role chunk and the empty finish chunk carry no content
  EXPECT_EQ(r.start_ns, 1000 * kMs);
  // Headers at 1015 ms, role chunk at 1025, first content ("Hello") at 1035.
  EXPECT_EQ(r.first_token_ns, 1035 * kMs);
  EXPECT_EQ(r.end_ns, 1155 * kMs);  // the terminal chunk's write
  EXPECT_DOUBLE_EQ(*r.ttft_s(), 0.035);
  EXPECT_DOUBLE_EQ(r.duration_s(), 0.155);
  EXPECT_TRUE(c.rec.errors.empty());
  EXPECT_EQ(c.a.pending(), 0u);
}

TEST(Exchange, EverySplitPointOfAWholeExchange) {
  std::string req = StreamRequest();
  std::string resp = ReadFixture("wire/vllm_chat_stream_include_usage.http");
  for (size_t k = 0; k <= resp.size(); ++k) {
    Conn c;
    size_t rk = k % (req.size() + 1);
    c.Req(1, req.substr(0, rk));
    c.Req(2, req.substr(rk));
    c.Resp(3, resp.substr(0, k));
    c.Resp(4, resp.substr(k));
    ASSERT_EQ(c.rec.records.size(), 1u) << k;
    const auto& r = c.rec.records[0];
    ASSERT_EQ(r.output_tokens, 10u) << k;
    ASSERT_EQ(r.input_tokens, 12u) << k;
    ASSERT_EQ(r.chunks, 9u) << k;
    ASSERT_EQ(r.response_bytes, FixtureBodyBytes()) << k;
    ASSERT_EQ(r.end_ns, k == resp.size() ? 3u : 4u) << k;
    ASSERT_TRUE(c.rec.errors.empty()) << k;
  }
}

TEST(Exchange, OneByteAtATime) {
  Conn c;
  c.ReqPieces(1, StreamRequest(), 1);
  c.RespPieces(2, ReadFixture("wire/vllm_chat_stream_include_usage.http"), 1);
  const auto& r = c.Only();
  EXPECT_EQ(r.output_tokens, 10u);
  EXPECT_EQ(r.chunks, 9u);
  EXPECT_EQ(r.response_bytes, FixtureBodyBytes());
}

TEST(Exchange, NonStreamFixture) {
  Conn c;
  c.Req(10, test::PostJson("/v1/chat/completions",
                           ReadFixture("wire/vllm_chat_request_nonstream.json")));
  c.Resp(30, ReadFixture("wire/vllm_chat_nonstream_response.http"));
  const auto& r = c.Only();
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.response_bytes, 656u);
  EXPECT_EQ(r.input_tokens, 12u);
  EXPECT_EQ(r.output_tokens, 10u);
  EXPECT_FALSE(r.first_token_ns);
  EXPECT_EQ(r.chunks, 0u);
  EXPECT_EQ(r.end_ns, 30u);
}

TEST(Exchange, ErrorStatusFixture) {
  Conn c;
  c.Req(10, test::PostJson("/v1/chat/completions", R"({"model":"m","messages":[]})"));
  c.Resp(20, ReadFixture("wire/vllm_error_400_context_length.http"));
  const auto& r = c.Only();
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.error, ErrorCode::kBadRequest);
  EXPECT_EQ(r.response_bytes, 370u);
  EXPECT_FALSE(r.input_tokens);
}

TEST(Exchange, KeepAliveSeveralExchangesAndIgnoredTraffic) {
  Conn c;
  uint64_t ts = 0;
  for (int i = 0; i < 3; ++i) {
    std::string model = "m" + std::to_string(i);
    c.Req(ts += 10, test::PostJson("/v1/completions", R"({"model":")" + model + R"("})"));
    c.Resp(ts += 10,
           test::JsonResponse(200, R"({"usage":{"prompt_tokens":)" + std::to_string(i + 1) +
                                       R"(,"completion_tokens":2}})"));
    c.Req(ts += 10, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    c.Resp(ts += 10, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde");
  }
  ASSERT_EQ(c.rec.records.size(), 3u);
  EXPECT_EQ(c.rec.ignored, 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(c.rec.records[i].target_model_name, "m" + std::to_string(i));
    EXPECT_EQ(c.rec.records[i].input_tokens, uint64_t(i + 1));
    EXPECT_EQ(c.rec.records[i].start_ns, uint64_t(10 + 40 * i));
    EXPECT_EQ(c.rec.records[i].end_ns, uint64_t(20 + 40 * i));
  }
  EXPECT_EQ(c.a.pending(), 0u);
}

TEST(Exchange, PipelinedRequestsPairFifo) {
  Conn c;
  c.Req(10, test::PostJson("/v1/completions", R"({"model":"a"})") +
                test::PostJson("/v1/embeddings", R"({"model":"b"})") +
                "GET /health HTTP/1.1\r\n\r\n" +
                test::PostJson("/v1/completions", R"({"model":"c"})"));
  EXPECT_EQ(c.rec.received.size(), 3u);
  EXPECT_EQ(c.a.pending(), 4u);
  c.Resp(20, test::JsonResponse(200, R"({"usage":{"prompt_tokens":1}})") +
                 test::JsonResponse(429, R"({"error":"busy"})"));
  c.Resp(30, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok" +
                 test::JsonResponse(200, R"({"usage":{"prompt_tokens":3}})"));
  ASSERT_EQ(c.rec.records.size(), 3u);
  EXPECT_EQ(c.rec.ignored, 1);
  EXPECT_EQ(c.rec.records[0].target_model_name, "a");
  EXPECT_EQ(c.rec.records[0].input_tokens, 1u);
  EXPECT_EQ(c.rec.records[1].target_model_name, "b");
  EXPECT_EQ(c.rec.records[1].error, ErrorCode::kResourceExhausted);
  EXPECT_EQ(c.rec.records[2].target_model_name, "c");
  EXPECT_EQ(c.rec.records[2].input_tokens, 3u);
  EXPECT_EQ(c.rec.records[2].end_ns, 30u);
}

TEST(Exchange, ExpectContinueInterimIsSkipped) {
  Conn c;
  std::string body = R"({"model":"m","prompt":"x"})";
  std::string req = test::PostJson("/v1/completions", body, "Expect: 100-continue\r\n");
  size_t head = req.find("\r\n\r\n") + 4;
  c.Req(10, req.substr(0, head));
  c.Resp(11, "HTTP/1.1 100 Continue\r\n\r\n");
  c.Req(12, req.substr(head));
  c.Resp(20, test::JsonResponse(
                 200, R"({"model":"m","usage":{"prompt_tokens":4,"completion_tokens":1}})"));
  const auto& r = c.Only();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.start_ns, 10u);
  EXPECT_EQ(r.request_bytes, body.size());
  EXPECT_EQ(r.output_tokens, 1u);
  EXPECT_TRUE(c.rec.errors.empty());
}

TEST(Exchange, HeadAnd204DoNotSwallowTheNextResponse) {
  Conn c;
  c.Req(1, "HEAD /v1/models HTTP/1.1\r\n\r\n");
  c.Req(2, test::PostJson("/v1/completions", R"({"model":"m"})"));
  c.Req(3, test::PostJson("/v1/completions", R"({"model":"n"})"));
  c.Resp(4, "HTTP/1.1 200 OK\r\nContent-Length: 964\r\n\r\n");
  c.Resp(5, "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n");
  c.Resp(6, test::JsonResponse(200, R"({"usage":{"completion_tokens":7}})"));
  EXPECT_EQ(c.rec.ignored, 1);
  ASSERT_EQ(c.rec.records.size(), 2u);
  EXPECT_EQ(c.rec.records[0].status, 204);
  EXPECT_EQ(c.rec.records[0].response_bytes, 0u);
  EXPECT_EQ(c.rec.records[0].end_ns, 5u);
  EXPECT_EQ(c.rec.records[1].output_tokens, 7u);
  EXPECT_EQ(c.rec.records[1].target_model_name, "n");
}

TEST(Exchange, CloseDelimitedBodyEndsAtLastBytes) {
  Conn c;
  c.Req(1, test::PostJson("/v1/chat/completions", R"({"model":"m","stream":true})"));
  c.Resp(2, "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
  c.Resp(3, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n");
  c.Resp(4,
         "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\n"
         "data: [DONE]");
  c.a.OnClose(9);
  const auto& r = c.Only();
  EXPECT_TRUE(r.response_complete);
  EXPECT_EQ(r.error, ErrorCode::kNone);
  EXPECT_EQ(r.end_ns, 4u);
  EXPECT_EQ(r.first_token_ns, 3u);
  EXPECT_EQ(r.output_tokens, 1u);
  EXPECT_EQ(r.chunks, 1u);
}

TEST(Exchange, GzipBodies) {
  Conn c;
  std::string req_body = R"({"model":"gz","stream":true})";
  std::string gz_req = test::Gzip(req_body);
  c.Req(1, test::PostJson("/v1/chat/completions", gz_req, "Content-Encoding: gzip\r\n"));
  std::string sse =
      "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
      "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1}}\n\n"
      "data: [DONE]\n\n";
  std::string gz = test::Gzip(sse);
  std::string resp =
      "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
      "transfer-encoding: chunked\r\n\r\n" +
      test::Chunk(gz.substr(0, 10)) + test::Chunk(gz.substr(10)) + test::LastChunk();
  c.RespPieces(2, resp, 3);
  const auto& r = c.Only();
  EXPECT_EQ(r.target_model_name, "gz");
  EXPECT_EQ(r.request_bytes, gz_req.size());
  EXPECT_EQ(r.response_bytes, gz.size());  // on-the-wire body bytes, not decoded ones
  EXPECT_EQ(r.input_tokens, 9u);
  EXPECT_EQ(r.chunks, 1u);
  EXPECT_TRUE(c.rec.errors.empty());
}

TEST(Exchange, CorruptGzipKeepsSizesAndTiming) {
  Conn c;
  c.Req(1, test::PostJson("/v1/completions", R"({"model":"m"})"));
  std::string junk = "\x1f\x8b\x08 this is not deflate data at all";
  c.Resp(5, test::JsonResponse(200, junk, "Content-Encoding: gzip\r\n"));
  const auto& r = c.Only();
  EXPECT_EQ(r.response_bytes, junk.size());
  EXPECT_EQ(r.end_ns, 5u);
  EXPECT_FALSE(r.input_tokens);
  EXPECT_EQ(c.rec.CountErrors("decode_error"), 1);
}

TEST(Exchange, ResponseGapEndsIncompleteAndNextExchangeIsClean) {
  Conn c;
  c.Req(1, test::PostJson("/v1/chat/completions", R"({"model":"a","stream":true})"));
  c.Resp(2, test::SseHead() +
                test::Chunk("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"));
  c.a.OnResponseGap(3, 500);
  ASSERT_EQ(c.rec.records.size(), 1u);
  EXPECT_EQ(c.rec.records[0].error, ErrorCode::kIncomplete);
  EXPECT_EQ(c.rec.records[0].status, 200);
  EXPECT_EQ(c.rec.records[0].end_ns, 3u);
  EXPECT_EQ(c.rec.records[0].chunks, 1u);
  EXPECT_FALSE(c.rec.records[0].response_complete);
  // The rest of the lost stream, then the next exchange.
  c.Resp(4, test::Chunk("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":99}}\n\n") +
                test::LastChunk());
  c.Req(5, test::PostJson("/v1/completions", R"({"model":"b"})"));
  c.Resp(6, test::JsonResponse(200, R"({"usage":{"prompt_tokens":2,"completion_tokens":3}})"));
  ASSERT_EQ(c.rec.records.size(), 2u);
  EXPECT_EQ(c.rec.records[1].target_model_name, "b");
  EXPECT_EQ(c.rec.records[1].input_tokens, 2u);
  EXPECT_EQ(c.rec.records[1].error, ErrorCode::kNone);
  EXPECT_EQ(c.rec.CountErrors("gap"), 1);
}

TEST(Exchange, RequestGapPlaceholderAbsorbsItsResponse) {
  Conn c;
  std::string req = test::PostJson("/v1/completions", R"({"model":"a","prompt":"xxxxxxxxxx"})");
  c.Req(1, req.substr(0, req.size() - 10));
  c.a.OnRequestGap(2, 5);
  c.Req(3, req.substr(req.size() - 5));
  ASSERT_EQ(c.rec.records.size(), 1u);
  EXPECT_EQ(c.rec.records[0].error, ErrorCode::kIncomplete);
  EXPECT_FALSE(c.rec.records[0].request_complete);
  EXPECT_TRUE(c.rec.received.empty());
  c.Resp(4, test::JsonResponse(200, R"({"usage":{"prompt_tokens":1111}})"));
  EXPECT_EQ(c.rec.records.size(), 1u);
  c.Req(5, test::PostJson("/v1/completions", R"({"model":"b"})"));
  c.Resp(6, test::JsonResponse(200, R"({"usage":{"prompt_tokens":2}})"));
  ASSERT_EQ(c.rec.records.size(), 2u);
  EXPECT_EQ(c.rec.records[1].target_model_name, "b");
  EXPECT_EQ(c.rec.records[1].input_tokens, 2u);
}

// A request-direction gap hides an unknown number of requests (docs/parsing.md#pairing-and-loss). The old
// rule (one stand-in absorbs exactly one response) paired every later response one place off when
// the gap held two requests. Now: responses reaching the hidden marker are dropped, and the next
// request that begins after every response so far has ended (a quiet point) is paired exactly.
TEST(Exchange, RequestGapHidesRequestsUntilAQuietPoint) {
  Conn c;
  c.a.OnRequestGap(1, 600);  // two whole requests lost
  c.Resp(2, test::JsonResponse(200, R"({"usage":{"prompt_tokens":1111}})"));  // answers one
  c.Resp(3, test::JsonResponse(200, R"({"usage":{"prompt_tokens":2222}})"));  // and the other
  EXPECT_EQ(c.rec.CountErrors("unpaired_response"), 2);
  c.Req(4, test::PostJson("/v1/completions", R"({"model":"b"})"));
  c.Resp(5, test::JsonResponse(200, R"({"usage":{"prompt_tokens":2}})"));
  ASSERT_EQ(c.rec.records.size(), 1u);
  EXPECT_EQ(c.rec.records[0].input_tokens, 2u);
  EXPECT_EQ(c.rec.records[0].error, ErrorCode::kNone);
}

// A request that begins while a response is still being written (or right after a response byte
// it may have been pipelined behind) is no quiet point: it stays in doubt.
TEST(Exchange, RequestDuringAResponseIsNoQuietPoint) {
  Conn c;
  c.a.OnRequestGap(1, 300);
  c.Resp(2, test::SseHead() +
                test::Chunk("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"));
  c.Req(3, test::PostJson("/v1/completions", R"({"model":"b"})"));  // pipelined behind a lost one
  c.Resp(4, test::LastChunk());
  c.Resp(5, test::JsonResponse(200, R"({"usage":{"prompt_tokens":1111}})"));  // the lost one's?
  c.a.OnClose(6);
  ASSERT_EQ(c.rec.records.size(), 1u);
  EXPECT_EQ(c.rec.records[0].target_model_name, "b");
  EXPECT_EQ(c.rec.records[0].error, ErrorCode::kIncomplete);
  EXPECT_EQ(c.rec.records[0].status, 0);
  EXPECT_FALSE(c.rec.records[0].input_tokens);
}

// Once a connection was seen pipelining, a request gap is never resolved by a quiet point: no
// count or timestamp bounds how many pipelined requests it hid.
TEST(Exchange, PipeliningConnectionStaysInDoubtAfterARequestGap) {
  Conn c;
  c.Req(1, test::PostJson("/v1/completions", R"({"model":"a"})"));
  c.Req(2, test::PostJson("/v1/completions", R"({"model":"b"})"));  // pipelined
  c.Resp(3, test::JsonResponse(200, R"({"usage":{"prompt_tokens":1}})"));
  c.Resp(4, test::JsonResponse(200, R"({"usage":{"prompt_tokens":2}})"));
  ASSERT_EQ(c.rec.records.size(), 2u);
  c.a.OnRequestGap(5, 300);
  c.Req(6, test::PostJson("/v1/completions", R"({"model":"c"})"));
  c.Resp(7, test::JsonResponse(200, R"({"usage":{"prompt_tokens":1111}})"));
  c.Resp(8, test::JsonResponse(200, R"({"usage":{"prompt_tokens":3}})"));
  c.a.OnClose(9);
  ASSERT_EQ(c.rec.records.size(), 3u);
  EXPECT_EQ(c.rec.records[2].target_model_name, "c");
  EXPECT_EQ(c.rec.records[2].error, ErrorCode::kIncomplete);
  EXPECT_FALSE(c.rec.records[2].input_tokens);
}

// A response gap: the lost bytes held the rest of a's response and maybe all of b's (b was
// pipelined and began before the bytes after the gap were written). Which response answers b
// and which c is not provable: both are dropped, and b and c end Incomplete, never with each
// other's answers. (This connection pipelines, so no quiet point ends the doubt.)
TEST(Exchange, ResponseGapOnAPipeliningConnectionPairsNothingInDoubt) {
  Conn c;
  c.Req(1, test::PostJson("/v1/completions", R"({"model":"a"})"));
  c.Req(2, test::PostJson("/v1/completions", R"({"model":"b"})"));
  c.Resp(3, "HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n{\"usage\":");
  c.a.OnResponseGap(5, 100);
  c.Req(6, test::PostJson("/v1/completions", R"({"model":"c"})"));
  c.Resp(7, test::JsonResponse(200, R"({"usage":{"prompt_tokens":3}})"));   // b's or c's?
  c.Resp(8, test::JsonResponse(200, R"({"usage":{"prompt_tokens":33}})"));  // c's or later?
  c.a.OnClose(9);
  ASSERT_EQ(c.rec.records.size(), 3u);
  for (const RequestRecord& r : c.rec.records) {
    EXPECT_EQ(r.error, ErrorCode::kIncomplete) << r.target_model_name;
    EXPECT_FALSE(r.input_tokens) << r.target_model_name;
  }
  EXPECT_EQ(c.rec.CountErrors("unpaired_response"), 2);
}

// The same gap on a connection that does not pipeline: only a was waiting, so the lost bytes
// cannot have answered anything else, and the next exchange is exact.
TEST(Exchange, ResponseGapOnASequentialConnectionIsExactAtOnce) {
  Conn c;
  c.Req(1, test::PostJson("/v1/completions", R"({"model":"a"})"));
  c.Resp(3, "HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n{\"usage\":");
  c.a.OnResponseGap(5, 100);
  c.Req(6, test::PostJson("/v1/completions", R"({"model":"c"})"));
  c.Resp(7, test::JsonResponse(200, R"({"usage":{"prompt_tokens":3}})"));
  ASSERT_EQ(c.rec.records.size(), 2u);
  EXPECT_EQ(c.rec.records[0].error, ErrorCode::kIncomplete);
  EXPECT_EQ(c.rec.records[1].target_model_name, "c");
  EXPECT_EQ(c.rec.records[1].error, ErrorCode::kNone);
  EXPECT_EQ(c.rec.records[1].input_tokens, 3u);
}

TEST(Exchange, ResponseNeverPairsWithALaterRequest) {
  Conn c;
  // Capture started mid-connection: a response arrives before any request was seen...
  c.Req(10, test::PostJson("/v1/completions", R"({"model":"b"})"));
  c.Resp(5, test::JsonResponse(200, R"({"usage":{"prompt_tokens":1111}})"));
  EXPECT_TRUE(c.rec.records.empty());
  EXPECT_EQ(c.rec.CountErrors("orphan_response"), 1);
  c.Resp(11, test::JsonResponse(200, R"({"usage":{"prompt_tokens":2}})"));
  ASSERT_EQ(c.rec.records.size(), 1u);
  EXPECT_EQ(c.rec.records[0].input_tokens, 2u);
}

TEST(Exchange, CloseMidStreamKeepsUsageWrittenBeforeClose) {
  Conn c;
  c.Req(1, test::PostJson("/v1/chat/completions", R"({"model":"m","stream":true})"));
  c.Resp(2, test::SseHead() +
                test::Chunk("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"));
  // A usage event without its blank line, in a chunk whose CRLF never came.
  std::string ev = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}";
  char size[16];
  std::snprintf(size, sizeof(size), "%zx\r\n", ev.size() + 2);
  c.Resp(3, size + ev);
  c.a.OnClose(7);
  const auto& r = c.Only();
  EXPECT_EQ(r.error, ErrorCode::kIncomplete);
  EXPECT_EQ(r.input_tokens, 3u);
  EXPECT_EQ(r.end_ns, 7u);
  EXPECT_EQ(c.a.pending(), 0u);
}

TEST(Exchange, CloseWithoutResponseAndErrorStatusWinsOverCut) {
  Conn c;
  c.Req(1, test::PostJson("/v1/completions", R"({"model":"a"})"));
  c.Req(2, test::PostJson("/v1/completions", R"({"model":"b"})"));
  c.Resp(3, "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 100\r\n\r\n{\"err");
  c.a.OnClose(9);
  ASSERT_EQ(c.rec.records.size(), 2u);
  EXPECT_EQ(c.rec.records[0].error, ErrorCode::kModelServerError);
  EXPECT_EQ(c.rec.records[0].status, 500);
  EXPECT_EQ(c.rec.records[0].response_bytes, 5u);
  EXPECT_EQ(c.rec.records[1].error, ErrorCode::kIncomplete);
  EXPECT_EQ(c.rec.records[1].status, 0);
  EXPECT_EQ(c.rec.records[1].end_ns, 9u);
}

// docs/parsing.md#early-responses: the exchange ends when both the response has ended and the
// request has been fully received. (It used to end at the response, losing the body: request_bytes
// 0 and the body's model.)
TEST(Exchange, EarlyResponseBeforeRequestBodyCompletes) {
  Conn c;
  std::string body = R"({"model":"m",)" + std::string(1000, ' ') + "\"x\":1}";
  std::string req = test::PostJson("/v1/completions", body);
  c.Req(1, req.substr(0, 200));
  c.Resp(2, test::JsonResponse(401, R"({"error":"Unauthorized"})"));
  EXPECT_TRUE(c.rec.records.empty());
  c.Req(3, req.substr(200));
  ASSERT_EQ(c.rec.records.size(), 1u);
  const RequestRecord& r = c.rec.records[0];
  EXPECT_EQ(r.error, ErrorCode::kUnauthorized);
  EXPECT_TRUE(r.request_complete);
  EXPECT_EQ(r.request_bytes, body.size());
  EXPECT_EQ(r.target_model_name, "m");
  EXPECT_EQ(r.end_ns, 2u);            // the response's end, not the request's
  EXPECT_FALSE(r.counted_in_flight);  // counted when it ended
  EXPECT_TRUE(c.rec.received.empty());
  // The next request on the connection still parses and pairs.
  c.Req(4, test::PostJson("/v1/completions", R"({"model":"n"})"));
  c.Resp(5, test::JsonResponse(200, R"({"usage":{"prompt_tokens":2}})"));
  ASSERT_EQ(c.rec.records.size(), 2u);
  EXPECT_EQ(c.rec.records[1].target_model_name, "n");
  EXPECT_EQ(c.rec.records[1].input_tokens, 2u);
}

TEST(Exchange, EarlyResponseThenCloseBeforeTheBodyEnded) {
  Conn c;
  std::string req = test::PostJson("/v1/completions", std::string(1000, ' ') + "{}");
  c.Req(1, req.substr(0, 200));
  c.Resp(2, test::JsonResponse(413, R"({"error":"too large"})", "connection: close\r\n"));
  EXPECT_TRUE(c.rec.records.empty());
  c.a.OnClose(4);
  ASSERT_EQ(c.rec.records.size(), 1u);
  EXPECT_EQ(c.rec.records[0].error, ErrorCode::kBadRequest);
  EXPECT_FALSE(c.rec.records[0].request_complete);
  EXPECT_EQ(c.rec.records[0].end_ns, 2u);
}

// The request body was lost in capture after the server had answered from the headers: the
// record keeps the answer's status but is Incomplete — its request bytes and model are unknown,
// so it must not present itself as a complete 400 (the overload test's "record of no request").
TEST(Exchange, EarlyResponseThenRequestGapIsIncomplete) {
  Conn c;
  std::string req = test::PostJson("/v1/completions", R"({"model":"m",)" + std::string(900, ' ') +
                                                          "\"x\":1}");
  c.Req(1, req.substr(0, 150));
  c.Resp(2, test::JsonResponse(400, R"({"error":{"message":"bad"}})"));
  EXPECT_TRUE(c.rec.records.empty());
  c.a.OnRequestGap(3, req.size() - 150);
  ASSERT_EQ(c.rec.records.size(), 1u);
  EXPECT_EQ(c.rec.records[0].error, ErrorCode::kIncomplete);
  EXPECT_EQ(c.rec.records[0].status, 400);
  EXPECT_FALSE(c.rec.records[0].request_complete);
}

TEST(Exchange, GarbageHoldsNoStateAndMakesNoRecords) {
  Conn c;
  std::mt19937 rng(42);
  std::string junk(1 << 16, '\0');
  for (int round = 0; round < 32; ++round) {  // 2 MiB per direction
    for (char& ch : junk) ch = char(rng());
    c.Req(uint64_t(round), junk);
    c.Resp(uint64_t(round), junk);
    EXPECT_LE(c.a.pending(), c.cfg.max_pipelined);
  }
  EXPECT_TRUE(c.rec.records.empty());
  EXPECT_GT(c.rec.CountErrors("http_invalid"), 0);
  // And the connection still works afterwards.
  c.Req(100, "\r\n" + test::PostJson("/v1/completions", R"({"model":"ok"})"));
  c.Resp(101, "\r\n" + test::JsonResponse(200, R"({"usage":{"prompt_tokens":1}})"));
  ASSERT_EQ(c.rec.records.size(), 1u);
  EXPECT_EQ(c.rec.records[0].target_model_name, "ok");
}

TEST(Exchange, GiantHeadersAreCapped) {
  test::Conn c(ExchangeConfig{.max_header_bytes = 4096});
  std::string big = "POST /v1/completions HTTP/1.1\r\nCookie: ";
  c.Req(1, big);
  for (int i = 0; i < 100; ++i) c.Req(2, std::string(1000, 'c'));
  EXPECT_EQ(c.rec.CountErrors("header_cap"), 1);
  c.Req(3, "\r\n\r\n" + test::PostJson("/v1/completions", R"({"model":"m"})"));
  c.Resp(4, test::JsonResponse(200, "{}"));
  ASSERT_EQ(c.rec.records.size(), 1u);
  EXPECT_EQ(c.rec.records[0].target_model_name, "m");
}

TEST(Exchange, InferencePathSelection) {
  test::Conn c(ExchangeConfig{.extra_inference_paths = {"/generate"}});
  const char* paths[] = {"/v1/models", "/v1/chat/completions/x", "/v1/completions?debug=1",
                         "/generate",  "/v1/responses",          "/metrics"};
  for (const char* p : paths) {
    c.Req(1, test::PostJson(p, "{}"));
    c.Resp(2, test::JsonResponse(200, "{}"));
  }
  c.Req(3, "GET /v1/chat/completions HTTP/1.1\r\n\r\n");
  c.Resp(4, test::JsonResponse(200, "{}"));
  ASSERT_EQ(c.rec.records.size(), 3u);
  EXPECT_EQ(c.rec.records[0].path, "/v1/completions");
  EXPECT_EQ(c.rec.records[1].path, "/generate");
  EXPECT_EQ(c.rec.records[2].path, "/v1/responses");
  EXPECT_EQ(c.rec.ignored, 4);
}

TEST(Exchange, BodyCaps) {
  test::Conn c(ExchangeConfig{.max_json_body_bytes = 256});
  std::string body =
      R"({"model":"big","messages":[{"content":")" + std::string(10000, 'p') + "\"}]}";
  c.Req(1, test::PostJson("/v1/chat/completions", body));
  ASSERT_EQ(c.rec.received.size(), 1u);
  EXPECT_EQ(c.rec.received[0].target_model_name, "big");  // found in the capped prefix
  EXPECT_EQ(c.rec.received[0].request_bytes, body.size());
  std::string resp = R"({"choices":[{"message":{"content":")" + std::string(5000, 'r') +
                     R"("}}],"usage":{"prompt_tokens":1}})";
  c.Resp(2, test::JsonResponse(200, resp));
  const auto& r = c.Only();
  EXPECT_EQ(r.response_bytes, resp.size());
  EXPECT_FALSE(r.input_tokens);
  EXPECT_EQ(c.rec.CountErrors("body_cap"), 2);
}

// Found by fuzz_exchange (10-minute run, 2026-12-02): a full queue took one more entry, the
// hidden marker a request gap pushes, so pending() was max_pipelined + 1.
TEST(Exchange, GapOnAFullQueueStaysWithinThePipelineCap) {
  test::Conn c(ExchangeConfig{.max_pipelined = 4});
  for (int i = 0; i < 4; ++i) c.Req(uint64_t(i), test::PostJson("/v1/completions", "{}"));
  ASSERT_EQ(c.a.pending(), 4u);
  c.a.OnRequestGap(5, 300);
  EXPECT_LE(c.a.pending(), 4u);
  EXPECT_EQ(c.rec.CountErrors("pipeline_cap"), 1);
  // The queued ones ended Incomplete; what the server still sends them is absorbed.
  c.Resp(6, test::JsonResponse(200, R"({"usage":{"prompt_tokens":1}})"));
  c.a.OnClose(7);
  EXPECT_EQ(c.rec.records.size(), 4u);
  for (const auto& r : c.rec.records) EXPECT_EQ(r.error, ErrorCode::kIncomplete);
}

TEST(Exchange, PipelineCapBoundsTheQueue) {
  test::Conn c(ExchangeConfig{.max_pipelined = 4});
  for (int i = 0; i < 10; ++i) c.Req(uint64_t(i), test::PostJson("/v1/completions", "{}"));
  EXPECT_LE(c.a.pending(), 4u);
  // At the cap everything queued ends (dropping only the oldest would pair its answer with the
  // next request) and a hidden marker absorbs the answers still due.
  EXPECT_EQ(c.rec.CountErrors("pipeline_cap"), 2);
  // Nothing was ever answered, so no pipelining was seen: the request after the first cap is a
  // quiet point (ends the one queued behind the marker) and fills the queue again.
  EXPECT_EQ(c.rec.records.size(), 9u);
  c.a.OnClose(11);
  EXPECT_EQ(c.rec.records.size(), 10u);
  for (const auto& r : c.rec.records) EXPECT_EQ(r.error, ErrorCode::kIncomplete);
}

TEST(Exchange, InvalidJsonIsReportedButRecorded) {
  Conn c;
  c.Req(1, test::PostJson("/v1/completions", "{not json"));
  c.Resp(2, test::SseHead() + test::Chunk("data: {broken\n\n") + test::Chunk("data: {also\n\n") +
                test::LastChunk());
  const auto& r = c.Only();
  EXPECT_EQ(r.target_model_name, "");
  EXPECT_EQ(r.error, ErrorCode::kNone);
  EXPECT_EQ(c.rec.CountErrors("json_invalid"), 2);  // one for the request, one per response
}

// Token chunks that repeat the previous chunk's bytes are answered by the stream's event cache
// (parsers/openai.hpp): chunks, TTFT, json_invalid and usage must come out as with a full parse,
// and a second response on the connection starts from nothing.
TEST(Exchange, RepeatedChunksCountAsParsedOnes) {
  auto chunk = [](std::string_view id, std::string_view text) {
    return test::Chunk("data: {\"id\":\"" + std::string(id) +
                       "\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{"
                       "\"index\":0,\"delta\":{\"content\":\"" +
                       std::string(text) + "\"},\"finish_reason\":null}]}\n\n");
  };
  auto usage = [](std::string_view id, int out) {
    return test::Chunk("data: {\"id\":\"" + std::string(id) +
                       "\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":" +
                       std::to_string(out) + "}}\n\n");
  };
  Conn c;
  const std::string req = test::PostJson(
      "/v1/chat/completions", R"({"model":"m","stream":true,"stream_options":{"include_usage":true}})");
  c.Req(1, req);
  c.Resp(2, test::SseHead() + chunk("a", ""));
  c.Resp(3, chunk("a", ""));  // still nothing generated
  c.Resp(4, chunk("a", "Hi"));
  c.Resp(5, chunk("a", " there") + chunk("a", "\\n") + chunk("a", "\xc3\xa9"));
  c.Resp(6, chunk("a", "\x01") + chunk("a", "\xc3"));  // not JSON: one json_invalid
  c.Resp(7, chunk("a", "!") + usage("a", 5) + test::Chunk("data: [DONE]\n\n") + test::LastChunk());
  c.Req(8, req);
  c.Resp(9, test::SseHead() + chunk("b", "x") + chunk("b", "") + chunk("b", "y") +
                usage("b", 2) + test::LastChunk());
  ASSERT_EQ(c.rec.records.size(), 2u);
  const RequestRecord& first = c.rec.records[0];
  EXPECT_EQ(first.chunks, 5u);  // Hi, " there", \n, é, !
  EXPECT_EQ(first.first_token_ns, 4u);
  EXPECT_EQ(first.output_tokens, 5u);
  EXPECT_EQ(first.input_tokens, 7u);
  EXPECT_EQ(c.rec.CountErrors("json_invalid"), 1);
  const RequestRecord& second = c.rec.records[1];
  EXPECT_EQ(second.chunks, 2u);
  EXPECT_EQ(second.first_token_ns, 9u);
  EXPECT_EQ(second.output_tokens, 2u);
}

TEST(Exchange, TargetModelFallsBackToResponseModel) {
  Conn c;
  c.Req(1, test::PostJson("/v1/embeddings", R"({"input":"x"})"));
  // Not counted yet: the label pair is not known (docs/metrics.md#seed-metrics).
  EXPECT_TRUE(c.rec.received.empty());
  c.Resp(2, test::JsonResponse(200, ReadFixture("wire/vllm_embeddings_response.json")));
  EXPECT_EQ(c.Only().target_model_name, "intfloat/e5-small-v2");
  EXPECT_FALSE(c.Only().counted_in_flight);  // OnRecord counts it, under the final pair
}

TEST(Exchange, StreamWithoutRequestModelIsCountedAtTheFirstModelChunk) {
  Conn c;
  c.Req(1, test::PostJson("/v1/chat/completions", R"({"stream":true})"));
  EXPECT_TRUE(c.rec.received.empty());
  c.Resp(2, test::SseHead());
  EXPECT_TRUE(c.rec.received.empty());
  c.Resp(3, test::Chunk(
                "data: {\"model\":\"served\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"));
  ASSERT_EQ(c.rec.received.size(), 1u);
  EXPECT_EQ(c.rec.received[0].target_model_name, "served");
  c.Resp(4, test::LastChunk());
  EXPECT_EQ(c.Only().target_model_name, "served");
  EXPECT_TRUE(c.Only().counted_in_flight);
}

TEST(Exchange, UpgradeMakesTheConnectionOpaque) {
  Conn c;
  c.Req(1, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  c.Resp(2,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
  c.Req(3, test::PostJson("/v1/completions", "{}"));
  c.Resp(4, test::JsonResponse(200, "{}"));
  c.a.OnClose(5);
  EXPECT_EQ(c.rec.ignored, 1);
  EXPECT_TRUE(c.rec.records.empty());
}

}  // namespace
}  // namespace infertap

namespace infertap {
namespace {

// Heap bytes in use (glibc): lets the test assert that floods do not grow state.
size_t HeapInUse() { return mallinfo2().uordblks; }

TEST(ExchangeMemory, FloodsHoldConstantMemory) {
  test::Conn c;
  std::string seg(64 * 1024, 'x');
  c.Req(1, test::PostJson("/v1/chat/completions", R"({"model":"m","stream":true})"));
  c.Resp(2, test::SseHead());
  size_t before = HeapInUse();
  // 64 MiB of one endless SSE line inside a valid chunked stream.
  for (int i = 0; i < 1024; ++i) c.Resp(3, test::Chunk(seg));
  size_t after_sse = HeapInUse();
  EXPECT_LT(after_sse, before + 4 * 1024 * 1024);
  EXPECT_EQ(c.rec.CountErrors("sse_oversize"), 1);
  c.Resp(4, test::LastChunk());
  ASSERT_EQ(c.rec.records.size(), 1u);
  EXPECT_EQ(c.rec.records[0].response_bytes, 1024u * seg.size());

  // 64 MiB of a chunked non-stream body and 64 MiB of request body.
  c.Req(5, "POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 1024; ++i) c.Req(6, test::Chunk(seg));
  c.Req(7, test::LastChunk());
  c.Resp(8,
         "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
  for (int i = 0; i < 1024; ++i) c.Resp(9, test::Chunk(seg));
  EXPECT_LT(HeapInUse(), before + 4 * 1024 * 1024);
  c.Resp(10, test::LastChunk());
  ASSERT_EQ(c.rec.records.size(), 2u);
  EXPECT_EQ(c.rec.records[1].request_bytes, 1024u * seg.size());

  // An endless header line, then garbage with no line ends at all.
  c.Req(11, "POST /v1/completions HTTP/1.1\r\nX: ");
  for (int i = 0; i < 256; ++i) c.Req(12, seg);
  for (int i = 0; i < 256; ++i) c.Resp(13, seg);
  EXPECT_LT(HeapInUse(), before + 4 * 1024 * 1024);
  c.a.OnClose(14);
  // After the flood ends, the big capture buffers are released.
  EXPECT_LT(HeapInUse(), before + 256 * 1024);
}

}  // namespace
}  // namespace infertap
