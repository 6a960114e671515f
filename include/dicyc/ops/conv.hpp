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
// plan_conv() chooses each pass's kernel (ConvPath) from the shapes and the context's settings:
// stride-1 3x3 convs with >= kWinogradMinChannels channels on both sides run on Winograd on the
// CPU (ops/winograd.hpp; forward, input and weight gradients; ctx.set_winograd(false) turns it
// off), wide and thin input gradients / transposed forwards on GEMM + col2im (ctx.set_col2im(false)
// turns it off); where the build links oneDNN, the passes that measured faster there (the
// PatchGAN's 4^d convs, the stems, the downsampling input gradients; float) run on oneDNN's own
// convolution primitives (ops/conv_dnnl.hpp; ctx.set_dnnl_conv); stride-1 convs with one channel
// on one side (the 7^d heads, the stems' input gradients) on direct sums (ops/conv_thin.hpp;
// ctx.set_thin_direct(false) turns it off). The measurements behind the thresholds are in
// docs/results/conv-paths.md.
// Implementation of everything else: every product is a gather (ops/im2col.hpp, normal or transposed mode) followed
// by a GEMM (ops/gemm.hpp); nothing scatters.
//   conv forward        y  = W              x cols(x)             normal gather
//   conv input grad     dx += W^(ci,co,k)   x cols_T(dy)          transposed gather, W's first two
//                                                                  axes swapped (a small shuffle)
//   conv weight grad    dW += dy            x cols(x)^T
//   convT forward       y  = W^(co,ci,k)    x cols_T(x)
//   convT input grad    dx += W             x cols(dy)
//   convT weight grad   dW += x             x cols(dy)^T
// On the CPU the columns are split into one contiguous range per pool thread, and each thread
// walks its range in cache-sized blocks (about 1 MiB of columns): gather, then a single-threaded
// GEMM (oneDNN or Eigen). The CPU gathers only in normal mode, whose x taps are contiguous runs:
// a transposed gather becomes normal ones, at stride 1 by flipping the kernel, at larger strides
// by phases. Weight gradients reduce per-thread partial sums at the end. On the GPU
// the gather is a generate() expression and the GEMM cuBLAS, tiled to the workspace limit.
// Backward recomputes the columns rather than keeping them from the forward: measured-facts.md
// found materialized patches 4-5x faster than fused patch contractions, and recomputing keeps
// the forward's memory at PyTorch's. Half on the CPU converts to float at the op boundary.
#pragma once

#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <vector>

#include "dicyc/ops/conv_dnnl.hpp"
#include "dicyc/ops/conv_thin.hpp"
#include "dicyc/ops/gemm.hpp"
#include "dicyc/ops/im2col.hpp"
#include "dicyc/ops/winograd.hpp"

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

/// Geometry of the gather of a (channels, image) tensor onto an (out) grid.
template <int Dim>
PatchGeometry<Dim> geometry(const ConvOptions<Dim>& o, Index channels, const Shape<Dim + 2>& image,
                            const Shape<Dim + 2>& out, bool transposed) {
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
  g.transposed = transposed;
  return g;
}

/// Column block width: about `target` bytes of columns, at least 8 columns.
template <class S>
Index block_width(std::size_t target, Index rows, Index cols) {
  const Index w = static_cast<Index>(target / (sizeof(S) * std::max<Index>(rows, 1)));
  return std::max<Index>(1, std::min(cols, std::max<Index>(8, w)));
}

/// GPU: gathers the columns block by block within the workspace limit and hands each block to
/// f(block, j0, j1).
template <int Dim, class S, class Device, class F>
void for_each_gathered_block(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* src, F&& f) {
  const Index rows = g.rows(), cols = g.cols();
  const Index bw = block_width<S>(ctx.workspace_limit(), rows, cols);
  core::Buffer<S, Device> buf(ctx, rows * bw);
  for (Index j0 = 0; j0 < cols; j0 += bw) {
    const Index j1 = std::min(cols, j0 + bw);
    im2col_generic<Dim>(ctx.device(), g, src, buf.data(), j0, j1);
    f(static_cast<const S*>(buf.data()), j0, j1);
  }
}

// ------------------------------------------------------------------ one output row, no gather
// Products with one output row (m == 1) at stride 1 -- a conv to one channel (the generator's
// 7^3 head), its weight gradient, and the input gradient of a conv from one channel (the stem, in
// the cycle) -- skip the gather: im2col + GEMM wrote and read C * kvol values per output for one
// multiply-add each (the 3-D head on 16 channels: 5.6 GB of columns per pass at 64^3).
// Outputs go a plane at a time (2-D: the image; 3-D: one z), on the source's full x extent X:
// without padding, output (ox, oy) reads source (ox + kx, oy + ky), so at plane index
// p = ox + X oy the x taps of one (ky, kz) are the C * kx contiguous values at
// C (p + X ky + X Y kz): the columns of a matrix with leading dimension C, which Eigen's GEMV
// reads in place (the columns overlap; nothing is copied). Positions with ox >= out_x are
// computed and dropped (X / out_x more work: 1.1x at 70 -> 64). Padding goes to a copy first.

/// Whether plane_gemv / plane_gemv_wgrad apply to g (normal mode, stride 1, no cropping).
template <int Dim>
bool plane_gemv_applies(const PatchGeometry<Dim>& g) {
  if (g.transposed) return false;
  for (int d = 0; d < Dim; ++d)
    if (g.stride[d] != 1 || g.pad[d] < 0 || g.out[d] + g.kernel[d] - 1 > g.image[d] + 2 * g.pad[d]) return false;
  return true;
}

/// The source of g with its padding applied (a zero-padded copy when g pads; `hold` keeps it).
template <int Dim, class S, class Device>
const S* plane_source(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* src, core::Buffer<S, Device>& hold,
                      std::array<Index, Dim>& padded) {
  bool pads = false;
  Index npi = 1, npp = 1;
  for (int d = 0; d < Dim; ++d) {
    padded[d] = g.image[d] + 2 * g.pad[d];
    pads |= g.pad[d] != 0;
    npi *= g.image[d];
    npp *= padded[d];
  }
  if (!pads) return src;
  const Index C = g.channels, X = g.image[0];
  hold = core::Buffer<S, Device>(ctx, C * npp * g.batch);
  hold.set_zero();
  S* out = hold.data();
  // One item: one source row along x (y fastest, then z, then the batch).
  ctx.parallel_for(npi / X * g.batch, double(C * X), [&](Index r0, Index r1) {
    for (Index r = r0; r < r1; ++r) {
      Index q = r, off = g.pad[0], mul = padded[0];
      for (int d = 1; d < Dim; ++d) {
        off += (q % g.image[d] + g.pad[d]) * mul;
        q /= g.image[d];
        mul *= padded[d];
      }
      std::memcpy(out + C * (off + npp * q), src + C * X * r, sizeof(S) * C * X);
    }
  });
  return out;
}

/// Work items of the plane products: (plane, chunk of output rows).
template <int Dim>
struct PlaneItems {
  Index rows_per = 1, per_plane = 1, planes = 1, X = 1, OX = 1, OY = 1, OZ = 1;
  PlaneItems(const PatchGeometry<Dim>& g, Index padded_x)
      : X(padded_x), OX(g.out[0]), OY(g.out[1]), OZ(Dim == 3 ? g.out[Dim - 1] : 1) {
    rows_per = std::max<Index>(1, Index(16384) / std::max<Index>(X, 1));
    per_plane = (OY + rows_per - 1) / rows_per;
    planes = OZ * g.batch;
  }
  Index count() const { return planes * per_plane; }
  /// Item i: sample n, plane oz, output rows [r0, r1), np plane positions.
  struct Item {
    Index n, oz, r0, r1, np;
  };
  Item operator[](Index i) const {
    const Index pl = i / per_plane, r0 = (i % per_plane) * rows_per, r1 = std::min(OY, r0 + rows_per);
    return {pl / OZ, pl % OZ, r0, r1, X * (r1 - 1 - r0) + OX};
  }
};

/// y(1 x cols) (+)= M(1 x rows) * gather(src), for plane_gemv_applies(g).
template <int Dim, class S, class Device>
void plane_gemv(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* src, const S* M, S* y, bool accumulate) {
  static_assert(Dim == 2 || Dim == 3, "plane_gemv: 2-D or 3-D");
  using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  using Row = Eigen::Matrix<S, 1, Eigen::Dynamic>;
  core::Buffer<S, Device> hold;
  std::array<Index, Dim> P;
  const S* s = plane_source<Dim>(ctx, g, src, hold, P);
  const Index C = g.channels, KX = g.kernel[0], KY = g.kernel[1], run = C * KX, taps = g.kvol() / KX;
  const Index X = P[0], XY = P[0] * P[1], npp = PatchGeometry<Dim>::prod(P), OX = g.out[0], OY = g.out[1];
  const Index npo = g.out_pixels();
  const PlaneItems<Dim> it(g, X);
  ctx.parallel_for(it.count(), 2.0 * double(run * taps * it.rows_per * X), [&](Index i0, Index i1) {
    std::vector<S> acc;
    for (Index i = i0; i < i1; ++i) {
      const auto [n, oz, r0, r1, np] = it[i];
      acc.assign(static_cast<std::size_t>(np), S(0));
      Eigen::Map<Row> a(acc.data(), np);
      for (Index t = 0; t < taps; ++t) {
        const Index ky = t % KY, kz = t / KY;
        const S* b = s + C * (npp * n + X * (r0 + ky) + XY * (oz + kz));
        a.noalias() += Eigen::Map<const Row>(M + run * t, run) *
                       Eigen::Map<const Mat, 0, Eigen::OuterStride<>>(b, run, np, Eigen::OuterStride<>(C));
      }
      for (Index oy = r0; oy < r1; ++oy) {
        S* yo = y + OX * (oy + OY * oz) + npo * n;
        const S* ao = acc.data() + X * (oy - r0);
        if (accumulate)
          for (Index ox = 0; ox < OX; ++ox) yo[ox] += ao[ox];
        else
          std::memcpy(yo, ao, sizeof(S) * OX);
      }
    }
  });
}

