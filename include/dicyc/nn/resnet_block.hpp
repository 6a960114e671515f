// dicyc/nn/resnet_block.hpp -- the generator's residual block (dicyc-spec section 2):
//   y = x + IN(conv3x3(reflpad1(ReLU(IN(conv3x3(reflpad1(x)))))))
// InstanceNorm without affine parameters (eps 1e-5); the convs keep their bias, as the reference.
// Names: "<name>.block.1.weight/bias", "<name>.block.5.weight/bias" (the reference's nn.Sequential
// indices). forward fills a caller-owned Cache; backward accumulates dx (null skips) and the
// parameter gradients into the group.
#pragma once

#include <string>

#include "dicyc/nn/conv.hpp"
#include "dicyc/ops/activation.hpp"
#include "dicyc/ops/instance_norm.hpp"
#include "dicyc/ops/pad.hpp"

namespace dicyc::nn {

template <int Dim, class S, class Device>
class ResnetBlock {
 public:
  static constexpr int Rank = Dim + 2;
  using T = core::Tensor<S, Rank, Device>;
  using Stats = core::Tensor<acc_t<S>, 2, Device>;
  struct Cache {
    T p1, n1, r, p2, n2;  // padded input, IN1 output, ReLU output, padded ReLU output, IN2 output
    Stats mean1, invstd1, mean2, invstd2;
  };

  ResnetBlock(ParameterGroup<S, Device>& group, const std::string& name, Index channels)
      : c1_(group, name + ".block.1", ops::ConvOptions<Dim>(channels, channels, 3)),
        c2_(group, name + ".block.5", ops::ConvOptions<Dim>(channels, channels, 3)),
        name_(name),
        channels_(channels) {}

  void forward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& x, Cache& c, TensorMap<S, Rank>& y) const {
    DICYC_CHECK(x.dimension(0) == channels_ && y.dimensions() == x.dimensions(), ShapeError,
                "ResnetBlock '" << name_ << "': expected input and output with " << channels_
                                << " channels and the same shape, but got " << shape_str(x.dimensions()) << " and "
                                << shape_str(y.dimensions()));
    const auto pad = ops::uniform_pad<Dim>(1);
    const Shape<Rank> xs = x.dimensions(), ps = ops::reflection_pad_output_shape<Dim>(xs, pad);
    const Shape<2> st(channels_, xs[Rank - 1]);
    c.p1 = T(ctx, ps);
    c.n1 = T(ctx, xs);
    c.r = T(ctx, xs);
    c.p2 = T(ctx, ps);
    c.n2 = T(ctx, xs);
    c.mean1 = Stats(ctx, st);
    c.invstd1 = Stats(ctx, st);
    c.mean2 = Stats(ctx, st);
    c.invstd2 = Stats(ctx, st);
    auto p1 = c.p1.map(), n1 = c.n1.map(), r = c.r.map(), p2 = c.p2.map(), n2 = c.n2.map();
    auto m1 = c.mean1.map(), i1 = c.invstd1.map(), m2 = c.mean2.map(), i2 = c.invstd2.map();
    T tmp(ctx, xs);
    auto tm = tmp.map();
    ops::reflection_pad_forward<Dim, S>(ctx, pad, x, p1);
    c1_.forward(ctx, c.p1.cmap(), tm);
    ops::instance_norm_forward<Dim, S>(ctx, tmp.cmap(), n1, m1, i1);
    ops::relu_forward<S, Rank>(ctx, c.n1.cmap(), r);
    ops::reflection_pad_forward<Dim, S>(ctx, pad, c.r.cmap(), p2);
    c2_.forward(ctx, c.p2.cmap(), tm);
    ops::instance_norm_forward<Dim, S>(ctx, tmp.cmap(), n2, m2, i2);
    ops::add_forward<S, Rank>(ctx, x, c.n2.cmap(), y);
  }

  /// dx += d<block(x), dy>/dx (null skips), or dx = that with dx_overwrite (dx not read);
  /// parameter gradients into the group.
  void backward(core::Context<Device>& ctx, const Cache& c, const ConstTensorMap<S, Rank>& dy,
                nondeduced_t<TensorMap<S, Rank>>* dx, bool dx_overwrite = false) const {
    const auto pad = ops::uniform_pad<Dim>(1);
    const Shape<Rank> xs = c.n1.shape(), ps = c.p1.shape();
    if (dx)
      DICYC_CHECK(dx->dimensions() == xs, ShapeError,
                  "ResnetBlock '" << name_ << "': expected input gradient of shape " << shape_str(xs));
    // Each buffer below is written whole by the op that fills it (overwrite): no zeroing.
    // Through the second half.
    T dc(ctx, xs);
    auto dcm = dc.map();
    ops::instance_norm_backward<Dim, S>(ctx, c.n2.cmap(), c.invstd2.cmap(), dy, dcm, /*overwrite=*/true);
    T dp(ctx, ps);
    auto dpm = dp.map();
    c2_.backward(ctx, c.p2.cmap(), dc.cmap(), &dpm, /*dx_overwrite=*/true);
    T dr(ctx, xs);
    auto drm = dr.map();
    ops::reflection_pad_backward<Dim, S>(ctx, pad, dp.cmap(), drm, /*overwrite=*/true);
    T dn(ctx, xs);
    auto dnm = dn.map();
    ops::relu_backward<S, Rank>(ctx, c.r.cmap(), dr.cmap(), dnm, /*overwrite=*/true);
    // Through the first half.
    ops::instance_norm_backward<Dim, S>(ctx, c.n1.cmap(), c.invstd1.cmap(), dn.cmap(), dcm, /*overwrite=*/true);
    c1_.backward(ctx, c.p1.cmap(), dc.cmap(), &dpm, /*dx_overwrite=*/true);
    if (dx) {
      ops::reflection_pad_backward<Dim, S>(ctx, pad, dp.cmap(), *dx, dx_overwrite);
      dx->device(ctx.device()) = *dx + dy;  // the identity branch
    }
  }

 private:
  Conv<Dim, S, Device> c1_, c2_;
  std::string name_;
  Index channels_;
};

}  // namespace dicyc::nn
