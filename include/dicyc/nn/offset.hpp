// dicyc/nn/offset.hpp -- the shared-offset layer (the paper's "modified deformable convolution").
//
// OffsetBranch<Dim>(channels C, hidden 32): conv 3x3 pad 1 (C -> hidden) -> LeakyReLU 0.2 ->
// conv 3x3 pad 1 (hidden -> Dim), the last conv zero-initialised (training starts at the identity).
// Its output u (Dim, x, y[, z], N) is ONE displacement field in pixels of the layer's grid, shared
// by all channels: the feature map is resampled at p + u(p) with the grid sampler (bilinear or
// trilinear, border padding, align_corners = false), i.e. grid = pixel centres + u * 2 / size.
// Names: "<name>.c1.weight", "<name>.c1.bias", "<name>.c2.weight", "<name>.c2.bias" (the reference's
// OffsetBranch in python/dicyc/nn.py).
// forward(x, cache, y): y = x warped by u(x); the cache keeps what backward needs (x itself stays the
// caller's). backward(x, cache, dy, dx): dx += d<y, dy>/dx through both the sampled values and the
// predicted field; parameter gradients accumulate into the group.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>

#include "dicyc/nn/conv.hpp"
#include "dicyc/ops/activation.hpp"
#include "dicyc/tps/grid_sampler.hpp"
#include "dicyc/tps/tps.hpp"

namespace dicyc::nn {

template <int Dim, class S, class Device>
class OffsetBranch {
 public:
  static constexpr int Rank = Dim + 2;
  struct Cache {
    core::Tensor<S, Rank, Device> h;     // LeakyReLU output (hidden channels)
    core::Tensor<S, Rank, Device> u;     // displacement in pixels (Dim channels)
    core::Tensor<S, Rank, Device> grid;  // sampling grid (Dim, spatial..., N)
  };

  OffsetBranch(ParameterGroup<S, Device>& group, const std::string& name, Index channels, Index hidden = 32)
      : c1_(group, name + ".c1", ops::ConvOptions<Dim>(channels, hidden, 3).padding(1)),
        c2_(group, name + ".c2", ops::ConvOptions<Dim>(hidden, Dim, 3).padding(1), Init::Zeros, Init::Zeros),
        name_(name),
        channels_(channels) {}

  const Conv<Dim, S, Device>& conv1() const { return c1_; }
  const Conv<Dim, S, Device>& conv2() const { return c2_; }

  void forward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& x, Cache& cache, TensorMap<S, Rank>& y) const {
    DICYC_CHECK(x.dimension(0) == channels_, ShapeError,
                "OffsetBranch '" << name_ << "': expected input with " << channels_ << " channels, but got input of shape "
                                 << shape_str(x.dimensions()) << " instead");
    DICYC_CHECK(y.dimensions() == x.dimensions(), ShapeError,
                "OffsetBranch '" << name_ << "': expected output of shape " << shape_str(x.dimensions()) << ", but got "
                                 << shape_str(y.dimensions()));
    const auto hs = c1_.output_shape(x.dimensions());
    Shape<Rank> us = x.dimensions();
    us[0] = Dim;
    cache.h = core::Tensor<S, Rank, Device>(ctx, hs);
    cache.u = core::Tensor<S, Rank, Device>(ctx, us);
    cache.grid = core::Tensor<S, Rank, Device>(ctx, us);
    auto h = cache.h.map();
    c1_.forward(ctx, x, h);
    ops::leaky_relu_forward<S, Rank>(ctx, cache.h.cmap(), h, 0.2);
    auto u = cache.u.map();
    c2_.forward(ctx, cache.h.cmap(), u);
    make_grid(ctx, x.dimensions(), cache.u.cmap(), cache.grid);
    tps::grid_sample_forward<Dim, S>(ctx, x, cache.grid.cmap(), y, tps::PaddingMode::Border);
  }

