// dicyc/ops/pad.hpp -- reflection padding, forward and backward, 2-D and 3-D.
//
// Contract: x (C, s_1..s_Dim, N) -> y (C, s_d + 2 p_d, N), mirrored without repeating the edge
// (PyTorch's ReflectionPad): y(o) = x(r(o)) with r(o) = |o - p| reflected into [0, s - 1].
// Requires p_d < s_d. Backward ACCUMULATES the fold of dy into dx (or writes it, with overwrite: dx is not read).
//
// On the GPU both directions are gathers written as generate() functors (EIGEN_DEVICE_FUNC): the
// forward reads one source per output; the backward sums, per input element, the at most three
// outputs per axis that read it. On the CPU they are loops over rows along the first spatial axis
// (C x s_1 contiguous values): the forward copies each row's interior in one run and its 2 p_1
// mirrored columns one channel vector at a time; the backward adds, per input row, the interior
// runs of the (at most 3^(Dim-1)) padded rows that read it, then their mirrored columns. Eigen's
// generator decomposed the index of every element: the fold was 4 % of a CycleGAN iteration.
// Each input row is summed by one thread in a fixed order, so results do not depend on the
// thread count.
#pragma once

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "dicyc/core/buffer.hpp"

namespace dicyc::ops {

namespace detail {

EIGEN_DEVICE_FUNC inline Index reflect_index(Index o, Index p, Index n) {
  Index i = o - p;
  if (i < 0) i = -i;
  if (i >= n) i = 2 * (n - 1) - i;
  return i;
}

template <int Dim, class S>
struct ReflectPadGenerator {
  const S* x;
  Eigen::array<Index, Dim + 2> in;
  Eigen::array<Index, Dim> pad;
  EIGEN_DEVICE_FUNC S operator()(const Eigen::array<Index, Dim + 2>& o) const {
    Index flat = o[Dim + 1];
    for (int d = Dim; d >= 0; --d) flat = flat * in[d] + (d == 0 ? o[0] : reflect_index(o[d], pad[d - 1], in[d]));
    return x[flat];
  }
};

template <int Dim, class S>
struct ReflectFoldGenerator {
  const S* dy;
  Eigen::array<Index, Dim + 2> out;  // padded shape
  Eigen::array<Index, Dim> pad;
  EIGEN_DEVICE_FUNC S operator()(const Eigen::array<Index, Dim + 2>& i) const {
    using A = typename ::dicyc::acc<S>::type;
    // Per axis, the padded positions that read input index i_d: i + p always; p - i when
    // 1 <= i <= p; 2n - 2 - i + p when n - 1 - p <= i <= n - 2.
    Index src[Dim][3];
    int cnt[Dim];
    for (int d = 0; d < Dim; ++d) {
      const Index n = out[d + 1] - 2 * pad[d], p = pad[d], id = i[d + 1];
      int c = 0;
      src[d][c++] = id + p;
      if (id >= 1 && id <= p) src[d][c++] = p - id;
      if (id >= n - 1 - p && id <= n - 2) src[d][c++] = 2 * n - 2 - id + p;
      cnt[d] = c;
    }
    A sum(0);
    int sel[Dim];
    for (int d = 0; d < Dim; ++d) sel[d] = 0;
    for (;;) {
      Index flat = i[Dim + 1];
      for (int d = Dim - 1; d >= 0; --d) flat = flat * out[d + 1] + src[d][sel[d]];
      flat = flat * out[0] + i[0];
      sum += A(dy[flat]);
      int d = 0;
      for (; d < Dim; ++d) {
        if (++sel[d] < cnt[d]) break;
        sel[d] = 0;
      }
      if (d == Dim) break;
    }
    return S(sum);
  }
};


// ---- CPU: row loops. A "row" is the C x s_1 values at one (i_2..i_Dim, n): contiguous.

/// Splits row index r (over s_2..s_Dim, N of shape s) into its coordinates.
template <int Dim>
void row_coords(Index r, const Shape<Dim + 2>& s, Index* idx /* Dim: i_2..i_Dim, then n */) {
  for (int d = 2; d <= Dim; ++d) {
    idx[d - 2] = r % s[d];
    r /= s[d];
  }
  idx[Dim - 1] = r;
}

template <int Dim, class S, class Device>
void reflect_pad_rows(core::Context<Device>& ctx, const std::array<Index, Dim>& pad, const S* x,
                      const Shape<Dim + 2>& xs, S* y, const Shape<Dim + 2>& ys) {
  const Index C = xs[0], n1 = xs[1], p1 = pad[0], xrow = C * n1, yrow = C * ys[1];
  const Index rows = num_elements(ys) / std::max<Index>(yrow, 1);
  ctx.parallel_for(rows, double(yrow) * 2.0, [&](Index r0, Index r1) {
    Index o[Dim];
    for (Index r = r0; r < r1; ++r) {
      row_coords<Dim>(r, ys, o);
      Index src = o[Dim - 1];  // the source row's index, from n down to axis 2
      for (int d = Dim; d >= 2; --d) src = src * xs[d] + reflect_index(o[d - 2], pad[d - 1], xs[d]);
      const S* xr = x + xrow * src;
      S* yr = y + yrow * r;
      std::copy(xr, xr + xrow, yr + C * p1);
      for (Index j = 0; j < p1; ++j) {
        const Index lo = reflect_index(j, p1, n1), hi = reflect_index(p1 + n1 + j, p1, n1);
        std::copy(xr + C * lo, xr + C * (lo + 1), yr + C * j);
        std::copy(xr + C * hi, xr + C * (hi + 1), yr + C * (p1 + n1 + j));
      }
    }
  });
}

template <int Dim, class S, class Device>
void reflect_fold_rows(core::Context<Device>& ctx, const std::array<Index, Dim>& pad, const S* dy,
                       const Shape<Dim + 2>& ys, S* dx, const Shape<Dim + 2>& xs, bool overwrite = false) {
  using A = typename ::dicyc::acc<S>::type;
  const Index C = xs[0], n1 = xs[1], p1 = pad[0], xrow = C * n1, yrow = C * ys[1];
  const Index rows = num_elements(xs) / std::max<Index>(xrow, 1);
  int combos = 1;
  for (int d = 1; d < Dim; ++d) combos *= 3;
  ctx.parallel_for(rows, double(yrow) * 2.0 * combos, [&](Index r0, Index r1) {
    std::vector<A> acc(static_cast<std::size_t>(xrow));
    Index i[Dim];
    for (Index r = r0; r < r1; ++r) {
      row_coords<Dim>(r, xs, i);
      // Per axis 2..Dim, the padded indices that read input index i_d (as in ReflectFoldGenerator).
      Index src[Dim][3];
      int cnt[Dim], sel[Dim];
      for (int d = 2; d <= Dim; ++d) {
        const Index n = xs[d], p = pad[d - 1], id = i[d - 2];
        int c = 0;
        src[d - 2][c++] = id + p;
        if (id >= 1 && id <= p) src[d - 2][c++] = p - id;
        if (id >= n - 1 - p && id <= n - 2) src[d - 2][c++] = 2 * n - 2 - id + p;
        cnt[d - 2] = c;
        sel[d - 2] = 0;
      }
      std::fill(acc.begin(), acc.end(), A(0));
      for (;;) {
        Index row = i[Dim - 1];
        for (int d = Dim; d >= 2; --d) row = row * ys[d] + src[d - 2][sel[d - 2]];
        const S* g = dy + yrow * row;
        const S* gi = g + C * p1;
        for (Index k = 0; k < xrow; ++k) acc[k] += A(gi[k]);
        for (Index j = 0; j < p1; ++j) {  // the mirrored columns, left then right
          const Index lo = reflect_index(j, p1, n1), hi = reflect_index(p1 + n1 + j, p1, n1);
          for (Index c = 0; c < C; ++c) acc[C * lo + c] += A(g[C * j + c]);
          for (Index c = 0; c < C; ++c) acc[C * hi + c] += A(g[C * (p1 + n1 + j) + c]);
        }
        int d = 0;
        for (; d < Dim - 1; ++d) {
          if (++sel[d] < cnt[d]) break;
          sel[d] = 0;
        }
        if (d == Dim - 1) break;
      }
      S* o = dx + xrow * r;
      if (overwrite)
        for (Index k = 0; k < xrow; ++k) o[k] = S(acc[k]);
      else
        for (Index k = 0; k < xrow; ++k) o[k] = S(A(o[k]) + acc[k]);
    }
  });
}
}  // namespace detail

template <int Dim>
Shape<Dim + 2> reflection_pad_output_shape(const Shape<Dim + 2>& in, const std::array<Index, Dim>& pad,
                                           const std::string& name = "") {
  const std::string L = "reflection_pad" + std::to_string(Dim) + "d" + (name.empty() ? "" : " '" + name + "'");
  Shape<Dim + 2> out = in;
  for (int d = 0; d < Dim; ++d) {
    DICYC_CHECK(pad[d] >= 0, ConfigError, L << ": padding must be non-negative, got " << shape_str(pad));
    DICYC_CHECK(pad[d] < in[d + 1], ShapeError,
                L << ": padding " << shape_str(pad) << " must be smaller than the input's spatial size, but got input of shape "
                  << shape_str(in));
    out[d + 1] = in[d + 1] + 2 * pad[d];
  }
  return out;
}

template <int Dim>
std::array<Index, Dim> uniform_pad(Index p) {
  std::array<Index, Dim> a;
  a.fill(p);
  return a;
}

/// y = reflection_pad(x, pad).
template <int Dim, class S, class Device>
void reflection_pad_forward(core::Context<Device>& ctx, const std::array<Index, Dim>& pad,
                            const ConstTensorMap<S, Dim + 2>& x, TensorMap<S, Dim + 2>& y) {
  const auto out = reflection_pad_output_shape<Dim>(x.dimensions(), pad);
  DICYC_CHECK(out == y.dimensions(), ShapeError,
              "reflection_pad" << Dim << "d: expected output of shape " << shape_str(out) << ", but got "
                               << shape_str(y.dimensions()) << " instead");
  if constexpr (core::is_gpu_v<Device>) {
    detail::ReflectPadGenerator<Dim, S> gen{x.data(), {}, {}};
    for (int d = 0; d < Dim + 2; ++d) gen.in[d] = x.dimension(d);
    for (int d = 0; d < Dim; ++d) gen.pad[d] = pad[d];
    y.device(ctx.device()) = y.generate(gen);
  } else {
    detail::reflect_pad_rows<Dim>(ctx, pad, x.data(), x.dimensions(), y.data(), out);
  }
}

/// dx += fold(dy).
template <int Dim, class S, class Device>
void reflection_pad_backward(core::Context<Device>& ctx, const std::array<Index, Dim>& pad,
                             const ConstTensorMap<S, Dim + 2>& dy, TensorMap<S, Dim + 2>& dx, bool overwrite = false) {
  const auto out = reflection_pad_output_shape<Dim>(dx.dimensions(), pad);
  DICYC_CHECK(out == dy.dimensions(), ShapeError,
              "reflection_pad" << Dim << "d: expected output gradient of shape " << shape_str(out) << ", but got "
                               << shape_str(dy.dimensions()) << " instead");
  if constexpr (core::is_gpu_v<Device>) {
    detail::ReflectFoldGenerator<Dim, S> gen{dy.data(), {}, {}};
    for (int d = 0; d < Dim + 2; ++d) gen.out[d] = dy.dimension(d);
    for (int d = 0; d < Dim; ++d) gen.pad[d] = pad[d];
    if (overwrite)
      dx.device(ctx.device()) = dx.generate(gen);
    else
      dx.device(ctx.device()) = dx + dx.generate(gen);
  } else {
    detail::reflect_fold_rows<Dim>(ctx, pad, dy.data(), out, dx.data(), dx.dimensions(), overwrite);
  }
}

}  // namespace dicyc::ops
