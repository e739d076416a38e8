#include "parsers/record.hpp"

#include <charconv>
#include <cstdio>
#include <ctime>

#include "parsers/utf8.hpp"

namespace infertap {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNone:
      return "";
    case ErrorCode::kBadRequest:
      return "BadRequest";
    case ErrorCode::kUnauthorized:
      return "Unauthorized";
    case ErrorCode::kForbidden:
      return "Forbidden";
    case ErrorCode::kNotFound:
      return "NotFound";
    case ErrorCode::kResourceExhausted:
      return "ResourceExhausted";
    case ErrorCode::kServiceUnavailable:
      return "ServiceUnavailable";
    case ErrorCode::kModelServerError:
      return "ModelServerError";
    case ErrorCode::kIncomplete:
      return "Incomplete";
  }
  return "";
}

ErrorCode ErrorCodeForStatus(int status) {
  switch (status) {
    case 400:
    case 422:
      return ErrorCode::kBadRequest;
    case 401:
      return ErrorCode::kUnauthorized;
    case 403:
      return ErrorCode::kForbidden;
    case 404:
      return ErrorCode::kNotFound;
    case 429:
      return ErrorCode::kResourceExhausted;
    case 503:
      return ErrorCode::kServiceUnavailable;
    default:
      break;
  }
  if (status >= 500 && status <= 599) return ErrorCode::kModelServerError;
  if (status >= 400 && status <= 499) return ErrorCode::kBadRequest;
  return ErrorCode::kNone;
}

namespace {

void AppendString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (size_t i = 0; i < s.size();) {
    char c = s[i];
    switch (c) {
      case '"':
        out += "\\\"";
        ++i;
        continue;
      case '\\':
        out += "\\\\";
        ++i;
        continue;
      case '\n':
        out += "\\n";
        ++i;
        continue;
      case '\r':
        out += "\\r";
        ++i;
        continue;
      case '\t':
        out += "\\t";
        ++i;
        continue;
      default:
        break;
    }
    if (uint8_t(c) < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", unsigned(uint8_t(c)));
      out += buf;
      ++i;
      continue;
    }
    size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      out += "\\ufffd";  // invalid byte: the output must stay valid UTF-8 JSON
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  out.push_back('"');
}

void AppendKey(std::string& out, std::string_view key) {
  if (out.size() > 1) out.push_back(',');
  out.push_back('"');
  out.append(key);
  out += "\":";
}

void AppendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

void AppendDouble(std::string& out, double v) {
  char buf[32];
  // Shortest round-trip representation; durations are finite and non-negative by construction.
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

std::string Rfc3339(int64_t ns) {
  int64_t sec = ns / 1000000000;
  int64_t frac = ns % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    --sec;
  }
  time_t t = time_t(sec);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

}  // namespace

std::string RecordToJson(const RequestRecord& r, int64_t wall_offset_ns) {
  std::string out;
  out.reserve(512);
  out.push_back('{');
  AppendKey(out, "ts");
  AppendString(out, Rfc3339(int64_t(r.start_ns) + wall_offset_ns));
  const std::pair<std::string_view, const std::string*> strings[] = {
      {"node", &r.node},
      {"pool", &r.pool},
      {"namespace", &r.ns},
      {"pod", &r.pod},
      {"role", &r.role},
      {"model_name", &r.model_name},
      {"target_model_name", &r.target_model_name},
      {"method", &r.method},
      {"path", &r.path}};
  for (const auto& [key, value] : strings) {
    AppendKey(out, key);
    AppendString(out, *value);
  }
  AppendKey(out, "status");
  AppendUint(out, uint64_t(r.status < 0 ? 0 : r.status));
  AppendKey(out, "stream");
  out += r.stream ? "true" : "false";
  AppendKey(out, "error_code");
  AppendString(out, ErrorCodeName(r.error));
  AppendKey(out, "request_bytes");
  AppendUint(out, r.request_bytes);
  AppendKey(out, "response_bytes");
  AppendUint(out, r.response_bytes);
  if (r.input_tokens) {
    AppendKey(out, "input_tokens");
    AppendUint(out, *r.input_tokens);
  }
  if (r.output_tokens) {
    AppendKey(out, "output_tokens");
    AppendUint(out, *r.output_tokens);
  }
  if (r.cached_tokens) {
    AppendKey(out, "cached_tokens");
    AppendUint(out, *r.cached_tokens);
  }
  AppendKey(out, "duration_s");
  AppendDouble(out, r.duration_s());
  if (auto ttft = r.ttft_s()) {
    AppendKey(out, "ttft_s");
    AppendDouble(out, *ttft);
  }
  if (auto tpot = r.tpot_s()) {
    AppendKey(out, "tpot_s");
    AppendDouble(out, *tpot);
  }
  AppendKey(out, "chunks");
  AppendUint(out, r.chunks);
  out.push_back('}');
  return out;
}

}  // namespace infertap
