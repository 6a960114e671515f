// dicyc/ops/conv.hpp -- convolution and transposed convolution, forward and backward, 2-D and 3-D.
//
// Contract
//   x      (Cin, s_1..s_Dim, N)               input
//   w      (Cout, Cin, k_1..k_Dim)            conv kernel
//          (Cin, Cout, k_1..k_Dim)            transposed-conv kernel (PyTorch's order)
//   bias   (Cout), optional
//   conv:  out_d = (s_d + 2 p_d - k_d) / s + 1, zero padding p_d
//   convT: out_d = (s_d - 1) * stride - 2 p_d + k_d + output_padding_d
//          (the adjoint of a conv from the output grid to the input grid)
// Backward computes the gradient of <y, dy> and ACCUMULATES (+=) into dx, dw and db. A null
// destination skips that gradient (a frozen module, or no input gradient for the first layer).
//
// Implementation: im2col into a column buffer, then one GEMM per column block (ops/gemm.hpp). The
// column buffer is tiled to the context's workspace limit. Backward recomputes the columns rather
// than keeping them: measured-facts.md found materialized patches 4-5x faster than fused patch
// contractions for the weight gradient, and recomputing keeps the forward's memory at PyTorch's.
#pragma once

#include <string>

#include "dicyc/ops/gemm.hpp"
#include "dicyc/ops/im2col.hpp"

namespace dicyc::ops {

/// Options of a convolution, PyTorch-style: ConvOptions<2>(64, 128, 3).stride(2).padding(1).
template <int Dim>
class ConvOptions {
 public:
  using Extent = std::array<Index, Dim>;
  ConvOptions(Index in_channels, Index out_channels, Index kernel_size)
      : in_(in_channels), out_(out_channels), kernel_(fill(kernel_size)) {}
  ConvOptions(Index in_channels, Index out_channels, const Extent& kernel_size)
      : in_(in_channels), out_(out_channels), kernel_(kernel_size) {}

  ConvOptions& stride(Index v) { return stride(fill(v)); }
  ConvOptions& stride(const Extent& v) { stride_ = v; return *this; }
  ConvOptions& padding(Index v) { return padding(fill(v)); }
  ConvOptions& padding(const Extent& v) { padding_ = v; return *this; }
  ConvOptions& output_padding(Index v) { return output_padding(fill(v)); }
  ConvOptions& output_padding(const Extent& v) { output_padding_ = v; return *this; }
  ConvOptions& bias(bool v) { bias_ = v; return *this; }
  ConvOptions& name(std::string v) { name_ = std::move(v); return *this; }

  Index in_channels() const { return in_; }
  Index out_channels() const { return out_; }
  const Extent& kernel_size() const { return kernel_; }
  const Extent& stride() const { return stride_; }
  const Extent& padding() const { return padding_; }
  const Extent& output_padding() const { return output_padding_; }
  bool bias() const { return bias_; }
  const std::string& name() const { return name_; }

