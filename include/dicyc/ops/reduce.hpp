// dicyc/ops/reduce.hpp -- the scalar reductions the losses need, with their backward.
//
//   mean(x)            = sum(x) / n           dx += g / n
//   sum_squares(x)     = sum(x^2)             dx += 2 g x
//   sum_abs(x)         = sum(|x|)             dx += g sign(x), with sign(0) = 0 (the subgradient
//                                             PyTorch's L1 uses)
// Values are computed in the accumulation type (float for half; double for double) and returned
// on the host: the result is copied back from the device, which synchronises a GPU context.
#pragma once

#include "dicyc/ops/activation.hpp"

namespace dicyc::ops {

namespace detail {
template <class S, int R, class Device, class Expr>
acc_t<S> reduce_to_host(core::Context<Device>& ctx, const Expr& e) {
  using A = acc_t<S>;
  core::Buffer<A, Device> out(ctx, 1);
  TensorMap<A, 0> o(out.data());
  o.device(ctx.device()) = e;
  A h{};
  out.copy_to_host(&h, 1);
  return h;
}
template <class S, int R>
void check_nonempty(const char* op, const Shape<R>& s) {
  DICYC_CHECK(num_elements(s) > 0, ShapeError, op << ": empty input of shape " << shape_str(s));
}
}  // namespace detail

template <class S, int R, class Device>
acc_t<S> mean(core::Context<Device>& ctx, const ConstTensorMap<S, R>& x) {
  detail::check_nonempty<S, R>("mean", x.dimensions());
  return detail::reduce_to_host<S, R>(ctx, x.template cast<acc_t<S>>().mean());
}
template <class S, int R, class Device>
void mean_backward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& x, acc_t<S> g, TensorMap<S, R>& dx) {
  detail::check_nonempty<S, R>("mean", x.dimensions());
  detail::check_same_shape<S, R>("mean", x.dimensions(), dx.dimensions(), "input gradient");
  const acc_t<S> v = g / static_cast<acc_t<S>>(x.size());
  dx.device(ctx.device()) = (dx.template cast<acc_t<S>>() + v).template cast<S>();
}

template <class S, int R, class Device>
acc_t<S> sum_squares(core::Context<Device>& ctx, const ConstTensorMap<S, R>& x) {
  return detail::reduce_to_host<S, R>(ctx, x.template cast<acc_t<S>>().square().sum());
}
template <class S, int R, class Device>
void sum_squares_backward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& x, acc_t<S> g,
                          TensorMap<S, R>& dx) {
  detail::check_same_shape<S, R>("sum_squares", x.dimensions(), dx.dimensions(), "input gradient");
  using A = acc_t<S>;
  dx.device(ctx.device()) = (dx.template cast<A>() + x.template cast<A>() * A(2 * g)).template cast<S>();
}

template <class S, int R, class Device>
acc_t<S> sum_abs(core::Context<Device>& ctx, const ConstTensorMap<S, R>& x) {
  return detail::reduce_to_host<S, R>(ctx, x.template cast<acc_t<S>>().abs().sum());
}
template <class S, int R, class Device>
void sum_abs_backward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& x, acc_t<S> g, TensorMap<S, R>& dx) {
  detail::check_same_shape<S, R>("sum_abs", x.dimensions(), dx.dimensions(), "input gradient");
  using A = acc_t<S>;
  auto xa = x.template cast<A>();
  dx.device(ctx.device()) = (dx.template cast<A>() + xa.sign() * A(g)).template cast<S>();
}

}  // namespace dicyc::ops
