#define BOOST_TEST_MODULE conv2d
#include "conv_cases.hpp"

using namespace dt;
using O = ConvOptions<2>;

// Every kernel/stride/padding the generator, discriminator, STN and offset branches use, on odd
// sizes, batch 2.
static std::vector<ConvCase<2>> cases() {
  return {
      {O(3, 4, 7), Shape<4>(3, 9, 11, 2), false, "gen stem k7 s1 p0"},
      {O(3, 5, 3).stride(2).padding(1), Shape<4>(3, 7, 9, 2), false, "gen down k3 s2 p1"},
      {O(4, 4, 3), Shape<4>(4, 5, 7, 2), false, "gen res k3 s1 p0"},
      {O(4, 3, 3).padding(1), Shape<4>(4, 3, 4, 2), false, "offset k3 s1 p1"},
      {O(2, 4, 4).stride(2).padding(1), Shape<4>(2, 7, 9, 2), false, "disc k4 s2 p1"},
      {O(3, 2, 4).padding(1), Shape<4>(3, 5, 6, 2), false, "disc k4 s1 p1"},
      {O(5, 3, 1), Shape<4>(5, 3, 4, 2), false, "k1 s1 p0 (no im2col)"},
      {O(4, 3, 3).stride(2).padding(1).output_padding(1), Shape<4>(4, 3, 5, 2), true, "gen up convT k3 s2 p1 op1"},
      {O(3, 2, 4).stride(2).padding(1), Shape<4>(3, 4, 3, 2), true, "convT k4 s2 p1"},
      // The CPU gather's runs: one channel, pads beyond the kernel (the flipped stride-1 input
      // gradient gets a negative pad), per-axis kernels, strides and pads, one output channel, a
      // stride-1 transposed conv; and the one-output-row products without a gather (plane_gemv:
      // to one channel at stride 1, padded or not, and the input gradient of a 1-channel conv).
      {O(1, 4, 7), Shape<4>(1, 10, 8, 1), false, "1-channel stem k7 s1 p0"},
      {O(3, 2, 2).padding(2), Shape<4>(3, 4, 5, 2), false, "k2 s1 p2 (pad beyond the kernel)"},
      {O(3, 1, {3, 5}).stride({2, 1}).padding({0, 2}), Shape<4>(3, 8, 6, 1), false, "k3x5 s2x1 p0x2 to 1 channel"},
      {O(2, 3, 3).padding(1), Shape<4>(2, 4, 5, 2), true, "convT k3 s1 p1"},
      {O(3, 1, {3, 2}).padding({1, 2}), Shape<4>(3, 6, 5, 2), false, "k3x2 s1 p1x2 to 1 channel"},
      // Stride-1 3x3 convs with >= kWinogradMinChannels channels both ways take Winograd F(4x4,
      // 3x3) (ops/winograd.hpp): edge tiles on both axes, every padding it takes, batch 2.
      {O(128, 128, 3).padding(1), Shape<4>(128, 6, 5, 2), false, "winograd 128->128 p1"},
      {O(130, 128, 3), Shape<4>(130, 9, 7, 1), false, "winograd 130->128 p0"},
      {O(128, 131, 3).padding(2), Shape<4>(128, 3, 4, 2), false, "winograd 128->131 p2"},
      // Input gradients and transposed-conv forwards with >= kCol2imMinChannels channels on both
      // sides are a GEMM with the weight transposed and a col2im (ops/conv.hpp gemm_col2im).
      {O(64, 66, 3).stride(2).padding(1), Shape<4>(64, 7, 9, 2), false, "col2im 64->66 k3 s2 p1"},
      {O(65, 64, 4).padding(1), Shape<4>(65, 5, 6, 1), false, "col2im 65->64 k4 s1 p1"},
      {O(64, 64, 2).padding(2), Shape<4>(64, 3, 4, 2), false, "col2im 64->64 k2 s1 p2 (pad beyond the kernel)"},
      {O(66, 64, 3).stride(2).padding(1).output_padding(1), Shape<4>(66, 3, 5, 2), true, "col2im convT 66->64 k3 s2 op1"},
      {O(64, 65, 4).stride(2).padding(1), Shape<4>(64, 4, 3, 1), true, "col2im convT 64->65 k4 s2 p1"},
      // ... and with <= 16 channels on the image side, a GEMM depth >= kCol2imThinMinDepth and
      // stride >= 2, a GEMM and a gather per image pixel (gemm_col2im_thin).
      {O(1, 16, 7).stride(2).padding(3), Shape<4>(1, 10, 8, 2), false, "thin col2im 1 <- 16 k7 s2 p3"},
      {O(5, 17, 4).stride(2).padding(1), Shape<4>(5, 7, 9, 2), false, "thin col2im 5 <- 17 k4 s2 p1"},
      {O(3, 16, 3).stride(2).padding(2), Shape<4>(3, 5, 6, 1), false, "thin col2im k3 s2 p2 (pad beyond)"},
      {O(18, 3, 3).stride(2).padding(1).output_padding(1), Shape<4>(18, 3, 5, 2), true, "thin col2im convT 18->3 op1"},
  };
}

