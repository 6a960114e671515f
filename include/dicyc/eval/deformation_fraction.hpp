// dicyc/eval/deformation_fraction.hpp -- how much of a known domain deformation a synthesized
// image carries ("alpha").
//
// Given the domain's deformation T (a tps::Deformation), the aligned ground truth g and a model's
// output y, alpha is the a in [lo, hi] whose scaled warp T_a applied to g best matches y:
//   T_a: control displacements a * d and affine part I + a (A - I), so T_0 is the identity and
//        T_1 = T;
//   score(a) = similarity(y, g o T_a): hard NMI (Studholme, `bins` bins; robust to the output's
//        contrast differing from the ground truth's) or SSIM (data range `range`);
//   a grid search over [lo, hi] in steps of `step`, then a golden-section refinement on the
//   bracket [best - step, best + step] (clipped to [lo, hi]).
// Alpha near 0: the output is aligned with its source; near 1: it copies the deformation.
//   const auto r = eval::deformation_fraction<2>(ctx, domain, aligned, output);   // r.alpha
// For blurry or partly aligned outputs the score is flat near its peak and estimators disagree:
// alpha_interval(r, tol) gives the range of grid alphas whose score lies within tol of the grid's
// score range (best - worst) of the best, a measure of how sure the estimate is.
#pragma once

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "dicyc/eval/alignment.hpp"
#include "dicyc/eval/metrics.hpp"
#include "dicyc/tps/deform.hpp"

namespace dicyc::eval {

enum class AlphaMeasure { Nmi, Ssim };

class AlphaOptions {
 public:
  AlphaOptions& range(double lo, double hi) { lo_ = lo; hi_ = hi; return *this; }
  AlphaOptions& step(double v) { step_ = v; return *this; }
  AlphaOptions& measure(AlphaMeasure m) { measure_ = m; return *this; }
  AlphaOptions& bins(int v) { bins_ = v; return *this; }
  AlphaOptions& data_range(double v) { data_range_ = v; return *this; }
  AlphaOptions& refine_iterations(int v) { refine_ = v; return *this; }
  double lo() const { return lo_; }
  double hi() const { return hi_; }
  double step() const { return step_; }
  AlphaMeasure measure() const { return measure_; }
  int bins() const { return bins_; }
  double data_range() const { return data_range_; }
  int refine_iterations() const { return refine_; }
  void validate() const {
    DICYC_CHECK(std::isfinite(lo_) && std::isfinite(hi_) && lo_ < hi_ && step_ > 0 && step_ <= hi_ - lo_ && refine_ >= 0,
                ConfigError,
                "deformation_fraction: needs lo < hi, 0 < step <= hi - lo and refine_iterations >= 0, got ["
                    << lo_ << ", " << hi_ << "], step " << step_ << ", " << refine_);
  }

