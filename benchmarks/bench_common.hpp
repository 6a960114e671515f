// Shared by the benchmark programs: the CPU thread-pool context (2 threads by default;
// DICYC_BENCH_THREADS overrides), as PyTorch's reference runs with 2 threads.
#pragma once

#include <cstdlib>

#include "dicyc/core/context.hpp"

namespace dicyc_bench {

using Dev = Eigen::ThreadPoolDevice;

inline dicyc::core::Context<Dev>& ctx() {
  static dicyc::core::Context<Dev> c([] {
    const char* t = std::getenv("DICYC_BENCH_THREADS");
    return t ? std::atoi(t) : 2;
  }());
  return c;
}

}  // namespace dicyc_bench
