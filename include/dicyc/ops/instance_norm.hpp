// dicyc/ops/instance_norm.hpp -- instance normalization without affine parameters, 2-D and 3-D.
//
// Contract: x (C, s..., N); for every (c, n), over the spatial axes,
//   y = (x - mean) * invstd,   invstd = 1 / sqrt(var + eps),   var biased (divided by S),
// as PyTorch's InstanceNorm (affine=False, track_running_stats=False), eps 1e-5 by default.
// The forward writes the per-(c, n) statistics (C, N) in the accumulation type; the caller keeps
// them (with y) in its cache for the backward.
// Backward (closed form), ACCUMULATED into dx (or written, with overwrite: dx is not read):
//   dx += invstd * (dy - mean_S(dy) - y * mean_S(dy * y)).
// On the GPU, everything is an Eigen expression over the (C, S, N) view. On the CPU, Eigen's
// Tensor reducer over the middle axis measured 1.76 ms for 256x32x32 (forward), so float and
// double run Eigen Matrix expressions on C x 2048 blocks of positions (channels contiguous; the
// blocks' partial sums added in a fixed order), two passes for the statistics; half keeps plain
// loops over channel ranges, accumulating in float.
#pragma once

#include <cmath>
#include <vector>

#include "dicyc/core/buffer.hpp"

