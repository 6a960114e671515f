// dicyc/ops/im2col.hpp -- gathered patch matrices for convolution as GEMM, in 2-D and 3-D.
//
// For a source image (C, s_1..s_Dim, N) and a grid `out` (kernel k, stride s, zero padding p),
// the column matrix `cols` is (C * kvol) x (prod(out) * N), column-major:
//   row    r = c + C * kidx, with kidx the flattened kernel offset (kx fastest);
//   column j = o + prod(out) * n, with o the flattened grid position (x fastest).
// Two gather modes:
//   normal      cols(r, j) = image(c, o * s - p + k, n)                     (conv forward)
//   transposed  cols(r, j) = image(c, (o + p - k) / s, n) when s divides    (transposed conv, and
//               o + p - k, else 0                                            the conv's input grad)
// and 0 outside the image. Every convolution product -- forward, input gradient, weight gradient,
// of conv and transposed conv -- is one of these gathers followed by a GEMM, so nothing scatters:
// the work splits over column blocks with no write conflicts.
//
// Because channels are fastest in our layout, each (kidx, j) pair is one contiguous run of C
// values in both the image and the column: the CPU loop copies runs. The gather generate()
// functor (EIGEN_DEVICE_FUNC) serves every device and is what the GPU runs; tests check the two
// against each other and against naive references.
#pragma once

#include <algorithm>
#include <array>
#include <cstring>

#include "dicyc/core/buffer.hpp"

namespace dicyc::ops {

template <int Dim>
struct PatchGeometry {
  Index channels = 0;
  Index batch = 1;
  std::array<Index, Dim> image{};   // spatial extent of the source image
  std::array<Index, Dim> out{};     // spatial extent of the grid
  std::array<Index, Dim> kernel{};
  std::array<Index, Dim> stride{};
  std::array<Index, Dim> pad{};
  bool transposed = false;

  Index kvol() const { return prod(kernel); }
  Index image_pixels() const { return prod(image); }
  Index out_pixels() const { return prod(out); }
  Index rows() const { return channels * kvol(); }
  Index cols() const { return out_pixels() * batch; }
  /// True when the gather is the identity (1x1 kernel, stride 1, no padding).
  bool trivial() const {
    for (int d = 0; d < Dim; ++d)
      if (kernel[d] != 1 || stride[d] != 1 || pad[d] != 0 || image[d] != out[d]) return false;
    return true;
  }
  static Index prod(const std::array<Index, Dim>& a) {
    Index p = 1;
    for (Index v : a) p *= v;
    return p;
  }
};

namespace detail {

/// Source coordinate along one axis, or -1 when the gather reads a zero.
EIGEN_DEVICE_FUNC inline Index gather_source(bool transposed, Index o, Index k, Index s, Index p, Index n) {
  Index id;
  if (transposed) {
    const Index num = o + p - k;
    if (num < 0 || num % s != 0) return -1;
    id = num / s;
  } else {
    id = o * s - p + k;
  }
  return (id < 0 || id >= n) ? -1 : id;
}

/// Gather form of im2col: evaluates cols(r, j0 + j) for a block starting at column j0.
template <int Dim, class S>
struct Im2colGenerator {
  const S* img;
  Index C, npix_img, npix_out, j0;
  bool transposed;
  Eigen::array<Index, Dim> image, out, kernel, stride, pad;

