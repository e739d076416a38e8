#include "agent/cli/inspect/top_model.hpp"

#include <algorithm>
#include <cmath>
#include <map>

namespace infertap::cli {

std::optional<double> Percentile(std::vector<double>& values, double p) {
  if (values.empty()) return std::nullopt;
  // Rank ceil(p·n), 1-based. The epsilon keeps p·n that is integral in exact arithmetic (0.5·4)
  // from rounding up to the next rank through floating-point error.
  double rank = std::ceil(p * double(values.size()) - 1e-9);
  size_t index = size_t(std::clamp(rank, 1.0, double(values.size()))) - 1;
  std::nth_element(values.begin(), values.begin() + ptrdiff_t(index), values.end());
  return values[index];
}

void TopModel::StartWindow(double now_s) {
  samples_.clear();
  start_s_ = now_s;
  now_s_ = now_s;
}

void TopModel::AddRecord(const TopRecord& r, double arrival_s) {
  if (samples_.size() >= options_.max_samples) {
    samples_.pop_front();
    ++dropped_samples_;
  }
  samples_.push_back(Sample{arrival_s, r.pool, r.model_name, !r.error_code.empty(), r.duration_s,
                            r.ttft_s, r.input_tokens, r.output_tokens});
}

void TopModel::SetNow(double now_s) {
  now_s_ = now_s;
  while (!samples_.empty() && samples_.front().arrival_s < now_s - options_.window_s) {
    samples_.pop_front();
  }
}

std::optional<double> TopModel::effective_window_s() const {
  if (!start_s_) return std::nullopt;
  double w = std::min(options_.window_s, now_s_ - *start_s_);
  // Below a millisecond a rate is noise divided by nearly zero; show "-" instead.
  if (w < 1e-3) return std::nullopt;
  return w;
}

TopRow TopModel::Aggregate(const std::vector<const Sample*>& samples) const {
  TopRow row;
  row.records = int64_t(samples.size());
  std::optional<double> window = effective_window_s();
  if (window) row.req_per_s = double(samples.size()) / *window;
  if (samples.empty()) {
    // Nothing completed in the window: the token rates are known to be zero, the ratios and
    // percentiles are undefined.
    if (window) row.in_tok_per_s = row.out_tok_per_s = 0.0;
    return row;
  }
  std::vector<double> durations;
  std::vector<double> ttfts;
  int64_t errors = 0;
  std::optional<int64_t> in_tokens;
  std::optional<int64_t> out_tokens;
  durations.reserve(samples.size());
  for (const Sample* s : samples) {
    durations.push_back(s->duration_s);
    if (s->ttft_s) ttfts.push_back(*s->ttft_s);
    if (s->error) ++errors;
    // Records without usage add nothing; the sum is unknown only when no record had usage.
    if (s->input_tokens) in_tokens = in_tokens.value_or(0) + *s->input_tokens;
    if (s->output_tokens) out_tokens = out_tokens.value_or(0) + *s->output_tokens;
  }
  row.error_ratio = double(errors) / double(samples.size());
  row.p50_s = Percentile(durations, 0.5);
  row.p99_s = Percentile(durations, 0.99);
  row.ttft_p50_s = Percentile(ttfts, 0.5);
  if (window && in_tokens) row.in_tok_per_s = double(*in_tokens) / *window;
  if (window && out_tokens) row.out_tok_per_s = double(*out_tokens) / *window;
  return row;
}

std::vector<TopRow> TopModel::Rows() const {
  // pool → model → samples; std::map gives the name order.
  std::map<std::string, std::map<std::string, std::vector<const Sample*>>> groups;
  std::map<std::string, std::vector<const Sample*>> by_pool;
  for (const Sample& s : samples_) {
    groups[s.pool][s.model].push_back(&s);
    by_pool[s.pool].push_back(&s);
  }
  std::map<std::pair<std::string, std::string>, std::optional<int64_t>> in_flight;
  std::map<std::string, const PoolState*> pool_state;
  if (state_) {
    for (const PoolState& p : state_->pools) {
      pool_state[p.name] = &p;
      groups[p.name];
    }
    for (const ModelState& m : state_->models) {
      groups[m.pool][m.model_name];
      auto& slot = in_flight[{m.pool, m.model_name}];
      // The agent should list a (pool, model) once; if it does not, the counts add up.
      if (m.in_flight) slot = slot.value_or(0) + *m.in_flight;
    }
  }

  std::vector<TopRow> rows;
  for (const auto& [pool, models] : groups) {
    TopRow pool_row = Aggregate(by_pool[pool]);
    pool_row.is_pool = true;
    pool_row.pool = pool;
    if (auto it = pool_state.find(pool); it != pool_state.end()) {
      pool_row.queue = it->second->average_queue_size;
      pool_row.kv_utilization = it->second->average_kv_cache_utilization;
      pool_row.ready_pods = it->second->ready_pods;
    }
    std::vector<TopRow> model_rows;
    for (const auto& [model, samples] : models) {
      TopRow row = Aggregate(samples);
      row.pool = pool;
      row.model = model;
      if (auto it = in_flight.find({pool, model}); it != in_flight.end())
        row.in_flight = it->second;
      if (row.in_flight) pool_row.in_flight = pool_row.in_flight.value_or(0) + *row.in_flight;
      model_rows.push_back(std::move(row));
    }
    std::stable_sort(model_rows.begin(), model_rows.end(), [](const TopRow& a, const TopRow& b) {
      return a.req_per_s.value_or(0) > b.req_per_s.value_or(0);
    });
    rows.push_back(std::move(pool_row));
    for (TopRow& r : model_rows) rows.push_back(std::move(r));
  }
  return rows;
}

TopRow TopModel::Totals() const {
  std::vector<const Sample*> all;
  all.reserve(samples_.size());
  for (const Sample& s : samples_) all.push_back(&s);
  TopRow total = Aggregate(all);
  total.is_pool = true;
  if (state_) {
    for (const ModelState& m : state_->models) {
      if (m.in_flight) total.in_flight = total.in_flight.value_or(0) + *m.in_flight;
    }
    for (const PoolState& p : state_->pools) {
      if (p.ready_pods) total.ready_pods = total.ready_pods.value_or(0) + *p.ready_pods;
    }
  }
  return total;
}

}  // namespace infertap::cli
