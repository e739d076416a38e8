// What the simulated servers put on the wire: bodies, SSE events and their grouping into HTTP
// chunks, per engine. Pure functions of a `Job` (no sockets, no clocks), so the byte layout can be
// unit-tested against test/fixtures/wire and reasoned about in one place.
//
// Byte order of JSON keys matters here (tracers and golden tests compare bytes), which is why the
// bodies are assembled by hand instead of through a JSON library that reorders keys.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "parsers/http_status.hpp"

namespace infertap::sim {

enum class Engine { kVllm, kSglang, kTgi, kLlamaCpp };
enum class Endpoint { kChat, kCompletions, kEmbeddings, kResponses };

// Fixed at request time: everything needed to render the response.
struct Job {
  Engine engine = Engine::kVllm;
  Endpoint endpoint = Endpoint::kChat;
  bool stream = false;
  bool include_usage = false;
  bool continuous_usage = false;   // vLLM: only honoured together with include_usage
  bool legacy = false;             // vLLM <= 0.10.0 shapes (x-sim-error-format: legacy)
  bool tgi_data_no_space = false;  // TGI < 2.1 wrote `data:` without the space
  int completion_tokens = 16;
  int prompt_tokens = 1;
  int embedding_inputs = 1;
  int max_model_len = 131072;
  int max_output_tokens = -1;  // Responses API echo; -1 = max_model_len - prompt_tokens
  int64_t created = 0;         // unix seconds
  std::string id;              // e.g. chatcmpl-0123456789abcdef
  std::string model;
  std::string finish_reason = "length";
  // Used only for llama.cpp `timings` (what the server would have measured).
  double ttft_ms = 0;
  double itl_ms = 0;
};

// The generated text of token i: a short word that never echoes the prompt.
std::string TokenText(int i);
// All generated text of a job (non-streaming bodies, Responses `done` events).
std::string FullText(int n);

// JSON string literal with quotes; non-ASCII and control characters escaped as \uXXXX so the
// output is plain ASCII like Python's json.dumps default.
std::string JsonQuote(std::string_view s);

// --- streaming ------------------------------------------------------------------------------
// Each returned string is the payload of ONE HTTP chunk, i.e. one write() on the socket.
// vLLM/SGLang/TGI: one SSE event per chunk; llama.cpp groups several events per chunk.

// Written right after the response head, before the time to first token (TGI keep-alive comment).
std::vector<std::string> StreamOpenWrites(const Job& job);
// At first-token time: role chunk / Responses preamble, then token 0.
std::vector<std::string> FirstTokenWrites(const Job& job);
// Token i >= 1.
std::vector<std::string> TokenWrites(const Job& job, int i);
// After the last token: finish chunk, usage chunk, [DONE] (per engine and options).
std::vector<std::string> FinishWrites(const Job& job);
// In place of the rest of the stream after `emitted` tokens: the engine's mid-stream error.
std::vector<std::string> MidstreamErrorWrites(const Job& job, int emitted);

// --- whole bodies ---------------------------------------------------------------------------
std::string NonStreamBody(const Job& job);

struct ErrorResponse {
  int status = 500;
  std::string body;
};
// The error body a server of this engine returns for an HTTP status. `model` and token counts
// fill the realistic messages (404 model not found, 400 context length).
ErrorResponse ErrorBody(Engine engine, int status, bool legacy, std::string_view model,
                        int prompt_tokens, int completion_tokens, int max_model_len);

// Reason phrases are shared with the agent (parsers/http_status.hpp).
using ::infertap::ReasonPhrase;
std::string_view EngineName(Engine engine);
bool ParseEngine(std::string_view name, Engine* out);

}  // namespace infertap::sim