BOOST_AUTO_TEST_CASE(forward_matches_naive) {
  for (const auto& c : cases()) check_forward<2>(c);
}
BOOST_AUTO_TEST_CASE(backward_gradcheck_and_parity) {
  for (const auto& c : cases()) check_backward<2>(c);
}
BOOST_AUTO_TEST_CASE(tiling_and_generic_paths) {
  for (const auto& c : cases()) check_tiling_and_generic<2>(c);
}

BOOST_AUTO_TEST_CASE(col2im_dispatch) {
  check_col2im_dispatch<2>({{O(64, 66, 3).stride(2).padding(1), Shape<4>(64, 7, 9, 2), false, "conv k3 s2"},
                            {O(66, 64, 3).stride(2).padding(1).output_padding(1), Shape<4>(66, 3, 5, 2), true, "convT"},
                            {O(16, 66, 3).stride(2).padding(1), Shape<4>(16, 7, 9, 2), false, "thin: 16 channels"},
                            {O(1, 16, 4).stride(2).padding(1), Shape<4>(1, 9, 7, 2), false, "thin: 1 channel"},
                            {O(17, 2, 4).stride(2).padding(1), Shape<4>(17, 4, 5, 1), true, "thin convT"}},
                           {{O(64, 63, 3).stride(2).padding(1), Shape<4>(64, 7, 9, 2), false, "64 <- 63"},
                            {O(17, 66, 3).stride(2).padding(1), Shape<4>(17, 7, 9, 2), false, "17 <- 66"},
                            {O(8, 15, 3).stride(2).padding(1), Shape<4>(8, 7, 9, 2), false, "depth 15"},
                            {O(1, 16, 7).padding(3), Shape<4>(1, 9, 7, 2), false, "stride 1"},
                            {O(4, 16, 3).stride({2, 1}).padding(1), Shape<4>(4, 9, 7, 1), false, "stride 2x1"}});
}

BOOST_AUTO_TEST_CASE(col2im_thin_gather) {
  check_col2im_gather<2>({O(1, 16, 7).stride(2).padding(3), Shape<4>(1, 10, 8, 2), false, "1 <- 16 k7 s2 p3"});
  check_col2im_gather<2>({O(5, 17, 4).stride(2).padding(1), Shape<4>(5, 7, 9, 2), false, "5 <- 17 k4 s2 p1"});
  check_col2im_gather<2>({O(3, 16, 3).stride({2, 3}).padding({2, 0}), Shape<4>(3, 8, 7, 1), false, "k3 s2x3 p2x0"});
  check_col2im_gather<2>({O(18, 3, 3).stride(2).padding(1).output_padding(1), Shape<4>(18, 3, 5, 2), true, "convT"});
}

