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
// One channel has its own kernels, vectorised over positions.
// GPU contexts go through the host for now (copies both ways).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
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
      // A NaN or infinite coordinate makes the fraction NaN (so the output and gradients are NaN,
      // not a quiet clamp or zero); a finite coordinate is brought into [-2, n + 1] so the integer
      // conversion below is defined (beyond one pixel outside, both corners are outside anyway).
      const double bad = x - x;
      x = bad == 0 ? std::min(std::max(x, -2.0), n + 1.0) : 0.0;  // 0: a corner inside, to carry the NaN
      // Snap before the clamp, so a position at the last pixel centre is not taken as clamped
      // (whose gradient is 0) because of a rounding error in its coordinate.
      const double r = std::floor(x + 0.5);
      if (std::abs(x - r) <= snap * std::max(1.0, n)) x = r;
      if (pm == PaddingMode::Border) {
        if (x < 0) {
          x = 0;
          dgrid[d] = 0;
        } else if (x > n - 1) {
          x = n - 1;
          dgrid[d] = 0;
        }
      }
      const double f = std::floor(x);
      i0[d] = static_cast<Index>(f);
      t[d] = (x - f) + bad;
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
    } else {
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
  }
};

/// 4 epsilons of the grid's scalar per pixel of extent (float's for half, whose grids cannot hold an
/// identity exactly anyway).
template <class S>
constexpr double snap_tolerance() {
  return std::is_same_v<S, double> ? 4 * 2.220446049250313e-16 : 4 * 1.1920928955078125e-07;
}

// ---- One-channel kernels --------------------------------------------------------------------
// The image-level samplers (the first offset branch warps the 1-channel input, the simulator warps
// images and volumes) have one channel, where the per-position setup is all the work. These loops
// are branch-free so the compiler vectorises them over positions (gathers for the corners), in the
// accumulation type (float for float and half, as PyTorch; double for double). The input-gradient
// scatter runs as a separate scalar pass over a chunk, since neighbouring positions share corners.

/// One axis of one position: the lower corner index clamped into the input, the upper one, the
/// fraction, the masks of the two corners (1 inside, 0 outside; always 1 for Border), and
/// d index / d grid (0 where Border clamped).
template <class A>
struct AxisPos {
  int i0, i1;
  A t, m0, m1, ds;
};

template <bool border, class A>
DICYC_ALWAYS_INLINE inline AxisPos<A> axis_pos(A g, int n, A tol) {
  const A nf = A(n);
  A x = ((g + A(1)) * nf - A(1)) * A(0.5);
  A ds = A(0.5) * nf;
  // 0 for a finite coordinate and NaN otherwise: added to the fraction, it makes a NaN or infinite
  // coordinate give a NaN output and gradient instead of a quiet clamp.
  const A bad = x - x;
  // Into [-2, n + 1] first (NaN to -2), which keeps the integer conversions below defined; beyond
  // one pixel outside, both corners are outside anyway. std::floor is not used: GCC vectorises it
  // only under -fno-trapping-math, while truncation of a positive value is the floor.
  x = !(x >= A(-2)) ? A(-2) : x;
  x = x > nf + A(1) ? nf + A(1) : x;
  // Snap first, as Corners::compute.
  const A r = A(int(x + A(2.5)) - 2);
  x = std::abs(x - r) <= tol ? r : x;
  if constexpr (border) {
    // Bitwise, not short-circuit: control flow stops the vectoriser.
    const bool out = (x < A(0)) | (x > nf - A(1));
    ds = out ? A(0) : ds;
    x = std::max(x, A(0));
    x = std::min(x, nf - A(1));
  }
  const int i = int(x + A(2)) - 2;
  AxisPos<A> p;
  p.t = (x - A(i)) + bad;
  p.m0 = unsigned(i) < unsigned(n) ? A(1) : A(0);
  p.m1 = unsigned(i + 1) < unsigned(n) ? A(1) : A(0);
  p.i0 = std::min(std::max(i, 0), n - 1);
  p.i1 = std::min(std::max(i + 1, 0), n - 1);
  p.ds = ds;
  return p;
}

