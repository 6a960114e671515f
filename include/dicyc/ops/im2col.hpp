// dicyc/ops/im2col.hpp -- patch matrices for convolution as GEMM, in 2-D and 3-D.
//
// For an image (C, s_1..s_Dim, N) and a patch grid `out` (kernel k, stride s, zero padding p),
// the column matrix `cols` is (C * kvol) x (prod(out) * N), column-major:
//   row    r = c + C * kidx, with kidx the flattened kernel offset (kx fastest);
//   column j = o + prod(out) * n, with o the flattened patch-grid position (x fastest);
//   cols(r, j) = image(c, o * s - p + kidx, n), or 0 outside the image.
// Because channels are fastest in our layout, each (kidx, j) pair is one contiguous run of C
// values in both the image and the column: the CPU loops copy runs, not scalars.
//
// col2im is the exact adjoint of im2col, and it ACCUMULATES into the image (+=). It covers a
// block of columns [j0, j1), so that large convolutions can be tiled.
//
// Two implementations:
//   * the CPU loops (partitioned over columns for im2col, over channels for col2im, so that no
//     two threads write the same element);
//   * gather-form generate() functors, EIGEN_DEVICE_FUNC, which serve every device and are what
//     the GPU runs. Tests check both against a naive reference on the CPU.
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
  std::array<Index, Dim> image{};   // spatial extent of the image
  std::array<Index, Dim> out{};     // spatial extent of the patch grid
  std::array<Index, Dim> kernel{};
  std::array<Index, Dim> stride{};
  std::array<Index, Dim> pad{};

  Index kvol() const { return prod(kernel); }
  Index image_pixels() const { return prod(image); }
  Index out_pixels() const { return prod(out); }
  Index rows() const { return channels * kvol(); }
  Index cols() const { return out_pixels() * batch; }
  /// True when im2col is the identity (1x1 kernel, stride 1, no padding).
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

/// Gather form of im2col: evaluates cols(r, j).
template <int Dim, class S>
struct Im2colGenerator {
  const S* img;
  Index C, npix_img, npix_out, j0;  // j0: the first column of the block being generated
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
      const Index id = od * stride[d] - pad[d] + kd;
      if (id < 0 || id >= image[d]) return S(0);
      flat += id * mul;
      mul *= image[d];
    }
    return img[c + C * (flat + npix_img * n)];
  }
};

/// Gather form of col2im over columns [j0, j1): evaluates the sum that lands on image(c, i, n).
template <int Dim, class S>
struct Col2imGenerator {
  const S* cols;
  Index C, rows, npix_out, j0, j1;
  Eigen::array<Index, Dim> image, out, kernel, stride, pad;

