// dicyc/nn/patch_discriminator.hpp -- the 70x70 PatchGAN discriminator (dicyc-spec section 2).
//
// Kernel 4, padding 1: conv s2 (in -> ndf), LeakyReLU 0.2; then n_layers - 1 times conv s2
// (doubling, at most 8 ndf), IN, LReLU; conv s1 (-> min(2^n_layers, 8) ndf), IN, LReLU; conv s1
// (-> 1). No sigmoid. InstanceNorm without affine parameters. Parameter names follow the indices of
// the reference's nn.Sequential ("<name>.0.weight", "<name>.2.weight", ..., "<name>.11.bias" for
// n_layers = 3), so state dicts line up. 2,762,689 parameters for one input channel.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dicyc/nn/conv.hpp"
#include "dicyc/ops/activation.hpp"
#include "dicyc/ops/instance_norm.hpp"

namespace dicyc::nn {

template <int Dim, class S, class Device>
class PatchDiscriminator {
 public:
  static constexpr int Rank = Dim + 2;
  using T = core::Tensor<S, Rank, Device>;
  using Stats = core::Tensor<acc_t<S>, 2, Device>;
  struct Cache {
    std::vector<T> norm;    // IN outputs (layers with a norm)
    std::vector<Stats> mean, invstd;
    std::vector<T> act;     // LeakyReLU outputs (all but the last layer)
  };

  PatchDiscriminator(ParameterGroup<S, Device>& group, const std::string& name, Index in_channels, Index ndf = 64,
                     int n_layers = 3)
      : name_(name) {
    DICYC_CHECK(n_layers >= 1 && in_channels > 0 && ndf > 0, ConfigError,
                "PatchDiscriminator '" << name << "': needs n_layers >= 1 and positive channel counts");
    int idx = 0;
    auto add = [&](Index cin, Index cout, Index stride, bool norm, bool act) {
      convs_.push_back(std::make_unique<Conv<Dim, S, Device>>(
          group, name + "." + std::to_string(idx), ops::ConvOptions<Dim>(cin, cout, 4).stride(stride).padding(1)));
      norm_.push_back(norm);
      act_.push_back(act);
      idx += 1 + (norm ? 1 : 0) + (act ? 1 : 0);
    };
    add(in_channels, ndf, 2, false, true);
    Index mult = 1;
    for (int n = 1; n < n_layers; ++n) {
      const Index prev = mult;
      mult = std::min<Index>(Index(1) << n, 8);
      add(ndf * prev, ndf * mult, 2, true, true);
    }
    const Index prev = mult;
    mult = std::min<Index>(Index(1) << n_layers, 8);
    add(ndf * prev, ndf * mult, 1, true, true);
    add(ndf * mult, 1, 1, false, false);
  }

  Shape<Rank> output_shape(Shape<Rank> s) const {
    for (const auto& c : convs_) s = c->output_shape(s);
    return s;
  }

  void forward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& x, Cache& c, TensorMap<S, Rank>& y) const {
    const Shape<Rank> ys = output_shape(x.dimensions());
    DICYC_CHECK(y.dimensions() == ys, ShapeError,
                "PatchDiscriminator '" << name_ << "': expected output of shape " << shape_str(ys) << ", but got "
                                       << shape_str(y.dimensions()));
    const std::size_t L = convs_.size();
    c.norm.clear();
    c.act.clear();
    c.mean.clear();
    c.invstd.clear();
    c.norm.resize(L);
    c.act.resize(L);
    c.mean.resize(L);
    c.invstd.resize(L);
    for (std::size_t l = 0; l < L; ++l) {
      // The input of layer l: x, or the previous activation (a TensorMap cannot be re-seated).
      const S* in_data = l == 0 ? x.data() : c.act[l - 1].data();
      const Shape<Rank> in_shape = l == 0 ? x.dimensions() : c.act[l - 1].shape();
      const ConstTensorMap<S, Rank> in(in_data, in_shape);
      if (l + 1 == L) {
        convs_[l]->forward(ctx, in, y);
        break;
      }
      const Shape<Rank> os = convs_[l]->output_shape(in_shape);
      T out(ctx, os);
      auto om = out.map();
      convs_[l]->forward(ctx, in, om);
      if (norm_[l]) {
        const Shape<2> st(os[0], os[Rank - 1]);
        c.norm[l] = T(ctx, os);
        c.mean[l] = Stats(ctx, st);
        c.invstd[l] = Stats(ctx, st);
        auto nm = c.norm[l].map();
        auto mm = c.mean[l].map();
        auto im = c.invstd[l].map();
        ops::instance_norm_forward<Dim, S>(ctx, out.cmap(), nm, mm, im);
      }
      c.act[l] = T(ctx, os);
      auto am = c.act[l].map();
      ops::leaky_relu_forward<S, Rank>(ctx, norm_[l] ? c.norm[l].cmap() : out.cmap(), am, 0.2);
    }
  }

  /// dx += d<y, dy>/dx (null skips: a discriminator's input gradient is needed for the generator
  /// step only); parameter gradients into the group when it requires them.
  void backward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& x, const Cache& c,
                const ConstTensorMap<S, Rank>& dy, nondeduced_t<TensorMap<S, Rank>>* dx) const {
    const std::size_t L = convs_.size();
    T g;  // gradient w.r.t. the output of the current layer's activation (or the final conv)
    for (std::size_t l = L; l-- > 0;) {
      const ConstTensorMap<S, Rank> in(l == 0 ? x.data() : c.act[l - 1].data(),
                                       l == 0 ? x.dimensions() : c.act[l - 1].shape());
      T gconv;  // gradient w.r.t. this conv's output
      if (l + 1 == L) {
        gconv = T(ctx, dy.dimensions());
        auto gm = gconv.map();
        gm.device(ctx.device()) = dy;
      } else {
        const Shape<Rank> os = c.act[l].shape();
        T ga(ctx, os);  // written whole (overwrite), as gconv below
        auto gam = ga.map();
        ops::leaky_relu_backward<S, Rank>(ctx, c.act[l].cmap(), g.cmap(), gam, 0.2, /*overwrite=*/true);
        if (norm_[l]) {
          gconv = T(ctx, os);
          auto gcm = gconv.map();
          ops::instance_norm_backward<Dim, S>(ctx, c.norm[l].cmap(), c.invstd[l].cmap(), ga.cmap(), gcm,
                                              /*overwrite=*/true);
        } else {
          gconv = std::move(ga);
        }
      }
      if (l == 0) {
        convs_[0]->backward(ctx, in, gconv.cmap(), dx);
      } else {
        g = T(ctx, in.dimensions());  // written by the conv's backward
        auto gm = g.map();
        convs_[l]->backward(ctx, in, gconv.cmap(), &gm, /*dx_overwrite=*/true);
      }
    }
  }

 private:
  std::string name_;
  std::vector<std::unique_ptr<Conv<Dim, S, Device>>> convs_;
  std::vector<bool> norm_, act_;
};

}  // namespace dicyc::nn
