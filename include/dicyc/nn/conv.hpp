// dicyc/nn/conv.hpp -- the Conv, ConvTranspose and Linear modules: parameters on a group, stateless calls.
//
// Conv<Dim>: weight (Cout, Cin, k...) named "<name>.weight", bias (Cout) "<name>.bias" (when the
// options keep it). forward(x) -> y; backward(x, dy) accumulates dx (null skips) and, when the group
// requires gradients, the parameter gradients. The caller keeps x (its cache) for the backward.
// Linear: weight (out, in) "<name>.weight", bias (out) "<name>.bias"; x (in, N) -> y (out, N).
#pragma once

#include <string>
#include <utility>

#include "dicyc/nn/parameter.hpp"
#include "dicyc/ops/conv.hpp"
#include "dicyc/ops/gemm.hpp"

namespace dicyc::nn {

namespace detail {

/// Conv (Transposed = false) and ConvTranspose (true): the same module over the two op families.
template <int Dim, class S, class Device, bool Transposed>
class ConvModule {
 public:
  static constexpr int Rank = Dim + 2;
  ConvModule(ParameterGroup<S, Device>& group, const std::string& name, ops::ConvOptions<Dim> opts,
             Init weight_init = Init::Normal002, Init bias_init = Init::Zeros)
      : group_(&group), opts_(std::move(opts.name(name))) {
    const auto ws = Transposed ? ops::conv_transpose_weight_shape(opts_) : ops::conv_weight_shape(opts_);
    std::vector<Index> shape(Rank);
    for (int i = 0; i < Rank; ++i) shape[i] = ws[i];  // (DSizes has no begin() under nvcc)
    weight_ = group.declare(name + ".weight", shape, weight_init);
    if (opts_.bias()) bias_ = group.declare(name + ".bias", {opts_.out_channels()}, bias_init);
  }

  const ops::ConvOptions<Dim>& options() const { return opts_; }
  Shape<Rank> output_shape(const Shape<Rank>& in) const {
    return Transposed ? ops::conv_transpose_output_shape(opts_, in) : ops::conv_output_shape(opts_, in);
  }
  const ParamRef& weight() const { return weight_; }
  const ParamRef& bias() const { return bias_; }

  void forward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& x, TensorMap<S, Rank>& y) const {
    const auto w = param_cmap<S, Rank>(std::as_const(*group_).value(weight_), weight_);
    const ConstTensorMap<S, 1> b(opts_.bias() ? std::as_const(*group_).value(bias_) : nullptr, opts_.out_channels());
    const ConstTensorMap<S, 1>* bp = opts_.bias() ? &b : nullptr;
    if constexpr (Transposed)
      ops::conv_transpose_forward<Dim, S>(ctx, opts_, x, w, bp, y);
    else
      ops::conv_forward<Dim, S>(ctx, opts_, x, w, bp, y);
  }
  /// dx += d<y, dy>/dx (null skips), or dx = that with dx_overwrite (dx's old content unread: a
  /// fresh buffer need not be zeroed); parameter gradients added into the group.
  void backward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& x, const ConstTensorMap<S, Rank>& dy,
                nondeduced_t<TensorMap<S, Rank>>* dx, bool dx_overwrite = false) const {
    const auto w = param_cmap<S, Rank>(std::as_const(*group_).value(weight_), weight_);
    S* gw = group_->grad(weight_);
    auto dwm = param_map<S, Rank>(gw, weight_);
    TensorMap<S, 1> dbm(gw && opts_.bias() ? group_->grad(bias_) : nullptr, opts_.out_channels());
    TensorMap<S, Rank>* dwp = gw ? &dwm : nullptr;
    TensorMap<S, 1>* dbp = gw && opts_.bias() ? &dbm : nullptr;
    if constexpr (Transposed)
      ops::conv_transpose_backward<Dim, S>(ctx, opts_, x, w, dy, dx, dwp, dbp, dx_overwrite);
    else
      ops::conv_backward<Dim, S>(ctx, opts_, x, w, dy, dx, dwp, dbp, dx_overwrite);
  }

