// StreamEventCache (parsers/openai.hpp) must return what OpenAiExtractor::ParseResponse returns
// for every event, whatever the cache does: these tests compare the two on streams as servers
// write them and on events built to sit at the edges of the template (quotes, escapes, bad
// UTF-8 and changed bytes next to the slot, sizes past the cap).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "parsers/openai.hpp"

namespace infertap {
namespace {

void ExpectSame(const OpenAiResponseInfo& want, const OpenAiResponseInfo& got,
                const std::string& event) {
  EXPECT_EQ(want.valid, got.valid) << event;
  EXPECT_EQ(want.model, got.model) << event;
  EXPECT_EQ(want.has_usage, got.has_usage) << event;
  EXPECT_EQ(want.input_tokens, got.input_tokens) << event;
  EXPECT_EQ(want.output_tokens, got.output_tokens) << event;
  EXPECT_EQ(want.cached_tokens, got.cached_tokens) << event;
  EXPECT_EQ(want.error, got.error) << event;
  EXPECT_EQ(want.detail, got.detail) << event;
  EXPECT_EQ(want.generated, got.generated) << event;
}

// Feeds the events through one cache and compares each with a fresh parse.
StreamEventCache::Stats Check(const std::vector<std::string>& events, size_t max_bytes = 1 << 20) {
  OpenAiExtractor direct(max_bytes), cached(max_bytes);
  StreamEventCache cache;
  for (const std::string& e : events) {
    std::string padded = e;
    padded.reserve(e.size() + simdjson::SIMDJSON_PADDING);
    ExpectSame(direct.ParseResponse(e), cache.Parse(cached, padded, /*padded=*/true), e);
  }
  return cache.stats();
}

std::string VllmChunk(std::string_view text) {
  return "{\"id\":\"chatcmpl-7f3a\",\"object\":\"chat.completion.chunk\",\"created\":1779192000,"
         "\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{"
         "\"content\":\"" +
         std::string(text) + "\"},\"logprobs\":null,\"finish_reason\":null,\"token_ids\":null}]}";
}

TEST(StreamEventCache, AVllmStreamParsesOncePerShape) {
  std::vector<std::string> events;
  events.push_back(
      "{\"id\":\"chatcmpl-7f3a\",\"object\":\"chat.completion.chunk\",\"created\":1779192000,"
      "\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"choices\":[{\"index\":0,\"delta\":{"
      "\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}");
  for (int i = 0; i < 64; ++i) events.push_back(VllmChunk(i % 7 == 0 ? "\\n" : " tok"));
  events.push_back(
      "{\"id\":\"chatcmpl-7f3a\",\"object\":\"chat.completion.chunk\",\"created\":1779192000,"
      "\"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"choices\":[],\"usage\":{"
      "\"prompt_tokens\":12,\"total_tokens\":76,\"completion_tokens\":64}}");
  const StreamEventCache::Stats s = Check(events);
  EXPECT_EQ(s.hits + s.misses, events.size());
  EXPECT_EQ(s.misses, 3u);  // the role chunk, the first token chunk, the usage chunk
}

TEST(StreamEventCache, EdgesOfTheSlotGoToTheParser) {
  const std::vector<std::string> texts = {
      "", "x", "\\\"", "\\\\", "\\/", "\\b\\f\\n\\r\\t", "\\u00e9", "\\u0000", "\\ud83d\\ude00",
      "\\ud800", "\\udc00x", "\\uZZZZ", "\\u12", "\\x", "a\\", "\\", "\"", "a\"b",
      "\"},\"usage\":{\"prompt_tokens\":5},\"x\":{\"y\":\"", "\x01", "\x1f", "\x7f",
      "\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80", "\xc3", "\xc0\xaf",
      "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "\x80",
      std::string(5000, 'a')};
  std::vector<std::string> events;
  for (const std::string& t : texts) {
    events.push_back(VllmChunk("tok"));  // re-arm the template before each edge
    events.push_back(VllmChunk(t));
  }
  const StreamEventCache::Stats s = Check(events);
  EXPECT_GT(s.hits, texts.size());  // the well-formed ones were answered from the template
}

TEST(StreamEventCache, AChangedByteOutsideTheSlotIsParsed) {
  const std::string base = VllmChunk("tok");
  std::mt19937 rng(7);
  std::vector<std::string> events;
  for (int i = 0; i < 3000; ++i) {
    events.push_back(base);
    std::string e = VllmChunk(i % 2 ? "" : "word");
    switch (rng() % 4) {
      case 0:  // one byte changed anywhere
        e[rng() % e.size()] = "\"{}[],:0a\\ \x01\xc3"[rng() % 13];
        break;
      case 1:  // cut
        e.resize(rng() % e.size());
        break;
      case 2:  // grown
        e.insert(rng() % (e.size() + 1), std::string(1 + rng() % 3, "\"x,}"[rng() % 4]));
        break;
      default:  // removed
        e.erase(rng() % e.size(), 1 + rng() % 4);
    }
    events.push_back(e);
  }
  Check(events);
}

TEST(StreamEventCache, OtherShapesAndServers) {
  // Completions `text`; reasoning then content; a second choice; duplicated keys; the slot's
  // sibling fields non-empty (generated whatever the slot holds); error and usage in the chunk.
  auto completions = [](std::string_view t) {
    return "{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"m\","
           "\"choices\":[{\"index\":0,\"text\":\"" +
           std::string(t) + "\",\"logprobs\":null,\"finish_reason\":null}]}";
  };
  auto reasoning = [](std::string_view key, std::string_view t) {
    return "{\"id\":\"c\",\"model\":\"ds\",\"choices\":[{\"index\":0,\"delta\":{\"" +
           std::string(key) + "\":\"" + std::string(t) + "\"}}],\"usage\":null}";
  };
  auto sibling = [](std::string_view t) {  // tool_calls non-empty next to an empty content
    return "{\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"" + std::string(t) +
           "\",\"tool_calls\":[{\"index\":0}]}}]}";
  };
  auto dup = [](std::string_view t) {  // the first `content` wins in the parser
    return "{\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"\",\"content\":\"" +
           std::string(t) + "\"}}]}";
  };
  auto two = [](std::string_view t) {
    return "{\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" +
           std::string(t) + "\"}},{\"index\":1,\"delta\":{\"content\":\"\"}}]}";
  };
  auto usage = [](std::string_view t) {
    return "{ \"model\" : \"m\" , \"choices\" : [ { \"delta\" : { \"content\" : \"" +
           std::string(t) +
           "\" } } ] , \"usage\" : {\"prompt_tokens\":3,\"completion_tokens\":1,"
           "\"prompt_tokens_details\":{\"cached_tokens\":2}} }";
  };
  auto error = [](std::string_view t) {
    return "{\"object\":\"error\",\"choices\":[{\"text\":\"" + std::string(t) +
           "\"}],\"error\":{\"message\":\"x\"}}";
  };
  std::vector<std::string> events;
  for (std::string_view t : {"a", "", "bc", "", "d\\n", "", "e"}) {
    for (const std::string& e :
         {completions(t), reasoning("reasoning_content", t), reasoning("reasoning", t),
          reasoning("content", t), sibling(t), dup(t), two(t), usage(t), error(t)}) {
      events.push_back(e);
      events.push_back(e);
    }
  }
  const StreamEventCache::Stats s = Check(events);
  EXPECT_GT(s.hits, events.size() / 3);
}

TEST(StreamEventCache, PastTheSizeCapIsInvalidAsWithoutTheCache) {
  const std::string small = VllmChunk("a");
  const std::string big = VllmChunk(std::string(200, 'b'));
  Check({small, small, big, small, big}, /*max_bytes=*/small.size() + 50);
}

TEST(StreamEventCache, EveryEventDifferentStopsRelearning) {
  // vLLM's continuous_usage_stats: the usage in every chunk changes outside the slot.
  std::vector<std::string> events;
  for (int i = 1; i <= 40; ++i)
    events.push_back("{\"model\":\"m\",\"choices\":[{\"delta\":{\"content\":\"t\"}}],\"usage\":"
                     "{\"prompt_tokens\":9,\"completion_tokens\":" +
                     std::to_string(i) + "}}");
  const StreamEventCache::Stats s = Check(events);
  EXPECT_EQ(s.hits, 0u);
  EXPECT_EQ(s.misses, events.size());
}

TEST(StreamEventCache, ResetForgetsTheTemplate) {
  OpenAiExtractor x(1 << 20);
  StreamEventCache cache;
  const std::string e = VllmChunk("a");
  cache.Parse(x, e, false);
  cache.Parse(x, e, false);
  EXPECT_EQ(cache.stats().hits, 1u);
  cache.Reset();
  cache.Parse(x, e, false);
  EXPECT_EQ(cache.stats().hits, 1u);
  EXPECT_EQ(cache.stats().misses, 2u);
}

}  // namespace
}  // namespace infertap
