#define BOOST_TEST_MODULE conv3d
#include "conv_cases.hpp"

using namespace dt;
using O = ConvOptions<3>;

// The 3-D networks use the same kernels as the 2-D ones, cubic; odd sizes, batch 2.
static std::vector<ConvCase<3>> cases() {
  return {
      {O(2, 2, 7), Shape<5>(2, 7, 8, 7, 1), false, "gen stem k7 s1 p0"},
      {O(3, 4, 3).stride(2).padding(1), Shape<5>(3, 5, 3, 4, 2), false, "gen down k3 s2 p1"},
      {O(3, 3, 3), Shape<5>(3, 5, 3, 4, 2), false, "gen res k3 s1 p0"},
      {O(3, 3, 3).padding(1), Shape<5>(3, 5, 3, 4, 2), false, "offset k3 s1 p1"},
      {O(2, 3, 4).stride(2).padding(1), Shape<5>(2, 5, 4, 6, 2), false, "disc k4 s2 p1"},
      {O(3, 2, 4).padding(1), Shape<5>(3, 5, 3, 4, 2), false, "disc k4 s1 p1"},
      {O(3, 2, 3).stride(2).padding(1).output_padding(1), Shape<5>(3, 3, 2, 3, 2), true, "gen up convT k3 s2 p1 op1"},
      {O(1, 3, 7), Shape<5>(1, 8, 7, 9, 1), false, "1-channel stem k7 s1 p0"},
      {O(3, 1, 7), Shape<5>(3, 7, 8, 7, 1), false, "head k7 to 1 channel"},
      {O(2, 2, {3, 1, 2}).stride({1, 2, 1}).padding({2, 0, 1}), Shape<5>(2, 4, 5, 3, 2), false, "k3x1x2 s1x2x1 p2x0x1"},
      // Stride-1 3x3x3 convs with >= kWinogradMinChannels channels both ways take Winograd
      // F(2x2x2, 3x3x3) (ops/winograd.hpp): edge tiles on every axis, every padding it takes.
      {O(64, 64, 3).padding(1), Shape<5>(64, 3, 4, 5, 2), false, "winograd 64->64 p1"},
      {O(65, 64, 3), Shape<5>(65, 5, 3, 4, 1), false, "winograd 65->64 p0"},
      {O(64, 66, 3).padding(2), Shape<5>(64, 2, 3, 3, 1), false, "winograd 64->66 p2"},
      // Input gradients and transposed-conv forwards with >= kCol2imMinChannels channels on both
      // sides are a GEMM with the weight transposed and a col2im (ops/conv.hpp gemm_col2im).
      {O(64, 65, 4).stride(2).padding(1), Shape<5>(64, 5, 4, 3, 1), false, "col2im 64->65 k4 s2 p1"},
      {O(64, 64, {2, 3, 1}).padding({2, 0, 1}), Shape<5>(64, 3, 4, 2, 2), false, "col2im k2x3x1 p2x0x1"},
      {O(66, 64, 3).stride(2).padding(1).output_padding(1), Shape<5>(66, 2, 3, 2, 1), true, "col2im convT 66->64 op1"},
      // ... and with <= 16 channels on the image side, a GEMM depth >= kCol2imThinMinDepth and
      // stride >= 2, a GEMM and a gather per image pixel (gemm_col2im_thin).
      {O(16, 17, 4).stride(2).padding(1), Shape<5>(16, 5, 4, 6, 2), false, "thin col2im 16 <- 17 k4 s2 p1"},
      {O(1, 16, 3).stride(2).padding(1), Shape<5>(1, 5, 7, 4, 1), false, "thin col2im 1 <- 16 k3 s2 p1"},
      {O(2, 16, {3, 1, 2}).stride({2, 2, 3}).padding({2, 0, 1}), Shape<5>(2, 4, 5, 3, 2), false,
       "thin col2im k3x1x2 s2x2x3 p2x0x1"},
      {O(20, 3, 3).stride(2).padding(1).output_padding(1), Shape<5>(20, 2, 3, 3, 2), true, "thin col2im convT 20->3 op1"},
  };
}