 private:
  ParameterGroup<S, Device>* group_;
  ops::ConvOptions<Dim> opts_;
  ParamRef weight_, bias_;
};

}  // namespace detail

/// Conv<Dim>: weight (Cout, Cin, k...) "<name>.weight", bias (Cout) "<name>.bias".
template <int Dim, class S, class Device>
using Conv = detail::ConvModule<Dim, S, Device, false>;
/// ConvTranspose<Dim>: weight (Cin, Cout, k...) in PyTorch's order, named "<name>.weight"; bias
/// (Cout) "<name>.bias" when the options keep it. Same call contract as Conv.
template <int Dim, class S, class Device>
using ConvTranspose = detail::ConvModule<Dim, S, Device, true>;

template <class S, class Device>
class Linear {
 public:
  Linear(ParameterGroup<S, Device>& group, const std::string& name, Index in, Index out,
         Init weight_init = Init::Normal002, Init bias_init = Init::Zeros)
      : group_(&group), name_(name), in_(in), out_(out) {
    DICYC_CHECK(in > 0 && out > 0, ConfigError, "Linear '" << name << "': sizes must be positive, got " << in << " -> " << out);
    weight_ = group.declare(name + ".weight", {out, in}, weight_init);
    bias_ = group.declare(name + ".bias", {out}, bias_init);
  }
  Index in_features() const { return in_; }
  Index out_features() const { return out_; }
  const ParamRef& weight() const { return weight_; }
  const ParamRef& bias() const { return bias_; }

  /// y (out, N) = W x + b.
  void forward(core::Context<Device>& ctx, const ConstTensorMap<S, 2>& x, TensorMap<S, 2>& y) const {
    check(x.dimensions(), y.dimensions());
    const Index N = x.dimension(1);
    ConstTensorMap<S, 2> b(std::as_const(*group_).value(bias_), out_, 1);
    y.device(ctx.device()) = b.broadcast(Eigen::array<Index, 2>{1, N});
    ops::gemm<S>(ctx, false, false, out_, N, in_, std::as_const(*group_).value(weight_), x.data(), y.data(), 1.0f, 1.0f);
  }
  /// dx += W^T dy (null skips); dW += dy x^T, db += sum_n dy when the group requires gradients.
  void backward(core::Context<Device>& ctx, const ConstTensorMap<S, 2>& x, const ConstTensorMap<S, 2>& dy,
                nondeduced_t<TensorMap<S, 2>>* dx) const {
    check(x.dimensions(), dy.dimensions());
    const Index N = x.dimension(1);
    if (dx) {
      DICYC_CHECK(dx->dimensions() == x.dimensions(), ShapeError,
                  "Linear '" << name_ << "': expected input gradient of shape " << shape_str(x.dimensions()));
      ops::gemm<S>(ctx, true, false, in_, N, out_, std::as_const(*group_).value(weight_), dy.data(), dx->data(), 1.0f, 1.0f);
    }
    if (S* gw = group_->grad(weight_)) {
      ops::gemm<S>(ctx, false, true, out_, in_, N, dy.data(), x.data(), gw, 1.0f, 1.0f);
      TensorMap<S, 1> gb(group_->grad(bias_), out_);
      gb.device(ctx.device()) =
          (gb.template cast<acc_t<S>>() + dy.template cast<acc_t<S>>().sum(Eigen::array<Index, 1>{1})).template cast<S>();
    }
  }

 private:
  void check(const Shape<2>& x, const Shape<2>& y) const {
    DICYC_CHECK(x[0] == in_ && y[0] == out_ && x[1] == y[1], ShapeError,
                "Linear '" << name_ << "': expected input [" << in_ << ", N] and output [" << out_ << ", N], but got "
                           << shape_str(x) << " and " << shape_str(y));
  }
  ParameterGroup<S, Device>* group_;
  std::string name_;
  Index in_, out_;
  ParamRef weight_, bias_;
};

}  // namespace dicyc::nn
