// dicyc/optim/schedule.hpp -- the learning-rate schedule and the early-stopping rule
// (dicyc-spec section 5).
//
// An epoch is `iterations_per_epoch` iterations (the paper: 6000). The rate is constant for
// `constant_epochs` epochs, then decays linearly: in the k-th decay epoch (k = 0, 1, ...) it is
// lr * (1 - k / decay_epochs), so it reaches 0 when the decay ends and training is done.
// Early stopping, on the mean total generator loss of each epoch:
//   * constant phase: no improvement for `patience_constant` (10) epochs -> jump to the decay;
//   * decay phase: no improvement for `patience_decay` (20) epochs -> stop.
// "Improvement" means a mean below the best so far by more than min_delta (relative to |best|).
// **[decision]** The best loss carries over into the decay phase; the counter restarts there.
// The whole state is plain numbers (state() / restore()) so a checkpoint resumes it exactly.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "dicyc/core/error.hpp"

namespace dicyc::optim {

class ScheduleOptions {
 public:
  ScheduleOptions& lr(double v) { lr_ = v; return *this; }
  ScheduleOptions& constant_epochs(std::int64_t v) { constant_ = v; return *this; }
  ScheduleOptions& decay_epochs(std::int64_t v) { decay_ = v; return *this; }
  ScheduleOptions& iterations_per_epoch(std::int64_t v) { ipe_ = v; return *this; }
  ScheduleOptions& early_stop(bool v) { early_ = v; return *this; }
  ScheduleOptions& patience_constant(std::int64_t v) { pc_ = v; return *this; }
  ScheduleOptions& patience_decay(std::int64_t v) { pd_ = v; return *this; }
  ScheduleOptions& min_delta(double v) { delta_ = v; return *this; }
  double lr() const { return lr_; }
  std::int64_t constant_epochs() const { return constant_; }
  std::int64_t decay_epochs() const { return decay_; }
  std::int64_t iterations_per_epoch() const { return ipe_; }
  bool early_stop() const { return early_; }
  std::int64_t patience_constant() const { return pc_; }
  std::int64_t patience_decay() const { return pd_; }
  double min_delta() const { return delta_; }

 private:
  double lr_ = 2e-4;
  std::int64_t constant_ = 100, decay_ = 100, ipe_ = 6000, pc_ = 10, pd_ = 20;
  bool early_ = true;
  double delta_ = 0.0;
};

enum class Phase : int { Constant = 0, Decay = 1, Done = 2 };

inline const char* phase_name(Phase p) {
  return p == Phase::Constant ? "constant" : p == Phase::Decay ? "decay" : "done";
}

class Schedule {
 public:
  /// Everything needed to resume.
  struct State {
    std::int64_t iteration = 0;        // iterations recorded in total
    std::int64_t epoch = 0;            // epochs completed
    std::int64_t epoch_in_phase = 0;   // epochs completed in the current phase
    Phase phase = Phase::Constant;
    double best = std::numeric_limits<double>::infinity();
    std::int64_t since_best = 0;       // epochs without improvement
    double epoch_sum = 0.0;            // loss sum of the running epoch
    std::int64_t epoch_count = 0;      // iterations in the running epoch
  };

  explicit Schedule(ScheduleOptions o = {}) : o_(o) {
    DICYC_CHECK(o.lr() >= 0 && std::isfinite(o.lr()) && o.constant_epochs() >= 0 && o.decay_epochs() >= 0 &&
                    o.iterations_per_epoch() > 0 && o.patience_constant() > 0 && o.patience_decay() > 0 &&
                    o.min_delta() >= 0,
                ConfigError,
                "Schedule: invalid options (lr " << o.lr() << ", constant " << o.constant_epochs() << " and decay "
                                                 << o.decay_epochs() << " epochs, " << o.iterations_per_epoch()
                                                 << " iterations per epoch, patience " << o.patience_constant() << "/"
                                                 << o.patience_decay() << ", min_delta " << o.min_delta() << ")");
    settle();
  }

  const ScheduleOptions& options() const { return o_; }
  Phase phase() const { return s_.phase; }
  bool done() const { return s_.phase == Phase::Done; }
  std::int64_t epoch() const { return s_.epoch; }
  std::int64_t iteration() const { return s_.iteration; }
  double best_loss() const { return s_.best; }

  /// The learning rate for the next iteration.
  double lr() const {
    switch (s_.phase) {
      case Phase::Constant: return o_.lr();
      case Phase::Decay:
        return o_.lr() * (1.0 - static_cast<double>(s_.epoch_in_phase) / static_cast<double>(o_.decay_epochs()));
      default: return 0.0;
    }
  }

  /// Records one iteration's total generator loss; returns true when it completed an epoch.
  bool record(double loss) {
    DICYC_CHECK(!done(), ConfigError, "Schedule: training is already done (epoch " << s_.epoch << ")");
    DICYC_CHECK(std::isfinite(loss), NumericError,
                "Schedule: non-finite generator loss " << loss << " at iteration " << s_.iteration);
    ++s_.iteration;
    s_.epoch_sum += loss;
    if (++s_.epoch_count < o_.iterations_per_epoch()) return false;
    end_epoch(s_.epoch_sum / static_cast<double>(s_.epoch_count));
    return true;
  }

  State state() const { return s_; }
  void restore(const State& s) {
    DICYC_CHECK(s.iteration >= 0 && s.epoch >= 0 && s.epoch_in_phase >= 0 && s.since_best >= 0 && s.epoch_count >= 0 &&
                    s.epoch_count < o_.iterations_per_epoch() && static_cast<int>(s.phase) >= 0 &&
                    static_cast<int>(s.phase) <= 2,
                ConfigError, "Schedule: inconsistent state to restore (epoch " << s.epoch << ", phase "
                                                                                << static_cast<int>(s.phase) << ")");
    s_ = s;
  }

 private:
  void end_epoch(double mean) {
    ++s_.epoch;
    ++s_.epoch_in_phase;
    s_.epoch_sum = 0.0;
    s_.epoch_count = 0;
    if (mean < s_.best - o_.min_delta() * std::abs(std::isfinite(s_.best) ? s_.best : 0.0) && mean < s_.best) {
      s_.best = mean;
      s_.since_best = 0;
    } else {
      ++s_.since_best;
    }
    if (s_.phase == Phase::Constant && o_.early_stop() && s_.since_best >= o_.patience_constant()) {
      enter(Phase::Decay);
    } else if (s_.phase == Phase::Decay && o_.early_stop() && s_.since_best >= o_.patience_decay()) {
      enter(Phase::Done);
    }
    settle();
  }
  void enter(Phase p) {
    s_.phase = p;
    s_.epoch_in_phase = 0;
    s_.since_best = 0;
  }
  /// Moves on from phases that are over by length (also when a phase has zero epochs).
  void settle() {
    if (s_.phase == Phase::Constant && s_.epoch_in_phase >= o_.constant_epochs()) enter(Phase::Decay);
    if (s_.phase == Phase::Decay && s_.epoch_in_phase >= o_.decay_epochs()) enter(Phase::Done);
  }

  ScheduleOptions o_;
  State s_;
};

}  // namespace dicyc::optim