BOOST_AUTO_TEST_CASE(forward_matches_naive) {
  for (const auto& c : cases()) check_forward<3>(c);
}
BOOST_AUTO_TEST_CASE(backward_gradcheck_and_parity) {
  for (const auto& c : cases()) check_backward<3>(c);
}
BOOST_AUTO_TEST_CASE(tiling_and_generic_paths) {
  for (const auto& c : cases()) check_tiling_and_generic<3>(c);
}

BOOST_AUTO_TEST_CASE(col2im_dispatch) {
  check_col2im_dispatch<3>({{O(64, 65, 4).stride(2).padding(1), Shape<5>(64, 5, 4, 3, 1), false, "conv k4 s2"},
                            {O(66, 64, 3).stride(2).padding(1).output_padding(1), Shape<5>(66, 2, 3, 2, 1), true, "convT"},
                            {O(16, 32, 3).stride(2).padding(1), Shape<5>(16, 6, 5, 4, 1), false, "thin: generator 16 <- 32"},
                            {O(1, 32, 4).stride(2).padding(1), Shape<5>(1, 6, 5, 7, 2), false, "thin: 1 channel"},
                            {O(32, 16, 3).stride(2).padding(1).output_padding(1), Shape<5>(32, 3, 2, 3, 1), true, "thin convT"}},
                           {{O(64, 63, 4).stride(2).padding(1), Shape<5>(64, 5, 4, 3, 1), false, "64 <- 63"},
                            {O(32, 64, 4).stride(2).padding(1), Shape<5>(32, 6, 5, 4, 1), false, "PatchGAN 32 <- 64"},
                            {O(16, 1, 7), Shape<5>(16, 8, 7, 9, 1), false, "depth 1"},
                            {O(1, 16, 7).padding(3), Shape<5>(1, 6, 5, 4, 1), false, "stride 1"}});
}

BOOST_AUTO_TEST_CASE(col2im_thin_gather) {
  check_col2im_gather<3>({O(16, 17, 4).stride(2).padding(1), Shape<5>(16, 5, 4, 6, 2), false, "16 <- 17 k4 s2 p1"});
  check_col2im_gather<3>({O(1, 16, 3).stride({2, 2, 3}).padding({1, 2, 0}), Shape<5>(1, 5, 7, 8, 1), false,
                          "1 <- 16 s2x2x3 p1x2x0"});
  check_col2im_gather<3>({O(20, 3, 3).stride(2).padding(1).output_padding(1), Shape<5>(20, 2, 3, 3, 2), true, "convT"});
}

BOOST_AUTO_TEST_CASE(shape_errors) {
  using namespace dicyc;
  const auto o = O(32, 32, 3).name("vol");
  expect_error<ShapeError>([&] { ops::conv_output_shape(o, Shape<5>(16, 8, 8, 8, 1)); },
                           "conv3d 'vol': expected input with 32 channels (weight [32, 32, 3, 3, 3]), but got input of "
                           "shape [16, 8, 8, 8, 1] instead");
  expect_error<ShapeError>([&] { ops::conv_output_shape(o, Shape<5>(32, 8, 2, 8, 1)); },
                           "is smaller than the kernel 3 x 3 x 3");
  expect_error<ConfigError>([&] { ops::conv_output_shape(O(3, 4, 3).stride({1, 0, 1}), Shape<5>(3, 8, 8, 8, 1)); },
                            "stride must be positive, got stride [1, 0, 1]");
}

BOOST_AUTO_TEST_CASE(swap_kernel_axes_tiles) { check_swap_kernel_axes<3>(); }

