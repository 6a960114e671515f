// TPS, grid sampler and deformation simulator: identity, exact interpolation, kernel-scale and
// affine invariants, gradient checks in double, parity with torch grid_sample and the reference
// TPSGrid (fixtures from tests/fixtures/make_tps_fixtures.py), the real ITK PD slice warped and
// unwarped, reproducibility, and the errors.
#define BOOST_TEST_MODULE tps
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "dicyc/tps/deform.hpp"
#include "dicyc/eval/metrics.hpp"
#include "support/fixture.hpp"
#include "support/test_util.hpp"

using namespace dicyc;
using dt::expect_error;
using tps::PaddingMode;

namespace {

using dt::cpu;
using dt::pool;

template <int Dim>
std::array<Index, Dim> ext_of(const Shape<Dim + 2>& s) {
  std::array<Index, Dim> e;
  for (int d = 0; d < Dim; ++d) e[d] = s[d + 1];
  return e;
}

/// Sampler forward on the host in S, returning double.
template <int Dim, class S, class Ctx>
std::vector<double> sample(Ctx& ctx, const Shape<Dim + 2>& xs, const std::vector<double>& x, const Shape<Dim + 2>& gs,
                           const std::vector<double>& g, PaddingMode pm) {
  auto xv = dt::convert<S>(x), gv = dt::convert<S>(g);
  Shape<Dim + 2> ys = gs;
  ys[0] = xs[0];
  std::vector<S> y(static_cast<std::size_t>(num_elements(ys)));
  ConstTensorMap<S, Dim + 2> xm(xv.data(), xs), gm(gv.data(), gs);
  TensorMap<S, Dim + 2> ym(y.data(), ys);
  tps::grid_sample_forward<Dim, S>(ctx, xm, gm, ym, pm);
  return dt::convert<double>(y);
}

template <int Dim, class S, class Ctx>
void sample_backward(Ctx& ctx, const Shape<Dim + 2>& xs, const std::vector<double>& x, const Shape<Dim + 2>& gs,
                     const std::vector<double>& g, const std::vector<double>& dy, PaddingMode pm,
                     std::vector<double>& dx, std::vector<double>& dg) {
  auto xv = dt::convert<S>(x), gv = dt::convert<S>(g), dyv = dt::convert<S>(dy);
  auto dxv = dt::convert<S>(dx), dgv = dt::convert<S>(dg);
  Shape<Dim + 2> ys = gs;
  ys[0] = xs[0];
  ConstTensorMap<S, Dim + 2> xm(xv.data(), xs), gm(gv.data(), gs), dym(dyv.data(), ys);
  TensorMap<S, Dim + 2> dxm(dxv.data(), xs), dgm(dgv.data(), gs);
  tps::grid_sample_backward<Dim, S>(ctx, xm, gm, dym, &dxm, &dgm, pm);
  dx = dt::convert<double>(dxv);
  dg = dt::convert<double>(dgv);
}

/// A grid of the identity (pixel centres) for extents e, batch N.
template <int Dim>
std::vector<double> identity_grid(const std::array<Index, Dim>& e, Index N) {
  std::vector<double> g;
  for (Index n = 0; n < N; ++n)
    dt::for_each_pos<Dim>(e, [&](const std::array<Index, Dim>& p) {
      for (int d = 0; d < Dim; ++d) g.push_back(tps::pixel_center(p[d], e[d]));
    });
  return g;
}

/// Random grid coordinates in [-1.2, 1.2], kept 0.05 pixel away from the integer knots.
template <int Dim>
std::vector<double> random_grid(const std::array<Index, Dim>& in, Index positions, std::uint64_t seed) {
  auto g = dt::random_vec<double>(positions * Dim, seed, -1.2, 1.2);
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double n = double(in[i % Dim]);
    const double ix = ((g[i] + 1) * n - 1) / 2;
    if (std::abs(ix - std::round(ix)) < 0.05) g[i] += 0.2 / n;
  }
  return g;
}

}  // namespace