namespace dicyc::ops {

namespace detail {

/// Positions per chunk of the CPU instance norm: the statistics are sums of per-chunk partial
/// sums, added in chunk order, so the result does not depend on the thread count.
constexpr Index kNormChunk = 2048;

/// The CPU instance norm's statistics pass: for every (c, n), f(chunk) gives a C x len block's
/// per-channel sums (a vector of C); returns the totals (C x N), chunks run over the pool.
template <class A, class Device, class F>
std::vector<A> chunked_channel_sums(core::Context<Device>& ctx, Index C, Index Sp, Index N, F&& f) {
  using Vec = Eigen::Matrix<A, Eigen::Dynamic, 1>;
  const Index per = (Sp + kNormChunk - 1) / kNormChunk, chunks = per * N;
  std::vector<A> part(static_cast<std::size_t>(C * chunks));
  ctx.parallel_for(chunks, double(C * kNormChunk) * 2.0, [&](Index k0, Index k1) {
    for (Index k = k0; k < k1; ++k) {
      const Index n = k / per, s0 = (k % per) * kNormChunk, len = std::min(kNormChunk, Sp - s0);
      Eigen::Map<Vec>(part.data() + C * k, C) = f(n, s0, len);
    }
  });
  std::vector<A> tot(static_cast<std::size_t>(C * N), A(0));
  for (Index k = 0; k < chunks; ++k)
    for (Index c = 0; c < C; ++c) tot[static_cast<std::size_t>(c + C * (k / per))] += part[static_cast<std::size_t>(c + C * k)];
  return tot;
}

/// Per-channel sums over the len columns of a C x len block: sum over j of f(j) (an array
/// expression of C values, column j), with four accumulators over interleaved columns (the
/// adds of one accumulator wait on each other) summed in a fixed order. Eigen's own rowwise()
/// sum of an expression such as (X - m)^2 or G * Y reads the block row by row, across the
/// channels' stride: for C x 2048 blocks it measured 6x (16 channels) to 18x (256) this loop's
/// time for (X - m)^2, and 2.4x for G * Y at 256 channels (g++ 12 -O3 -march=native, AVX-512).
/// A plain X.rowwise().sum() is vectorised well by Eigen and stays as it is.
template <class Vec, class F>
Vec column_sums4(Index C, Index len, F&& f) {
  Vec a0 = Vec::Zero(C), a1 = Vec::Zero(C), a2 = Vec::Zero(C), a3 = Vec::Zero(C);
  Index j = 0;
  for (; j + 4 <= len; j += 4) {
    a0.array() += f(j);
    a1.array() += f(j + 1);
    a2.array() += f(j + 2);
    a3.array() += f(j + 3);
  }
  for (; j < len; ++j) a0.array() += f(j);
  return (a0 + a1) + (a2 + a3);
}

/// From this many channels the instance norm's backward sums dy * y with column_sums4 (measured
/// on C x 2048 blocks: 0.57x Eigen's rowwise() time at 64 channels, 0.42x at 256; at 16 and 32
/// channels Eigen's was the faster, 0.57x and 0.95x).
constexpr Index kNormColumnSumsMinChannels = 64;

/// Runs f(n, s0, len) over the chunks of every sample, on the pool.
template <class Device, class F>
void for_each_norm_chunk(core::Context<Device>& ctx, Index C, Index Sp, Index N, F&& f) {
  const Index per = (Sp + kNormChunk - 1) / kNormChunk;
  ctx.parallel_for(per * N, double(C * kNormChunk) * 3.0, [&](Index k0, Index k1) {
    for (Index k = k0; k < k1; ++k) {
      const Index s0 = (k % per) * kNormChunk;
      f(k / per, s0, std::min(kNormChunk, Sp - s0));
    }
  });
}

}  // namespace detail

template <int Dim, class S, class Device>
void instance_norm_forward(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& x, TensorMap<S, Dim + 2>& y,
                           TensorMap<acc_t<S>, 2>& mean, TensorMap<acc_t<S>, 2>& invstd, double eps = 1e-5) {
  using A = acc_t<S>;
  const Index C = x.dimension(0), N = x.dimension(Dim + 1), Sp = x.size() / std::max<Index>(1, C * N);
  DICYC_CHECK(x.dimensions() == y.dimensions(), ShapeError,
              "instance_norm" << Dim << "d: expected output of shape " << shape_str(x.dimensions()) << ", but got "
                              << shape_str(y.dimensions()) << " instead");
  DICYC_CHECK(mean.dimension(0) == C && mean.dimension(1) == N && invstd.dimensions() == mean.dimensions(),
              ShapeError,
              "instance_norm" << Dim << "d: expected statistics of shape [" << C << ", " << N << "], but got "
                              << shape_str(mean.dimensions()) << " and " << shape_str(invstd.dimensions()));
  DICYC_CHECK(Sp >= 1, ShapeError, "instance_norm" << Dim << "d: empty input of shape " << shape_str(x.dimensions()));
  DICYC_CHECK(eps > 0, ConfigError, "instance_norm" << Dim << "d: eps must be positive, got " << eps);
  if constexpr (!core::is_gpu_v<Device> && !is_half_v<S>) {
    // Chunks of positions (C x 2048 blocks, channels contiguous) rather than channel ranges: at
    // 16 channels the channel split gave each thread half of every cache line, with its sums in
    // memory (3-D generators: 8 % of a step).
    using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
    using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
    const S* xp = x.data();
    S* yp = y.data();
    auto X = [&](Index n, Index s0, Index len) { return Eigen::Map<const Mat>(xp + C * (s0 + Sp * n), C, len); };
    const std::vector<A> sum = detail::chunked_channel_sums<A>(ctx, C, Sp, N, [&](Index n, Index s0, Index len) -> Vec {
      return X(n, s0, len).rowwise().sum();
    });
    std::vector<A> m(sum.size());
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = sum[i] / A(Sp);
    const std::vector<A> sq = detail::chunked_channel_sums<A>(ctx, C, Sp, N, [&](Index n, Index s0, Index len) -> Vec {
      const Eigen::Map<const Vec> mn(m.data() + C * n, C);
      const auto Xb = X(n, s0, len);
      return detail::column_sums4<Vec>(C, len, [&](Index j) { return (Xb.col(j) - mn).array().square(); });
    });
    for (Index i = 0; i < C * N; ++i) {
      mean.data()[i] = m[static_cast<std::size_t>(i)];
      invstd.data()[i] = A(1) / std::sqrt(sq[static_cast<std::size_t>(i)] / A(Sp) + A(eps));
    }
    detail::for_each_norm_chunk(ctx, C, Sp, N, [&](Index n, Index s0, Index len) {
      const Eigen::Map<const Vec> mn(mean.data() + C * n, C), iv(invstd.data() + C * n, C);
      Eigen::Map<Mat>(yp + C * (s0 + Sp * n), C, len) =
          ((X(n, s0, len).colwise() - mn).array().colwise() * iv.array()).matrix();
    });
  } else if constexpr (!core::is_gpu_v<Device>) {
    const S* xp = x.data();
    S* yp = y.data();
    A* mp = mean.data();
    A* ip = invstd.data();
    ctx.parallel_for(C, double(Sp * N) * 6.0, [&](Index c0, Index c1) {
      const Index w = c1 - c0;
      std::vector<A> m(static_cast<std::size_t>(w)), v(static_cast<std::size_t>(w));
      for (Index n = 0; n < N; ++n) {
        const S* xs = xp + C * Sp * n + c0;
        S* ys = yp + C * Sp * n + c0;
        std::fill(m.begin(), m.end(), A(0));
        std::fill(v.begin(), v.end(), A(0));
        for (Index s = 0; s < Sp; ++s)
          for (Index c = 0; c < w; ++c) m[c] += A(xs[C * s + c]);
        for (Index c = 0; c < w; ++c) m[c] /= A(Sp);
        for (Index s = 0; s < Sp; ++s)
          for (Index c = 0; c < w; ++c) {
            const A t = A(xs[C * s + c]) - m[c];
            v[c] += t * t;
          }
        for (Index c = 0; c < w; ++c) {
          v[c] = A(1) / std::sqrt(v[c] / A(Sp) + A(eps));
          mp[c0 + c + C * n] = m[c];
          ip[c0 + c + C * n] = v[c];
        }
        for (Index s = 0; s < Sp; ++s)
          for (Index c = 0; c < w; ++c) ys[C * s + c] = S((A(xs[C * s + c]) - m[c]) * v[c]);
      }
    });
  } else {
    const auto& d = ctx.device();
    const Shape<3> v3(C, Sp, N), s3(C, 1, N);
    const Eigen::array<Index, 3> bc{1, Sp, 1};
    const Eigen::array<Index, 1> red{1};
    auto x3 = x.reshape(v3).template cast<A>();
    mean.device(d) = x3.mean(red);
    auto centered = x3 - mean.reshape(s3).broadcast(bc);
    invstd.device(d) = (centered.square().mean(red) + A(eps)).rsqrt();
    auto y3 = y.reshape(v3);
    y3.device(d) = (centered * invstd.reshape(s3).broadcast(bc)).template cast<S>();
  }
}

template <int Dim, class S, class Device>
void instance_norm_backward(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& y,
                            const ConstTensorMap<acc_t<S>, 2>& invstd, const ConstTensorMap<S, Dim + 2>& dy,
                            TensorMap<S, Dim + 2>& dx, bool overwrite = false) {
  using A = acc_t<S>;
  const Index C = y.dimension(0), N = y.dimension(Dim + 1), Sp = y.size() / std::max<Index>(1, C * N);
  DICYC_CHECK(dy.dimensions() == y.dimensions() && dx.dimensions() == y.dimensions(), ShapeError,
              "instance_norm" << Dim << "d: expected gradients of shape " << shape_str(y.dimensions())
                              << ", but got output gradient " << shape_str(dy.dimensions()) << " and input gradient "
                              << shape_str(dx.dimensions()));
  DICYC_CHECK(invstd.dimension(0) == C && invstd.dimension(1) == N, ShapeError,
              "instance_norm" << Dim << "d: expected statistics of shape [" << C << ", " << N << "], but got "
                              << shape_str(invstd.dimensions()));
  if constexpr (!core::is_gpu_v<Device> && !is_half_v<S>) {
    using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
    using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
    auto blk = [&](const S* p, Index n, Index s0, Index len) {
      return Eigen::Map<const Mat>(p + C * (s0 + Sp * n), C, len);
    };
    // Both means in one pass: the first C rows of each chunk's result are sum(dy), the next C
    // sum(dy * y).
    const std::vector<A> ab = detail::chunked_channel_sums<A>(ctx, 2 * C, Sp, N, [&](Index n, Index s0, Index len) -> Vec {
      const auto G = blk(dy.data(), n, s0, len);
      Vec r(2 * C);
      r.head(C) = G.rowwise().sum();
      const auto Y = blk(y.data(), n, s0, len);
      if (C >= detail::kNormColumnSumsMinChannels)
        r.tail(C) = detail::column_sums4<Vec>(C, len, [&](Index j) { return G.col(j).array() * Y.col(j).array(); });
      else
        r.tail(C) = (G.array() * Y.array()).matrix().rowwise().sum();
      return r;
    });
    detail::for_each_norm_chunk(ctx, C, Sp, N, [&](Index n, Index s0, Index len) {
      const Eigen::Map<const Vec> a(ab.data() + 2 * C * n, C), b(ab.data() + 2 * C * n + C, C);
      const Eigen::Map<const Vec> iv(invstd.data() + C * n, C);
      const Vec am = a / A(Sp), bm = b / A(Sp);
      Eigen::Map<Mat> D(dx.data() + C * (s0 + Sp * n), C, len);
      const auto g = (((blk(dy.data(), n, s0, len).colwise() - am).array() -
                       blk(y.data(), n, s0, len).array().colwise() * bm.array())
                          .colwise() *
                      iv.array());
      if (overwrite)
        D.array() = g;
      else
        D.array() += g;
    });
  } else if constexpr (!core::is_gpu_v<Device>) {
    const S* yp = y.data();
    const S* gp = dy.data();
    const A* ip = invstd.data();
    S* dp = dx.data();
    ctx.parallel_for(C, double(Sp * N) * 6.0, [&](Index c0, Index c1) {
      const Index w = c1 - c0;
      std::vector<A> a(static_cast<std::size_t>(w)), b(static_cast<std::size_t>(w));
      for (Index n = 0; n < N; ++n) {
        const Index off = C * Sp * n + c0;
        std::fill(a.begin(), a.end(), A(0));
        std::fill(b.begin(), b.end(), A(0));
        for (Index s = 0; s < Sp; ++s)
          for (Index c = 0; c < w; ++c) {
            const A g = A(gp[off + C * s + c]);
            a[c] += g;
            b[c] += g * A(yp[off + C * s + c]);
          }
        for (Index c = 0; c < w; ++c) {
          a[c] /= A(Sp);
          b[c] /= A(Sp);
        }
        for (Index s = 0; s < Sp; ++s)
          for (Index c = 0; c < w; ++c) {
            const Index i = off + C * s + c;
            dp[i] = S((overwrite ? A(0) : A(dp[i])) + ip[c0 + c + C * n] * (A(gp[i]) - a[c] - A(yp[i]) * b[c]));
          }
      }
    });
  } else {
    const auto& d = ctx.device();
    const Shape<3> v3(C, Sp, N), s3(C, 1, N);
    const Eigen::array<Index, 3> bc{1, Sp, 1};
    const Eigen::array<Index, 1> red{1};
    auto y3 = y.reshape(v3).template cast<A>();
    auto dy3 = dy.reshape(v3).template cast<A>();
    // The two per-(c, n) means are materialized: evaluating them inside the broadcast would redo
    // the reduction for every element.
    core::Buffer<A, Device> mdy(ctx, C * N), mdyy(ctx, C * N);
    TensorMap<A, 2> Mdy(mdy.data(), C, N), Mdyy(mdyy.data(), C, N);
    Mdy.device(d) = dy3.mean(red);
    Mdyy.device(d) = (dy3 * y3).mean(red);
    auto dx3 = dx.reshape(v3);
    auto g = invstd.reshape(s3).broadcast(bc) *
             (dy3 - Mdy.reshape(s3).broadcast(bc) - y3 * Mdyy.reshape(s3).broadcast(bc));
    if (overwrite)
      dx3.device(d) = g.template cast<S>();
    else
      dx3.device(d) = (dx3.template cast<A>() + g).template cast<S>();
  }
}

}  // namespace dicyc::ops
