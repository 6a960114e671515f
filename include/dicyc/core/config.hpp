// dicyc/core/config.hpp -- the single place that includes Eigen's Tensor module.
//
// EIGEN_USE_THREADS / EIGEN_USE_GPU must be defined before the first Eigen include; they come
// from the CMake targets dicyc::threads and dicyc::cuda, never from a header.
//
// Test builds define DICYC_EIGEN_ASSERT_THROWS so that Eigen's internal assertions throw instead
// of being compiled out: a wrong-shaped TensorMap target then fails loudly rather than corrupting
// memory.
#pragma once

#include <stdexcept>
#include <string>

#if defined(DICYC_EIGEN_ASSERT_THROWS) && !defined(eigen_assert) && !defined(__CUDA_ARCH__)
namespace dicyc::core::detail {
[[noreturn]] inline void eigen_assert_failed(const char* cond, const char* file, int line) {
  throw std::logic_error(std::string("Eigen assertion failed: ") + cond + " at " + file + ":" +
                         std::to_string(line));
}
}  // namespace dicyc::core::detail
#define eigen_assert(x) \
  ((x) ? (void)0 : ::dicyc::core::detail::eigen_assert_failed(#x, __FILE__, __LINE__))
#endif

#include <unsupported/Eigen/CXX11/Tensor>

#define DICYC_VERSION_MAJOR 0
#define DICYC_VERSION_MINOR 1
#define DICYC_VERSION_PATCH 0
