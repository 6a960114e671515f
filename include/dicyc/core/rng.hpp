// dicyc/core/rng.hpp -- a deterministic, seeded random number generator.
//
// xoshiro256** seeded through SplitMix64, with our own uniform and normal transforms (the
// standard library's distributions differ between implementations). The same seed gives the same
// stream on every platform and compiler; the state can be saved and restored (checkpoints).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "dicyc/core/types.hpp"

namespace dicyc::core {

class Rng {
 public:
  using State = std::array<std::uint64_t, 4>;

  explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

  void reseed(std::uint64_t seed) {
    std::uint64_t z = seed;
    for (auto& s : s_) s = splitmix(z);
  }

  /// Raw 64 random bits.
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform in [0, 1), 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  /// Uniform integer in [0, n), without modulo bias.
  std::uint64_t uniform_int(std::uint64_t n) {
    DICYC_CHECK(n > 0, ConfigError, "Rng::uniform_int: n must be positive");
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t r;
    do {
      r = next();
    } while (r >= limit);
    return r % n;
  }

  /// Standard normal by the Box-Muller transform (both values used).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1;
    do {
      u1 = uniform();
    } while (u1 <= 0.0);
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double th = 6.283185307179586476925286766559 * u2;
    spare_ = r * std::sin(th);
    has_spare_ = true;
    return r * std::cos(th);
  }
  double normal(double mean, double stddev) { return mean + stddev * normal(); }

  bool bernoulli(double p) { return uniform() < p; }

  /// Full state, for checkpoints: the four words, the spare normal and its flag.
  struct Snapshot {
    State s;
    double spare;
    bool has_spare;
  };
  Snapshot snapshot() const { return {s_, spare_, has_spare_}; }
  void restore(const Snapshot& snap) {
    s_ = snap.s;
    spare_ = snap.spare;
    has_spare_ = snap.has_spare;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix(std::uint64_t& z) {
    std::uint64_t r = (z += 0x9e3779b97f4a7c15ULL);
    r = (r ^ (r >> 30)) * 0xbf58476d1ce4e5b9ULL;
    r = (r ^ (r >> 27)) * 0x94d049bb133111ebULL;
    return r ^ (r >> 31);
  }
  State s_{};
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace dicyc::core
