// dicyc/ops/winograd.hpp -- Winograd F(4x4, 3x3) for the stride-1 3x3 2-D convolutions on the CPU
// (the residual blocks' convs, which carry most of a 2-D generator's multiply-adds).
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
// against ~1e-7 for the im2col path (tests/test_conv2d.cpp measures both against double).
// DICYC_WINOGRAD=0 in the environment, or set_winograd(false), keeps every conv on im2col.
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
inline std::atomic<bool>& winograd_slot() {
  static std::atomic<bool> on{[] {
    const char* e = std::getenv("DICYC_WINOGRAD");
    return !(e && std::strcmp(e, "0") == 0);
  }()};
  return on;
}
}  // namespace detail

/// Whether stride-1 3x3 2-D convolutions on the CPU use Winograd F(4x4, 3x3) (process-wide; on
/// unless DICYC_WINOGRAD=0 was in the environment at the first call).
inline bool winograd_enabled() { return detail::winograd_slot().load(); }
inline void set_winograd(bool on) { detail::winograd_slot().store(on); }

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

/// Tiles per block: what fits in the workspace limit (V and M, 36 vectors each), at least 1.
template <class S, class Device>
Index winograd_block(const Context<Device>& ctx, Index cin, Index cout, Index tiles) {
  const std::size_t per = std::size_t(36) * std::size_t(cin + cout) * sizeof(S);
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

}  // namespace detail
}  // namespace dicyc::ops