/// D(1 x rows) += A(1 x cols) * gather(src)^T, for plane_gemv_applies(g): per x-tap row,
/// D_t += B_t a with B_t the overlapping-column matrix of plane_gemv and a the output gradient
/// laid out on the plane (zero at the dropped positions). One partial D per part, summed in order.
template <int Dim, class S, class Device>
void plane_gemv_wgrad(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* src, const S* A, S* D) {
  static_assert(Dim == 2 || Dim == 3, "plane_gemv_wgrad: 2-D or 3-D");
  using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  using Vec = Eigen::Matrix<S, Eigen::Dynamic, 1>;
  core::Buffer<S, Device> hold;
  std::array<Index, Dim> P;
  const S* s = plane_source<Dim>(ctx, g, src, hold, P);
  const Index C = g.channels, KX = g.kernel[0], KY = g.kernel[1], run = C * KX, taps = g.kvol() / KX;
  const Index rows = g.rows(), X = P[0], XY = P[0] * P[1], npp = PatchGeometry<Dim>::prod(P), OX = g.out[0], OY = g.out[1];
  const Index npo = g.out_pixels();
  const PlaneItems<Dim> it(g, X);
  const Index parts = std::max<Index>(1, std::min<Index>(ctx.num_threads(), it.count()));
  std::vector<std::vector<S>> partial(static_cast<std::size_t>(parts), std::vector<S>(static_cast<std::size_t>(rows), S(0)));
  ctx.parallel_for(parts, 1e9, [&](Index p0, Index p1) {
    std::vector<S> a;
    for (Index p = p0; p < p1; ++p) {
      Eigen::Map<Vec> d(partial[static_cast<std::size_t>(p)].data(), rows);
      for (Index i = it.count() * p / parts; i < it.count() * (p + 1) / parts; ++i) {
        const auto [n, oz, r0, r1, np] = it[i];
        a.assign(static_cast<std::size_t>(np), S(0));
        for (Index oy = r0; oy < r1; ++oy)
          std::memcpy(a.data() + X * (oy - r0), A + OX * (oy + OY * oz) + npo * n, sizeof(S) * OX);
        const Eigen::Map<const Vec> av(a.data(), np);
        for (Index t = 0; t < taps; ++t) {
          const Index ky = t % KY, kz = t / KY;
          const S* b = s + C * (npp * n + X * (r0 + ky) + XY * (oz + kz));
          d.segment(run * t, run).noalias() +=
              Eigen::Map<const Mat, 0, Eigen::OuterStride<>>(b, run, np, Eigen::OuterStride<>(C)) * av;
        }
      }
    }
  });
  for (const auto& pd : partial)
    for (Index r = 0; r < rows; ++r) D[r] += pd[static_cast<std::size_t>(r)];
}

template <int Dim, class S, class Device>
void patch_gemm_phased(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* src, const S* M, Index m, S* y,
                       bool accumulate);

template <int Dim, class S, class Device>
void patch_gemm_flipped(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* src, const S* M, Index m, S* y,
                        bool accumulate);

/// Y(m x cols) (+)= M(m x rows) * gather(src), M column-major contiguous.
template <int Dim, class S, class Device>
void patch_gemm(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* src, const S* M, Index m, S* y,
                bool accumulate) {
  const Index rows = g.rows(), cols = g.cols();
  const float beta = accumulate ? 1.0f : 0.0f;
  if (g.trivial()) {
    gemm<S>(ctx, false, false, m, cols, rows, M, src, y, 1.0f, beta);
    return;
  }
  if constexpr (core::is_gpu_v<Device>) {
    for_each_gathered_block<Dim>(ctx, g, src, [&](const S* blk, Index j0, Index j1) {
      gemm<S>(ctx, false, false, m, j1 - j0, rows, M, blk, y + m * j0, 1.0f, beta);
    });
  } else {
    if (g.transposed) {
      if (std::any_of(g.stride.begin(), g.stride.end(), [](Index v) { return v > 1; }))
        patch_gemm_phased<Dim>(ctx, g, src, M, m, y, accumulate);
      else
        patch_gemm_flipped<Dim>(ctx, g, src, M, m, y, accumulate);
      return;
    }
    if (m == 1 && plane_gemv_applies(g)) {
      plane_gemv<Dim>(ctx, g, src, M, y, accumulate);
      return;
    }
    const Index parts = std::max<Index>(1, std::min<Index>(ctx.num_threads(), cols));
    const Index bw = block_width<S>(std::min<std::size_t>(ctx.workspace_limit(), std::size_t(1) << 20), rows, cols);
    ctx.parallel_for(parts, 1e9, [&](Index p0, Index p1) {
      core::Buffer<S, Device> buf(ctx, rows * bw);
      for (Index p = p0; p < p1; ++p) {
        const Index c0 = cols * p / parts, c1 = cols * (p + 1) / parts;
        for (Index j0 = c0; j0 < c1; j0 += bw) {
          const Index j1 = std::min(c1, j0 + bw);
          im2col_block<Dim>(g, src, buf.data(), j0, j1);
          gemm_serial<S>(false, false, m, j1 - j0, rows, M, m, buf.data(), rows, y + m * j0, m, 1.0f, beta);
        }
      }
    });
  }
}

/// Stride-1 transposed gather on the CPU (the input gradient of every stride-1 conv): a normal
/// gather of the flipped kernel, whose runs the CPU gather copies whole. Source o + p - k is
/// o - p' + k' with k' = K - 1 - k and p' = K - 1 - p (negative when p >= K, which the normal
/// gather handles too); flipping every axis reverses the flattened tap order, so M's column
/// blocks (m x C each) are taken in reverse.
template <int Dim, class S, class Device>
void patch_gemm_flipped(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* src, const S* M, Index m, S* y,
                        bool accumulate) {
  PatchGeometry<Dim> h = g;
  h.transposed = false;
  for (int d = 0; d < Dim; ++d) h.pad[d] = g.kernel[d] - 1 - g.pad[d];
  const Index kv = g.kvol(), blk = m * g.channels;
  core::Buffer<S, Device> mf(ctx, blk * kv);
  for (Index t = 0; t < kv; ++t) std::memcpy(mf.data() + blk * t, M + blk * (kv - 1 - t), sizeof(S) * blk);
  patch_gemm<Dim>(ctx, h, src, mf.data(), m, y, accumulate);
}

/// Strided transposed gather on the CPU, by phases. Grid positions o = r + s q of phase r (per
/// axis, 0 <= r < s) meet only the kernel offsets k = kr + s t with kr = (r + p) mod s, at source
/// index q - t + (r + p - kr) / s. Each phase is therefore a dense stride-1 normal gather with the
/// sub-kernel of those offsets (flipped), and the plain transposed gather's zero rows -- 3/4 of
/// them in 2-D at stride 2, 7/8 in 3-D -- are never multiplied. The phase outputs are then copied
/// to their strided columns.
template <int Dim, class S, class Device>
void patch_gemm_phased(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* src, const S* M, Index m, S* y,
                       bool accumulate) {
  const Index C = g.channels, npo = g.out_pixels();
  std::array<Index, Dim> r{};
  Index phases = 1;
  for (int d = 0; d < Dim; ++d) phases *= g.stride[d];
  for (Index ph = 0; ph < phases; ++ph) {
    PatchGeometry<Dim> h;
    h.channels = C;
    h.batch = g.batch;
    h.image = g.image;
    bool empty_grid = false, no_taps = false;
    std::array<Index, Dim> kr{};
    for (int d = 0; d < Dim; ++d) {
      const Index s = g.stride[d], K = g.kernel[d];
      h.out[d] = r[d] < g.out[d] ? (g.out[d] - r[d] + s - 1) / s : 0;
      kr[d] = (r[d] + g.pad[d]) % s;
      h.kernel[d] = kr[d] < K ? (K - kr[d] + s - 1) / s : 0;
      h.stride[d] = 1;
      h.pad[d] = h.kernel[d] - 1 - (r[d] + g.pad[d] - kr[d]) / s;
      empty_grid |= h.out[d] == 0;
      no_taps |= h.kernel[d] == 0;
    }
    if (!empty_grid) {
      const Index cr = h.cols(), npr = h.out_pixels();
      core::Buffer<S, Device> yr(ctx, m * cr);
      if (no_taps) {
        yr.set_zero();
      } else {
        // The phase's sub-kernel: column block (c, t) of Mr is column block (c, k(t)) of M.
        const Index tv = h.kvol();
        core::Buffer<S, Device> mr(ctx, m * C * tv);
        std::array<Index, Dim> t{};
        for (Index ti = 0; ti < tv; ++ti) {
          Index kidx = 0, mul = 1;
          for (int d = 0; d < Dim; ++d) {
            kidx += (kr[d] + g.stride[d] * (h.kernel[d] - 1 - t[d])) * mul;
            mul *= g.kernel[d];
          }
          std::memcpy(mr.data() + m * C * ti, M + m * C * kidx, sizeof(S) * m * C);
          for (int d = 0; d < Dim; ++d) {
            if (++t[d] < h.kernel[d]) break;
            t[d] = 0;
          }
        }
        patch_gemm<Dim>(ctx, h, src, mr.data(), m, yr.data(), false);
      }
      const S* yrp = yr.data();
      ctx.parallel_for(cr, double(m) * 2.0, [&](Index b, Index e) {
        for (Index jr = b; jr < e; ++jr) {
          const Index n = jr / npr;
          Index q = jr - n * npr, flat = 0, mul = 1;
          for (int d = 0; d < Dim; ++d) {
            flat += (r[d] + g.stride[d] * (q % h.out[d])) * mul;
            q /= h.out[d];
            mul *= g.out[d];
          }
          S* dst = y + m * (flat + npo * n);
          const S* sp = yrp + m * jr;
          if (accumulate)
            for (Index i = 0; i < m; ++i) dst[i] = S(acc_t<S>(dst[i]) + acc_t<S>(sp[i]));
          else
            std::memcpy(dst, sp, sizeof(S) * m);
        }
      });
    }
    for (int d = 0; d < Dim; ++d) {
      if (++r[d] < g.stride[d]) break;
      r[d] = 0;
    }
  }
}

