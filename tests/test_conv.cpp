// Convolutions and transposed convolutions, 2-D and 3-D, as one typed test over the dimension
// (DICYC_TEST_CONV_DIM picks one: the build makes test_conv2d, test_conv3d and the pure-Eigen
// test_conv2d_pure_eigen from this file, so the two dimensions compile in parallel):
// - every kernel/stride/padding the networks use, on odd sizes: the forward against a naive
//   nested-loop conv, the gradients by central differences in double, float/pool/half parity, the
//   tiled and generic paths (tests/support/conv_cases.hpp);
// - ops::plan_conv's col2im paths against the transposed gather they replace, the thin col2im's
//   gather, the kernel-axis swap;
// - ops::plan_conv's oneDNN path (ConvPath::Dnnl) switched on and off, against the naive reference;
// - the direct thin kernels (ConvPath::ThinDirect: one channel on one side) switched on and off;
// - Winograd F(4x4, 3x3) and F(2x2x2, 3x3x3): the kernels against the naive conv and the im2col
//   gradients, and their dispatch;
// - the errors with their messages.
#if DICYC_TEST_CONV_DIM == 2
#define BOOST_TEST_MODULE conv2d
#else
#define BOOST_TEST_MODULE conv3d
#endif
#include "support/conv_cases.hpp"

#include <boost/mpl/list.hpp>

using namespace dt;
using O2 = ConvOptions<2>;
using O3 = ConvOptions<3>;
using Dims = boost::mpl::list<std::integral_constant<int, DICYC_TEST_CONV_DIM>>;

