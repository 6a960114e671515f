// dicyc/ops/activation.hpp -- elementwise activations and add, forward and backward.
//
// Contract: any rank; y and x have the same shape. Backward ACCUMULATES into dx (or, with
// overwrite, writes it without reading it: a fresh buffer needs no zeroing) and is written in
// terms of the output y where that suffices (ReLU, LeakyReLU with a positive slope, Tanh), so a
// cache needs to keep only y:
//   relu:        dx += dy * (y > 0)            (subgradient 0 at 0, as PyTorch)
//   leaky_relu:  dx += dy * (y > 0 ? 1 : slope)
//   tanh:        dx += dy * (1 - y^2)
//   add:         y = a + b;  da += dy, db += dy
#pragma once

#include "dicyc/core/buffer.hpp"

namespace dicyc::ops {

namespace detail {
template <class S, int R>
void check_same_shape(const char* op, const Shape<R>& a, const Shape<R>& b, const char* what) {
  DICYC_CHECK(a == b, ShapeError,
              op << ": expected " << what << " of shape " << shape_str(a) << ", but got " << shape_str(b) << " instead");
}
}  // namespace detail

template <class S, int R, class Device>
void relu_forward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& x, TensorMap<S, R>& y) {
  detail::check_same_shape<S, R>("relu", x.dimensions(), y.dimensions(), "output");
  y.device(ctx.device()) = x.cwiseMax(S(0));
}
template <class S, int R, class Device>
void relu_backward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& y, const ConstTensorMap<S, R>& dy,
                   TensorMap<S, R>& dx, bool overwrite = false) {
  detail::check_same_shape<S, R>("relu", y.dimensions(), dy.dimensions(), "output gradient");
  detail::check_same_shape<S, R>("relu", y.dimensions(), dx.dimensions(), "input gradient");
  if (overwrite)
    dx.device(ctx.device()) = (y > y.constant(S(0))).select(dy, dy.constant(S(0)));
  else
    dx.device(ctx.device()) = dx + (y > y.constant(S(0))).select(dy, dy.constant(S(0)));
}

template <class S, int R, class Device>
void leaky_relu_forward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& x, TensorMap<S, R>& y,
                        double slope = 0.2) {
  detail::check_same_shape<S, R>("leaky_relu", x.dimensions(), y.dimensions(), "output");
  DICYC_CHECK(slope > 0, ConfigError, "leaky_relu: slope must be positive (backward uses the output), got " << slope);
  y.device(ctx.device()) = (x > x.constant(S(0))).select(x, x * S(slope));
}
template <class S, int R, class Device>
void leaky_relu_backward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& y, const ConstTensorMap<S, R>& dy,
                         TensorMap<S, R>& dx, double slope = 0.2, bool overwrite = false) {
  detail::check_same_shape<S, R>("leaky_relu", y.dimensions(), dy.dimensions(), "output gradient");
  detail::check_same_shape<S, R>("leaky_relu", y.dimensions(), dx.dimensions(), "input gradient");
  if (overwrite)
    dx.device(ctx.device()) = (y > y.constant(S(0))).select(dy, dy * S(slope));
  else
    dx.device(ctx.device()) = dx + (y > y.constant(S(0))).select(dy, dy * S(slope));
}

template <class S, int R, class Device>
void tanh_forward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& x, TensorMap<S, R>& y) {
  detail::check_same_shape<S, R>("tanh", x.dimensions(), y.dimensions(), "output");
  y.device(ctx.device()) = x.template cast<acc_t<S>>().tanh().template cast<S>();
}
template <class S, int R, class Device>
void tanh_backward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& y, const ConstTensorMap<S, R>& dy,
                   TensorMap<S, R>& dx, bool overwrite = false) {
  detail::check_same_shape<S, R>("tanh", y.dimensions(), dy.dimensions(), "output gradient");
  detail::check_same_shape<S, R>("tanh", y.dimensions(), dx.dimensions(), "input gradient");
  using A = acc_t<S>;
  auto ya = y.template cast<A>();
  if (overwrite)
    dx.device(ctx.device()) = (dy.template cast<A>() * (ya.constant(A(1)) - ya * ya)).template cast<S>();
  else
    dx.device(ctx.device()) =
        (dx.template cast<A>() + dy.template cast<A>() * (ya.constant(A(1)) - ya * ya)).template cast<S>();
}

template <class S, int R, class Device>
void add_forward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& a, const ConstTensorMap<S, R>& b,
                 TensorMap<S, R>& y) {
  detail::check_same_shape<S, R>("add", a.dimensions(), b.dimensions(), "second operand");
  detail::check_same_shape<S, R>("add", a.dimensions(), y.dimensions(), "output");
  y.device(ctx.device()) = a + b;
}
/// da += dy and db += dy; either may be null.
template <class S, int R, class Device>
void add_backward(core::Context<Device>& ctx, const ConstTensorMap<S, R>& dy, nondeduced_t<TensorMap<S, R>>* da,
                  nondeduced_t<TensorMap<S, R>>* db) {
  if (da) {
    detail::check_same_shape<S, R>("add", dy.dimensions(), da->dimensions(), "first operand gradient");
    da->device(ctx.device()) = *da + dy;
  }
  if (db) {
    detail::check_same_shape<S, R>("add", dy.dimensions(), db->dimensions(), "second operand gradient");
    db->device(ctx.device()) = *db + dy;
  }
}

}  // namespace dicyc::ops
