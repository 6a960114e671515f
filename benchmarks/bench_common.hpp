// Shared by the benchmark programs: the CPU thread-pool context (2 threads by default;
// DICYC_BENCH_THREADS overrides), as PyTorch's reference runs with 2 threads. DICYC_WINOGRAD=0 and
// DICYC_COL2IM=0 (and DICYC_THIN_DIRECT=0) switch those convolution paths off in it (ops::plan_conv), for comparison.
// DICYC_BENCHMARK_MAIN() is Google Benchmark's main() with the tools' OpenMP spin
// (core/openmp_env.hpp: GOMP_SPINCOUNT=1000 unless set), so the benchmarks time what the tools run.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <string>

#include <benchmark/benchmark.h>

#include "dicyc/core/context.hpp"
#include "dicyc/core/openmp_env.hpp"

namespace dicyc_bench {

using Dev = Eigen::ThreadPoolDevice;

/// A positive integer from the environment (DICYC_BENCH_SIZE, _NGF, _BLOCKS, _NDF), else `def`.
inline long env_or(const char* name, long def) {
  const char* s = std::getenv(name);
  return s ? std::max(1, std::atoi(s)) : def;
}

inline dicyc::core::Context<Dev>& ctx() {
  static dicyc::core::Context<Dev> c([] {
    const char* t = std::getenv("DICYC_BENCH_THREADS");
    return t ? std::atoi(t) : 2;
  }());
  static const bool set = [] {
    auto on = [](const char* n) {
      const char* e = std::getenv(n);
      return !(e && std::string(e) == "0");
    };
    c.set_winograd(on("DICYC_WINOGRAD"));
    c.set_col2im(on("DICYC_COL2IM"));
    c.set_thin_direct(on("DICYC_THIN_DIRECT"));
    if (const char* e = std::getenv("DICYC_DNNL_CONV")) c.set_dnnl_conv(dicyc::core::parse_dnnl_conv_mode(e));
    c.set_conv_bf16(std::getenv("DICYC_CONV_BF16") && std::string(std::getenv("DICYC_CONV_BF16")) == "1");
    return true;
  }();
  (void)set;
  return c;
}

}  // namespace dicyc_bench

#define DICYC_BENCHMARK_MAIN()                                              \
  int main(int argc, char** argv) {                                         \
    ::dicyc::core::limit_openmp_spin(argv);                                 \
    ::benchmark::Initialize(&argc, argv);                                   \
    if (::benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;     \
    ::benchmark::RunSpecifiedBenchmarks();                                  \
    ::benchmark::Shutdown();                                                \
    return 0;                                                               \
  }                                                                         \
  static_assert(true, "DICYC_BENCHMARK_MAIN() is used with a semicolon")