BOOST_AUTO_TEST_CASE(identity_grid_returns_the_input_exactly) {
  for (Index C : {3, 1})
  for (auto pm : {PaddingMode::Border, PaddingMode::Zeros}) {
    const Shape<4> s2(C, 7, 5, 2);
    const Shape<5> s3(C, 4, 5, 3, 2);
    const auto x2 = dt::random_vec<double>(num_elements(s2), 1);
    Shape<4> g2 = s2;
    g2[0] = 2;
    BOOST_CHECK((sample<2, double>(cpu(), s2, x2, g2, identity_grid<2>(ext_of<2>(s2), 2), pm) == x2));
    const auto xf = dt::convert<double>(dt::convert<float>(x2));
    BOOST_CHECK((sample<2, float>(pool(), s2, xf, g2, identity_grid<2>(ext_of<2>(s2), 2), pm) == xf));
    const auto x3 = dt::random_vec<double>(num_elements(s3), 2);
    Shape<5> g3 = s3;
    g3[0] = 3;
    BOOST_CHECK((sample<3, double>(cpu(), s3, x3, g3, identity_grid<3>(ext_of<3>(s3), 2), pm) == x3));
    const auto x3f = dt::convert<double>(dt::convert<float>(x3));
    BOOST_CHECK((sample<3, float>(pool(), s3, x3f, g3, identity_grid<3>(ext_of<3>(s3), 2), pm) == x3f));
  }
  // The TPS grid of zero displacements is that identity grid, and sampling with it is exact.
  tps::TpsGrid<2, float, Eigen::ThreadPoolDevice> tg(pool(), {6, 6}, {7, 5});
  std::vector<float> disp(2 * 36 * 2, 0.0f), grid(2 * 35 * 2);
  ConstTensorMap<float, 3> dm(disp.data(), tg.disp_shape(2));
  TensorMap<float, 4> gm(grid.data(), tg.grid_shape(2));
  tg.forward(pool(), dm, gm);
  const auto id = identity_grid<2>({7, 5}, 2);
  BOOST_CHECK_SMALL(dt::max_abs_diff(dt::convert<double>(grid), id), 1e-6);
  for (Index C : {3, 1}) {
    const Shape<4> s2(C, 7, 5, 2);
    const auto x2 = dt::convert<double>(dt::convert<float>(dt::random_vec<double>(num_elements(s2), 3)));
    BOOST_CHECK((sample<2, float>(pool(), s2, x2, tg.grid_shape(2), dt::convert<double>(grid), PaddingMode::Border) == x2));
  }
}

BOOST_AUTO_TEST_CASE(tps_interpolates_reproduces_affine_and_ignores_kernel_scale) {
  // Output pixel centres on the control points: the grid equals the displaced control points.
  for (Index g : {Index(4), Index(6)}) {
    const tps::TpsSystem<2> s({g, g}, {g, g});
    const Eigen::MatrixXd d = Eigen::MatrixXd::Random(2, s.K) * 0.1;
    const Eigen::MatrixXd grid = s.base + d * s.Mt;
    BOOST_CHECK_SMALL((grid - (s.ctrl + d)).cwiseAbs().maxCoeff(), 1e-10);
    const Eigen::MatrixXd coef = s.coefficients(s.ctrl + d);
    for (Index i = 0; i < s.K; ++i)
      BOOST_CHECK_SMALL((s.evaluate(coef, s.ctrl.col(i)) - (s.ctrl + d).col(i)).norm(), 1e-10);
  }
  const tps::TpsSystem<3> s3({4, 4, 4}, {4, 4, 4});
  const Eigen::MatrixXd d3 = Eigen::MatrixXd::Random(3, s3.K) * 0.1;
  BOOST_CHECK_SMALL(((s3.base + d3 * s3.Mt) - (s3.ctrl + d3)).cwiseAbs().maxCoeff(), 1e-10);
  // Scaling U by a constant leaves the interpolant unchanged.
  const tps::TpsSystem<2> a({5, 5}, {9, 7}, 1.0), b({5, 5}, {9, 7}, -3.7);
  BOOST_CHECK_SMALL((a.Mt - b.Mt).cwiseAbs().maxCoeff(), 1e-10);
  const tps::TpsSystem<3> a3({3, 3, 3}, {5, 4, 3}, 1.0), b3({3, 3, 3}, {5, 4, 3}, 0.25);
  BOOST_CHECK_SMALL((a3.Mt - b3.Mt).cwiseAbs().maxCoeff(), 1e-10);
  // An affine displacement of the control points is reproduced exactly everywhere.
  Eigen::Matrix2d B;
  B << 0.05, -0.08, 0.03, 0.02;
  const Eigen::Vector2d t(0.04, -0.07);
  const Eigen::MatrixXd d = (B * a.ctrl).colwise() + t;
  const Eigen::MatrixXd expect = (a.base + B * a.base).colwise() + t;
  BOOST_CHECK_SMALL(((a.base + d * a.Mt) - expect).cwiseAbs().maxCoeff(), 1e-10);
  Eigen::Matrix3d B3 = Eigen::Matrix3d::Random() * 0.05;
  const Eigen::Vector3d t3(0.01, 0.02, -0.03);
  const Eigen::MatrixXd e3 = (a3.base + B3 * a3.base).colwise() + t3;
  BOOST_CHECK_SMALL(((a3.base + ((B3 * a3.ctrl).colwise() + t3) * a3.Mt) - e3).cwiseAbs().maxCoeff(), 1e-10);
}

