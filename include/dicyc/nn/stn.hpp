// dicyc/nn/stn.hpp -- the spatial-transformer network of DiCyc's global deformation
// (dicyc-spec section 2).
//
// Stn<Dim>(channels C of one latent map, control grid g per axis):
//   cat = [f_src; f_tgt] (2C channels) -> conv 3x3 s2 p1 (2C -> 128) -> LeakyReLU 0.2
//   -> conv 3x3 s2 p1 (128 -> 64) -> LeakyReLU 0.2 -> global average pool -> fc (64 -> K * Dim),
// the fc zero-initialised, so the control displacements (Dim, K, N) start at 0 and the warp at the
// identity. The TPS (tps.hpp; one cached system per latent resolution) turns them into a dense grid,
// and the output is f_src resampled there (bilinear / trilinear, border padding).
// Names: "<name>.body.0.*", "<name>.body.2.*", "<name>.fc.*" (the reference's STN: its state dict lines up).
// backward accumulates d<out, dout> into dsrc (through the sampled values and through the STN) and
// dtgt (null skips either), and the parameter gradients into the group. warp() applies the same
// TPS to an image of another resolution (DiCyc's undeformed-output GAN term); its displacement
// gradient joins backward() through ddisp_extra.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "dicyc/nn/conv.hpp"
#include "dicyc/ops/activation.hpp"
#include "dicyc/tps/grid_sampler.hpp"
#include "dicyc/tps/tps.hpp"

namespace dicyc::nn {

template <int Dim, class S, class Device>
class Stn {
 public:
  static constexpr int Rank = Dim + 2;
  struct Cache {
    core::Tensor<S, Rank, Device> cat, h1, h2, grid;
    core::Tensor<S, 2, Device> pooled, disp;
    const tps::TpsGrid<Dim, S, Device>* tps = nullptr;
  };

  Stn(ParameterGroup<S, Device>& group, const std::string& name, Index channels, Index control = 6,
      Index hidden1 = 128, Index hidden2 = 64)
      : c1_(group, name + ".body.0", ops::ConvOptions<Dim>(2 * channels, hidden1, 3).stride(2).padding(1)),
        c2_(group, name + ".body.2", ops::ConvOptions<Dim>(hidden1, hidden2, 3).stride(2).padding(1)),
        fc_(group, name + ".fc", hidden2, ipow(control, Dim) * Dim, Init::Zeros, Init::Zeros),
        name_(name),
        channels_(channels),
        control_(control) {
    DICYC_CHECK(control >= 2, ConfigError, "Stn '" << name << "': the control grid needs at least 2 points per axis");
  }

  Index num_control_points() const { return ipow(control_, Dim); }
  const Linear<S, Device>& fc() const { return fc_; }

  void forward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& src, const ConstTensorMap<S, Rank>& tgt,
               Cache& cache, TensorMap<S, Rank>& out) const {
    DICYC_CHECK(src.dimension(0) == channels_ && src.dimensions() == tgt.dimensions(), ShapeError,
                "Stn '" << name_ << "': expected two latent maps with " << channels_ << " channels and the same shape, but got "
                        << shape_str(src.dimensions()) << " and " << shape_str(tgt.dimensions()));
    DICYC_CHECK(out.dimensions() == src.dimensions(), ShapeError,
                "Stn '" << name_ << "': expected output of shape " << shape_str(src.dimensions()) << ", but got "
                        << shape_str(out.dimensions()));
    const auto& d = ctx.device();
    Shape<Rank> cs = src.dimensions();
    cs[0] = 2 * channels_;
    cache.cat = core::Tensor<S, Rank, Device>(ctx, cs);
    concat(ctx, src, tgt, cache.cat);
    cache.h1 = core::Tensor<S, Rank, Device>(ctx, c1_.output_shape(cs));
    auto h1 = cache.h1.map();
    c1_.forward(ctx, cache.cat.cmap(), h1);
    ops::leaky_relu_forward<S, Rank>(ctx, cache.h1.cmap(), h1, 0.2);
    cache.h2 = core::Tensor<S, Rank, Device>(ctx, c2_.output_shape(cache.h1.shape()));
    auto h2 = cache.h2.map();
    c2_.forward(ctx, cache.h1.cmap(), h2);
    ops::leaky_relu_forward<S, Rank>(ctx, cache.h2.cmap(), h2, 0.2);
    // Global average pool (C2, N).
    const Index C2 = cache.h2.dimension(0), N = cache.h2.dimension(Rank - 1), P2 = cache.h2.size() / (C2 * N);
    cache.pooled = core::Tensor<S, 2, Device>(ctx, Shape<2>(C2, N));
    auto pm = cache.pooled.map();
    const auto h2c = cache.h2.cmap();
    pm.device(d) = h2c.reshape(Shape<3>(C2, P2, N))
                       .template cast<acc_t<S>>()
                       .mean(Eigen::array<Index, 1>{1})
                       .template cast<S>();
    cache.disp = core::Tensor<S, 2, Device>(ctx, Shape<2>(fc_.out_features(), N));
    auto dm = cache.disp.map();
    fc_.forward(ctx, cache.pooled.cmap(), dm);
    cache.tps = &tps_for(ctx, src.dimensions());
    Shape<Rank> gs = src.dimensions();
    gs[0] = Dim;
    cache.grid = core::Tensor<S, Rank, Device>(ctx, gs);
    auto gm = cache.grid.map();
    ConstTensorMap<S, 3> d3(cache.disp.data(), Dim, num_control_points(), N);
    cache.tps->forward(ctx, d3, gm);
    tps::grid_sample_forward<Dim, S>(ctx, src, cache.grid.cmap(), out, tps::PaddingMode::Border);
  }

