// The held-out experiment's pieces (examples/protocol.cpp): the deformation fraction alpha on
// inputs whose answer is known, the slab split and its gap, and the contrast map.
#define BOOST_TEST_MODULE heldout
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <vector>

#include "dicyc/data/contrast.hpp"
#include "dicyc/eval/deformation_fraction.hpp"
#include "support/test_util.hpp"

using namespace dicyc;
using dt::expect_error;
using Dev = Eigen::DefaultDevice;

namespace {
constexpr Index W = 96, H = 112;

/// A head-like phantom in [-1, 1]: an ellipse with inner blobs of several intensities and edges.
std::vector<float> phantom() {
  std::vector<float> v(static_cast<std::size_t>(W * H));
  for (Index y = 0; y < H; ++y)
    for (Index x = 0; x < W; ++x) {
      const double u = (x + 0.5) / W * 2 - 1, w = (y + 0.5) / H * 2 - 1;
      double val = -1;
      if (u * u / 0.7 + w * w / 0.85 < 1) val = 0.2;
      if ((u - 0.25) * (u - 0.25) + (w + 0.2) * (w + 0.2) < 0.04) val = 0.8;
      if ((u + 0.3) * (u + 0.3) / 0.02 + (w - 0.1) * (w - 0.1) / 0.12 < 1) val = -0.5;
      if (std::abs(u) < 0.05 && w > -0.5 && w < 0.6) val = 0.6;
      val += 0.1 * std::sin(9 * u) * std::cos(7 * w);
      v[static_cast<std::size_t>(x + W * y)] = float(val);
    }
  return v;
}

std::vector<float> warped(core::Context<Dev>& ctx, const tps::Deformation<2>& d, const std::vector<float>& in) {
  std::vector<float> out(in.size());
  ConstTensorMap<float, 4> im(in.data(), 1, W, H, 1);
  TensorMap<float, 4> om(out.data(), 1, W, H, 1);
  d.apply<float>(ctx, im, om);
  return out;
}

eval::Image<float, 2> view(const std::vector<float>& v) { return eval::Image<float, 2>(v.data(), W, H); }

tps::Deformation<2> domain() {
  return tps::simulate_deformation<2>(tps::DeformOptions().control(4).amplitude(0.06), 7919 + 1);
}
}  // namespace

BOOST_AUTO_TEST_CASE(alpha_is_zero_one_and_a_half_on_known_warps) {
  core::Context<Dev> ctx;
  const auto g = phantom();
  const auto T = domain();
  for (auto m : {eval::AlphaMeasure::Nmi, eval::AlphaMeasure::Ssim}) {
    const auto o = eval::AlphaOptions().measure(m);
    const auto a0 = eval::deformation_fraction<2>(ctx, T, view(g), view(g), o);
    const auto w1 = warped(ctx, T, g);
    const auto a1 = eval::deformation_fraction<2>(ctx, T, view(g), view(w1), o);
    const auto wh = warped(ctx, eval::scaled_deformation(T, 0.5), g);
    const auto ah = eval::deformation_fraction<2>(ctx, T, view(g), view(wh), o);
    BOOST_TEST_INFO("measure " << int(m) << ": alpha " << a0.alpha << ", " << a1.alpha << ", " << ah.alpha);
    BOOST_CHECK_SMALL(a0.alpha, 0.05);
    BOOST_CHECK_SMALL(a1.alpha - 1.0, 0.05);
    BOOST_CHECK_SMALL(ah.alpha - 0.5, 0.05);
    BOOST_CHECK_EQUAL(a0.grid.size(), 31u);  // -0.25 .. 1.25 in steps of 0.05
  }
}

BOOST_AUTO_TEST_CASE(alpha_with_nmi_ignores_the_output_contrast) {
  // A synthesized image has another intensity mapping than its ground truth: NMI does not care.
  core::Context<Dev> ctx;
  const auto g = phantom();
  const auto T = domain();
  auto w = warped(ctx, eval::scaled_deformation(T, 0.75), g);
  for (auto& v : w) v = 1.0f - 2.0f * v * v;  // non-monotonic contrast change
  const auto r = eval::deformation_fraction<2>(ctx, T, view(g), view(w));
  BOOST_CHECK_SMALL(r.alpha - 0.75, 0.05);
}

