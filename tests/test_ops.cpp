#define BOOST_TEST_MODULE ops
#include "support/test_util.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace dicyc;
using namespace dt;
template <class D>
using Ctx = core::Context<D>;
using Cpu = Eigen::DefaultDevice;
using Pool = Eigen::ThreadPoolDevice;

template <class S, int R, class D>
core::Tensor<S, R, D> dev(Ctx<D>& ctx, const Shape<R>& s, const std::vector<double>& v) {
  return core::Tensor<S, R, D>::from_host(ctx, s, convert<S>(v));
}

// ------------------------------------------------------------------------------ reflection pad
template <int Dim>
std::vector<double> naive_reflect(const Shape<Dim + 2>& xs, const std::vector<double>& x,
                                  const std::array<Index, Dim>& p, Shape<Dim + 2>& ys) {
  ys = xs;
  for (int d = 0; d < Dim; ++d) ys[d + 1] += 2 * p[d];
  std::vector<double> y(static_cast<std::size_t>(num_elements(ys)));
  const auto out = spatial_of<Dim>(ys);
  for (Index n = 0; n < xs[Dim + 1]; ++n)
    for (Index c = 0; c < xs[0]; ++c)
      for_each_pos<Dim>(out, [&](const std::array<Index, Dim>& o) {
        std::array<Index, Dim> i;
        for (int d = 0; d < Dim; ++d) {
          Index v = o[d] - p[d];
          if (v < 0) v = -v;                                  // mirror at the low edge
          if (v > xs[d + 1] - 1) v = 2 * (xs[d + 1] - 1) - v;  // mirror at the high edge
          i[d] = v;
        }
        y[flat<Dim>(ys, c, o, n)] = x[flat<Dim>(xs, c, i, n)];
      });
  return y;
}

template <int Dim, class S, class D>
std::vector<double> pad_fwd(Ctx<D>& ctx, const Shape<Dim + 2>& xs, const std::vector<double>& x,
                            const std::array<Index, Dim>& p) {
  auto X = dev<S, Dim + 2>(ctx, xs, x);
  core::Tensor<S, Dim + 2, D> Y(ctx, ops::reflection_pad_output_shape<Dim>(xs, p));
  auto ym = Y.map();
  ops::reflection_pad_forward<Dim>(ctx, p, X.cmap(), ym);
  return convert<double>(Y.to_host());
}

template <int Dim, class S, class D>
std::vector<double> pad_bwd(Ctx<D>& ctx, const Shape<Dim + 2>& xs, const std::vector<double>& dy,
                            const std::array<Index, Dim>& p, double pre) {
  auto DY = dev<S, Dim + 2>(ctx, ops::reflection_pad_output_shape<Dim>(xs, p), dy);
  auto DX = dev<S, Dim + 2>(ctx, xs, std::vector<double>(static_cast<std::size_t>(num_elements(xs)), pre));
  auto dxm = DX.map();
  ops::reflection_pad_backward<Dim>(ctx, p, DY.cmap(), dxm);
  return convert<double>(DX.to_host());
}

template <int Dim>
void check_pad(const Shape<Dim + 2>& xs, const std::array<Index, Dim>& p) {
  BOOST_TEST_CONTEXT("pad " << shape_str(p) << " on " << shape_str(xs)) {
    auto x = random_vec<double>(num_elements(xs), 3);
    Shape<Dim + 2> ys;
    const auto ref = naive_reflect<Dim>(xs, x, p, ys);
    BOOST_CHECK((pad_fwd<Dim, double>(cpu(), xs, x, p) == ref));
    BOOST_CHECK((pad_fwd<Dim, float>(pool(), xs, x, p) == convert<double>(convert<float>(ref))));
    BOOST_CHECK_LT(max_abs_diff(pad_fwd<Dim, half>(pool(), xs, x, p), ref), 1e-3);
    // Backward: the adjoint, checked by a gradient check on <pad(x), g>, with accumulation.
    const auto g = random_vec<double>(num_elements(ys), 4);
    auto dx = pad_bwd<Dim, double>(cpu(), xs, g, p, 0.5);
    for (auto& v : dx) v -= 0.5;
    gradcheck(x, dx, [&] { return dot(pad_fwd<Dim, double>(cpu(), xs, x, p), g); }, "reflection pad");
    BOOST_CHECK_LT(max_abs_diff(pad_bwd<Dim, float>(pool(), xs, g, p, 0.0), dx), 1e-5);
    BOOST_CHECK_LT(max_abs_diff(pad_bwd<Dim, half>(pool(), xs, g, p, 0.0), dx), 2e-2);
  }
}

