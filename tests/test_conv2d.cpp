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