BOOST_AUTO_TEST_CASE(sampler_gradients_in_double) {
  auto check = [](auto dim_tag, const auto& xs, const auto& gs) {
    constexpr int Dim = decltype(dim_tag)::value;
    using Sh = Shape<Dim + 2>;
    const Sh x_shape = xs, g_shape = gs;
    Sh ys = g_shape;
    ys[0] = x_shape[0];
    const Index nx = num_elements(x_shape), ng = num_elements(g_shape), ny = num_elements(ys);
    for (auto pm : {PaddingMode::Border, PaddingMode::Zeros}) {
      auto x = dt::random_vec<double>(nx, 5);
      auto g = random_grid<Dim>(ext_of<Dim>(x_shape), ng / Dim, 6);
      const auto w = dt::random_vec<double>(ny, 7);
      std::vector<double> dx = dt::random_vec<double>(nx, 8), dg = dt::random_vec<double>(ng, 9);
      const auto dx0 = dx, dg0 = dg;
      sample_backward<Dim, double>(pool(), x_shape, x, g_shape, g, w, pm, dx, dg);
      for (Index i = 0; i < nx; ++i) dx[i] -= dx0[i];
      for (Index i = 0; i < ng; ++i) dg[i] -= dg0[i];
      auto f = [&] { return dt::dot(sample<Dim, double>(cpu(), x_shape, x, g_shape, g, pm), w); };
      BOOST_TEST_CONTEXT(Dim << "d " << (pm == PaddingMode::Border ? "border" : "zeros")) {
        dt::gradcheck(x, dx, f, "sampler d input", 1e-7);
        dt::gradcheck(g, dg, f, "sampler d grid", 1e-6);
      }
    }
  };
  check(std::integral_constant<int, 2>{}, Shape<4>(3, 6, 5, 2), Shape<4>(2, 4, 7, 2));
  check(std::integral_constant<int, 3>{}, Shape<5>(2, 4, 5, 3, 2), Shape<5>(3, 3, 2, 4, 2));
  // One channel.
  check(std::integral_constant<int, 2>{}, Shape<4>(1, 6, 5, 2), Shape<4>(2, 4, 7, 2));
  check(std::integral_constant<int, 3>{}, Shape<5>(1, 4, 5, 3, 2), Shape<5>(3, 3, 2, 4, 2));
}

BOOST_AUTO_TEST_CASE(tps_backward_is_the_adjoint) {
  tps::TpsGrid<3, double, Eigen::DefaultDevice> tg(cpu(), {3, 4, 3}, {5, 4, 6});
  const Index K = tg.num_control_points();
  auto disp = dt::random_vec<double>(3 * K * 2, 11, -0.1, 0.1);
  const auto w = dt::random_vec<double>(num_elements(tg.grid_shape(2)), 12);
  std::vector<double> grid(w.size()), dd(disp.size(), 0.5);
  auto f = [&] {
    ConstTensorMap<double, 3> dm(disp.data(), tg.disp_shape(2));
    TensorMap<double, 5> gm(grid.data(), tg.grid_shape(2));
    tg.forward(cpu(), dm, gm);
    return dt::dot(grid, w);
  };
  ConstTensorMap<double, 5> wm(w.data(), tg.grid_shape(2));
  TensorMap<double, 3> ddm(dd.data(), tg.disp_shape(2));
  tg.backward(cpu(), wm, ddm);
  for (auto& v : dd) v -= 0.5;
  dt::gradcheck(disp, dd, f, "tps d displacement", 1e-8);
}