/// Sizes the one-channel kernels handle: 32-bit offsets inside one sample.
template <int Dim>
bool c1_fits(const SampleSetup<Dim>& s) {
  return s.C == 1 && s.P_in < (Index(1) << 30);
}

/// Corner indices (within one sample), weights (masked: 0 for an outside corner) and the per-axis
/// fractions and d index / d grid of up to kC1Chunk positions. Filled by a loop the compiler
/// vectorises; the gathers and scatters that use it are separate scalar loops (GCC's x86 tuning
/// does not vectorise gathers).
constexpr Index kC1Chunk = 128;
template <int Dim, class A>
struct C1Chunk {
  static constexpr int K = 1 << Dim;
  alignas(64) int idx[K][kC1Chunk];
  alignas(64) A w[K][kC1Chunk];
  alignas(64) A m[K][kC1Chunk];
  alignas(64) A t[Dim][kC1Chunk];
  alignas(64) A ds[Dim][kC1Chunk];
  alignas(64) A v[K][kC1Chunk];

  template <bool border, class S>
  void setup(const S* gq, Index count, const int* n_, const A* tol_, bool need_grad) {
    if constexpr (Dim == 2) {
      const int W = n_[0], H = n_[1];
      const A tx_ = tol_[0], ty_ = tol_[1];
      for (Index j = 0; j < count; ++j) {
        const auto px = axis_pos<border, A>(A(gq[2 * j]), W, tx_);
        const auto py = axis_pos<border, A>(A(gq[2 * j + 1]), H, ty_);
        const A wx0 = (A(1) - px.t) * px.m0, wx1 = px.t * px.m1;
        const A wy0 = (A(1) - py.t) * py.m0, wy1 = py.t * py.m1;
        const int r0 = py.i0 * W, r1 = py.i1 * W;
        idx[0][j] = r0 + px.i0;
        idx[1][j] = r0 + px.i1;
        idx[2][j] = r1 + px.i0;
        idx[3][j] = r1 + px.i1;
        w[0][j] = wx0 * wy0;
        w[1][j] = wx1 * wy0;
        w[2][j] = wx0 * wy1;
        w[3][j] = wx1 * wy1;
        if (need_grad) {
          m[0][j] = px.m0 * py.m0;
          m[1][j] = px.m1 * py.m0;
          m[2][j] = px.m0 * py.m1;
          m[3][j] = px.m1 * py.m1;
          t[0][j] = px.t;
          t[1][j] = py.t;
          ds[0][j] = px.ds;
          ds[1][j] = py.ds;
        }
      }
    } else {
      const int W = n_[0], H = n_[1], D = n_[2];
      const int WH = W * H;
      for (Index j = 0; j < count; ++j) {
        const auto px = axis_pos<border, A>(A(gq[3 * j]), W, tol_[0]);
        const auto py = axis_pos<border, A>(A(gq[3 * j + 1]), H, tol_[1]);
        const auto pz = axis_pos<border, A>(A(gq[3 * j + 2]), D, tol_[2]);
        const A wx0 = (A(1) - px.t) * px.m0, wx1 = px.t * px.m1;
        const A wy0 = (A(1) - py.t) * py.m0, wy1 = py.t * py.m1;
        const A wz0 = (A(1) - pz.t) * pz.m0, wz1 = pz.t * pz.m1;
        const int a00 = py.i0 * W + pz.i0 * WH, a10 = py.i1 * W + pz.i0 * WH;
        const int a01 = py.i0 * W + pz.i1 * WH, a11 = py.i1 * W + pz.i1 * WH;
        idx[0][j] = a00 + px.i0;
        idx[1][j] = a00 + px.i1;
        idx[2][j] = a10 + px.i0;
        idx[3][j] = a10 + px.i1;
        idx[4][j] = a01 + px.i0;
        idx[5][j] = a01 + px.i1;
        idx[6][j] = a11 + px.i0;
        idx[7][j] = a11 + px.i1;
        w[0][j] = wx0 * wy0 * wz0;
        w[1][j] = wx1 * wy0 * wz0;
        w[2][j] = wx0 * wy1 * wz0;
        w[3][j] = wx1 * wy1 * wz0;
        w[4][j] = wx0 * wy0 * wz1;
        w[5][j] = wx1 * wy0 * wz1;
        w[6][j] = wx0 * wy1 * wz1;
        w[7][j] = wx1 * wy1 * wz1;
        if (need_grad) {
          const A mxy00 = px.m0 * py.m0, mxy10 = px.m1 * py.m0, mxy01 = px.m0 * py.m1, mxy11 = px.m1 * py.m1;
          m[0][j] = mxy00 * pz.m0;
          m[1][j] = mxy10 * pz.m0;
          m[2][j] = mxy01 * pz.m0;
          m[3][j] = mxy11 * pz.m0;
          m[4][j] = mxy00 * pz.m1;
          m[5][j] = mxy10 * pz.m1;
          m[6][j] = mxy01 * pz.m1;
          m[7][j] = mxy11 * pz.m1;
          t[0][j] = px.t;
          t[1][j] = py.t;
          t[2][j] = pz.t;
          ds[0][j] = px.ds;
          ds[1][j] = py.ds;
          ds[2][j] = pz.ds;
        }
      }
    }
  }
};