/// D(m x rows) += A(m x cols) * gather(src)^T.
template <int Dim, class S, class Device>
void patch_gemm_wgrad(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* src, const S* A, Index m, S* D) {
  const Index rows = g.rows(), cols = g.cols();
  if (g.trivial()) {
    gemm<S>(ctx, false, true, m, rows, cols, A, src, D, 1.0f, 1.0f);
    return;
  }
  if constexpr (core::is_gpu_v<Device>) {
    for_each_gathered_block<Dim>(ctx, g, src, [&](const S* blk, Index j0, Index j1) {
      gemm<S>(ctx, false, true, m, rows, j1 - j0, A + m * j0, blk, D, 1.0f, 1.0f);
    });
  } else {
    if (m == 1 && plane_gemv_applies(g)) {
      plane_gemv_wgrad<Dim>(ctx, g, src, A, D);
      return;
    }
    // A weight gradient at least 1/8 the size of the column matrix (the PatchGAN's deeper layers):
    // one shared gather per block of columns, then one GEMM split over D's columns, so that no
    // thread keeps a partial D to zero and sum. bench_ops conv_layer (2 threads, Zen 4, median of
    // 5, per-thread partials / shared, ms): 2-D PatchGAN 64 -> 128, 128 -> 256, 256 -> 512: 2.48 /
    // 2.22, 2.72 / 2.25, 9.40 / 6.08; 3-D 128 -> 256 at 8^3: 11.8 / 10.9. Smaller weight gradients
    // over many columns (the generators' layers) keep the partials: shared was 1.2-1.5x slower there.
    if (8 * m >= cols) {
      const Index bw = block_width<S>(std::min<std::size_t>(ctx.workspace_limit(), std::size_t(8) << 20), rows, cols);
      core::Buffer<S, Device> buf(ctx, rows * bw);
      for (Index j0 = 0; j0 < cols; j0 += bw) {
        const Index j1 = std::min(cols, j0 + bw);
        im2col_cpu<Dim>(ctx, g, src, buf.data(), j0, j1);
        gemm<S>(ctx, false, true, m, rows, j1 - j0, A + m * j0, buf.data(), D, 1.0f, 1.0f);
      }
      return;
    }
    // Larger blocks than the forward's: the product's depth is the block width.
    const Index parts = std::max<Index>(1, std::min<Index>(ctx.num_threads(), cols));
    const Index bw = block_width<S>(std::min<std::size_t>(ctx.workspace_limit(), std::size_t(4) << 20), rows, cols);
    std::vector<core::Buffer<S, Device>> partial;
    for (Index p = 1; p < parts; ++p) {
      partial.emplace_back(ctx, m * rows);
      partial.back().set_zero();
    }
    ctx.parallel_for(parts, 1e9, [&](Index p0, Index p1) {
      core::Buffer<S, Device> buf(ctx, rows * bw);
      for (Index p = p0; p < p1; ++p) {
        S* dst = p == 0 ? D : partial[static_cast<std::size_t>(p - 1)].data();
        const Index c0 = cols * p / parts, c1 = cols * (p + 1) / parts;
        for (Index j0 = c0; j0 < c1; j0 += bw) {
          const Index j1 = std::min(c1, j0 + bw);
          im2col_block<Dim>(g, src, buf.data(), j0, j1);
          gemm_serial<S>(false, true, m, rows, j1 - j0, A + m * j0, m, buf.data(), rows, dst, m, 1.0f, 1.0f);
        }
      }
    });
    TensorMap<S, 1> Dm(D, m * rows);
    for (auto& b : partial) Dm.device(ctx.device()) = Dm + ConstTensorMap<S, 1>(b.data(), m * rows);
  }
}

/// Input gradients (and transposed-conv forwards) with at least this many channels on both sides
/// go to gemm_col2im on the CPU (measured: docs/results/conv-paths.md, "col2im").
constexpr Index kCol2imMinChannels = 64;

/// dst (channels, image) += col2im(cols), the block of columns j0 .. j1 of g (normal mode): every
/// column's tap t, channels c, adds onto the source pixel the gather would have read. Split over
/// channel slices of at least 16, so no two threads touch one value and each value's additions
/// come in the same order at any thread count.
template <int Dim, class S, class Device>
void col2im_add(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* cols, Index j0, Index j1, S* dst) {
  using Arr = Eigen::Array<S, Eigen::Dynamic, 1>;
  const Index C = g.channels, kv = g.kvol(), rows = g.rows(), npo = g.out_pixels(), npi = g.image_pixels();
  const Index parts = std::max<Index>(1, std::min<Index>(ctx.num_threads(), C / 16));
  ctx.parallel_for(parts, 1e9, [&](Index p0, Index p1) {
    for (Index p = p0; p < p1; ++p) {
      const Index c0 = C * p / parts, nc = C * (p + 1) / parts - c0;
      for (Index j = j0; j < j1; ++j) {
        const Index n = j / npo;
        Index q = j - n * npo;
        std::array<Index, Dim> base{};
        for (int d = 0; d < Dim; ++d) {
          base[d] = (q % g.out[d]) * g.stride[d] - g.pad[d];
          q /= g.out[d];
        }
        const S* col = cols + rows * (j - j0) + c0;
        S* img = dst + C * npi * n + c0;
        std::array<Index, Dim> k{};
        for (Index t = 0; t < kv; ++t) {
          Index flat = 0, mul = 1;
          bool inside = true;
          for (int d = 0; d < Dim; ++d) {
            const Index id = base[d] + k[d];
            inside &= id >= 0 && id < g.image[d];
            flat += id * mul;
            mul *= g.image[d];
          }
          if (inside) Eigen::Map<Arr>(img + C * flat, nc) += Eigen::Map<const Arr>(col + C * t, nc);
          for (int d = 0; d < Dim; ++d) {
            if (++k[d] < g.kernel[d]) break;
            k[d] = 0;
          }
        }
      }
    }
  });
}

/// With at most kCol2imThinMaxChannels channels on the image side, at least kCol2imThinMinDepth on
/// the other (a deep enough GEMM) and a stride of at least 2 on every axis, the col2im is a gather
/// per image pixel (col2im_gather_add) rather than the transposed gather (measured:
/// docs/results/conv-paths.md, "thin col2im").
constexpr Index kCol2imThinMaxChannels = 16;
constexpr Index kCol2imThinMinDepth = 16;

/// Per axis d, the (grid coordinate, tap) pairs whose column entries land on each image coordinate
/// i (o * stride - pad + k = i), taps ascending: pairs first[d][i] .. first[d][i + 1] of o[d], k[d].
template <int Dim>
struct Col2imTaps {
  std::array<std::vector<Index>, Dim> first, o, k;
  explicit Col2imTaps(const PatchGeometry<Dim>& g) {
    for (int d = 0; d < Dim; ++d) {
      first[d].push_back(0);
      for (Index i = 0; i < g.image[d]; ++i) {
        for (Index t = 0; t < g.kernel[d]; ++t) {
          const Index num = i + g.pad[d] - t;
          if (num < 0 || num % g.stride[d] != 0 || num / g.stride[d] >= g.out[d]) continue;
          o[d].push_back(num / g.stride[d]);
          k[d].push_back(t);
        }
        first[d].push_back(static_cast<Index>(o[d].size()));
      }
    }
  }
};

