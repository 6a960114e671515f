// dicyc/eval/ct_metrics.hpp -- synthetic-CT scores as the SynthRAD challenges compute them, in
// Hounsfield units, inside a body mask (SynthRAD2023's functions/image_metrics.py, ImageMetrics):
//   MAE   mean |truth - pred| over the mask, unclipped;
//   PSNR  both images clipped to the HU range [lo, hi] (2023: [-1024, 3000]), data range hi - lo,
//         10 log10(range^2 / MSE) over the mask;
//   SSIM  both clipped, voxels outside the mask set to lo, shifted by -lo; scikit-image's
//         structural_similarity with its defaults (a uniform 7-voxel window in every dimension,
//         'reflect' borders, sample covariance N/(N-1), K1 0.01, K2 0.03, data range hi - lo), the
//         per-voxel map averaged over the mask after cropping 3 voxels from every border, as
//         scikit-image crops its mean. A volume of one slice is scored as a 2-D image.
// SynthRAD2025 uses the range [-1024, 3071] (CtRange::synthrad2025()); its masked 3-D multi-scale
// SSIM is not computed here.
// body_mask(): when no mask is given, the body is the largest 6-connected component of voxels
// above -500 HU, with its enclosed holes (air in the sinuses, the airways) filled.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dicyc/core/error.hpp"
#include "dicyc/core/types.hpp"
#include "dicyc/eval/metrics.hpp"

namespace dicyc::eval {

struct CtRange {
  double lo = -1024, hi = 3000;
  static CtRange synthrad2023() { return {-1024, 3000}; }
  static CtRange synthrad2025() { return {-1024, 3071}; }
};

struct CtScores {
  double mae = 0, psnr = 0, ssim = 0;
  std::int64_t voxels = 0;  // inside the mask
};

namespace detail {

/// Labels of 6-connected components of `in` (1 = part of a component) in a volume of `dim`;
/// returns the component index per voxel (-1 outside) and the component sizes.
inline std::vector<std::int32_t> components6(const std::vector<std::uint8_t>& in, const std::array<Index, 3>& dim,
                                             std::vector<std::int64_t>& sizes) {
  const Index nx = dim[0], ny = dim[1], nz = dim[2], n = nx * ny * nz;
  std::vector<std::int32_t> label(static_cast<std::size_t>(n), -1);
  std::vector<Index> stack;
  sizes.clear();
  for (Index s = 0; s < n; ++s) {
    if (!in[static_cast<std::size_t>(s)] || label[static_cast<std::size_t>(s)] >= 0) continue;
    const auto id = static_cast<std::int32_t>(sizes.size());
    std::int64_t count = 0;
    stack.assign(1, s);
    label[static_cast<std::size_t>(s)] = id;
    while (!stack.empty()) {
      const Index v = stack.back();
      stack.pop_back();
      ++count;
      const Index x = v % nx, y = (v / nx) % ny, z = v / (nx * ny);
      const Index nb[6] = {x > 0 ? v - 1 : -1,           x + 1 < nx ? v + 1 : -1,      y > 0 ? v - nx : -1,
                           y + 1 < ny ? v + nx : -1,      z > 0 ? v - nx * ny : -1,     z + 1 < nz ? v + nx * ny : -1};
      for (Index u : nb)
        if (u >= 0 && in[static_cast<std::size_t>(u)] && label[static_cast<std::size_t>(u)] < 0) {
          label[static_cast<std::size_t>(u)] = id;
          stack.push_back(u);
        }
    }
    sizes.push_back(count);
  }
  return label;
}

/// scikit-image's structural_similarity map (uniform window `win`, sample covariance, reflect
/// borders) of a and b (float64, x fastest) on an image of `ext`.
template <int Rank>
std::vector<double> ssim_map_uniform(const std::vector<double>& a, const std::vector<double>& b,
                                     const std::array<Index, Rank>& ext, double range, int win = 7, double k1 = 0.01,
                                     double k2 = 0.03) {
  const std::vector<double> taps(static_cast<std::size_t>(win), 1.0 / win);
  const std::size_t n = a.size();
  std::vector<double> ux = a, uy = b, uxx(n), uyy(n), uxy(n);
  for (std::size_t i = 0; i < n; ++i) {
    uxx[i] = a[i] * a[i];
    uyy[i] = b[i] * b[i];
    uxy[i] = a[i] * b[i];
  }
  for (auto* v : {&ux, &uy, &uxx, &uyy, &uxy}) gaussian_filter_reflect<Rank>(*v, ext, taps);
  const double np = std::pow(static_cast<double>(win), Rank), cov = np / (np - 1);
  const double c1 = (k1 * range) * (k1 * range), c2 = (k2 * range) * (k2 * range);
  std::vector<double> s(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double vx = cov * (uxx[i] - ux[i] * ux[i]), vy = cov * (uyy[i] - uy[i] * uy[i]),
                 vxy = cov * (uxy[i] - ux[i] * uy[i]);
    s[i] = ((2 * ux[i] * uy[i] + c1) * (2 * vxy + c2)) / ((ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2));
  }
  return s;
}

}  // namespace detail

/// The body of a CT in HU (x fastest, `dim` voxels): the largest 6-connected component above
/// `threshold`, with the background components that do not reach the volume's border filled.
inline std::vector<std::uint8_t> body_mask(const float* ct, const std::array<Index, 3>& dim, double threshold = -500) {
  const Index n = dim[0] * dim[1] * dim[2];
  DICYC_CHECK(n > 0, ShapeError, "body_mask: empty volume");
  std::vector<std::uint8_t> above(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) above[static_cast<std::size_t>(i)] = ct[i] > threshold;
  std::vector<std::int64_t> sizes;
  const auto lab = detail::components6(above, dim, sizes);
  DICYC_CHECK(!sizes.empty(), NumericError,
              "body_mask: no voxel above " << threshold << " HU: is this a CT in Hounsfield units? Give --mask");
  const auto body = static_cast<std::int32_t>(std::max_element(sizes.begin(), sizes.end()) - sizes.begin());
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(n)), outside(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    mask[static_cast<std::size_t>(i)] = lab[static_cast<std::size_t>(i)] == body;
    outside[static_cast<std::size_t>(i)] = !mask[static_cast<std::size_t>(i)];
  }
  // Holes: components of the rest that touch no border of the volume.
  const auto hl = detail::components6(outside, dim, sizes);
  std::vector<std::uint8_t> border(sizes.size(), 0);
  for (Index z = 0; z < dim[2]; ++z)
    for (Index y = 0; y < dim[1]; ++y)
      for (Index x = 0; x < dim[0]; ++x) {
        const bool edge = x == 0 || y == 0 || z == 0 || x == dim[0] - 1 || y == dim[1] - 1 || z == dim[2] - 1;
        const auto l = hl[static_cast<std::size_t>(x + dim[0] * (y + dim[1] * z))];
        if (edge && l >= 0) border[static_cast<std::size_t>(l)] = 1;
      }
  // A single slice: holes are judged in its plane (its z faces are not borders).
  if (dim[2] == 1) {
    std::fill(border.begin(), border.end(), 0);
    for (Index y = 0; y < dim[1]; ++y)
      for (Index x = 0; x < dim[0]; ++x)
        if (x == 0 || y == 0 || x == dim[0] - 1 || y == dim[1] - 1) {
          const auto l = hl[static_cast<std::size_t>(x + dim[0] * y)];
          if (l >= 0) border[static_cast<std::size_t>(l)] = 1;
        }
  }
  for (Index i = 0; i < n; ++i) {
    const auto l = hl[static_cast<std::size_t>(i)];
    if (l >= 0 && !border[static_cast<std::size_t>(l)]) mask[static_cast<std::size_t>(i)] = 1;
  }
  return mask;
}

