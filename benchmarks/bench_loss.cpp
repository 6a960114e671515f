// Loss benchmarks, value + gradient, on the CPU thread pool (2 threads by default;
// DICYC_BENCH_THREADS overrides). benchmarks/compare_torch.py --losses times the PyTorch
// formulations (autograd) of the same losses and prints the ratios.
#include <benchmark/benchmark.h>

#include "bench_common.hpp"

#include <cstdlib>

#include "dicyc/core/rng.hpp"
#include "dicyc/loss.hpp"

using namespace dicyc;
using dicyc_bench::ctx;
using dicyc_bench::Dev;

template <int R>
static void loss_bench(benchmark::State& st, const Shape<R>& s, int which) {
  core::Rng rng(3);
  const Index n = num_elements(s);
  std::vector<float> a(n), b(n);
  for (Index i = 0; i < n; ++i) {
    a[i] = float(rng.uniform(-1, 1));
    b[i] = a[i] * a[i] + 0.3f * float(rng.uniform(-1, 1));
  }
  std::vector<float> ga(n), gb(n);
  ConstTensorMap<float, R> am(a.data(), s), bm(b.data(), s);
  TensorMap<float, R> gam(ga.data(), s), gbm(gb.data(), s);
  for (auto _ : st) {
    double v = 0;
    if (which == 0) v = loss::nmi_loss<float, R>(ctx(), am, bm, {}, {&gam, &gbm});
    if constexpr (R == 4) {
      if (which == 1) v = loss::mind_loss<2, float>(ctx(), am, bm, {}, {&gam, &gbm});
      if (which == 2) v = loss::gcc_loss<2, float>(ctx(), am, bm, {&gam, &gbm});
    }
    benchmark::DoNotOptimize(v);
  }
  st.counters["voxels"] = double(n);
}

BENCHMARK_CAPTURE(loss_bench, nmi/2d/128x128, Shape<4>(1, 128, 128, 1), 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(loss_bench, nmi/3d/64^3, Shape<5>(1, 64, 64, 64, 1), 0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(loss_bench, mind/2d/128x128, Shape<4>(1, 128, 128, 1), 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(loss_bench, gcc/2d/128x128, Shape<4>(1, 128, 128, 1), 2)->Unit(benchmark::kMillisecond)->UseRealTime();

DICYC_BENCHMARK_MAIN();