/// dst (channels, image) += col2im(cols) for the block of columns j0 .. j1 of g, all of one batch
/// element, as a gather: every image pixel the block reaches sums, in a fixed order (its axis-0
/// pairs, then the outer axes' pairs), the column entries that land on it, and adds that sum once.
/// Split over the image lines (axis 0) of the slowest-axis planes the block reaches, so no two
/// threads touch one value and each value's additions come in the same order at any thread count.
template <int Dim, class S, class Device>
void col2im_gather_add(Context<Device>& ctx, const PatchGeometry<Dim>& g, const Col2imTaps<Dim>& tp, const S* cols,
                       Index j0, Index j1, S* dst) {
  using Arr = Eigen::Array<S, Eigen::Dynamic, 1>;
  constexpr int L = Dim - 1;
  const Index C = g.channels, rows = g.rows(), npo = g.out_pixels(), width = j1 - j0;
  const Index n = j0 / npo, q0 = j0 - n * npo, q1 = j1 - 1 - n * npo;
  std::array<Index, Dim> ostride{}, kstride{}, istride{};
  ostride[0] = kstride[0] = istride[0] = 1;
  for (int d = 1; d < Dim; ++d) {
    ostride[d] = ostride[d - 1] * g.out[d - 1];
    kstride[d] = kstride[d - 1] * g.kernel[d - 1];
    istride[d] = istride[d - 1] * g.image[d - 1];
  }
  // The grid planes of the block along the slowest axis, and the image planes they reach.
  const Index oz0 = q0 / ostride[L], oz1 = q1 / ostride[L];
  const Index iz0 = std::max<Index>(0, oz0 * g.stride[L] - g.pad[L]);
  const Index iz1 = std::min<Index>(g.image[L] - 1, oz1 * g.stride[L] - g.pad[L] + g.kernel[L] - 1);
  if (iz1 < iz0) return;
  const Index lines_per_plane = istride[L] / g.image[0];
  const Index lines = (iz1 - iz0 + 1) * lines_per_plane;
  S* img = dst + C * g.image_pixels() * n;
  double per_pixel = double(C);  // about kvol / prod(stride) column entries of C values per pixel
  for (int d = 0; d < Dim; ++d) per_pixel *= std::max(1.0, double(g.kernel[d]) / double(g.stride[d]));
  const double per_line = double(g.image[0]) * per_pixel;
  ctx.parallel_for(lines, per_line, [&](Index l0, Index l1) {
    std::vector<Index> eo, ek, no, nk;  // the outer axes' pairs of a line, combined
    Arr acc(C);
    for (Index l = l0; l < l1; ++l) {
      std::array<Index, Dim> i{};
      Index rem = l;
      for (int d = 1; d < L; ++d) {
        i[d] = rem % g.image[d];
        rem /= g.image[d];
      }
      i[L] = iz0 + rem;
      eo.assign(1, 0);
      ek.assign(1, 0);
      for (int d = 1; d < Dim; ++d) {
        no.clear();
        nk.clear();
        const Index* po = tp.o[d].data();
        const Index* pk = tp.k[d].data();
        for (std::size_t e = 0; e < eo.size(); ++e)
          for (Index p = tp.first[d][i[d]]; p < tp.first[d][i[d] + 1]; ++p) {
            if (d == L && (po[p] < oz0 || po[p] > oz1)) continue;
            no.push_back(eo[e] + po[p] * ostride[d]);
            nk.push_back(ek[e] + pk[p] * kstride[d]);
          }
        eo.swap(no);
        ek.swap(nk);
      }
      if (eo.empty()) continue;
      Index line = 0;
      for (int d = 1; d < Dim; ++d) line += i[d] * istride[d];
      S* row = img + C * line;
      const Index* po = tp.o[0].data();
      const Index* pk = tp.k[0].data();
      for (Index x = 0; x < g.image[0]; ++x) {
        bool any = false;
        for (Index p = tp.first[0][x]; p < tp.first[0][x + 1]; ++p)
          for (std::size_t e = 0; e < eo.size(); ++e) {
            const Index rel = po[p] + eo[e] - q0;
            if (rel < 0 || rel >= width) continue;
            const Eigen::Map<const Arr> col(cols + rows * rel + C * (pk[p] + ek[e]), C);
            if (any) {
              acc += col;
            } else {
              acc = col;
              any = true;
            }
          }
        if (any) Eigen::Map<Arr>(row + C * x, C) += acc;
      }
    }
  });
}

/// gemm_col2im for thin images (see kCol2imThinMaxChannels): blocks of whole grid
/// planes along the slowest axis where the workspace allows, never across batch elements, each one
/// GEMM and a col2im_gather_add.
template <int Dim, class S, class Device>
void gemm_col2im_thin(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* M, Index m, const S* src, S* dst) {
  const Index rows = g.rows(), npo = g.out_pixels(), plane = npo / g.out[Dim - 1];
  const std::size_t want = std::max({std::size_t(1) << 20, std::size_t(256) * sizeof(S) * rows,
                                     sizeof(S) * std::size_t(rows) * std::size_t(plane)});
  Index bw = block_width<S>(std::min<std::size_t>(ctx.workspace_limit(), want), rows, npo);
  if (bw >= plane) bw -= bw % plane;
  const Col2imTaps<Dim> tp(g);
  core::Buffer<S, Device> buf(ctx, rows * bw);
  for (Index n = 0; n < g.batch; ++n)
    for (Index q0 = 0; q0 < npo; q0 += bw) {
      const Index j0 = n * npo + q0, j1 = n * npo + std::min(npo, q0 + bw);
      gemm<S>(ctx, true, false, rows, j1 - j0, m, M, src + m * j0, buf.data(), 1.0f, 0.0f);
      col2im_gather_add<Dim>(ctx, g, tp, buf.data(), j0, j1, dst);
    }
}

/// CPU: dst (g.channels, image) += the transposed product of M (m x rows, column-major: a conv's
/// weight, rows = g.channels * taps) with src (m x cols) on the normal-mode geometry g: per block of
/// columns, cols = M^T src as one GEMM (M's transpose an operand, so no transposed copy of the
/// kernel and no zero rows at strides > 1), then col2im_add. This is a conv's input gradient (M its
/// weight, src dy) and a transposed conv's forward (M its weight, src x).
template <int Dim, class S, class Device>
void gemm_col2im(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* M, Index m, const S* src, S* dst) {
  const Index rows = g.rows(), cols = g.cols();
  const std::size_t target = std::max<std::size_t>(std::size_t(1) << 20, std::size_t(256) * sizeof(S) * rows);
  const Index bw = block_width<S>(std::min<std::size_t>(ctx.workspace_limit(), target), rows, cols);
  core::Buffer<S, Device> buf(ctx, rows * bw);
  for (Index j0 = 0; j0 < cols; j0 += bw) {
    const Index j1 = std::min(cols, j0 + bw);
    gemm<S>(ctx, true, false, rows, j1 - j0, m, M, src + m * j0, buf.data(), 1.0f, 0.0f);
    col2im_add<Dim>(ctx, g, buf.data(), j0, j1, dst);
  }
}

/// The gemm_col2im problem of a conv's input gradient (transposed false; x the conv's input) or a
/// transposed conv's forward (transposed true; x its input): the conv's normal-mode geometry on
/// the larger grid, and m, the GEMM's depth.
template <int Dim>
struct Col2imProblem {
  PatchGeometry<Dim> g;
  Index m;
  /// Enough channels on both sides for a deep GEMM and wide col2im slices: gemm_col2im.
  bool wide() const { return g.channels >= kCol2imMinChannels && m >= kCol2imMinChannels; }
  /// Few channels on the image side, a deep enough GEMM, strided on every axis: gemm_col2im_thin.
  bool thin() const {
    return g.channels <= kCol2imThinMaxChannels && m >= kCol2imThinMinDepth &&
           std::all_of(g.stride.begin(), g.stride.end(), [](Index v) { return v >= 2; });
  }
  /// Whether its shape suits one of them (on the CPU, with the context's col2im setting on).
  bool applies() const { return !g.trivial() && (wide() || thin()); }
};
template <int Dim>
Col2imProblem<Dim> col2im_problem(const ConvOptions<Dim>& o, const Shape<Dim + 2>& x, bool transposed) {
  if (transposed) return {geometry(o, o.out_channels(), conv_transpose_output_shape(o, x), x, false), o.in_channels()};
  return {geometry(o, o.in_channels(), x, conv_output_shape(o, x), false), o.out_channels()};
}

/// dst (+)= M^T src by gemm_col2im or gemm_col2im_thin (plan_conv chose one), dst zeroed first
/// unless accumulate. CPU only.
template <int Dim, class S, class Device>
void run_gemm_col2im(Context<Device>& ctx, const Col2imProblem<Dim>& p, const S* M, const S* src, S* dst, bool accumulate) {
  if constexpr (!core::is_gpu_v<Device>) {
    if (!accumulate) {
      TensorMap<S, 1> D(dst, p.g.channels * p.g.image_pixels() * p.g.batch);
      D.device(ctx.device()) = D.constant(S(0));
    }
    if (p.wide())
      gemm_col2im<Dim>(ctx, p.g, M, p.m, src, dst);
    else
      gemm_col2im_thin<Dim>(ctx, p.g, M, p.m, src, dst);
  }
}

/// The kernel with its first two axes swapped: (a, b, k...) -> (b, a, k...): the transposed
/// gather's kernel (input gradients and transposed-conv forwards where gemm_col2im does not apply).
/// On the CPU each tap's (a x b) block is transposed in 16 x 16 tiles, split over the pool: Eigen's
/// shuffle() took 4-5x longer (6 ms for the PatchGAN's 512 x 256 x 4 x 4 kernel, on every input
/// gradient). 16 rows of a fill each 64-byte line read; 8 x 8 tiles read every line twice and took
/// 1.5-2.5x as long (2.4-4.0 ms against 1.5-1.7 ms for that kernel, 2 threads; perf had the swap
/// at 7 % of a PatchGAN forward+backward).
template <int Dim, class S, class Device>
core::Tensor<S, Dim + 2, Device> swap_kernel_axes(Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& w) {
  Shape<Dim + 2> s = w.dimensions();
  std::swap(s[0], s[1]);
  core::Tensor<S, Dim + 2, Device> t(ctx, s);
  if constexpr (core::is_gpu_v<Device>) {
    Eigen::array<Index, Dim + 2> perm;
    for (int i = 0; i < Dim + 2; ++i) perm[i] = i;
    std::swap(perm[0], perm[1]);
    auto tm = t.map();
    tm.device(ctx.device()) = w.shuffle(perm);
  } else {
    const Index A = s[1], B = s[0], taps = num_elements(s) / std::max<Index>(A * B, 1);
    constexpr Index T = 16;
    const Index tiles_a = (A + T - 1) / T;
    const S* src = w.data();
    S* dst = t.data();
    // One item: a strip of 16 rows of a, across all of b, in one tap.
    ctx.parallel_for(taps * tiles_a, double(T * B) * 2.0, [&](Index i0, Index i1) {
      for (Index i = i0; i < i1; ++i) {
        const Index k = i / tiles_a, a0 = (i % tiles_a) * T, a1 = std::min(A, a0 + T);
        const S* sk = src + A * B * k;
        S* dk = dst + A * B * k;
        for (Index b0 = 0; b0 < B; b0 += T) {
          const Index b1 = std::min(B, b0 + T);
          for (Index a = a0; a < a1; ++a)
            for (Index b = b0; b < b1; ++b) dk[b + B * a] = sk[a + A * b];
        }
      }
    });
  }
  return t;
}

