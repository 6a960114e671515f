// dicyc/ops/conv_thin.hpp -- direct CPU kernels for the stride-1 convolutions with one channel on
// one side (ConvPath::ThinDirect): the generators' 7^d heads (C -> 1: forward, input and weight
// gradients) and the stems' input gradients (1 <- C).
//
// These layers have C * k^d multiply-adds per voxel, as many as a residual block's conv at 16
// channels, but the GEMM formulation degenerates: one output row (a GEMV over an im2col matrix of
// C * k^d rows, written and read once per pass), or a rank-1 product and a col2im, bound by the
// memory traffic on that matrix (at 48^3 and C = 16 it is 2.4 GB per pass): a quarter of the 3-D
// generator's forward+backward at the demo's width (docs/results/conv-paths.md). Here the sums run
// straight from the tensors: the channels are the fastest axis of the layout, so a voxel's C
// values are C / L packed registers (L = the SIMD width), and each tap is one packed multiply-add,
// with 8 outputs of a row per block for independent accumulators. No im2col matrix: the only
// copies are the zero-padded input spans of the blocks at a row's edges (C -> 1) and the
// 1-channel input rows of a 1 -> C conv, a few KiB per thread.
//
// Layout as everywhere: (C, x, y[, z], N), kernels (Cout, Cin, k...); 2-D runs as 3-D with one
// z plane. Zero padding of any size below the kernel (taps outside the input clipped or read as
// zeros), stride 1. C must be a multiple of the packet width of S (checked by thin_direct_shape).
#pragma once

#include <algorithm>
#include <array>
#include <vector>

#include "dicyc/core/context.hpp"
#include "dicyc/core/types.hpp"

// Full unrolling of the register-block loops (their bounds are compile-time constants; GCC's
// own heuristics stop short of the 98-step tap loop). Other compilers decide for themselves.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define DICYC_THIN_PRAGMA(x) _Pragma(#x)
#define DICYC_THIN_UNROLL(n) DICYC_THIN_PRAGMA(GCC unroll n)
#else
#define DICYC_THIN_UNROLL(n)
#endif

