// dicyc/ops/instance_norm.hpp -- instance normalization without affine parameters, 2-D and 3-D.
//
// Contract: x (C, s..., N); for every (c, n), over the spatial axes,
//   y = (x - mean) * invstd,   invstd = 1 / sqrt(var + eps),   var biased (divided by S),
// as PyTorch's InstanceNorm (affine=False, track_running_stats=False), eps 1e-5 by default.
// The forward writes the per-(c, n) statistics (C, N) in the accumulation type; the caller keeps
// them (with y) in its cache for the backward.
// Backward (closed form), ACCUMULATED into dx:
//   dx += invstd * (dy - mean_S(dy) - y * mean_S(dy * y)).
// Everything is an Eigen expression over the (C, S, N) view; half accumulates in float.
#pragma once

#include "dicyc/core/buffer.hpp"

namespace dicyc::ops {

template <int Dim, class S, class Device>
void instance_norm_forward(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& x, TensorMap<S, Dim + 2>& y,
                           TensorMap<acc_t<S>, 2>& mean, TensorMap<acc_t<S>, 2>& invstd, double eps = 1e-5) {
  using A = acc_t<S>;
  const Index C = x.dimension(0), N = x.dimension(Dim + 1), Sp = x.size() / std::max<Index>(1, C * N);
  DICYC_CHECK(x.dimensions() == y.dimensions(), ShapeError,
              "instance_norm" << Dim << "d: expected output of shape " << shape_str(x.dimensions()) << ", but got "
                              << shape_str(y.dimensions()) << " instead");
  DICYC_CHECK(mean.dimension(0) == C && mean.dimension(1) == N && invstd.dimensions() == mean.dimensions(),
              ShapeError,
              "instance_norm" << Dim << "d: expected statistics of shape [" << C << ", " << N << "], but got "
                              << shape_str(mean.dimensions()) << " and " << shape_str(invstd.dimensions()));
  DICYC_CHECK(Sp >= 1, ShapeError, "instance_norm" << Dim << "d: empty input of shape " << shape_str(x.dimensions()));
  DICYC_CHECK(eps > 0, ConfigError, "instance_norm" << Dim << "d: eps must be positive, got " << eps);
  const auto& d = ctx.device();
  const Shape<3> v3(C, Sp, N), s3(C, 1, N);
  const Eigen::array<Index, 3> bc{1, Sp, 1};
  const Eigen::array<Index, 1> red{1};
  auto x3 = x.reshape(v3).template cast<A>();
  mean.device(d) = x3.mean(red);
  auto centered = x3 - mean.reshape(s3).broadcast(bc);
  invstd.device(d) = (centered.square().mean(red) + A(eps)).rsqrt();
  auto y3 = y.reshape(v3);
  y3.device(d) = (centered * invstd.reshape(s3).broadcast(bc)).template cast<S>();
}

template <int Dim, class S, class Device>
void instance_norm_backward(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& y,
                            const ConstTensorMap<acc_t<S>, 2>& invstd, const ConstTensorMap<S, Dim + 2>& dy,
                            TensorMap<S, Dim + 2>& dx) {
  using A = acc_t<S>;
  const Index C = y.dimension(0), N = y.dimension(Dim + 1), Sp = y.size() / std::max<Index>(1, C * N);
  DICYC_CHECK(dy.dimensions() == y.dimensions() && dx.dimensions() == y.dimensions(), ShapeError,
              "instance_norm" << Dim << "d: expected gradients of shape " << shape_str(y.dimensions())
                              << ", but got output gradient " << shape_str(dy.dimensions()) << " and input gradient "
                              << shape_str(dx.dimensions()));
  DICYC_CHECK(invstd.dimension(0) == C && invstd.dimension(1) == N, ShapeError,
              "instance_norm" << Dim << "d: expected statistics of shape [" << C << ", " << N << "], but got "
                              << shape_str(invstd.dimensions()));
  const auto& d = ctx.device();
  const Shape<3> v3(C, Sp, N), s3(C, 1, N);
  const Eigen::array<Index, 3> bc{1, Sp, 1};
  const Eigen::array<Index, 1> red{1};
  auto y3 = y.reshape(v3).template cast<A>();
  auto dy3 = dy.reshape(v3).template cast<A>();
  // The two per-(c, n) means are materialized: evaluating them inside the broadcast would redo
  // the reduction for every element.
  core::Buffer<A, Device> mdy(ctx, C * N), mdyy(ctx, C * N);
  TensorMap<A, 2> Mdy(mdy.data(), C, N), Mdyy(mdyy.data(), C, N);
  Mdy.device(d) = dy3.mean(red);
  Mdyy.device(d) = (dy3 * y3).mean(red);
  auto dx3 = dx.reshape(v3);
  dx3.device(d) = (dx3.template cast<A>() +
                   invstd.reshape(s3).broadcast(bc) *
                       (dy3 - Mdy.reshape(s3).broadcast(bc) - y3 * Mdyy.reshape(s3).broadcast(bc)))
                      .template cast<S>();
}

}  // namespace dicyc::ops