/// y(C, cols) += bias broadcast over columns.
template <class S, class Device>
void add_bias(Context<Device>& ctx, const ConstTensorMap<S, 1>& b, S* y, Index cout, Index cols) {
  TensorMap<S, 2> Y(y, cout, cols);
  Y.device(ctx.device()) = Y + b.reshape(Shape<2>(cout, 1)).broadcast(Shape<2>(1, cols));
}

/// db += sum of dy(C, cols) over columns. On the CPU the columns are split into a number of chunks
/// that depends on the size only (so any thread count gives the same bits), each summed over its
/// columns with the channels as the inner, contiguous loop, the chunks' sums added in order.
/// (Eigen's reducer over the non-inner axis of a (C, S) tensor measured ~10x slower; a split by
/// channels, which this replaced, read all of dy on every thread with a strided inner loop: 5 % of
/// the 3-D generator's forward+backward at 48^3.)
template <class S, class Device>
void sum_bias(Context<Device>& ctx, const S* dy, TensorMap<S, 1>& db, Index cout, Index cols) {
  using A = acc_t<S>;
  if constexpr (!core::is_gpu_v<Device>) {
    S* out = db.data();
    const Index chunks = std::max<Index>(1, std::min<Index>({cols, Index(64), cout * cols / 16384}));
    std::vector<A> part(static_cast<std::size_t>(chunks * cout), A(0));
    ctx.parallel_for(chunks, double(cols) / double(chunks) * double(cout), [&](Index k0, Index k1) {
      for (Index k = k0; k < k1; ++k) {
        A* acc = part.data() + k * cout;
        const Index j0 = cols * k / chunks, j1 = cols * (k + 1) / chunks;
        for (Index j = j0; j < j1; ++j) {
          const S* col = dy + cout * j;
          for (Index c = 0; c < cout; ++c) acc[c] += A(col[c]);
        }
      }
    });
    for (Index c = 0; c < cout; ++c) {
      A s = A(out[c]);
      for (Index k = 0; k < chunks; ++k) s += part[static_cast<std::size_t>(k * cout + c)];
      out[c] = S(s);
    }
  } else {
    ConstTensorMap<S, 2> DY(dy, cout, cols);
    const Eigen::array<Index, 1> red{1};
    db.device(ctx.device()) = (db.template cast<A>() + DY.template cast<A>().sum(red)).template cast<S>();
  }
}

/// Half on the CPU: float copies in, float compute, results cast back.
template <class S, int R, class Device>
core::Tensor<float, R, Device> to_float(Context<Device>& ctx, const ConstTensorMap<S, R>& t) {
  core::Tensor<float, R, Device> f(ctx, t.dimensions());
  auto fm = f.map();
  fm.device(ctx.device()) = t.template cast<float>();
  return f;
}
template <class S, int R, class Device>
void assign_from_float(Context<Device>& ctx, const core::Tensor<float, R, Device>& f, TensorMap<S, R>& t) {
  t.device(ctx.device()) = f.map().template cast<S>();
}

template <class S, class Device>
constexpr bool cpu_half_v = is_half_v<S> && !core::is_gpu_v<Device>;

/// Half on the CPU: runs fb(x, w, dy, dx*, dw*) -- the float backward -- on float copies, one
/// gradient at a time, and writes each accumulated gradient back in half.
template <int R, class S, class Device, class F>
void backward_via_float(Context<Device>& ctx, const ConstTensorMap<S, R>& x, const ConstTensorMap<S, R>& w,
                        const ConstTensorMap<S, R>& dy, TensorMap<S, R>* dx, TensorMap<S, R>* dw, F&& fb) {
  auto xf = to_float(ctx, x), wf = to_float(ctx, w), dyf = to_float(ctx, dy);
  for (int which = 0; which < 2; ++which) {
    TensorMap<S, R>* g = which == 0 ? dx : dw;
    if (!g) continue;
    auto gf = to_float(ctx, ConstTensorMap<S, R>(g->data(), g->dimensions()));
    auto m = gf.map();
    fb(xf.cmap(), wf.cmap(), dyf.cmap(), which == 0 ? &m : nullptr, which == 1 ? &m : nullptr);
    assign_from_float(ctx, gf, *g);
  }
}

/// Stride-1 3x3 2-D convs (3x3x3 in 3-D) with at least this many input and output channels go
/// to Winograd F(4x4, 3x3) (F(2x2x2, 3x3x3)) on the CPU (ops/winograd.hpp); below it the
/// transforms' memory traffic outweighs the saved multiplies (measured: docs/results/conv-paths.md,
/// "Winograd").
constexpr Index kWinogradMinChannels = 64;

template <int Dim, class S, class Device>
constexpr bool winograd_capable_v =
    (Dim == 2 || Dim == 3) && !core::is_gpu_v<Device> && (std::is_same_v<S, float> || std::is_same_v<S, double>);

/// Whether conv o's shape suits Winograd (see kWinogradMinChannels).
template <int Dim>
bool winograd_shape(const ConvOptions<Dim>& o) {
  if (std::min(o.in_channels(), o.out_channels()) < kWinogradMinChannels) return false;
  for (int d = 0; d < Dim; ++d)
    if (o.kernel_size()[d] != 3 || o.stride()[d] != 1 || o.padding()[d] > 2) return false;
  return true;
}

}  // namespace detail

/// The passes of a convolution and of a transposed convolution.
enum class ConvPass { Forward, InputGrad, WeightGrad, TransposedForward, TransposedInputGrad, TransposedWeightGrad };

/// The kernels a pass can run on:
///   Winograd          F(4x4, 3x3) / F(2x2x2, 3x3x3), CPU, float and double (ops/winograd.hpp);
///   GemmCol2im        one GEMM with the weight as transposed operand, then col2im (CPU);
///   GemmCol2imThin    one GEMM per block of grid planes, then a gather per image pixel (CPU);
///   TransposedGather  the transposed gather + GEMM (every device);
///   Gather            the normal gather + GEMM (every device; on the CPU, products with one output
///                     row at stride 1 skip the gather: plane_gemv);
///   Dnnl              oneDNN's convolution primitive for the pass (CPU, float, builds with oneDNN;
///                     ops/conv_dnnl.hpp);
///   ThinDirect        direct sums for stride-1 convs with one channel on one side (CPU, float and
///                     double; ops/conv_thin.hpp).
enum class ConvPath { Winograd, GemmCol2im, GemmCol2imThin, TransposedGather, Gather, Dnnl, ThinDirect };

inline const char* conv_path_name(ConvPath p) {
  switch (p) {
    case ConvPath::Winograd: return "winograd";
    case ConvPath::GemmCol2im: return "gemm_col2im";
    case ConvPath::GemmCol2imThin: return "gemm_col2im_thin";
    case ConvPath::TransposedGather: return "transposed_gather";
    case ConvPath::Dnnl: return "dnnl";
    case ConvPath::ThinDirect: return "thin_direct";
    default: return "gather";
  }
}