BOOST_AUTO_TEST_CASE(reflection_pad_2d_3d) {
  check_pad<2>(Shape<4>(2, 7, 9, 2), {3, 3});  // the generator's stem pad
  check_pad<2>(Shape<4>(3, 4, 5, 1), {1, 1});  // the residual blocks' pad
  check_pad<2>(Shape<4>(1, 4, 3, 1), {3, 2});  // pad = size - 1: outputs read an input up to three times
  check_pad<3>(Shape<5>(2, 5, 3, 4, 2), {1, 1, 1});
  check_pad<3>(Shape<5>(1, 4, 5, 4, 1), {3, 3, 3});
  // More rows than threads, unequal pads per axis, 1 channel (the stem's input).
  check_pad<2>(Shape<4>(5, 33, 17, 2), {3, 1});
  check_pad<2>(Shape<4>(1, 12, 9, 3), {0, 3});
  check_pad<2>(Shape<4>(4, 6, 11, 1), {2, 0});
  check_pad<3>(Shape<5>(3, 6, 4, 7, 2), {2, 1, 3});
  expect_error<ShapeError>([] { ops::reflection_pad_output_shape<2>(Shape<4>(1, 3, 8, 1), {3, 3}); },
                           "padding [3, 3] must be smaller than the input's spatial size, but got input of shape [1, 3, 8, 1]");
}

// ------------------------------------------------------------------------------ instance norm
template <int Dim>
std::vector<double> naive_in(const Shape<Dim + 2>& xs, const std::vector<double>& x, double eps) {
  const Index C = xs[0], N = xs[Dim + 1], S = num_elements(xs) / (C * N);
  std::vector<double> y(x.size());
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) {
      double m = 0, v = 0;
      for (Index s = 0; s < S; ++s) m += x[c + C * (s + S * n)];
      m /= S;
      for (Index s = 0; s < S; ++s) v += std::pow(x[c + C * (s + S * n)] - m, 2);
      v /= S;
      for (Index s = 0; s < S; ++s) y[c + C * (s + S * n)] = (x[c + C * (s + S * n)] - m) / std::sqrt(v + eps);
    }
  return y;
}

/// An instance norm forward on the device: its output Y and statistics (mean M, invstd I).
template <int Dim, class S, class D>
struct InForward {
  core::Tensor<S, Dim + 2, D> Y;
  core::Tensor<acc_t<S>, 2, D> M, I;
  InForward(Ctx<D>& ctx, const Shape<Dim + 2>& xs, const std::vector<double>& x)
      : Y(ctx, xs), M(ctx, Shape<2>(xs[0], xs[Dim + 1])), I(ctx, Shape<2>(xs[0], xs[Dim + 1])) {
    auto X = dev<S, Dim + 2>(ctx, xs, x);
    auto ym = Y.map();
    auto mm = M.map();
    auto im = I.map();
    ops::instance_norm_forward<Dim>(ctx, X.cmap(), ym, mm, im);
  }
};