BOOST_AUTO_TEST_CASE(alpha_scaled_deformation_ends_are_the_identity_and_the_domain_warp) {
  const auto T = tps::simulate_deformation<2>(tps::DeformOptions().control(4).amplitude(0.06).rotation(5).translation(0.02), 3);
  const Eigen::Vector2d p(0.3, -0.4);
  BOOST_CHECK_SMALL((eval::scaled_deformation(T, 0.0).map(p) - p).norm(), 1e-9);
  BOOST_CHECK_SMALL((eval::scaled_deformation(T, 1.0).map(p) - T.map(p)).norm(), 1e-9);
}

BOOST_AUTO_TEST_CASE(alpha_rejects_bad_options_and_shapes) {
  core::Context<Dev> ctx;
  const auto g = phantom();
  std::vector<float> small(static_cast<std::size_t>(W * (H - 1)), 0.0f);
  expect_error<ShapeError>([&] { eval::deformation_fraction<2>(ctx, domain(), view(g), eval::Image<float, 2>(small.data(), W, H - 1)); },
                           "same shape");
  expect_error<ConfigError>([&] { eval::deformation_fraction<2>(ctx, domain(), view(g), view(g), eval::AlphaOptions().range(1, 0)); },
                            "lo < hi");
}

BOOST_AUTO_TEST_CASE(slab_split_keeps_the_gap) {
  const auto s = data::SlabSplit::make(30, 150, 84, 20, 5);
  BOOST_CHECK_EQUAL(s.test.size(), 20u);
  BOOST_CHECK_EQUAL(s.test.front(), 84);
  BOOST_CHECK_EQUAL(s.test.back(), 103);
  for (int t : s.train)
    for (int z : s.test) BOOST_CHECK_GT(std::abs(t - z), 5);
  // 30..78 and 109..150: every slice outside the slab and its gap
  BOOST_CHECK_EQUAL(s.train.size(), std::size_t((78 - 30 + 1) + (150 - 109 + 1)));
  BOOST_CHECK_EQUAL(s.train[48], 78);
  BOOST_CHECK_EQUAL(s.train[49], 109);
  // check() catches a split that someone edited by hand
  auto bad = s;
  bad.train.push_back(105);
  expect_error<ConfigError>([&] { bad.check(); }, "training slice 105 lies within 5 slices of test slice");
  expect_error<ConfigError>([&] { data::SlabSplit::make(30, 50, 45, 10, 5); }, "must lie inside");
  expect_error<ConfigError>([&] { data::SlabSplit::make(30, 50, 30, 22, 0); }, "must lie inside");
  expect_error<ConfigError>([&] { data::SlabSplit::make(30, 40, 32, 5, 10); }, "no training slice");
}

BOOST_AUTO_TEST_CASE(contrast_map_recovers_a_smooth_lookup_and_holds_its_ends) {
  // target = f(source) + noise, with f non-monotonic: the fitted map predicts f.
  std::vector<double> src, tgt;
  core::Rng rng(5);
  auto f = [](double v) { return 100 + 80 * std::sin(v / 40.0); };
  for (int i = 0; i < 20000; ++i) {
    const double v = std::floor(rng.uniform(10, 200));
    src.push_back(v);
    tgt.push_back(f(v) + rng.normal() * 5);
  }
  const auto m = data::ContrastMap::fit(src, tgt, 191, 1.0);  // one bin per integer level
  for (double v : {12.0, 50.0, 99.0, 150.0, 198.0}) BOOST_CHECK_SMALL(m(v) - f(v), 2.0);
  BOOST_CHECK_EQUAL(m(0.0), m(10.0));     // below the fitted range: the lowest knot
  BOOST_CHECK_EQUAL(m(1000.0), m(199.9)); // above: the highest
  const auto pred = m.apply(src);
  std::vector<double> truth;
  for (double v : src) truth.push_back(f(v));
  BOOST_CHECK_GT(data::pearson(pred, truth), 0.999);
  expect_error<NumericError>([&] { data::ContrastMap::fit(std::vector<double>(10, 3.0), std::vector<double>(10, 1.0)); }, "constant");
  expect_error<ShapeError>([&] { data::ContrastMap::fit(src, std::vector<double>(3, 1.0)); }, "same number of voxels");
  expect_error<NumericError>([&] { data::pearson(std::vector<double>(5, 1.0), std::vector<double>(5, 2.0)); }, "constant");
}
