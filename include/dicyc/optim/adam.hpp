// dicyc/optim/adam.hpp -- Adam with PyTorch's semantics, one optimiser per parameter group.
//
// For step t (counted from 1), on the group's flat value and gradient buffers:
//   m = b1 m + (1 - b1) g
//   v = b2 v + (1 - b2) g^2
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// which is torch.optim.Adam (weight_decay 0, amsgrad off) term for term: the bias corrections are
// computed in double on the host, the element-wise update in the scalar's accumulation type (float
// for half), so float results match PyTorch to rounding. Optional weight decay is the L2 form
// (g += wd p), as torch.optim.Adam's. The moments live on the group's device in acc_t<S>.
// A frozen group (requires_grad false) is never stepped: step() refuses it rather than apply
// stale gradients. The state (t, m, v) is exposed for checkpoints.
#pragma once

#include <cmath>
#include <string>

#include "dicyc/nn/parameter.hpp"

namespace dicyc::optim {

class AdamOptions {
 public:
  AdamOptions& lr(double v) { lr_ = v; return *this; }
  AdamOptions& betas(double b1, double b2) { b1_ = b1; b2_ = b2; return *this; }
  AdamOptions& eps(double v) { eps_ = v; return *this; }
  AdamOptions& weight_decay(double v) { wd_ = v; return *this; }
  double lr() const { return lr_; }
  double beta1() const { return b1_; }
  double beta2() const { return b2_; }
  double eps() const { return eps_; }
  double weight_decay() const { return wd_; }

 private:
  double lr_ = 2e-4, b1_ = 0.5, b2_ = 0.999, eps_ = 1e-8, wd_ = 0.0;
};

template <class S, class Device>
class Adam {
 public:
  using A = acc_t<S>;
  Adam(core::Context<Device>& ctx, nn::ParameterGroup<S, Device>& group, AdamOptions o = {})
      : group_(&group), opts_(o), m_(ctx, std::max<Index>(group.size(), 1)), v_(ctx, std::max<Index>(group.size(), 1)) {
    DICYC_CHECK(group.allocated(), ConfigError, "Adam: parameter group '" << group.name() << "' is not allocated yet");
    DICYC_CHECK(o.lr() >= 0 && o.beta1() >= 0 && o.beta1() < 1 && o.beta2() >= 0 && o.beta2() < 1 && o.eps() >= 0 &&
                    o.weight_decay() >= 0,
                ConfigError,
                "Adam: invalid options (lr " << o.lr() << ", betas (" << o.beta1() << ", " << o.beta2() << "), eps "
                                             << o.eps() << ", weight decay " << o.weight_decay() << ")");
    m_.set_zero();
    v_.set_zero();
  }

  const AdamOptions& options() const { return opts_; }
  void set_lr(double lr) {
    DICYC_CHECK(lr >= 0 && std::isfinite(lr), ConfigError, "Adam: learning rate must be finite and >= 0, got " << lr);
    opts_.lr(lr);
  }
  double lr() const { return opts_.lr(); }
  std::int64_t steps() const { return t_; }
  nn::ParameterGroup<S, Device>& group() { return *group_; }

  /// One update from the group's accumulated gradients (which the caller zeroes between steps).
  void step(core::Context<Device>& ctx) {
    DICYC_CHECK(group_->requires_grad(), ConfigError,
                "Adam: parameter group '" << group_->name() << "' is frozen (requires_grad false); unfreeze it before stepping");
    const Index n = group_->size();
    if (n == 0) return;
    ++t_;
    const double b1 = opts_.beta1(), b2 = opts_.beta2();
    const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t_));
    const double bc2s = std::sqrt(1.0 - std::pow(b2, static_cast<double>(t_)));
    const A step_size = A(opts_.lr() / bc1), bc2s_a = A(bc2s), eps = A(opts_.eps());
    TensorMap<S, 1> p(group_->values(), n);
    ConstTensorMap<S, 1> graw(group_->grads(), n);
    TensorMap<A, 1> m(m_.data(), n), v(v_.data(), n);
    auto& d = ctx.device();
    const A c1 = A(1.0 - b1), c2 = A(1.0 - b2), wd = A(opts_.weight_decay());
    if (opts_.weight_decay() > 0) {
      auto g = graw.template cast<A>() + p.template cast<A>() * wd;
      m.device(d) = m * A(b1) + g * c1;
      v.device(d) = v * A(b2) + g * g * c2;
    } else {
      auto g = graw.template cast<A>();
      m.device(d) = m * A(b1) + g * c1;
      v.device(d) = v * A(b2) + g * g * c2;
    }
    // PyTorch: denom = sqrt(v) / sqrt(bc2) + eps; p += (-step_size * m) / denom.
    p.device(d) = (p.template cast<A>() + (m * (-step_size)) / (v.sqrt() / bc2s_a + eps)).template cast<S>();
  }

  // ----------------------------------------------------------------------------- state
  A* exp_avg() { return m_.data(); }
  A* exp_avg_sq() { return v_.data(); }
  const A* exp_avg() const { return m_.data(); }
  const A* exp_avg_sq() const { return v_.data(); }
  void set_steps(std::int64_t t) {
    DICYC_CHECK(t >= 0, ConfigError, "Adam: step count must be >= 0, got " << t);
    t_ = t;
  }

 private:
  nn::ParameterGroup<S, Device>* group_;
  AdamOptions opts_;
  core::Buffer<A, Device> m_, v_;
  std::int64_t t_ = 0;
};

}  // namespace dicyc::optim