template <int Dim, class S, class D>
std::vector<double> in_fwd(Ctx<D>& ctx, const Shape<Dim + 2>& xs, const std::vector<double>& x,
                           std::vector<double>* dy_in = nullptr, std::vector<double>* dx_out = nullptr) {
  const InForward<Dim, S, D> f(ctx, xs, x);
  const auto& Y = f.Y;
  const auto& I = f.I;
  if (dy_in) {
    auto DY = dev<S, Dim + 2>(ctx, xs, *dy_in);
    auto DX = dev<S, Dim + 2>(ctx, xs, std::vector<double>(x.size(), 0.125));
    auto dxm = DX.map();
    ops::instance_norm_backward<Dim>(ctx, Y.cmap(), I.cmap(), DY.cmap(), dxm);
    *dx_out = convert<double>(DX.to_host());
    for (auto& v : *dx_out) v -= 0.125;
  }
  return convert<double>(Y.to_host());
}

template <int Dim>
void check_in(const Shape<Dim + 2>& xs) {
  BOOST_TEST_CONTEXT("instance norm on " << shape_str(xs)) {
    auto x = random_vec<double>(num_elements(xs), 8, -2.0, 3.0);
    const auto ref = naive_in<Dim>(xs, x, 1e-5);
    BOOST_CHECK_LT(max_abs_diff(in_fwd<Dim, double>(cpu(), xs, x), ref), 1e-12);
    BOOST_CHECK_LT(max_abs_diff(in_fwd<Dim, float>(pool(), xs, x), ref), 1e-5);
    BOOST_CHECK_LT(max_abs_diff(in_fwd<Dim, half>(pool(), xs, x), ref), 1e-2);
    const auto g = random_vec<double>(num_elements(xs), 9);
    std::vector<double> dx, dxf, dxh;
    in_fwd<Dim, double>(cpu(), xs, x, const_cast<std::vector<double>*>(&g), &dx);
    gradcheck(x, dx, [&] { return dot(in_fwd<Dim, double>(cpu(), xs, x), g); }, "instance norm", 1e-6, 1e-6);
    in_fwd<Dim, float>(pool(), xs, x, const_cast<std::vector<double>*>(&g), &dxf);
    in_fwd<Dim, half>(pool(), xs, x, const_cast<std::vector<double>*>(&g), &dxh);
    const double s = std::max(1.0, max_abs(dx));
    BOOST_CHECK_LT(max_abs_diff(dxf, dx), 1e-4 * s);
    BOOST_CHECK_LT(max_abs_diff(dxh, dx), 3e-2 * s);
  }
}

BOOST_AUTO_TEST_CASE(instance_norm_2d_3d) {
  check_in<2>(Shape<4>(3, 7, 9, 2));
  check_in<2>(Shape<4>(1, 3, 4, 1));
  check_in<3>(Shape<5>(2, 5, 3, 4, 2));
  // More positions than one of the CPU path's 2048-position chunks, the last one partial.
  check_in<2>(Shape<4>(16, 50, 45, 1));
  check_in<3>(Shape<5>(3, 13, 13, 13, 2));
  // From kNormColumnSumsMinChannels channels the backward's sum of dy * y takes column_sums4 (as
  // the forward's variance does at any width); position counts that leave 1 and 3 columns after
  // the groups of four.
  check_in<2>(Shape<4>(64, 7, 5, 2));
  check_in<3>(Shape<5>(67, 5, 5, 3, 1));
  core::Context<Cpu>& c = cpu();
  core::Tensor<float, 4, Cpu> x(c, Shape<4>(3, 4, 4, 1)), y(c, Shape<4>(3, 4, 5, 1));
  core::Tensor<float, 2, Cpu> m(c, Shape<2>(3, 1)), i(c, Shape<2>(3, 1));
  auto ym = y.map();
  auto mm = m.map();
  auto im = i.map();
  expect_error<ShapeError>([&] { ops::instance_norm_forward<2>(c, x.cmap(), ym, mm, im); },
                           "instance_norm2d: expected output of shape [3, 4, 4, 1], but got [3, 4, 5, 1] instead");
}

// ------------------------------------------------------------------------------ activations, add
enum class Act { Relu, Leaky, Tanh };

