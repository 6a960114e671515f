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