 private:
  static Extent fill(Index v) {
    Extent e;
    e.fill(v);
    return e;
  }
  Index in_, out_;
  Extent kernel_;
  Extent stride_ = fill(1);
  Extent padding_ = fill(0);
  Extent output_padding_ = fill(0);
  bool bias_ = true;
  std::string name_;
};

namespace detail {

template <int Dim>
std::string op_label(const char* kind, const ConvOptions<Dim>& o) {
  std::string s = std::string(kind) + std::to_string(Dim) + "d";
  if (!o.name().empty()) s += " '" + o.name() + "'";
  return s;
}

template <int Dim>
void check_options(const char* kind, const ConvOptions<Dim>& o) {
  const std::string L = op_label(kind, o);
  DICYC_CHECK(o.in_channels() > 0 && o.out_channels() > 0, ConfigError,
              L << ": channel counts must be positive, got in_channels=" << o.in_channels()
                << ", out_channels=" << o.out_channels());
  for (int d = 0; d < Dim; ++d) {
    DICYC_CHECK(o.kernel_size()[d] > 0, ConfigError,
                L << ": kernel size must be positive, got " << shape_str(o.kernel_size()));
    DICYC_CHECK(o.stride()[d] > 0, ConfigError,
                L << ": stride must be positive, got stride " << shape_str(o.stride()));
    DICYC_CHECK(o.padding()[d] >= 0, ConfigError,
                L << ": padding must be non-negative, got padding " << shape_str(o.padding()));
    DICYC_CHECK(o.output_padding()[d] >= 0, ConfigError,
                L << ": output padding must be non-negative, got " << shape_str(o.output_padding()));
  }
}

}  // namespace detail

/// Kernel shape (Cout, Cin, k...) of a conv.
template <int Dim>
Shape<Dim + 2> conv_weight_shape(const ConvOptions<Dim>& o) {
  Shape<Dim + 2> s;
  s[0] = o.out_channels();
  s[1] = o.in_channels();
  for (int d = 0; d < Dim; ++d) s[d + 2] = o.kernel_size()[d];
  return s;
}

/// Kernel shape (Cin, Cout, k...) of a transposed conv.
template <int Dim>
Shape<Dim + 2> conv_transpose_weight_shape(const ConvOptions<Dim>& o) {
  Shape<Dim + 2> s = conv_weight_shape(o);
  std::swap(s[0], s[1]);
  return s;
}

/// Output shape of a conv on input shape `in`; validates channels and sizes.
template <int Dim>
Shape<Dim + 2> conv_output_shape(const ConvOptions<Dim>& o, const Shape<Dim + 2>& in) {
  detail::check_options("conv", o);
  const std::string L = detail::op_label("conv", o);
  DICYC_CHECK(in[0] == o.in_channels(), ShapeError,
              L << ": expected input with " << o.in_channels() << " channels (weight "
                << shape_str(conv_weight_shape(o)) << "), but got input of shape " << shape_str(in) << " instead");
  Shape<Dim + 2> out;
  out[0] = o.out_channels();
  out[Dim + 1] = in[Dim + 1];
  for (int d = 0; d < Dim; ++d) {
    const Index padded = in[d + 1] + 2 * o.padding()[d];
    DICYC_CHECK(padded >= o.kernel_size()[d], ShapeError,
                L << ": input of shape " << shape_str(in) << " is smaller than the kernel "
                  << extent_str(o.kernel_size()) << " (padded spatial size "
                  << extent_str(spatial_of<Dim>(in)) << " + 2 x " << shape_str(o.padding()) << ")");
    out[d + 1] = (padded - o.kernel_size()[d]) / o.stride()[d] + 1;
  }
  return out;
}

/// Output shape of a transposed conv on input shape `in`.
template <int Dim>
Shape<Dim + 2> conv_transpose_output_shape(const ConvOptions<Dim>& o, const Shape<Dim + 2>& in) {
  detail::check_options("conv_transpose", o);
  const std::string L = detail::op_label("conv_transpose", o);
  DICYC_CHECK(in[0] == o.in_channels(), ShapeError,
              L << ": expected input with " << o.in_channels() << " channels (weight "
                << shape_str(conv_transpose_weight_shape(o)) << "), but got input of shape " << shape_str(in)
                << " instead");
  Shape<Dim + 2> out;
  out[0] = o.out_channels();
  out[Dim + 1] = in[Dim + 1];
  for (int d = 0; d < Dim; ++d) {
    DICYC_CHECK(o.output_padding()[d] < o.stride()[d], ConfigError,
                L << ": output padding " << shape_str(o.output_padding()) << " must be smaller than the stride "
                  << shape_str(o.stride()));
    DICYC_CHECK(in[d + 1] >= 1, ShapeError, L << ": empty input of shape " << shape_str(in));
    out[d + 1] = (in[d + 1] - 1) * o.stride()[d] - 2 * o.padding()[d] + o.kernel_size()[d] + o.output_padding()[d];
    DICYC_CHECK(out[d + 1] >= 1, ShapeError,
                L << ": input of shape " << shape_str(in) << " gives an empty output");
  }
  return out;
}

namespace detail {

template <int Rank, class S>
void check_same(const std::string& L, const char* what, const Shape<Rank>& expected, const Shape<Rank>& got) {
  DICYC_CHECK(expected == got, ShapeError,
              L << ": expected " << what << " of shape " << shape_str(expected) << ", but got " << shape_str(got)
                << " instead");
}

/// Geometry of the conv from a (C, image) grid to an (out) grid.
template <int Dim>
PatchGeometry<Dim> geometry(const ConvOptions<Dim>& o, Index channels, const Shape<Dim + 2>& image,
                            const Shape<Dim + 2>& out) {
  PatchGeometry<Dim> g;
  g.channels = channels;
  g.batch = image[Dim + 1];
  for (int d = 0; d < Dim; ++d) {
    g.image[d] = image[d + 1];
    g.out[d] = out[d + 1];
  }
  g.kernel = o.kernel_size();
  g.stride = o.stride();
  g.pad = o.padding();
  return g;
}

/// Column block width for a column buffer of `rows` rows within the workspace limit.
template <class S, class Ctx>
Index block_width(const Ctx& ctx, Index rows, Index cols) {
  const Index w = static_cast<Index>(ctx.workspace_limit() / (sizeof(S) * std::max<Index>(rows, 1)));
  return std::max<Index>(1, std::min(cols, w));
}

/// y(Cout, cols) += bias broadcast over columns.
template <class S, class Device>
void add_bias(Context<Device>& ctx, const ConstTensorMap<S, 1>& b, S* y, Index cout, Index cols) {
  TensorMap<S, 2> Y(y, cout, cols);
  Y.device(ctx.device()) = Y + b.reshape(Shape<2>(cout, 1)).broadcast(Shape<2>(1, cols));
}

/// db += sum of dy(Cout, cols) over columns.
template <class S, class Device>
void sum_bias(Context<Device>& ctx, const S* dy, TensorMap<S, 1>& db, Index cout, Index cols) {
  ConstTensorMap<S, 2> DY(dy, cout, cols);
  const Eigen::array<Index, 1> red{1};
  db.device(ctx.device()) = (db.template cast<acc_t<S>>() + DY.template cast<acc_t<S>>().sum(red)).template cast<S>();
}

}  // namespace detail

/// y = conv(x, w) + bias.
template <int Dim, class S, class Device>
void conv_forward(Context<Device>& ctx, const ConvOptions<Dim>& o, const ConstTensorMap<S, Dim + 2>& x,
                  const ConstTensorMap<S, Dim + 2>& w, const nondeduced_t<ConstTensorMap<S, 1>>* bias, TensorMap<S, Dim + 2>& y) {
  const std::string L = detail::op_label("conv", o);
  const Shape<Dim + 2> out = conv_output_shape(o, x.dimensions());
  detail::check_same<Dim + 2, S>(L, "weight", conv_weight_shape(o), w.dimensions());
  detail::check_same<Dim + 2, S>(L, "output", out, y.dimensions());
  if (bias) detail::check_same<1, S>(L, "bias", Shape<1>(o.out_channels()), bias->dimensions());
  const auto g = detail::geometry(o, o.in_channels(), x.dimensions(), out);
  const Index rows = g.rows(), cols = g.cols(), cout = o.out_channels();
  if (g.trivial()) {
    gemm<S>(ctx, false, false, cout, cols, rows, w.data(), x.data(), y.data());
  } else {
    const Index bw = detail::block_width<S>(ctx, rows, cols);
    core::Buffer<S, Device> buf(ctx, rows * bw);
    for (Index j0 = 0; j0 < cols; j0 += bw) {
      const Index j1 = std::min(cols, j0 + bw);
      im2col<Dim>(ctx, g, x.data(), buf.data(), j0, j1);
      gemm<S>(ctx, false, false, cout, j1 - j0, rows, w.data(), buf.data(), y.data() + cout * j0);
    }
  }
  if (bias) detail::add_bias(ctx, *bias, y.data(), cout, cols);
}

/// Accumulates the gradients of <conv(x, w) + bias, dy> into *dx, *dw, *db (each may be null).
template <int Dim, class S, class Device>
void conv_backward(Context<Device>& ctx, const ConvOptions<Dim>& o, const ConstTensorMap<S, Dim + 2>& x,
                   const ConstTensorMap<S, Dim + 2>& w, const ConstTensorMap<S, Dim + 2>& dy,
                   nondeduced_t<TensorMap<S, Dim + 2>>* dx, nondeduced_t<TensorMap<S, Dim + 2>>* dw,
                   nondeduced_t<TensorMap<S, 1>>* db) {
  const std::string L = detail::op_label("conv", o);
  const Shape<Dim + 2> out = conv_output_shape(o, x.dimensions());
  detail::check_same<Dim + 2, S>(L, "weight", conv_weight_shape(o), w.dimensions());
  detail::check_same<Dim + 2, S>(L, "output gradient", out, dy.dimensions());
  if (dx) detail::check_same<Dim + 2, S>(L, "input gradient", x.dimensions(), dx->dimensions());
  if (dw) detail::check_same<Dim + 2, S>(L, "weight gradient", w.dimensions(), dw->dimensions());
  if (db) detail::check_same<1, S>(L, "bias gradient", Shape<1>(o.out_channels()), db->dimensions());
  const auto g = detail::geometry(o, o.in_channels(), x.dimensions(), out);
  const Index rows = g.rows(), cols = g.cols(), cout = o.out_channels();
  if (db) detail::sum_bias(ctx, dy.data(), *db, cout, cols);
  if (!dx && !dw) return;
  if (g.trivial()) {
    if (dw) gemm<S>(ctx, false, true, cout, rows, cols, dy.data(), x.data(), dw->data(), 1.0f, 1.0f);
    if (dx) gemm<S>(ctx, true, false, rows, cols, cout, w.data(), dy.data(), dx->data(), 1.0f, 1.0f);
    return;
  }
  const Index bw = detail::block_width<S>(ctx, rows, cols);
  core::Buffer<S, Device> buf(ctx, rows * bw);
  for (Index j0 = 0; j0 < cols; j0 += bw) {
    const Index j1 = std::min(cols, j0 + bw), nb = j1 - j0;
    const S* dyb = dy.data() + cout * j0;
    if (dw) {
      im2col<Dim>(ctx, g, x.data(), buf.data(), j0, j1);
      gemm<S>(ctx, false, true, cout, rows, nb, dyb, buf.data(), dw->data(), 1.0f, 1.0f);
    }
    if (dx) {
      gemm<S>(ctx, true, false, rows, nb, cout, w.data(), dyb, buf.data());
      col2im<Dim>(ctx, g, buf.data(), dx->data(), j0, j1);
    }
  }
}

/// y = conv_transpose(x, w) + bias.
template <int Dim, class S, class Device>
void conv_transpose_forward(Context<Device>& ctx, const ConvOptions<Dim>& o, const ConstTensorMap<S, Dim + 2>& x,
                            const ConstTensorMap<S, Dim + 2>& w, const nondeduced_t<ConstTensorMap<S, 1>>* bias,
                            TensorMap<S, Dim + 2>& y) {
  const std::string L = detail::op_label("conv_transpose", o);
  const Shape<Dim + 2> out = conv_transpose_output_shape(o, x.dimensions());
  detail::check_same<Dim + 2, S>(L, "weight", conv_transpose_weight_shape(o), w.dimensions());
  detail::check_same<Dim + 2, S>(L, "output", out, y.dimensions());
  if (bias) detail::check_same<1, S>(L, "bias", Shape<1>(o.out_channels()), bias->dimensions());
  // The adjoint conv maps the output grid (Cout channels) to the input grid.
  const auto g = detail::geometry(o, o.out_channels(), out, x.dimensions());
  const Index rows = g.rows(), cols = g.cols(), cin = o.in_channels();
  y.device(ctx.device()) = y.constant(S(0));
  const Index bw = detail::block_width<S>(ctx, rows, cols);
  core::Buffer<S, Device> buf(ctx, rows * bw);
  for (Index j0 = 0; j0 < cols; j0 += bw) {
    const Index j1 = std::min(cols, j0 + bw);
    gemm<S>(ctx, true, false, rows, j1 - j0, cin, w.data(), x.data() + cin * j0, buf.data());
    col2im<Dim>(ctx, g, buf.data(), y.data(), j0, j1);
  }
  if (bias) detail::add_bias(ctx, *bias, y.data(), o.out_channels(), num_elements(out) / o.out_channels());
}

/// Accumulates the gradients of <conv_transpose(x, w) + bias, dy> into *dx, *dw, *db.
template <int Dim, class S, class Device>
void conv_transpose_backward(Context<Device>& ctx, const ConvOptions<Dim>& o, const ConstTensorMap<S, Dim + 2>& x,
                             const ConstTensorMap<S, Dim + 2>& w, const ConstTensorMap<S, Dim + 2>& dy,
                             nondeduced_t<TensorMap<S, Dim + 2>>* dx, nondeduced_t<TensorMap<S, Dim + 2>>* dw,
                   nondeduced_t<TensorMap<S, 1>>* db) {
  const std::string L = detail::op_label("conv_transpose", o);
  const Shape<Dim + 2> out = conv_transpose_output_shape(o, x.dimensions());
  detail::check_same<Dim + 2, S>(L, "weight", conv_transpose_weight_shape(o), w.dimensions());
  detail::check_same<Dim + 2, S>(L, "output gradient", out, dy.dimensions());
  if (dx) detail::check_same<Dim + 2, S>(L, "input gradient", x.dimensions(), dx->dimensions());
  if (dw) detail::check_same<Dim + 2, S>(L, "weight gradient", w.dimensions(), dw->dimensions());
  if (db) detail::check_same<1, S>(L, "bias gradient", Shape<1>(o.out_channels()), db->dimensions());
  const auto g = detail::geometry(o, o.out_channels(), out, x.dimensions());
  const Index rows = g.rows(), cols = g.cols(), cin = o.in_channels();
  if (db) detail::sum_bias(ctx, dy.data(), *db, o.out_channels(), num_elements(out) / o.out_channels());
  if (!dx && !dw) return;
  const Index bw = detail::block_width<S>(ctx, rows, cols);
  core::Buffer<S, Device> buf(ctx, rows * bw);
  for (Index j0 = 0; j0 < cols; j0 += bw) {
    const Index j1 = std::min(cols, j0 + bw), nb = j1 - j0;
    im2col<Dim>(ctx, g, dy.data(), buf.data(), j0, j1);
    if (dx) gemm<S>(ctx, false, false, cin, nb, rows, w.data(), buf.data(), dx->data() + cin * j0, 1.0f, 1.0f);
    if (dw) gemm<S>(ctx, false, true, cin, rows, nb, x.data() + cin * j0, buf.data(), dw->data(), 1.0f, 1.0f);
  }
}

}  // namespace dicyc::ops