  void backward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& src, const ConstTensorMap<S, Rank>& tgt,
                const Cache& cache, const ConstTensorMap<S, Rank>& dout, nondeduced_t<TensorMap<S, Rank>>* dsrc,
                nondeduced_t<TensorMap<S, Rank>>* dtgt, const core::Tensor<S, 2, Device>* ddisp_extra = nullptr) const {
    const auto& d = ctx.device();
    const Index N = src.dimension(Rank - 1);
    auto dgrid = core::Tensor<S, Rank, Device>::zeros(ctx, cache.grid.shape());
    auto dgm = dgrid.map();
    tps::grid_sample_backward<Dim, S>(ctx, src, cache.grid.cmap(), dout, dsrc, &dgm, tps::PaddingMode::Border);
    auto ddisp = core::Tensor<S, 2, Device>::zeros(ctx, cache.disp.shape());
    TensorMap<S, 3> dd3(ddisp.data(), Dim, num_control_points(), N);
    cache.tps->backward(ctx, dgrid.cmap(), dd3);
    if (ddisp_extra) {  // a warp()'s displacement gradient (warp_backward)
      DICYC_CHECK(ddisp_extra->shape() == ddisp.shape(), ShapeError, "Stn '" << name_ << "': extra displacement gradient of shape "
                                                                           << shape_str(ddisp_extra->shape()) << ", expected "
                                                                           << shape_str(ddisp.shape()));
      auto ddm = ddisp.map();
      ddm.device(d) = ddm + ddisp_extra->cmap();
    }
    auto dpooled = core::Tensor<S, 2, Device>::zeros(ctx, cache.pooled.shape());
    auto dpm = dpooled.map();
    fc_.backward(ctx, cache.pooled.cmap(), ddisp.cmap(), &dpm);
    const Index C2 = cache.h2.dimension(0), P2 = cache.h2.size() / (C2 * N);
    auto dh2 = core::Tensor<S, Rank, Device>::zeros(ctx, cache.h2.shape());
    auto dh2m = dh2.map();
    // The pool's backward spreads dpooled / P2 over the positions, then LeakyReLU's, in place.
    const auto dpc = dpooled.cmap();
    dh2m.reshape(Shape<3>(C2, P2, N)).device(d) =
        (dpc.reshape(Shape<3>(C2, 1, N)).broadcast(Eigen::array<Index, 3>{1, P2, 1}).template cast<acc_t<S>>() /
         acc_t<S>(P2))
            .template cast<S>();
    core::Tensor<S, Rank, Device> dh2b(ctx, cache.h2.shape());  // written whole (overwrite)
    auto dh2bm = dh2b.map();
    ops::leaky_relu_backward<S, Rank>(ctx, cache.h2.cmap(), dh2.cmap(), dh2bm, 0.2, /*overwrite=*/true);
    core::Tensor<S, Rank, Device> dh1(ctx, cache.h1.shape());  // written by the conv's backward
    auto dh1m = dh1.map();
    c2_.backward(ctx, cache.h1.cmap(), dh2b.cmap(), &dh1m, /*dx_overwrite=*/true);
    core::Tensor<S, Rank, Device> dh1b(ctx, cache.h1.shape());  // written whole (overwrite)
    auto dh1bm = dh1b.map();
    ops::leaky_relu_backward<S, Rank>(ctx, cache.h1.cmap(), dh1.cmap(), dh1bm, 0.2, /*overwrite=*/true);
    core::Tensor<S, Rank, Device> dcat(ctx, cache.cat.shape());  // written by the conv's backward
    auto dcm = dcat.map();
    c1_.backward(ctx, cache.cat.cmap(), dh1b.cmap(), &dcm, /*dx_overwrite=*/true);
    Eigen::array<Index, Rank> off{}, ext = src.dimensions();
    const auto dcc = dcat.cmap();
    if (dsrc) dsrc->device(d) = *dsrc + dcc.slice(off, ext);
    off[0] = channels_;
    if (dtgt) dtgt->device(d) = *dtgt + dcc.slice(off, ext);
  }

  /// The TPS of a forward() (its control displacements, kept in `cache`) applied to `img`, an image
  /// of any channel count and grid size with the same batch: the same transformation in normalised
  /// coordinates (align_corners = false, so it is resolution-independent), sampled at img's grid
  /// (bilinear / trilinear, border padding). `grid` keeps the dense map for warp_backward().
  void warp(core::Context<Device>& ctx, const Cache& cache, const ConstTensorMap<S, Rank>& img,
            core::Tensor<S, Rank, Device>& grid, TensorMap<S, Rank>& out) const {
    const Index N = img.dimension(Rank - 1);
    DICYC_CHECK(cache.disp.size() == Dim * num_control_points() * N && out.dimensions() == img.dimensions(), ShapeError,
                "Stn '" << name_ << "': warp() needs a forward() of the same batch and an output of the image's shape, got "
                        << shape_str(img.dimensions()) << " and " << shape_str(out.dimensions()));
    Shape<Rank> gs = img.dimensions();
    gs[0] = Dim;
    grid = core::Tensor<S, Rank, Device>(ctx, gs);
    auto gm = grid.map();
    ConstTensorMap<S, 3> d3(cache.disp.data(), Dim, num_control_points(), N);
    tps_for(ctx, img.dimensions()).forward(ctx, d3, gm);
    tps::grid_sample_forward<Dim, S>(ctx, img, grid.cmap(), out, tps::PaddingMode::Border);
  }
  /// dimg += d<warp(img), dout>/d img, and ddisp += its gradient with respect to the control
  /// displacements (shape (Dim * K, N), as the cache's; null skips either): hand ddisp to
  /// backward() so that it flows on into the STN.
  void warp_backward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& img, const core::Tensor<S, Rank, Device>& grid,
                     const ConstTensorMap<S, Rank>& dout, nondeduced_t<TensorMap<S, Rank>>* dimg,
                     core::Tensor<S, 2, Device>* ddisp) const {
    if (!ddisp) {
      tps::grid_sample_backward<Dim, S>(ctx, img, grid.cmap(), dout, dimg, nullptr, tps::PaddingMode::Border);
      return;
    }
    const Index N = img.dimension(Rank - 1);
    DICYC_CHECK(ddisp->size() == Dim * num_control_points() * N, ShapeError,
                "Stn '" << name_ << "': warp_backward() needs a displacement gradient of " << Dim * num_control_points() * N
                        << " elements, got " << ddisp->size());
    auto dgrid = core::Tensor<S, Rank, Device>::zeros(ctx, grid.shape());
    auto dgm = dgrid.map();
    tps::grid_sample_backward<Dim, S>(ctx, img, grid.cmap(), dout, dimg, &dgm, tps::PaddingMode::Border);
    TensorMap<S, 3> dd3(ddisp->data(), Dim, num_control_points(), N);
    tps_for(ctx, img.dimensions()).backward(ctx, dgrid.cmap(), dd3);
  }

 private:
  static Index ipow(Index b, int e) {
    Index r = 1;
    for (int i = 0; i < e; ++i) r *= b;
    return r;
  }
  void concat(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& a, const ConstTensorMap<S, Rank>& b,
              core::Tensor<S, Rank, Device>& out) const {
    Eigen::array<Index, Rank> off{}, ext = a.dimensions();
    auto o = out.map();
    o.slice(off, ext).device(ctx.device()) = a;
    off[0] = channels_;
    o.slice(off, ext).device(ctx.device()) = b;
  }
  const tps::TpsGrid<Dim, S, Device>& tps_for(core::Context<Device>& ctx, const Shape<Rank>& s) const {
    std::array<Index, Dim> out, ctl;
    for (int d = 0; d < Dim; ++d) {
      out[d] = s[d + 1];
      ctl[d] = control_;
    }
    auto& slot = grids_[out];
    if (!slot) slot = std::make_unique<tps::TpsGrid<Dim, S, Device>>(ctx, ctl, out);
    return *slot;
  }

  Conv<Dim, S, Device> c1_, c2_;
  Linear<S, Device> fc_;
  std::string name_;
  Index channels_, control_;
  mutable std::map<std::array<Index, Dim>, std::unique_ptr<tps::TpsGrid<Dim, S, Device>>> grids_;
};

}  // namespace dicyc::nn
