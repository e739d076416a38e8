#include "agent/cli/inspect/frame.hpp"

#include <algorithm>
#include <cstdio>
#include <functional>

namespace infertap::cli {
namespace {

constexpr size_t kMinNameWidth = 12;
constexpr size_t kMaxNameWidth = 40;

template <typename... Args>
std::string Fmt(const char* fmt, Args... args) {
  char buf[64];
  int n = std::snprintf(buf, sizeof(buf), fmt, args...);
  return std::string(buf, size_t(std::clamp(n, 0, int(sizeof(buf)) - 1)));
}

std::string FormatQueue(std::optional<double> q) {
  if (!q) return "-";
  return *q < 999.95 ? Fmt("%.1f", *q) : Fmt("%.0f", *q);
}

std::string FormatWholePercent(std::optional<double> ratio) {
  if (!ratio) return "-";
  return Fmt("%.0f%%", *ratio * 100);
}

struct Column {
  const char* title;
  size_t width;
  int drop_rank;  // columns with the lowest rank go first when the terminal is narrow
  std::function<std::string(const TopRow&)> cell;
};

const std::vector<Column>& Columns() {
  static const std::vector<Column> columns = {
      {"REQ/S", 6, 10, [](const TopRow& r) { return FormatRate(r.req_per_s); }},
      {"INFL", 4, 9, [](const TopRow& r) { return FormatCount(r.in_flight, 4); }},
      {"ERR%", 5, 8, [](const TopRow& r) { return FormatPercent(r.error_ratio); }},
      {"P50", 6, 7, [](const TopRow& r) { return FormatSeconds(r.p50_s); }},
      {"P99", 6, 1, [](const TopRow& r) { return FormatSeconds(r.p99_s); }},
      {"TTFT", 6, 4, [](const TopRow& r) { return FormatSeconds(r.ttft_p50_s); }},
      {"IN/S", 6, 2, [](const TopRow& r) { return FormatRate(r.in_tok_per_s); }},
      {"OUT/S", 6, 3, [](const TopRow& r) { return FormatRate(r.out_tok_per_s); }},
      // Pool gauges: blank on model rows, where they would only repeat the pool's value.
      {"QUEUE", 5, 5,
       [](const TopRow& r) { return r.is_pool ? FormatQueue(r.queue) : std::string(); }},
      {"KV%", 4, 6,
       [](const TopRow& r) { return r.is_pool ? FormatWholePercent(r.kv_utilization) : ""; }},
  };
  return columns;
}

std::string PadRight(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string PadLeft(const std::string& s, size_t width) {
  return s.size() < width ? std::string(width - s.size(), ' ') + s : s;
}

std::string RightTrim(std::string s) {
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

struct Part {
  std::string text;
  bool may_cut = false;  // free text (a status) may be cut; a "label value" pair may not
};

// Joins the non-empty parts with two spaces, keeping only whole parts that fit in `width`: "lost
// 1~" would read as a different number. A part marked may_cut is cut to fit instead of dropped.
std::string JoinFitting(const std::vector<Part>& parts, size_t width) {
  std::string out;
  for (const Part& p : parts) {
    if (p.text.empty()) continue;
    size_t sep = out.empty() ? 0 : 2;
    if (out.size() + sep + p.text.size() > width) {
      if (!p.may_cut || out.size() + sep + 1 >= width) continue;
      out += std::string(sep, ' ') + Truncate(p.text, width - out.size() - sep);
      continue;
    }
    out += std::string(sep, ' ') + p.text;
  }
  return Truncate(out, width);
}

std::string FormatWindow(double s) { return s < 9.95 ? Fmt("%.1fs", s) : Fmt("%.0fs", s); }

std::string TitleLine(const TopModel& m, size_t width) {
  std::string node = m.state() && !m.state()->node.empty() ? Printable(m.state()->node) : "-";
  std::string left = "infertap top  node " + node + "  agent " + Printable(m.info().agent_url);
  std::string clock = Printable(m.info().clock);
  if (!clock.empty() && left.size() + 2 + clock.size() <= width) {
    return left + std::string(width - left.size() - clock.size(), ' ') + clock;
  }
  return Truncate(left, width);
}

std::string TotalsLine(const TopModel& m, size_t width) {
  TopRow t = m.Totals();
  std::vector<Part> parts = {{"req/s " + FormatRate(t.req_per_s)},
                             {"in-flight " + FormatCount(t.in_flight, 8)},
                             {"err " + FormatPercent(t.error_ratio)}};
  if (const auto& s = m.state()) {
    size_t pods = 0;
    for (const PoolState& p : s->pools) pods += p.pods.size();
    parts.push_back({"pods " + FormatCount(t.ready_pods, 8) + "/" + std::to_string(pods)});
    parts.push_back({"conns " + FormatCount(s->connections, 8)});
    // Lost capture events mean missing records: the rates above are then lower bounds.
    parts.push_back({"lost " + FormatCount(s->capture_lost_events, 12)});
    parts.push_back({"parse-err " + FormatCount(s->parse_errors, 12)});
  }
  return JoinFitting(parts, width);
}

std::string FooterLine(const TopModel& m, size_t width) {
  std::vector<Part> parts;
  if (m.info().interactive) parts.push_back({"q quit"});
  // The status (e.g. the agent went away) goes right after, so that a narrow terminal cuts it
  // last and never hides it.
  parts.push_back({Printable(m.info().status), /*may_cut=*/true});
  if (auto w = m.effective_window_s()) parts.push_back({"rates over " + FormatWindow(*w)});
  if (m.dropped_samples() > 0) {
    parts.push_back({std::to_string(m.dropped_samples()) + " samples dropped (too many to keep)"});
  }
  if (const auto& s = m.state()) {
    std::string agent = "agent";
    if (!s->version.empty()) agent += " " + Printable(s->version);
    if (s->uptime_s) agent += " up " + FormatDuration(*s->uptime_s);
    parts.push_back({agent});
  }
  return JoinFitting(parts, width);
}

}  // namespace

std::string Printable(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) c = '?';
  }
  return out;
}

std::string Truncate(std::string_view text, size_t width) {
  if (text.size() <= width) return std::string(text);
  if (width == 0) return "";
  return std::string(text.substr(0, width - 1)) + "~";
}

std::string FormatRate(std::optional<double> v) {
  if (!v) return "-";
  if (*v < 99.95) return Fmt("%.1f", *v);
  if (*v < 99999.5) return Fmt("%.0f", *v);
  return Truncate(Fmt("%.0fk", *v / 1000), 6);
}

std::string FormatSeconds(std::optional<double> s) {
  if (!s) return "-";
  if (*s < 9.9995) return Fmt("%.3fs", *s);
  if (*s < 99.995) return Fmt("%.2fs", *s);
  if (*s < 999.95) return Fmt("%.1fs", *s);
  if (*s < 99999.5) return Fmt("%.0fs", *s);
  return Truncate(Fmt("%.0fh", *s / 3600), 6);
}

std::string FormatPercent(std::optional<double> ratio) {
  if (!ratio) return "-";
  double p = *ratio * 100;
  return p < 99.95 ? Fmt("%.1f%%", p) : Fmt("%.0f%%", p);
}

std::string FormatCount(std::optional<int64_t> n, int width) {
  if (!n) return "-";
  std::string s = std::to_string(*n);
  if (s.size() > size_t(width)) s = std::to_string(*n / 1000) + "k";
  return Truncate(s, size_t(width));
}

std::string FormatDuration(double seconds) {
  auto s = int64_t(std::max(0.0, seconds));
  if (s < 60) return Fmt("%llds", (long long)s);
  if (s < 3600) return Fmt("%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  if (s < 86400) return Fmt("%lldh%02lldm", (long long)(s / 3600), (long long)(s % 3600 / 60));
  return Fmt("%lldd%02lldh", (long long)(s / 86400), (long long)(s % 86400 / 3600));
}

std::vector<std::string> RenderFrameLines(const TopModel& model, int width_in, int height) {
  const size_t width = size_t(std::max(width_in, 1));

  // Drop columns, least important first, until the name column gets its minimum.
  std::vector<const Column*> visible;
  for (const Column& c : Columns()) visible.push_back(&c);
  auto numeric_width = [&] {
    size_t w = 0;
    for (const Column* c : visible) w += 1 + c->width;
    return w;
  };
  while (!visible.empty() && numeric_width() + kMinNameWidth > width) {
    auto lowest = std::min_element(visible.begin(), visible.end(),
                                   [](auto* a, auto* b) { return a->drop_rank < b->drop_rank; });
    visible.erase(lowest);
  }
  size_t name_width =
      std::min(kMaxNameWidth, width > numeric_width() ? width - numeric_width() : 0);

  auto table_line = [&](std::string name, const std::function<std::string(const Column&)>& cell) {
    std::string line = PadRight(Truncate(name, name_width), name_width);
    for (const Column* c : visible) line += " " + PadLeft(Truncate(cell(*c), c->width), c->width);
    return RightTrim(Truncate(line, width));
  };

  std::vector<std::string> body = {
      TitleLine(model, width), TotalsLine(model, width), "",
      table_line("POOL / MODEL", [](const Column& c) { return std::string(c.title); })};
  const size_t header_lines = body.size();
  std::vector<TopRow> rows = model.Rows();
  std::vector<std::string> row_lines;
  for (const TopRow& r : rows) {
    std::string name = r.is_pool ? (r.pool.empty() ? "(no pool)" : Printable(r.pool))
                                 : "  " + (r.model.empty() ? "(no model)" : Printable(r.model));
    row_lines.push_back(table_line(name, [&r](const Column& c) { return c.cell(r); }));
  }
  if (rows.empty()) row_lines.push_back("  (no pools, models or requests yet)");

  std::string footer = RightTrim(FooterLine(model, width));
  if (height <= 0) {
    body.insert(body.end(), row_lines.begin(), row_lines.end());
    body.push_back(footer);
    for (std::string& l : body) l = RightTrim(std::move(l));
    return body;
  }

  const size_t h = size_t(height);
  if (h == 1) return {footer};
  size_t room = h - 1 > header_lines ? h - 1 - header_lines : 0;
  if (row_lines.size() > room && room > 0) {
    // Keep the last visible line for the overflow note, so nothing disappears silently.
    size_t shown = room - 1;
    std::string more = "  ... " + std::to_string(row_lines.size() - shown) + " more rows";
    row_lines.resize(shown);
    row_lines.push_back(Truncate(more, width));
  } else if (row_lines.size() > room) {
    row_lines.clear();
  }
  body.insert(body.end(), row_lines.begin(), row_lines.end());
  body.resize(h - 1);  // cuts the header itself on a tiny terminal, pads with blanks otherwise
  body.push_back(footer);
  for (std::string& l : body) l = RightTrim(std::move(l));
  return body;
}

std::string RenderFrame(const TopModel& model, int width, int height) {
  std::string out;
  for (const std::string& line : RenderFrameLines(model, width, height)) {
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace infertap::cli