BOOST_AUTO_TEST_CASE(shape_errors) {
  using namespace dicyc;
  auto& ctx = contexts().cpu;
  const auto opts = O(64, 128, 3).stride(2).padding(1).name("g_ab.down1");
  core::Tensor<float, 4, Eigen::DefaultDevice> w(ctx, ops::conv_weight_shape(opts));
  core::Tensor<float, 4, Eigen::DefaultDevice> x(ctx, Shape<4>(128, 64, 64, 1));
  core::Tensor<float, 4, Eigen::DefaultDevice> y(ctx, Shape<4>(128, 32, 32, 1));
  auto ym = y.map();
  // Wrong channels: the message names the module, the weight and the input shape.
  expect_error<ShapeError>([&] { ops::conv_forward<2>(ctx, opts, x.cmap(), w.cmap(), nullptr, ym); },
                           "conv2d 'g_ab.down1': expected input with 64 channels (weight [128, 64, 3, 3]), but got "
                           "input of shape [128, 64, 64, 1] instead");
  // Input smaller than the kernel.
  core::Tensor<float, 4, Eigen::DefaultDevice> tiny(ctx, Shape<4>(3, 2, 2, 1));
  const auto o7 = O(3, 4, 7).name("stem");
  expect_error<ShapeError>([&] { ops::conv_output_shape(o7, tiny.shape()); }, "is smaller than the kernel 7 x 7");
  // Stride 0.
  expect_error<ConfigError>([&] { ops::conv_output_shape(O(3, 4, 3).stride(0), Shape<4>(3, 8, 8, 1)); },
                            "stride must be positive, got stride [0, 0]");
  // Wrong output shape.
  core::Tensor<float, 4, Eigen::DefaultDevice> x2(ctx, Shape<4>(64, 64, 64, 1)), y16(ctx, Shape<4>(128, 16, 16, 1));
  auto y16m = y16.map();
  expect_error<ShapeError>([&] { ops::conv_forward<2>(ctx, opts, x2.cmap(), w.cmap(), nullptr, y16m); },
                           "expected output of shape [128, 32, 32, 1], but got [128, 16, 16, 1] instead");
  // Mismatched gradient shape.
  core::Tensor<float, 4, Eigen::DefaultDevice> dy(ctx, Shape<4>(128, 31, 32, 1)), dx(ctx, x2.shape());
  auto dxm = dx.map();
  expect_error<ShapeError>(
      [&] { ops::conv_backward<2>(ctx, opts, x2.cmap(), w.cmap(), dy.cmap(), &dxm, nullptr, nullptr); },
      "expected output gradient of shape [128, 32, 32, 1], but got [128, 31, 32, 1] instead");
  // Wrong rank of run-time data entering the library.
  expect_error<ShapeError>([&] { to_shape<4>({1, 2, 3}, "conv2d input"); },
                           "conv2d input: expected a tensor of rank 4, but got rank 3 (shape [1, 2, 3]) instead");
  // Transposed conv: output padding must be smaller than the stride.
  expect_error<ConfigError>(
      [&] { ops::conv_transpose_output_shape(O(4, 2, 3).stride(1).output_padding(1), Shape<4>(4, 3, 3, 1)); },
      "must be smaller than the stride");
}

BOOST_AUTO_TEST_CASE(swap_kernel_axes_tiles) { check_swap_kernel_axes<2>(); }

