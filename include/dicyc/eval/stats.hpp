// dicyc/eval/stats.hpp -- summary statistics of per-image scores, and the paired t-test between
// two methods' per-volume scores.
//
// mean(v), sample_sd(v): the mean and the sample (n - 1) standard deviation (0 for fewer than 2
// values; mean of nothing is NaN).
// ttest_rel(a, b): d_i = a_i - b_i, t = mean(d) / (sd(d) / sqrt(n)) with the sample (n - 1)
// standard deviation, df = n - 1, two-sided p = 2 P(T_df > |t|) from Boost.Math's Student-t
// distribution. These are the numbers of scipy.stats.ttest_rel(a, b).
// Errors: fewer than 2 pairs, different lengths or non-finite scores (ShapeError / NumericError);
// differences with zero variance make t undefined (0/0) or infinite, and throw NumericError
// instead of returning NaN.
#pragma once

#include <cmath>
#include <vector>

#include <boost/math/distributions/students_t.hpp>

#include "dicyc/core/error.hpp"

namespace dicyc::eval {

inline double mean(const std::vector<double>& v) {
  if (v.empty()) return std::nan("");
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}
inline double sample_sd(const std::vector<double>& v) {
  if (v.size() < 2) return 0.0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

struct TTestResult {
  double t = 0;
  double df = 0;
  double p = 1;
  double mean_difference = 0;
};

inline TTestResult ttest_rel(const std::vector<double>& a, const std::vector<double>& b) {
  DICYC_CHECK(a.size() == b.size(), ShapeError,
              "ttest_rel: the two samples must pair up, but have " << a.size() << " and " << b.size() << " scores");
  DICYC_CHECK(a.size() >= 2, ShapeError, "ttest_rel: needs at least 2 pairs, got " << a.size());
  const double n = static_cast<double>(a.size());
  double mean = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    DICYC_CHECK(std::isfinite(a[i]) && std::isfinite(b[i]), NumericError,
                "ttest_rel: score pair " << i << " is not finite (" << a[i] << ", " << b[i] << ")");
    mean += a[i] - b[i];
  }
  mean /= n;
  double ss = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - b[i] - mean;
    ss += d * d;
  }
  const double var = ss / (n - 1);
  DICYC_CHECK(var > 0, NumericError,
              "ttest_rel: the paired differences have zero variance (all equal to " << mean
                                                                                    << "), so t is undefined");
  TTestResult r;
  r.mean_difference = mean;
  r.df = n - 1;
  r.t = mean / std::sqrt(var / n);
  const boost::math::students_t dist(r.df);
  r.p = 2.0 * boost::math::cdf(boost::math::complement(dist, std::abs(r.t)));
  return r;
}

}  // namespace dicyc::eval