BOOST_AUTO_TEST_CASE(grid_sample_matches_torch) {
  const dt::Fixture fx("tps.txt");
  // s2, s3: several channels; c2, c3: one channel (its own vectorised kernels).
  for (const std::string k : {"s2", "s3", "c2", "c3"})
    for (const std::string pm : {"border", "zeros"}) {
      const auto& is = fx[k + ".ishape"];
      const auto& gsh = fx[k + ".gshape"];
      const auto mode = pm == "border" ? PaddingMode::Border : PaddingMode::Zeros;
      const auto& x = fx[k + ".x"];
      const auto& g = fx[k + ".grid"];
      const auto& dy = fx[k + "." + pm + ".dy"];
      std::vector<double> y, dx(x.size(), 0.0), dg(g.size(), 0.0);
      std::vector<double> dxf(x.size(), 0.0), dgf(g.size(), 0.0), yf;
      if (k.back() == '2') {
        const Shape<4> xs(static_cast<Index>(is[0]), static_cast<Index>(is[1]), static_cast<Index>(is[2]), static_cast<Index>(is[3]));
        const Shape<4> gs(static_cast<Index>(gsh[0]), static_cast<Index>(gsh[1]), static_cast<Index>(gsh[2]), static_cast<Index>(gsh[3]));
        y = sample<2, double>(pool(), xs, x, gs, g, mode);
        yf = sample<2, float>(pool(), xs, x, gs, g, mode);
        sample_backward<2, double>(pool(), xs, x, gs, g, dy, mode, dx, dg);
        sample_backward<2, float>(pool(), xs, x, gs, g, dy, mode, dxf, dgf);
      } else {
        const Shape<5> xs(static_cast<Index>(is[0]), static_cast<Index>(is[1]), static_cast<Index>(is[2]), static_cast<Index>(is[3]), static_cast<Index>(is[4]));
        const Shape<5> gs(static_cast<Index>(gsh[0]), static_cast<Index>(gsh[1]), static_cast<Index>(gsh[2]), static_cast<Index>(gsh[3]), static_cast<Index>(gsh[4]));
        y = sample<3, double>(pool(), xs, x, gs, g, mode);
        yf = sample<3, float>(pool(), xs, x, gs, g, mode);
        sample_backward<3, double>(pool(), xs, x, gs, g, dy, mode, dx, dg);
        sample_backward<3, float>(pool(), xs, x, gs, g, dy, mode, dxf, dgf);
      }
      BOOST_TEST_CONTEXT(k << " " << pm) {
        BOOST_CHECK_SMALL(dt::max_abs_diff(y, fx[k + "." + pm + ".y"]), 1e-12);
        BOOST_CHECK_SMALL(dt::max_abs_diff(dx, fx[k + "." + pm + ".dx"]), 1e-12);
        BOOST_CHECK_SMALL(dt::max_abs_diff(dg, fx[k + "." + pm + ".dgrid"]), 1e-11);
        BOOST_CHECK_SMALL(dt::max_abs_diff(yf, fx[k + "." + pm + ".y"]), 1e-5);
        BOOST_CHECK_SMALL(dt::max_abs_diff(dxf, fx[k + "." + pm + ".dx"]), 1e-5);
        BOOST_CHECK_SMALL(dt::max_abs_diff(dgf, fx[k + "." + pm + ".dgrid"]), 1e-4);
      }
    }
  // The reference TPSGrid (6x6 control points, 8x8 output). Its inverse is stored in float, hence
  // the tolerance.
  tps::TpsGrid<2, double, Eigen::DefaultDevice> tg(cpu(), {6, 6}, {8, 8});
  auto disp = fx["tps.disp"];
  std::vector<double> grid(2 * 64 * 2);
  ConstTensorMap<double, 3> dm(disp.data(), tg.disp_shape(2));
  TensorMap<double, 4> gm(grid.data(), tg.grid_shape(2));
  tg.forward(cpu(), dm, gm);
  BOOST_CHECK_SMALL(dt::max_abs_diff(grid, fx["tps.grid"]), 2e-6);
}

BOOST_AUTO_TEST_CASE(thread_pool_equals_default_and_half_is_close) {
  const Shape<4> xs(5, 12, 9, 2), gs(2, 10, 11, 2);
  const auto x = dt::random_vec<double>(num_elements(xs), 21);
  const auto g = random_grid<2>(ext_of<2>(xs), num_elements(gs) / 2, 22);
  Shape<4> ys = gs;
  ys[0] = 5;
  const auto dy = dt::random_vec<double>(num_elements(ys), 23);
  for (auto pm : {PaddingMode::Border, PaddingMode::Zeros}) {
    std::vector<double> dx1(x.size(), 0.0), dg1(g.size(), 0.0), dx2 = dx1, dg2 = dg1, dxh = dx1, dgh = dg1;
    BOOST_CHECK((sample<2, float>(cpu(), xs, x, gs, g, pm) == sample<2, float>(pool(), xs, x, gs, g, pm)));
    sample_backward<2, float>(cpu(), xs, x, gs, g, dy, pm, dx1, dg1);
    sample_backward<2, float>(pool(), xs, x, gs, g, dy, pm, dx2, dg2);
    BOOST_CHECK(dx1 == dx2);
    BOOST_CHECK(dg1 == dg2);
    const auto yh = sample<2, half>(pool(), xs, x, gs, g, pm);
    BOOST_CHECK_SMALL(dt::max_abs_diff(yh, sample<2, float>(pool(), xs, x, gs, g, pm)), 1e-2);
    sample_backward<2, half>(pool(), xs, x, gs, g, dy, pm, dxh, dgh);
    BOOST_CHECK_SMALL(dt::max_abs_diff(dxh, dx1), 2e-2 * dt::max_abs(dx1));
    BOOST_CHECK_SMALL(dt::max_abs_diff(dgh, dg1), 3e-2 * dt::max_abs(dg1));
  }
}