namespace dicyc::ops::detail {

/// Extents of a thin conv as 3-D ones (2-D: one z plane, kernel depth 1, padding 0 in z).
struct ThinGeom {
  Index C = 0;                  // channels on the wide side
  Index N = 1;                  // batch
  std::array<Index, 3> in{1, 1, 1}, out{1, 1, 1}, k{1, 1, 1}, pad{0, 0, 0};
  Index taps() const { return k[0] * k[1] * k[2]; }
  Index out_rows() const { return out[1] * out[2] * N; }
};

template <class S>
using thin_packet_t = typename Eigen::internal::packet_traits<S>::type;
template <class S>
constexpr Index thin_lanes = Eigen::internal::unpacket_traits<thin_packet_t<S>>::size;

/// Tap index of (kx, ky, kz), or of the flipped kernel's tap (the input gradients correlate dy
/// with the kernel turned around).
inline Index thin_tap(const ThinGeom& g, Index kx, Index ky, Index kz, bool flip) {
  const Index t = kx + g.k[0] * (ky + g.k[1] * kz);
  return flip ? g.taps() - 1 - t : t;
}

/// The clipped tap range [lo, hi) of one axis for output position o (input position o - pad + k).
inline void thin_clip(Index o, Index pad, Index k, Index in, Index& lo, Index& hi) {
  lo = std::max<Index>(0, pad - o);
  hi = std::min<Index>(k, in + pad - o);
  if (hi < lo) hi = lo;
}

/// Copies the 1-channel input row `src` (n positions) into `dst` as positions q = 0..len-1 of the
/// zero-padded row, q <-> input position q - pad.
template <class S>
void thin_fill_row(const S* src, Index n, Index pad, Index len, S* dst) {
  const Index a = std::min(len, std::max<Index>(0, pad)), b = std::max(a, std::min(len, n + pad));
  std::fill(dst, dst + a, S(0));
  std::copy(src + (a - pad), src + (b - pad), dst + a);
  std::fill(dst + b, dst + len, S(0));
}

/// The 1-channel input rows one output row (oy, oz, n) reads, zero-padded in x: row i of `buf`
/// (len positions) is input row (oy - pad + ky, oz - pad + kz) for the i-th unclipped (ky, kz),
/// and wbase[i] the weight of its tap kx = 0. Returns the number of rows.
template <class S>
Index thin_gather_rows(const ThinGeom& g, const S* in, Index oy, Index oz, Index n, Index len, const S* w, bool flip,
                       S* buf, const S** wbase) {
  Index ky0, ky1, kz0, kz1;
  thin_clip(oy, g.pad[1], g.k[1], g.in[1], ky0, ky1);
  thin_clip(oz, g.pad[2], g.k[2], g.in[2], kz0, kz1);
  Index rows = 0;
  for (Index kz = kz0; kz < kz1; ++kz)
    for (Index ky = ky0; ky < ky1; ++ky, ++rows) {
      const S* src = in + g.in[0] * ((oy - g.pad[1] + ky) + g.in[1] * ((oz - g.pad[2] + kz) + g.in[2] * n));
      thin_fill_row(src, g.in[0], g.pad[0], len, buf + rows * len);
      wbase[rows] = w + g.C * thin_tap(g, 0, ky, kz, flip);
    }
  return rows;
}

/// Outputs per register block (16 measured slower than 8 on AVX-512: spills).
template <class S>
constexpr int kThinBlock = 8;

inline Index thin_round_up(Index v, Index m) { return (v + m - 1) / m * m; }

/// One block of thin_corr: acc[j] += sum over x taps kx of in[j + kx] * w[kx] (packets; in at
/// `stride` scalars per position, w at `wstep` per tap). With the tap count known (the 7^d
/// layers), each input packet is loaded once and meets the KX weights held in registers (B + KX
/// - 1 loads for B * KX multiply-adds instead of one load each).
template <int KX, int B, class S>
inline void thin_corr_block(const S* in, Index stride, const S* w, Index wstep, S* acc) {
  using P = thin_packet_t<S>;
  namespace ei = Eigen::internal;
  P wv[KX], a[B];
  DICYC_THIN_UNROLL(16)
  for (int k = 0; k < KX; ++k) wv[k] = ei::ploadu<P>(w + wstep * k);
  constexpr int L = int(thin_lanes<S>);
  DICYC_THIN_UNROLL(16)
  for (int j = 0; j < B; ++j) a[j] = ei::ploadu<P>(acc + L * j);
  DICYC_THIN_UNROLL(32)
  for (int q = 0; q < B + KX - 1; ++q) {
    const P v = ei::ploadu<P>(in + stride * q);
    DICYC_THIN_UNROLL(16)
    for (int k = 0; k < KX; ++k) {
      const int j = q - k;
      if (j >= 0 && j < B) a[j] = ei::pmadd(v, wv[k], a[j]);
    }
  }
  DICYC_THIN_UNROLL(16)
  for (int j = 0; j < B; ++j) ei::pstoreu(acc + L * j, a[j]);
}

template <int B, class S>
inline void thin_corr_block_any(const S* in, Index stride, const S* w, Index wstep, Index kx_n, S* acc) {
  using P = thin_packet_t<S>;
  namespace ei = Eigen::internal;
  constexpr int L = int(thin_lanes<S>);
  P a[B];
  for (int j = 0; j < B; ++j) a[j] = ei::ploadu<P>(acc + L * j);
  for (Index kx = 0; kx < kx_n; ++kx, in += stride, w += wstep) {
    const P wv = ei::ploadu<P>(w);
    for (int j = 0; j < B; ++j) a[j] = ei::pmadd(ei::ploadu<P>(in + stride * j), wv, a[j]);
  }
  for (int j = 0; j < B; ++j) ei::pstoreu(acc + L * j, a[j]);
}

/// out[p] (1 channel) = (or +=) sum over taps k and channels c of w[c + C * tap(k)] * in[c, p - pad + k]:
/// the forward of a C -> 1 conv (w as (1, C, k...)), and, with the kernel flipped and padding
/// k - 1 - p, the input gradient of a 1 -> C conv (in = dy, w as (C, 1, k...)). Blocks of 8
/// outputs; a block whose x taps reach outside the input row (or past the row's end) runs on a
/// zero-padded copy of its input span.
template <class S, class Device>
void thin_corr(core::Context<Device>& ctx, const ThinGeom& g, const S* in, const S* w, bool flip, S* out,
               bool accumulate) {
  using P = thin_packet_t<S>;
  namespace ei = Eigen::internal;
  constexpr Index L = thin_lanes<S>;
  constexpr int B = kThinBlock<S>;
  const Index C = g.C, CP = C / L, Xi = g.in[0], Xo = g.out[0], Yo = g.out[1], Zo = g.out[2];
  const Index kx_n = g.k[0], px = g.pad[0];
  const Index wstep = flip ? -C : C;  // from tap kx to kx + 1
  const double cost = double(Xo) * double(g.taps()) * double(C) * 2.0;
  ctx.parallel_for(g.out_rows(), cost, [&](Index r0, Index r1) {
    std::vector<const S*> rbase(static_cast<std::size_t>(g.k[1] * g.k[2])), wbase(rbase.size());
    const Index span = B + kx_n - 1, nblk = (Xo + B - 1) / B;
    std::vector<S> edge(static_cast<std::size_t>(span * L));
    std::vector<S> acc(static_cast<std::size_t>(nblk * B * L));  // packed partial sums, L per output
    for (Index r = r0; r < r1; ++r) {
      const Index oy = r % Yo, oz = (r / Yo) % Zo, n = r / (Yo * Zo);
      Index ky0, ky1, kz0, kz1;
      thin_clip(oy, g.pad[1], g.k[1], g.in[1], ky0, ky1);
      thin_clip(oz, g.pad[2], g.k[2], g.in[2], kz0, kz1);
      Index rows = 0;
      for (Index kz = kz0; kz < kz1; ++kz)
        for (Index ky = ky0; ky < ky1; ++ky, ++rows) {
          rbase[rows] = in + C * Xi * ((oy - g.pad[1] + ky) + g.in[1] * ((oz - g.pad[2] + kz) + g.in[2] * n));
          wbase[rows] = w + C * thin_tap(g, 0, ky, kz, flip);
        }
      // Row by row (each streams through its input row once), the outputs' partial sums in acc.
      std::fill(acc.begin(), acc.end(), S(0));
      for (Index i = 0; i < rows; ++i)
        for (Index cp = 0; cp < CP; ++cp)
          for (Index ox = 0; ox < Xo; ox += B) {
            const S* ir;
            Index stride = C;
            if (ox - px >= 0 && ox + B - 1 - px + kx_n - 1 < Xi) {
              ir = rbase[i] + C * (ox - px) + cp * L;
            } else {  // taps outside the row: a zero-padded copy of the block's input span
              for (Index q = 0; q < span; ++q) {
                const Index xq = ox - px + q;
                const bool ok = xq >= 0 && xq < Xi;
                ei::pstoreu(edge.data() + L * q, ok ? ei::ploadu<P>(rbase[i] + C * xq + cp * L) : ei::pset1<P>(S(0)));
              }
              ir = edge.data();
              stride = L;
            }
            const S* wt = wbase[i] + cp * L;
            S* ap = acc.data() + L * ox;
            if (kx_n == 7) thin_corr_block<7, B>(ir, stride, wt, wstep, ap);
            else if (kx_n == 3) thin_corr_block<3, B>(ir, stride, wt, wstep, ap);
            else thin_corr_block_any<B>(ir, stride, wt, wstep, kx_n, ap);
          }
      S* orow = out + Xo * (oy + Yo * (oz + Zo * n));
      for (Index o = 0; o < Xo; ++o) {
        const S v = ei::predux(ei::ploadu<P>(acc.data() + L * o));
        orow[o] = accumulate ? S(orow[o] + v) : v;
      }
    }
  });
}

/// out[c, p] = (or +=) sum over taps k of w[c + C * tap(k)] * in[p - pad + k] (in: 1 channel): the
/// input gradient of a C -> 1 conv (in = dy, w as (1, C, k...), flipped, padding k - 1 - p), and
/// the forward of a 1 -> C conv (w as (C, 1, k...)).
template <class S, class Device>
void thin_spread(core::Context<Device>& ctx, const ThinGeom& g, const S* in, const S* w, bool flip, S* out,
                 bool accumulate) {
  using P = thin_packet_t<S>;
  namespace ei = Eigen::internal;
  constexpr Index L = thin_lanes<S>;
  constexpr int B = kThinBlock<S>;
  const Index C = g.C, CP = C / L, Xo = g.out[0], Yo = g.out[1], Zo = g.out[2], kx_n = g.k[0];
  const Index Xo8 = thin_round_up(Xo, B), len = Xo8 + kx_n - 1;
  const Index wstep = flip ? -C : C;
  const double cost = double(Xo) * double(g.taps()) * double(C) * 2.0;
  ctx.parallel_for(g.out_rows(), cost, [&](Index r0, Index r1) {
    std::vector<S> buf(static_cast<std::size_t>(g.k[1] * g.k[2] * len));
    std::vector<const S*> wbase(static_cast<std::size_t>(g.k[1] * g.k[2]));
    for (Index r = r0; r < r1; ++r) {
      const Index oy = r % Yo, oz = (r / Yo) % Zo, n = r / (Yo * Zo);
      const Index rows = thin_gather_rows(g, in, oy, oz, n, len, w, flip, buf.data(), wbase.data());
      S* orow = out + C * Xo * (oy + Yo * (oz + Zo * n));
      for (Index ox = 0; ox < Xo8; ox += B)
        for (Index cp = 0; cp < CP; ++cp) {
          P acc[B];
          for (Index j = 0; j < B; ++j) acc[j] = ei::pset1<P>(S(0));
          for (Index i = 0; i < rows; ++i) {
            const S* ir = buf.data() + i * len + ox;
            const S* wt = wbase[static_cast<std::size_t>(i)] + cp * L;
            for (Index kx = 0; kx < kx_n; ++kx, ++ir, wt += wstep) {
              const P wv = ei::ploadu<P>(wt);
              for (Index j = 0; j < B; ++j) acc[j] = ei::pmadd(ei::pset1<P>(ir[j]), wv, acc[j]);
            }
          }
          for (Index j = 0; j < B && ox + j < Xo; ++j) {
            S* dst = orow + C * (ox + j) + cp * L;
            ei::pstoreu(dst, accumulate ? ei::padd(ei::ploadu<P>(dst), acc[j]) : acc[j]);
          }
        }
    }
  });
}

/// One input row's share of a C -> 1 weight gradient for NK consecutive x taps from ka, channel
/// packet cp: dwt[j] += sum over outputs o of dy[o] * xrow[c, o - px + ka + j], the outputs whose
/// taps all lie inside the row in one loop, the others with the outside taps read as zero.
template <int NK, class S>
void thin_wgrad_taps(const S* drow, Index Xo, const S* xrow, Index Xi, Index C, Index px, Index ka, Index cp,
                     S* const* dwt) {
  using P = thin_packet_t<S>;
  namespace ei = Eigen::internal;
  constexpr Index L = thin_lanes<S>;
  P acc[NK];
  for (int j = 0; j < NK; ++j) acc[j] = ei::pset1<P>(S(0));
  const Index oa = std::min(Xo, std::max<Index>(0, px - ka));
  const Index ob = std::max(oa, std::min(Xo, Xi + px - ka - NK + 1));
  const S* row = xrow + cp * L;
  const S* ip = row + C * (oa - px + ka);
  Index o = oa;
  if constexpr (NK == 7) {
    // Blocks of 8 outputs: each input packet loaded once, for the 7 taps it meets.
    constexpr int B = 8;
    for (; o + B <= ob; o += B, ip += C * B) {
      P d[B];
      DICYC_THIN_UNROLL(16)
      for (int j = 0; j < B; ++j) d[j] = ei::pset1<P>(drow[o + j]);
      DICYC_THIN_UNROLL(32)
      for (int q = 0; q < B + NK - 1; ++q) {
        const P v = ei::ploadu<P>(ip + C * q);
        DICYC_THIN_UNROLL(16)
        for (int k = 0; k < NK; ++k) {
          const int j = q - k;
          if (j >= 0 && j < B) acc[k] = ei::pmadd(d[j], v, acc[k]);
        }
      }
    }
  }
  for (; o < ob; ++o, ip += C) {
    const P d = ei::pset1<P>(drow[o]);
    for (int j = 0; j < NK; ++j) acc[j] = ei::pmadd(d, ei::ploadu<P>(ip + C * j), acc[j]);
  }
  const P zero = ei::pset1<P>(S(0));
  auto edge = [&](Index o) {
    const P d = ei::pset1<P>(drow[o]);
    const Index x0 = o - px + ka;
    for (int j = 0; j < NK; ++j) {
      const bool ok = x0 + j >= 0 && x0 + j < Xi;
      acc[j] = ei::pmadd(d, ok ? ei::ploadu<P>(row + C * (x0 + j)) : zero, acc[j]);
    }
  };
  for (Index o = 0; o < oa; ++o) edge(o);
  for (Index o = ob; o < Xo; ++o) edge(o);
  for (int j = 0; j < NK; ++j) {
    S* dst = dwt[j] + cp * L;
    ei::pstoreu(dst, ei::padd(ei::ploadu<P>(dst), acc[j]));
  }
}

/// dw[c + C * tap(k)] += sum over output positions p of dy[p] * x[c, p - pad + k]: the weight
/// gradient of a C -> 1 conv (dy: 1 channel). The output rows are split into a fixed number of
/// chunks (independent of the thread count, so 1 and 2 threads give the same bits), each summing
/// into its own copy of dw; the copies are added in chunk order.
template <class S, class Device>
void thin_wgrad(core::Context<Device>& ctx, const ThinGeom& g, const S* x, const S* dy, S* dw) {
  constexpr Index L = thin_lanes<S>;
  const Index C = g.C, CP = C / L, Xi = g.in[0], Xo = g.out[0], Yo = g.out[1], Zo = g.out[2];
  const Index kx_n = g.k[0], px = g.pad[0], T = g.taps();
  const Index rows = g.out_rows();
  const Index chunks = std::min<Index>(rows, 16);
  std::vector<S> part(static_cast<std::size_t>(chunks * C * T), S(0));
  const double cost = double(rows) / double(chunks) * double(Xo) * double(T) * double(C) * 2.0;
  ctx.parallel_for(chunks, cost, [&](Index c0, Index c1) {
    for (Index ch = c0; ch < c1; ++ch) {
      S* acc_w = part.data() + ch * C * T;
      const Index ra = rows * ch / chunks, rb = rows * (ch + 1) / chunks;
      for (Index r = ra; r < rb; ++r) {
        const Index oy = r % Yo, oz = (r / Yo) % Zo, n = r / (Yo * Zo);
        Index ky0, ky1, kz0, kz1;
        thin_clip(oy, g.pad[1], g.k[1], g.in[1], ky0, ky1);
        thin_clip(oz, g.pad[2], g.k[2], g.in[2], kz0, kz1);
        const S* drow = dy + Xo * (oy + Yo * (oz + Zo * n));
        for (Index kz = kz0; kz < kz1; ++kz)
          for (Index ky = ky0; ky < ky1; ++ky) {
            const S* xrow = x + C * Xi * ((oy - g.pad[1] + ky) + g.in[1] * ((oz - g.pad[2] + kz) + g.in[2] * n));
            S* base = acc_w + C * thin_tap(g, 0, ky, kz, false);
            for (Index ka = 0; ka < kx_n; ka += 8) {
              const Index nk = std::min<Index>(8, kx_n - ka);
              S* dwt[8];
              for (Index j = 0; j < nk; ++j) dwt[j] = base + C * (ka + j);
              for (Index cp = 0; cp < CP; ++cp) {
                switch (nk) {
                  case 1: thin_wgrad_taps<1>(drow, Xo, xrow, Xi, C, px, ka, cp, dwt); break;
                  case 2: thin_wgrad_taps<2>(drow, Xo, xrow, Xi, C, px, ka, cp, dwt); break;
                  case 3: thin_wgrad_taps<3>(drow, Xo, xrow, Xi, C, px, ka, cp, dwt); break;
                  case 4: thin_wgrad_taps<4>(drow, Xo, xrow, Xi, C, px, ka, cp, dwt); break;
                  case 5: thin_wgrad_taps<5>(drow, Xo, xrow, Xi, C, px, ka, cp, dwt); break;
                  case 6: thin_wgrad_taps<6>(drow, Xo, xrow, Xi, C, px, ka, cp, dwt); break;
                  case 7: thin_wgrad_taps<7>(drow, Xo, xrow, Xi, C, px, ka, cp, dwt); break;
                  default: thin_wgrad_taps<8>(drow, Xo, xrow, Xi, C, px, ka, cp, dwt); break;
                }
              }
            }
          }
      }
    }
  });
  const Index n_w = C * T;
  ctx.parallel_for(n_w, double(chunks), [&](Index i0, Index i1) {
    for (Index i = i0; i < i1; ++i) {
      S s = dw[i];
      for (Index ch = 0; ch < chunks; ++ch) s += part[static_cast<std::size_t>(ch * n_w + i)];
      dw[i] = s;
    }
  });
}

/// Output positions of a thin conv's output grid (all rows, all samples).
inline Index thin_out_positions(const ThinGeom& g) { return g.out_rows() * g.out[0]; }

/// The forward of a C -> co conv with a few output channels (2 <= co <= kThinMaxOut; the offset
/// branches' last convs, C -> Dim): thin_corr once per output channel, with that channel's weights
/// (w is (co, C, k...), the output channel fastest: gathered into one (1, C, k...) kernel) into a
/// 1-channel buffer, then interleaved into out (co channels fastest). No bias.
template <class S, class Device>
void thin_corr_few(core::Context<Device>& ctx, const ThinGeom& g, Index co, const S* in, const S* w, S* out) {
  const Index n_w = g.C * g.taps(), P = thin_out_positions(g);
  std::vector<S> wo(static_cast<std::size_t>(n_w)), tmp(static_cast<std::size_t>(P));
  for (Index o = 0; o < co; ++o) {
    for (Index i = 0; i < n_w; ++i) wo[i] = w[o + co * i];
    thin_corr(ctx, g, in, wo.data(), false, tmp.data(), false);
    ctx.parallel_for(P, 2.0, [&](Index p0, Index p1) {
      for (Index p = p0; p < p1; ++p) out[p * co + o] = tmp[p];
    });
  }
}

/// The weight gradient of a C -> co conv with a few output channels: thin_wgrad once per output
/// channel on that channel of dy (gathered into a 1-channel buffer), its (C, k...) sums added into
/// dw's output channel o. The same bits on any thread count, as thin_wgrad.
template <class S, class Device>
void thin_wgrad_few(core::Context<Device>& ctx, const ThinGeom& g, Index co, const S* x, const S* dy, S* dw) {
  const Index n_w = g.C * g.taps(), P = thin_out_positions(g);
  std::vector<S> dwo(static_cast<std::size_t>(n_w)), dyo(static_cast<std::size_t>(P));
  for (Index o = 0; o < co; ++o) {
    ctx.parallel_for(P, 2.0, [&](Index p0, Index p1) {
      for (Index p = p0; p < p1; ++p) dyo[p] = dy[p * co + o];
    });
    std::fill(dwo.begin(), dwo.end(), S(0));
    thin_wgrad(ctx, g, x, dyo.data(), dwo.data());
    for (Index i = 0; i < n_w; ++i) dw[o + co * i] += dwo[i];
  }
}

}  // namespace dicyc::ops::detail
