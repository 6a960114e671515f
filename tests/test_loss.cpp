// Losses: hand-computed values, finite-difference gradient checks in double (2-D and 3-D, with and
// without mask), invariants, the PyTorch reference's soft NMI (fixture), ThreadPool = Default,
// half close to float, and the errors.
#define BOOST_TEST_MODULE loss
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "dicyc/loss.hpp"
#include "support/fixture.hpp"
#include "support/test_util.hpp"

using namespace dicyc;
using dt::expect_error;

namespace {

using dt::cpu;
using dt::pool;

template <int R>
using Fn = std::function<double(const ConstTensorMap<double, R>&, const ConstTensorMap<double, R>&,
                                loss::GradTo<double, R>, loss::MaskPtr<double, R>)>;

/// Indices of the min and max of each sample (inside the mask): NMI treats them as constants, so a
/// finite difference there measures something else.
std::vector<Index> extremes(const std::vector<double>& x, Index N, const std::vector<double>* m) {
  std::vector<Index> out;
  const Index M = static_cast<Index>(x.size()) / N;
  for (Index n = 0; n < N; ++n) {
    Index lo = -1, hi = -1;
    for (Index i = n * M; i < (n + 1) * M; ++i) {
      if (m && (*m)[i] == 0) continue;
      if (lo < 0 || x[i] < x[lo]) lo = i;
      if (hi < 0 || x[i] > x[hi]) hi = i;
    }
    out.push_back(lo);
    out.push_back(hi);
  }
  return out;
}

/// Central differences of f against its analytic gradient, with respect to both inputs, weight
/// 1.7 and pre-filled gradient buffers (so the accumulation is checked too).
template <int R>
void check_grads(const std::string& what, const Shape<R>& s, std::vector<double> a, std::vector<double> b,
                 const std::vector<double>* mask, const Fn<R>& f, bool skip_extremes = false, bool check_b = true,
                 bool pointwise = true) {
  const Index n = num_elements(s);
  std::vector<double> ga = dt::random_vec<double>(n, 5), gb = dt::random_vec<double>(n, 6);
  const std::vector<double> ga0 = ga, gb0 = gb;
  const double w = 1.7;
  ConstTensorMap<double, R> am(a.data(), s), bm(b.data(), s);
  TensorMap<double, R> gam(ga.data(), s), gbm(gb.data(), s);
  ConstTensorMap<double, R> mm(mask ? mask->data() : nullptr, s);
  loss::MaskPtr<double, R> mp = mask ? &mm : nullptr;
  const double v = f(am, bm, {&gam, check_b ? &gbm : nullptr, w}, mp);
  BOOST_TEST_INFO(what);
  BOOST_REQUIRE(std::isfinite(v));
  // The value does not depend on whether gradients were asked for.
  BOOST_CHECK_EQUAL(v, f(am, bm, {}, mp));
  for (int which = 0; which < (check_b ? 2 : 1); ++which) {
    std::vector<double>& x = which ? b : a;
    const std::vector<double>& g = which ? gb : ga;
    const std::vector<double>& g0 = which ? gb0 : ga0;
    std::vector<double> an(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) an[i] = (g[i] - g0[i]) / w;
    const double scale = std::max(dt::max_abs(an), 1e-12);
    std::vector<Index> skip;
    if (skip_extremes) skip = extremes(x, s[R - 1], mask);
    const double h = 1e-6;
    int checked = 0;
    for (Index i : dt::probe_indices(n, 99 + which, 48)) {
      if (std::find(skip.begin(), skip.end(), i) != skip.end()) continue;
      const double keep = x[i];
      x[i] = keep + h;
      const double fp = f(am, bm, {}, mp);
      x[i] = keep - h;
      const double fm = f(am, bm, {}, mp);
      x[i] = keep;
      const double num = (fp - fm) / (2 * h);
      ++checked;
      if (std::abs(num - an[i]) > 2e-5 * scale) {
        BOOST_ERROR(what << ": d/d" << (which ? "b" : "a") << "[" << i << "]: analytic " << an[i] << ", numeric "
                         << num << " (gradient scale " << scale << ")");
        break;
      }
      // Pointwise losses give no gradient outside the mask (MIND's patches reach across it).
      if (pointwise && mask && (*mask)[i] == 0) BOOST_CHECK_EQUAL(an[i], 0.0);
    }
    BOOST_CHECK(checked > 10);
  }
}

std::vector<double> random_mask(Index n, std::uint64_t seed) {
  core::Rng r(seed);
  std::vector<double> m(static_cast<std::size_t>(n));
  for (auto& v : m) v = r.uniform(0, 1) < 0.7 ? 1.0 : 0.0;
  m[0] = 1;
  return m;
}

template <int Dim>
Shape<Dim + 2> small_shape(Index C = 1) {
  if constexpr (Dim == 2)
    return Shape<4>(C, 9, 8, 2);
  else
    return Shape<5>(C, 6, 5, 4, 2);
}

// A pair of correlated random images, b a smooth nonlinear function of a plus noise.
std::pair<std::vector<double>, std::vector<double>> pair_images(Index n, std::uint64_t seed) {
  auto a = dt::random_vec<double>(n, seed);
  auto e = dt::random_vec<double>(n, seed + 1);
  std::vector<double> b(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) b[i] = a[i] * a[i] - 0.5 * a[i] + 0.3 * e[i];
  return {a, b};
}

template <int Dim>
void gradient_checks_for(bool masked) {
  constexpr int R = Dim + 2;
  for (Index C : {Index(1), Index(2)}) {
    const auto s = small_shape<Dim>(C);
    const Index n = num_elements(s);
    auto [a, b] = pair_images(n, 11 + C);
    const auto mask = random_mask(n, 3 + C);
    const std::vector<double>* mp = masked ? &mask : nullptr;
    const std::string tag = std::to_string(Dim) + "d C" + std::to_string(C) + (masked ? " masked" : "");
    check_grads<R>("l1 " + tag, s, a, b, mp, [](auto& x, auto& y, auto g, auto m) {
      return loss::l1<double, R>(cpu(), x, y, g, m);
    });
    check_grads<R>("lsgan " + tag, s, a, b, mp, [](auto& x, auto&, auto g, auto m) {
      return loss::lsgan<double, R>(cpu(), x, 1.0, g, m);
    }, false, false);
    for (auto form : {loss::NmiForm::Arithmetic, loss::NmiForm::Studholme})
      for (int bins : {32, 7}) {
        const auto o = loss::NmiOptions().bins(bins).form(form);
        check_grads<R>("nmi bins " + std::to_string(bins) + (form == loss::NmiForm::Studholme ? " studholme " : " ") + tag,
                       s, a, b, mp, [o](auto& x, auto& y, auto g, auto m) {
                         return loss::nmi_loss<double, R>(cpu(), x, y, o, g, m);
                       }, true);
      }
    check_grads<R>("gcc " + tag, s, a, b, mp, [](auto& x, auto& y, auto g, auto m) {
      return loss::gcc_loss<Dim, double>(cpu(), x, y, g, m);
    });
    for (int radius : {1, 2})
      check_grads<R>("mind r" + std::to_string(radius) + " " + tag, s, a, b, mp, [radius](auto& x, auto& y, auto g, auto m) {
        return loss::mind_loss<Dim, double>(cpu(), x, y, loss::MindOptions().radius(radius), g, m);
      }, false, true, false);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(hand_computed_lsgan_and_l1) {
  std::vector<double> p{0.5, -1, 2, 0}, g(4, 0.0);
  ConstTensorMap<double, 1> pm(p.data(), 4);
  TensorMap<double, 1> gm(g.data(), 4);
  // mean((p - 1)^2) = (0.25 + 4 + 1 + 1) / 4; gradient 2 (p - 1) / 4.
  BOOST_CHECK_CLOSE((loss::lsgan_generator<double, 1>(cpu(), pm, {&gm})), 1.5625, 1e-12);
  const std::vector<double> eg{-0.25, -1.0, 0.5, -0.5};
  BOOST_CHECK_SMALL(dt::max_abs_diff(g, eg), 1e-15);
  // 0.5 [mean((r - 1)^2) + mean(f^2)] with r = (1, 0), f = (0.5, -0.5): 0.5 (0.5 + 0.25).
  std::vector<double> r{1, 0}, f{0.5, -0.5}, gr(2, 0.0), gf(2, 0.0);
  ConstTensorMap<double, 1> rm(r.data(), 2), fm(f.data(), 2);
  TensorMap<double, 1> grm(gr.data(), 2), gfm(gf.data(), 2);
  BOOST_CHECK_CLOSE((loss::lsgan_discriminator<double, 1>(cpu(), rm, fm, {&grm, &gfm})), 0.375, 1e-12);
  BOOST_CHECK_SMALL(dt::max_abs_diff(gr, {0.0, -0.5}), 1e-15);   // 0.5 * 2 (r - 1) / 2
  BOOST_CHECK_SMALL(dt::max_abs_diff(gf, {0.25, -0.25}), 1e-15);  // 0.5 * 2 f / 2
  // L1: |0, 2, -2, 0.5| -> 1.125; subgradient 0 where a == b.
  std::vector<double> a{1, 2, 3, 4}, b{1, 0, 5, 3.5}, ga(4, 0.0), gb(4, 0.0), m{1, 1, 0, 0};
  ConstTensorMap<double, 1> am(a.data(), 4), bm(b.data(), 4), mm(m.data(), 4);
  TensorMap<double, 1> gam(ga.data(), 4), gbm(gb.data(), 4);
  BOOST_CHECK_CLOSE((loss::l1<double, 1>(cpu(), am, bm, {&gam, &gbm})), 1.125, 1e-12);
  BOOST_CHECK_SMALL(dt::max_abs_diff(ga, {0.0, 0.25, -0.25, 0.25}), 1e-15);
  BOOST_CHECK_SMALL(dt::max_abs_diff(gb, {0.0, -0.25, 0.25, -0.25}), 1e-15);
  // Masked to the first two: (0 + 2) / 2, gradient 1/2 at the second element only.
  std::fill(ga.begin(), ga.end(), 0.0);
  BOOST_CHECK_CLOSE((loss::l1<double, 1>(cpu(), am, bm, {&gam}, &mm)), 1.0, 1e-12);
  BOOST_CHECK_SMALL(dt::max_abs_diff(ga, {0.0, 0.5, 0.0, 0.0}), 1e-15);
}

BOOST_AUTO_TEST_CASE(gradients_2d) { gradient_checks_for<2>(false); }
BOOST_AUTO_TEST_CASE(gradients_2d_masked) { gradient_checks_for<2>(true); }
BOOST_AUTO_TEST_CASE(gradients_3d) { gradient_checks_for<3>(false); }
BOOST_AUTO_TEST_CASE(gradients_3d_masked) { gradient_checks_for<3>(true); }

BOOST_AUTO_TEST_CASE(soft_nmi_matches_the_pytorch_reference) {
  const dt::Fixture fx("loss_eval.txt");
  // 2-D: real PD/T1 patch, batch 1, 32 bins; 3-D: random, batch 2, 16 bins.
  for (const std::string k : {"snmi2", "snmi3"}) {
    const auto& sh = fx[k + ".shape"];
    std::vector<double> a = fx[k + ".a"], b = fx[k + ".b"];
    if (k == "snmi2")
      for (std::size_t i = 0; i < a.size(); ++i) {
        a[i] /= 255.0;
        b[i] /= 255.0;
      }
    const int bins = k == "snmi2" ? 32 : 16;
    const auto o = loss::NmiOptions().bins(bins);
    auto run = [&](auto tag) {
      using S = decltype(tag);
      auto as = dt::convert<S>(a), bs = dt::convert<S>(b);
      std::vector<S> ga(a.size(), S(0)), gb(a.size(), S(0));
      double v;
      if (sh.size() == 2) {
        const Shape<4> s(1, Index(sh[0]), Index(sh[1]), 1);
        ConstTensorMap<S, 4> am(as.data(), s), bm(bs.data(), s);
        TensorMap<S, 4> gam(ga.data(), s), gbm(gb.data(), s);
        v = loss::soft_nmi<S, 4>(pool(), am, bm, o, {&gam, &gbm});
      } else {
        const Shape<5> s(1, Index(sh[0]), Index(sh[1]), Index(sh[2]), Index(sh[3]));
        ConstTensorMap<S, 5> am(as.data(), s), bm(bs.data(), s);
        TensorMap<S, 5> gam(ga.data(), s), gbm(gb.data(), s);
        v = loss::soft_nmi<S, 5>(pool(), am, bm, o, {&gam, &gbm});
      }
      const double tol = std::is_same_v<S, double> ? 1e-9 : 2e-4;
      BOOST_TEST_INFO(k << (std::is_same_v<S, double> ? " double" : " float"));
      BOOST_CHECK_SMALL(v - fx.scalar(k + ".value"), tol);
      const double ga_scale = dt::max_abs(fx[k + ".ga"]), gb_scale = dt::max_abs(fx[k + ".gb"]);
      BOOST_CHECK_SMALL(dt::max_abs_diff(dt::convert<double>(ga), fx[k + ".ga"]) / ga_scale, tol * 10);
      BOOST_CHECK_SMALL(dt::max_abs_diff(dt::convert<double>(gb), fx[k + ".gb"]) / gb_scale, tol * 10);
    };
    run(double{});
    run(float{});
  }
}

BOOST_AUTO_TEST_CASE(mind_and_gcc_match_autograd_references) {
  // benchmarks/torch_losses.py writes the same definitions in PyTorch; autograd differentiates them.
  const dt::Fixture fx("loss_eval.txt");
  for (const std::string k : {"2", "3"}) {
    const auto& sh = fx[k == "2" ? "snmi2.shape" : "snmi3.shape"];
    std::vector<double> a = fx[k == "2" ? "snmi2.a" : "snmi3.a"], b = fx[k == "2" ? "snmi2.b" : "snmi3.b"];
    if (k == "2")
      for (std::size_t i = 0; i < a.size(); ++i) {
        a[i] /= 255.0;
        b[i] /= 255.0;
      }
    for (const std::string name : {"mind", "gcc"}) {
      std::vector<double> ga(a.size(), 0.0), gb(a.size(), 0.0);
      double v;
      if (k == "2") {
        const Shape<4> s(1, Index(sh[0]), Index(sh[1]), 1);
        ConstTensorMap<double, 4> am(a.data(), s), bm(b.data(), s);
        TensorMap<double, 4> gam(ga.data(), s), gbm(gb.data(), s);
        v = name == "mind" ? loss::mind_loss<2, double>(pool(), am, bm, {}, {&gam, &gbm})
                           : loss::gcc_loss<2, double>(pool(), am, bm, {&gam, &gbm});
      } else {
        const Shape<5> s(1, Index(sh[0]), Index(sh[1]), Index(sh[2]), Index(sh[3]));
        ConstTensorMap<double, 5> am(a.data(), s), bm(b.data(), s);
        TensorMap<double, 5> gam(ga.data(), s), gbm(gb.data(), s);
        v = name == "mind" ? loss::mind_loss<3, double>(pool(), am, bm, {}, {&gam, &gbm})
                           : loss::gcc_loss<3, double>(pool(), am, bm, {&gam, &gbm});
      }
      BOOST_TEST_CONTEXT(name << k << "d") {
        BOOST_CHECK_SMALL(v - fx.scalar(name + k + ".value"), 1e-10);
        BOOST_CHECK_SMALL(dt::max_abs_diff(ga, fx[name + k + ".ga"]) / dt::max_abs(fx[name + k + ".ga"]), 1e-8);
        BOOST_CHECK_SMALL(dt::max_abs_diff(gb, fx[name + k + ".gb"]) / dt::max_abs(fx[name + k + ".gb"]), 1e-8);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(nmi_invariants) {
  const Shape<4> s(1, 24, 20, 1);
  const Index n = num_elements(s);
  // A smooth "image": blobs and a ramp.
  std::vector<double> x(n), noisy(n), shifted(n), rescaled(n);
  auto noise = dt::random_vec<double>(n, 42);
  for (Index j = 0; j < 20; ++j)
    for (Index i = 0; i < 24; ++i) {
      const double v = std::sin(0.35 * i) * std::cos(0.27 * j) + 0.02 * i;
      x[j * 24 + i] = v;
    }
  for (Index j = 0; j < 20; ++j)
    for (Index i = 0; i < 24; ++i) {
      noisy[j * 24 + i] = x[j * 24 + i] + 0.3 * noise[j * 24 + i];
      shifted[j * 24 + i] = x[j * 24 + std::min<Index>(23, i + 3)];
      rescaled[j * 24 + i] = 3.5 * noisy[j * 24 + i] + 12.0;
    }
  auto nmi = [&](const std::vector<double>& p, const std::vector<double>& q, loss::NmiForm f = loss::NmiForm::Arithmetic) {
    ConstTensorMap<double, 4> pm(p.data(), s), qm(q.data(), s);
    return double(loss::soft_nmi<double, 4>(cpu(), pm, qm, loss::NmiOptions().form(f)));
  };
  const double self = nmi(x, x);
  BOOST_CHECK(self > nmi(x, noisy));
  BOOST_CHECK(self > nmi(x, shifted));
  BOOST_CHECK_SMALL(nmi(x, noisy) - nmi(noisy, x), 1e-12);  // symmetric
  BOOST_CHECK_SMALL(nmi(x, noisy) - nmi(x, rescaled), 1e-7);  // affine-invariant (up to unit_eps)
  // The two forms are related by NMI = 2 - 2/Y.
  const double y = nmi(x, noisy, loss::NmiForm::Studholme);
  BOOST_CHECK_SMALL(nmi(x, noisy) - (2 - 2 / y), 1e-12);
  // The soft NMI of an image with itself is high but below 1 (the Parzen windows blur the diagonal).
  BOOST_CHECK(self > 0.5 && self < 1.0);
}

BOOST_AUTO_TEST_CASE(gcc_and_mind_invariants) {
  const Shape<5> s(1, 7, 6, 5, 2);
  const Index n = num_elements(s);
  auto x = dt::random_vec<double>(n, 8);
  std::vector<double> y(n), z = dt::random_vec<double>(n, 9);
  for (Index i = 0; i < n; ++i) y[i] = 2.5 * x[i] - 4.0;
  ConstTensorMap<double, 5> xm(x.data(), s), ym(y.data(), s), zm(z.data(), s);
  BOOST_CHECK_CLOSE(double(loss::gradient_correlation<3, double>(cpu(), xm, ym)), 1.0, 1e-10);
  BOOST_CHECK_SMALL(double(loss::gcc_loss<3, double>(cpu(), xm, ym)), 1e-10);
  const double gz = loss::gradient_correlation<3, double>(cpu(), xm, zm);
  BOOST_CHECK(std::abs(gz) < 0.5);
  // Negative scaling flips the sign.
  std::vector<double> neg(n);
  for (Index i = 0; i < n; ++i) neg[i] = -x[i];
  ConstTensorMap<double, 5> nm(neg.data(), s);
  BOOST_CHECK_CLOSE(double(loss::gradient_correlation<3, double>(cpu(), xm, nm)), -1.0, 1e-10);
  // MIND descriptors do not change under a positive affine rescale; the loss is then 0.
  const auto dx = loss::mind_descriptors<3, double>(cpu(), xm);
  const auto dy = loss::mind_descriptors<3, double>(cpu(), ym);
  BOOST_CHECK_SMALL(dt::max_abs_diff(dx, dy), 1e-12);
  BOOST_CHECK_SMALL(double(loss::mind_loss<3, double>(cpu(), xm, ym)), 1e-12);
  BOOST_CHECK((loss::mind_loss<3, double>(cpu(), xm, zm)) > 0.05);
  // Descriptors are in (0, 1] with a 1 at every voxel (the normalisation by the maximum).
  for (Index p = 0; p < n; ++p) {
    double mx = 0;
    for (int r = 0; r < 6; ++r) {
      const double v = dx[p * 6 + r];
      BOOST_CHECK(v > 0 && v <= 1);
      mx = std::max(mx, v);
    }
    if (mx != 1.0) BOOST_ERROR("descriptor maximum at voxel " << p << " is " << mx);
  }
  // A constant image has descriptors 1, not NaN.
  std::vector<double> c(n, 0.7);
  ConstTensorMap<double, 5> cm(c.data(), s);
  for (double v : loss::mind_descriptors<3, double>(cpu(), cm)) BOOST_CHECK_EQUAL(v, 1.0);
  BOOST_CHECK(std::isfinite(double(loss::mind_loss<3, double>(cpu(), cm, xm))));
}

BOOST_AUTO_TEST_CASE(thread_pool_equals_default_and_half_is_close) {
  const Shape<4> s(1, 40, 36, 2);
  const Index n = num_elements(s);
  auto [a, b] = pair_images(n, 77);
  auto run = [&](auto& ctx, auto tag, int which, std::vector<double>& ga_out) {
    using S = decltype(tag);
    auto as = dt::convert<S>(a), bs = dt::convert<S>(b);
    std::vector<S> ga(n, S(0));
    ConstTensorMap<S, 4> am(as.data(), s), bm(bs.data(), s);
    TensorMap<S, 4> gam(ga.data(), s);
    double v = 0;
    if (which == 0) v = loss::nmi_loss<S, 4>(ctx, am, bm, {}, {&gam});
    if (which == 1) v = loss::gcc_loss<2, S>(ctx, am, bm, {&gam});
    if (which == 2) v = loss::mind_loss<2, S>(ctx, am, bm, {}, {&gam});
    if (which == 3) v = loss::l1<S, 4>(ctx, am, bm, {&gam});
    ga_out = dt::convert<double>(ga);
    return v;
  };
  for (int which = 0; which < 4; ++which) {
    BOOST_TEST_CONTEXT("loss " << which) {
    std::vector<double> g1, g2, gh, gf;
    const double v1 = run(cpu(), double{}, which, g1), v2 = run(pool(), double{}, which, g2);
    BOOST_CHECK_EQUAL(v1, v2);  // fixed-block sums: bit-identical for any thread count
    BOOST_CHECK_EQUAL(dt::max_abs_diff(g1, g2), 0.0);
    const double vf = run(pool(), float{}, which, gf), vh = run(pool(), half{}, which, gh);
    BOOST_CHECK_SMALL(vf - v1, 1e-5);
    BOOST_CHECK_SMALL(vh - vf, 2e-2 * std::max(1.0, std::abs(vf)));
    // Relative L2 distance: half rounds the inputs, which flips the sign of a few |x - y| terms of
    // L1 and MIND, so single elements may differ by a whole step.
    double num = 0, den = 0;
    for (std::size_t i = 0; i < gf.size(); ++i) {
      num += (gh[i] - gf[i]) * (gh[i] - gf[i]);
      den += gf[i] * gf[i];
    }
    BOOST_CHECK_SMALL(std::sqrt(num / den), 3e-2);
    }
  }
}

BOOST_AUTO_TEST_CASE(bad_input_errors) {
  const Shape<4> s(1, 6, 5, 1), s2(1, 6, 4, 1);
  const Index n = num_elements(s);
  auto x = dt::random_vec<double>(n, 1), y = dt::random_vec<double>(n, 2);
  std::vector<double> c(n, 0.3), zeros(n, 0.0), g2(24, 0.0);
  ConstTensorMap<double, 4> xm(x.data(), s), ym(y.data(), s), cm(c.data(), s), zm(zeros.data(), s), sm(x.data(), s2);
  TensorMap<double, 4> gw(g2.data(), s2);
  expect_error<ShapeError>([&] { loss::l1<double, 4>(cpu(), xm, sm); }, "same shape");
  expect_error<ShapeError>([&] { loss::soft_nmi<double, 4>(cpu(), xm, sm); }, "same shape");
  expect_error<ShapeError>([&] { loss::gcc_loss<2, double>(cpu(), xm, ym, {&gw}); }, "expected gradient of shape");
  expect_error<ShapeError>([&] { loss::l1<double, 4>(cpu(), xm, ym, {}, &zm); }, "mask is empty");
  expect_error<ShapeError>([&] { loss::nmi_loss<double, 4>(cpu(), xm, ym, {}, {}, &zm); }, "mask of sample 0 is empty");
  expect_error<ShapeError>([&] { loss::mind_loss<2, double>(cpu(), xm, ym, {}, {}, &zm); }, "mask is empty");
  expect_error<ConfigError>([&] { loss::soft_nmi<double, 4>(cpu(), xm, ym, loss::NmiOptions().bins(1)); }, "bins");
  expect_error<ConfigError>([&] { loss::soft_nmi<double, 4>(cpu(), xm, ym, loss::NmiOptions().sigma(0)); }, "sigma");
  expect_error<ConfigError>([&] { loss::mind_loss<2, double>(cpu(), xm, ym, loss::MindOptions().radius(-1)); }, "radius");
  std::vector<double> nan = x;
  nan[4] = std::nan("");
  ConstTensorMap<double, 4> nm(nan.data(), s);
  expect_error<NumericError>([&] { loss::soft_nmi<double, 4>(cpu(), nm, ym); }, "non-finite");
  const Shape<4> thin(1, 1, 5, 1);
  ConstTensorMap<double, 4> tm(x.data(), thin);
  expect_error<ShapeError>([&] { loss::gcc_loss<2, double>(cpu(), tm, tm); }, "at least 2");
}

// A constant image (an all-background crop): NMI, GCC and MIND give their documented value, finite,
// add exactly nothing to either gradient (pre-filled buffers stay as they were, where the losses
// have no gradient into the constant image by construction), and are counted; in a batch, the
// other sample's value and gradient are those it has alone.
template <int Dim>
void constant_input_checks() {
  constexpr int R = Dim + 2;
  Shape<R> s1, s2;
  s1[0] = s2[0] = 1;
  for (int d = 0; d < Dim; ++d) s1[d + 1] = s2[d + 1] = 7 - d;
  s1[R - 1] = 1;
  s2[R - 1] = 2;
  const Index m = num_elements(s1);
  const std::vector<double> x = dt::random_vec<double>(m, 31), c(m, -1.0);
  std::vector<double> cx = c;  // a batch of 2: (constant, x)
  cx.insert(cx.end(), x.begin(), x.end());
  std::vector<double> x2 = x;
  x2.insert(x2.end(), x.begin(), x.end());
  using Loss = std::function<double(const ConstTensorMap<double, R>&, const ConstTensorMap<double, R>&,
                                    loss::GradTo<double, R>)>;
  const std::vector<std::pair<std::string, Loss>> losses = {
      {"nmi_loss", [](auto& a, auto& b, auto g) { return double(loss::nmi_loss<double, R>(cpu(), a, b, {}, g)); }},
      {"nmi studholme", [](auto& a, auto& b, auto g) {
         return double(loss::soft_nmi<double, R>(cpu(), a, b, loss::NmiOptions().form(loss::NmiForm::Studholme), g));
       }},
      {"gcc_loss", [](auto& a, auto& b, auto g) { return double(loss::gcc_loss<Dim, double>(cpu(), a, b, g)); }},
      {"mind_loss", [](auto& a, auto& b, auto g) { return double(loss::mind_loss<Dim, double>(cpu(), a, b, {}, g)); }},
  };
  const std::vector<double> expected = {1.0, 1.0, 1.0, -1.0};  // -1: MIND's value is just finite
  for (std::size_t li = 0; li < losses.size(); ++li) {
    BOOST_TEST_CONTEXT(Dim << "-D " << losses[li].first) {
      const Loss& f = losses[li].second;
      for (int which = 0; which < 2; ++which) {  // constant a, then constant b
        std::vector<double> ga = dt::random_vec<double>(m, 5), gb = dt::random_vec<double>(m, 6);
        const std::vector<double> ga0 = ga, gb0 = gb;
        ConstTensorMap<double, R> cm(c.data(), s1), xm(x.data(), s1);
        TensorMap<double, R> gam(ga.data(), s1), gbm(gb.data(), s1);
        const auto before = loss::degenerate_samples().load();
        const double v = which == 0 ? f(cm, xm, {&gam, &gbm, 1.3}) : f(xm, cm, {&gam, &gbm, 1.3});
        BOOST_TEST(std::isfinite(v));
        if (expected[li] >= 0) BOOST_CHECK_EQUAL(v, expected[li]);
        BOOST_TEST(loss::degenerate_samples().load() > before);
        // No gradient into the constant image; for NMI and GCC none into the other either.
        const bool both = li < 3;
        BOOST_CHECK_EQUAL(dt::max_abs_diff(which == 0 ? ga : gb, which == 0 ? ga0 : gb0), 0.0);
        if (both) BOOST_CHECK_EQUAL(dt::max_abs_diff(which == 0 ? gb : ga, which == 0 ? gb0 : ga0), 0.0);
        for (double g : ga) BOOST_TEST(std::isfinite(g));
        for (double g : gb) BOOST_TEST(std::isfinite(g));
      }
      // Both constant.
      {
        ConstTensorMap<double, R> cm(c.data(), s1);
        const double v = f(cm, cm, {});
        BOOST_TEST(std::isfinite(v));
        if (expected[li] >= 0) BOOST_CHECK_EQUAL(v, expected[li]);
      }
      if (li == 3) continue;  // MIND's loss is a mean over voxels of both samples, not per sample
      // A batch: the constant sample takes the documented value, the other is as alone.
      ConstTensorMap<double, R> xm(x.data(), s1), cxm(cx.data(), s2), x2m(x2.data(), s2);
      const std::vector<double> y = dt::random_vec<double>(m, 32);
      std::vector<double> y2 = y;
      y2.insert(y2.end(), y.begin(), y.end());
      ConstTensorMap<double, R> ym(y.data(), s1), y2m(y2.data(), s2);
      std::vector<double> g1(m, 0.0), g2(2 * m, 0.0);
      TensorMap<double, R> g1m(g1.data(), s1), g2m(g2.data(), s2);
      const double alone = f(xm, ym, {&g1m, nullptr, 1.0});
      const double batch = f(cxm, y2m, {&g2m, nullptr, 1.0});
      BOOST_CHECK_CLOSE(batch, 0.5 * (alone + expected[li]), 1e-10);
      for (Index i = 0; i < m; ++i) {
        BOOST_CHECK_EQUAL(g2[i], 0.0);
        BOOST_CHECK_CLOSE(g2[m + i], 0.5 * g1[i], 1e-8);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(constant_inputs_2d) { constant_input_checks<2>(); }
BOOST_AUTO_TEST_CASE(constant_inputs_3d) { constant_input_checks<3>(); }
