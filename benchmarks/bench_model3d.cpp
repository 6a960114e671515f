// 3-D network and model benchmarks on the CPU thread pool, the counterparts of
// benchmarks/torch_reference3d.py (2 threads by default; DICYC_BENCH_THREADS overrides). Batch 1,
// one channel, a cube of DICYC_BENCH_SIZE (default 64) voxels per side; generator width
// DICYC_BENCH_NGF (16) with DICYC_BENCH_BLOCKS (3) residual blocks, PatchGAN width DICYC_BENCH_NDF
// (32), the spec's 6^3 TPS control grid and 32-channel offset branches:
//   G3_fwd          generator inference (no caches kept)
//   G3_fwd_bwd      generator forward with caches, then backward of mean(G(x)) into the parameters
//   D3_fwd_bwd      discriminator forward and backward of mean(D(x))
//   cyclegan3_step  one CycleGAN iteration: generator step then discriminator step, Adam on all four
//   dicyc3_step     one NMI-DiCyc iteration (EmMode::Single): undeformed and deformed passes, one
//                   backward, E and M steps, D step
// Its own translation unit: the 3-D model instantiations are the heaviest in the benchmarks.
// benchmarks/compare_models.py --dim 3 runs these next to the PyTorch reference.
#include <benchmark/benchmark.h>

#define DICYC_BENCH_DEFAULT_NGF 16  // gen3(): DICYC_BENCH_NGF, else 16
#include "bench_common.hpp"

#include <cstdlib>

#include "dicyc/model.hpp"

using namespace dicyc;
using dicyc_bench::ctx;
using dicyc_bench::Dev;

namespace {
using dicyc_bench::env_or;
Index size3() { return env_or("DICYC_BENCH_SIZE", 64); }
nn::GeneratorOptions gen3() {
  return nn::GeneratorOptions().ngf(env_or("DICYC_BENCH_NGF", 16)).n_blocks(int(env_or("DICYC_BENCH_BLOCKS", 3)));
}
model::ModelOptions opts3(const std::string& preset) {
  return model::ModelOptions::preset(preset).generator(gen3()).ndf(env_or("DICYC_BENCH_NDF", 32)).seed(0);
}
std::vector<float> rnd(Index n, std::uint64_t seed) {
  core::Rng rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = float(rng.normal());
  return v;
}
Shape<5> cube() {
  const Index n = size3();
  return Shape<5>(1, n, n, n, 1);
}
}  // namespace

struct Gen3Case {
  nn::ParameterGroup<float, Dev> g{"g_ab"};
  nn::ResnetGenerator<3, float, Dev> G{g, "g_ab", gen3()};
  Shape<5> s = cube();
  std::vector<float> x = rnd(num_elements(s), 1);
  Gen3Case() {
    core::Rng rng(0);
    g.allocate(ctx(), rng);
  }
};

static void G3_fwd(benchmark::State& st) {
  Gen3Case c;
  std::vector<float> y(c.x.size());
  ConstTensorMap<float, 5> xm(c.x.data(), c.s);
  TensorMap<float, 5> ym(y.data(), c.s);
  for (auto _ : st) {
    c.G.infer(ctx(), xm, ym);
    benchmark::DoNotOptimize(y.data());
  }
}

static void G3_fwd_bwd(benchmark::State& st) {
  Gen3Case c;
  std::vector<float> dy(c.x.size(), 1.0f / float(c.x.size()));
  ConstTensorMap<float, 5> xm(c.x.data(), c.s), dym(dy.data(), c.s);
  for (auto _ : st) {
    c.g.zero_grad();
    nn::ResnetGenerator<3, float, Dev>::Cache cache;
    c.G.forward(ctx(), xm, cache);
    c.G.backward(ctx(), xm, cache, dym, nullptr);
    benchmark::DoNotOptimize(c.g.grads());
  }
}

static void D3_fwd_bwd(benchmark::State& st) {
  nn::ParameterGroup<float, Dev> g("d_b");
  nn::PatchDiscriminator<3, float, Dev> D(g, "d_b", 1, env_or("DICYC_BENCH_NDF", 32));
  core::Rng rng(0);
  g.allocate(ctx(), rng);
  const Shape<5> s = cube();
  const auto ys = D.output_shape(s);
  auto x = rnd(num_elements(s), 1);
  std::vector<float> y(static_cast<std::size_t>(num_elements(ys))), dy(y.size(), 1.0f / float(y.size()));
  ConstTensorMap<float, 5> xm(x.data(), s), dym(dy.data(), ys);
  TensorMap<float, 5> ym(y.data(), ys);
  for (auto _ : st) {
    g.zero_grad();
    nn::PatchDiscriminator<3, float, Dev>::Cache c;
    D.forward(ctx(), xm, c, ym);
    D.backward(ctx(), xm, c, dym, nullptr);
    benchmark::DoNotOptimize(g.grads());
  }
}

static void cyclegan3_step(benchmark::State& st) {
  model::CycleGan<3, float, Dev> m(ctx(), opts3("cyclegan"));
  const Shape<5> s = cube();
  auto x = rnd(num_elements(s), 1), y = rnd(num_elements(s), 2);
  ConstTensorMap<float, 5> xm(x.data(), s), ym(y.data(), s);
  for (auto _ : st) benchmark::DoNotOptimize(m.train_step(xm, ym).g_total);
}

static void dicyc3_step(benchmark::State& st) {
  model::DiCyc<3, float, Dev> m(ctx(), opts3("nmi-dicyc").em(model::EmMode::Single));
  const Shape<5> s = cube();
  auto x = rnd(num_elements(s), 1), y = rnd(num_elements(s), 2);
  ConstTensorMap<float, 5> xm(x.data(), s), ym(y.data(), s);
  for (auto _ : st) benchmark::DoNotOptimize(m.train_step(xm, ym).g_total);
}

BENCHMARK(G3_fwd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(G3_fwd_bwd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(D3_fwd_bwd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(cyclegan3_step)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(dicyc3_step)->Unit(benchmark::kMillisecond)->UseRealTime();

DICYC_BENCHMARK_MAIN();