  EIGEN_DEVICE_FUNC S operator()(const Eigen::array<Index, Dim + 2>& idx) const {
    using A = typename ::dicyc::acc<S>::type;
    const Index c = idx[0], n = idx[Dim + 1];
    // Enumerate kernel offsets k with (i + p - k) divisible by s and 0 <= (i + p - k)/s < out.
    Index kd[Dim];
    for (int d = 0; d < Dim; ++d) kd[d] = 0;
    A sum(0);
    Index kv = 1;
    for (int d = 0; d < Dim; ++d) kv *= kernel[d];
    for (Index t = 0; t < kv; ++t) {
      bool ok = true;
      Index o = 0, mul = 1, kidx = 0, kmul = 1;
      for (int d = 0; d < Dim && ok; ++d) {
        const Index num = idx[d + 1] + pad[d] - kd[d];
        if (num < 0 || num % stride[d] != 0) ok = false;
        const Index od = num / stride[d];
        if (od >= out[d]) ok = false;
        o += od * mul;
        mul *= out[d];
        kidx += kd[d] * kmul;
        kmul *= kernel[d];
      }
      if (ok) {
        const Index j = o + npix_out * n;
        if (j >= j0 && j < j1) sum += A(cols[(c + C * kidx) + rows * (j - j0)]);
      }
      for (int d = 0; d < Dim; ++d) {  // next kernel offset, kx fastest
        if (++kd[d] < kernel[d]) break;
        kd[d] = 0;
      }
    }
    return S(sum);
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
  detail::Im2colGenerator<Dim, S> gen{img, g.channels, g.image_pixels(), g.out_pixels(), j0,
                                      detail::to_eigen<Dim>(g.image), detail::to_eigen<Dim>(g.out),
                                      detail::to_eigen<Dim>(g.kernel), detail::to_eigen<Dim>(g.stride),
                                      detail::to_eigen<Dim>(g.pad)};
  TensorMap<S, 2> out(cols, g.rows(), j1 - j0);
  out.device(dev) = out.generate(gen);
}

/// image += col2im(cols) for columns [j0, j1), with generate() on any device.
template <int Dim, class S, class Device>
void col2im_generic(const Device& dev, const PatchGeometry<Dim>& g, const S* cols, S* img, Index j0, Index j1) {
  detail::Col2imGenerator<Dim, S> gen{cols, g.channels, g.rows(), g.out_pixels(), j0, j1,
                                      detail::to_eigen<Dim>(g.image), detail::to_eigen<Dim>(g.out),
                                      detail::to_eigen<Dim>(g.kernel), detail::to_eigen<Dim>(g.stride),
                                      detail::to_eigen<Dim>(g.pad)};
  Shape<Dim + 2> s;
  s[0] = g.channels;
  for (int d = 0; d < Dim; ++d) s[d + 1] = g.image[d];
  s[Dim + 1] = g.batch;
  TensorMap<S, Dim + 2> im(img, s);
  im.device(dev) = im + im.generate(gen);
}

namespace detail {

/// Visits every kernel offset, kx fastest: f(kidx, offsets).
template <int Dim, class F>
void for_each_offset(const std::array<Index, Dim>& kernel, F&& f) {
  std::array<Index, Dim> k{};
  const Index kv = PatchGeometry<Dim>::prod(kernel);
  for (Index t = 0; t < kv; ++t) {
    f(t, k);
    for (int d = 0; d < Dim; ++d) {
      if (++k[d] < kernel[d]) break;
      k[d] = 0;
    }
  }
}

/// Flat image index of column j's patch origin; writes per-axis origins into base.
template <int Dim>
Index patch_origin(const PatchGeometry<Dim>& g, Index j, std::array<Index, Dim>& base) {
  const Index npo = g.out_pixels();
  const Index n = j / npo;
  Index o = j - n * npo;
  for (int d = 0; d < Dim; ++d) {
    base[d] = (o % g.out[d]) * g.stride[d] - g.pad[d];
    o /= g.out[d];
  }
  return n;
}

/// Flat pixel of base + k if inside the image, else -1.
template <int Dim>
Index pixel_at(const PatchGeometry<Dim>& g, const std::array<Index, Dim>& base, const std::array<Index, Dim>& k) {
  Index flat = 0, mul = 1;
  for (int d = 0; d < Dim; ++d) {
    const Index id = base[d] + k[d];
    if (id < 0 || id >= g.image[d]) return -1;
    flat += id * mul;
    mul *= g.image[d];
  }
  return flat;
}

}  // namespace detail

/// im2col of columns [j0, j1) on a CPU context: copies runs of C contiguous values.
template <int Dim, class S, class Device>
void im2col_cpu(const Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* img, S* cols, Index j0, Index j1) {
  const Index C = g.channels, rows = g.rows(), npi = g.image_pixels();
  ctx.parallel_for(j1 - j0, double(rows) * 0.5 + 20, [&](Index b, Index e) {
    std::array<Index, Dim> base{};
    for (Index jj = b; jj < e; ++jj) {
      const Index j = j0 + jj;
      const Index n = detail::patch_origin<Dim>(g, j, base);
      S* dst = cols + rows * jj;
      const S* src = img + C * npi * n;
      detail::for_each_offset<Dim>(g.kernel, [&](Index kidx, const std::array<Index, Dim>& k) {
        const Index p = detail::pixel_at<Dim>(g, base, k);
        S* d = dst + C * kidx;
        if (p < 0) std::fill(d, d + C, S(0));
        else if (C == 1) *d = src[p];
        else std::memcpy(d, src + C * p, sizeof(S) * C);
      });
    }
  });
}

/// image += col2im(cols) for columns [j0, j1) on a CPU context, partitioned over channels.
template <int Dim, class S, class Device>
void col2im_cpu(const Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* cols, S* img, Index j0, Index j1) {
  const Index C = g.channels, rows = g.rows(), npi = g.image_pixels();
  const double cost = double(j1 - j0) * double(g.kvol()) * 1.0 + 10;
  ctx.parallel_for(C, cost, [&](Index c0, Index c1) {
    std::array<Index, Dim> base{};
    for (Index j = j0; j < j1; ++j) {
      const Index n = detail::patch_origin<Dim>(g, j, base);
      const S* src = cols + rows * (j - j0);
      S* dst = img + C * npi * n;
      detail::for_each_offset<Dim>(g.kernel, [&](Index kidx, const std::array<Index, Dim>& k) {
        const Index p = detail::pixel_at<Dim>(g, base, k);
        if (p < 0) return;
        S* d = dst + C * p;
        const S* s = src + C * kidx;
        for (Index c = c0; c < c1; ++c) d[c] = S(acc_t<S>(d[c]) + acc_t<S>(s[c]));
      });
    }
  });
}

/// Dispatch: CPU loops on the CPU contexts, generate() on the GPU.
template <int Dim, class S, class Device>
void im2col(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* img, S* cols, Index j0, Index j1) {
  if constexpr (core::is_gpu_v<Device>) im2col_generic<Dim>(ctx.device(), g, img, cols, j0, j1);
  else im2col_cpu<Dim>(ctx, g, img, cols, j0, j1);
}

template <int Dim, class S, class Device>
void col2im(Context<Device>& ctx, const PatchGeometry<Dim>& g, const S* cols, S* img, Index j0, Index j1) {
  if constexpr (core::is_gpu_v<Device>) col2im_generic<Dim>(ctx.device(), g, cols, img, j0, j1);
  else col2im_cpu<Dim>(ctx, g, cols, img, j0, j1);
}

}  // namespace dicyc::ops
