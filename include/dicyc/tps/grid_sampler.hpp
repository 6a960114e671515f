// dicyc/tps/grid_sampler.hpp -- bilinear (2-D) and trilinear (3-D) sampling of a tensor at given
// normalised positions, forward and backward: torch.nn.functional.grid_sample with
// mode='bilinear', align_corners=False, padding_mode 'border' or 'zeros'.
//
// Contract:
//   input (C, x, y[, z], N); grid (Dim, ox, oy[, oz], N) with the components (x, y[, z]) of each
//   output position fastest (the memory of PyTorch's (N, oh, ow, 2) grid); output (C, ox, oy[, oz], N).
//   Normalised coordinates, align_corners = false: -1 and 1 are the outer edges of the first and
//   last pixel, so the pixel index is  i = ((g + 1) * size - 1) / 2.
//   Border: the index is clamped to [0, size - 1] (its gradient is 0 where it was clamped);
//   Zeros: corners outside the input contribute 0.
//   A coordinate within a few ulps of a pixel centre is taken as that centre, so identity grids
//   reproduce the input exactly (PyTorch leaves a rounding error of about 1e-7 there).
// Backward ACCUMULATES d<out, dout>/d input into dinput and /d grid into dgrid; either may be null.
// CPU: output positions in parallel, vectorised over the contiguous channels; the input gradient
// (a scatter) is parallel over channel ranges when there are channels enough, serial otherwise.
// GPU contexts go through the host for now (copies both ways).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "dicyc/core/buffer.hpp"

#if defined(__GNUC__) && !defined(__CUDACC__)
#define DICYC_ALWAYS_INLINE __attribute__((always_inline))
#else
#define DICYC_ALWAYS_INLINE
#endif

namespace dicyc::tps {

enum class PaddingMode { Zeros, Border };

namespace detail {

template <int Dim>
struct SampleSetup {
  Index C, N, P_in, P_out;
  std::array<Index, Dim> in_ext, out_ext, in_stride;
};

template <int Dim, class S>
SampleSetup<Dim> check_sampler(const char* op, const Shape<Dim + 2>& in, const Shape<Dim + 2>& grid,
                               const Shape<Dim + 2>* out) {
  DICYC_CHECK(grid[0] == Dim, ShapeError,
              op << ": expected a grid with " << Dim << " coordinate components first, shape [" << Dim
                 << ", out..., N], but got " << shape_str(grid));
  DICYC_CHECK(grid[Dim + 1] == in[Dim + 1], ShapeError,
              op << ": the grid's batch (" << grid[Dim + 1] << ") differs from the input's (" << in[Dim + 1]
                 << "); input " << shape_str(in) << ", grid " << shape_str(grid));
  SampleSetup<Dim> s;
  s.C = in[0];
  s.N = in[Dim + 1];
  s.P_in = s.P_out = 1;
  Index st = 1;
  for (int d = 0; d < Dim; ++d) {
    s.in_ext[d] = in[d + 1];
    s.out_ext[d] = grid[d + 1];
    s.in_stride[d] = st;
    st *= in[d + 1];
    s.P_in *= in[d + 1];
    s.P_out *= grid[d + 1];
  }
  DICYC_CHECK(s.C > 0 && s.P_in > 0 && s.N > 0, ShapeError, op << ": empty input of shape " << shape_str(in));
  if (out) {
    Shape<Dim + 2> e = grid;
    e[0] = s.C;
    DICYC_CHECK(*out == e, ShapeError,
                op << ": expected output of shape " << shape_str(e) << " (input channels, grid positions), but got "
                   << shape_str(*out));
  }
  return s;
}

/// The 2^Dim corners of one sampling position: flat voxel offsets (or -1 outside), weights, and
/// d weight / d index per axis; plus d index / d grid per axis (0 where Border clamped).
template <int Dim>
struct Corners {
  static constexpr int K = 1 << Dim;
  std::array<Index, K> off;
  std::array<double, K> w;
  std::array<std::array<double, Dim>, K> dw;
  std::array<double, Dim> dgrid;