template <class S, class D>
std::vector<double> act_run(Ctx<D>& ctx, Act a, const std::vector<double>& x, const std::vector<double>* g,
                            std::vector<double>* dx) {
  const Shape<3> s(2, 3, static_cast<Index>(x.size()) / 6);
  auto X = dev<S, 3>(ctx, s, x);
  core::Tensor<S, 3, D> Y(ctx, s);
  auto ym = Y.map();
  if (a == Act::Relu) ops::relu_forward(ctx, X.cmap(), ym);
  if (a == Act::Leaky) ops::leaky_relu_forward(ctx, X.cmap(), ym, 0.2);
  if (a == Act::Tanh) ops::tanh_forward(ctx, X.cmap(), ym);
  if (g) {
    auto G = dev<S, 3>(ctx, s, *g);
    auto DX = dev<S, 3>(ctx, s, std::vector<double>(x.size(), 1.0));
    auto dxm = DX.map();
    if (a == Act::Relu) ops::relu_backward(ctx, Y.cmap(), G.cmap(), dxm);
    if (a == Act::Leaky) ops::leaky_relu_backward(ctx, Y.cmap(), G.cmap(), dxm, 0.2);
    if (a == Act::Tanh) ops::tanh_backward(ctx, Y.cmap(), G.cmap(), dxm);
    *dx = convert<double>(DX.to_host());
    for (auto& v : *dx) v -= 1.0;
  }
  return convert<double>(Y.to_host());
}

// ------------------------------------------------------------------------------ overwrite
// The backward ops' overwrite mode (a fresh buffer, not zeroed first): written over NaN, the
// input gradient equals the one added onto zeros, bit for bit, on every CPU path (double and
// float on one thread and the pool, half; the instance norm's chunked Matrix path at 16 and 64
// channels, 2-D and 3-D; reflection pad's row fold in 2-D and 3-D).
template <class S, int R, class D, class Op>
void check_overwrite_op(Ctx<D>& ctx, const Shape<R>& dxs, const char* what, Op&& op) {
  BOOST_TEST_CONTEXT(what << " on " << shape_str(dxs)) {
    const std::size_t n = static_cast<std::size_t>(num_elements(dxs));
    auto A = dev<S, R>(ctx, dxs, std::vector<double>(n, 0.0));
    auto O = core::Tensor<S, R, D>::from_host(ctx, dxs, std::vector<S>(n, S(std::numeric_limits<float>::quiet_NaN())));
    auto am = A.map();
    auto om = O.map();
    op(am, false);
    op(om, true);
    const auto a = convert<double>(A.to_host()), o = convert<double>(O.to_host());
    BOOST_CHECK(a == o);
    BOOST_CHECK(std::all_of(a.begin(), a.end(), [](double v) { return std::isfinite(v); }));
  }
}