namespace {

template <int Dim>
std::vector<ConvCase<Dim>> cases();

// 2-D: every kernel/stride/padding the generator, discriminator, STN and offset branches use, on
// odd sizes, batch 2.
template <>
std::vector<ConvCase<2>> cases<2>() {
  return {
      {O2(3, 4, 7), Shape<4>(3, 9, 11, 2), false, "gen stem k7 s1 p0"},
      {O2(3, 5, 3).stride(2).padding(1), Shape<4>(3, 7, 9, 2), false, "gen down k3 s2 p1"},
      {O2(4, 4, 3), Shape<4>(4, 5, 7, 2), false, "gen res k3 s1 p0"},
      {O2(4, 3, 3).padding(1), Shape<4>(4, 3, 4, 2), false, "offset k3 s1 p1"},
      {O2(2, 4, 4).stride(2).padding(1), Shape<4>(2, 7, 9, 2), false, "disc k4 s2 p1"},
      {O2(3, 2, 4).padding(1), Shape<4>(3, 5, 6, 2), false, "disc k4 s1 p1"},
      {O2(5, 3, 1), Shape<4>(5, 3, 4, 2), false, "k1 s1 p0 (no im2col)"},
      {O2(4, 3, 3).stride(2).padding(1).output_padding(1), Shape<4>(4, 3, 5, 2), true, "gen up convT k3 s2 p1 op1"},
      {O2(3, 2, 4).stride(2).padding(1), Shape<4>(3, 4, 3, 2), true, "convT k4 s2 p1"},
      // The CPU gather's runs: one channel, pads beyond the kernel (the flipped stride-1 input
      // gradient gets a negative pad), per-axis kernels, strides and pads, one output channel, a
      // stride-1 transposed conv; and the one-output-row products without a gather (plane_gemv:
      // to one channel at stride 1, padded or not, and the input gradient of a 1-channel conv).
      {O2(1, 4, 7), Shape<4>(1, 10, 8, 1), false, "1-channel stem k7 s1 p0"},
      {O2(3, 2, 2).padding(2), Shape<4>(3, 4, 5, 2), false, "k2 s1 p2 (pad beyond the kernel)"},
      {O2(3, 1, {3, 5}).stride({2, 1}).padding({0, 2}), Shape<4>(3, 8, 6, 1), false, "k3x5 s2x1 p0x2 to 1 channel"},
      {O2(2, 3, 3).padding(1), Shape<4>(2, 4, 5, 2), true, "convT k3 s1 p1"},
      {O2(3, 1, {3, 2}).padding({1, 2}), Shape<4>(3, 6, 5, 2), false, "k3x2 s1 p1x2 to 1 channel"},
      // Stride-1 3x3 convs with >= kWinogradMinChannels channels both ways take Winograd F(4x4,
      // 3x3) (ops/winograd.hpp): edge tiles on both axes, every padding it takes, batch 2.
      {O2(128, 128, 3).padding(1), Shape<4>(128, 6, 5, 2), false, "winograd 128->128 p1"},
      {O2(130, 128, 3), Shape<4>(130, 9, 7, 1), false, "winograd 130->128 p0"},
      {O2(128, 131, 3).padding(2), Shape<4>(128, 3, 4, 2), false, "winograd 128->131 p2"},
      // Input gradients and transposed-conv forwards with >= kCol2imMinChannels channels on both
      // sides are a GEMM with the weight transposed and a col2im (ops/conv.hpp gemm_col2im).
      {O2(64, 66, 3).stride(2).padding(1), Shape<4>(64, 7, 9, 2), false, "col2im 64->66 k3 s2 p1"},
      {O2(65, 64, 4).padding(1), Shape<4>(65, 5, 6, 1), false, "col2im 65->64 k4 s1 p1"},
      {O2(64, 64, 2).padding(2), Shape<4>(64, 3, 4, 2), false, "col2im 64->64 k2 s1 p2 (pad beyond the kernel)"},
      {O2(66, 64, 3).stride(2).padding(1).output_padding(1), Shape<4>(66, 3, 5, 2), true, "col2im convT 66->64 k3 s2 op1"},
      {O2(64, 65, 4).stride(2).padding(1), Shape<4>(64, 4, 3, 1), true, "col2im convT 64->65 k4 s2 p1"},
      // ... and with <= 16 channels on the image side, a GEMM depth >= kCol2imThinMinDepth and
      // stride >= 2, a GEMM and a gather per image pixel (gemm_col2im_thin).
      {O2(1, 16, 7).stride(2).padding(3), Shape<4>(1, 10, 8, 2), false, "thin col2im 1 <- 16 k7 s2 p3"},
      {O2(5, 17, 4).stride(2).padding(1), Shape<4>(5, 7, 9, 2), false, "thin col2im 5 <- 17 k4 s2 p1"},
      {O2(3, 16, 3).stride(2).padding(2), Shape<4>(3, 5, 6, 1), false, "thin col2im k3 s2 p2 (pad beyond)"},
      {O2(18, 3, 3).stride(2).padding(1).output_padding(1), Shape<4>(18, 3, 5, 2), true, "thin col2im convT 18->3 op1"},
      // Stride-1 convs with one channel on one side and a multiple of the SIMD width on the other
      // take the direct thin kernels (ops/conv_thin.hpp): the generators' heads and stems' input
      // gradients, rows that are not multiples of the 8-output blocks, edges, per-axis kernels.
      {O2(16, 1, 7), Shape<4>(16, 13, 11, 2), false, "thin head 16->1 k7 p0"},
      {O2(16, 1, 5).padding(2), Shape<4>(16, 9, 6, 2), false, "thin 16->1 k5 p2"},
      {O2(32, 1, {7, 5}).padding({3, 1}), Shape<4>(32, 10, 7, 1), false, "thin 32->1 k7x5 p3x1"},
      {O2(1, 16, 7).padding(3), Shape<4>(1, 11, 9, 2), false, "thin 1->16 k7 p3 (input gradient)"},
      {O2(16, 2, 3).padding(1), Shape<4>(16, 11, 9, 2), false, "thin few 16->2 k3 p1 (offset branch)"},
  };
}

// 3-D: the 3-D networks use the same kernels as the 2-D ones, cubic; odd sizes, batch 2.
template <>
std::vector<ConvCase<3>> cases<3>() {
  return {
      {O3(2, 2, 7), Shape<5>(2, 7, 8, 7, 1), false, "gen stem k7 s1 p0"},
      {O3(3, 4, 3).stride(2).padding(1), Shape<5>(3, 5, 3, 4, 2), false, "gen down k3 s2 p1"},
      {O3(3, 3, 3), Shape<5>(3, 5, 3, 4, 2), false, "gen res k3 s1 p0"},
      {O3(3, 3, 3).padding(1), Shape<5>(3, 5, 3, 4, 2), false, "offset k3 s1 p1"},
      {O3(2, 3, 4).stride(2).padding(1), Shape<5>(2, 5, 4, 6, 2), false, "disc k4 s2 p1"},
      {O3(3, 2, 4).padding(1), Shape<5>(3, 5, 3, 4, 2), false, "disc k4 s1 p1"},
      {O3(3, 2, 3).stride(2).padding(1).output_padding(1), Shape<5>(3, 3, 2, 3, 2), true, "gen up convT k3 s2 p1 op1"},
      {O3(1, 3, 7), Shape<5>(1, 8, 7, 9, 1), false, "1-channel stem k7 s1 p0"},
      {O3(3, 1, 7), Shape<5>(3, 7, 8, 7, 1), false, "head k7 to 1 channel"},
      {O3(2, 2, {3, 1, 2}).stride({1, 2, 1}).padding({2, 0, 1}), Shape<5>(2, 4, 5, 3, 2), false, "k3x1x2 s1x2x1 p2x0x1"},
      // Stride-1 3x3x3 convs with >= kWinogradMinChannels channels both ways take Winograd
      // F(2x2x2, 3x3x3) (ops/winograd.hpp): edge tiles on every axis, every padding it takes.
      {O3(64, 64, 3).padding(1), Shape<5>(64, 3, 4, 5, 2), false, "winograd 64->64 p1"},
      {O3(65, 64, 3), Shape<5>(65, 5, 3, 4, 1), false, "winograd 65->64 p0"},
      {O3(64, 66, 3).padding(2), Shape<5>(64, 2, 3, 3, 1), false, "winograd 64->66 p2"},
      // Input gradients and transposed-conv forwards with >= kCol2imMinChannels channels on both
      // sides are a GEMM with the weight transposed and a col2im (ops/conv.hpp gemm_col2im).
      {O3(64, 65, 4).stride(2).padding(1), Shape<5>(64, 5, 4, 3, 1), false, "col2im 64->65 k4 s2 p1"},
      {O3(64, 64, {2, 3, 1}).padding({2, 0, 1}), Shape<5>(64, 3, 4, 2, 2), false, "col2im k2x3x1 p2x0x1"},
      {O3(66, 64, 3).stride(2).padding(1).output_padding(1), Shape<5>(66, 2, 3, 2, 1), true, "col2im convT 66->64 op1"},
      // ... and with <= 16 channels on the image side, a GEMM depth >= kCol2imThinMinDepth and
      // stride >= 2, a GEMM and a gather per image pixel (gemm_col2im_thin).
      {O3(16, 17, 4).stride(2).padding(1), Shape<5>(16, 5, 4, 6, 2), false, "thin col2im 16 <- 17 k4 s2 p1"},
      {O3(1, 16, 3).stride(2).padding(1), Shape<5>(1, 5, 7, 4, 1), false, "thin col2im 1 <- 16 k3 s2 p1"},
      {O3(2, 16, {3, 1, 2}).stride({2, 2, 3}).padding({2, 0, 1}), Shape<5>(2, 4, 5, 3, 2), false,
       "thin col2im k3x1x2 s2x2x3 p2x0x1"},
      {O3(20, 3, 3).stride(2).padding(1).output_padding(1), Shape<5>(20, 2, 3, 3, 2), true, "thin col2im convT 20->3 op1"},
      // The direct thin kernels (see the 2-D cases).
      {O3(16, 1, 7), Shape<5>(16, 9, 8, 7, 1), false, "thin head 16->1 k7 p0"},
      {O3(16, 1, 5).padding({2, 1, 0}), Shape<5>(16, 10, 4, 5, 1), false, "thin 16->1 k5 p2x1x0"},
      {O3(1, 16, 5).padding(2), Shape<5>(1, 6, 5, 4, 1), false, "thin 1->16 k5 p2 (input gradient)"},
      {O3(16, 3, 3).padding(1), Shape<5>(16, 9, 6, 5, 2), false, "thin few 16->3 k3 p1 (offset branch)"},
  };
}

/// The col2im dispatch's eligible (first) and ineligible (second) cases.
template <int Dim>
void col2im_dispatch_cases();
template <>
void col2im_dispatch_cases<2>() {
  check_col2im_dispatch<2>({{O2(64, 66, 3).stride(2).padding(1), Shape<4>(64, 7, 9, 2), false, "conv k3 s2"},
                            {O2(66, 64, 3).stride(2).padding(1).output_padding(1), Shape<4>(66, 3, 5, 2), true, "convT"},
                            {O2(16, 66, 3).stride(2).padding(1), Shape<4>(16, 7, 9, 2), false, "thin: 16 channels"},
                            {O2(1, 16, 4).stride(2).padding(1), Shape<4>(1, 9, 7, 2), false, "thin: 1 channel"},
                            {O2(17, 2, 4).stride(2).padding(1), Shape<4>(17, 4, 5, 1), true, "thin convT"}},
                           {{O2(64, 63, 3).stride(2).padding(1), Shape<4>(64, 7, 9, 2), false, "64 <- 63"},
                            {O2(17, 66, 3).stride(2).padding(1), Shape<4>(17, 7, 9, 2), false, "17 <- 66"},
                            {O2(8, 15, 3).stride(2).padding(1), Shape<4>(8, 7, 9, 2), false, "depth 15"},
                            {O2(1, 16, 7).padding(3), Shape<4>(1, 9, 7, 2), false, "stride 1"},
                            {O2(4, 16, 3).stride({2, 1}).padding(1), Shape<4>(4, 9, 7, 1), false, "stride 2x1"}});
}
template <>
void col2im_dispatch_cases<3>() {
  check_col2im_dispatch<3>({{O3(64, 65, 4).stride(2).padding(1), Shape<5>(64, 5, 4, 3, 1), false, "conv k4 s2"},
                            {O3(66, 64, 3).stride(2).padding(1).output_padding(1), Shape<5>(66, 2, 3, 2, 1), true, "convT"},
                            {O3(16, 32, 3).stride(2).padding(1), Shape<5>(16, 6, 5, 4, 1), false, "thin: generator 16 <- 32"},
                            {O3(1, 32, 4).stride(2).padding(1), Shape<5>(1, 6, 5, 7, 2), false, "thin: 1 channel"},
                            {O3(32, 16, 3).stride(2).padding(1).output_padding(1), Shape<5>(32, 3, 2, 3, 1), true, "thin convT"}},
                           {{O3(64, 63, 4).stride(2).padding(1), Shape<5>(64, 5, 4, 3, 1), false, "64 <- 63"},
                            {O3(32, 64, 4).stride(2).padding(1), Shape<5>(32, 6, 5, 4, 1), false, "PatchGAN 32 <- 64"},
                            {O3(16, 1, 7), Shape<5>(16, 8, 7, 9, 1), false, "depth 1"},
                            {O3(1, 16, 7).padding(3), Shape<5>(1, 6, 5, 4, 1), false, "stride 1"}});
}
template <int Dim>
void thin_dispatch_cases();
template <>
void thin_dispatch_cases<2>() {
  check_thin_dispatch<2>({{O2(16, 1, 7), Shape<4>(16, 21, 9, 2), false, "head 16->1 k7 p0"},
                          {O2(16, 1, 7).padding(3), Shape<4>(16, 19, 8, 1), false, "16->1 k7 p3"},
                          {O2(64, 1, 5).padding({4, 0}), Shape<4>(64, 9, 7, 2), false, "64->1 k5 p4x0"},
                          {O2(1, 16, 7), Shape<4>(1, 20, 9, 2), false, "stem 1->16 k7 p0"},
                          {O2(1, 32, 5).padding(1), Shape<4>(1, 17, 6, 1), false, "1->32 k5 p1"},
                          // A few output channels (forward and weight gradient): the offset branches' last convs.
                          {O2(16, 2, 7), Shape<4>(16, 9, 8, 1), false, "two output channels k7"},
                          {O2(32, 2, 3).padding(1), Shape<4>(32, 19, 7, 2), false, "offset 32->2 k3 p1"},
                          {O2(16, 4, 3), Shape<4>(16, 10, 6, 1), false, "16->4 k3 p0"}},
                         {{O2(16, 1, 3).padding(1), Shape<4>(16, 9, 7, 1), false, "k3 (below kThinMinKernel)"},
                          {O2(16, 1, 7).stride(2), Shape<4>(16, 15, 9, 1), false, "stride 2"},
                          {O2(16, 5, 3).padding(1), Shape<4>(16, 9, 8, 1), false, "five outputs (above kThinMaxOut)"},
                          {O2(16, 3, 2), Shape<4>(16, 9, 8, 1), false, "three outputs, k2 (below kThinFewMinKernel)"},
                          {O2(6, 3, 3).padding(1), Shape<4>(6, 9, 8, 1), false, "three outputs from 6 channels"},
                          {O2(6, 1, 7), Shape<4>(6, 9, 8, 1), false, "6 channels (no SIMD multiple)"},
                          {O2(16, 1, 5).padding(5), Shape<4>(16, 4, 4, 1), false, "padding beyond the kernel"},
                          {O2(1, 16, 7), Shape<4>(1, 9, 8, 1), true, "transposed"}});
}
template <>
void thin_dispatch_cases<3>() {
  check_thin_dispatch<3>({{O3(16, 1, 7), Shape<5>(16, 17, 8, 9, 1), false, "head 16->1 k7 p0"},
                          {O3(16, 1, 7).padding(3), Shape<5>(16, 10, 5, 4, 1), false, "16->1 k7 p3"},
                          {O3(1, 16, 5).padding({2, 0, 1}), Shape<5>(1, 11, 6, 5, 2), false, "1->16 k5 p2x0x1"},
                          {O3(32, 3, 3).padding(1), Shape<5>(32, 11, 6, 5, 2), false, "offset 32->3 k3 p1"}},
                         {{O3(16, 1, 3), Shape<5>(16, 6, 5, 4, 1), false, "k3"},
                          {O3(16, 3, 3).stride(2).padding(1), Shape<5>(16, 7, 6, 5, 1), false, "three outputs, stride 2"},
                          {O3(16, 1, 7).stride(2), Shape<5>(16, 9, 8, 7, 1), false, "stride 2"},
                          {O3(1, 16, 4).stride(2).padding(1), Shape<5>(1, 8, 8, 8, 1), false, "PatchGAN stem"}});
}
template <int Dim>
void col2im_gather_cases();
template <>
void col2im_gather_cases<2>() {
  check_col2im_gather<2>({O2(1, 16, 7).stride(2).padding(3), Shape<4>(1, 10, 8, 2), false, "1 <- 16 k7 s2 p3"});
  check_col2im_gather<2>({O2(5, 17, 4).stride(2).padding(1), Shape<4>(5, 7, 9, 2), false, "5 <- 17 k4 s2 p1"});
  check_col2im_gather<2>({O2(3, 16, 3).stride({2, 3}).padding({2, 0}), Shape<4>(3, 8, 7, 1), false, "k3 s2x3 p2x0"});
  check_col2im_gather<2>({O2(18, 3, 3).stride(2).padding(1).output_padding(1), Shape<4>(18, 3, 5, 2), true, "convT"});
}
template <>
void col2im_gather_cases<3>() {
  check_col2im_gather<3>({O3(16, 17, 4).stride(2).padding(1), Shape<5>(16, 5, 4, 6, 2), false, "16 <- 17 k4 s2 p1"});
  check_col2im_gather<3>({O3(1, 16, 3).stride({2, 2, 3}).padding({1, 2, 0}), Shape<5>(1, 5, 7, 8, 1), false,
                          "1 <- 16 s2x2x3 p1x2x0"});
  check_col2im_gather<3>({O3(20, 3, 3).stride(2).padding(1).output_padding(1), Shape<5>(20, 2, 3, 3, 2), true, "convT"});
}


/// conv_forward / conv_backward send the eligible conv c to Winograd (ops::plan_conv) and nothing
/// else, and the context's set_winograd(false) sends it back to im2col: with it on, the float
/// results equal the direct kernels' (`direct`) bit for bit; with it off they differ at rounding
/// level (within tol; the input gradient compared too where off_dx); the ineligible convs give the
/// same bits either way.
template <int Dim, class Direct, class InShape>
void check_winograd_dispatch(const ConvCase<Dim>& c, std::uint64_t seed, Direct&& direct,
                             const std::vector<ConvOptions<Dim>>& ineligible, InShape&& in_shape, std::uint64_t seed_e,
                             double tol, bool off_dx) {
  using namespace dicyc;
  auto& cx = contexts();
  const auto d = make_data(c, seed);
  const auto g = random_vec<double>(num_elements(d.ys), seed + 2);
  std::vector<double> y, dx, dw;
  direct(cx.pool, d.x, d.w, g, y, dx, dw);
  auto run = [&](std::vector<double>& ry, std::vector<double>& rx, std::vector<double>& rw) {
    ry = run_forward<Dim, float>(cx.pool, c, d.x, d.w, std::vector<double>(static_cast<std::size_t>(c.opts.out_channels()), 0.0));
    std::vector<double> rb;  // + 0 bias above: the same bits
    run_backward<Dim, float>(cx.pool, c, d.x, d.w, g, rx, rw, rb, 0.5);
    for (auto* v : {&rx, &rw})
      for (auto& e : *v) e -= 0.5;
  };
  BOOST_REQUIRE(cx.pool.winograd());
  const auto planned = ops::plan_conv<Dim, float>(cx.pool, c.opts, ops::ConvPass::Forward, c.in);
  BOOST_CHECK(planned == ops::ConvPath::Winograd);
  std::vector<double> ay, ax, aw, by, bx, bw;
  run(ay, ax, aw);
  BOOST_CHECK(ay == y);
  BOOST_CHECK(ax == dx);
  BOOST_CHECK(aw == dw);
  cx.pool.set_winograd(false);
  run(by, bx, bw);
  cx.pool.set_winograd(true);
  BOOST_CHECK(by != y);
  BOOST_CHECK(bw != dw);
  BOOST_CHECK_LT(max_abs_diff(by, y), tol * std::max(1.0, max_abs(y)));
  if (off_dx) BOOST_CHECK_LT(max_abs_diff(bx, dx), tol * std::max(1.0, max_abs(dx)));
  BOOST_CHECK_LT(max_abs_diff(bw, dw), tol * std::max(1.0, max_abs(dw)));
  for (const auto& o : ineligible) {
    const ConvCase<Dim> e{o, in_shape(o.in_channels()), false, ""};
    const auto de = make_data(e, seed_e);
    const auto on = run_forward<Dim, float>(cx.pool, e, de.x, de.w, de.b);
    cx.pool.set_winograd(false);
    const auto off = run_forward<Dim, float>(cx.pool, e, de.x, de.w, de.b);
    cx.pool.set_winograd(true);
    BOOST_CHECK(on == off);
  }
}


/// A Winograd kernel run in float (`run(ctx, y, dx, dw)`) on one thread, on 3 threads and in
/// blocks of one tile, against the double references yref (forward), rx and rw (gradients):
/// within tol of them, the same bits on 1 and 3 threads, and within 1e-5 with blocks of one tile
/// (the weight gradient sums in another order).
template <class Run>
void check_winograd_float(Run&& run, const std::vector<double>& yref, const std::vector<double>& rx,
                          const std::vector<double>& rw, double tol) {
  auto& cx = contexts();
  Ctx<Eigen::ThreadPoolDevice> pool3{3};
  Ctx<Eigen::DefaultDevice> small;
  small.set_workspace_limit(4096);  // one tile per block
  const double sy = std::max(1.0, max_abs(yref)), sx = std::max(1.0, max_abs(rx)), sw = std::max(1.0, max_abs(rw));
  std::vector<double> fy, fx, fw, py, px, pw, ty, tx, tw;
  run(cx.cpu, fy, fx, fw);
  run(pool3, py, px, pw);
  run(small, ty, tx, tw);
  BOOST_CHECK_LT(max_abs_diff(fy, yref), tol * sy);
  BOOST_CHECK_LT(max_abs_diff(fx, rx), tol * sx);
  BOOST_CHECK_LT(max_abs_diff(fw, rw), tol * sw);
  BOOST_CHECK(py == fy);
  BOOST_CHECK(px == fx);
  BOOST_CHECK(pw == fw);
  BOOST_CHECK_LT(max_abs_diff(ty, fy), 1e-5 * sy);
  BOOST_CHECK_LT(max_abs_diff(tx, fx), 1e-5 * sx);
  BOOST_CHECK_LT(max_abs_diff(tw, fw), 1e-5 * sw);
}

}  // namespace

