// Evaluation metrics against scikit-image and SciPy (fixtures from
// tests/fixtures/make_loss_eval_fixtures.py, on the real ITK PD/T1 slices and a ch2 crop), their
// mask semantics, and every bad-input error.
#define BOOST_TEST_MODULE eval
#include <boost/test/unit_test.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "dicyc/eval.hpp"
#include "dicyc/eval/ct_metrics.hpp"
#include "support/fixture.hpp"
#include "support/test_util.hpp"

using namespace dicyc;
using dt::expect_error;

namespace {
const dt::Fixture& fx() {
  static const dt::Fixture f("loss_eval.txt");
  return f;
}
template <int R>
eval::Image<double, R> img(const std::vector<double>& v, const std::string& shape_key) {
  const auto& s = fx()[shape_key];
  Shape<R> sh;
  Index n = 1;
  for (int d = 0; d < R; ++d) {
    sh[d] = static_cast<Index>(s.at(d));
    n *= sh[d];
  }
  BOOST_REQUIRE_EQUAL(static_cast<Index>(v.size()), n);
  return eval::Image<double, R>(v.data(), sh);
}
}  // namespace

BOOST_AUTO_TEST_CASE(ssim_mse_psnr_match_skimage_on_real_slices) {
  const auto pd = img<2>(fx()["pd2"], "pd2.shape");
  const auto t1 = img<2>(fx()["t12"], "pd2.shape");
  const auto sy = img<2>(fx()["synth2"], "pd2.shape");
  BOOST_CHECK_SMALL(eval::ssim(t1, sy, eval::SsimOptions(255.0)) - fx().scalar("ssim.t1_synth"), 1e-9);
  BOOST_CHECK_SMALL(eval::ssim(pd, t1, eval::SsimOptions(255.0)) - fx().scalar("ssim.pd_t1"), 1e-9);
  BOOST_CHECK_SMALL(eval::ssim(t1, sy, eval::SsimOptions(100.0)) - fx().scalar("ssim.t1_synth.r100"), 1e-9);
  BOOST_CHECK_CLOSE(eval::mse(t1, sy), fx().scalar("mse.t1_synth"), 1e-10);
  BOOST_CHECK_CLOSE(eval::psnr(t1, sy, 255.0), fx().scalar("psnr.t1_synth"), 1e-10);
  BOOST_CHECK_CLOSE(eval::psnr(pd, t1, 255.0), fx().scalar("psnr.pd_t1"), 1e-10);
  // float input gives the same numbers to float precision.
  const auto t1f = dt::convert<float>(fx()["t12"]);
  const auto syf = dt::convert<float>(fx()["synth2"]);
  const eval::Image<float, 2> a(t1f.data(), t1.dimensions()), b(syf.data(), t1.dimensions());
  BOOST_CHECK_SMALL(eval::ssim(a, b, eval::SsimOptions(255.0)) - fx().scalar("ssim.t1_synth"), 1e-6);
}

BOOST_AUTO_TEST_CASE(ssim_mse_psnr_match_skimage_on_ch2_volume) {
  const auto v = img<3>(fx()["vol"], "vol.shape");
  const auto n = img<3>(fx()["vnoisy"], "vol.shape");
  BOOST_CHECK_SMALL(eval::ssim(v, n, eval::SsimOptions(255.0)) - fx().scalar("ssim3.vol_noisy"), 1e-9);
  BOOST_CHECK_CLOSE(eval::mse(v, n), fx().scalar("mse3.vol_noisy"), 1e-10);
  BOOST_CHECK_CLOSE(eval::psnr(v, n, 255.0), fx().scalar("psnr3.vol_noisy"), 1e-10);
}

BOOST_AUTO_TEST_CASE(hard_nmi_matches_skimage) {
  const auto pd = img<2>(fx()["pd2"], "pd2.shape");
  const auto t1 = img<2>(fx()["t12"], "pd2.shape");
  const auto sy = img<2>(fx()["synth2"], "pd2.shape");
  BOOST_CHECK_SMALL(eval::hard_nmi(pd, t1) - fx().scalar("hnmi.pd_t1"), 1e-12);
  BOOST_CHECK_SMALL(eval::hard_nmi(t1, sy) - fx().scalar("hnmi.t1_synth"), 1e-12);
  BOOST_CHECK_SMALL(eval::hard_nmi(pd, t1, 32) - fx().scalar("hnmi.pd_t1.b32"), 1e-12);
  const auto v = img<3>(fx()["vol"], "vol.shape");
  const auto n = img<3>(fx()["vnoisy"], "vol.shape");
  BOOST_CHECK_SMALL(eval::hard_nmi(v, n) - fx().scalar("hnmi3.vol_noisy"), 1e-12);
  // NMI(x, x): 2 in scikit-image's form, 1 in the arithmetic form; symmetric.
  BOOST_CHECK_CLOSE(eval::hard_nmi(t1, t1), 2.0, 1e-12);
  BOOST_CHECK_CLOSE(eval::hard_nmi(t1, t1, 100, eval::NmiForm::Arithmetic), 1.0, 1e-12);
  BOOST_CHECK_CLOSE(eval::hard_nmi(pd, t1), eval::hard_nmi(t1, pd), 1e-12);
  const double y = eval::hard_nmi(pd, t1);
  BOOST_CHECK_CLOSE(eval::hard_nmi(pd, t1, 100, eval::NmiForm::Arithmetic), 2 - 2 / y, 1e-12);
}