// ------------------------------------------------------------------ Winograd F(4x4, 3x3)
// The kernels called directly, on shapes below the dispatch threshold too: 1 channel, odd sizes
// smaller than a tile, every padding, batches; double against the naive conv (forward) and the
// im2col path's gradients (gradient-checked above), float within Winograd's error, and the result
// independent of the pool and of the block size (workspace limit).
namespace {
struct WinoCase {
  Index cin, cout, w, h, n, p;
};

template <class S, class Dev>
void winograd_run(Ctx<Dev>& ctx, const WinoCase& k, const std::vector<double>& x, const std::vector<double>& w,
                  const std::vector<double>& dy, std::vector<double>& y, std::vector<double>& dx,
                  std::vector<double>& dw, std::vector<double>& dx_copy) {
  using namespace dicyc;
  const auto o = O(k.cin, k.cout, 3).padding(k.p);
  const Shape<4> xs(k.cin, k.w, k.h, k.n), ys = ops::conv_output_shape(o, xs);
  const auto X = convert<S>(x), W = convert<S>(w), DY = convert<S>(dy);
  std::vector<S> swapped(W.size()), Y(static_cast<std::size_t>(num_elements(ys))), DX(X.size(), S(0.5)),
      DW(W.size(), S(0.5));
  const Index cc = k.cin * k.cout;
  for (Index t = 0; t < 9; ++t)
    for (Index b = 0; b < k.cin; ++b)
      for (Index a = 0; a < k.cout; ++a) swapped[std::size_t(b + k.cin * a + cc * t)] = W[std::size_t(a + k.cout * b + cc * t)];
  ops::detail::winograd_conv2d<S>(ctx, X.data(), xs, k.cout, [&](int a, int b) { return W.data() + cc * (a + 3 * b); },
                                  Y.data(), ys, k.p, k.p, false);
  // The input gradient as conv_backward runs it (w's taps, transposed operand), and on an
  // explicitly transposed copy of the kernel (returned in dx_copy).
  ops::detail::winograd_conv2d<S>(
      ctx, DY.data(), ys, k.cin, [&](int a, int b) { return W.data() + cc * ((2 - a) + 3 * (2 - b)); }, DX.data(), xs,
      2 - k.p, 2 - k.p, true, true);
  std::vector<S> DX2(X.size(), S(0));
  ops::detail::winograd_conv2d<S>(
      ctx, DY.data(), ys, k.cin, [&](int a, int b) { return swapped.data() + cc * ((2 - a) + 3 * (2 - b)); },
      DX2.data(), xs, 2 - k.p, 2 - k.p, false);
  dx_copy = convert<double>(DX2);
  ops::detail::winograd_wgrad2d<S>(ctx, X.data(), xs, DY.data(), ys, DW.data(), k.p, k.p);
  y = convert<double>(Y);
  dx = convert<double>(DX);
  dw = convert<double>(DW);
  for (auto* v : {&dx, &dw})
    for (auto& e : *v) e -= 0.5;  // they accumulate onto the pre-filled 0.5
}
}  // namespace

BOOST_AUTO_TEST_CASE(winograd_kernels) {
  using namespace dicyc;
  auto& cx = contexts();
  Ctx<Eigen::ThreadPoolDevice> pool3{3};
  Ctx<Eigen::DefaultDevice> small;
  small.set_workspace_limit(4096);  // one tile per block
  for (const auto& k : std::vector<WinoCase>{{1, 1, 3, 3, 1, 0},
                                             {1, 2, 1, 1, 1, 1},
                                             {3, 1, 5, 7, 2, 1},
                                             {2, 5, 9, 4, 3, 0},
                                             {5, 3, 11, 13, 1, 2},
                                             {4, 4, 8, 8, 2, 1},
                                             {6, 7, 2, 10, 1, 2}}) {
    BOOST_TEST_CONTEXT("cin " << k.cin << " cout " << k.cout << " " << k.w << "x" << k.h << " n " << k.n << " pad "
                              << k.p) {
      const ConvCase<2> c{O(k.cin, k.cout, 3).padding(k.p).bias(false), Shape<4>(k.cin, k.w, k.h, k.n), false, ""};
      const auto d = make_data(c, 41);
      const auto g = random_vec<double>(num_elements(d.ys), 43);
      Shape<4> ys;
      const auto yref = naive_conv<2>(c.opts, c.in, d.x, d.w, nullptr, ys);
      std::vector<double> rx, rw, rb;
      run_backward<2, double>(cx.cpu, c, d.x, d.w, g, rx, rw, rb);  // im2col (channels < threshold)
      std::vector<double> y, dx, dw, dx2;
      winograd_run<double>(cx.cpu, k, d.x, d.w, g, y, dx, dw, dx2);
      const double sy = std::max(1.0, max_abs(yref)), sx = std::max(1.0, max_abs(rx)), sw = std::max(1.0, max_abs(rw));
      BOOST_CHECK_LT(max_abs_diff(y, yref), 1e-12 * sy);
      BOOST_CHECK_LT(max_abs_diff(dx, rx), 1e-12 * sx);
      BOOST_CHECK_LT(max_abs_diff(dx2, rx), 1e-12 * sx);
      BOOST_CHECK_LT(max_abs_diff(dw, rw), 1e-12 * sw);
      std::vector<double> fy, fx, fw, py, px, pw, ty, tx, tw, unused;
      winograd_run<float>(cx.cpu, k, d.x, d.w, g, fy, fx, fw, unused);
      winograd_run<float>(pool3, k, d.x, d.w, g, py, px, pw, unused);
      winograd_run<float>(small, k, d.x, d.w, g, ty, tx, tw, unused);
      BOOST_CHECK_LT(max_abs_diff(fy, yref), 2e-5 * sy);
      BOOST_CHECK_LT(max_abs_diff(fx, rx), 2e-5 * sx);
      BOOST_CHECK_LT(max_abs_diff(fw, rw), 2e-5 * sw);
      BOOST_CHECK(py == fy);  // the same bits on 1 and 3 threads
      BOOST_CHECK(px == fx);
      BOOST_CHECK(pw == fw);
      BOOST_CHECK_LT(max_abs_diff(ty, fy), 1e-5 * sy);  // blocks of one tile: the weight
      BOOST_CHECK_LT(max_abs_diff(tx, fx), 1e-5 * sx);  // gradient sums in another order
      BOOST_CHECK_LT(max_abs_diff(tw, fw), 1e-5 * sw);
    }
  }
}

