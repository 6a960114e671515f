// HostModel on a dicyc device: the CPU thread pool (included by the g++ tool translation units)
// or Eigen::GpuDevice (included by tools_gpu_*.cu under nvcc).
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "dicyc/model.hpp"
#include "host_model.hpp"

namespace tools {

/// dicyc-train --precision bf16: every context the tool makes (the model's, the memory probe's)
/// runs its convolutions in bf16 where that measured faster (ops::detail::dnnl_conv_bf16).
inline bool& conv_bf16_requested() {
  static bool on = false;
  return on;
}

/// DICYC_WINOGRAD=0 / DICYC_COL2IM=0 / DICYC_THIN_DIRECT=0 / DICYC_WEIGHT_REUSE=0 in the environment switch those convolution paths off in the
/// tools' contexts (ops::plan_conv reads the context's settings), for comparison.
inline void apply_env_switches(dicyc::core::ContextSettings& s) {
  auto on = [](const char* n) {
    const char* e = std::getenv(n);
    return !(e && std::string(e) == "0");
  };
  s.set_winograd(on("DICYC_WINOGRAD"));
  s.set_col2im(on("DICYC_COL2IM"));
  s.set_thin_direct(on("DICYC_THIN_DIRECT"));
  s.set_reuse_weight_layouts(on("DICYC_WEIGHT_REUSE"));
  if (const char* e = std::getenv("DICYC_DNNL_CONV")) s.set_dnnl_conv(dicyc::core::parse_dnnl_conv_mode(e));
  s.set_conv_bf16(conv_bf16_requested() ||
                  (std::getenv("DICYC_CONV_BF16") && std::string(std::getenv("DICYC_CONV_BF16")) == "1"));
}

/// The CPU pool's spinning for this model (model::pool_spinning_pays), unless DICYC_POOL_SPIN=0
/// or 1 in the environment says; other devices have no pool.
template <class Device>
void apply_pool_spinning(dicyc::core::Context<Device>&, const dicyc::model::ModelOptions&) {}
#if defined(EIGEN_USE_THREADS)
inline void apply_pool_spinning(dicyc::core::Context<Eigen::ThreadPoolDevice>& c, const dicyc::model::ModelOptions& mo) {
  bool on = dicyc::model::pool_spinning_pays(mo, c.conv_bf16());
  if (const char* e = std::getenv("DICYC_POOL_SPIN")) on = std::string(e) != "0";
  c.set_pool_spinning(on);
}
#endif

template <int Dim, class S, class Device>
class DeviceModel final : public HostModel<Dim, S> {
 public:
  static constexpr int Rank = Dim + 2;
  using typename HostModel<Dim, S>::Shape;
  using T = dicyc::core::Tensor<S, Rank, Device>;

  /// CPU: `arg` is the thread count; GPU: the device index.
  DeviceModel(const dicyc::model::ModelOptions& mo, int arg)
      : arg_(arg), mo_(mo), ctx_(std::make_unique<dicyc::core::Context<Device>>(arg)),
        m_(dicyc::model::make_model<Dim, S, Device>(*ctx_, mo)) {
    apply_env_switches(*ctx_);
    apply_pool_spinning(*ctx_, mo_);
  }

  std::size_t probe_memory(bool train, const Shape& s) const override { return probe_fresh(mo_, arg_, train, s); }
  /// probe_memory() without a model of one's own (the tools probe before they build theirs).
  static std::size_t probe_fresh(const dicyc::model::ModelOptions& mo, int arg, bool train, const Shape& s) {
    dicyc::core::Context<Device> ctx(arg);
    apply_env_switches(ctx);
    apply_pool_spinning(ctx, mo);
    {
      auto m = dicyc::model::make_model<Dim, S, Device>(ctx, mo);
      const auto sh = shape(s);
      const auto n = static_cast<std::size_t>(dicyc::num_elements(sh));
      dicyc::core::Rng rng(12345);
      std::vector<S> x(n), y(n);
      for (std::size_t i = 0; i < n; ++i) {
        x[i] = S(static_cast<float>(rng.uniform(-1, 1)));
        y[i] = S(static_cast<float>(rng.uniform(-1, 1)));
      }
      const T xd = T::from_host(ctx, sh, x), yd = T::from_host(ctx, sh, y);
      if (train) {
        (void)m->train_step(xd.cmap(), yd.cmap());
      } else {
        T out(ctx, sh);
        auto om = out.map();
        m->translate_ab(xd.cmap(), om);
      }
      ctx.synchronize();
    }
    return ctx.allocator().footprint_bytes();
  }