BOOST_AUTO_TEST_CASE(paired_ttest_matches_scipy) {
  for (const std::string k : {"tt", "tt2"}) {
    const auto r = eval::ttest_rel(fx()[k + ".a"], fx()[k + ".b"]);
    const auto& e = fx()[k + ".res"];
    BOOST_TEST_INFO(k);
    BOOST_CHECK_SMALL(r.t - e[0], 1e-6 * std::max(1.0, std::abs(e[0])));
    BOOST_CHECK_EQUAL(r.df, e[1]);
    BOOST_CHECK_SMALL(r.p - e[2], 1e-6 * std::max(1e-12, e[2]) + 1e-15);
  }
}

BOOST_AUTO_TEST_CASE(masks_restrict_the_means) {
  const auto t1 = img<2>(fx()["t12"], "pd2.shape");
  const auto sy = img<2>(fx()["synth2"], "pd2.shape");
  // An all-ones mask changes nothing.
  Eigen::Tensor<std::uint8_t, 2> ones(t1.dimensions());
  ones.setConstant(1);
  const eval::Image<std::uint8_t, 2> all(ones.data(), ones.dimensions());
  BOOST_CHECK_EQUAL(eval::mse(t1, sy, &all), eval::mse(t1, sy));
  BOOST_CHECK_EQUAL(eval::ssim(t1, sy, eval::SsimOptions(255), &all), eval::ssim(t1, sy, eval::SsimOptions(255)));
  BOOST_CHECK_EQUAL(eval::hard_nmi(t1, sy, 100, eval::NmiForm::Studholme, &all), eval::hard_nmi(t1, sy));
  // The head mask: MSE over the masked voxels, computed here directly.
  const auto head = eval::foreground(t1, 20.0);
  const eval::Image<std::uint8_t, 2> hm(head.data(), head.dimensions());
  double s = 0, n = 0;
  for (Index i = 0; i < t1.size(); ++i)
    if (head.data()[i]) {
      s += (t1.data()[i] - sy.data()[i]) * (t1.data()[i] - sy.data()[i]);
      n += 1;
    }
  BOOST_REQUIRE(n > 100 && n < t1.size());
  BOOST_CHECK_CLOSE(eval::mse(t1, sy, &hm), s / n, 1e-10);
  BOOST_CHECK_CLOSE(eval::psnr(t1, sy, 255.0, &hm), 10 * std::log10(255.0 * 255.0 / (s / n)), 1e-10);
  // Inside the head, the structure is richer than in the background: a different SSIM, still in (0, 1).
  const double sm = eval::ssim(t1, sy, eval::SsimOptions(255), &hm);
  BOOST_CHECK(sm > 0 && sm < 1 && std::abs(sm - eval::ssim(t1, sy, eval::SsimOptions(255))) > 1e-3);
}

BOOST_AUTO_TEST_CASE(global_ssim_and_dice) {
  const auto t1 = img<2>(fx()["t12"], "pd2.shape");
  const auto sy = img<2>(fx()["synth2"], "pd2.shape");
  BOOST_CHECK_CLOSE(eval::global_ssim(t1, t1, 255.0), 1.0, 1e-12);
  const double g = eval::global_ssim(t1, sy, 255.0);
  BOOST_CHECK(g > 0.9 && g < 1.0);
  BOOST_CHECK_CLOSE(g, eval::global_ssim(sy, t1, 255.0), 1e-12);
  // Two voxels, hand-computed: a = (0, 2), b = (2, 0): means 1, variances 1, covariance -1;
  // R = 1: C1 = 1e-4, C2 = 9e-4: (2 + C1)(-2 + C2) / ((2 + C1)(2 + C2)) = (-2 + C2) / (2 + C2).
  const std::vector<double> a{0, 2}, b{2, 0};
  const eval::Image<double, 2> ia(a.data(), 1, 2), ib(b.data(), 1, 2);
  BOOST_CHECK_CLOSE(eval::global_ssim(ia, ib, 1.0), (-2 + 9e-4) / (2 + 9e-4), 1e-10);
  // Dice: |A| = 3, |B| = 2, |A n B| = 1 -> 2/5.
  const std::vector<std::uint8_t> ma{1, 1, 1, 0, 0, 0}, mb{0, 0, 1, 1, 0, 0};
  const eval::Image<std::uint8_t, 2> da(ma.data(), 2, 3), db(mb.data(), 2, 3);
  BOOST_CHECK_CLOSE(eval::dice(da, db), 0.4, 1e-12);
  BOOST_CHECK_CLOSE(eval::dice(da, da), 1.0, 1e-12);
}