namespace detail {

inline bool is_transposed_pass(ConvPass p) {
  return p == ConvPass::TransposedForward || p == ConvPass::TransposedInputGrad || p == ConvPass::TransposedWeightGrad;
}

/// The conv whose passes a transposed conv's are: from the transposed conv's output grid (its
/// out_channels) to its input grid (its in_channels), same kernel, stride and padding; its weight
/// (Cout, Cin, k...) is the transposed conv's (Cin, Cout, k...) as it lies in memory.
template <int Dim>
ConvOptions<Dim> transposed_as_conv(const ConvOptions<Dim>& o) {
  return ConvOptions<Dim>(o.out_channels(), o.in_channels(), o.kernel_size())
      .stride(o.stride())
      .padding(o.padding())
      .bias(false)
      .name(o.name());
}

/// Which pass of transposed_as_conv(o) a pass of transposed conv o is: its forward is the conv's
/// input gradient, its input gradient the conv's forward, its weight gradient the conv's weight
/// gradient (with the roles of the two activations swapped). A conv's passes map to themselves.
inline ConvPass as_conv_pass(ConvPass p) {
  switch (p) {
    case ConvPass::TransposedForward: return ConvPass::InputGrad;
    case ConvPass::TransposedInputGrad: return ConvPass::Forward;
    case ConvPass::TransposedWeightGrad: return ConvPass::WeightGrad;
    default: return p;
  }
}

template <class S, class Device>
constexpr bool dnnl_conv_capable_v =
#if defined(DICYC_DNNL_CONV)
    std::is_same_v<S, float> && !core::is_gpu_v<Device>;
#else
    false;
#endif

/// Whether pass `pass` of conv `o` goes to oneDNN under DnnlConvMode::Auto: what measured faster
/// there, layer by layer (bench_ops conv_layer, DICYC_DNNL_CONV=0 against always;
/// docs/results/conv-paths.md): with at least kDnnlMinOutChannels output channels (the
/// 1-channel heads and the PatchGAN's last layer stay on dicyc's kernels, 2-6x faster there),
///   forward and weight gradient: the 4^d convs (PatchGAN) and the 7^d stems (<= 4 input channels);
///   input gradient: from >= kDnnlMinInputGradChannels channels, the 4^d convs and the stride-2
///     3^d downsampling convs (the stems' input gradients are faster on gemm_col2im_thin, and the
///     first layer needs none);
///   transposed convs: the forward (oneDNN's backward-data primitive of transposed_as_conv), with
///     at least kDnnlMinOutChannels channels on both sides: 0.26-0.87 of gemm_col2im's time on
///     the generators' upsampling layers; their gradients measured even (0.97-1.47) and stay.
/// Everything else (3^d stride 1) stays on dicyc's kernels.
constexpr Index kDnnlMinOutChannels = 16;
constexpr Index kDnnlMinInputGradChannels = 8;

template <int Dim>
bool dnnl_conv_auto(const ConvOptions<Dim>& o, ConvPass pass) {
  if (is_transposed_pass(pass))
    return pass == ConvPass::TransposedForward && o.in_channels() >= kDnnlMinOutChannels &&
           o.out_channels() >= kDnnlMinOutChannels;
  const Index k = o.kernel_size()[0], s = o.stride()[0];
  for (int d = 1; d < Dim; ++d)
    if (o.kernel_size()[d] != k || o.stride()[d] != s) return false;
  if (o.out_channels() < kDnnlMinOutChannels) return false;
  if (pass == ConvPass::InputGrad)
    return o.in_channels() >= kDnnlMinInputGradChannels && (k == 4 || (k == 3 && s == 2));
  return k == 4 || (k == 7 && o.in_channels() <= 4);
}

/// Whether pass `pass` of conv `o` computes in bf16 when the context asks for bf16 convolutions
/// (ContextSettings::set_conv_bf16): where bf16 measured faster than float (bench_ops conv_layer
/// and conv_winograd, DICYC_CONV_BF16=1 against the float default; docs/results/conv-paths.md),
/// with at least kDnnlMinOutChannels output channels, the forward from 16 input channels, the
/// input gradient from kDnnlMinInputGradChannels (the Winograd convs' too: 0.18-0.40 of float
/// Winograd's time at 32-256 channels, 2-D and 3-D, bench_ops conv_winograd), the weight gradient
/// from 16 to 64 input channels and of the Winograd convs from 16 (0.29-0.89 of float
/// Winograd's; the other deeper layers' bf16 weight gradients on oneDNN 2.6, the PatchGAN's 4^d,
/// and the 1-channel stems' are slower than float), and all three passes of the transposed convs with at
/// least kDnnlMinOutChannels channels on both sides (0.14-0.8 of float's dicyc kernels on the
/// generators' upsampling layers, 2-D and 3-D). The other passes keep float (on the Auto rule's
/// path).
template <int Dim>
bool dnnl_conv_bf16(const ConvOptions<Dim>& o, ConvPass pass) {
  if (is_transposed_pass(pass))
    return o.in_channels() >= kDnnlMinOutChannels && o.out_channels() >= kDnnlMinOutChannels;
  if (o.out_channels() < kDnnlMinOutChannels) return false;
  const Index ci = o.in_channels();
  if (pass == ConvPass::Forward) return ci >= 16;
  if (pass == ConvPass::InputGrad) return ci >= kDnnlMinInputGradChannels;
  if (pass == ConvPass::WeightGrad) return ci >= 16 && (ci <= 64 || winograd_shape(o));
  return false;
}

/// Whether oneDNN can take the pass at all: a conv in 2-D or 3-D whose output grid oneDNN
/// describes with non-negative right padding; a transposed conv's pass where that holds for the
/// pass of transposed_as_conv it is (so not where the output padding exceeds the padding).
template <int Dim>
bool dnnl_conv_shape(const ConvOptions<Dim>& o, ConvPass pass, const Shape<Dim + 2>& x) {
  if (Dim != 2 && Dim != 3) return false;
  if (is_transposed_pass(pass))
    return dnnl_conv_shape(transposed_as_conv(o), as_conv_pass(pass), conv_transpose_output_shape(o, x));
  const Shape<Dim + 2> y = conv_output_shape(o, x);
  for (int d = 0; d < Dim; ++d)
    if (y[d + 1] <= 0 || (y[d + 1] - 1) * o.stride()[d] + o.kernel_size()[d] - x[d + 1] - o.padding()[d] < 0) return false;
  return true;
}

template <class S, class Device>
constexpr bool thin_capable_v = !core::is_gpu_v<Device> && (std::is_same_v<S, float> || std::is_same_v<S, double>);

/// Whether pass `pass` of conv `o` suits the direct thin kernels (ops/conv_thin.hpp): stride 1, a
/// padding below the kernel, one channel on one side and on the other a multiple of S's SIMD
/// width (at least kThinMinChannels) and a kernel of at least kThinMinKernel taps per axis (the
/// 7^d stems and heads, where it was measured: docs/results/conv-paths.md; the PatchGAN's 4^d last
/// layer keeps plane_gemv, not measured on this path). Forward and input gradient of C -> 1 and
/// 1 -> C convs, weight gradient of C -> 1 (the 1 -> C weight gradient is a GEMM with C output
/// rows already). And C -> co convs with 2 <= co <= kThinMaxOut outputs (the offset branches'
/// last convs, C -> Dim, 3^d) from kThinFewMinKernel taps: forward and weight gradient, one
/// thin pass per output channel (their im2col + GEMM ran at about 20 GFLOP/s; measured in
/// docs/results/conv-paths.md); their input gradient keeps the col2im paths.
constexpr Index kThinMinChannels = 8;
constexpr Index kThinMinKernel = 5;
constexpr Index kThinMaxOut = 4;
constexpr Index kThinFewMinKernel = 3;

template <int Dim, class S>
bool thin_direct_shape(const ConvOptions<Dim>& o, ConvPass pass) {
  if constexpr (Dim != 2 && Dim != 3) {
    return false;
  } else {
    if (is_transposed_pass(pass)) return false;
    for (int d = 0; d < Dim; ++d)
      if (o.stride()[d] != 1 || o.kernel_size()[d] < kThinFewMinKernel || o.padding()[d] > o.kernel_size()[d] - 1)
        return false;
    const Index ci = o.in_channels(), co = o.out_channels(), L = thin_lanes<S>;
    auto wide = [&](Index c) { return c >= kThinMinChannels && c % L == 0; };
    if (co >= 2 && co <= kThinMaxOut)  // a few outputs: forward and weight gradient, from 3 taps
      return wide(ci) && pass != ConvPass::InputGrad;
    for (int d = 0; d < Dim; ++d)
      if (o.kernel_size()[d] < kThinMinKernel) return false;
    if (co == 1 && wide(ci)) return true;
    return ci == 1 && wide(co) && pass != ConvPass::WeightGrad;
  }
}

/// The thin kernels' geometry of conv o from grid `in` (channels on the wide side: c) to grid
/// `out`: o's padding, or for an input gradient (`gradient`, the flipped kernel's correlation of
/// dy) k - 1 - padding.
template <int Dim>
ThinGeom thin_geom(Index c, const Shape<Dim + 2>& in, const Shape<Dim + 2>& out, const ConvOptions<Dim>& o,
                   bool gradient) {
  ThinGeom g;
  g.C = c;
  g.N = in[Dim + 1];
  for (int d = 0; d < Dim; ++d) {
    g.in[d] = in[d + 1];
    g.out[d] = out[d + 1];
    g.k[d] = o.kernel_size()[d];
    g.pad[d] = gradient ? o.kernel_size()[d] - 1 - o.padding()[d] : o.padding()[d];
  }
  return g;
}

}  // namespace detail

/// The one place that chooses a convolution's kernel: for pass `pass` of conv `o` on input shape
/// `x` (the conv's input; a transposed conv's input for its passes), on this context. The shapes
/// choose; the context's settings (ContextSettings::set_winograd, set_col2im) switch the Winograd
/// and col2im paths off. Half on the CPU is planned as the float it computes in.
template <int Dim, class S, class Device>
ConvPath plan_conv(const Context<Device>& ctx, const ConvOptions<Dim>& o, ConvPass pass, const Shape<Dim + 2>& x) {
  using P = ConvPass;
  constexpr bool cpu = !core::is_gpu_v<Device>;
  const bool conv = pass == P::Forward || pass == P::InputGrad || pass == P::WeightGrad;
  if constexpr (detail::dnnl_conv_capable_v<S, Device>) {
    const auto mode = ctx.dnnl_conv();
    if (mode != core::DnnlConvMode::Off && gemm_backend() == GemmBackend::Dnnl && detail::dnnl_conv_shape(o, pass, x) &&
        (mode == core::DnnlConvMode::Always || (ctx.conv_bf16() && detail::dnnl_conv_bf16(o, pass)) ||
         detail::dnnl_conv_auto(o, pass)))
      return ConvPath::Dnnl;
  }
  if constexpr (detail::thin_capable_v<S, Device>)
    if (conv && ctx.thin_direct() && detail::thin_direct_shape<Dim, S>(o, pass)) return ConvPath::ThinDirect;
  if constexpr (detail::winograd_capable_v<Dim, S, Device>)
    if (conv && ctx.winograd() && detail::winograd_shape(o)) return ConvPath::Winograd;
  if (pass == P::Forward || pass == P::WeightGrad || pass == P::TransposedInputGrad || pass == P::TransposedWeightGrad)
    return ConvPath::Gather;
  if (cpu && ctx.col2im()) {  // the input gradient of a conv, the forward of a transposed conv
    const auto p = detail::col2im_problem(o, x, pass == P::TransposedForward);
    if (p.applies()) return p.wide() ? ConvPath::GemmCol2im : ConvPath::GemmCol2imThin;
  }
  return ConvPath::TransposedGather;
}

