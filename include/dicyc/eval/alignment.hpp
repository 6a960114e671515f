// dicyc/eval/alignment.hpp -- alignment between a source and a synthesized image when there is
// no ground truth: hard-histogram NMI and the Dice overlap of foreground masks.
//
// hard_nmi(a, b, bins) = (H(A) + H(B)) / H(A, B) from a bins x bins joint histogram over
// [min, max] of each image (inside the mask): scikit-image's normalized_mutual_information,
// including numpy's binning (edges from linspace, right-closed last bin, a +-0.5 range for a
// constant image). Values in [1, 2]; 2 for identical images. With NmiForm::Arithmetic it returns
// 2 I / (H(A) + H(B)) = 2 - 2 / Y instead, in [0, 1], 1 for identical images (the soft loss's form).
// dice(ma, mb) = 2 |A n B| / (|A| + |B|) of two masks (non-zero = foreground), and
// foreground(x, threshold) the mask x > threshold.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "dicyc/eval/metrics.hpp"
#include "dicyc/loss/nmi.hpp"

namespace dicyc::eval {

namespace detail {
/// numpy's histogram edges: linspace(lo, hi, bins + 1), with numpy's +-0.5 for lo == hi.
inline std::vector<double> histogram_edges(double lo, double hi, int bins) {
  if (lo == hi) {
    lo -= 0.5;
    hi += 0.5;
  }
  std::vector<double> e(static_cast<std::size_t>(bins) + 1);
  const double step = (hi - lo) / bins;
  for (int i = 0; i <= bins; ++i) e[i] = i * step + lo;
  e[bins] = hi;
  return e;
}
inline int histogram_bin(const std::vector<double>& e, double v) {
  const int bins = static_cast<int>(e.size()) - 1;
  if (v == e[bins]) return bins - 1;
  return static_cast<int>(std::upper_bound(e.begin(), e.end(), v) - e.begin()) - 1;
}
inline double entropy_of_counts(const std::vector<double>& c) {
  double total = 0, h = 0;
  for (double v : c) total += v;
  for (double v : c)
    if (v > 0) h -= (v / total) * std::log(v / total);
  return h;
}
}  // namespace detail

using loss::NmiForm;

template <class T, int Rank, class M = std::uint8_t>
double hard_nmi(const Image<T, Rank>& a, const Image<T, Rank>& b, int bins = 100, NmiForm form = NmiForm::Studholme,
                const nondeduced_t<Image<M, Rank>>* mask = nullptr) {
  DICYC_CHECK(bins >= 2 && bins <= 4096, ConfigError, "hard_nmi: bins must be in [2, 4096], got " << bins);
  detail::check_inputs<T, Rank, M>("hard_nmi", a, b, mask);
  double alo = INFINITY, ahi = -INFINITY, blo = INFINITY, bhi = -INFINITY;
  for (Index i = 0; i < a.size(); ++i) {
    if (mask && mask->data()[i] == M(0)) continue;
    alo = std::min(alo, double(a.data()[i]));
    ahi = std::max(ahi, double(a.data()[i]));
    blo = std::min(blo, double(b.data()[i]));
    bhi = std::max(bhi, double(b.data()[i]));
  }
  const auto ea = detail::histogram_edges(alo, ahi, bins), eb = detail::histogram_edges(blo, bhi, bins);
  std::vector<double> joint(static_cast<std::size_t>(bins) * bins, 0.0), ha(bins, 0.0), hb(bins, 0.0);
  for (Index i = 0; i < a.size(); ++i) {
    if (mask && mask->data()[i] == M(0)) continue;
    const int ka = detail::histogram_bin(ea, double(a.data()[i]));
    const int kb = detail::histogram_bin(eb, double(b.data()[i]));
    joint[static_cast<std::size_t>(ka) * bins + kb] += 1;
    ha[ka] += 1;
    hb[kb] += 1;
  }
  const double h_ab = detail::entropy_of_counts(joint);
  DICYC_CHECK(h_ab > 0, NumericError,
              "hard_nmi: both images are constant" << (mask ? " inside the mask" : "")
                                                   << "; the joint entropy is 0 and NMI is undefined");
  const double y = (detail::entropy_of_counts(ha) + detail::entropy_of_counts(hb)) / h_ab;
  return form == NmiForm::Studholme ? y : 2.0 - 2.0 / y;
}

/// The mask x > threshold, as 0/1 bytes.
template <class T, int Rank>
Eigen::Tensor<std::uint8_t, Rank> foreground(const Image<T, Rank>& x, double threshold) {
  Eigen::Tensor<std::uint8_t, Rank> m(x.dimensions());
  for (Index i = 0; i < x.size(); ++i) m.data()[i] = double(x.data()[i]) > threshold ? 1 : 0;
  return m;
}

/// Dice overlap of two masks; both empty is an error (the overlap is undefined).
template <class M, int Rank>
double dice(const Image<M, Rank>& a, const Image<M, Rank>& b) {
  DICYC_CHECK(a.dimensions() == b.dimensions(), ShapeError,
              "dice: the masks must have the same shape, but got " << shape_str(a.dimensions()) << " and "
                                                                   << shape_str(b.dimensions()));
  double na = 0, nb = 0, both = 0;
  for (Index i = 0; i < a.size(); ++i) {
    const bool x = a.data()[i] != M(0), y = b.data()[i] != M(0);
    na += x;
    nb += y;
    both += x && y;
  }
  DICYC_CHECK(na + nb > 0, NumericError, "dice: both masks are empty; the overlap is undefined");
  return 2 * both / (na + nb);
}

}  // namespace dicyc::eval