/// Walks [q0, q1) in chunks of at most kC1Chunk positions of one sample n: sets each chunk up
/// (corners, weights; with need_grad also the masks, fractions and d index / d grid) and calls
/// f(chunk, n, q, m) for positions [q, q + m).
template <int Dim, bool border, class S, class F>
void c1_chunks(const SampleSetup<Dim>& s, const S* grid, Index q0, Index q1, bool need_grad, F&& f) {
  using A = acc_t<S>;
  int n_[Dim];
  A tol_[Dim];
  for (int d = 0; d < Dim; ++d) {
    n_[d] = int(s.in_ext[d]);
    tol_[d] = A(snap_tolerance<S>() * std::max<double>(1.0, double(s.in_ext[d])));
  }
  auto ch = std::make_unique<C1Chunk<Dim, A>>();  // about 10-40 KB: not on the stack
  for (Index q = q0; q < q1;) {
    const Index n = q / s.P_out;
    const Index qe = std::min({q1, (n + 1) * s.P_out, q + kC1Chunk});
    ch->template setup<border>(grid + q * Dim, qe - q, n_, tol_, need_grad);
    f(*ch, n, q, qe - q);
    q = qe;
  }
}

/// out[q] for q in [q0, q1) (positions across the batch).
template <int Dim, bool border, class S>
void c1_forward_impl(const S* in, const S* grid, S* out, const SampleSetup<Dim>& s, Index q0, Index q1) {
  using A = acc_t<S>;
  constexpr int K = 1 << Dim;
  c1_chunks<Dim, border>(s, grid, q0, q1, false, [&](C1Chunk<Dim, A>& ch, Index n, Index q, Index m) {
    const S* base = in + n * s.P_in;
    for (Index j = 0; j < m; ++j) {
      A v = 0;
      for (int k = 0; k < K; ++k) v += ch.w[k][j] * A(base[ch.idx[k][j]]);
      out[q + j] = S(v);
    }
  });
}