BOOST_AUTO_TEST_CASE_TEMPLATE(forward_matches_naive, D, Dims) {
  for (const auto& c : cases<D::value>()) check_forward<D::value>(c);
}
BOOST_AUTO_TEST_CASE_TEMPLATE(backward_gradcheck_and_parity, D, Dims) {
  for (const auto& c : cases<D::value>()) check_backward<D::value>(c);
}
BOOST_AUTO_TEST_CASE_TEMPLATE(tiling_and_generic_paths, D, Dims) {
  for (const auto& c : cases<D::value>()) check_tiling_and_generic<D::value>(c);
}
BOOST_AUTO_TEST_CASE_TEMPLATE(col2im_dispatch, D, Dims) { col2im_dispatch_cases<D::value>(); }
BOOST_AUTO_TEST_CASE_TEMPLATE(col2im_thin_gather, D, Dims) { col2im_gather_cases<D::value>(); }
BOOST_AUTO_TEST_CASE_TEMPLATE(thin_direct_dispatch, D, Dims) { thin_dispatch_cases<D::value>(); }
BOOST_AUTO_TEST_CASE_TEMPLATE(swap_kernel_axes_tiles, D, Dims) { check_swap_kernel_axes<D::value>(); }
BOOST_AUTO_TEST_CASE_TEMPLATE(dnnl_conv_dispatch, D, Dims) { check_dnnl_dispatch<D::value>(cases<D::value>()); }