BOOST_AUTO_TEST_CASE(constant_images_give_numbers_or_errors_never_nan) {
  std::vector<double> c(15 * 13, 0.25), x(15 * 13);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.3 * double(i));
  const eval::Image<double, 2> ic(c.data(), 15, 13), ix(x.data(), 15, 13);
  BOOST_CHECK_CLOSE(eval::ssim(ic, ic, eval::SsimOptions(1.0)), 1.0, 1e-12);
  BOOST_CHECK(std::isfinite(eval::ssim(ic, ix, eval::SsimOptions(1.0))));
  BOOST_CHECK(std::isfinite(eval::global_ssim(ic, ix, 1.0)));
  BOOST_CHECK_CLOSE(eval::hard_nmi(ic, ix), 1.0, 1e-12);  // H(A) = 0, H(A,B) = H(B)
  expect_error<NumericError>([&] { eval::hard_nmi(ic, ic); }, "both images are constant");
  BOOST_CHECK(std::isinf(eval::psnr(ix, ix, 1.0)));
}

BOOST_AUTO_TEST_CASE(bad_input_errors) {
  std::vector<double> a(15 * 13, 1.0), b(15 * 12, 1.0), s(5 * 5, 0.0);
  a[3] = 2;
  const eval::Image<double, 2> ia(a.data(), 15, 13), ib(b.data(), 15, 12), is(s.data(), 5, 5);
  expect_error<ShapeError>([&] { eval::mse(ia, ib); }, "same shape");
  expect_error<ShapeError>([&] { eval::ssim(is, is, eval::SsimOptions(1.0)); }, "window exceeds");
  expect_error<ConfigError>([&] { eval::ssim(ia, ia, eval::SsimOptions(0.0)); }, "data range");
  expect_error<ConfigError>([&] { eval::psnr(ia, ia, -1.0); }, "data range");
  std::vector<std::uint8_t> zeros(15 * 13, 0), wrong(4, 1);
  const eval::Image<std::uint8_t, 2> mz(zeros.data(), 15, 13), mw(wrong.data(), 2, 2);
  expect_error<ShapeError>([&] { eval::mse(ia, ia, &mz); }, "mask is empty");
  expect_error<ShapeError>([&] { eval::mse(ia, ia, &mw); }, "mask of shape");
  // A mask confined to the border strip leaves no defined SSIM value.
  std::vector<std::uint8_t> edge(15 * 13, 0);
  edge[0] = 1;
  const eval::Image<std::uint8_t, 2> me(edge.data(), 15, 13);
  expect_error<ShapeError>([&] { eval::ssim(ia, ia, eval::SsimOptions(1.0), &me); }, "border");
  std::vector<double> nan = a;
  nan[7] = std::nan("");
  const eval::Image<double, 2> in(nan.data(), 15, 13);
  expect_error<NumericError>([&] { eval::mse(ia, in); }, "non-finite");
  expect_error<ShapeError>([&] { eval::ttest_rel({1.0}, {2.0}); }, "at least 2 pairs");
  expect_error<ShapeError>([&] { eval::ttest_rel({1.0, 2.0}, {2.0}); }, "pair up");
  expect_error<NumericError>([&] { eval::ttest_rel({1.0, 2.0, 3.0}, {0.5, 1.5, 2.5}); }, "zero variance");
  expect_error<NumericError>([&] { eval::dice(mz, mz); }, "both masks are empty");
  expect_error<ConfigError>([&] { eval::hard_nmi(ia, ia, 1); }, "bins");
}