  /// snap: how close (relative to the extent, in units of the grid scalar's epsilon) a coordinate
  /// must be to a pixel centre to be taken as it.
  DICYC_ALWAYS_INLINE void compute(const double* g, const SampleSetup<Dim>& s, PaddingMode pm, double snap,
                                   bool need_dw = true) {
    std::array<Index, Dim> i0;
    std::array<double, Dim> t;
    for (int d = 0; d < Dim; ++d) {
      const double n = double(s.in_ext[d]);
      double x = ((g[d] + 1.0) * n - 1.0) * 0.5;
      dgrid[d] = 0.5 * n;
      if (pm == PaddingMode::Border) {
        if (x < 0) {
          x = 0;
          dgrid[d] = 0;
        } else if (x > n - 1) {
          x = n - 1;
          dgrid[d] = 0;
        }
      }
      const double r = std::floor(x + 0.5);
      if (std::abs(x - r) <= snap * std::max(1.0, n)) x = r;
      const double f = std::floor(x);
      i0[d] = static_cast<Index>(f);
      t[d] = x - f;
    }
    if constexpr (Dim == 2) {
      // Unrolled: this runs once per sampled position.
      const Index x0 = i0[0], y0 = i0[1], W = s.in_ext[0], H = s.in_ext[1];
      const double tx = t[0], ty = t[1], ux = 1 - tx, uy = 1 - ty;
      const bool vx0 = x0 >= 0 && x0 < W, vx1 = x0 + 1 >= 0 && x0 + 1 < W;
      const bool vy0 = y0 >= 0 && y0 < H, vy1 = y0 + 1 >= 0 && y0 + 1 < H;
      const Index o = x0 + y0 * W;
      off[0] = vx0 && vy0 ? o : -1;
      off[1] = vx1 && vy0 ? o + 1 : -1;
      off[2] = vx0 && vy1 ? o + W : -1;
      off[3] = vx1 && vy1 ? o + W + 1 : -1;
      w[0] = ux * uy;
      w[1] = tx * uy;
      w[2] = ux * ty;
      w[3] = tx * ty;
      if (need_dw) {
        dw[0] = {-uy, -ux};
        dw[1] = {uy, -tx};
        dw[2] = {-ty, ux};
        dw[3] = {ty, tx};
      }
      return;
    }
    for (int k = 0; k < K; ++k) {
      double wk = 1;
      Index o = 0;
      bool inside = true;
      std::array<double, Dim> part;
      for (int d = 0; d < Dim; ++d) {
        const bool hi = (k >> d) & 1;
        const Index idx = i0[d] + (hi ? 1 : 0);
        inside = inside && idx >= 0 && idx < s.in_ext[d];
        o += idx * s.in_stride[d];
        part[d] = hi ? t[d] : 1 - t[d];
        wk *= part[d];
      }
      if (need_dw)
        for (int d = 0; d < Dim; ++d) {
          double v = ((k >> d) & 1) ? 1.0 : -1.0;
          for (int e = 0; e < Dim; ++e)
            if (e != d) v *= part[e];
          dw[k][d] = v;
        }
      // Weight-0 corners past the far edge (t = 0 at the last pixel) are skipped, not read.
      off[k] = inside ? o : -1;
      w[k] = wk;
    }
  }
};

/// 4 epsilons of the grid's scalar per pixel of extent (float's for half, whose grids cannot hold an
/// identity exactly anyway).
template <class S>
constexpr double snap_tolerance() {
  return std::is_same_v<S, double> ? 4 * 2.220446049250313e-16 : 4 * 1.1920928955078125e-07;
}

template <int Dim, class S, class Ctx>
void sample_forward_host(Ctx& ctx, const S* in, const S* grid, S* out, const SampleSetup<Dim>& s, PaddingMode pm) {
  using A = acc_t<S>;
  const Index C = s.C;
  const Index Q = s.P_out * s.N;
  auto body = [&](Index q0, Index q1) {
    Corners<Dim> cr;
    std::vector<A> acc(static_cast<std::size_t>(C));
    double g[Dim];
    Index n = q0 / s.P_out, next = (n + 1) * s.P_out;
    for (Index q = q0; q < q1; ++q) {
      if (q == next) {
        ++n;
        next += s.P_out;
      }
      for (int d = 0; d < Dim; ++d) g[d] = double(grid[q * Dim + d]);
      cr.compute(g, s, pm, snap_tolerance<S>(), false);
      const S* base = in + n * s.P_in * C;
      if (C == 1) {  // one channel: no accumulator array
        A v = 0;
        for (int k = 0; k < Corners<Dim>::K; ++k)
          if (cr.off[k] >= 0) v += A(cr.w[k]) * A(base[cr.off[k]]);
        out[q] = S(v);
        continue;
      }
      std::fill(acc.begin(), acc.end(), A(0));
      for (int k = 0; k < Corners<Dim>::K; ++k) {
        if (cr.off[k] < 0) continue;
        const A w = A(cr.w[k]);
        const S* src = base + cr.off[k] * C;
        for (Index c = 0; c < C; ++c) acc[c] += w * A(src[c]);
      }
      S* dst = out + q * C;
      for (Index c = 0; c < C; ++c) dst[c] = S(acc[c]);
    }
  };
  // NOTE(speed): a 1 x 128 x 128 image is too little work for the pool: waking it cost more than
  // it saved on 2 cores (0.19 ms against 0.155 ms serial), so small problems run serially.
  if (Q * C <= (Index(1) << 16))
    body(0, Q);
  else
    ctx.parallel_for(Q, double(C) * 20 + 100, body);
}

template <int Dim, class S, class Ctx>
void sample_backward_host(Ctx& ctx, const S* in, const S* grid, const S* dout, S* din, S* dgrid,
                          const SampleSetup<Dim>& s, PaddingMode pm) {
  using A = acc_t<S>;
  const Index C = s.C;
  const Index Q = s.P_out * s.N;
  // Few channels: one pass over fixed blocks of positions computes both gradients; each block
  // scatters its input gradient into a partial buffer of its own, and the partials are added in
  // block order (the same result for any thread count).
  // NOTE(speed): for small problems (1 x 128 x 128) the partial buffers and the pool cost more than
  // they save (0.34 ms on 2 threads against 0.22 ms serial), so those run as one serial block.
  const Index kBlock = Q * C <= (Index(1) << 18) ? std::max<Index>(Q, 1) : 4096;
  const Index nblk = (Q + kBlock - 1) / kBlock;
  if (din && C < 2 * ctx.num_threads() && nblk * C * s.P_in * s.N <= (Index(1) << 23)) {
    const Index n_in = C * s.P_in * s.N;
    std::vector<A> part(static_cast<std::size_t>(nblk > 1 ? nblk * n_in : 0));
    // always_inline: called from two places, GCC kept this lambda out of line, where the hot loop
    // ran 1.6x slower (0.36 against 0.22 ms for 1 x 128 x 128).
    auto body = [&](Index b0, Index b1) DICYC_ALWAYS_INLINE {
      Corners<Dim> cr;
      double g[Dim];
      for (Index b = b0; b < b1; ++b) {
        A* acc_in = nblk > 1 ? part.data() + b * n_in : nullptr;
        for (Index q = b * kBlock; q < std::min(Q, (b + 1) * kBlock); ++q) {
          const Index n = q / s.P_out;
          for (int d = 0; d < Dim; ++d) g[d] = double(grid[q * Dim + d]);
          cr.compute(g, s, pm, snap_tolerance<S>(), dgrid != nullptr);
          const S* base = in + n * s.P_in * C;
          const S* go = dout + q * C;
          std::array<A, Dim> acc{};
          for (int k = 0; k < Corners<Dim>::K; ++k) {
            if (cr.off[k] < 0) continue;
            const Index o = n * s.P_in * C + cr.off[k] * C;
            if (dgrid) {
              const S* src = base + cr.off[k] * C;
              A dot = 0;
              for (Index c = 0; c < C; ++c) dot += A(go[c]) * A(src[c]);
              for (int d = 0; d < Dim; ++d) acc[d] += dot * A(cr.dw[k][d]);
            }
            const A w = A(cr.w[k]);
            if (w == A(0)) continue;
            if (acc_in)
              for (Index c = 0; c < C; ++c) acc_in[o + c] += w * A(go[c]);
            else
              for (Index c = 0; c < C; ++c) din[o + c] = S(A(din[o + c]) + w * A(go[c]));
          }
          if (dgrid)
            for (int d = 0; d < Dim; ++d) dgrid[q * Dim + d] = S(A(dgrid[q * Dim + d]) + acc[d] * A(cr.dgrid[d]));
        }
      }
    };
    auto fold = [&](Index i0, Index i1) {
      for (Index i = i0; i < i1; ++i) {
        A t = A(din[i]);
        for (Index b = 0; b < nblk; ++b) t += part[b * n_in + i];
        din[i] = S(t);
      }
    };
    // NOTE(speed): small problems (1 x 128 x 128: 0.22 ms serial, 0.39 ms on the 2-thread pool)
    // run the same blocks serially: waking the pool costs more than it saves.
    const bool small = Q * C <= (Index(1) << 18);
    if (small)
      body(0, nblk);
    else
      ctx.parallel_for(nblk, double(kBlock) * (C * 30 + 150), body);
    if (nblk > 1) {
      if (small)
        fold(0, n_in);
      else
        ctx.parallel_for(n_in, double(nblk) * 2, fold);
    }
    return;
  }
  if (dgrid) {
    ctx.parallel_for(s.P_out * s.N, double(C) * 20 * Dim + 100, [&](Index q0, Index q1) {
      Corners<Dim> cr;
      double g[Dim];
      for (Index q = q0; q < q1; ++q) {
        const Index n = q / s.P_out;
        for (int d = 0; d < Dim; ++d) g[d] = double(grid[q * Dim + d]);
        cr.compute(g, s, pm, snap_tolerance<S>());
        const S* base = in + n * s.P_in * C;
        const S* go = dout + q * C;
        std::array<A, Dim> acc{};
        for (int k = 0; k < Corners<Dim>::K; ++k) {
          if (cr.off[k] < 0) continue;
          const S* src = base + cr.off[k] * C;
          A dot = 0;
          for (Index c = 0; c < C; ++c) dot += A(go[c]) * A(src[c]);
          for (int d = 0; d < Dim; ++d) acc[d] += dot * A(cr.dw[k][d]);
        }
        for (int d = 0; d < Dim; ++d)
          dgrid[q * Dim + d] = S(A(dgrid[q * Dim + d]) + acc[d] * A(cr.dgrid[d]));
      }
    });
  }
  if (din) {
    // Channel ranges in parallel: a thread owns its channels for every position, so nothing races.
    const Index blocks = C >= 2 * ctx.num_threads() ? C : 1;
    ctx.parallel_for(blocks, double(s.P_out * s.N) * 10 * C / double(blocks), [&](Index b0, Index b1) {
      const Index c0 = blocks == 1 ? 0 : b0, c1 = blocks == 1 ? C : b1;
      Corners<Dim> cr;
      double g[Dim];
      std::vector<A> tmp;
      for (Index q = 0; q < s.P_out * s.N; ++q) {
        const Index n = q / s.P_out;
        for (int d = 0; d < Dim; ++d) g[d] = double(grid[q * Dim + d]);
        cr.compute(g, s, pm, snap_tolerance<S>());
        S* base = din + n * s.P_in * C;
        const S* go = dout + q * C;
        for (int k = 0; k < Corners<Dim>::K; ++k) {
          if (cr.off[k] < 0 || cr.w[k] == 0) continue;
          const A w = A(cr.w[k]);
          S* dst = base + cr.off[k] * C;
          for (Index c = c0; c < c1; ++c) dst[c] = S(A(dst[c]) + w * A(go[c]));
        }
      }
    });
  }
}

}  // namespace detail

/// out(c, o, n) = input sampled at grid(:, o, n).
template <int Dim, class S, class Device>
void grid_sample_forward(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& input,
                         const ConstTensorMap<S, Dim + 2>& grid, TensorMap<S, Dim + 2>& out,
                         PaddingMode pm = PaddingMode::Border) {
  static_assert(Dim == 2 || Dim == 3, "grid_sample: 2-D or 3-D");
  const auto od = out.dimensions();
  const auto s = detail::check_sampler<Dim, S>("grid_sample", input.dimensions(), grid.dimensions(), &od);
  if constexpr (core::is_gpu_v<Device>) {
    const auto hi = core::to_host(ctx, input.data(), input.size());
    const auto hg = core::to_host(ctx, grid.data(), grid.size());
    std::vector<S> ho(static_cast<std::size_t>(out.size()));
    core::Context<Eigen::DefaultDevice> host;
    detail::sample_forward_host<Dim, S>(host, hi.data(), hg.data(), ho.data(), s, pm);
    ctx.device().memcpyHostToDevice(out.data(), ho.data(), sizeof(S) * ho.size());
    ctx.synchronize();
  } else {
    detail::sample_forward_host<Dim, S>(ctx, input.data(), grid.data(), out.data(), s, pm);
  }
}

/// dinput += d<out, dout>/d input, dgrid += d<out, dout>/d grid (null skips).
template <int Dim, class S, class Device>
void grid_sample_backward(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& input,
                          const ConstTensorMap<S, Dim + 2>& grid, const ConstTensorMap<S, Dim + 2>& dout,
                          nondeduced_t<TensorMap<S, Dim + 2>>* dinput, nondeduced_t<TensorMap<S, Dim + 2>>* dgrid,
                          PaddingMode pm = PaddingMode::Border) {
  static_assert(Dim == 2 || Dim == 3, "grid_sample: 2-D or 3-D");
  const auto od = dout.dimensions();
  const auto s = detail::check_sampler<Dim, S>("grid_sample", input.dimensions(), grid.dimensions(), &od);
  if (dinput)
    DICYC_CHECK(dinput->dimensions() == input.dimensions(), ShapeError,
                "grid_sample: expected input gradient of shape " << shape_str(input.dimensions()) << ", but got "
                                                                 << shape_str(dinput->dimensions()));
  if (dgrid)
    DICYC_CHECK(dgrid->dimensions() == grid.dimensions(), ShapeError,
                "grid_sample: expected grid gradient of shape " << shape_str(grid.dimensions()) << ", but got "
                                                                << shape_str(dgrid->dimensions()));
  if constexpr (core::is_gpu_v<Device>) {
    const auto hi = core::to_host(ctx, input.data(), input.size());
    const auto hg = core::to_host(ctx, grid.data(), grid.size());
    const auto hd = core::to_host(ctx, dout.data(), dout.size());
    std::vector<S> di(dinput ? input.size() : 0, S(0)), dg(dgrid ? grid.size() : 0, S(0));
    core::Context<Eigen::DefaultDevice> host;
    detail::sample_backward_host<Dim, S>(host, hi.data(), hg.data(), hd.data(), dinput ? di.data() : nullptr,
                                         dgrid ? dg.data() : nullptr, s, pm);
    if (dinput) core::add_from_host(ctx, di, dinput->data());
    if (dgrid) core::add_from_host(ctx, dg, dgrid->data());
  } else {
    detail::sample_backward_host<Dim, S>(ctx, input.data(), grid.data(), dout.data(),
                                         dinput ? dinput->data() : nullptr, dgrid ? dgrid->data() : nullptr, s, pm);
  }
}

}  // namespace dicyc::tps