/// The backward of c1_forward over [q0, q1): dgrid[q] += (null skips), and the input gradient
/// scattered into din (null skips).
template <int Dim, bool border, class S>
void c1_backward_impl(const S* in, const S* grid, const S* dout, S* din, S* dgrid, const SampleSetup<Dim>& s,
                      Index q0, Index q1) {
  using A = acc_t<S>;
  constexpr int K = 1 << Dim;
  c1_chunks<Dim, border>(s, grid, q0, q1, dgrid != nullptr, [&](C1Chunk<Dim, A>& ch, Index n, Index q, Index m) {
    const S* base = in + n * s.P_in;
    const S* go = dout + q;
    if (dgrid) {
      for (int k = 0; k < K; ++k)
        for (Index j = 0; j < m; ++j) ch.v[k][j] = A(base[ch.idx[k][j]]) * ch.m[k][j];
      S* dg = dgrid + q * Dim;
      if constexpr (Dim == 2) {
        for (Index j = 0; j < m; ++j) {
          const A tx = ch.t[0][j], ty = ch.t[1][j], ux = A(1) - tx, uy = A(1) - ty, g = A(go[j]);
          const A v00 = ch.v[0][j], v10 = ch.v[1][j], v01 = ch.v[2][j], v11 = ch.v[3][j];
          const A dtx = uy * (v10 - v00) + ty * (v11 - v01);
          const A dty = ux * (v01 - v00) + tx * (v11 - v10);
          dg[2 * j] = S(A(dg[2 * j]) + g * dtx * ch.ds[0][j]);
          dg[2 * j + 1] = S(A(dg[2 * j + 1]) + g * dty * ch.ds[1][j]);
        }
      } else {
        for (Index j = 0; j < m; ++j) {
          const A tx = ch.t[0][j], ty = ch.t[1][j], tz = ch.t[2][j], g = A(go[j]);
          const A ux = A(1) - tx, uy = A(1) - ty, uz = A(1) - tz;
          // v<x><y><z>: the masked corner values.
          const A v000 = ch.v[0][j], v100 = ch.v[1][j], v010 = ch.v[2][j], v110 = ch.v[3][j];
          const A v001 = ch.v[4][j], v101 = ch.v[5][j], v011 = ch.v[6][j], v111 = ch.v[7][j];
          const A dtx =
              uz * (uy * (v100 - v000) + ty * (v110 - v010)) + tz * (uy * (v101 - v001) + ty * (v111 - v011));
          const A dty =
              uz * (ux * (v010 - v000) + tx * (v110 - v100)) + tz * (ux * (v011 - v001) + tx * (v111 - v101));
          const A dtz =
              uy * (ux * (v001 - v000) + tx * (v101 - v100)) + ty * (ux * (v011 - v010) + tx * (v111 - v110));
          dg[3 * j] = S(A(dg[3 * j]) + g * dtx * ch.ds[0][j]);
          dg[3 * j + 1] = S(A(dg[3 * j + 1]) + g * dty * ch.ds[1][j]);
          dg[3 * j + 2] = S(A(dg[3 * j + 2]) + g * dtz * ch.ds[2][j]);
        }
      }
    }
    if (din) {
      S* a = din + n * s.P_in;
      for (Index j = 0; j < m; ++j) {
        const A g = A(go[j]);
        for (int k = 0; k < K; ++k) {
          const A w = ch.w[k][j];
          if (w != A(0)) a[ch.idx[k][j]] = S(A(a[ch.idx[k][j]]) + w * g);
        }
      }
    }
  });
}

template <int Dim, class S>
void c1_forward(const S* in, const S* grid, S* out, const SampleSetup<Dim>& s, PaddingMode pm, Index q0, Index q1) {
  if (pm == PaddingMode::Border)
    c1_forward_impl<Dim, true>(in, grid, out, s, q0, q1);
  else
    c1_forward_impl<Dim, false>(in, grid, out, s, q0, q1);
}

template <int Dim, class S>
void c1_backward(const S* in, const S* grid, const S* dout, S* din, S* dgrid, const SampleSetup<Dim>& s,
                 PaddingMode pm, Index q0, Index q1) {
  if (pm == PaddingMode::Border)
    c1_backward_impl<Dim, true>(in, grid, dout, din, dgrid, s, q0, q1);
  else
    c1_backward_impl<Dim, false>(in, grid, dout, din, dgrid, s, q0, q1);
}

