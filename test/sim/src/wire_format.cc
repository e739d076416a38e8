#include "wire_format.hpp"

#include <cstdio>

namespace infertap::sim {
namespace {

// vLLM puts its version in system_fingerprint; the fixtures use this value.
constexpr std::string_view kVllmFingerprint = "vllm-0.22.0-1a2b3c4d";
constexpr std::string_view kTgiFingerprint = "3.1.2-dev0-native";
constexpr std::string_view kLlamaFingerprint = "b6000-sim";

std::string Num(int64_t v) { return std::to_string(v); }

std::string Fixed(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

bool IsChat(const Job& j) { return j.endpoint == Endpoint::kChat; }
int Total(const Job& j) { return j.prompt_tokens + j.completion_tokens; }

// "data: <json>\n\n", or "data:<json>\n\n" for old TGI.
std::string Data(const Job& j, std::string_view json) {
  std::string out = j.tgi_data_no_space ? "data:" : "data: ";
  out.append(json);
  out.append("\n\n");
  return out;
}

std::string Done(const Job& j) { return Data(j, "[DONE]"); }

// vLLM usage objects: streaming ones lack prompt_tokens_details, the final body has it.
std::string VllmUsage(int prompt, int completion, bool details) {
  std::string u = "{\"prompt_tokens\":" + Num(prompt) +
                  ",\"total_tokens\":" + Num(prompt + completion) +
                  ",\"completion_tokens\":" + Num(completion);
  if (details) u += ",\"prompt_tokens_details\":null";
  return u + "}";
}

// TGI and llama.cpp order usage fields as OpenAI does.
std::string OpenAiUsage(int prompt, int completion) {
  return "{\"completion_tokens\":" + Num(completion) + ",\"prompt_tokens\":" + Num(prompt) +
         ",\"total_tokens\":" + Num(prompt + completion) + "}";
}
std::string TgiUsage(int prompt, int completion) {
  return "{\"prompt_tokens\":" + Num(prompt) + ",\"completion_tokens\":" + Num(completion) +
         ",\"total_tokens\":" + Num(prompt + completion) + "}";
}

// ---- vLLM ------------------------------------------------------------------------------------

std::string VllmHead(const Job& j) {
  return "{\"id\":" + JsonQuote(j.id) + ",\"object\":\"" +
         (IsChat(j) ? "chat.completion.chunk" : "text_completion") +
         "\",\"created\":" + Num(j.created) + ",\"model\":" + JsonQuote(j.model);
}

bool Continuous(const Job& j) { return j.include_usage && j.continuous_usage; }

std::string VllmContinuous(const Job& j, int done_tokens) {
  return Continuous(j) ? ",\"usage\":" + VllmUsage(j.prompt_tokens, done_tokens, false) : "";
}

std::string VllmRoleChunk(const Job& j) {
  std::string s = VllmHead(j) +
                  ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                  "\"logprobs\":null,\"finish_reason\":null}]" +
                  VllmContinuous(j, 0);
  if (!j.legacy) s += ",\"prompt_token_ids\":null,\"prompt_text\":null";
  return Data(j, s + "}");
}

// Token i of a chat stream, or of a completions stream (which also carries finish_reason on the
// last token, as in the completions fixture).
std::string VllmTokenChunk(const Job& j, int i) {
  std::string s = VllmHead(j);
  std::string tok_ids = j.legacy ? "" : ",\"token_ids\":null";
  if (IsChat(j)) {
    s += ",\"choices\":[{\"index\":0,\"delta\":{\"content\":" + JsonQuote(TokenText(i)) +
         "},\"logprobs\":null,\"finish_reason\":null" + tok_ids + "}]";
  } else {
    bool last = i + 1 == j.completion_tokens;
    s += ",\"choices\":[{\"index\":0,\"text\":" + JsonQuote(TokenText(i)) +
         ",\"logprobs\":null,\"finish_reason\":" + (last ? JsonQuote(j.finish_reason) : "null") +
         ",\"stop_reason\":null" + (j.legacy ? "" : ",\"prompt_token_ids\":null") + tok_ids + "}]";
  }
  return Data(j, s + VllmContinuous(j, i + 1) + "}");
}

std::vector<std::string> VllmFinish(const Job& j) {
  std::vector<std::string> out;
  if (IsChat(j)) {
    std::string s = VllmHead(j) +
                    ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"logprobs\":null,"
                    "\"finish_reason\":" +
                    JsonQuote(j.finish_reason) + ",\"stop_reason\":null" +
                    (j.legacy ? "" : ",\"token_ids\":null") + "}]" +
                    VllmContinuous(j, j.completion_tokens);
    // Without a usage chunk to carry it, the fingerprint rides on the finish chunk (fixture
    // vllm_chat_stream_no_usage.sse).
    if (!j.include_usage) s += ",\"system_fingerprint\":\"" + std::string(kVllmFingerprint) + "\"";
    out.push_back(Data(j, s + "}"));
  } else if (j.completion_tokens == 0) {
    // No token carried the finish_reason: send it alone.
    out.push_back(
        Data(j, VllmHead(j) +
                    ",\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,"
                    "\"finish_reason\":" +
                    JsonQuote(j.finish_reason) +
                    ",\"stop_reason\":null,\"prompt_token_ids\":null,\"token_ids\":null}]" +
                    VllmContinuous(j, 0) + "}"));
  }
  if (j.include_usage) {
    out.push_back(Data(j, VllmHead(j) + ",\"choices\":[],\"usage\":" +
                              VllmUsage(j.prompt_tokens, j.completion_tokens, false) +
                              ",\"system_fingerprint\":\"" + std::string(kVllmFingerprint) +
                              "\"}"));
  }
  out.push_back(Done(j));
  return out;
}

std::string VllmNonStream(const Job& j) {
  std::string text = JsonQuote(FullText(j.completion_tokens));
  std::string usage = VllmUsage(j.prompt_tokens, j.completion_tokens, true);
  std::string head = "{\"id\":" + JsonQuote(j.id) + ",\"object\":\"" +
                     (IsChat(j) ? "chat.completion" : "text_completion") +
                     "\",\"created\":" + Num(j.created) + ",\"model\":" + JsonQuote(j.model);
  if (IsChat(j)) {
    return head +
           ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":" + text +
           ",\"refusal\":null,\"annotations\":null,\"audio\":null,\"function_call\":null,"
           "\"tool_calls\":[],\"reasoning\":null},\"logprobs\":null,\"finish_reason\":" +
           JsonQuote(j.finish_reason) +
           ",\"stop_reason\":null,\"token_ids\":null}],\"service_tier\":null,"
           "\"system_fingerprint\":\"" +
           std::string(kVllmFingerprint) + "\",\"usage\":" + usage +
           ",\"prompt_logprobs\":null,\"prompt_token_ids\":null,\"prompt_text\":null,"
           "\"kv_transfer_params\":null}";
  }
  return head + ",\"choices\":[{\"index\":0,\"text\":" + text +
         ",\"logprobs\":null,\"finish_reason\":" + JsonQuote(j.finish_reason) +
         ",\"stop_reason\":null,\"token_ids\":null,\"prompt_logprobs\":null,"
         "\"prompt_token_ids\":null}],\"service_tier\":null,\"system_fingerprint\":\"" +
         std::string(kVllmFingerprint) + "\",\"usage\":" + usage + ",\"kv_transfer_params\":null}";
}

// ---- SGLang ----------------------------------------------------------------------------------

std::string SglangDelta(std::string_view role, std::string_view content) {
  return "{\"role\":" + std::string(role) + ",\"content\":" + std::string(content) +
         ",\"reasoning_content\":null,\"tool_calls\":null}";
}

std::string SglangChunk(const Job& j, std::string_view choice_body) {
  return Data(j, VllmHead(j) + ",\"choices\":[{\"index\":0," + std::string(choice_body) +
                     ",\"logprobs\":null,\"finish_reason\":null,\"matched_stop\":null}],"
                     "\"usage\":null}");
}

std::string SglangTokenChunk(const Job& j, int i) {
  if (IsChat(j)) {
    return SglangChunk(j, "\"delta\":" + SglangDelta("null", JsonQuote(TokenText(i))));
  }
  return SglangChunk(j, "\"text\":" + JsonQuote(TokenText(i)));
}

std::vector<std::string> SglangFinish(const Job& j) {
  std::vector<std::string> out;
  // finish_reason travels in a chunk of its own, with an empty delta.
  std::string body = IsChat(j) ? "\"delta\":" + SglangDelta("null", "null") : "\"text\":\"\"";
  out.push_back(Data(j, VllmHead(j) + ",\"choices\":[{\"index\":0," + body +
                            ",\"logprobs\":null,\"finish_reason\":" + JsonQuote(j.finish_reason) +
                            ",\"matched_stop\":null}],\"usage\":null}"));
  // The extra empty-choices chunk without usage that parsers must not take for a usage chunk.
  out.push_back(Data(j, VllmHead(j) + ",\"choices\":[],\"usage\":null}"));
  if (j.include_usage) {
    out.push_back(Data(j, VllmHead(j) + ",\"choices\":[],\"usage\":" +
                              VllmUsage(j.prompt_tokens, j.completion_tokens, true) + "}"));
  }
  out.push_back(Done(j));
  return out;
}

std::string SglangNonStream(const Job& j) {
  std::string text = JsonQuote(FullText(j.completion_tokens));
  std::string choice =
      IsChat(j) ? "\"message\":" + SglangDelta("\"assistant\"", text) : "\"text\":" + text;
  return "{\"id\":" + JsonQuote(j.id) + ",\"object\":\"" +
         (IsChat(j) ? "chat.completion" : "text_completion") + "\",\"created\":" + Num(j.created) +
         ",\"model\":" + JsonQuote(j.model) + ",\"choices\":[{\"index\":0," + choice +
         ",\"logprobs\":null,\"finish_reason\":" + JsonQuote(j.finish_reason) +
         ",\"matched_stop\":null}],\"usage\":" +
         VllmUsage(j.prompt_tokens, j.completion_tokens, true) + "}";
}

// ---- TGI -------------------------------------------------------------------------------------

// TGI serialises an internally tagged enum, so `object` comes first and `id` is empty.
std::string TgiHead(const Job& j, bool body) {
  std::string_view obj =
      IsChat(j) ? (body ? "chat.completion" : "chat.completion.chunk") : "text_completion";
  return "{\"object\":\"" + std::string(obj) + "\",\"id\":\"\",\"created\":" + Num(j.created) +
         ",\"model\":" + JsonQuote(j.model) + ",\"system_fingerprint\":\"" +
         std::string(kTgiFingerprint) + "\"";
}

std::string TgiTokenChunk(const Job& j, int i) {
  bool last = i + 1 == j.completion_tokens;
  std::string fin = last ? JsonQuote(j.finish_reason) : "null";
  std::string choice = IsChat(j) ? "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":" +
                                       JsonQuote(TokenText(i)) +
                                       ",\"tool_calls\":null},\"logprobs\":null," +
                                       "\"finish_reason\":" + fin + "}"
                                 : "{\"index\":0,\"text\":" + JsonQuote(TokenText(i)) +
                                       ",\"logprobs\":null,\"finish_reason\":" + fin + "}";
  // Completions always carry usage on the final chunk; chat only via a separate usage chunk.
  std::string usage =
      (!IsChat(j) && last) ? TgiUsage(j.prompt_tokens, j.completion_tokens) : "null";
  return Data(j, TgiHead(j, false) + ",\"choices\":[" + choice + "],\"usage\":" + usage + "}");
}

std::vector<std::string> TgiFinish(const Job& j) {
  std::vector<std::string> out;
  if (j.completion_tokens == 0) {
    out.push_back(Data(j, TgiHead(j, false) + ",\"choices\":[],\"usage\":" +
                              (IsChat(j) ? "null" : TgiUsage(j.prompt_tokens, 0)) + "}"));
  }
  if (IsChat(j) && j.include_usage) {
    out.push_back(Data(j, TgiHead(j, false) + ",\"choices\":[],\"usage\":" +
                              TgiUsage(j.prompt_tokens, j.completion_tokens) + "}"));
  }
  out.push_back(Done(j));
  return out;
}

std::string TgiNonStream(const Job& j) {
  std::string text = JsonQuote(FullText(j.completion_tokens));
  std::string choice = IsChat(j) ? "\"message\":{\"role\":\"assistant\",\"content\":" + text + "}"
                                 : "\"text\":" + text;
  return TgiHead(j, true) + ",\"choices\":[{\"index\":0," + choice +
         ",\"logprobs\":null,\"finish_reason\":" + JsonQuote(j.finish_reason) +
         "}],\"usage\":" + TgiUsage(j.prompt_tokens, j.completion_tokens) + "}";
}

// ---- llama.cpp -------------------------------------------------------------------------------

std::string LlamaTail(const Job& j, bool chunk) {
  std::string_view obj =
      IsChat(j) ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return ",\"created\":" + Num(j.created) + ",\"id\":" + JsonQuote(j.id) +
         ",\"model\":" + JsonQuote(j.model) + ",\"system_fingerprint\":\"" +
         std::string(kLlamaFingerprint) + "\",\"object\":\"" + std::string(obj) + "\"";
}

std::string LlamaTimings(const Job& j) {
  double pred_ms = j.itl_ms * (j.completion_tokens > 0 ? j.completion_tokens - 1 : 0);
  auto per = [](double ms, int n) { return n > 0 ? ms / n : 0.0; };
  auto rate = [](double ms, int n) { return ms > 0 ? 1000.0 * n / ms : 0.0; };
  return "{\"prompt_n\":" + Num(j.prompt_tokens) + ",\"prompt_ms\":" + Fixed(j.ttft_ms) +
         ",\"prompt_per_token_ms\":" + Fixed(per(j.ttft_ms, j.prompt_tokens)) +
         ",\"prompt_per_second\":" + Fixed(rate(j.ttft_ms, j.prompt_tokens)) +
         ",\"predicted_n\":" + Num(j.completion_tokens) + ",\"predicted_ms\":" + Fixed(pred_ms) +
         ",\"predicted_per_token_ms\":" + Fixed(per(pred_ms, j.completion_tokens)) +
         ",\"predicted_per_second\":" + Fixed(rate(pred_ms, j.completion_tokens)) + "}";
}

std::string LlamaTokenEvent(const Job& j, int i) {
  if (IsChat(j)) {
    return Data(j, "{\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":" +
                       JsonQuote(TokenText(i)) + "}}]" + LlamaTail(j, true) + "}");
  }
  return Data(j, "{\"choices\":[{\"text\":" + JsonQuote(TokenText(i)) +
                     ",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]" +
                     LlamaTail(j, true) + "}");
}

std::string LlamaFinishEvent(const Job& j) {
  std::string choice =
      IsChat(j) ? "{\"finish_reason\":" + JsonQuote(j.finish_reason) + ",\"index\":0,\"delta\":{}}"
                : "{\"text\":\"\",\"index\":0,\"logprobs\":null,"
                  "\"finish_reason\":" +
                      JsonQuote(j.finish_reason) + "}";
  return Data(j, "{\"choices\":[" + choice + "]" + LlamaTail(j, true) +
                     ",\"usage\":" + OpenAiUsage(j.prompt_tokens, j.completion_tokens) +
                     ",\"timings\":" + LlamaTimings(j) + "}");
}

std::string LlamaNonStream(const Job& j) {
  std::string text = JsonQuote(FullText(j.completion_tokens));
  std::string choice =
      IsChat(j) ? "{\"finish_reason\":" + JsonQuote(j.finish_reason) +
                      ",\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":" + text + "}}"
                : "{\"text\":" + text + ",\"index\":0,\"logprobs\":null,\"finish_reason\":" +
                      JsonQuote(j.finish_reason) + "}";
  return "{\"choices\":[" + choice + "]" + LlamaTail(j, false) +
         ",\"usage\":" + OpenAiUsage(j.prompt_tokens, j.completion_tokens) +
         ",\"timings\":" + LlamaTimings(j) + "}";
}

// ---- Responses API (vLLM shape for every engine) ---------------------------------------------

std::string ItemId(const Job& j) {
  // msg_ + the hex part of the response id keeps ids deterministic per request.
  std::string_view id = j.id;
  size_t us = id.find('_');
  return "msg_" + std::string(us == std::string_view::npos ? id : id.substr(us + 1));
}

std::string ResponsesUsage(const Job& j) {
  return "{\"input_tokens\":" + Num(j.prompt_tokens) +
         ",\"input_tokens_details\":{\"cached_tokens\":0,\"input_tokens_per_turn\":[],"
         "\"cached_tokens_per_turn\":[]},\"output_tokens\":" +
         Num(j.completion_tokens) +
         ",\"output_tokens_details\":{\"reasoning_tokens\":0,\"tool_output_tokens\":0,"
         "\"output_tokens_per_turn\":[],\"tool_output_tokens_per_turn\":[]},\"total_tokens\":" +
         Num(Total(j)) + "}";
}

std::string OutputTextPart(std::string_view text_json) {
  return "{\"annotations\":[],\"text\":" + std::string(text_json) +
         ",\"type\":\"output_text\",\"logprobs\":null}";
}

std::string MessageItem(const Job& j, bool done) {
  std::string content =
      done ? "[" + OutputTextPart(JsonQuote(FullText(j.completion_tokens))) + "]" : "[]";
  return "{\"id\":\"" + ItemId(j) + "\",\"content\":" + content +
         ",\"role\":\"assistant\",\"status\":\"" + (done ? "completed" : "in_progress") +
         "\",\"type\":\"message\"}";
}

std::string ResponseObject(const Job& j, bool completed) {
  int mot = j.max_output_tokens >= 0 ? j.max_output_tokens : j.max_model_len - j.prompt_tokens;
  return "{\"id\":" + JsonQuote(j.id) + ",\"created_at\":" + Num(j.created) +
         ",\"incomplete_details\":null,\"instructions\":null,\"metadata\":null,\"model\":" +
         JsonQuote(j.model) + ",\"object\":\"response\",\"output\":" +
         (completed ? "[" + MessageItem(j, true) + "]" : "[]") +
         ",\"parallel_tool_calls\":true,\"temperature\":1.0,\"tool_choice\":\"auto\",\"tools\":[],"
         "\"top_p\":1.0,\"background\":false,\"max_output_tokens\":" +
         Num(mot) +
         ",\"max_tool_calls\":null,\"previous_response_id\":null,\"prompt\":null,"
         "\"reasoning\":null,\"service_tier\":\"auto\",\"status\":\"" +
         (completed ? "completed" : "in_progress") +
         "\",\"text\":null,\"top_logprobs\":null,\"truncation\":\"disabled\",\"usage\":" +
         (completed ? ResponsesUsage(j) : "null") + ",\"user\":null}";
}

std::string Event(std::string_view type, std::string_view json) {
  return "event: " + std::string(type) + "\ndata: " + std::string(json) + "\n\n";
}

// Sequence numbers: created 0, in_progress 1, item added 2, part added 3, deltas from 4.
constexpr int kFirstDeltaSeq = 4;

std::string ResponsesDelta(const Job& j, int i) {
  return Event("response.output_text.delta",
               "{\"content_index\":0,\"delta\":" + JsonQuote(TokenText(i)) + ",\"item_id\":\"" +
                   ItemId(j) + "\",\"logprobs\":[],\"output_index\":0,\"sequence_number\":" +
                   Num(kFirstDeltaSeq + i) + ",\"type\":\"response.output_text.delta\"}");
}

std::vector<std::string> ResponsesPreamble(const Job& j) {
  std::string item = ItemId(j);
  return {
      Event("response.created", "{\"response\":" + ResponseObject(j, false) +
                                    ",\"sequence_number\":0,\"type\":\"response.created\"}"),
      Event("response.in_progress",
            "{\"response\":" + ResponseObject(j, false) +
                ",\"sequence_number\":1,\"type\":\"response.in_progress\"}"),
      Event(
          "response.output_item.added",
          "{\"item\":" + MessageItem(j, false) +
              ",\"output_index\":0,\"sequence_number\":2,\"type\":\"response.output_item.added\"}"),
      Event("response.content_part.added",
            "{\"content_index\":0,\"item_id\":\"" + item +
                "\",\"output_index\":0,\"part\":" + OutputTextPart("\"\"") +
                ",\"sequence_number\":3,\"type\":\"response.content_part.added\"}"),
  };
}

std::vector<std::string> ResponsesFinish(const Job& j) {
  std::string item = ItemId(j);
  std::string text = JsonQuote(FullText(j.completion_tokens));
  int seq = kFirstDeltaSeq + j.completion_tokens;
  return {
      Event("response.output_text.done",
            "{\"content_index\":0,\"item_id\":\"" + item +
                "\",\"logprobs\":[],\"output_index\":0,\"sequence_number\":" + Num(seq) +
                ",\"text\":" + text + ",\"type\":\"response.output_text.done\"}"),
      Event("response.content_part.done",
            "{\"content_index\":0,\"item_id\":\"" + item + "\",\"output_index\":0,\"part\":" +
                OutputTextPart(text) + ",\"sequence_number\":" + Num(seq + 1) +
                ",\"type\":\"response.content_part.done\"}"),
      Event("response.output_item.done",
            "{\"item\":" + MessageItem(j, true) + ",\"output_index\":0,\"sequence_number\":" +
                Num(seq + 2) + ",\"type\":\"response.output_item.done\"}"),
      Event("response.completed", "{\"response\":" + ResponseObject(j, true) +
                                      ",\"sequence_number\":" + Num(seq + 3) +
                                      ",\"type\":\"response.completed\"}"),
  };
}

std::string EmbeddingsBody(const Job& j) {
  std::string data;
  for (int i = 0; i < j.embedding_inputs; ++i) {
    if (i) data += ",";
    // A small deterministic vector per input; the values only need to be valid floats.
    data += "{\"index\":" + Num(i) + ",\"object\":\"embedding\",\"embedding\":[";
    for (int d = 0; d < 8; ++d) {
      if (d) data += ",";
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.4f", ((i * 8 + d) % 17 - 8) / 100.0);
      data += buf;
    }
    data += "]}";
  }
  return "{\"id\":" + JsonQuote(j.id) + ",\"object\":\"list\",\"created\":" + Num(j.created) +
         ",\"model\":" + JsonQuote(j.model) + ",\"data\":[" + data +
         "],\"usage\":{\"prompt_tokens\":" + Num(j.prompt_tokens) +
         ",\"total_tokens\":" + Num(j.prompt_tokens) +
         ",\"completion_tokens\":0,\"prompt_tokens_details\":null}}";
}

}  // namespace