BOOST_AUTO_TEST_CASE(simulator_on_the_real_pd_slice) {
  // The ITK PD slice (subsampled by 2, 91 x 109) from the loss/eval fixture.
  const dt::Fixture fx("loss_eval.txt");
  const auto& sh = fx["pd2.shape"];
  const Shape<4> s(1, static_cast<Index>(sh[0]), static_cast<Index>(sh[1]), 1);
  std::vector<float> pd = dt::convert<float>(fx["pd2"]);
  const auto opts = tps::DeformOptions().control(4).amplitude(0.06).rotation(3).scale(0.03).translation(0.01);
  const auto def = tps::simulate_deformation<2>(opts, 1234);
  // Reproducible: the same seed gives the same warp; another seed another one.
  const auto again = tps::simulate_deformation<2>(opts, 1234);
  BOOST_CHECK(def.control_displacements() == again.control_displacements());
  BOOST_CHECK(def.affine() == again.affine());
  BOOST_CHECK(tps::simulate_deformation<2>(opts, 1235).control_displacements() != def.control_displacements());
  const auto field = def.displacement({s[1], s[2]});
  double maxd = 0;
  for (double v : field) maxd = std::max(maxd, std::abs(v));
  BOOST_TEST_MESSAGE("largest displacement " << maxd << " normalised units");
  BOOST_CHECK(maxd > 0.02 && maxd < 0.3);

  std::vector<float> warped(pd.size()), back(pd.size());
  ConstTensorMap<float, 4> pm(pd.data(), s), wm(warped.data(), s);
  TensorMap<float, 4> wo(warped.data(), s), bo(back.data(), s);
  def.apply<float>(pool(), pm, wo);
  const auto inv = def.inverse(20);
  inv.apply<float>(pool(), wm, bo);
  // Compare inside the head, away from the border where the warp pulled in clamped pixels.
  Eigen::Tensor<std::uint8_t, 2> head(s[1], s[2]);
  double worst_px = 0;
  for (Index y = 0; y < s[2]; ++y)
    for (Index x = 0; x < s[1]; ++x) {
      head(x, y) = pd[y * s[1] + x] > 30 && x > 6 && y > 6 && x < s[1] - 7 && y < s[2] - 7;
      if (!head(x, y)) continue;
      const Eigen::Vector2d p(tps::pixel_center(x, s[1]), tps::pixel_center(y, s[2]));
      worst_px = std::max(worst_px, (def.map(inv.map(p)) - p).norm() * 0.5 * double(s[1]));
    }
  const eval::Image<std::uint8_t, 2> hm(head.data(), s[1], s[2]);
  const eval::Image<float, 2> a(pd.data(), s[1], s[2]), w(warped.data(), s[1], s[2]), b(back.data(), s[1], s[2]);
  const double mse_warped = eval::mse(a, w, &hm), mse_back = eval::mse(a, b, &hm);
  // The floor: two bilinear resamplings alone (half a pixel there and back) on this sharp slice.
  std::vector<float> t1(pd.size()), t2(pd.size());
  typename tps::Deformation<2>::Affine shift;
  shift << 1, 0, 1.0 / double(s[1]), 0, 1, 0;
  const tps::Deformation<2> half_px({4, 4}, Eigen::MatrixXd::Zero(2, 16), shift);
  TensorMap<float, 4> t1o(t1.data(), s), t2o(t2.data(), s);
  ConstTensorMap<float, 4> t1m(t1.data(), s);
  half_px.apply<float>(pool(), pm, t1o);
  half_px.inverse(4).apply<float>(pool(), t1m, t2o);
  const double mse_floor = eval::mse(a, eval::Image<float, 2>(t2.data(), s[1], s[2]), &hm);
  BOOST_TEST_MESSAGE("PD slice (8-bit), inside the head: MSE warped " << mse_warped << ", after the fitted inverse "
                                                                     << mse_back << " (two half-pixel resamplings alone: "
                                                                     << mse_floor << "); inverse composition error at most "
                                                                     << worst_px << " px");
  BOOST_CHECK(mse_warped > 1000);             // the warp moves anatomy by several pixels
  BOOST_CHECK(mse_back < 0.15 * mse_warped);  // the inverse undoes it ...
  BOOST_CHECK(mse_back < 1.5 * mse_floor);    // ... down to about the resampling blur
  BOOST_CHECK(worst_px < 0.25);
}

