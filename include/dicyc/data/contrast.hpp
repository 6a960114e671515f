// dicyc/data/contrast.hpp -- a synthetic contrast of real anatomy, and the held-out split by slice.
//
// ContrastMap: a smoothed lookup of the conditional mean of a target image given a source image's
// intensity, fitted on one registered pair (e.g. the ITK PD slice against ch2's axial slice 94) and
// then applied to every voxel of the source volume, giving a second contrast of the same anatomy:
//   const auto m = data::ContrastMap::fit(ch2_slice94, pd_slice);      // values, same length
//   const double r = data::pearson(m.apply(ch2_slice94), pd_slice);      // how well it predicts
//   auto pd_like = m.apply(ch2_volume);
// The source range [min, max] of the fitting pair is cut into `bins` equal bins; the target's mean
// in each occupied bin is smoothed over neighbouring bins with a Gaussian of `sigma` bins, weighted
// by the bins' counts (a Nadaraya-Watson regression); between occupied bins the lookup is linear,
// and outside the fitted range it holds the end values (a source intensity the fitting slice never
// showed gets the nearest one it did).
//
// SlabSplit: the test set is a contiguous slab of axial slices [first, first + count); training
// slices are those of [lo, hi] more than `gap` slices away from it. check() refuses any training
// slice within the gap (it is what the held-out experiment relies on).
#pragma once

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "dicyc/core/error.hpp"

namespace dicyc::data {

/// Pearson correlation of two equally long sequences (double accumulation).
template <class A, class B>
double pearson(const std::vector<A>& a, const std::vector<B>& b) {
  DICYC_CHECK(a.size() == b.size() && a.size() >= 2, ShapeError,
              "pearson: needs two sequences of the same length (at least 2), got " << a.size() << " and " << b.size());
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    ma += double(a[i]);
    mb += double(b[i]);
  }
  ma /= double(a.size());
  mb /= double(b.size());
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = double(a[i]) - ma, y = double(b[i]) - mb;
    sab += x * y;
    saa += x * x;
    sbb += y * y;
  }
  DICYC_CHECK(saa > 0 && sbb > 0, NumericError, "pearson: a constant sequence has no correlation");
  return sab / std::sqrt(saa * sbb);
}

class ContrastMap {
 public:
  /// Fits target ~ E[target | source] on one registered pair of images (values in the same order).
  template <class A, class B>
  static ContrastMap fit(const std::vector<A>& source, const std::vector<B>& target, int bins = 256, double sigma = 2.0) {
    DICYC_CHECK(source.size() == target.size() && !source.empty(), ShapeError,
                "ContrastMap: the source and target images must have the same number of voxels, got "
                    << source.size() << " and " << target.size());
    DICYC_CHECK(bins >= 2 && bins <= 65536 && sigma >= 0 && std::isfinite(sigma), ConfigError,
                "ContrastMap: needs 2 to 65536 bins and a finite sigma >= 0, got " << bins << " and " << sigma);
    ContrastMap m;
    m.lo_ = double(*std::min_element(source.begin(), source.end()));
    m.hi_ = double(*std::max_element(source.begin(), source.end()));
    DICYC_CHECK(std::isfinite(m.lo_) && std::isfinite(m.hi_) && m.hi_ > m.lo_, NumericError,
                "ContrastMap: the source image is constant or not finite; it cannot predict anything");
    m.bins_ = bins;
    std::vector<double> count(static_cast<std::size_t>(bins), 0.0), sum(count.size(), 0.0);
    for (std::size_t i = 0; i < source.size(); ++i) {
      const double t = double(target[i]);
      DICYC_CHECK(std::isfinite(t), NumericError, "ContrastMap: the target image has a non-finite value");
      const auto k = static_cast<std::size_t>(m.bin(double(source[i])));
      count[k] += 1;
      sum[k] += t;
    }
    const int radius = sigma > 0 ? int(std::ceil(4 * sigma)) : 0;
    for (int k = 0; k < bins; ++k) {
      if (count[static_cast<std::size_t>(k)] == 0) continue;
      double num = 0, den = 0;
      for (int j = std::max(0, k - radius); j <= std::min(bins - 1, k + radius); ++j) {
        const double w = sigma > 0 ? std::exp(-0.5 * (j - k) * (j - k) / (sigma * sigma)) : 1.0;
        num += w * sum[static_cast<std::size_t>(j)];
        den += w * count[static_cast<std::size_t>(j)];
      }
      m.knot_x_.push_back(double(k));
      m.knot_y_.push_back(num / den);
    }
    return m;
  }

  /// The mapped value of one source intensity.
  double operator()(double v) const {
    DICYC_CHECK(!knot_x_.empty(), ConfigError, "ContrastMap: not fitted");
    const double p = (v - lo_) / (hi_ - lo_) * bins_ - 0.5;  // position in bin units (bin centres at k)
    if (!(p > knot_x_.front())) return knot_y_.front();
    if (p >= knot_x_.back()) return knot_y_.back();
    const auto it = std::upper_bound(knot_x_.begin(), knot_x_.end(), p);
    const std::size_t j = static_cast<std::size_t>(it - knot_x_.begin());
    const double t = (p - knot_x_[j - 1]) / (knot_x_[j] - knot_x_[j - 1]);
    return (1 - t) * knot_y_[j - 1] + t * knot_y_[j];
  }

  template <class T>
  std::vector<float> apply(const std::vector<T>& v) const {
    std::vector<float> out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = float((*this)(double(v[i])));
    return out;
  }

  int occupied_bins() const { return int(knot_x_.size()); }
  double source_min() const { return lo_; }
  double source_max() const { return hi_; }

 private:
  int bin(double v) const { return std::clamp(int((v - lo_) / (hi_ - lo_) * bins_), 0, bins_ - 1); }
  double lo_ = 0, hi_ = 1;
  int bins_ = 0;
  std::vector<double> knot_x_, knot_y_;
};

/// The held-out split by slice: a test slab and the training slices outside it and its gap.
struct SlabSplit {
  std::vector<int> train, test;
  int gap = 0;

  /// Test slab [first, first + count); training: [lo, hi] minus every slice within `gap` of the slab.
  static SlabSplit make(int lo, int hi, int first, int count, int gap) {
    DICYC_CHECK(lo <= hi && count >= 1 && gap >= 0, ConfigError,
                "SlabSplit: needs lo <= hi, a test slab of at least 1 slice and a gap >= 0, got [" << lo << ", " << hi
                                                                                                  << "], " << count << ", " << gap);
    DICYC_CHECK(first >= lo && first + count - 1 <= hi, ConfigError,
                "SlabSplit: the test slab [" << first << ", " << first + count - 1 << "] must lie inside the slices [" << lo
                                             << ", " << hi << "]");
    SlabSplit s;
    s.gap = gap;
    for (int z = first; z < first + count; ++z) s.test.push_back(z);
    for (int z = lo; z <= hi; ++z)
      if (z < first - gap || z > first + count - 1 + gap) s.train.push_back(z);
    DICYC_CHECK(!s.train.empty(), ConfigError,
                "SlabSplit: no training slice is left outside the test slab and its gap of " << gap << " slices");
    s.check();
    return s;
  }

  /// Throws when a training slice is a test slice or lies within `gap` slices of one.
  void check() const {
    for (int t : train)
      for (int z : test)
        DICYC_CHECK(std::abs(t - z) > gap, ConfigError,
                    "SlabSplit: training slice " << t << " lies within " << gap << " slices of test slice " << z
                                                 << "; the test set would not be held out");
  }
};

}  // namespace dicyc::data