// ---------------------------------------------------------------- synthetic CT (SynthRAD)
// Fixtures from tests/fixtures/make_ct_fixtures.py: SynthRAD2023's MAE/PSNR/SSIM written from its
// definitions with numpy and scikit-image, body masks with scipy.ndimage.
namespace {
const dt::Fixture& ctfx() {
  static const dt::Fixture f("ct_metrics.txt");
  return f;
}
std::vector<float> as_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }
std::vector<std::uint8_t> as_mask(const std::vector<double>& v) {
  std::vector<std::uint8_t> m(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) m[i] = v[i] != 0;
  return m;
}
std::array<Index, 3> ct_dim() {
  const auto& s = ctfx()["ct.shape"];
  return {static_cast<Index>(s[0]), static_cast<Index>(s[1]), static_cast<Index>(s[2])};
}
void check_scores(const eval::CtScores& s, const std::vector<double>& want, double tol_ssim) {
  BOOST_TEST(s.mae == want[0], boost::test_tools::tolerance(1e-9));
  BOOST_TEST(s.psnr == want[1], boost::test_tools::tolerance(1e-9));
  BOOST_TEST(std::abs(s.ssim - want[2]) < tol_ssim, "SSIM " << s.ssim << " against " << want[2]);
}
}  // namespace

BOOST_AUTO_TEST_CASE(ct_metrics_match_synthrad_definitions) {
  const auto truth = as_float(ctfx()["ct.truth"]), pred = as_float(ctfx()["ct.pred"]);
  const auto mask = as_mask(ctfx()["ct.mask"]), body = as_mask(ctfx()["ct.body"]);
  const auto d = ct_dim();
  // The fixture stores the float32 volumes' values as doubles: scored exactly as stored.
  for (const char* tag : {"2023", "2025"}) {
    const auto r = std::string(tag) == "2023" ? eval::CtRange::synthrad2023() : eval::CtRange::synthrad2025();
    check_scores(eval::ct_metrics(pred.data(), truth.data(), mask.data(), d, r), ctfx()[std::string("ct.") + tag + ".mask.scores"], 1e-9);
    check_scores(eval::ct_metrics(pred.data(), truth.data(), body.data(), d, r), ctfx()[std::string("ct.") + tag + ".body.scores"], 1e-9);
  }
  // SynthRAD's own float32 arithmetic differs from the definition by rounding only.
  const auto s = eval::ct_metrics(pred.data(), truth.data(), mask.data(), d);
  BOOST_TEST(std::abs(s.ssim - ctfx()["ct.2023.mask.scores_float32"][2]) < 1e-6);
  // One slice: a 2-D SSIM in its plane.
  const Index plane = d[0] * d[1];
  const std::vector<float> t2(truth.begin() + 6 * plane, truth.begin() + 7 * plane), p2(pred.begin() + 6 * plane, pred.begin() + 7 * plane);
  const std::vector<std::uint8_t> m2(mask.begin() + 6 * plane, mask.begin() + 7 * plane);
  check_scores(eval::ct_metrics(p2.data(), t2.data(), m2.data(), {d[0], d[1], 1}), ctfx()["ct.slice.scores"], 1e-9);
  // Identical images: MAE 0, PSNR infinite, SSIM 1.
  const auto same = eval::ct_metrics(truth.data(), truth.data(), mask.data(), d);
  BOOST_TEST(same.mae == 0.0);
  BOOST_TEST(std::isinf(same.psnr));
  BOOST_TEST(same.ssim == 1.0, boost::test_tools::tolerance(1e-12));
}

BOOST_AUTO_TEST_CASE(body_mask_matches_scipy_and_bad_inputs_are_refused) {
  const auto truth = as_float(ctfx()["ct.truth"]);
  const auto d = ct_dim();
  const auto body = eval::body_mask(truth.data(), d);
  const auto want = as_mask(ctfx()["ct.body"]);
  BOOST_TEST(body == want);
  // The enclosed air pocket is inside the body, the -2000 HU corner and the air outside are not.
  const std::vector<float> air(static_cast<std::size_t>(d[0] * d[1] * d[2]), -1000.0f);
  dt::expect_error<NumericError>([&] { eval::body_mask(air.data(), d); }, "no voxel above -500 HU");
  const std::vector<std::uint8_t> none(air.size(), 0);
  dt::expect_error<ShapeError>([&] { eval::ct_metrics(air.data(), air.data(), none.data(), d); }, "the mask is empty");
  const auto all = std::vector<std::uint8_t>(air.size(), 1);
  dt::expect_error<ConfigError>([&] { eval::ct_metrics(air.data(), air.data(), all.data(), d, {3000, -1024}); },
                                "lo < hi");
  dt::expect_error<ShapeError>([&] { eval::ct_metrics(air.data(), air.data(), all.data(), {4, 4, 4}); },
                               "at least 7 voxels");
}