BOOST_AUTO_TEST_CASE(simulator_in_3d_on_the_ch2_crop) {
  // The ch2 crop (24 x 24 x 16, every fourth voxel) from the loss/eval fixture.
  const dt::Fixture fx("loss_eval.txt");
  const auto& sh = fx["vol.shape"];
  const Shape<5> s(1, static_cast<Index>(sh[0]), static_cast<Index>(sh[1]), static_cast<Index>(sh[2]), 1);
  std::vector<double> vol = fx["vol"];
  const auto opts = tps::DeformOptions().control(4).amplitude(0.1).rotation(2);
  const auto def = tps::simulate_deformation<3>(opts, 77);
  BOOST_CHECK(def.control_displacements() == tps::simulate_deformation<3>(opts, 77).control_displacements());
  std::vector<double> warped(vol.size()), back(vol.size());
  ConstTensorMap<double, 5> vm(vol.data(), s), wm(warped.data(), s);
  TensorMap<double, 5> wo(warped.data(), s), bo(back.data(), s);
  def.apply<double>(pool(), vm, wo);
  const auto inv = def.inverse(10);
  inv.apply<double>(pool(), wm, bo);
  double worst = 0;  // composition error in voxels of the x axis, at interior points
  for (double px : {-0.5, 0.0, 0.45})
    for (double py : {-0.4, 0.1, 0.5})
      for (double pz : {-0.3, 0.0, 0.35}) {
        const Eigen::Vector3d p(px, py, pz);
        worst = std::max(worst, (def.map(inv.map(p)) - p).norm() * 0.5 * double(s[1]));
      }
  BOOST_CHECK(worst < 0.3);
  Eigen::Tensor<std::uint8_t, 3> inner(s[1], s[2], s[3]);
  inner.setZero();
  for (Index z = 3; z < s[3] - 3; ++z)
    for (Index y = 3; y < s[2] - 3; ++y)
      for (Index x = 3; x < s[1] - 3; ++x) inner(x, y, z) = 1;
  const eval::Image<std::uint8_t, 3> im(inner.data(), s[1], s[2], s[3]);
  const eval::Image<double, 3> a(vol.data(), s[1], s[2], s[3]), w(warped.data(), s[1], s[2], s[3]),
      b(back.data(), s[1], s[2], s[3]);
  const double mw = eval::mse(a, w, &im), mb = eval::mse(a, b, &im);
  BOOST_TEST_MESSAGE("ch2 crop (8-bit, every 4th voxel), interior: MSE warped " << mw << ", after the fitted inverse "
                                                                                << mb << "; composition error "
                                                                                << worst << " voxel");
  // At this coarse sampling, trilinear resampling twice costs about as much as a voxel of motion,
  // so the check is that unwarping clearly helps.
  BOOST_CHECK(mb < 0.6 * mw);
  // The displacement field has the volume's shape and rebuilds the grid.
  const auto field = def.displacement({s[1], s[2], s[3]});
  BOOST_CHECK_EQUAL(field.size(), std::size_t(3 * s[1] * s[2] * s[3]));
}

/// The one-channel kernels against the general path: a 2-channel input whose channels are both the
/// 1-channel input gives, per channel, the same output and input gradient, and twice the grid
/// gradient (the general path is independent code: per-position corner records, double maths).
template <int Dim, class S>
void one_channel_equals_general(const std::array<Index, Dim>& e, PaddingMode pm, double lo, double hi, double tol) {
  Shape<Dim + 2> x1s, x2s, gs;
  x1s[0] = 1;
  x2s[0] = 2;
  gs[0] = Dim;
  Index P = 1;
  for (int d = 0; d < Dim; ++d) {
    x1s[d + 1] = x2s[d + 1] = e[d];
    gs[d + 1] = e[d] + d + 1;  // output extents differ from the input's
    P *= gs[d + 1];
  }
  x1s[Dim + 1] = x2s[Dim + 1] = gs[Dim + 1] = 2;
  const auto x1 = dt::convert<double>(dt::convert<S>(dt::random_vec<double>(num_elements(x1s), 31)));
  const auto dy1 = dt::convert<double>(dt::convert<S>(dt::random_vec<double>(P * 2, 32)));
  const auto g = dt::convert<double>(dt::convert<S>(dt::random_vec<double>(P * 2 * Dim, 33, lo, hi)));
  std::vector<double> x2(2 * x1.size()), dy2(2 * dy1.size());
  for (std::size_t i = 0; i < x1.size(); ++i) x2[2 * i] = x2[2 * i + 1] = x1[i];
  for (std::size_t i = 0; i < dy1.size(); ++i) dy2[2 * i] = dy2[2 * i + 1] = dy1[i];
  const auto y1 = sample<Dim, S>(pool(), x1s, x1, gs, g, pm);
  const auto y2 = sample<Dim, S>(pool(), x2s, x2, gs, g, pm);
  std::vector<double> dx1(x1.size(), 0.0), dg1(g.size(), 0.0), dx2(x2.size(), 0.0), dg2(g.size(), 0.0);
  sample_backward<Dim, S>(pool(), x1s, x1, gs, g, dy1, pm, dx1, dg1);
  sample_backward<Dim, S>(pool(), x2s, x2, gs, g, dy2, pm, dx2, dg2);
  double ey = 0, edx = 0, edg = 0;
  for (std::size_t i = 0; i < y1.size(); ++i) ey = std::max({ey, std::abs(y1[i] - y2[2 * i]), std::abs(y1[i] - y2[2 * i + 1])});
  for (std::size_t i = 0; i < x1.size(); ++i) edx = std::max(edx, std::abs(dx1[i] - dx2[2 * i]));
  for (std::size_t i = 0; i < g.size(); ++i) edg = std::max(edg, std::abs(2 * dg1[i] - dg2[i]) / (1 + std::abs(dg2[i])));
  BOOST_TEST_CONTEXT(Dim << "d " << (pm == PaddingMode::Border ? "border" : "zeros") << " grid in [" << lo << ", " << hi << "]") {
    BOOST_CHECK_SMALL(ey, tol);
    BOOST_CHECK_SMALL(edx, tol);
    BOOST_CHECK_SMALL(edg, 10 * tol);
  }
}