/// y = conv(x, w) + bias.
template <int Dim, class S, class Device>
void conv_forward(Context<Device>& ctx, const ConvOptions<Dim>& o, const ConstTensorMap<S, Dim + 2>& x,
                  const ConstTensorMap<S, Dim + 2>& w, const nondeduced_t<ConstTensorMap<S, 1>>* bias,
                  TensorMap<S, Dim + 2>& y) {
  const std::string L = detail::op_label("conv", o);
  const Shape<Dim + 2> out = conv_output_shape(o, x.dimensions());
  detail::check_same<Dim + 2, S>(L, "weight", conv_weight_shape(o), w.dimensions());
  detail::check_same<Dim + 2, S>(L, "output", out, y.dimensions());
  if (bias) detail::check_same<1, S>(L, "bias", Shape<1>(o.out_channels()), bias->dimensions());
  if constexpr (detail::cpu_half_v<S, Device>) {
    auto xf = detail::to_float(ctx, x), wf = detail::to_float(ctx, w);
    core::Tensor<float, Dim + 2, Device> yf(ctx, out);
    auto ym = yf.map();
    conv_forward<Dim, float>(ctx, o, xf.cmap(), wf.cmap(), nullptr, ym);
    detail::assign_from_float(ctx, yf, y);
  } else {
#if defined(DICYC_DNNL_CONV)
    if constexpr (detail::dnnl_conv_capable_v<S, Device>) {
      if (plan_conv<Dim, S>(ctx, o, ConvPass::Forward, x.dimensions()) == ConvPath::Dnnl &&
          detail::dnnl_conv_run<Dim>(ctx, 0, ctx.conv_bf16() && detail::dnnl_conv_bf16(o, ConvPass::Forward), o, x.dimensions(), out, x.data(), w.data(), bias ? bias->data() : nullptr,
                                     y.data(), /*accumulate=*/false))
        return;  // the bias is added by the primitive
    }
#endif
    if constexpr (detail::thin_capable_v<S, Device>) {
      if (plan_conv<Dim, S>(ctx, o, ConvPass::Forward, x.dimensions()) == ConvPath::ThinDirect) {
        if (o.out_channels() == 1)
          detail::thin_corr(ctx, detail::thin_geom<Dim>(o.in_channels(), x.dimensions(), out, o, false), x.data(),
                            w.data(), false, y.data(), false);
        else if (o.in_channels() != 1)
          detail::thin_corr_few(ctx, detail::thin_geom<Dim>(o.in_channels(), x.dimensions(), out, o, false),
                                o.out_channels(), x.data(), w.data(), y.data());
        else
          detail::thin_spread(ctx, detail::thin_geom<Dim>(o.out_channels(), x.dimensions(), out, o, false), x.data(),
                              w.data(), false, y.data(), false);
        if (bias) detail::add_bias(ctx, *bias, y.data(), o.out_channels(), num_elements(out) / o.out_channels());
        return;
      }
    }
    if constexpr (detail::winograd_capable_v<Dim, S, Device>) {
      if (plan_conv<Dim, S>(ctx, o, ConvPass::Forward, x.dimensions()) == ConvPath::Winograd) {
        const Index cc = o.out_channels() * o.in_channels();
        const S* w0 = w.data();
        if constexpr (Dim == 2)
          detail::winograd_conv2d<S>(
              ctx, x.data(), x.dimensions(), o.out_channels(), [&](int a, int b) { return w0 + cc * (a + 3 * b); },
              y.data(), out, o.padding()[0], o.padding()[1], false);
        else
          detail::winograd_conv3d<S>(
              ctx, x.data(), x.dimensions(), o.out_channels(),
              [&](int a, int b, int c) { return w0 + cc * (a + 3 * b + 9 * c); }, y.data(), out, o.padding()[0],
              o.padding()[1], o.padding()[2], false);
        if (bias) detail::add_bias(ctx, *bias, y.data(), o.out_channels(), num_elements(out) / o.out_channels());
        return;
      }
    }
    const auto g = detail::geometry(o, o.in_channels(), x.dimensions(), out, false);
    detail::patch_gemm<Dim>(ctx, g, x.data(), w.data(), o.out_channels(), y.data(), false);
  }
  if (bias) detail::add_bias(ctx, *bias, y.data(), o.out_channels(), num_elements(out) / o.out_channels());
}