#if DICYC_TEST_CONV_DIM == 2
BOOST_AUTO_TEST_CASE(shape_errors_2d) {
  using namespace dicyc;
  auto& ctx = contexts().cpu;
  const auto opts = O2(64, 128, 3).stride(2).padding(1).name("g_ab.down1");
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
  const auto o7 = O2(3, 4, 7).name("stem");
  expect_error<ShapeError>([&] { ops::conv_output_shape(o7, tiny.shape()); }, "is smaller than the kernel 7 x 7");
  // Stride 0.
  expect_error<ConfigError>([&] { ops::conv_output_shape(O2(3, 4, 3).stride(0), Shape<4>(3, 8, 8, 1)); },
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
      [&] { ops::conv_transpose_output_shape(O2(4, 2, 3).stride(1).output_padding(1), Shape<4>(4, 3, 3, 1)); },
      "must be smaller than the stride");
}

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
  const auto o = O2(k.cin, k.cout, 3).padding(k.p);
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
  for (const auto& k : std::vector<WinoCase>{{1, 1, 3, 3, 1, 0},
                                             {1, 2, 1, 1, 1, 1},
                                             {3, 1, 5, 7, 2, 1},
                                             {2, 5, 9, 4, 3, 0},
                                             {5, 3, 11, 13, 1, 2},
                                             {4, 4, 8, 8, 2, 1},
                                             {6, 7, 2, 10, 1, 2}}) {
    BOOST_TEST_CONTEXT("cin " << k.cin << " cout " << k.cout << " " << k.w << "x" << k.h << " n " << k.n << " pad "
                              << k.p) {
      const ConvCase<2> c{O2(k.cin, k.cout, 3).padding(k.p).bias(false), Shape<4>(k.cin, k.w, k.h, k.n), false, ""};
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
      check_winograd_float(
          [&](auto& ctx, auto& fy, auto& fx, auto& fw) {
            std::vector<double> unused;
            winograd_run<float>(ctx, k, d.x, d.w, g, fy, fx, fw, unused);
          },
          yref, rx, rw, 2e-5);
    }
  }
}