// ------------------------------------------------------------------ Winograd F(2x2x2, 3x3x3)
// The kernels called directly, as in test_conv2d.cpp's winograd_kernels: 1 channel, odd sizes
// smaller than a tile on some axes, every padding, batches; double against the naive conv
// (forward) and the im2col path's gradients (gradient-checked above), float within Winograd's
// error, the same bits on 1 and 3 threads, and blocks of one tile.
namespace {
struct WinoCase3 {
  Index cin, cout, w, h, d, n, p;
};

template <class S, class Dev>
void winograd3_run(Ctx<Dev>& ctx, const WinoCase3& k, const std::vector<double>& x, const std::vector<double>& w,
                   const std::vector<double>& dy, std::vector<double>& y, std::vector<double>& dx,
                   std::vector<double>& dw) {
  using namespace dicyc;
  const auto o = O(k.cin, k.cout, 3).padding(k.p);
  const Shape<5> xs(k.cin, k.w, k.h, k.d, k.n), ys = ops::conv_output_shape(o, xs);
  const auto X = convert<S>(x), W = convert<S>(w), DY = convert<S>(dy);
  std::vector<S> Y(static_cast<std::size_t>(num_elements(ys))), DX(X.size(), S(0.5)), DW(W.size(), S(0.5));
  const Index cc = k.cin * k.cout;
  ops::detail::winograd_conv3d<S>(
      ctx, X.data(), xs, k.cout, [&](int a, int b, int c) { return W.data() + cc * (a + 3 * b + 9 * c); }, Y.data(), ys,
      k.p, k.p, k.p, false);
  ops::detail::winograd_conv3d<S>(
      ctx, DY.data(), ys, k.cin,
      [&](int a, int b, int c) { return W.data() + cc * ((2 - a) + 3 * (2 - b) + 9 * (2 - c)); }, DX.data(), xs,
      2 - k.p, 2 - k.p, 2 - k.p, true, true);
  ops::detail::winograd_wgrad3d<S>(ctx, X.data(), xs, DY.data(), ys, DW.data(), k.p, k.p, k.p);
  y = convert<double>(Y);
  dx = convert<double>(DX);
  dw = convert<double>(DW);
  for (auto* v : {&dx, &dw})
    for (auto& e : *v) e -= 0.5;  // they accumulate onto the pre-filled 0.5
}
}  // namespace

BOOST_AUTO_TEST_CASE(winograd3d_kernels) {
  using namespace dicyc;
  auto& cx = contexts();
  Ctx<Eigen::ThreadPoolDevice> pool3{3};
  Ctx<Eigen::DefaultDevice> small;
  small.set_workspace_limit(4096);  // one tile per block
  for (const auto& k : std::vector<WinoCase3>{{1, 1, 3, 3, 3, 1, 0},
                                              {1, 2, 1, 1, 1, 1, 1},
                                              {3, 1, 5, 4, 3, 2, 1},
                                              {2, 5, 4, 6, 3, 1, 0},
                                              {5, 3, 3, 7, 5, 1, 2},
                                              {4, 4, 4, 4, 4, 2, 1},
                                              {6, 7, 2, 3, 6, 1, 2}}) {
    BOOST_TEST_CONTEXT("cin " << k.cin << " cout " << k.cout << " " << k.w << "x" << k.h << "x" << k.d << " n "
                              << k.n << " pad " << k.p) {
      const ConvCase<3> c{O(k.cin, k.cout, 3).padding(k.p).bias(false), Shape<5>(k.cin, k.w, k.h, k.d, k.n), false,
                          ""};
      const auto d = make_data(c, 71);
      const auto g = random_vec<double>(num_elements(d.ys), 73);
      Shape<5> ys;
      const auto yref = naive_conv<3>(c.opts, c.in, d.x, d.w, nullptr, ys);
      std::vector<double> rx, rw, rb;
      run_backward<3, double>(cx.cpu, c, d.x, d.w, g, rx, rw, rb);  // im2col (channels < threshold)
      std::vector<double> y, dx, dw;
      winograd3_run<double>(cx.cpu, k, d.x, d.w, g, y, dx, dw);
      const double sy = std::max(1.0, max_abs(yref)), sx = std::max(1.0, max_abs(rx)), sw = std::max(1.0, max_abs(rw));
      BOOST_CHECK_LT(max_abs_diff(y, yref), 1e-12 * sy);
      BOOST_CHECK_LT(max_abs_diff(dx, rx), 1e-12 * sx);
      BOOST_CHECK_LT(max_abs_diff(dw, rw), 1e-12 * sw);
      std::vector<double> fy, fx, fw, py, px, pw, ty, tx, tw;
      winograd3_run<float>(cx.cpu, k, d.x, d.w, g, fy, fx, fw);
      winograd3_run<float>(pool3, k, d.x, d.w, g, py, px, pw);
      winograd3_run<float>(small, k, d.x, d.w, g, ty, tx, tw);
      BOOST_CHECK_LT(max_abs_diff(fy, yref), 1e-5 * sy);
      BOOST_CHECK_LT(max_abs_diff(fx, rx), 1e-5 * sx);
      BOOST_CHECK_LT(max_abs_diff(fw, rw), 1e-5 * sw);
      BOOST_CHECK(py == fy);  // the same bits on 1 and 3 threads
      BOOST_CHECK(px == fx);
      BOOST_CHECK(pw == fw);
      BOOST_CHECK_LT(max_abs_diff(ty, fy), 1e-5 * sy);  // blocks of one tile: the weight
      BOOST_CHECK_LT(max_abs_diff(tx, fx), 1e-5 * sx);  // gradient sums in another order
      BOOST_CHECK_LT(max_abs_diff(tw, fw), 1e-5 * sw);
    }
  }
}

