// dicyc/eval/metrics.hpp -- image-quality metrics between a synthesized image and its ground
// truth, on the host, in double: MSE, PSNR, SSIM (windowed, 2-D and 3-D) and global SSIM.
//
// Images are host tensors of rank Dim (2 or 3), spatial axes only (x fastest); any scalar type.
// A mask (any scalar type, same shape; non-zero = inside) restricts every mean to its voxels.
//   mse(a, b)            mean (a - b)^2
//   psnr(a, b, R)        10 log10(R^2 / mse); +inf when the images are equal (as scikit-image)
//   ssim(a, b, opts)     Wang et al. 2004 with a Gaussian window: scikit-image's
//                        structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
//                        use_sample_covariance=False, data_range=R), that is separable Gaussian
//                        filters of radius int(3.5 sigma + 0.5) (11 taps) with 'reflect' (half-sample
//                        symmetric) borders, the SSIM map averaged after cropping the window radius
//                        from every border. With a mask: the mean over the cropped map's masked voxels.
//   global_ssim(a, b, R) the same formula with the statistics of the whole image (population
//                        moments): the paper's "SSIM over a volume".
// The data range is explicit and must be positive (K1 = 0.01, K2 = 0.03 make the constants
// positive, so constant images give finite values, never NaN).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dicyc/core/error.hpp"
#include "dicyc/core/types.hpp"