/// MAE, PSNR and SSIM of a synthetic CT against the real one (both in HU, x fastest, `dim`
/// voxels) inside `mask` (non-zero = inside), as SynthRAD computes them (see the file comment).
inline CtScores ct_metrics(const float* pred, const float* truth, const std::uint8_t* mask, const std::array<Index, 3>& dim,
                           const CtRange& r = CtRange::synthrad2023()) {
  DICYC_CHECK(std::isfinite(r.lo) && std::isfinite(r.hi) && r.hi > r.lo, ConfigError,
              "ct_metrics: the HU range must be finite with lo < hi, got [" << r.lo << ", " << r.hi << "]");
  const Index n = dim[0] * dim[1] * dim[2];
  DICYC_CHECK(n > 0, ShapeError, "ct_metrics: empty volume");
  CtScores s;
  double abs_sum = 0, sq_sum = 0;
  auto clip = [&](double v) { return std::clamp(v, r.lo, r.hi); };
  for (Index i = 0; i < n; ++i) {
    if (!mask[i]) continue;
    const double t = truth[i], p = pred[i];
    DICYC_CHECK(std::isfinite(t) && std::isfinite(p), NumericError, "ct_metrics: a non-finite value inside the mask");
    abs_sum += std::abs(t - p);
    const double d = clip(t) - clip(p);
    sq_sum += d * d;
    ++s.voxels;
  }
  DICYC_CHECK(s.voxels > 0, ShapeError, "ct_metrics: the mask is empty");
  const double range = r.hi - r.lo;
  s.mae = abs_sum / static_cast<double>(s.voxels);
  const double mse = sq_sum / static_cast<double>(s.voxels);
  s.psnr = mse == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(range * range / mse);
  // SSIM on the clipped, masked, shifted volumes.
  std::vector<double> a(static_cast<std::size_t>(n)), b(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    a[static_cast<std::size_t>(i)] = (mask[i] ? clip(truth[i]) : r.lo) - r.lo;
    b[static_cast<std::size_t>(i)] = (mask[i] ? clip(pred[i]) : r.lo) - r.lo;
  }
  const int win = 7, pad = 3;
  std::vector<double> map;
  const bool flat = dim[2] == 1;
  for (int d = 0; d < (flat ? 2 : 3); ++d)
    DICYC_CHECK(dim[d] >= win, ShapeError,
                "ct_metrics: SSIM's 7-voxel window needs at least 7 voxels along every axis, got " << dim[0] << "x"
                                                                                                 << dim[1] << "x" << dim[2]);
  if (flat) map = detail::ssim_map_uniform<2>(a, b, {dim[0], dim[1]}, range, win);
  else map = detail::ssim_map_uniform<3>(a, b, {dim[0], dim[1], dim[2]}, range, win);
  double sum = 0;
  std::int64_t cnt = 0;
  for (Index z = flat ? 0 : pad; z < (flat ? 1 : dim[2] - pad); ++z)
    for (Index y = pad; y < dim[1] - pad; ++y)
      for (Index x = pad; x < dim[0] - pad; ++x) {
        const Index i = x + dim[0] * (y + dim[1] * z);
        if (!mask[i]) continue;
        sum += map[static_cast<std::size_t>(i)];
        ++cnt;
      }
  DICYC_CHECK(cnt > 0, ShapeError, "ct_metrics: no masked voxel lies 3 voxels inside the border, where SSIM is averaged");
  s.ssim = sum / static_cast<double>(cnt);
  return s;
}

}  // namespace dicyc::eval
