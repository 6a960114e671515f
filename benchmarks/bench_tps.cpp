// Deformation benchmarks on the CPU thread pool (2 threads by default; DICYC_BENCH_THREADS
// overrides): the grid sampler forward + backward (to input and grid) on a 256x32x32 latent map
// and a 1x128x128 image, the 3-D backward alone at the 3-D DiCyc's widths at 48^3 (16 channels at
// 48^3, 32 at 24^3, 64 at 12^3), and the TPS grid (6x6 control points) at 32x32, forward + backward.
// benchmarks/compare_torch_extra.py times torch's grid_sample and the reference TPSGrid alongside.
#include <benchmark/benchmark.h>

#include "bench_common.hpp"

#include <cstdlib>

#include "dicyc/core/rng.hpp"
#include "dicyc/tps.hpp"

using namespace dicyc;
using dicyc_bench::ctx;
using dicyc_bench::Dev;

static std::vector<float> rnd(Index n, std::uint64_t seed, double lo, double hi) {
  core::Rng rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = float(rng.uniform(lo, hi));
  return v;
}

static void sampler(benchmark::State& st, Index C, Index size) {
  const Shape<4> xs(C, size, size, 1), gs(2, size, size, 1);
  auto x = rnd(num_elements(xs), 1, -1, 1), g = rnd(num_elements(gs), 2, -1.05, 1.05), dy = rnd(num_elements(xs), 3, -1, 1);
  std::vector<float> y(x.size()), dx(x.size()), dg(g.size());
  ConstTensorMap<float, 4> xm(x.data(), xs), gm(g.data(), gs), dym(dy.data(), xs);
  TensorMap<float, 4> ym(y.data(), xs), dxm(dx.data(), xs), dgm(dg.data(), gs);
  for (auto _ : st) {
    tps::grid_sample_forward<2, float>(ctx(), xm, gm, ym);
    std::fill(dx.begin(), dx.end(), 0.0f);
    std::fill(dg.begin(), dg.end(), 0.0f);
    tps::grid_sample_backward<2, float>(ctx(), xm, gm, dym, &dxm, &dgm);
    benchmark::DoNotOptimize(dx.data());
  }
}

/// The 3-D backward (to input and grid) alone, C channels on a size^3 cube, a grid of the same size.
static void sampler3_bwd(benchmark::State& st, Index C, Index size) {
  const Shape<5> xs(C, size, size, size, 1), gs(3, size, size, size, 1);
  auto x = rnd(num_elements(xs), 1, -1, 1), g = rnd(num_elements(gs), 2, -1.05, 1.05), dy = rnd(num_elements(xs), 3, -1, 1);
  std::vector<float> dx(x.size()), dg(g.size());
  ConstTensorMap<float, 5> xm(x.data(), xs), gm(g.data(), gs), dym(dy.data(), xs);
  TensorMap<float, 5> dxm(dx.data(), xs), dgm(dg.data(), gs);
  for (auto _ : st) {
    tps::grid_sample_backward<3, float>(ctx(), xm, gm, dym, &dxm, &dgm);
    benchmark::DoNotOptimize(dx.data());
  }
}

static void tps_grid(benchmark::State& st) {
  tps::TpsGrid<2, float, Dev> tg(ctx(), {6, 6}, {32, 32});
  auto d = rnd(2 * 36, 4, -0.1, 0.1);
  std::vector<float> grid(2 * 32 * 32), dd(d.size());
  ConstTensorMap<float, 3> dm(d.data(), tg.disp_shape(1));
  TensorMap<float, 4> gm(grid.data(), tg.grid_shape(1));
  TensorMap<float, 3> ddm(dd.data(), tg.disp_shape(1));
  for (auto _ : st) {
    tg.forward(ctx(), dm, gm);
    tg.backward(ctx(), ConstTensorMap<float, 4>(grid.data(), tg.grid_shape(1)), ddm);
    benchmark::DoNotOptimize(dd.data());
  }
}

BENCHMARK_CAPTURE(sampler, sampler_fwd_bwd/2d/c256/32x32, 256, 32)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(sampler, sampler_fwd_bwd/2d/c1/128x128, 1, 128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(sampler3_bwd, sampler_bwd/3d/c16/48, 16, 48)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(sampler3_bwd, sampler_bwd/3d/c32/24, 32, 24)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(sampler3_bwd, sampler_bwd/3d/c64/12, 64, 12)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(tps_grid)->Name("tps_grid_fwd_bwd/2d/6x6/32x32")->Unit(benchmark::kMillisecond)->UseRealTime();

DICYC_BENCHMARK_MAIN();
