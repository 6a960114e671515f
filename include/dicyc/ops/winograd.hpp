// dicyc/ops/winograd.hpp -- Winograd F(4x4, 3x3) for the stride-1 3x3 2-D convolutions on the CPU
// (the residual blocks' convs, which carry most of a 2-D generator's multiply-adds), and
// F(2x2x2, 3x3x3) for the 3-D ones (further down).
//
// Each 4x4 output tile is A^T [ (G g G^T) (.) (B^T d B) ] A for its 6x6 input tile d (Lavin &
// Gray, "Fast Algorithms for Convolutional Neural Networks", 2016; interpolation points 0, +-1,
// +-2 and infinity). Summed over the input channels, each of the 36 transformed positions xi is
// one GEMM, M_xi (Cout x T) = U_xi (Cout x Cin) V_xi (Cin x T), over the T tiles: 36 * 2 * Cout *
// Cin * T flops against 9 * 16 * 2 * Cout * Cin * T for the direct product, 4x fewer.
//   forward       y  = A^T M A,  M_xi = U_xi V_xi                 (V from x, U from w)
//   input grad    the forward on dy with the kernel flipped and its two channel axes swapped,
//                 padding 2 - p (the transposed conv of a stride-1 conv is a conv); the swap is a
//                 transposed operand of the GEMMs, not a copy
//   weight grad   the exact adjoint of the forward in w: dU_xi += dM_xi V_xi^T with dM = A dY A^T
//                 per tile, then dw += G^T dU G
// The tensors keep the library's layout (channels fastest), so every transform is a short
// sequence of axpys on contiguous channel vectors. Tiles are taken in blocks bounded by the
// workspace limit; the transforms are split over the pool by tiles, the GEMMs by positions xi
// (one position per task, each on one thread), so the result does not depend on the thread
// count. Edge tiles read zeros outside the input and drop the outputs past the edge.
// Accuracy: F(4x4, 3x3) in float has errors of a few 1e-6 relative to the output's scale,
// against ~1e-7 for the im2col path (tests/test_conv.cpp measures both against double).
// ops::plan_conv() decides which convs use it; a context with set_winograd(false) keeps every conv
// on im2col.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "dicyc/core/buffer.hpp"
#include "dicyc/core/context.hpp"
#include "dicyc/ops/gemm.hpp"