  void backward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& x, const Cache& cache,
                const ConstTensorMap<S, Rank>& dy, nondeduced_t<TensorMap<S, Rank>>* dx) const {
    const Shape<Rank> us = cache.u.shape();
    auto dgrid = core::Tensor<S, Rank, Device>::zeros(ctx, us);
    auto dgm = dgrid.map();
    tps::grid_sample_backward<Dim, S>(ctx, x, cache.grid.cmap(), dy, dx, &dgm, tps::PaddingMode::Border);
    // du = dgrid * 2 / size per component.
    const Index rest = dgrid.size() / Dim;
    TensorMap<S, 2> dg2(dgrid.data(), Dim, rest);
    dg2.device(ctx.device()) = dg2 * geometry(ctx, x.dimensions()).scale.cmap().broadcast(Eigen::array<Index, 2>{1, rest});
    core::Tensor<S, Rank, Device> dh(ctx, cache.h.shape());  // written by the conv's backward
    auto dhm = dh.map();
    c2_.backward(ctx, cache.h.cmap(), dgrid.cmap(), &dhm, /*dx_overwrite=*/true);
    core::Tensor<S, Rank, Device> dh0(ctx, cache.h.shape());  // written whole (overwrite)
    auto dh0m = dh0.map();
    ops::leaky_relu_backward<S, Rank>(ctx, cache.h.cmap(), dh.cmap(), dh0m, 0.2, /*overwrite=*/true);
    c1_.backward(ctx, x, dh0.cmap(), dx);
  }

 private:
  // Per spatial extent, on the device: the pixel centres (Dim * P, 1) and 2 / size per component,
  // built once (like Stn's TPS grids) rather than on the host at every call.
  struct Geometry {
    core::Tensor<S, 2, Device> base, scale;
  };
  const Geometry& geometry(core::Context<Device>& ctx, const Shape<Rank>& xs) const {
    std::array<Index, Dim> ext;
    Index P = 1;
    for (int d = 0; d < Dim; ++d) P *= (ext[d] = xs[d + 1]);
    auto& slot = geometry_[ext];
    if (!slot) {
      std::vector<S> base(static_cast<std::size_t>(Dim * P)), scale(Dim);
      for (Index p = 0; p < P; ++p) {
        Index r = p;
        for (int d = 0; d < Dim; ++d) {
          base[p * Dim + d] = S(tps::pixel_center(r % ext[d], ext[d]));
          r /= ext[d];
        }
      }
      for (int d = 0; d < Dim; ++d) scale[d] = S(2.0 / double(ext[d]));
      slot = std::make_unique<Geometry>();
      slot->base = core::Tensor<S, 2, Device>::from_host(ctx, Shape<2>(Dim * P, 1), base);
      slot->scale = core::Tensor<S, 2, Device>::from_host(ctx, Shape<2>(Dim, 1), scale);
    }
    return *slot;
  }
  // grid = pixel centres + u * 2 / size.
  void make_grid(core::Context<Device>& ctx, const Shape<Rank>& xs, const ConstTensorMap<S, Rank>& u,
                 core::Tensor<S, Rank, Device>& grid) const {
    const Geometry& geo = geometry(ctx, xs);
    const Index DP = geo.base.dimension(0), N = xs[Rank - 1], PN = DP / Dim * N;
    TensorMap<S, 2> g2(grid.data(), DP, N);
    ConstTensorMap<S, 2> u2(u.data(), Dim, PN);
    g2.device(ctx.device()) = geo.base.cmap().broadcast(Eigen::array<Index, 2>{1, N}) +
                              (u2 * geo.scale.cmap().broadcast(Eigen::array<Index, 2>{1, PN})).reshape(Shape<2>(DP, N));
  }

  Conv<Dim, S, Device> c1_, c2_;
  std::string name_;
  Index channels_;
  mutable std::map<std::array<Index, Dim>, std::unique_ptr<Geometry>> geometry_;
};

}  // namespace dicyc::nn
