// dicyc/train/model_trainable.hpp -- a library model (model::ModelBase: any of the seven) as a
// train::Trainable, on any device: batches are mapped in place on the CPU in float, converted for
// other scalars and uploaded for the GPU. memory_need() probes a fresh model of the same options
// in a context of its own (CPU devices; on the GPU it gives no estimate).
#pragma once

#include <memory>
#include <type_traits>
#include <vector>

#include "dicyc/loss/common.hpp"
#include "dicyc/model.hpp"
#include "dicyc/train/trainer.hpp"

namespace dicyc::train {

template <int Dim, class S, class Device>
class ModelTrainable final : public Trainable {
 public:
  static constexpr int Rank = Dim + 2;
  using Model = model::ModelBase<Dim, S, Device>;
  using T = core::Tensor<S, Rank, Device>;

  ModelTrainable(core::Context<Device>& ctx, Model& m) : ctx_(ctx), m_(m) {}

  model::StepLosses train_step(const data::Batch& b) override {
    DICYC_CHECK(b.dim == Dim, ShapeError, m_.name() << ": a " << b.dim << "-D batch for a " << Dim << "-D model");
    const Shape<Rank> s = shape_of(b.crop, b.batch);
    const auto n = static_cast<std::size_t>(num_elements(s));
    DICYC_CHECK(b.a.size() == n && b.b.size() == n, ShapeError,
                m_.name() << ": batch of " << b.a.size() << " and " << b.b.size() << " values, its shape "
                          << shape_str(s) << " holds " << n);
    if constexpr (std::is_same_v<S, float> && !core::is_gpu_v<Device>) {
      return m_.train_step(ConstTensorMap<S, Rank>(b.a.data(), s), ConstTensorMap<S, Rank>(b.b.data(), s));
    } else {
      const T x = T::from_host(ctx_, s, convert(b.a)), y = T::from_host(ctx_, s, convert(b.b));
      return m_.train_step(x.cmap(), y.cmap());
    }
  }
  std::int64_t iteration() const override { return m_.iteration(); }
  std::int64_t epoch() const override { return m_.schedule().epoch(); }
  bool done() const override { return m_.done(); }
  std::int64_t total_iterations() const override {
    const auto& s = m_.options().schedule();
    return s.iterations_per_epoch() * (s.constant_epochs() + s.decay_epochs());
  }
  void save(const std::string& path, const std::map<std::string, std::string>& user) override { m_.save(path, user); }
  void load(const std::string& path) override { m_.load(path); }
  void load_file(const io::SafeTensorsFile& f) override { train::load_checkpoint(m_, f); }
  bool ranks_consistent() override { return m_.ranks_consistent(); }
  std::int64_t degenerate_samples() const override { return loss::degenerate_samples().load(); }
  std::string name() const override { return m_.name(); }

  bool memory_need(int dim, const std::array<Index, 3>& crop, Index batch, MemoryNeed* need) override {
    if constexpr (core::is_gpu_v<Device>) {
      return false;
    } else {
      DICYC_CHECK(dim == Dim, ConfigError, "memory_need: a " << dim << "-D crop for a " << Dim << "-D model");
      const auto& mo = m_.options();
      const ProbeFn probe = [&](bool train, const std::array<Index, 3>& ext, Index nb) {
        return static_cast<double>(probe_fresh(mo, train, shape_of(ext, nb)));
      };
      const double per = static_cast<double>(num_elements(shape_of(crop, 1)));
      const double step = estimate_bytes(probe, Dim, true, crop, batch, mo.n_layers()) -
                          static_cast<double>(ctx_.allocator().footprint_bytes());
      std::size_t params = 0;
      for (auto* g : m_.groups()) params += static_cast<std::size_t>(g->size());
      need->per_rank = step + 2.0 * static_cast<double>(std::max<Index>(0, mo.pool_size() - 1)) * per * sizeof(S);
      need->save = static_cast<double>(sizeof(S) * 3 * params) + 2.0 * static_cast<double>(mo.pool_size()) * per * sizeof(S);
      return true;
    }
  }

  /// The context footprint of one step (train) or translation of shape s in a fresh model.
  std::size_t probe_fresh(const model::ModelOptions& mo, bool train, const Shape<Rank>& s) const {
    auto ctx = make_context();
    {
      auto m = model::make_model<Dim, S, Device>(*ctx, mo);
      const auto n = static_cast<std::size_t>(num_elements(s));
      core::Rng rng(12345);
      std::vector<S> x(n), y(n);
      for (std::size_t i = 0; i < n; ++i) {
        x[i] = S(static_cast<float>(rng.uniform(-1, 1)));
        y[i] = S(static_cast<float>(rng.uniform(-1, 1)));
      }
      const T xd = T::from_host(*ctx, s, x), yd = T::from_host(*ctx, s, y);
      if (train) {
        (void)m->train_step(xd.cmap(), yd.cmap());
      } else {
        T out(*ctx, s);
        auto om = out.map();
        m->translate_ab(xd.cmap(), om);
      }
      ctx->synchronize();
    }
    return ctx->allocator().footprint_bytes();
  }

 private:
  static Shape<Rank> shape_of(const std::array<Index, 3>& crop, Index n) {
    Shape<Rank> s;
    s[0] = 1;
    for (int d = 0; d < Dim; ++d) s[d + 1] = crop[d];
    s[Rank - 1] = n;
    return s;
  }
  static std::vector<S> convert(const std::vector<float>& v) {
    if constexpr (std::is_same_v<S, float>) return v;
    std::vector<S> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r[i] = S(v[i]);
    return r;
  }
  std::unique_ptr<core::Context<Device>> make_context() const {
    if constexpr (std::is_same_v<Device, Eigen::DefaultDevice>) return std::make_unique<core::Context<Device>>();
    else return std::make_unique<core::Context<Device>>(ctx_.num_threads());
  }

  core::Context<Device>& ctx_;
  Model& m_;
};

}  // namespace dicyc::train
