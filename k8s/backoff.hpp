// Exponential backoff with jitter for API retries (docs/kubernetes.md): never a tight loop.
//
// Delay n (n = failures so far, from 0) is min(cap, initial * 2^n) scaled by a random factor in
// [1 - jitter, 1], so a fleet of agents that lost the API server at one moment does not come
// back in lockstep, and no delay exceeds the cap. Reset() after a success.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace infertap::k8s {

class Backoff {
 public:
  using ms = std::chrono::milliseconds;
  explicit Backoff(ms initial = ms(500), ms cap = ms(30000), double jitter = 0.25,
                   uint64_t seed = std::random_device{}())
      : initial_(initial), cap_(cap), jitter_(jitter), rng_(seed) {}

  ms Next() {
    double base = static_cast<double>(initial_.count());
    for (int i = 0; i < failures_ && base < static_cast<double>(cap_.count()); ++i) base *= 2;
    base = std::min(base, static_cast<double>(cap_.count()));
    ++failures_;
    std::uniform_real_distribution<double> u(1.0 - jitter_, 1.0);
    return ms(static_cast<int64_t>(base * u(rng_)));
  }
  void Reset() { failures_ = 0; }
  int failures() const { return failures_; }

 private:
  ms initial_, cap_;
  double jitter_;
  std::mt19937_64 rng_;
  int failures_ = 0;
};

}  // namespace infertap::k8s