 private:
  double lo_ = -0.25, hi_ = 1.25, step_ = 0.05;
  AlphaMeasure measure_ = AlphaMeasure::Nmi;
  int bins_ = 32;
  double data_range_ = 2.0;
  int refine_ = 24;
};

struct AlphaResult {
  double alpha = 0;                 // the best scale
  double score = 0;                 // the similarity there
  std::vector<double> grid, scores; // the grid search
};

/// [lo, hi]: the smallest and largest grid alphas whose score is at least best - tol (best - worst),
/// with the refined alpha inside. tol in [0, 1].
inline std::pair<double, double> alpha_interval(const AlphaResult& r, double tol = 0.05) {
  DICYC_CHECK(!r.grid.empty() && r.grid.size() == r.scores.size() && tol >= 0 && tol <= 1, ConfigError,
              "alpha_interval: needs a grid search's result and a tolerance in [0, 1]");
  const double best = std::max(r.score, *std::max_element(r.scores.begin(), r.scores.end()));
  const double worst = *std::min_element(r.scores.begin(), r.scores.end());
  const double cut = best - tol * (best - worst);
  double lo = r.alpha, hi = r.alpha;
  for (std::size_t i = 0; i < r.grid.size(); ++i)
    if (r.scores[i] >= cut) {
      lo = std::min(lo, r.grid[i]);
      hi = std::max(hi, r.grid[i]);
    }
  return {lo, hi};
}

/// T scaled by a: displacements a d, affine I + a (A - I).
template <int Dim>
tps::Deformation<Dim> scaled_deformation(const tps::Deformation<Dim>& t, double a) {
  typename tps::Deformation<Dim>::Affine A = t.affine();
  typename tps::Deformation<Dim>::Affine I;
  I.setZero();
  I.template leftCols<Dim>().setIdentity();
  return tps::Deformation<Dim>(t.control(), a * t.control_displacements(), I + a * (A - I));
}

template <int Dim, class Device>
AlphaResult deformation_fraction(core::Context<Device>& ctx, const tps::Deformation<Dim>& domain,
                                 const Image<float, Dim>& aligned, const Image<float, Dim>& output,
                                 const AlphaOptions& o = {}) {
  o.validate();
  DICYC_CHECK(aligned.dimensions() == output.dimensions(), ShapeError,
              "deformation_fraction: the ground truth and the output must have the same shape, got "
                  << shape_str(aligned.dimensions()) << " and " << shape_str(output.dimensions()));
  Shape<Dim + 2> s;
  s[0] = 1;
  for (int d = 0; d < Dim; ++d) s[d + 1] = aligned.dimension(d);
  s[Dim + 1] = 1;
  const ConstTensorMap<float, Dim + 2> g(aligned.data(), s);
  std::vector<float> w(static_cast<std::size_t>(aligned.size()));
  auto score = [&](double a) {
    TensorMap<float, Dim + 2> wm(w.data(), s);
    scaled_deformation(domain, a).template apply<float>(ctx, g, wm);
    const Image<float, Dim> wi(w.data(), aligned.dimensions());
    return o.measure() == AlphaMeasure::Nmi ? hard_nmi(output, wi, o.bins())
                                            : ssim(output, wi, SsimOptions(o.data_range()));
  };
  AlphaResult r;
  const int n = int(std::floor((o.hi() - o.lo()) / o.step() + 1e-9)) + 1;
  int best = 0;
  for (int i = 0; i < n; ++i) {
    const double a = o.lo() + i * o.step();
    r.grid.push_back(a);
    r.scores.push_back(score(a));
    if (r.scores.back() > r.scores[static_cast<std::size_t>(best)]) best = i;
  }
  double lo = std::max(o.lo(), r.grid[static_cast<std::size_t>(best)] - o.step());
  double hi = std::min(o.hi(), r.grid[static_cast<std::size_t>(best)] + o.step());
  r.alpha = r.grid[static_cast<std::size_t>(best)];
  r.score = r.scores[static_cast<std::size_t>(best)];
  const double phi = 0.5 * (std::sqrt(5.0) - 1.0);
  double x1 = hi - phi * (hi - lo), x2 = lo + phi * (hi - lo);
  double f1 = o.refine_iterations() > 0 ? score(x1) : 0, f2 = o.refine_iterations() > 0 ? score(x2) : 0;
  for (int it = 0; it < o.refine_iterations(); ++it) {
    if (f1 >= f2) {
      hi = x2;
      x2 = x1;
      f2 = f1;
      x1 = hi - phi * (hi - lo);
      f1 = score(x1);
    } else {
      lo = x1;
      x1 = x2;
      f1 = f2;
      x2 = lo + phi * (hi - lo);
      f2 = score(x2);
    }
  }
  if (o.refine_iterations() > 0) {
    const double a = f1 >= f2 ? x1 : x2, f = std::max(f1, f2);
    if (f >= r.score) {  // the refinement only replaces the grid's best with a better point
      r.alpha = a;
      r.score = f;
    }
  }
  return r;
}

}  // namespace dicyc::eval
