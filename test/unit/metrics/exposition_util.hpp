// Helpers for asserting on Prometheus exposition through our own parser: samples, not bytes.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "parsers/promtext/promtext.hpp"

namespace infertap::testutil {

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<promtext::Family> ParseOrDie(const std::string& text) {
  promtext::Result r = promtext::Parse(text, promtext::Format::kText004);
  EXPECT_TRUE(r.ok()) << "line " << r.error.line << ": " << r.error.message << "\n" << text;
  return std::move(r.families);
}

// `le`/`quantile` values are numbers written differently by different clients ("1.0", "1",
// "1.048576e+06"); compare them as numbers by rewriting them in shortest round-trip form.
inline std::string CanonicalLabels(promtext::Labels labels) {
  std::sort(labels.begin(), labels.end());
  std::string out;
  for (const auto& [k, v] : labels) {
    std::string value = v;
    if (k == "le" || k == "quantile") {
      promtext::Result r = promtext::Parse("x " + v + "\n", promtext::Format::kText004);
      if (r.ok()) {
        double d = r.families[0].samples[0].value;
        if (std::isinf(d)) {
          value = d > 0 ? "+Inf" : "-Inf";
        } else {
          char buf[64];
          auto res = std::to_chars(buf, buf + sizeof buf, d);
          value.assign(buf, res.ptr);
        }
      }
    }
    out += k + "=" + value + ",";
  }
  return out;
}

inline std::optional<double> Value(const std::vector<promtext::Family>& families,
                                   const std::string& sample_name,
                                   const promtext::Labels& labels = {}) {
  std::string want = CanonicalLabels(labels);
  for (const auto& f : families) {
    for (const auto& s : f.samples) {
      if (s.name == sample_name && CanonicalLabels(s.labels) == want) return s.value;
    }
  }
  return std::nullopt;
}

inline size_t SeriesCount(const std::vector<promtext::Family>& families, const std::string& name) {
  const promtext::Family* f = promtext::FindFamily(families, name);
  return f ? f->samples.size() : 0;
}

// Same HELP, TYPE and the same set of (sample name, labels) → value, values within 1e-9 relative
// (the golden sums like 0.01 + 0.02 are printed rounded).
inline ::testing::AssertionResult SameFamily(const promtext::Family& want,
                                             const promtext::Family& got) {
  if (want.name != got.name) return ::testing::AssertionFailure() << "name " << got.name;
  if (want.help != got.help) {
    return ::testing::AssertionFailure()
           << "HELP differs:\n want " << want.help << "\n got  " << got.help;
  }
  if (want.type != got.type) return ::testing::AssertionFailure() << "TYPE differs";
  std::map<std::string, double> a, b;
  for (const auto& s : want.samples) a[s.name + "{" + CanonicalLabels(s.labels) + "}"] = s.value;
  for (const auto& s : got.samples) b[s.name + "{" + CanonicalLabels(s.labels) + "}"] = s.value;
  if (a.size() != want.samples.size() || b.size() != got.samples.size()) {
    return ::testing::AssertionFailure() << "duplicate samples";
  }
  std::ostringstream diff;
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end()) {
      diff << "missing " << k << " " << v << "\n";
    } else if (std::fabs(it->second - v) > 1e-9 * std::max(1.0, std::fabs(v))) {
      diff << "value " << k << ": want " << v << " got " << it->second << "\n";
    }
  }
  for (const auto& [k, v] : b) {
    if (!a.count(k)) diff << "unexpected " << k << " " << v << "\n";
  }
  if (!diff.str().empty()) return ::testing::AssertionFailure() << diff.str();
  return ::testing::AssertionSuccess();
}

}  // namespace infertap::testutil