  EIGEN_DEVICE_FUNC S operator()(const Eigen::array<Index, 2>& rc) const {
    const Index r = rc[0], j = rc[1] + j0;
    const Index c = r % C;
    Index kidx = r / C;
    const Index n = j / npix_out;
    Index o = j - n * npix_out;
    Index flat = 0, mul = 1;
    for (int d = 0; d < Dim; ++d) {
      const Index od = o % out[d];
      o /= out[d];
      const Index kd = kidx % kernel[d];
      kidx /= kernel[d];
      const Index id = gather_source(transposed, od, kd, stride[d], pad[d], image[d]);
      if (id < 0) return S(0);
      flat += id * mul;
      mul *= image[d];
    }
    return img[c + C * (flat + npix_img * n)];
  }
};

template <int Dim>
Eigen::array<Index, Dim> to_eigen(const std::array<Index, Dim>& a) {
  Eigen::array<Index, Dim> e;
  for (int d = 0; d < Dim; ++d) e[d] = a[d];
  return e;
}

}  // namespace detail

/// im2col of columns [j0, j1) into `cols` (rows x (j1 - j0)), with generate() on any device.
template <int Dim, class S, class Device>
void im2col_generic(const Device& dev, const PatchGeometry<Dim>& g, const S* img, S* cols, Index j0, Index j1) {
  detail::Im2colGenerator<Dim, S> gen{img, g.channels, g.image_pixels(), g.out_pixels(), j0, g.transposed,
                                      detail::to_eigen<Dim>(g.image), detail::to_eigen<Dim>(g.out),
                                      detail::to_eigen<Dim>(g.kernel), detail::to_eigen<Dim>(g.stride),
                                      detail::to_eigen<Dim>(g.pad)};
  TensorMap<S, 2> out(cols, g.rows(), j1 - j0);
  out.device(dev) = out.generate(gen);
}

/// im2col of columns [j0, j1) on the calling thread: copies runs of contiguous values.
///
/// Normal mode: the x taps of one (y, z) tap read consecutive source pixels whatever the stride,
/// so each column is Dim == 2 ? ky : ky * kz runs of up to C * kx values, one memcpy each (the
/// part inside the image; the rest zero). The per-tap index arithmetic of the generic loop cost
/// more than the copy itself at small C (the 7^3 stem and head of a 3-D generator: half of a 3-D
/// iteration). Transposed mode copies runs of C, tap by tap; the CPU convolutions no longer use it
/// (patch_gemm turns every transposed gather into normal ones: by phases, or by flipping).
template <int Dim, class S>
void im2col_block(const PatchGeometry<Dim>& g, const S* img, S* cols, Index j0, Index j1) {
  const Index C = g.channels, rows = g.rows(), npi = g.image_pixels(), npo = g.out_pixels(), kv = g.kvol();
  // Per axis and kernel offset, the source coordinate of each grid position (-1: zero); small.
  std::array<std::vector<Index>, Dim> src;
  for (int d = 0; d < Dim; ++d) {
    src[d].resize(static_cast<std::size_t>(g.out[d] * g.kernel[d]));
    for (Index o = 0; o < g.out[d]; ++o)
      for (Index k = 0; k < g.kernel[d]; ++k)
        src[d][o * g.kernel[d] + k] = detail::gather_source(g.transposed, o, k, g.stride[d], g.pad[d], g.image[d]);
  }
  std::array<Index, Dim> oc{}, kc{};
  // Column j's sample (returned) and grid position (oc).
  auto column = [&](Index j) {
    const Index n = j / npo;
    Index o = j - n * npo;
    for (int d = 0; d < Dim; ++d) {
      oc[d] = o % g.out[d];
      o /= g.out[d];
    }
    return n;
  };
  // The flattened source of tap kc over axes d0.. (axes below d0 at 0), false when one is outside.
  auto locate = [&](int d0, Index& flat) {
    Index mul = 1;
    for (int d = 0; d < d0; ++d) mul *= g.image[d];
    flat = 0;
    for (int d = d0; d < Dim; ++d) {
      const Index id = src[d][oc[d] * g.kernel[d] + kc[d]];
      if (id < 0) return false;
      flat += id * mul;
      mul *= g.image[d];
    }
    return true;
  };
  auto next_tap = [&](int d0) {  // the next kernel offset over axes d0.., the lowest fastest
    for (int d = d0; d < Dim; ++d) {
      if (++kc[d] < g.kernel[d]) break;
      kc[d] = 0;
    }
  };
  if (!g.transposed) {
    const Index KX = g.kernel[0], X = g.image[0], run = C * KX, outer = kv / KX;
    for (Index j = j0; j < j1; ++j) {
      const S* base = img + C * npi * column(j);
      S* dst = cols + rows * (j - j0);
      // The x taps [a, b) fall inside the image, at source x0 + a ...
      const Index x0 = oc[0] * g.stride[0] - g.pad[0];
      const Index a = std::max<Index>(0, -x0), b = std::min<Index>(KX, X - x0);
      kc.fill(0);
      for (Index t = 0; t < outer; ++t, next_tap(1)) {  // the (y, z) taps, y fastest
        Index flat = 0;
        S* dd = dst + run * t;
        if (!locate(1, flat) || b <= a) {
          std::fill(dd, dd + run, S(0));
        } else {
          if (a > 0) std::fill(dd, dd + C * a, S(0));
          std::memcpy(dd + C * a, base + C * (flat + x0 + a), sizeof(S) * C * (b - a));
          if (b < KX) std::fill(dd + C * b, dd + run, S(0));
        }
      }
    }
    return;
  }
  for (Index j = j0; j < j1; ++j) {
    const S* base = img + C * npi * column(j);
    S* dst = cols + rows * (j - j0);
    kc.fill(0);
    for (Index kidx = 0; kidx < kv; ++kidx, next_tap(0)) {  // kx fastest
      Index flat = 0;
      S* dd = dst + C * kidx;
      if (!locate(0, flat)) std::fill(dd, dd + C, S(0));
      else if (C == 1) *dd = base[flat];
      else std::memcpy(dd, base + C * flat, sizeof(S) * C);
    }
  }
}

/// im2col of columns [j0, j1) on a CPU context, split over the pool.
template <int Dim, class S, class Device>
void im2col_cpu(const Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* img, S* cols, Index j0, Index j1) {
  ctx.parallel_for(j1 - j0, double(g.rows()) * 0.5 + 20,
                   [&](Index b, Index e) { im2col_block<Dim>(g, img, cols + g.rows() * b, j0 + b, j0 + e); });
}

}  // namespace dicyc::ops
