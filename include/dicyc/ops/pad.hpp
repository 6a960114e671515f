// dicyc/ops/pad.hpp -- reflection padding, forward and backward, 2-D and 3-D.
//
// Contract: x (C, s_1..s_Dim, N) -> y (C, s_d + 2 p_d, N), mirrored without repeating the edge
// (PyTorch's ReflectionPad): y(o) = x(r(o)) with r(o) = |o - p| reflected into [0, s - 1].
// Requires p_d < s_d. Backward ACCUMULATES the fold of dy into dx.
//
// Both directions are gathers written as generate() functors (EIGEN_DEVICE_FUNC), so one body
// serves every device: the forward reads one source per output; the backward sums, per input
// element, the at most three outputs per axis that read it.
#pragma once

#include <string>

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
  detail::ReflectPadGenerator<Dim, S> gen{x.data(), {}, {}};
  for (int d = 0; d < Dim + 2; ++d) gen.in[d] = x.dimension(d);
  for (int d = 0; d < Dim; ++d) gen.pad[d] = pad[d];
  y.device(ctx.device()) = y.generate(gen);
}

/// dx += fold(dy).
template <int Dim, class S, class Device>
void reflection_pad_backward(core::Context<Device>& ctx, const std::array<Index, Dim>& pad,
                             const ConstTensorMap<S, Dim + 2>& dy, TensorMap<S, Dim + 2>& dx) {
  const auto out = reflection_pad_output_shape<Dim>(dx.dimensions(), pad);
  DICYC_CHECK(out == dy.dimensions(), ShapeError,
              "reflection_pad" << Dim << "d: expected output gradient of shape " << shape_str(out) << ", but got "
                               << shape_str(dy.dimensions()) << " instead");
  detail::ReflectFoldGenerator<Dim, S> gen{dy.data(), {}, {}};
  for (int d = 0; d < Dim + 2; ++d) gen.out[d] = dy.dimension(d);
  for (int d = 0; d < Dim; ++d) gen.pad[d] = pad[d];
  dx.device(ctx.device()) = dx + dx.generate(gen);
}

}  // namespace dicyc::ops
