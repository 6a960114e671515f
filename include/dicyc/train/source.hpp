// dicyc/train/source.hpp -- where a Trainer's batches come from.
//
// A BatchSource is started once, with the index of the first batch it must give (a run resumed
// at iteration i starts at batch i, so that batch i is the same whether the run was interrupted
// or not), the run's seed and this process's rank: every rank draws its own stream, rank 0's
// being the single-process one. Two sources come with the library:
// - SamplerSource: data::Sampler on two data::Domains (prepared volumes, or in-memory slices
//   given as a Domain), run ahead on its own thread by data::Loader: the foreground-aware random
//   crops and augmentation of dicyc-train;
// - ListSource: a fixed list of batches, taken in turn (tests, or data a caller prepared).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "dicyc/data/dataset.hpp"

namespace dicyc::train {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// Called once, before the first next().
  virtual void start(std::int64_t first_batch, std::uint64_t seed, int rank, int ranks) = 0;
  /// The next batch: a and b as (1, x, y[, z], N), x fastest. Throws when there is none (the
  /// Trainer saves what it has and stops every rank).
  virtual data::Batch next() = 0;
  /// Seconds the trainer spent waiting for batches (a source that keeps up: near 0).
  virtual double waited_seconds() const { return 0; }
};

/// The sampler's seed of a run's data stream on one rank (rank 0: the single-process stream).
inline std::uint64_t stream_seed(std::uint64_t seed, int rank) {
  std::uint64_t s = seed * 1000003ULL;
  if (rank > 0) s ^= static_cast<std::uint64_t>(rank) * 0xD1B54A32D192ED03ULL;
  return s;
}

/// data::Sampler behind a data::Loader thread. The options' seed and first_batch are set by
/// start() (stream_seed of the run's seed and the rank; the first batch).
class SamplerSource final : public BatchSource {
 public:
  SamplerSource(std::shared_ptr<const data::Domain> a, std::shared_ptr<const data::Domain> b, data::SamplerOptions o,
                std::size_t depth = 2)
      : a_(std::move(a)), b_(std::move(b)), o_(o), depth_(depth) {}
  /// The sampler start() would make (for checks: the trainer's crops are this sampler's).
  data::Sampler sampler(std::int64_t first_batch, std::uint64_t seed, int rank) const {
    data::SamplerOptions o = o_;
    o.seed = stream_seed(seed, rank);
    o.first_batch = first_batch;
    return data::Sampler(a_, b_, o);
  }
  void start(std::int64_t first_batch, std::uint64_t seed, int rank, int /*ranks*/) override {
    loader_ = std::make_unique<data::Loader>(sampler(first_batch, seed, rank), depth_);
  }
  data::Batch next() override {
    DICYC_CHECK(loader_ != nullptr, ConfigError, "SamplerSource: next() before start()");
    return loader_->next();
  }
  double waited_seconds() const override { return loader_ ? loader_->waited_seconds() : 0.0; }
  const data::SamplerOptions& options() const { return o_; }

 private:
  std::shared_ptr<const data::Domain> a_, b_;
  data::SamplerOptions o_;
  std::size_t depth_;
  std::unique_ptr<data::Loader> loader_;
};

/// A fixed list of batches: rank r of K gives list[(i * K + r) mod n] as batch i.
class ListSource final : public BatchSource {
 public:
  explicit ListSource(std::vector<data::Batch> list) : list_(std::move(list)) {
    DICYC_CHECK(!list_.empty(), ConfigError, "ListSource: no batches");
  }
  void start(std::int64_t first_batch, std::uint64_t /*seed*/, int rank, int ranks) override {
    next_ = first_batch * ranks + rank;
    stride_ = ranks;
  }
  data::Batch next() override {
    const auto n = static_cast<std::int64_t>(list_.size());
    const data::Batch& b = list_[static_cast<std::size_t>(next_ % n)];
    next_ += stride_;
    return b;
  }

 private:
  std::vector<data::Batch> list_;
  std::int64_t next_ = 0, stride_ = 1;
};

}  // namespace dicyc::train