  dicyc::model::StepLosses train_step(const S* x, const S* y, const Shape& s, std::string* numeric_error) override {
    try {
      if constexpr (dicyc::core::is_gpu_v<Device>) {
        const T xd = upload(x, s), yd = upload(y, s);
        return m_->train_step(xd.cmap(), yd.cmap());
      } else {
        return m_->train_step(dicyc::ConstTensorMap<S, Rank>(x, shape(s)), dicyc::ConstTensorMap<S, Rank>(y, shape(s)));
      }
    } catch (const dicyc::NumericError& e) {
      *numeric_error = e.what();
      return {};
    }
  }

  void translate(bool ab, const S* x, S* y, const Shape& s) override {
    if constexpr (dicyc::core::is_gpu_v<Device>) {
      const T xd = upload(x, s);
      T yd(*ctx_, shape(s));
      auto ym = yd.map();
      if (ab) m_->translate_ab(xd.cmap(), ym);
      else m_->translate_ba(xd.cmap(), ym);
      download(yd, y);
    } else {
      dicyc::TensorMap<S, Rank> ym(y, shape(s));
      const dicyc::ConstTensorMap<S, Rank> xm(x, shape(s));
      if (ab) m_->translate_ab(xm, ym);
      else m_->translate_ba(xm, ym);
    }
  }

  bool deform(bool ab, const S* x, const S* other, S* y, const Shape& s) override {
    auto* d = dynamic_cast<dicyc::model::DiCyc<Dim, S, Device>*>(m_.get());
    if (!d) return false;
    auto run = [&](const auto& xm, const auto& om, auto& ym) {
      if (ab) d->deform_ab(xm, om, ym);
      else d->deform_ba(xm, om, ym);
    };
    if constexpr (dicyc::core::is_gpu_v<Device>) {
      const T xd = upload(x, s), od = upload(other, s);
      T yd(*ctx_, shape(s));
      auto ym = yd.map();
      run(xd.cmap(), od.cmap(), ym);
      download(yd, y);
    } else {
      dicyc::TensorMap<S, Rank> ym(y, shape(s));
      run(dicyc::ConstTensorMap<S, Rank>(x, shape(s)), dicyc::ConstTensorMap<S, Rank>(other, shape(s)), ym);
    }
    return true;
  }

  std::vector<unsigned char> state(const std::map<std::string, std::string>& extra) override {
    return dicyc::train::checkpoint_image(*m_, extra);
  }
  void restore(std::vector<unsigned char> image, const std::string& label) override {
    dicyc::train::load_checkpoint_image(*m_, std::move(image), label);
  }
  void load_weights(const std::string& path) override { (void)m_->load_weights(path); }
  void set_communicator(dicyc::dist::Communicator& c) override { m_->set_communicator(c); }
  bool ranks_consistent() override { return m_->ranks_consistent(); }
  std::int64_t iteration() const override { return m_->iteration(); }
  std::int64_t epoch() const override { return m_->schedule().epoch(); }
  bool done() const override { return m_->done(); }
  std::size_t checkpoint_bytes(const Shape& s) const override {
    std::size_t params = 0;
    for (const auto* g : m_->groups()) params += static_cast<std::size_t>(g->size());
    auto one = shape(s);
    one[Rank - 1] = 1;
    const auto image = static_cast<std::size_t>(dicyc::num_elements(one));
    return 2 * sizeof(S) * (3 * params + 2 * static_cast<std::size_t>(mo_.pool_size()) * image);
  }
  std::size_t footprint_bytes() const override { return ctx_->allocator().footprint_bytes(); }
  std::int64_t degenerate_samples() const override {
    return dicyc::loss::degenerate_samples().load() - degenerate_at_start_;
  }
  std::string device_name() const override { return ctx_->name(); }

 private:
  static dicyc::Shape<Rank> shape(const Shape& s) {
    dicyc::Shape<Rank> r;
    for (int i = 0; i < Rank; ++i) r[i] = static_cast<dicyc::Index>(s[i]);
    return r;
  }
  T upload(const S* p, const Shape& s) const {
    const auto sh = shape(s);
    return T::from_host(*ctx_, sh, std::vector<S>(p, p + dicyc::num_elements(sh)));
  }
  static void download(const T& t, S* dst) {
    const auto h = t.to_host();
    std::copy(h.begin(), h.end(), dst);
  }

  int arg_;
  dicyc::model::ModelOptions mo_;
  std::unique_ptr<dicyc::core::Context<Device>> ctx_;
  std::unique_ptr<dicyc::model::ModelBase<Dim, S, Device>> m_;
  std::int64_t degenerate_at_start_ = dicyc::loss::degenerate_samples().load();
};

}  // namespace tools