// conv_forward / conv_backward send the eligible convs to Winograd and nothing else, and
// the context's set_winograd(false) sends them back to im2col: on an eligible conv the float results equal the
// direct kernels' bit for bit with it on, and differ (at rounding level) with it off.
BOOST_AUTO_TEST_CASE(winograd_dispatch) {
  const WinoCase k{128, 128, 7, 5, 1, 1};
  check_winograd_dispatch<2>(
      {O2(128, 128, 3).padding(1).bias(false), Shape<4>(128, 7, 5, 1), false, ""}, 51,
      [&](auto& ctx, const auto& x, const auto& w, const auto& g, auto& y, auto& dx, auto& dw) {
        std::vector<double> unused;
        winograd_run<float>(ctx, k, x, w, g, y, dx, dw, unused);
      },
      // Not eligible: stride 2, a 4x4 kernel, 63 channels.
      {O2(128, 128, 3).stride(2).padding(1).bias(false), O2(128, 128, 4).padding(1).bias(false),
       O2(63, 128, 3).padding(1).bias(false)},
      [](Index cin) { return Shape<4>(cin, 7, 6, 1); }, 61, 2e-5, false);
}
#else
BOOST_AUTO_TEST_CASE(shape_errors_3d) {
  using namespace dicyc;
  const auto o = O3(32, 32, 3).name("vol");
  expect_error<ShapeError>([&] { ops::conv_output_shape(o, Shape<5>(16, 8, 8, 8, 1)); },
                           "conv3d 'vol': expected input with 32 channels (weight [32, 32, 3, 3, 3]), but got input of "
                           "shape [16, 8, 8, 8, 1] instead");
  expect_error<ShapeError>([&] { ops::conv_output_shape(o, Shape<5>(32, 8, 2, 8, 1)); },
                           "is smaller than the kernel 3 x 3 x 3");
  expect_error<ConfigError>([&] { ops::conv_output_shape(O3(3, 4, 3).stride({1, 0, 1}), Shape<5>(3, 8, 8, 8, 1)); },
                            "stride must be positive, got stride [1, 0, 1]");
}

