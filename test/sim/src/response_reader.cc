#include "response_reader.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace infertap::sim {
namespace {

bool IStartsWith(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

std::string_view TrimValue(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r'))
    v.remove_suffix(1);
  return v;
}

}  // namespace

ResponseReader::State ResponseReader::ParseHead(std::string_view head) {
  // "HTTP/1.1 200 OK"
  if (head.size() < 12 || head.substr(0, 7) != "HTTP/1.") return State::kInvalid;
  bool http10 = head[7] == '0';
  int status = 0;
  auto [p, ec] = std::from_chars(head.data() + 9, head.data() + 12, status);
  if (ec != std::errc() || p != head.data() + 12) return State::kInvalid;
  status_ = status;
  keep_alive_ = !http10;
  bool have_length = false;
  chunked_ = false;
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    size_t eol = head.find("\r\n", pos + 2);
    std::string_view line =
        head.substr(pos + 2, eol == std::string_view::npos ? head.npos : eol - pos - 2);
    pos = eol;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = line.substr(0, colon);
    std::string_view value = TrimValue(line.substr(colon + 1));
    if (name.size() == 14 && IStartsWith(name, "content-length")) {
      auto [q, e2] = std::from_chars(value.data(), value.data() + value.size(), remaining_);
      if (e2 != std::errc()) return State::kInvalid;
      have_length = true;
    } else if (name.size() == 17 && IStartsWith(name, "transfer-encoding")) {
      chunked_ = IStartsWith(value, "chunked");
    } else if (name.size() == 10 && IStartsWith(name, "connection")) {
      if (IStartsWith(value, "close")) keep_alive_ = false;
      if (IStartsWith(value, "keep-alive")) keep_alive_ = true;
    } else if (name.size() == 12 && IStartsWith(name, "content-type")) {
      content_type_ = std::string(value);
    }
  }
  if (status_ >= 100 && status_ < 200) return State::kNeedMoreData;  // interim: caller skips
  if (status_ == 204 || status_ == 304) {
    phase_ = Phase::kDone;
  } else if (chunked_) {
    phase_ = Phase::kChunkSize;
  } else if (have_length) {
    phase_ = remaining_ == 0 ? Phase::kDone : Phase::kFixed;
  } else {
    phase_ = Phase::kUntilClose;
    keep_alive_ = false;
  }
  return State::kNeedMoreData;
}

ResponseReader::State ResponseReader::Feed(std::string_view data, size_t* used,
                                           const BodySink& sink) {
  size_t pos = 0;
  auto finish = [&](State s) {
    *used = pos;
    wire_bytes_ += pos;
    return s;
  };
  while (pos < data.size() || phase_ == Phase::kDone) {
    switch (phase_) {
      case Phase::kHead: {
        // Heads are small: accumulate until the blank line, then give back what follows it.
        size_t old = buf_.size();
        buf_.append(data.substr(pos));
        size_t end = buf_.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
        if (end == std::string::npos) {
          pos = data.size();
          if (buf_.size() > 65536) return finish(State::kInvalid);
          return finish(State::kNeedMoreData);
        }
        pos += end + 4 - old;
        std::string head = buf_.substr(0, end);
        buf_.clear();
        if (ParseHead(head) == State::kInvalid) return finish(State::kInvalid);
        if (status_ < 200) phase_ = Phase::kHead;  // 100 Continue: the real head follows
        break;
      }
      case Phase::kFixed:
      case Phase::kChunkData: {
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, data.size() - pos));
        if (n) sink(data.substr(pos, n));
        body_bytes_ += n;
        remaining_ -= n;
        pos += n;
        if (remaining_ == 0) phase_ = phase_ == Phase::kFixed ? Phase::kDone : Phase::kChunkEnd;
        break;
      }
      case Phase::kUntilClose: {
        sink(data.substr(pos));
        body_bytes_ += data.size() - pos;
        pos = data.size();
        break;
      }
      case Phase::kChunkSize:
      case Phase::kTrailers:
      case Phase::kChunkEnd: {
        buf_.push_back(data[pos++]);
        if (buf_.size() > 4096) return finish(State::kInvalid);
        if (buf_.size() < 2 || buf_.compare(buf_.size() - 2, 2, "\r\n") != 0) break;
        std::string line = buf_.substr(0, buf_.size() - 2);
        buf_.clear();
        if (phase_ == Phase::kChunkEnd) {
          if (!line.empty()) return finish(State::kInvalid);
          phase_ = Phase::kChunkSize;
        } else if (phase_ == Phase::kTrailers) {
          if (line.empty()) phase_ = Phase::kDone;
        } else {
          uint64_t n = 0;
          std::string_view sv = line;
          sv = sv.substr(0, sv.find(';'));
          auto [p, ec] = std::from_chars(sv.data(), sv.data() + sv.size(), n, 16);
          if (sv.empty() || ec != std::errc()) return finish(State::kInvalid);
          if (n == 0) {
            phase_ = Phase::kTrailers;
          } else {
            ++chunks_;
            remaining_ = n;
            phase_ = Phase::kChunkData;
          }
        }
        break;
      }
      case Phase::kDone:
        return finish(State::kDone);
    }
  }
  return finish(State::kNeedMoreData);
}