template <int Dim, class S, class Ctx>
void sample_forward_host(Ctx& ctx, const S* in, const S* grid, S* out, const SampleSetup<Dim>& s, PaddingMode pm) {
  using A = acc_t<S>;
  const Index C = s.C;
  const Index Q = s.P_out * s.N;
  if (c1_fits(s)) {
    // NOTE(speed): a 1 x 128 x 128 image is too little work for the pool (waking it costs more
    // than the loop), so small problems run serially.
    if (Q <= (Index(1) << 16))
      c1_forward<Dim, S>(in, grid, out, s, pm, 0, Q);
    else
      ctx.parallel_for(Q, 30.0 * Dim, [&](Index q0, Index q1) { c1_forward<Dim, S>(in, grid, out, s, pm, q0, q1); });
    return;
  }
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
  if (c1_fits(s)) {
    // Small problems: one serial pass. Large ones: the grid gradient (most of the work) in
    // parallel, then the input-gradient scatter serially, which gives the same sums for any
    // thread count without a partial buffer per block.
    if (Q <= (Index(1) << 16) || (!dgrid && din)) {
      c1_backward<Dim, S>(in, grid, dout, din, dgrid, s, pm, 0, Q);
    } else {
      ctx.parallel_for(Q, 40.0 * Dim, [&](Index q0, Index q1) {
        c1_backward<Dim, S>(in, grid, dout, nullptr, dgrid, s, pm, q0, q1);
      });
      if (din) c1_backward<Dim, S>(in, grid, dout, din, nullptr, s, pm, 0, Q);
    }
    return;
  }
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
  // Channels enough for a split: positions in chunks of kTable. Per chunk, one parallel pass over
  // its positions computes each position's corners once (and the grid gradient) and keeps the
  // input-gradient offsets and weights in a table; then the input gradient is scattered from the
  // table in parallel over channel ranges (a thread owns its channels, so nothing races). Each
  // channel's sums run in position order, as in a serial loop: any thread count gives the same
  // bits. (The scatter recomputed every position's corners once per channel block, which made it
  // 8 % of the 3-D NMI-DiCyc step.)
  constexpr int K = Corners<Dim>::K;
  constexpr Index kTable = 8192;
  const Index chunk = din ? std::min(Q, kTable) : Q;
  const Index ranges = din ? std::min<Index>(ctx.num_threads(), std::max<Index>(1, C / 2)) : 1;
  std::vector<Index> toff(din ? static_cast<std::size_t>(chunk * K) : 0);
  std::vector<A> tw(toff.size());
  for (Index qc = 0; qc < Q; qc += chunk) {
    const Index m = std::min(chunk, Q - qc);
    ctx.parallel_for(m, (dgrid ? double(C) * 20 * Dim : 0.0) + 40.0 * Dim + 20, [&](Index j0, Index j1) {
      Corners<Dim> cr;
      double g[Dim];
      for (Index j = j0; j < j1; ++j) {
        const Index q = qc + j;
        const Index n = q / s.P_out;
        for (int d = 0; d < Dim; ++d) g[d] = double(grid[q * Dim + d]);
        cr.compute(g, s, pm, snap_tolerance<S>(), dgrid != nullptr);
        if (dgrid) {
          const S* base = in + n * s.P_in * C;
          const S* go = dout + q * C;
          std::array<A, Dim> acc{};
          for (int k = 0; k < K; ++k) {
            if (cr.off[k] < 0) continue;
            const S* src = base + cr.off[k] * C;
            A dot = 0;
            for (Index c = 0; c < C; ++c) dot += A(go[c]) * A(src[c]);
            for (int d = 0; d < Dim; ++d) acc[d] += dot * A(cr.dw[k][d]);
          }
          for (int d = 0; d < Dim; ++d)
            dgrid[q * Dim + d] = S(A(dgrid[q * Dim + d]) + acc[d] * A(cr.dgrid[d]));
        }
        if (din)
          for (int k = 0; k < K; ++k) {
            const bool skip = cr.off[k] < 0 || cr.w[k] == 0;
            toff[j * K + k] = skip ? -1 : n * s.P_in * C + cr.off[k] * C;
            tw[j * K + k] = A(cr.w[k]);
          }
      }
    });
    if (!din) continue;
    ctx.parallel_for(ranges, double(m) * K * (double(C) / double(ranges) * 2 + 2), [&](Index r0, Index r1) {
      const Index c0 = r0 * C / ranges, c1 = r1 * C / ranges;
      for (Index j = 0; j < m; ++j) {
        const S* go = dout + (qc + j) * C;
        for (int k = 0; k < K; ++k) {
          const Index o = toff[j * K + k];
          if (o < 0) continue;
          const A w = tw[j * K + k];
          S* dst = din + o;
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