/// Accumulates the gradients of <conv(x, w) + bias, dy> into *dx, *dw, *db (each may be null).
/// With dx_overwrite the input gradient is written to *dx instead (its old content, which may be
/// anything, is not read): what a caller that would zero a fresh buffer first wants; every path
/// writes it directly (oneDNN's then skips the reorder that adds its result to the buffer).
template <int Dim, class S, class Device>
void conv_backward(Context<Device>& ctx, const ConvOptions<Dim>& o, const ConstTensorMap<S, Dim + 2>& x,
                   const ConstTensorMap<S, Dim + 2>& w, const ConstTensorMap<S, Dim + 2>& dy,
                   nondeduced_t<TensorMap<S, Dim + 2>>* dx, nondeduced_t<TensorMap<S, Dim + 2>>* dw,
                   nondeduced_t<TensorMap<S, 1>>* db, bool dx_overwrite = false) {
  const std::string L = detail::op_label("conv", o);
  const Shape<Dim + 2> out = conv_output_shape(o, x.dimensions());
  detail::check_same<Dim + 2, S>(L, "weight", conv_weight_shape(o), w.dimensions());
  detail::check_same<Dim + 2, S>(L, "output gradient", out, dy.dimensions());
  if (dx) detail::check_same<Dim + 2, S>(L, "input gradient", x.dimensions(), dx->dimensions());
  if (dw) detail::check_same<Dim + 2, S>(L, "weight gradient", w.dimensions(), dw->dimensions());
  if (db) detail::check_same<1, S>(L, "bias gradient", Shape<1>(o.out_channels()), db->dimensions());
  if (db) detail::sum_bias(ctx, dy.data(), *db, o.out_channels(), num_elements(out) / o.out_channels());
  const bool dx_add = !dx_overwrite;  // the input gradient's paths: add to *dx, or write it
  if constexpr (detail::cpu_half_v<S, Device>) {
    if (dx && dx_overwrite) dx->device(ctx.device()) = dx->constant(S(0));  // converted to float and added to
    detail::backward_via_float<Dim + 2>(ctx, x, w, dy, dx, dw, [&](auto xf, auto wf, auto dyf, auto* gx, auto* gw) {
      conv_backward<Dim, float>(ctx, o, xf, wf, dyf, gx, gw, nullptr);
    });
  } else {
    // oneDNN's passes first (each falls back to the kernels below if oneDNN has no primitive);
    // the weight gradient's copy of dy in the primitive's layout serves the input gradient too.
#if defined(DICYC_DNNL_CONV)
    if constexpr (detail::dnnl_conv_capable_v<S, Device>) {
      detail::DnnlSharedInput dy_copy;
      dy_copy.user = dy.data();
      if (dw && plan_conv<Dim, S>(ctx, o, ConvPass::WeightGrad, x.dimensions()) == ConvPath::Dnnl &&
          detail::dnnl_conv_run<Dim>(ctx, 2, ctx.conv_bf16() && detail::dnnl_conv_bf16(o, ConvPass::WeightGrad), o, x.dimensions(), out, x.data(), dy.data(), nullptr, dw->data(),
                                     /*accumulate=*/true, &dy_copy))
        dw = nullptr;
      if (dx && plan_conv<Dim, S>(ctx, o, ConvPass::InputGrad, x.dimensions()) == ConvPath::Dnnl &&
          detail::dnnl_conv_run<Dim>(ctx, 1, ctx.conv_bf16() && detail::dnnl_conv_bf16(o, ConvPass::InputGrad), o, x.dimensions(), out, dy.data(), w.data(), nullptr, dx->data(),
                                     /*accumulate=*/dx_add, &dy_copy))
        dx = nullptr;
    }
#endif
    if constexpr (detail::thin_capable_v<S, Device>) {
      // The weight gradient of C -> 1; the input gradients as the flipped kernel's correlation of
      // dy onto x's grid (1 <- C: onto one channel; C <- 1: spread over C).
      if (dw && plan_conv<Dim, S>(ctx, o, ConvPass::WeightGrad, x.dimensions()) == ConvPath::ThinDirect) {
        if (o.out_channels() == 1)
          detail::thin_wgrad(ctx, detail::thin_geom<Dim>(o.in_channels(), x.dimensions(), out, o, false), x.data(),
                             dy.data(), dw->data());
        else
          detail::thin_wgrad_few(ctx, detail::thin_geom<Dim>(o.in_channels(), x.dimensions(), out, o, false),
                                 o.out_channels(), x.data(), dy.data(), dw->data());
        dw = nullptr;
      }
      if (dx && plan_conv<Dim, S>(ctx, o, ConvPass::InputGrad, x.dimensions()) == ConvPath::ThinDirect) {
        if (o.in_channels() == 1)
          detail::thin_corr(ctx, detail::thin_geom<Dim>(o.out_channels(), out, x.dimensions(), o, true), dy.data(),
                            w.data(), true, dx->data(), dx_add);
        else
          detail::thin_spread(ctx, detail::thin_geom<Dim>(o.in_channels(), out, x.dimensions(), o, true), dy.data(),
                              w.data(), true, dx->data(), dx_add);
        dx = nullptr;
      }
    }
    if constexpr (detail::winograd_capable_v<Dim, S, Device>) {
      if (plan_conv<Dim, S>(ctx, o, ConvPass::InputGrad, x.dimensions()) == ConvPath::Winograd) {
        const Index px = o.padding()[0], py = o.padding()[1];
        const Index cc = o.out_channels() * o.in_channels();
        const S* w0 = w.data();
        // The input gradient is the stride-1 conv of dy with the kernel flipped and its channel
        // axes swapped (the GEMMs take w's taps transposed), at padding 2 - p.
        if constexpr (Dim == 2) {
          if (dw) detail::winograd_wgrad2d<S>(ctx, x.data(), x.dimensions(), dy.data(), out, dw->data(), px, py);
          if (dx)
            detail::winograd_conv2d<S>(
                ctx, dy.data(), out, o.in_channels(), [&](int a, int b) { return w0 + cc * ((2 - a) + 3 * (2 - b)); },
                dx->data(), x.dimensions(), 2 - px, 2 - py, dx_add, true);
        } else {
          const Index pz = o.padding()[2];
          if (dw) detail::winograd_wgrad3d<S>(ctx, x.data(), x.dimensions(), dy.data(), out, dw->data(), px, py, pz);
          if (dx)
            detail::winograd_conv3d<S>(
                ctx, dy.data(), out, o.in_channels(),
                [&](int a, int b, int c) { return w0 + cc * ((2 - a) + 3 * (2 - b) + 9 * (2 - c)); }, dx->data(),
                x.dimensions(), 2 - px, 2 - py, 2 - pz, dx_add, true);
        }
        return;
      }
    }
    if (dw) {
      const auto g = detail::geometry(o, o.in_channels(), x.dimensions(), out, false);
      detail::patch_gemm_wgrad<Dim>(ctx, g, x.data(), dy.data(), o.out_channels(), dw->data());
    }
    if (dx) {
      const ConvPath pdx = plan_conv<Dim, S>(ctx, o, ConvPass::InputGrad, x.dimensions());
      if (pdx == ConvPath::TransposedGather || pdx == ConvPath::Dnnl) {
        const auto g = detail::geometry(o, o.out_channels(), out, x.dimensions(), true);
        const auto wt = detail::swap_kernel_axes<Dim>(ctx, w);
        detail::patch_gemm<Dim>(ctx, g, dy.data(), wt.data(), o.in_channels(), dx->data(), dx_add);
      } else {
        detail::run_gemm_col2im<Dim>(ctx, detail::col2im_problem(o, x.dimensions(), false), w.data(), dy.data(),
                                     dx->data(), dx_add);
      }
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
  if constexpr (detail::cpu_half_v<S, Device>) {
    auto xf = detail::to_float(ctx, x), wf = detail::to_float(ctx, w);
    core::Tensor<float, Dim + 2, Device> yf(ctx, out);
    auto ym = yf.map();
    conv_transpose_forward<Dim, float>(ctx, o, xf.cmap(), wf.cmap(), nullptr, ym);
    detail::assign_from_float(ctx, yf, y);
  } else {
    // The transposed conv's forward is the input gradient of the conv from y's grid to x's.
    const ConvPath path = plan_conv<Dim, S>(ctx, o, ConvPass::TransposedForward, x.dimensions());
#if defined(DICYC_DNNL_CONV)
    if constexpr (detail::dnnl_conv_capable_v<S, Device>) {
      if (path == ConvPath::Dnnl &&
          detail::dnnl_conv_run<Dim>(ctx, 1, ctx.conv_bf16() && detail::dnnl_conv_bf16(o, ConvPass::TransposedForward),
                                     detail::transposed_as_conv(o), out, x.dimensions(), x.data(), w.data(), nullptr,
                                     y.data(), /*accumulate=*/false)) {
        if (bias) detail::add_bias(ctx, *bias, y.data(), o.out_channels(), num_elements(out) / o.out_channels());
        return;
      }
    }
#endif
    if (path == ConvPath::TransposedGather || path == ConvPath::Dnnl) {
      const auto g = detail::geometry(o, o.in_channels(), x.dimensions(), out, true);
      const auto wt = detail::swap_kernel_axes<Dim>(ctx, w);
      detail::patch_gemm<Dim>(ctx, g, x.data(), wt.data(), o.out_channels(), y.data(), false);
    } else {
      detail::run_gemm_col2im<Dim>(ctx, detail::col2im_problem(o, x.dimensions(), true), w.data(), x.data(), y.data(),
                                   false);
    }
  }
  if (bias) detail::add_bias(ctx, *bias, y.data(), o.out_channels(), num_elements(out) / o.out_channels());
}

/// Accumulates the gradients of <conv_transpose(x, w) + bias, dy> into *dx, *dw, *db; with
/// dx_overwrite the input gradient is written to *dx instead (as conv_backward's).
template <int Dim, class S, class Device>
void conv_transpose_backward(Context<Device>& ctx, const ConvOptions<Dim>& o, const ConstTensorMap<S, Dim + 2>& x,
                             const ConstTensorMap<S, Dim + 2>& w, const ConstTensorMap<S, Dim + 2>& dy,
                             nondeduced_t<TensorMap<S, Dim + 2>>* dx, nondeduced_t<TensorMap<S, Dim + 2>>* dw,
                             nondeduced_t<TensorMap<S, 1>>* db, bool dx_overwrite = false) {
  const std::string L = detail::op_label("conv_transpose", o);
  const Shape<Dim + 2> out = conv_transpose_output_shape(o, x.dimensions());
  detail::check_same<Dim + 2, S>(L, "weight", conv_transpose_weight_shape(o), w.dimensions());
  detail::check_same<Dim + 2, S>(L, "output gradient", out, dy.dimensions());
  if (dx) detail::check_same<Dim + 2, S>(L, "input gradient", x.dimensions(), dx->dimensions());
  if (dw) detail::check_same<Dim + 2, S>(L, "weight gradient", w.dimensions(), dw->dimensions());
  if (db) detail::check_same<1, S>(L, "bias gradient", Shape<1>(o.out_channels()), db->dimensions());
  if (db) detail::sum_bias(ctx, dy.data(), *db, o.out_channels(), num_elements(out) / o.out_channels());
  if constexpr (detail::cpu_half_v<S, Device>) {
    if (dx && dx_overwrite) dx->device(ctx.device()) = dx->constant(S(0));  // converted to float and added to
    detail::backward_via_float<Dim + 2>(ctx, x, w, dy, dx, dw, [&](auto xf, auto wf, auto dyf, auto* gx, auto* gw) {
      conv_transpose_backward<Dim, float>(ctx, o, xf, wf, dyf, gx, gw, nullptr);
    });
  } else {
#if defined(DICYC_DNNL_CONV)
    // oneDNN first: the input gradient is the forward of the conv from y's grid to x's, the
    // weight gradient that conv's weight gradient with dy as its input and x as its output's
    // (both read dy: one copy in the primitives' layout serves both, as in conv_backward).
    if constexpr (detail::dnnl_conv_capable_v<S, Device>) {
      const auto c = detail::transposed_as_conv(o);
      detail::DnnlSharedInput dy_copy;
      dy_copy.user = dy.data();
      if (dw && plan_conv<Dim, S>(ctx, o, ConvPass::TransposedWeightGrad, x.dimensions()) == ConvPath::Dnnl &&
          detail::dnnl_conv_run<Dim>(ctx, 2,
                                     ctx.conv_bf16() && detail::dnnl_conv_bf16(o, ConvPass::TransposedWeightGrad), c,
                                     out, x.dimensions(), dy.data(), x.data(), nullptr, dw->data(), /*accumulate=*/true,
                                     &dy_copy))
        dw = nullptr;
      if (dx && plan_conv<Dim, S>(ctx, o, ConvPass::TransposedInputGrad, x.dimensions()) == ConvPath::Dnnl &&
          detail::dnnl_conv_run<Dim>(ctx, 0,
                                     ctx.conv_bf16() && detail::dnnl_conv_bf16(o, ConvPass::TransposedInputGrad), c,
                                     out, x.dimensions(), dy.data(), w.data(), nullptr, dx->data(),
                                     /*accumulate=*/!dx_overwrite, &dy_copy))
        dx = nullptr;
    }
#endif
    // Both gradients gather dy onto the input grid, normal mode.
    const auto g = detail::geometry(o, o.out_channels(), out, x.dimensions(), false);
    if (dx) detail::patch_gemm<Dim>(ctx, g, dy.data(), w.data(), o.in_channels(), dx->data(), !dx_overwrite);
    if (dw) detail::patch_gemm_wgrad<Dim>(ctx, g, dy.data(), x.data(), o.in_channels(), dw->data());
  }
}

}  // namespace dicyc::ops