BOOST_AUTO_TEST_CASE(one_channel_kernels_equal_the_general_path) {
  for (auto pm : {PaddingMode::Border, PaddingMode::Zeros})
    for (double r : {1.05, 3.0}) {  // 3: most positions outside, far past the clamps
      one_channel_equals_general<2, double>({13, 11}, pm, -r, r, 1e-13);
      one_channel_equals_general<3, double>({7, 6, 5}, pm, -r, r, 1e-13);
      one_channel_equals_general<2, float>({37, 29}, pm, -r, r, 1e-5);
      one_channel_equals_general<3, float>({9, 8, 7}, pm, -r, r, 1e-5);
    }
}

BOOST_AUTO_TEST_CASE(one_channel_large_problems_are_thread_count_independent) {
  // Above 2^16 positions the one-channel kernels run the forward and the grid gradient on the pool
  // and scatter the input gradient serially: the same bits as the serial run.
  const Shape<4> xs(1, 190, 170, 1), gs(2, 260, 270, 1);
  const auto x = dt::random_vec<double>(num_elements(xs), 41);
  const auto g = dt::random_vec<double>(num_elements(gs), 42, -1.1, 1.1);
  const Shape<4> ys(1, 260, 270, 1);
  const auto dy = dt::random_vec<double>(num_elements(ys), 43);
  for (auto pm : {PaddingMode::Border, PaddingMode::Zeros}) {
    BOOST_CHECK((sample<2, float>(cpu(), xs, x, gs, g, pm) == sample<2, float>(pool(), xs, x, gs, g, pm)));
    std::vector<double> dx1(x.size(), 0.0), dg1(g.size(), 0.0), dx2 = dx1, dg2 = dg1;
    sample_backward<2, float>(cpu(), xs, x, gs, g, dy, pm, dx1, dg1);
    sample_backward<2, float>(pool(), xs, x, gs, g, dy, pm, dx2, dg2);
    BOOST_CHECK(dx1 == dx2);
    BOOST_CHECK(dg1 == dg2);
  }
}

/// Several channels, more positions than one table chunk (8192) of the many-channel backward: each
/// channel's input gradient equals the one-channel kernels' on that channel alone (other code), the
/// grid gradient their sum over the channels, and the serial context gives the same bits as the pool.
template <int Dim>
void many_channels_equal_one_channel_slices(Index C, const std::array<Index, Dim>& in_ext,
                                            const std::array<Index, Dim>& out_ext, PaddingMode pm) {
  Shape<Dim + 2> xs, x1s, gs;
  xs[0] = C;
  x1s[0] = 1;
  gs[0] = Dim;
  Index P = 1;
  for (int d = 0; d < Dim; ++d) {
    xs[d + 1] = x1s[d + 1] = in_ext[d];
    gs[d + 1] = out_ext[d];
    P *= out_ext[d];
  }
  xs[Dim + 1] = x1s[Dim + 1] = gs[Dim + 1] = 1;
  BOOST_REQUIRE(P > 8192);
  Shape<Dim + 2> ys = gs;
  ys[0] = C;
  const auto x = dt::random_vec<double>(num_elements(xs), 51);
  const auto g = random_grid<Dim>(in_ext, P, 52);
  const auto dy = dt::random_vec<double>(num_elements(ys), 53);
  std::vector<double> dx(x.size(), 0.0), dg(g.size(), 0.0);
  sample_backward<Dim, double>(pool(), xs, x, gs, g, dy, pm, dx, dg);
  const Index n_in = num_elements(x1s);
  std::vector<double> dg_sum(g.size(), 0.0);
  double edx = 0, scale = 0;
  for (Index c = 0; c < C; ++c) {
    std::vector<double> x1(n_in), dy1(P), dx1(n_in, 0.0), dg1(g.size(), 0.0);
    for (Index i = 0; i < n_in; ++i) x1[i] = x[i * C + c];
    for (Index q = 0; q < P; ++q) dy1[q] = dy[q * C + c];
    sample_backward<Dim, double>(cpu(), x1s, x1, gs, g, dy1, pm, dx1, dg1);
    for (Index i = 0; i < n_in; ++i) edx = std::max(edx, std::abs(dx[i * C + c] - dx1[i]));
    for (std::size_t i = 0; i < g.size(); ++i) dg_sum[i] += dg1[i];
  }
  for (double v : dg_sum) scale = std::max(scale, std::abs(v));
  BOOST_TEST_CONTEXT(Dim << "-D, " << C << " channels, " << (pm == PaddingMode::Border ? "border" : "zeros")) {
    BOOST_CHECK_SMALL(edx, 1e-11);
    BOOST_CHECK_SMALL(dt::max_abs_diff(dg, dg_sum), 1e-12 * scale);
    // float: the pool and the serial context, bit for bit (the scatter's channel ranges and chunks).
    std::vector<double> dxa(x.size(), 0.0), dga(g.size(), 0.0), dxb = dxa, dgb = dga;
    sample_backward<Dim, float>(cpu(), xs, x, gs, g, dy, pm, dxa, dga);
    sample_backward<Dim, float>(pool(), xs, x, gs, g, dy, pm, dxb, dgb);
    BOOST_CHECK(dxa == dxb);
    BOOST_CHECK(dga == dgb);
    BOOST_CHECK_SMALL(dt::max_abs_diff(dxa, dx), 1e-4 * dt::max_abs(dx));
  }
}