ResponseReader::State ResponseReader::OnEof() {
  if (phase_ == Phase::kUntilClose || phase_ == Phase::kDone) {
    phase_ = Phase::kDone;
    return State::kDone;
  }
  return State::kInvalid;
}

void SseScanner::Feed(std::string_view bytes, const Handler& on_event) {
  pending_.append(bytes);
  size_t start = 0;
  for (;;) {
    size_t end = pending_.find("\n\n", start);
    if (end == std::string::npos) break;
    Dispatch(std::string_view(pending_).substr(start, end - start), on_event);
    start = end + 2;
  }
  pending_.erase(0, start);
}

void SseScanner::Finish(const Handler& on_event) {
  if (!pending_.empty()) Dispatch(pending_, on_event);
  pending_.clear();
}

void SseScanner::Dispatch(std::string_view block, const Handler& on_event) {
  Event ev;
  bool any = false;
  while (!block.empty()) {
    size_t eol = block.find('\n');
    std::string_view line = block.substr(0, eol);
    block = eol == std::string_view::npos ? std::string_view() : block.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line[0] == ':') continue;  // comments are keep-alives
    size_t colon = line.find(':');
    std::string_view field = line.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
    if (field == "data" || field == "error") {
      if (!ev.data.empty()) ev.data.push_back('\n');
      ev.data.append(value);
      ev.error_line = ev.error_line || field == "error";
      any = true;
    } else if (field == "event") {
      ev.event = std::string(value);
    }
  }
  if (any) on_event(ev);
}

namespace {

// usage.{prompt,completion}_tokens, or Responses' {input,output}_tokens.
void ReadUsage(simdjson::dom::element usage, Classified* c) {
  if (!usage.is_object()) return;
  int64_t v;
  if (usage["completion_tokens"].get(v) == simdjson::SUCCESS) {
    c->has_usage = true;
    c->completion_tokens = v;
  } else if (usage["output_tokens"].get(v) == simdjson::SUCCESS) {
    c->has_usage = true;
    c->completion_tokens = v;
  }
  if (usage["prompt_tokens"].get(v) == simdjson::SUCCESS) {
    c->prompt_tokens = v;
  } else if (usage["input_tokens"].get(v) == simdjson::SUCCESS) {
    c->prompt_tokens = v;
  }
}

Classified ClassifyJson(std::string_view json, bool is_event, std::string_view event_type) {
  Classified c;
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size()).get(doc) != simdjson::SUCCESS || !doc.is_object()) {
    c.parse_failed = true;
    return c;
  }
  simdjson::dom::element e;
  if (doc["error"].get(e) == simdjson::SUCCESS) c.error = true;
  if (doc["usage"].get(e) == simdjson::SUCCESS) ReadUsage(e, &c);
  std::string_view type;
  if (doc["type"].get(type) != simdjson::SUCCESS) type = event_type;
  if (type == "response.completed") {
    if (doc["response"]["usage"].get(e) == simdjson::SUCCESS) ReadUsage(e, &c);
  }
  if (type == "error") c.error = true;
  if (!is_event) return c;
  if (type.size() > 6 && type.substr(type.size() - 6) == ".delta") {
    c.content = true;
    return c;
  }
  simdjson::dom::array choices;
  if (doc["choices"].get(choices) == simdjson::SUCCESS && choices.size() > 0) {
    simdjson::dom::element choice = choices.at(0);
    std::string_view text;
    if (choice["delta"]["content"].get(text) == simdjson::SUCCESS && !text.empty()) {
      c.content = true;
    } else if (choice["text"].get(text) == simdjson::SUCCESS && !text.empty()) {
      c.content = true;
    }
  }
  return c;
}

}  // namespace

Classified ClassifyEvent(const SseScanner::Event& ev) {
  Classified c;
  if (ev.error_line) {
    c.error = true;
    return c;
  }
  if (ev.data == "[DONE]") {
    c.done = true;
    return c;
  }
  return ClassifyJson(ev.data, true, ev.event);
}

Classified ClassifyBody(std::string_view json) { return ClassifyJson(json, false, ""); }

}  // namespace infertap::sim