template <class S, class D>
void check_overwrite_ops(Ctx<D>& ctx) {
  // Activations (any rank).
  const Shape<4> as(5, 7, 3, 2);
  const auto y = dev<S, 4>(ctx, as, random_vec<double>(num_elements(as), 31));
  const auto g = dev<S, 4>(ctx, as, random_vec<double>(num_elements(as), 32));
  check_overwrite_op<S, 4>(ctx, as, "relu", [&](auto& dx, bool ow) { ops::relu_backward(ctx, y.cmap(), g.cmap(), dx, ow); });
  check_overwrite_op<S, 4>(ctx, as, "leaky_relu",
                           [&](auto& dx, bool ow) { ops::leaky_relu_backward(ctx, y.cmap(), g.cmap(), dx, 0.2, ow); });
  const auto t = dev<S, 4>(ctx, as, random_vec<double>(num_elements(as), 33, -0.9, 0.9));
  check_overwrite_op<S, 4>(ctx, as, "tanh", [&](auto& dx, bool ow) { ops::tanh_backward(ctx, t.cmap(), g.cmap(), dx, ow); });
  // Instance norm: the statistics from a forward.
  auto norm = [&](auto dim_tag, const auto& xs) {
    constexpr int Dim = decltype(dim_tag)::value;
    const InForward<Dim, S, D> f(ctx, xs, random_vec<double>(num_elements(xs), 34, -2.0, 3.0));
    auto G = dev<S, Dim + 2>(ctx, xs, random_vec<double>(num_elements(xs), 35));
    check_overwrite_op<S, Dim + 2>(ctx, xs, "instance_norm", [&](auto& dx, bool ow) {
      ops::instance_norm_backward<Dim>(ctx, f.Y.cmap(), f.I.cmap(), G.cmap(), dx, ow);
    });
  };
  norm(std::integral_constant<int, 2>(), Shape<4>(16, 50, 45, 1));
  norm(std::integral_constant<int, 2>(), Shape<4>(64, 7, 5, 2));
  norm(std::integral_constant<int, 3>(), Shape<5>(3, 13, 13, 13, 2));
  // Reflection pad.
  auto pad = [&](auto dim_tag, const auto& xs, const auto& p) {
    constexpr int Dim = decltype(dim_tag)::value;
    const auto ys = ops::reflection_pad_output_shape<Dim>(xs, p);
    auto DY = dev<S, Dim + 2>(ctx, ys, random_vec<double>(num_elements(ys), 36));
    check_overwrite_op<S, Dim + 2>(ctx, xs, "reflection_pad",
                                   [&](auto& dx, bool ow) { ops::reflection_pad_backward<Dim>(ctx, p, DY.cmap(), dx, ow); });
  };
  pad(std::integral_constant<int, 2>(), Shape<4>(4, 6, 5, 2), std::array<Index, 2>{2, 3});
  pad(std::integral_constant<int, 3>(), Shape<5>(3, 5, 4, 6, 1), std::array<Index, 3>{1, 2, 1});
}

BOOST_AUTO_TEST_CASE(backward_overwrite_equals_accumulate_onto_zeros) {
  check_overwrite_ops<double>(cpu());
  check_overwrite_ops<float>(cpu());
  check_overwrite_ops<float>(pool());
  check_overwrite_ops<half>(pool());
}

BOOST_AUTO_TEST_CASE(activations) {
  // Keep inputs away from the kinks at 0 for the finite differences.
  auto x = random_vec<double>(60, 12);
  for (auto& v : x)
    if (std::abs(v) < 0.05) v += 0.1;
  const auto g = random_vec<double>(60, 13);
  for (Act a : {Act::Relu, Act::Leaky, Act::Tanh}) {
    BOOST_TEST_CONTEXT("activation " << int(a)) {
      std::vector<double> ref(x.size());
      for (std::size_t i = 0; i < x.size(); ++i)
        ref[i] = a == Act::Relu ? std::max(0.0, x[i]) : a == Act::Leaky ? (x[i] > 0 ? x[i] : 0.2 * x[i]) : std::tanh(x[i]);
      BOOST_CHECK_LT(max_abs_diff(act_run<double>(cpu(), a, x, nullptr, nullptr), ref), 1e-15);
      BOOST_CHECK_LT(max_abs_diff(act_run<float>(pool(), a, x, nullptr, nullptr), ref), 1e-6);
      BOOST_CHECK_LT(max_abs_diff(act_run<half>(pool(), a, x, nullptr, nullptr), ref), 2e-3);
      std::vector<double> dx, dxf, dxh;
      act_run<double>(cpu(), a, x, &g, &dx);
      gradcheck(x, dx, [&] { return dot(act_run<double>(cpu(), a, x, nullptr, nullptr), g); }, "activation");
      act_run<float>(pool(), a, x, &g, &dxf);
      act_run<half>(pool(), a, x, &g, &dxh);
      BOOST_CHECK_LT(max_abs_diff(dxf, dx), 1e-6);
      BOOST_CHECK_LT(max_abs_diff(dxh, dx), 5e-3);
    }
  }
  // Add and its backward (accumulating, null skips).
  auto& c = cpu();
  const Shape<2> s(3, 4);
  auto A = dev<double, 2>(c, s, random_vec<double>(12, 1));
  auto B = dev<double, 2>(c, s, random_vec<double>(12, 2));
  core::Tensor<double, 2, Cpu> Y(c, s);
  auto ym = Y.map();
  ops::add_forward(c, A.cmap(), B.cmap(), ym);
  const auto a = A.to_host(), b = B.to_host(), y = Y.to_host();
  for (int i = 0; i < 12; ++i) BOOST_CHECK_EQUAL(y[i], a[i] + b[i]);
  auto DA = dev<double, 2>(c, s, std::vector<double>(12, 1.0));
  auto dam = DA.map();
  ops::add_backward<double, 2>(c, Y.cmap(), &dam, nullptr);
  const auto da = DA.to_host();
  for (int i = 0; i < 12; ++i) BOOST_CHECK_EQUAL(da[i], 1.0 + y[i]);
  core::Tensor<double, 2, Cpu> wrong(c, Shape<2>(4, 3));
  auto wm = wrong.map();
  expect_error<ShapeError>([&] { ops::add_forward(c, A.cmap(), wrong.cmap(), wm); },
                           "add: expected second operand of shape [3, 4], but got [4, 3] instead");
}