namespace dicyc::eval {

template <class T, int Rank>
using Image = ConstTensorMap<T, Rank>;

namespace detail {

template <class T, int Rank, class M>
void check_inputs(const char* op, const Image<T, Rank>& a, const Image<T, Rank>& b, const Image<M, Rank>* mask) {
  DICYC_CHECK(a.dimensions() == b.dimensions(), ShapeError,
              op << ": the images must have the same shape, but got " << shape_str(a.dimensions()) << " and "
                 << shape_str(b.dimensions()));
  DICYC_CHECK(a.size() > 0, ShapeError, op << ": empty image of shape " << shape_str(a.dimensions()));
  if (mask) {
    DICYC_CHECK(mask->dimensions() == a.dimensions(), ShapeError,
                op << ": expected a mask of shape " << shape_str(a.dimensions()) << ", but got "
                   << shape_str(mask->dimensions()));
    Index n = 0;
    for (Index i = 0; i < mask->size(); ++i) n += mask->data()[i] != M(0);
    DICYC_CHECK(n > 0, ShapeError, op << ": the mask is empty");
  }
  for (Index i = 0; i < a.size(); ++i)
    DICYC_CHECK(std::isfinite(double(a.data()[i])) && std::isfinite(double(b.data()[i])), NumericError,
                op << ": the images contain non-finite values (first at flat index " << i << ")");
}

inline void check_range(const char* op, double range) {
  DICYC_CHECK(range > 0 && std::isfinite(range), ConfigError,
              op << ": the data range must be positive and finite, got " << range);
}

/// Separable Gaussian filter in place with scipy.ndimage's 'reflect' border (d c b a | a b c d).
template <int Rank>
void gaussian_filter_reflect(std::vector<double>& v, const std::array<Index, Rank>& ext, const std::vector<double>& taps) {
  const int rad = static_cast<int>(taps.size() / 2);
  std::vector<double> line, out;
  Index stride = 1;
  for (int d = 0; d < Rank; ++d) {
    const Index n = ext[d];
    const Index total = static_cast<Index>(v.size());
    line.resize(n);
    out.resize(n);
    for (Index base = 0; base < total; ++base) {
      if ((base / stride) % n != 0) continue;  // one line per start index
      for (Index i = 0; i < n; ++i) line[i] = v[base + i * stride];
      for (Index i = 0; i < n; ++i) {
        double acc = 0;
        for (int j = -rad; j <= rad; ++j) {
          Index k = i + j;
          while (k < 0 || k >= n) k = k < 0 ? -k - 1 : 2 * n - k - 1;
          acc += taps[j + rad] * line[k];
        }
        out[i] = acc;
      }
      for (Index i = 0; i < n; ++i) v[base + i * stride] = out[i];
    }
    stride *= n;
  }
}

}  // namespace detail

/// Mean squared error, inside the mask when given.
template <class T, int Rank, class M = std::uint8_t>
double mse(const Image<T, Rank>& a, const Image<T, Rank>& b, const nondeduced_t<Image<M, Rank>>* mask = nullptr) {
  detail::check_inputs<T, Rank, M>("mse", a, b, mask);
  double s = 0, n = 0;
  for (Index i = 0; i < a.size(); ++i) {
    if (mask && mask->data()[i] == M(0)) continue;
    const double d = double(a.data()[i]) - double(b.data()[i]);
    s += d * d;
    n += 1;
  }
  return s / n;
}

/// Peak signal-to-noise ratio in dB for the given data range; +inf for identical images.
template <class T, int Rank, class M = std::uint8_t>
double psnr(const Image<T, Rank>& a, const Image<T, Rank>& b, double data_range,
            const nondeduced_t<Image<M, Rank>>* mask = nullptr) {
  detail::check_range("psnr", data_range);
  const double e = mse<T, Rank, M>(a, b, mask);
  if (e == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(data_range * data_range / e);
}

class SsimOptions {
 public:
  explicit SsimOptions(double data_range) : range_(data_range) {}
  SsimOptions& sigma(double v) { sigma_ = v; return *this; }
  SsimOptions& truncate(double v) { truncate_ = v; return *this; }
  SsimOptions& k1(double v) { k1_ = v; return *this; }
  SsimOptions& k2(double v) { k2_ = v; return *this; }
  double data_range() const { return range_; }
  double sigma() const { return sigma_; }
  double truncate() const { return truncate_; }
  double k1() const { return k1_; }
  double k2() const { return k2_; }
  int radius() const { return static_cast<int>(truncate_ * sigma_ + 0.5); }

 private:
  double range_, sigma_ = 1.5, truncate_ = 3.5, k1_ = 0.01, k2_ = 0.03;
};

/// Mean windowed SSIM (scikit-image's Gaussian-weighted form), inside the mask when given.
template <class T, int Rank, class M = std::uint8_t>
double ssim(const Image<T, Rank>& a, const Image<T, Rank>& b, const SsimOptions& o,
            const nondeduced_t<Image<M, Rank>>* mask = nullptr) {
  detail::check_range("ssim", o.data_range());
  DICYC_CHECK(o.sigma() > 0 && o.k1() > 0 && o.k2() > 0, ConfigError,
              "ssim: sigma, K1 and K2 must be positive, got " << o.sigma() << ", " << o.k1() << ", " << o.k2());
  detail::check_inputs<T, Rank, M>("ssim", a, b, mask);
  const int rad = o.radius();
  const Index win = 2 * rad + 1;
  std::array<Index, Rank> ext;
  for (int d = 0; d < Rank; ++d) {
    ext[d] = a.dimension(d);
    DICYC_CHECK(ext[d] >= win, ShapeError,
                "ssim: the " << win << "-tap window exceeds the image extent " << shape_str(a.dimensions()));
  }
  std::vector<double> taps;
  double s = 0;
  for (int j = -rad; j <= rad; ++j) {
    taps.push_back(std::exp(-0.5 * j * j / (o.sigma() * o.sigma())));
    s += taps.back();
  }
  for (double& t : taps) t /= s;
  const Index n = a.size();
  std::vector<double> ux(n), uy(n), uxx(n), uyy(n), uxy(n);
  for (Index i = 0; i < n; ++i) {
    const double x = double(a.data()[i]), y = double(b.data()[i]);
    ux[i] = x;
    uy[i] = y;
    uxx[i] = x * x;
    uyy[i] = y * y;
    uxy[i] = x * y;
  }
  for (auto* v : {&ux, &uy, &uxx, &uyy, &uxy}) detail::gaussian_filter_reflect<Rank>(*v, ext, taps);
  const double c1 = (o.k1() * o.data_range()) * (o.k1() * o.data_range());
  const double c2 = (o.k2() * o.data_range()) * (o.k2() * o.data_range());
  double sum = 0, cnt = 0;
  for (Index i = 0; i < n; ++i) {
    Index rest = i;
    bool inside = true;
    for (int d = 0; d < Rank; ++d) {
      const Index p = rest % ext[d];
      rest /= ext[d];
      inside = inside && p >= rad && p < ext[d] - rad;
    }
    if (!inside || (mask && mask->data()[i] == M(0))) continue;
    const double vx = uxx[i] - ux[i] * ux[i], vy = uyy[i] - uy[i] * uy[i], vxy = uxy[i] - ux[i] * uy[i];
    const double num = (2 * ux[i] * uy[i] + c1) * (2 * vxy + c2);
    const double den = (ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2);
    sum += num / den;
    cnt += 1;
  }
  DICYC_CHECK(cnt > 0, ShapeError,
              "ssim: no masked voxel lies at least " << rad << " voxels from the border, where the SSIM map is defined");
  return sum / cnt;
}

/// SSIM from the global statistics of the two images (population moments), inside the mask.
template <class T, int Rank, class M = std::uint8_t>
double global_ssim(const Image<T, Rank>& a, const Image<T, Rank>& b, double data_range, double k1 = 0.01,
                   double k2 = 0.03, const nondeduced_t<Image<M, Rank>>* mask = nullptr) {
  detail::check_range("global_ssim", data_range);
  detail::check_inputs<T, Rank, M>("global_ssim", a, b, mask);
  double n = 0, mx = 0, my = 0;
  for (Index i = 0; i < a.size(); ++i) {
    if (mask && mask->data()[i] == M(0)) continue;
    mx += double(a.data()[i]);
    my += double(b.data()[i]);
    n += 1;
  }
  mx /= n;
  my /= n;
  double vx = 0, vy = 0, vxy = 0;
  for (Index i = 0; i < a.size(); ++i) {
    if (mask && mask->data()[i] == M(0)) continue;
    const double x = double(a.data()[i]) - mx, y = double(b.data()[i]) - my;
    vx += x * x;
    vy += y * y;
    vxy += x * y;
  }
  vx /= n;
  vy /= n;
  vxy /= n;
  const double c1 = (k1 * data_range) * (k1 * data_range), c2 = (k2 * data_range) * (k2 * data_range);
  return (2 * mx * my + c1) * (2 * vxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2));
}

}  // namespace dicyc::eval