// conv_forward / conv_backward send the eligible 3-D convs to Winograd, bit for bit the direct
// kernels' results, and set_winograd(false) sends them back to im2col (rounding-level changes).
BOOST_AUTO_TEST_CASE(winograd3d_dispatch) {
  using namespace dicyc;
  auto& cx = contexts();
  const WinoCase3 k{64, 64, 5, 3, 4, 1, 1};
  const ConvCase<3> c{O(64, 64, 3).padding(1).bias(false), Shape<5>(64, 5, 3, 4, 1), false, ""};
  const auto d = make_data(c, 81);
  const auto g = random_vec<double>(num_elements(d.ys), 83);
  std::vector<double> y, dx, dw;
  winograd3_run<float>(cx.pool, k, d.x, d.w, g, y, dx, dw);
  auto run = [&](std::vector<double>& ry, std::vector<double>& rx, std::vector<double>& rw) {
    ry = run_forward<3, float>(cx.pool, c, d.x, d.w, std::vector<double>(64, 0.0));  // + 0: the same bits
    std::vector<double> rb;
    run_backward<3, float>(cx.pool, c, d.x, d.w, g, rx, rw, rb, 0.5);
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
  BOOST_CHECK_LT(max_abs_diff(by, y), 1e-5 * std::max(1.0, max_abs(y)));
  BOOST_CHECK_LT(max_abs_diff(bx, dx), 1e-5 * std::max(1.0, max_abs(dx)));
  BOOST_CHECK_LT(max_abs_diff(bw, dw), 1e-5 * std::max(1.0, max_abs(dw)));
  // Not eligible: stride 2, 63 channels -- the same bits with Winograd on or off.
  for (const auto& o : {O(64, 64, 3).stride(2).padding(1).bias(false), O(63, 64, 3).padding(1).bias(false)}) {
    const ConvCase<3> e{o, Shape<5>(o.in_channels(), 5, 4, 3, 1), false, ""};
    const auto de = make_data(e, 91);
    const auto on = run_forward<3, float>(cx.pool, e, de.x, de.w, de.b);
    ops::set_winograd(false);
    const auto off = run_forward<3, float>(cx.pool, e, de.x, de.w, de.b);
    ops::set_winograd(true);
    BOOST_CHECK(on == off);
  }
}
