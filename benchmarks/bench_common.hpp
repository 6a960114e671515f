// Shared by the benchmark programs: the CPU thread-pool context (2 threads by default;
// DICYC_BENCH_THREADS overrides), as PyTorch's reference runs with 2 threads. DICYC_WINOGRAD=0 and
// DICYC_COL2IM=0 (and DICYC_THIN_DIRECT=0, DICYC_WEIGHT_REUSE=0: ops/conv_dnnl.hpp's weight copies)
// switch those convolution paths off in it (ops::plan_conv), for comparison; DICYC_POOL_SPIN=0/1
// sets the pool's spinning.
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

/// The generator width a benchmark program uses without DICYC_BENCH_NGF (defined per program by
/// DICYC_BENCH_DEFAULT_NGF before this header; 64 otherwise).
#ifndef DICYC_BENCH_DEFAULT_NGF
#define DICYC_BENCH_DEFAULT_NGF 64
#endif
inline long default_ngf() { return DICYC_BENCH_DEFAULT_NGF; }

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
    c.set_reuse_weight_layouts(on("DICYC_WEIGHT_REUSE"));
    if (const char* e = std::getenv("DICYC_DNNL_CONV")) c.set_dnnl_conv(dicyc::core::parse_dnnl_conv_mode(e));
    c.set_conv_bf16(std::getenv("DICYC_CONV_BF16") && std::string(std::getenv("DICYC_CONV_BF16")) == "1");
    // The pool's spinning as the tools set it (core::pool_spinning_pays); DICYC_POOL_SPIN=0 / 1
    // says otherwise. The ngf is the one DICYC_BENCH_NGF gives, else the program's default width
    // (bench_model 64, bench_model3d 16; the op benchmarks count as 64: the pool's default).
    bool spin = dicyc::core::pool_spinning_pays(env_or("DICYC_BENCH_NGF", default_ngf()), c.conv_bf16());
    if (const char* e = std::getenv("DICYC_POOL_SPIN")) spin = std::string(e) != "0";
    c.set_pool_spinning(spin);
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