std::string TokenText(int i) { return "tok" + std::to_string(i) + " "; }

std::string FullText(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += TokenText(i);
  return s;
}

std::string JsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c >= 0x80) {
          // Bytes >= 0x80 are escaped one by one; good enough for ASCII-only model names and
          // messages, which is all the simulator produces.
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

std::vector<std::string> StreamOpenWrites(const Job& job) {
  // TGI (axum) sends `:` keep-alive comments while the model is busy; the simulator sends one
  // deterministically before the first token so parsers always meet it.
  if (job.engine == Engine::kTgi && job.endpoint != Endpoint::kResponses) return {":\n\n"};
  return {};
}

std::vector<std::string> FirstTokenWrites(const Job& j) {
  if (j.endpoint == Endpoint::kResponses) {
    auto out = ResponsesPreamble(j);
    if (j.completion_tokens > 0) out.push_back(ResponsesDelta(j, 0));
    return out;
  }
  std::vector<std::string> out;
  switch (j.engine) {
    case Engine::kVllm:
      if (IsChat(j)) out.push_back(VllmRoleChunk(j));
      if (j.completion_tokens > 0) out.push_back(VllmTokenChunk(j, 0));
      break;
    case Engine::kSglang:
      if (IsChat(j))
        out.push_back(SglangChunk(j, "\"delta\":" + SglangDelta("\"assistant\"", "\"\"")));
      if (j.completion_tokens > 0) out.push_back(SglangTokenChunk(j, 0));
      break;
    case Engine::kTgi:
      if (j.completion_tokens > 0) out.push_back(TgiTokenChunk(j, 0));
      break;
    case Engine::kLlamaCpp: {
      // llama.cpp writes the role event and the first token in one write.
      std::string w;
      if (IsChat(j)) {
        w = Data(j,
                 "{\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":"
                 "\"assistant\",\"content\":null}}]" +
                     LlamaTail(j, true) + "}");
      }
      if (j.completion_tokens > 0) w += LlamaTokenEvent(j, 0);
      if (!w.empty()) out.push_back(std::move(w));
      break;
    }
  }
  return out;
}

std::vector<std::string> TokenWrites(const Job& j, int i) {
  if (j.endpoint == Endpoint::kResponses) return {ResponsesDelta(j, i)};
  switch (j.engine) {
    case Engine::kVllm:
      return {VllmTokenChunk(j, i)};
    case Engine::kSglang:
      return {SglangTokenChunk(j, i)};
    case Engine::kTgi:
      return {TgiTokenChunk(j, i)};
    case Engine::kLlamaCpp:
      return {LlamaTokenEvent(j, i)};
  }
  return {};
}

std::vector<std::string> FinishWrites(const Job& j) {
  if (j.endpoint == Endpoint::kResponses) return ResponsesFinish(j);
  switch (j.engine) {
    case Engine::kVllm:
      return VllmFinish(j);
    case Engine::kSglang:
      return SglangFinish(j);
    case Engine::kTgi:
      return TgiFinish(j);
    case Engine::kLlamaCpp:
      // Finish (with usage and timings) and [DONE] leave in one write.
      return {LlamaFinishEvent(j) + Done(j)};
  }
  return {};
}

std::vector<std::string> MidstreamErrorWrites(const Job& j, int emitted) {
  if (j.endpoint == Endpoint::kResponses) {
    return {Event("error",
                  "{\"type\":\"error\",\"code\":\"InternalServerError\",\"message\":"
                  "\"Internal server error\",\"param\":null,\"sequence_number\":" +
                      Num(kFirstDeltaSeq + emitted) + "}")};
  }
  switch (j.engine) {
    case Engine::kVllm:
    case Engine::kSglang:
      // Python's json.dumps defaults: ", " and ": " separators, ASCII escapes.
      if (j.legacy) {
        return {Data(j,
                     "{\"error\": {\"object\": \"error\", \"message\": \"Internal server "
                     "error\", \"type\": \"InternalServerError\", \"param\": null, \"code\": "
                     "500}}"),
                Done(j)};
      }
      return {Data(j,
                   "{\"error\": {\"message\": \"Internal server error\", \"type\": "
                   "\"InternalServerError\", \"param\": null, \"code\": 500}}"),
              Done(j)};
    case Engine::kTgi:
      return {Data(j,
                   "{\"error\":{\"message\":\"Request failed during generation: Server "
                   "error: simulated failure\",\"http_status_code\":422}}")};
    case Engine::kLlamaCpp:
      // Older llama.cpp builds: a non-standard `error:` field line instead of `data:`.
      return {
          "error: {\"code\":500,\"message\":\"simulated failure\",\"type\":\"server_error\"}\n\n"};
  }
  return {};
}

std::string NonStreamBody(const Job& j) {
  if (j.endpoint == Endpoint::kEmbeddings) return EmbeddingsBody(j);
  if (j.endpoint == Endpoint::kResponses) return ResponseObject(j, true);
  switch (j.engine) {
    case Engine::kVllm:
      return VllmNonStream(j);
    case Engine::kSglang:
      return SglangNonStream(j);
    case Engine::kTgi:
      return TgiNonStream(j);
    case Engine::kLlamaCpp:
      return LlamaNonStream(j);
  }
  return {};
}

namespace {

struct ErrorText {
  std::string message;
  std::string type;
  std::string param = "null";  // JSON literal
};

// vLLM's messages and exception type names for the statuses the simulator can be asked for.
ErrorText VllmErrorText(int status, std::string_view model, int prompt, int completion,
                        int max_len) {
  switch (status) {
    case 400:
      return {"This model's maximum context length is " + Num(max_len) +
                  " tokens. However, you requested " + Num(completion) +
                  " output tokens and your prompt contains " + Num(prompt) +
                  " input tokens, for a total of " + Num(prompt + completion) +
                  " tokens. Please reduce the length of the input prompt or the number of "
                  "requested output tokens. (parameter=input_tokens, value=" +
                  Num(prompt) + ")",
              "BadRequestError", "\"input_tokens\""};
    case 404:
      return {"The model `" + std::string(model) + "` does not exist.", "NotFoundError",
              "\"model\""};
    case 429:
      return {"Too many requests, please retry later.", "TooManyRequestsError"};
    case 500:
      return {"Internal server error", "InternalServerError"};
    case 503:
      return {"The server is currently unavailable.", "ServiceUnavailableError"};
    default:
      return {"Simulated error", std::string(ReasonPhrase(status))};
  }
}

}  // namespace

ErrorResponse ErrorBody(Engine engine, int status, bool legacy, std::string_view model,
                        int prompt_tokens, int completion_tokens, int max_model_len) {
  ErrorText t = VllmErrorText(status, model, prompt_tokens, completion_tokens, max_model_len);
  switch (engine) {
    case Engine::kVllm:
    case Engine::kSglang:
      if (status == 401) return {401, "{\"error\":\"Unauthorized\"}"};
      if (legacy || engine == Engine::kSglang) {
        // Flat shape; the legacy server never filled `param`.
        return {status, "{\"object\":\"error\",\"message\":" + JsonQuote(t.message) + ",\"type\":" +
                            JsonQuote(t.type) + ",\"param\":null,\"code\":" + Num(status) + "}"};
      }
      return {status, "{\"error\":{\"message\":" + JsonQuote(t.message) +
                          ",\"type\":" + JsonQuote(t.type) + ",\"param\":" + t.param +
                          ",\"code\":" + Num(status) + "}}"};
    case Engine::kTgi: {
      std::string msg, type;
      switch (status) {
        case 400:
        case 422:
          msg = "Input validation error: `inputs` tokens + `max_new_tokens` must be <= " +
                Num(max_model_len) + ". Given: " + Num(prompt_tokens) + " `inputs` tokens and " +
                Num(completion_tokens) + " `max_new_tokens`";
          type = "validation";
          break;
        case 401:
          msg = "Unauthorized";
          type = "authentication";
          break;
        case 424:
          msg = "Request failed during generation: simulated";
          type = "generation";
          break;
        case 429:
          msg = "Model is overloaded";
          type = "overloaded";
          break;
        case 500:
          msg = "Incomplete generation";
          type = "incomplete_generation";
          break;
        default:
          msg = t.message;
          type = "unhealthy";
          break;
      }
      return {status, "{\"error\":" + JsonQuote(msg) + ",\"error_type\":" + JsonQuote(type) + "}"};
    }
    case Engine::kLlamaCpp: {
      std::string type;
      switch (status) {
        case 400:
          type = "invalid_request_error";
          break;
        case 401:
          t.message = "Invalid API Key";
          type = "authentication_error";
          break;
        case 404:
          type = "not_found_error";
          break;
        case 501:
          type = "not_supported_error";
          break;
        case 503:
          t.message = "Loading model";
          type = "unavailable_error";
          break;
        default:
          type = "server_error";
          break;
      }
      return {status, "{\"error\":{\"code\":" + Num(status) + ",\"message\":" +
                          JsonQuote(t.message) + ",\"type\":" + JsonQuote(type) + "}}"};
    }
  }
  return {status, "{}"};
}

std::string_view EngineName(Engine engine) {
  switch (engine) {
    case Engine::kVllm:
      return "vllm";
    case Engine::kSglang:
      return "sglang";
    case Engine::kTgi:
      return "tgi";
    case Engine::kLlamaCpp:
      return "llamacpp";
  }
  return "?";
}

bool ParseEngine(std::string_view name, Engine* out) {
  for (Engine e : {Engine::kVllm, Engine::kSglang, Engine::kTgi, Engine::kLlamaCpp}) {
    if (name == EngineName(e)) {
      *out = e;
      return true;
    }
  }
  return false;
}

}  // namespace infertap::sim
