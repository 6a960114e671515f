// Guards against a compiler bug met on the development machine: GCC 12.2 with AVX-512
// (-march=native on Zen 5) and its SLP vectoriser turned the last of these initializer-list
// vectors into {1, 1, 1, 1}. The build turns that pass off for GCC < 13 (CMakeLists.txt); this
// test fails if a toolchain or flag change brings the bug back.
#define BOOST_TEST_MODULE toolchain
#include <boost/test/unit_test.hpp>

#include <vector>

BOOST_AUTO_TEST_CASE(initializer_lists_survive_vectorisation) {
  std::vector<double> a{1, 2, 3, 4}, b{1, 0, 5, 3.5}, ga(4, 0.0), gb(4, 0.0), m{1, 1, 0, 0};
  const std::vector<double> expect_m{1.0, 1.0, 0.0, 0.0};
  BOOST_CHECK_EQUAL_COLLECTIONS(m.begin(), m.end(), expect_m.begin(), expect_m.end());
  BOOST_CHECK_EQUAL(a[3] + b[3] + ga[0] + gb[0], 7.5);
}