// conv_forward / conv_backward send the eligible convs to Winograd and nothing else, and
// set_winograd(false) sends them back to im2col: on an eligible conv the float results equal the
// direct kernels' bit for bit with it on, and differ (at rounding level) with it off.
BOOST_AUTO_TEST_CASE(winograd_dispatch) {
  using namespace dicyc;
  auto& cx = contexts();
  const WinoCase k{128, 128, 7, 5, 1, 1};
  const ConvCase<2> c{O(128, 128, 3).padding(1).bias(false), Shape<4>(128, 7, 5, 1), false, ""};
  const auto d = make_data(c, 51);
  const auto g = random_vec<double>(num_elements(d.ys), 53);
  std::vector<double> y, dx, dw, unused;
  winograd_run<float>(cx.pool, k, d.x, d.w, g, y, dx, dw, unused);
  auto run = [&](std::vector<double>& ry, std::vector<double>& rx, std::vector<double>& rw) {
    ry = run_forward<2, float>(cx.pool, c, d.x, d.w, std::vector<double>(128, 0.0));  // + 0: the same bits
    std::vector<double> rb;
    run_backward<2, float>(cx.pool, c, d.x, d.w, g, rx, rw, rb, 0.5);
    for (auto* v : {&rx, &rw})
      for (auto& e : *v) e -= 0.5;
  };
  BOOST_REQUIRE(ops::winograd_enabled());
  std::vector<double> ay, ax, aw, by, bx, bw;
  run(ay, ax, aw);
  BOOST_CHECK(ay == y);
  BOOST_CHECK(ax == dx);
  BOOST_CHECK(aw == dw);
  ops::set_winograd(false);
  run(by, bx, bw);
  ops::set_winograd(true);
  BOOST_CHECK(by != y);
  BOOST_CHECK(bw != dw);
  BOOST_CHECK_LT(max_abs_diff(by, y), 2e-5 * std::max(1.0, max_abs(y)));
  BOOST_CHECK_LT(max_abs_diff(bw, dw), 2e-5 * std::max(1.0, max_abs(dw)));
  // Not eligible: stride 2, a 4x4 kernel, 63 channels -- the same bits with Winograd on or off.
  for (const auto& o : {O(128, 128, 3).stride(2).padding(1).bias(false), O(128, 128, 4).padding(1).bias(false),
                        O(63, 128, 3).padding(1).bias(false)}) {
    const ConvCase<2> e{o, Shape<4>(o.in_channels(), 7, 6, 1), false, ""};
    const auto de = make_data(e, 61);
    const auto on = run_forward<2, float>(cx.pool, e, de.x, de.w, de.b);
    ops::set_winograd(false);
    const auto off = run_forward<2, float>(cx.pool, e, de.x, de.w, de.b);
    ops::set_winograd(true);
    BOOST_CHECK(on == off);
  }
}