namespace dicyc::ops {

namespace detail {

struct WinogradF43 {
  static constexpr int kTile = 6, kOut = 4, kTaps = 3, kPos = 36;
  // Row-major. B^T (6 x 6), G (6 x 3), A^T (4 x 6), and the transposes the adjoints use.
  static constexpr double BT[36] = {4, 0,  -5, 0,  1, 0, 0, -4, -4, 1, 1, 0, 0, 4, -4, -1, 1, 0,
                                    0, -2, -1, 2,  1, 0, 0, 2,  -1, -2, 1, 0, 0, 4, 0,  -5, 0, 1};
  static constexpr double G[18] = {1.0 / 4,  0,         0,         -1.0 / 6, -1.0 / 6, -1.0 / 6,
                                   -1.0 / 6, 1.0 / 6,   -1.0 / 6,  1.0 / 24, 1.0 / 12, 1.0 / 6,
                                   1.0 / 24, -1.0 / 12, 1.0 / 6,   0,        0,        1};
  static constexpr double GT[18] = {1.0 / 4, -1.0 / 6, -1.0 / 6, 1.0 / 24, 1.0 / 24,  0,
                                    0,       -1.0 / 6, 1.0 / 6,  1.0 / 12, -1.0 / 12, 0,
                                    0,       -1.0 / 6, -1.0 / 6, 1.0 / 6,  1.0 / 6,   1};
  static constexpr double AT[24] = {1, 1, 1, 1, 1, 0, 0, 1, -1, 2, -2, 0, 0, 1, 1, 4, 4, 0, 0, 1, -1, 8, -8, 1};
  static constexpr double A[24] = {1, 0, 0, 0, 1, 1, 1, 1, 1, -1, 1, -1, 1, 2, 4, 8, 1, -2, 4, -8, 0, 0, 0, 1};
};

/// out(a, b) (+)= sum_{p, q} Ma[a][p] Mb[b][q] in(p, q) on vectors of length L: the separable 2-D
/// transform every Winograd stage is. in(p, q) may return null (a zero vector: outside the
/// image); out(a, b) may return null (a dropped output). tmp holds na * nq * kTransformChunk
/// values: the vectors go kTransformChunk entries at a time, so the intermediate stays within
/// 36 KiB at any channel count (bench_ops' conv_winograd: chunks of 64 ran 25-40 % slower than
/// 256; 256 and 2048 were equal within the noise).
constexpr Index kTransformChunk = 256;

template <class S, class In, class Out>
void separable_transform(Index L, int na, int np, const double* Ma, int nb, int nq, const double* Mb, In&& in,
                         Out&& out, bool accumulate, S* tmp) {
  using Arr = Eigen::Array<S, Eigen::Dynamic, 1>;
  const S* src[8 * 8];
  for (int q = 0; q < nq; ++q)
    for (int p = 0; p < np; ++p) src[p + np * q] = in(p, q);
  S* dst[8 * 8];
  for (int b = 0; b < nb; ++b)
    for (int a = 0; a < na; ++a) dst[a + na * b] = out(a, b);
  for (Index e0 = 0; e0 < L; e0 += kTransformChunk) {
    const Index n = std::min(kTransformChunk, L - e0);
    for (int q = 0; q < nq; ++q) {
      for (int a = 0; a < na; ++a) {
        Eigen::Map<Arr> t(tmp + (a * nq + q) * kTransformChunk, n);
        bool any = false;
        for (int p = 0; p < np; ++p) {
          const double c = Ma[a * np + p];
          const S* sp = src[p + np * q];
          if (c == 0 || !sp) continue;
          const Eigen::Map<const Arr> v(sp + e0, n);
          if (any) t += S(c) * v;
          else t = S(c) * v;
          any = true;
        }
        if (!any) t.setZero();
      }
    }
    for (int a = 0; a < na; ++a)
      for (int b = 0; b < nb; ++b) {
        S* o = dst[a + na * b];
        if (!o) continue;
        Eigen::Map<Arr> O(o + e0, n);
        bool first = !accumulate;
        for (int q = 0; q < nq; ++q) {
          const double c = Mb[b * nq + q];
          if (c == 0) continue;
          const Eigen::Map<const Arr> v(tmp + (a * nq + q) * kTransformChunk, n);
          if (first) O = S(c) * v;
          else O += S(c) * v;
          first = false;
        }
        if (first) O.setZero();
      }
  }
}

/// Tiling of a stride-1 3x3 conv from x (C_in, W, H, N) to y (C_out, OW, OH, N), output (i, j)
/// reading input (i - px + k1, j - py + k2).
struct WinogradTiling {
  Index W, H, N, OW, OH, px, py, tx, ty;
  Index tiles() const { return tx * ty * N; }
  void decode(Index t, Index& i0, Index& j0, Index& n) const {
    n = t / (tx * ty);
    const Index r = t % (tx * ty);
    i0 = 4 * (r % tx);
    j0 = 4 * (r / tx);
  }
};

inline WinogradTiling winograd_tiling(const Shape<4>& in, const Shape<4>& out, Index px, Index py) {
  WinogradTiling g{in[1], in[2], in[3], out[1], out[2], px, py, (out[1] + 3) / 4, (out[2] + 3) / 4};
  return g;
}

/// Tiles per block: what fits in the workspace limit (V and M, `positions` vectors each, 36 in
/// 2-D and 64 in 3-D), at least 1.
template <class S, class Device>
Index winograd_block(const Context<Device>& ctx, Index cin, Index cout, Index tiles, Index positions = 36) {
  const std::size_t per = std::size_t(positions) * std::size_t(cin + cout) * sizeof(S);
  const std::size_t lim = std::min<std::size_t>(ctx.workspace_limit(), std::size_t(32) << 20);
  return std::max<Index>(1, std::min<Index>(tiles, static_cast<Index>(lim / per)));
}

/// V[xi][tb][c] = (B^T d B)[xi] for the block's tiles t0 .. t0 + nb of x (C channels).
template <class S, class Device>
void winograd_input(Context<Device>& ctx, const WinogradTiling& g, const S* x, Index C, Index t0, Index nb, Index TB,
                    S* V) {
  using W = WinogradF43;
  ctx.parallel_for(nb, 40.0 * 36 * double(C), [&](Index b0, Index b1) {
    core::Buffer<S, Device> tmp(ctx, 36 * kTransformChunk);
    for (Index tb = b0; tb < b1; ++tb) {
      Index i0, j0, n;
      g.decode(t0 + tb, i0, j0, n);
      const Index ix0 = i0 - g.px, iy0 = j0 - g.py;
      separable_transform<S>(
          C, 6, 6, W::BT, 6, 6, W::BT,
          [&](int p, int q) -> const S* {
            const Index ix = ix0 + p, iy = iy0 + q;
            if (ix < 0 || ix >= g.W || iy < 0 || iy >= g.H) return nullptr;
            return x + C * (ix + g.W * (iy + g.H * n));
          },
          [&](int a, int b) -> S* { return V + ((a + 6 * b) * TB + tb) * C; }, false, tmp.data());
    }
  });
}

/// A separable transform of a whole kernel (cc = cout * cin values per position), split over the
/// pool in chunks of 2048 channel pairs: the weight transform and its adjoint.
template <class S, class Device, class In, class Out>
void kernel_transform(Context<Device>& ctx, Index cc, int na, int np, const double* Ma, int nb, int nq,
                      const double* Mb, In&& in, Out&& out, bool accumulate) {
  constexpr Index kChunk = 2048;
  const Index chunks = (cc + kChunk - 1) / kChunk;
  ctx.parallel_for(chunks, 40.0 * 36 * kChunk, [&](Index c0, Index c1) {
    core::Buffer<S, Device> tmp(ctx, na * nq * kTransformChunk);
    for (Index c = c0; c < c1; ++c) {
      const Index e0 = c * kChunk, L = std::min(kChunk, cc - e0);
      separable_transform<S>(
          L, na, np, Ma, nb, nq, Mb, [&](int p, int q) -> const S* { return in(p, q) + e0; },
          [&](int a, int b) -> S* { return out(a, b) + e0; }, accumulate, tmp.data());
    }
  });
}

/// U[xi] (cout x cin, column-major) = (G g G^T)[xi] for a kernel whose tap (k1, k2) is the
/// cout x cin matrix at tap(k1, k2).
template <class S, class Device, class Tap>
void winograd_weights(Context<Device>& ctx, Index cc, Tap&& tap, S* U) {
  using W = WinogradF43;
  kernel_transform<S>(
      ctx, cc, 6, 3, W::G, 6, 3, W::G, [&](int p, int q) -> const S* { return tap(p, q); },
      [&](int a, int b) -> S* { return U + (a + 6 * b) * cc; }, false);
}

/// y (+)= conv(x, w) for a stride-1 3x3 kernel with zero padding (px, py). x (cin, W, H, N), y
/// (cout, OW, OH, N); the kernel is given by tap(k1, k2), the cout x cin matrix of that tap
/// (column-major), or with taps_transposed its cin x cout transpose -- the input gradient's
/// kernel as the conv's weight stores it, so that no transposed copy of the weight is made.
template <class S, class Device, class Tap>
void winograd_conv2d(Context<Device>& ctx, const S* x, const Shape<4>& xs, Index cout, Tap&& tap, S* y,
                     const Shape<4>& ys, Index px, Index py, bool accumulate, bool taps_transposed = false) {
  using W = WinogradF43;
  const Index cin = xs[0], cc = cout * cin;
  const auto g = winograd_tiling(xs, ys, px, py);
  core::Buffer<S, Device> U(ctx, 36 * cc);
  winograd_weights<S>(ctx, cc, tap, U.data());
  const Index T = g.tiles(), TB = winograd_block<S>(ctx, cin, cout, T);
  core::Buffer<S, Device> V(ctx, 36 * TB * cin), M(ctx, 36 * TB * cout);
  for (Index t0 = 0; t0 < T; t0 += TB) {
    const Index nb = std::min(TB, T - t0);
    winograd_input<S>(ctx, g, x, cin, t0, nb, TB, V.data());
    ctx.parallel_for(36, 1e9, [&](Index x0, Index x1) {
      for (Index xi = x0; xi < x1; ++xi)
        gemm_serial<S>(taps_transposed, false, cout, nb, cin, U.data() + xi * cc, taps_transposed ? cin : cout,
                       V.data() + xi * TB * cin, cin, M.data() + xi * TB * cout, cout, 1.0f, 0.0f);
    });
    ctx.parallel_for(nb, 40.0 * 36 * double(cout), [&](Index b0, Index b1) {
      core::Buffer<S, Device> tmp(ctx, 24 * kTransformChunk);
      for (Index tb = b0; tb < b1; ++tb) {
        Index i0, j0, n;
        g.decode(t0 + tb, i0, j0, n);
        separable_transform<S>(
            cout, 4, 6, W::AT, 4, 6, W::AT,
            [&](int p, int q) -> const S* { return M.data() + ((p + 6 * q) * TB + tb) * cout; },
            [&](int a, int b) -> S* {
              const Index i = i0 + a, j = j0 + b;
              if (i >= g.OW || j >= g.OH) return nullptr;
              return y + cout * (i + g.OW * (j + g.OH * n));
            },
            accumulate, tmp.data());
      }
    });
  }
}

/// dw (cout, cin, 3, 3) += the weight gradient of <conv(x, w), dy> (stride 1, padding px, py).
template <class S, class Device>
void winograd_wgrad2d(Context<Device>& ctx, const S* x, const Shape<4>& xs, const S* dy, const Shape<4>& ys, S* dw,
                      Index px, Index py) {
  using W = WinogradF43;
  const Index cin = xs[0], cout = ys[0], cc = cout * cin;
  const auto g = winograd_tiling(xs, ys, px, py);
  const Index T = g.tiles(), TB = winograd_block<S>(ctx, cin, cout, T);
  core::Buffer<S, Device> dU(ctx, 36 * cc), V(ctx, 36 * TB * cin), dM(ctx, 36 * TB * cout);
  for (Index t0 = 0; t0 < T; t0 += TB) {
    const Index nb = std::min(TB, T - t0);
    winograd_input<S>(ctx, g, x, cin, t0, nb, TB, V.data());
    ctx.parallel_for(nb, 40.0 * 36 * double(cout), [&](Index b0, Index b1) {
      core::Buffer<S, Device> tmp(ctx, 24 * kTransformChunk);
      for (Index tb = b0; tb < b1; ++tb) {
        Index i0, j0, n;
        g.decode(t0 + tb, i0, j0, n);
        separable_transform<S>(
            cout, 6, 4, W::A, 6, 4, W::A,
            [&](int p, int q) -> const S* {
              const Index i = i0 + p, j = j0 + q;
              if (i >= g.OW || j >= g.OH) return nullptr;
              return dy + cout * (i + g.OW * (j + g.OH * n));
            },
            [&](int a, int b) -> S* { return dM.data() + ((a + 6 * b) * TB + tb) * cout; }, false, tmp.data());
      }
    });
    const float beta = t0 == 0 ? 0.0f : 1.0f;
    ctx.parallel_for(36, 1e9, [&](Index x0, Index x1) {
      for (Index xi = x0; xi < x1; ++xi)
        gemm_serial<S>(false, true, cout, cin, nb, dM.data() + xi * TB * cout, cout, V.data() + xi * TB * cin, cin,
                       dU.data() + xi * cc, cout, 1.0f, beta);
    });
  }
  // dw[k1, k2] += sum_{a, b} G[a][k1] G[b][k2] dU[a + 6 b]
  kernel_transform<S>(
      ctx, cc, 3, 6, W::GT, 3, 6, W::GT, [&](int p, int q) -> const S* { return dU.data() + (p + 6 * q) * cc; },
      [&](int a, int b) -> S* { return dw + (a + 3 * b) * cc; }, true);
}


// ------------------------------------------------------------------ 3-D: F(2x2x2, 3x3x3)
// Each 2x2x2 output tile is A^T [ (G g G^T) (.) (B^T d B) ] A along each of the three axes for its
// 4x4x4 input tile d (interpolation points 0, +-1 and infinity): 64 GEMMs over the tiles, 64 *
// 2 * Cout * Cin * T flops against 27 * 8 * 2 * Cout * Cin * T for the direct product, 3.4x fewer;
// the input transform writes 8 values per input value where the im2col gather writes 27. The
// same three passes as in 2-D (forward, input gradient as the flipped-kernel forward with
// transposed GEMM operands, weight gradient as the exact adjoint). Accuracy: F(2, 3) has smaller
// constants than F(4, 3); errors in float stay near those of the im2col path.

struct WinogradF23 {
  static constexpr int kTile = 4, kOut = 2, kTaps = 3, kPos = 64;
  // Row-major. B^T (4 x 4), G (4 x 3), A^T (2 x 4), and the transposes the adjoints use.
  static constexpr double BT[16] = {1, 0, -1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 1, 0, -1};
  static constexpr double G[12] = {1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1};
  static constexpr double GT[12] = {1, 0.5, 0.5, 0, 0, 0.5, -0.5, 0, 0, 0.5, 0.5, 1};
  static constexpr double AT[8] = {1, 1, 1, 0, 0, 1, -1, -1};
  static constexpr double A[8] = {1, 0, 1, 1, 1, -1, 0, -1};
};

/// Channels per block of the 3-D transforms: each block's inputs and both intermediates stay in
/// three 64 x 16 scratch arrays (12 KiB in float), and every axpy is a fixed-width loop the
/// compiler unrolls. The first version ran each stage as Eigen array operations on vectors of up
/// to 128 channels: at the 64 channels of a 3-D residual block the per-operation overhead made the
/// transforms 63 % of a Winograd pass (perf, bench_ops conv_winograd/3d C 64 at 16^3) and the
/// pass slower than im2col.
constexpr int kTransformBlock3 = 16;

/// out(a, b, c) (+)= sum_{p, q, r} Ma[a][p] Mb[b][q] Mc[c][r] in(p, q, r) on vectors of length L,
/// one axis at a time; null inputs are zero vectors, null outputs are dropped, as in 2-D. At most
/// 64 inputs and 64 outputs.
template <int na, int np, int nb, int nq, int nc, int nr, class S, class In, class Out>
void separable_transform3(Index L, const double* Ma, const double* Mb, const double* Mc, In&& in, Out&& out,
                          bool accumulate) {
  static_assert(np * nq * nr <= 64 && na * nb * nc <= 64 && na * np <= 64 && nb * nq <= 64 && nc * nr <= 64);
  constexpr int CB = kTransformBlock3;
  // Fixed-width Eigen maps: Eigen's packet code, not the auto-vectoriser (GCC unrolls a 16-trip
  // loop completely before vectorising it, and the SLP pass that would then pack it is off in
  // this build: CMakeLists.txt, -fno-tree-slp-vectorize).
  using Vec = Eigen::Array<S, CB, 1>;
  using VMap = Eigen::Map<Vec, Eigen::Aligned32>;
  using CVMap = Eigen::Map<const Vec, Eigen::Aligned32>;
  const S* src[64];
  for (int r = 0; r < nr; ++r)
    for (int q = 0; q < nq; ++q)
      for (int p = 0; p < np; ++p) src[p + np * (q + nq * r)] = in(p, q, r);
  S* dst[64];
  for (int c = 0; c < nc; ++c)
    for (int b = 0; b < nb; ++b)
      for (int a = 0; a < na; ++a) dst[a + na * (b + nb * c)] = out(a, b, c);
  S ca[64], cb[64], cc[64];
  for (int i = 0; i < na * np; ++i) ca[i] = S(Ma[i]);
  for (int i = 0; i < nb * nq; ++i) cb[i] = S(Mb[i]);
  for (int i = 0; i < nc * nr; ++i) cc[i] = S(Mc[i]);
  alignas(64) S t0[64][CB];
  alignas(64) S t1[64][CB];
  alignas(64) S t2[64][CB];
  bool z1[64];  // rows of t1 that are all zero (every source null)
  for (Index e0 = 0; e0 < L; e0 += CB) {
    const int n = static_cast<int>(std::min<Index>(CB, L - e0));
    for (int i = 0; i < np * nq * nr; ++i) {
      if (!src[i]) continue;
      const S* sp = src[i] + e0;
      if (n == CB)
        VMap{t0[i]} = Eigen::Map<const Vec>(sp);
      else
        for (int k = 0; k < CB; ++k) t0[i][k] = k < n ? sp[k] : S(0);
    }
    for (int r = 0; r < nr; ++r)
      for (int q = 0; q < nq; ++q)
        for (int a = 0; a < na; ++a) {
          S* t = t1[a + na * (q + nq * r)];
          bool any = false;
          for (int p = 0; p < np; ++p) {
            const S cf = ca[a * np + p];
            const int i = p + np * (q + nq * r);
            if (cf == S(0) || !src[i]) continue;
            if (any) VMap{t} += cf * CVMap(t0[i]);
            else VMap{t} = cf * CVMap(t0[i]);
            any = true;
          }
          z1[a + na * (q + nq * r)] = !any;
        }
    for (int r = 0; r < nr; ++r)
      for (int b = 0; b < nb; ++b)
        for (int a = 0; a < na; ++a) {
          S* t = t2[a + na * (b + nb * r)];
          bool any = false;
          for (int q = 0; q < nq; ++q) {
            const S cf = cb[b * nq + q];
            const int i = a + na * (q + nq * r);
            if (cf == S(0) || z1[i]) continue;
            if (any) VMap{t} += cf * CVMap(t1[i]);
            else VMap{t} = cf * CVMap(t1[i]);
            any = true;
          }
          if (!any) VMap{t}.setZero();
        }
    for (int c = 0; c < nc; ++c)
      for (int b = 0; b < nb; ++b)
        for (int a = 0; a < na; ++a) {
          S* o = dst[a + na * (b + nb * c)];
          if (!o) continue;
          alignas(64) S acc[CB];
          bool any = false;
          for (int r = 0; r < nr; ++r) {
            const S cf = cc[c * nr + r];
            if (cf == S(0)) continue;
            const CVMap v(t2[a + na * (b + nb * r)]);
            if (any) VMap{acc} += cf * v;
            else VMap{acc} = cf * v;
            any = true;
          }
          if (!any) VMap{acc}.setZero();
          S* op = o + e0;
          if (n == CB) {
            Eigen::Map<Vec> O(op);
            if (accumulate) O += VMap(acc);
            else O = VMap(acc);
          } else if (accumulate) {
            for (int k = 0; k < n; ++k) op[k] += acc[k];
          } else {
            for (int k = 0; k < n; ++k) op[k] = acc[k];
          }
        }
  }
}

/// The hand-written 3-D transforms' block I/O. Loads `count` vectors of kTransformBlock3 channels
/// from e0 (n of them valid; the rest, and null sources, read as zeros) into t.
template <class S>
void f23_load(const S* const* src, int count, Index e0, int n, S (*t)[kTransformBlock3]) {
  constexpr int CB = kTransformBlock3;
  using Vec = Eigen::Array<S, CB, 1>;
  for (int i = 0; i < count; ++i) {
    Eigen::Map<Vec, Eigen::Aligned32> ti(t[i]);
    if (!src[i]) {
      ti.setZero();
    } else if (n == CB) {
      ti = Eigen::Map<const Vec>(src[i] + e0);
    } else {
      for (int k = 0; k < CB; ++k) t[i][k] = k < n ? src[i][e0 + k] : S(0);
    }
  }
}

/// Stores the first n channels of `count` vectors of t at dst[i] + e0 (null: dropped), adding
/// onto them with accumulate.
template <class S>
void f23_store(S (*t)[kTransformBlock3], int count, S* const* dst, Index e0, int n, bool accumulate) {
  constexpr int CB = kTransformBlock3;
  using Vec = Eigen::Array<S, CB, 1>;
  for (int i = 0; i < count; ++i) {
    if (!dst[i]) continue;
    S* o = dst[i] + e0;
    const Eigen::Map<Vec, Eigen::Aligned32> ti(t[i]);
    if (n == CB) {
      Eigen::Map<Vec> O(o);
      if (accumulate) O += ti;
      else O = ti;
    } else {
      for (int k = 0; k < n; ++k) o[k] = accumulate ? S(o[k] + t[i][k]) : t[i][k];
    }
  }
}

/// B^T d B on every axis of one 4x4x4 tile, for kTransformBlock3 channels from e0 (n of them
/// valid), written out by hand: each 1-D B^T is two additions and two subtractions (d0 - d2,
/// d1 + d2, d2 - d1, d1 - d3), where separable_transform3 spends a multiply-add per coefficient
/// and the loops over them (the input transform was 35 % of a 64-channel pass with it).
template <class S>
void f23_input_block(const S* const* src, Index e0, int n, S* const* dst) {
  constexpr int CB = kTransformBlock3;
  using Vec = Eigen::Array<S, CB, 1>;
  using M = Eigen::Map<Vec, Eigen::Aligned32>;
  alignas(64) S t0[64][CB];
  alignas(64) S t1[64][CB];
  f23_load(src, 64, e0, n, t0);
  auto bt = [](S (*in)[CB], S (*out)[CB], int i, int st) {
    const M x0(in[i]), x1(in[i + st]), x2(in[i + 2 * st]), x3(in[i + 3 * st]);
    M{out[i]} = x0 - x2;
    M{out[i + st]} = x1 + x2;
    M{out[i + 2 * st]} = x2 - x1;
    M{out[i + 3 * st]} = x1 - x3;
  };
  for (int qr = 0; qr < 16; ++qr) bt(t0, t1, 4 * qr, 1);  // along x
  for (int r = 0; r < 4; ++r)
    for (int p = 0; p < 4; ++p) bt(t1, t0, p + 16 * r, 4);  // along y
  for (int pq = 0; pq < 16; ++pq) bt(t0, t1, pq, 16);  // along z
  f23_store(t1, 64, dst, e0, n, false);
}

/// A^T M A on every axis (64 positions to a 2x2x2 output tile): each 1-D A^T is m0 + m1 + m2,
/// m1 - m2 - m3. Null outputs (past the edge) are dropped; accumulate adds onto them.
template <class S>
void f23_output_block(const S* const* src, Index e0, int n, S* const* dst, bool accumulate) {
  constexpr int CB = kTransformBlock3;
  using Vec = Eigen::Array<S, CB, 1>;
  using M = Eigen::Map<Vec, Eigen::Aligned32>;
  alignas(64) S t0[64][CB];
  alignas(64) S t1[32][CB];
  f23_load(src, 64, e0, n, t0);
  // at(in, i, st) -> (m0 + m1 + m2, m1 - m2 - m3) of in[i + k st], into out[o], out[o + ost]
  auto at = [](S (*in)[CB], int i, int st, S (*out)[CB], int o, int ost) {
    const M m0(in[i]), m1(in[i + st]), m2(in[i + 2 * st]), m3(in[i + 3 * st]);
    M{out[o]} = m0 + m1 + m2;
    M{out[o + ost]} = m1 - m2 - m3;
  };
  for (int qr = 0; qr < 16; ++qr) at(t0, 4 * qr, 1, t1, 2 * qr, 1);  // x: (a, q, r) = a + 2 (q + 4 r)
  for (int r = 0; r < 4; ++r)
    for (int a = 0; a < 2; ++a) at(t1, a + 8 * r, 2, t0, a + 4 * r, 2);  // y: (a, b, r) = a + 2 (b + 2 r)
  for (int ab = 0; ab < 4; ++ab) at(t0, ab, 4, t1, ab, 4);  // z: (a, b, c) = a + 2 (b + 2 c)
  f23_store(t1, 8, dst, e0, n, accumulate);
}

/// A dY A^T on every axis (a 2x2x2 output-gradient tile to 64 positions): each 1-D A is y0,
/// y0 + y1, y0 - y1, -y1. Null inputs (past the edge) are zeros.
template <class S>
void f23_output_adjoint_block(const S* const* src, Index e0, int n, S* const* dst) {
  constexpr int CB = kTransformBlock3;
  using Vec = Eigen::Array<S, CB, 1>;
  using M = Eigen::Map<Vec, Eigen::Aligned32>;
  alignas(64) S t0[64][CB];
  alignas(64) S t1[64][CB];
  f23_load(src, 8, e0, n, t0);
  auto a4 = [](S (*in)[CB], int i, int st, S (*out)[CB], int o, int ost) {
    const M y0(in[i]), y1(in[i + st]);
    M{out[o]} = y0;
    M{out[o + ost]} = y0 + y1;
    M{out[o + 2 * ost]} = y0 - y1;
    M{out[o + 3 * ost]} = -y1;
  };
  for (int qr = 0; qr < 4; ++qr) a4(t0, 2 * qr, 1, t1, 4 * qr, 1);  // x: (a, q, r) = a + 4 (q + 2 r)
  for (int r = 0; r < 2; ++r)
    for (int a = 0; a < 4; ++a) a4(t1, a + 8 * r, 4, t0, a + 16 * r, 4);  // y: (a, b, r) = a + 4 (b + 4 r)
  for (int ab = 0; ab < 16; ++ab) a4(t0, ab, 16, t1, ab, 16);  // z: (a, b, c) = a + 4 (b + 4 c)
  f23_store(t1, 64, dst, e0, n, false);
}

/// Tiling of a stride-1 3x3x3 conv from x (C_in, W, H, D, N) to y (C_out, OW, OH, OD, N), output
/// (i, j, k) reading input (i - px + k1, j - py + k2, k - pz + k3), in 2x2x2 output tiles.
struct WinogradTiling3 {
  Index W, H, D, N, OW, OH, OD, px, py, pz, tx, ty, tz;
  Index tiles() const { return tx * ty * tz * N; }
  void decode(Index t, Index& i0, Index& j0, Index& k0, Index& n) const {
    const Index per = tx * ty * tz;
    n = t / per;
    Index r = t % per;
    i0 = 2 * (r % tx);
    r /= tx;
    j0 = 2 * (r % ty);
    k0 = 2 * (r / ty);
  }
};

inline WinogradTiling3 winograd_tiling3(const Shape<5>& in, const Shape<5>& out, Index px, Index py, Index pz) {
  WinogradTiling3 g{in[1],  in[2], in[3], in[4], out[1],          out[2],          out[3],
                    px,     py,    pz,    (out[1] + 1) / 2, (out[2] + 1) / 2, (out[3] + 1) / 2};
  return g;
}

/// V[xi][tb][c] = (B^T d B)[xi] (all three axes) for the block's tiles t0 .. t0 + nb of x.
template <class S, class Device>
void winograd_input3(Context<Device>& ctx, const WinogradTiling3& g, const S* x, Index C, Index t0, Index nb, Index TB,
                     S* V) {
  ctx.parallel_for(nb, 30.0 * 64 * double(C), [&](Index b0, Index b1) {
    for (Index tb = b0; tb < b1; ++tb) {
      Index i0, j0, k0, n;
      g.decode(t0 + tb, i0, j0, k0, n);
      const Index ix0 = i0 - g.px, iy0 = j0 - g.py, iz0 = k0 - g.pz;
      const S* src[64];
      S* dst[64];
      for (int r = 0; r < 4; ++r)
        for (int q = 0; q < 4; ++q)
          for (int p = 0; p < 4; ++p) {
            const Index ix = ix0 + p, iy = iy0 + q, iz = iz0 + r;
            const int i = p + 4 * (q + 4 * r);
            const bool in = ix >= 0 && ix < g.W && iy >= 0 && iy < g.H && iz >= 0 && iz < g.D;
            src[i] = in ? x + C * (ix + g.W * (iy + g.H * (iz + g.D * n))) : nullptr;
            dst[i] = V + (i * TB + tb) * C;
          }
      for (Index e0 = 0; e0 < C; e0 += kTransformBlock3)
        f23_input_block<S>(src, e0, static_cast<int>(std::min<Index>(kTransformBlock3, C - e0)), dst);
    }
  });
}

/// The 3-D kernel transform (the same matrix on every axis), split over the pool in chunks of
/// 2048 channel pairs: the weight transform (G, 4 x 3) and its adjoint (G^T, 3 x 4).
template <int na, int np, class S, class Device, class In, class Out>
void kernel_transform3(Context<Device>& ctx, Index cc, const double* M, In&& in, Out&& out, bool accumulate) {
  constexpr Index kChunk = 2048;
  const Index chunks = (cc + kChunk - 1) / kChunk;
  ctx.parallel_for(chunks, 30.0 * 64 * kChunk, [&](Index c0, Index c1) {
    for (Index c = c0; c < c1; ++c) {
      const Index e0 = c * kChunk, L = std::min(kChunk, cc - e0);
      separable_transform3<na, np, na, np, na, np, S>(
          L, M, M, M, [&](int p, int q, int r) -> const S* { return in(p, q, r) + e0; },
          [&](int a, int b, int k) -> S* { return out(a, b, k) + e0; }, accumulate);
    }
  });
}

/// y (+)= conv(x, w) for a stride-1 3x3x3 kernel with zero padding (px, py, pz); the kernel is
/// tap(k1, k2, k3), the cout x cin matrix of that tap, or with taps_transposed its cin x cout
/// transpose (as in winograd_conv2d).
template <class S, class Device, class Tap>
void winograd_conv3d(Context<Device>& ctx, const S* x, const Shape<5>& xs, Index cout, Tap&& tap, S* y,
                     const Shape<5>& ys, Index px, Index py, Index pz, bool accumulate, bool taps_transposed = false) {
  using W = WinogradF23;
  const Index cin = xs[0], cc = cout * cin;
  const auto g = winograd_tiling3(xs, ys, px, py, pz);
  core::Buffer<S, Device> U(ctx, 64 * cc);
  kernel_transform3<4, 3, S>(
      ctx, cc, W::G, [&](int p, int q, int r) -> const S* { return tap(p, q, r); },
      [&](int a, int b, int c) -> S* { return U.data() + (a + 4 * (b + 4 * c)) * cc; }, false);
  const Index T = g.tiles(), TB = winograd_block<S>(ctx, cin, cout, T, 64);
  core::Buffer<S, Device> V(ctx, 64 * TB * cin), M(ctx, 64 * TB * cout);
  for (Index t0 = 0; t0 < T; t0 += TB) {
    const Index nb = std::min(TB, T - t0);
    winograd_input3<S>(ctx, g, x, cin, t0, nb, TB, V.data());
    ctx.parallel_for(64, 1e9, [&](Index x0, Index x1) {
      for (Index xi = x0; xi < x1; ++xi)
        gemm_serial<S>(taps_transposed, false, cout, nb, cin, U.data() + xi * cc, taps_transposed ? cin : cout,
                       V.data() + xi * TB * cin, cin, M.data() + xi * TB * cout, cout, 1.0f, 0.0f);
    });
    ctx.parallel_for(nb, 30.0 * 64 * double(cout), [&](Index b0, Index b1) {
        for (Index tb = b0; tb < b1; ++tb) {
        Index i0, j0, k0, n;
        g.decode(t0 + tb, i0, j0, k0, n);
        const S* src[64];
        S* dst[8];
        for (int i = 0; i < 64; ++i) src[i] = M.data() + (i * TB + tb) * cout;
        for (int c = 0; c < 2; ++c)
          for (int b = 0; b < 2; ++b)
            for (int a = 0; a < 2; ++a) {
              const Index i = i0 + a, j = j0 + b, k = k0 + c;
              dst[a + 2 * (b + 2 * c)] =
                  i >= g.OW || j >= g.OH || k >= g.OD ? nullptr : y + cout * (i + g.OW * (j + g.OH * (k + g.OD * n)));
            }
        for (Index e0 = 0; e0 < cout; e0 += kTransformBlock3)
          f23_output_block<S>(src, e0, static_cast<int>(std::min<Index>(kTransformBlock3, cout - e0)), dst,
                              accumulate);
      }
    });
  }
}

/// dw (cout, cin, 3, 3, 3) += the weight gradient of <conv(x, w), dy> (stride 1, padding px, py, pz).
template <class S, class Device>
void winograd_wgrad3d(Context<Device>& ctx, const S* x, const Shape<5>& xs, const S* dy, const Shape<5>& ys, S* dw,
                      Index px, Index py, Index pz) {
  using W = WinogradF23;
  const Index cin = xs[0], cout = ys[0], cc = cout * cin;
  const auto g = winograd_tiling3(xs, ys, px, py, pz);
  const Index T = g.tiles(), TB = winograd_block<S>(ctx, cin, cout, T, 64);
  core::Buffer<S, Device> dU(ctx, 64 * cc), V(ctx, 64 * TB * cin), dM(ctx, 64 * TB * cout);
  for (Index t0 = 0; t0 < T; t0 += TB) {
    const Index nb = std::min(TB, T - t0);
    winograd_input3<S>(ctx, g, x, cin, t0, nb, TB, V.data());
    ctx.parallel_for(nb, 30.0 * 64 * double(cout), [&](Index b0, Index b1) {
        for (Index tb = b0; tb < b1; ++tb) {
        Index i0, j0, k0, n;
        g.decode(t0 + tb, i0, j0, k0, n);
        const S* src[8];
        S* dst[64];
        for (int r = 0; r < 2; ++r)
          for (int q = 0; q < 2; ++q)
            for (int p = 0; p < 2; ++p) {
              const Index i = i0 + p, j = j0 + q, k = k0 + r;
              src[p + 2 * (q + 2 * r)] =
                  i >= g.OW || j >= g.OH || k >= g.OD ? nullptr : dy + cout * (i + g.OW * (j + g.OH * (k + g.OD * n)));
            }
        for (int i = 0; i < 64; ++i) dst[i] = dM.data() + (i * TB + tb) * cout;
        for (Index e0 = 0; e0 < cout; e0 += kTransformBlock3)
          f23_output_adjoint_block<S>(src, e0, static_cast<int>(std::min<Index>(kTransformBlock3, cout - e0)), dst);
      }
    });
    const float beta = t0 == 0 ? 0.0f : 1.0f;
    ctx.parallel_for(64, 1e9, [&](Index x0, Index x1) {
      for (Index xi = x0; xi < x1; ++xi)
        gemm_serial<S>(false, true, cout, cin, nb, dM.data() + xi * TB * cout, cout, V.data() + xi * TB * cin, cin,
                       dU.data() + xi * cc, cout, 1.0f, beta);
    });
  }
  // dw[k1, k2, k3] += sum_{a, b, c} G[a][k1] G[b][k2] G[c][k3] dU[a + 4 (b + 4 c)]
  kernel_transform3<3, 4, S>(
      ctx, cc, W::GT, [&](int p, int q, int r) -> const S* { return dU.data() + (p + 4 * (q + 4 * r)) * cc; },
      [&](int a, int b, int c) -> S* { return dw + (a + 3 * (b + 3 * c)) * cc; }, true);
}
}  // namespace detail
}  // namespace dicyc::ops