BOOST_AUTO_TEST_CASE(many_channel_backward_equals_one_channel_slices) {
  for (auto pm : {PaddingMode::Border, PaddingMode::Zeros}) {
    many_channels_equal_one_channel_slices<3>(6, {9, 8, 7}, {22, 21, 20}, pm);
    many_channels_equal_one_channel_slices<2>(16, {31, 27}, {100, 95}, pm);
    many_channels_equal_one_channel_slices<2>(5, {12, 10}, {97, 91}, pm);  // an odd split
  }
}

BOOST_AUTO_TEST_CASE(non_finite_grid_coordinates_give_nan_not_a_quiet_clamp) {
  for (Index C : {1, 3}) {  // the one-channel kernels and the general path
  const Shape<4> xs(C, 5, 4, 1), gs(2, 3, 1, 1);
  const auto x = dt::random_vec<double>(num_elements(xs), 51);
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  // Position 0: NaN x; 1: infinite y; 2: finite but huge (outside: 0 with Zeros, the edge with Border).
  const std::vector<double> g{nan, 0.1, 0.2, inf, 1e30, -0.3};
  for (auto pm : {PaddingMode::Border, PaddingMode::Zeros}) {
    for (const auto& y : {sample<2, float>(pool(), xs, x, gs, g, pm), sample<2, double>(pool(), xs, x, gs, g, pm)})
      for (Index c = 0; c < C; ++c) {
        BOOST_CHECK(std::isnan(y[c]));
        BOOST_CHECK(std::isnan(y[C + c]));
        BOOST_CHECK(std::isfinite(y[2 * C + c]));
        if (pm == PaddingMode::Zeros) BOOST_CHECK_EQUAL(y[2 * C + c], 0.0);
      }
  }
  }
}

BOOST_AUTO_TEST_CASE(bad_input_errors) {
  std::vector<double> x(3 * 5 * 4 * 2, 0.5), g(3 * 4 * 4 * 2, 0.0), y(3 * 4 * 4 * 2);
  ConstTensorMap<double, 4> xm(x.data(), 3, 5, 4, 2), gm(g.data(), 3, 4, 4, 2), gb(g.data(), 2, 4, 4, 3);
  TensorMap<double, 4> ym(y.data(), 3, 4, 4, 2);
  expect_error<ShapeError>([&] { tps::grid_sample_forward<2, double>(cpu(), xm, gm, ym); }, "coordinate components");
  expect_error<ShapeError>([&] { tps::grid_sample_forward<2, double>(cpu(), xm, gb, ym); }, "batch");
  ConstTensorMap<double, 4> g2(g.data(), 2, 4, 4, 2);
  TensorMap<double, 4> yw(y.data(), 3, 4, 3, 2);
  expect_error<ShapeError>([&] { tps::grid_sample_forward<2, double>(cpu(), xm, g2, yw); }, "expected output of shape");
  expect_error<ConfigError>([&] { tps::TpsSystem<2>({1, 6}, {8, 8}); }, "at least 2 points");
  expect_error<ConfigError>([&] { tps::simulate_deformation<2>(tps::DeformOptions().control(1), 1); }, "at least 2");
  tps::TpsGrid<2, double, Eigen::DefaultDevice> tg(cpu(), {3, 3}, {4, 4});
  std::vector<double> disp(2 * 9, 0.0), grid(2 * 16);
  disp[5] = std::nan("");
  ConstTensorMap<double, 3> dm(disp.data(), tg.disp_shape(1));
  TensorMap<double, 4> gr(grid.data(), tg.grid_shape(1));
  expect_error<NumericError>([&] { tg.forward(cpu(), dm, gr); }, "not finite");
  ConstTensorMap<double, 3> dbad(disp.data(), 2, 8, 1);
  expect_error<ShapeError>([&] { tg.forward(cpu(), dbad, gr); }, "control displacements of shape");
}