// ------------------------------------------------------------------ Winograd F(2x2x2, 3x3x3)
// The kernels called directly, as winograd_kernels above: 1 channel, odd sizes
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
  const auto o = O3(k.cin, k.cout, 3).padding(k.p);
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
  for (const auto& k : std::vector<WinoCase3>{{1, 1, 3, 3, 3, 1, 0},
                                              {1, 2, 1, 1, 1, 1, 1},
                                              {3, 1, 5, 4, 3, 2, 1},
                                              {2, 5, 4, 6, 3, 1, 0},
                                              {5, 3, 3, 7, 5, 1, 2},
                                              {4, 4, 4, 4, 4, 2, 1},
                                              {6, 7, 2, 3, 6, 1, 2}}) {
    BOOST_TEST_CONTEXT("cin " << k.cin << " cout " << k.cout << " " << k.w << "x" << k.h << "x" << k.d << " n "
                              << k.n << " pad " << k.p) {
      const ConvCase<3> c{O3(k.cin, k.cout, 3).padding(k.p).bias(false), Shape<5>(k.cin, k.w, k.h, k.d, k.n), false,
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
      check_winograd_float([&](auto& ctx, auto& fy, auto& fx, auto& fw) { winograd3_run<float>(ctx, k, d.x, d.w, g, fy, fx, fw); },
                           yref, rx, rw, 1e-5);
    }
  }
}

// conv_forward / conv_backward send the eligible 3-D convs to Winograd, bit for bit the direct
// kernels' results, and the context's set_winograd(false) sends them back to im2col (rounding-level changes).
BOOST_AUTO_TEST_CASE(winograd3d_dispatch) {
  const WinoCase3 k{64, 64, 5, 3, 4, 1, 1};
  check_winograd_dispatch<3>(
      {O3(64, 64, 3).padding(1).bias(false), Shape<5>(64, 5, 3, 4, 1), false, ""}, 81,
      [&](auto& ctx, const auto& x, const auto& w, const auto& g, auto& y, auto& dx, auto& dw) {
        winograd3_run<float>(ctx, k, x, w, g, y, dx, dw);
      },
      // Not eligible: stride 2, 63 channels.
      {O3(64, 64, 3).stride(2).padding(1).bias(false), O3(63, 64, 3).padding(1).bias(false)},
      [](Index cin) { return Shape<5>(cin, 5, 4, 3, 1); }, 91, 1e-5, true);
}
#endif
