// dicyc/loss/gan.hpp -- least-squares GAN losses and the L1 (mean absolute error) loss.
//
//   lsgan(p, target)            = mean((p - target)^2)                 d/dp = 2 (p - target) / n
//   lsgan_discriminator(r, f)   = 0.5 [mean((r - 1)^2) + mean(f^2)]    (r: D on real, f: D on fake)
//   lsgan_generator(f)          = mean((f - 1)^2)
//   l1(a, b)                    = mean(|a - b|)                        d/da = sign(a - b) / n = -d/db
// The L1 subgradient at a == b is 0 (sign(0) = 0), as PyTorch's l1_loss.
// Any rank; every device (these are plain Eigen expressions); half is accumulated in float.
// With a mask, the means run over the masked elements only.
#pragma once

#include "dicyc/loss/common.hpp"
#include "dicyc/ops/reduce.hpp"

namespace dicyc::loss {

namespace detail {
// NOTE(eigen): the mask indicator is |m|.sign() (1 where m != 0), used as a factor. With
// -march=native on this AVX-512 machine, Eigen 3.4 evaluated (m != 0).select(1, 0).sum() over a
// 4-element TensorMap<double> to 4 instead of 2 (a vectorised select bug), so no select here.
template <class S, int R>
auto indicator(const ConstTensorMap<S, R>& m) {
  return m.template cast<acc_t<S>>().abs().sign();
}

template <class S, int R, class Device>
acc_t<S> mask_count(core::Context<Device>& ctx, const char* op, MaskPtr<S, R> mask, Index n) {
  if (!mask) return acc_t<S>(n);
  using A = acc_t<S>;
  const auto& m = *mask;
  const A cnt = ops::detail::reduce_to_host<S, R>(ctx, indicator<S, R>(m).sum());
  DICYC_CHECK(cnt > 0, ShapeError, op << ": the mask is empty (no non-zero element in " << shape_str(m.dimensions())
                                      << ")");
  return cnt;
}
}  // namespace detail

/// mean((p - target)^2), over the mask when given; gradient into grad.a.
template <class S, int R, class Device>
acc_t<S> lsgan(core::Context<Device>& ctx, const ConstTensorMap<S, R>& p, double target,
               nondeduced_t<GradTo<S, R>> grad = {}, nondeduced_t<MaskPtr<S, R>> mask = nullptr) {
  using A = acc_t<S>;
  DICYC_CHECK(num_elements(p.dimensions()) > 0, ShapeError, "lsgan: empty input of shape " << shape_str(p.dimensions()));
  DICYC_CHECK(grad.b == nullptr, ConfigError, "lsgan: has one input; its gradient goes to grad.a");
  detail::check_grad_mask<S, R>("lsgan", p.dimensions(), grad, mask);
  const A cnt = detail::mask_count<S, R>(ctx, "lsgan", mask, p.size());
  auto diff = p.template cast<A>() - A(target);
  A value;
  if (mask) {
    auto in = detail::indicator<S, R>(*mask);
    value = ops::detail::reduce_to_host<S, R>(ctx, (in * diff.square()).sum()) / cnt;
    if (grad.a)
      grad.a->device(ctx.device()) =
          (grad.a->template cast<A>() + in * diff * A(2 * grad.weight / cnt)).template cast<S>();
  } else {
    value = ops::detail::reduce_to_host<S, R>(ctx, diff.square().sum()) / cnt;
    if (grad.a)
      grad.a->device(ctx.device()) =
          (grad.a->template cast<A>() + diff * A(2 * grad.weight / cnt)).template cast<S>();
  }
  return value;
}

/// The generator's least-squares loss on the discriminator's output for a fake: mean((f - 1)^2).
template <class S, int R, class Device>
acc_t<S> lsgan_generator(core::Context<Device>& ctx, const ConstTensorMap<S, R>& fake_pred,
                         nondeduced_t<GradTo<S, R>> grad = {}) {
  return lsgan<S, R>(ctx, fake_pred, 1.0, grad);
}

/// The discriminator's least-squares loss 0.5 [mean((real - 1)^2) + mean(fake^2)]; grad.a receives
/// the gradient for the real predictions and grad.b for the fake ones. The two maps may differ in
/// shape (for instance different batch sizes).
template <class S, int R, class Device>
acc_t<S> lsgan_discriminator(core::Context<Device>& ctx, const ConstTensorMap<S, R>& real_pred,
                             const ConstTensorMap<S, R>& fake_pred, nondeduced_t<GradTo<S, R>> grad = {}) {
  GradTo<S, R> gr{grad.a, nullptr, 0.5 * grad.weight}, gf{grad.b, nullptr, 0.5 * grad.weight};
  return acc_t<S>(0.5) * (lsgan<S, R>(ctx, real_pred, 1.0, gr) + lsgan<S, R>(ctx, fake_pred, 0.0, gf));
}

/// mean(|a - b|), over the mask when given; gradients into grad.a and grad.b.
template <class S, int R, class Device>
acc_t<S> l1(core::Context<Device>& ctx, const ConstTensorMap<S, R>& a, const ConstTensorMap<S, R>& b,
            nondeduced_t<GradTo<S, R>> grad = {}, nondeduced_t<MaskPtr<S, R>> mask = nullptr) {
  using A = acc_t<S>;
  detail::check_pair<S, R>("l1", a.dimensions(), b.dimensions());
  detail::check_grad_mask<S, R>("l1", a.dimensions(), grad, mask);
  const A cnt = detail::mask_count<S, R>(ctx, "l1", mask, a.size());
  auto diff = a.template cast<A>() - b.template cast<A>();
  const A w = A(grad.weight / cnt);
  auto accumulate = [&](TensorMap<S, R>* g, A sgn, const auto& step) {
    if (g) g->device(ctx.device()) = (g->template cast<A>() + step * sgn).template cast<S>();
  };
  if (mask) {
    auto in = detail::indicator<S, R>(*mask);
    const A value = ops::detail::reduce_to_host<S, R>(ctx, (in * diff.abs()).sum()) / cnt;
    auto step = in * diff.sign() * w;
    accumulate(grad.a, A(1), step);
    accumulate(grad.b, A(-1), step);
    return value;
  }
  const A value = ops::detail::reduce_to_host<S, R>(ctx, diff.abs().sum()) / cnt;
  auto step = diff.sign() * w;
  accumulate(grad.a, A(1), step);
  accumulate(grad.b, A(-1), step);
  return value;
}

}  // namespace dicyc::loss
