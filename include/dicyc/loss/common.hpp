// dicyc/loss/common.hpp -- what every loss shares: where its gradients go, masks, per-sample views,
// and the host round trip of the losses that have no device kernel yet.
//
// Contract of every loss in dicyc::loss:
//   value = loss(ctx, a[, b], grad = {}, mask = nullptr)
// * Inputs are (C, x, y[, z], N) tensors (any rank for the elementwise losses).
// * The value is returned on the host in the accumulation type (float for half).
// * `grad.a` / `grad.b`, when not null, receive grad.weight * d value / d input, ACCUMULATED
//   (+=), so that several weighted terms sum into one gradient buffer without temporaries.
// * `mask`, when given, has the inputs' shape; elements where it is non-zero take part, the others
//   neither contribute to the value nor receive gradient. An empty mask is an error.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cmath>
#include <limits>
#include <vector>

#include "dicyc/core/buffer.hpp"

namespace dicyc::loss {

/// Destinations of a loss's gradients: weight * d loss / d a into *a, the same for b; either may be
/// null (that gradient is skipped).
template <class S, int R>
struct GradTo {
  TensorMap<S, R>* a = nullptr;
  TensorMap<S, R>* b = nullptr;
  double weight = 1.0;
  bool any() const { return a != nullptr || b != nullptr; }
};

template <class S, int R>
using MaskPtr = const ConstTensorMap<S, R>*;

/// Samples whose alignment loss was undefined and taken as "no shared information" (a constant
/// image in NMI, GCC or MIND; see each loss), counted over the process; a trainer reads the
/// difference across a step to report them.
inline std::atomic<std::int64_t>& degenerate_samples() {
  static std::atomic<std::int64_t> n{0};
  return n;
}

namespace detail {

template <class S, int R>
void check_pair(const char* op, const Shape<R>& a, const Shape<R>& b) {
  DICYC_CHECK(a == b, ShapeError,
              op << ": the two inputs must have the same shape, but got " << shape_str(a) << " and " << shape_str(b));
  DICYC_CHECK(num_elements(a) > 0, ShapeError, op << ": empty input of shape " << shape_str(a));
}

template <class S, int R>
void check_grad_mask(const char* op, const Shape<R>& s, const GradTo<S, R>& g, MaskPtr<S, R> mask) {
  DICYC_CHECK(std::isfinite(g.weight), ConfigError, op << ": gradient weight must be finite, got " << g.weight);
  if (g.a)
    DICYC_CHECK(g.a->dimensions() == s, ShapeError,
                op << ": expected gradient of shape " << shape_str(s) << ", but got " << shape_str(g.a->dimensions()));
  if (g.b)
    DICYC_CHECK(g.b->dimensions() == s, ShapeError,
                op << ": expected gradient of shape " << shape_str(s) << ", but got " << shape_str(g.b->dimensions()));
  if (mask)
    DICYC_CHECK(mask->dimensions() == s, ShapeError,
                op << ": expected mask of shape " << shape_str(s) << ", but got " << shape_str(mask->dimensions()));
}

/// Geometry of one (C, s..., N) input seen as N samples of M contiguous elements, channels fastest.
template <int Dim>
struct SampleGeometry {
  Index C = 1, N = 1, M = 1, P = 1;  // channels, samples, elements per sample, voxels per sample
  std::array<Index, Dim> ext{};       // spatial extents
  std::array<Index, Dim> stride{};    // element strides of the spatial axes (stride of x = C)
  explicit SampleGeometry(const Shape<Dim + 2>& s) {
    C = s[0];
    N = s[Dim + 1];
    Index st = C;
    P = 1;
    for (int d = 0; d < Dim; ++d) {
      ext[d] = s[d + 1];
      stride[d] = st;
      st *= ext[d];
      P *= ext[d];
    }
    M = C * P;
  }
};

/// Coordinates of a running flat index over extents ext (first fastest), advanced without
/// divisions: loops over voxels call next() instead of dividing the flat index per axis.
template <int K>
struct Odometer {
  std::array<Index, K> ext{}, c{};
  explicit Odometer(const std::array<Index, K>& e) : ext(e) {}
  void seek(Index flat) {
    for (int d = 0; d < K; ++d) {
      c[d] = flat % ext[d];
      flat /= ext[d];
    }
  }
  void next() {
    for (int d = 0; d < K; ++d) {
      if (++c[d] < ext[d]) return;
      c[d] = 0;
    }
  }
};

/// Host copies of device inputs, and host gradient buffers folded back into the device gradients.
/// The CPU contexts use the caller's memory directly.
template <class S, int R, class Device>
struct HostView {
  core::Context<Device>& ctx;
  std::vector<S> a_h, b_h, m_h;
  std::vector<S> ga_h, gb_h;
  const S* a = nullptr;
  const S* b = nullptr;
  const S* m = nullptr;
  S* ga = nullptr;
  S* gb = nullptr;
  GradTo<S, R> dst;

  HostView(core::Context<Device>& c, const S* ad, const S* bd, Index n, MaskPtr<S, R> mask, GradTo<S, R> g)
      : ctx(c), dst(g) {
    if constexpr (!core::is_gpu_v<Device>) {
      a = ad;
      b = bd;
      m = mask ? mask->data() : nullptr;
      ga = g.a ? g.a->data() : nullptr;
      gb = g.b ? g.b->data() : nullptr;
    } else {
      if (ad) { a_h = core::to_host(ctx, ad, n); a = a_h.data(); }
      if (bd) { b_h = core::to_host(ctx, bd, n); b = b_h.data(); }
      if (mask) { m_h = core::to_host(ctx, mask->data(), n); m = m_h.data(); }
      if (g.a) { ga_h.assign(static_cast<std::size_t>(n), S(0)); ga = ga_h.data(); }
      if (g.b) { gb_h.assign(static_cast<std::size_t>(n), S(0)); gb = gb_h.data(); }
    }
  }
  /// Adds the host gradients into the device gradients (a no-op on the CPU).
  void finish() {
    if constexpr (core::is_gpu_v<Device>) {
      if (dst.a) core::add_from_host(ctx, ga_h, dst.a->data());
      if (dst.b) core::add_from_host(ctx, gb_h, dst.b->data());
    }
  }
};

/// The CPU context that runs a host implementation: the caller's own on the CPU, a serial one for a
/// GPU caller (whose data was copied to the host).
template <class Device>
struct HostRunner {
  template <class F>
  static void run(core::Context<Device>& ctx, F&& f) {
    if constexpr (core::is_gpu_v<Device>) {
      core::Context<Eigen::DefaultDevice> host;
      f(host);
    } else {
      f(ctx);
    }
  }
};

/// Fixed-size blocks for deterministic parallel sums: the partial of each block is stored in its own
/// slot and the slots are added in order, so the result does not depend on the thread count.
constexpr Index kSumBlock = 8192;
inline Index num_blocks(Index n, Index block = kSumBlock) { return (n + block - 1) / block; }

}  // namespace detail
}  // namespace dicyc::loss