// ------------------------------------------------------------------------------ reductions
BOOST_AUTO_TEST_CASE(reductions) {
  auto& c = cpu();
  // Hand-computed values on a small tensor.
  const std::vector<double> v{1.0, -2.0, 0.0, 3.5, -0.5, 2.0};
  auto X = dev<double, 2>(c, Shape<2>(2, 3), v);
  BOOST_CHECK_CLOSE(ops::mean(c, X.cmap()), 4.0 / 6.0, 1e-12);
  BOOST_CHECK_CLOSE(ops::sum_squares(c, X.cmap()), 1 + 4 + 0 + 12.25 + 0.25 + 4, 1e-12);
  BOOST_CHECK_CLOSE(ops::sum_abs(c, X.cmap()), 9.0, 1e-12);
  // Backward, accumulating; the L1 subgradient at 0 is 0.
  core::Tensor<double, 2, Cpu> D(c, Shape<2>(2, 3));
  D.set_zero();
  auto dm = D.map();
  ops::sum_abs_backward(c, X.cmap(), 2.0, dm);
  const std::vector<double> want_abs{2, -2, 0, 2, -2, 2};
  BOOST_CHECK(D.to_host() == want_abs);
  D.set_zero();
  ops::sum_squares_backward(c, X.cmap(), 0.5, dm);
  BOOST_CHECK(D.to_host() == v);
  D.set_zero();
  ops::mean_backward(c, X.cmap(), 3.0, dm);
  for (double e : D.to_host()) BOOST_CHECK_CLOSE(e, 0.5, 1e-12);
  // Float and half agree with double, half accumulating in float over 10^5 elements.
  const auto big = random_vec<double>(100000, 5);
  const Shape<1> bs(100000);
  auto Bd = dev<double, 1>(c, bs, big);
  auto Bf = dev<float, 1>(pool(), bs, big);
  auto Bh = dev<half, 1>(pool(), bs, big);
  const double sd = ops::sum_abs(c, Bd.cmap());
  BOOST_CHECK_CLOSE(double(ops::sum_abs(pool(), Bf.cmap())), sd, 1e-3);
  BOOST_CHECK_CLOSE(double(ops::sum_abs(pool(), Bh.cmap())), sd, 0.1);
  BOOST_CHECK_CLOSE(double(ops::sum_squares(pool(), Bh.cmap())), ops::sum_squares(c, Bd.cmap()), 0.2);
  core::Tensor<double, 1, Cpu> empty(c, Shape<1>(0));
  expect_error<ShapeError>([&] { ops::mean(c, empty.cmap()); }, "mean: empty input of shape [0]");
}
