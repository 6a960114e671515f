// Network and model benchmarks on the CPU thread pool (2 threads by default; DICYC_BENCH_THREADS
// overrides), at the sizes of benchmarks/torch_reference.py: batch 1, one channel, 128x128
// (DICYC_BENCH_SIZE overrides), ResNet-6 generator with ngf 64, 70x70 PatchGAN with ndf 64
// (DICYC_BENCH_NGF, DICYC_BENCH_BLOCKS and DICYC_BENCH_NDF override the widths).
//   G_fwd          generator inference (no caches kept)
//   G_fwd_bwd      generator forward with caches, then backward of mean(G(x)) into the parameters
//   D_fwd_bwd      discriminator forward and backward of mean(D(x))
//   cyclegan_step  one CycleGAN iteration: generator step then discriminator step, Adam on all four
//   dicyc_step     one NMI-DiCyc iteration (6x6 TPS grid, four offset branches): undeformed and
//                  deformed passes, one backward, E and M steps, D step (EmMode::Single)
//   dicyc_step_sequential   the same with the separate E step
//   G_infer_volume generator inference over a ch2-sized volume, 181 axial slices of 181x217, 8 slices
//                  per call, each padded to 184x220 as dicyc-synth does (torch_reference.py's
//                  G_infer_volume feeds 181x217 directly; ours computes 3 % more pixels)
// benchmarks/compare_models.py runs these next to the PyTorch reference and reports the ratios and
// both programs' peak resident memory.
#include <benchmark/benchmark.h>

#include "bench_common.hpp"

#include <cstdlib>

#include "dicyc/model.hpp"

using namespace dicyc;
using dicyc_bench::ctx;
using dicyc_bench::Dev;

namespace {
using dicyc_bench::env_or;
Index bench_size() { return env_or("DICYC_BENCH_SIZE", 128); }
/// The widths: DICYC_BENCH_NGF (64), DICYC_BENCH_BLOCKS (6), DICYC_BENCH_NDF (64); the demo's
/// are 16, 4, 32.
nn::GeneratorOptions gen2() {
  return nn::GeneratorOptions().ngf(env_or("DICYC_BENCH_NGF", 64)).n_blocks(int(env_or("DICYC_BENCH_BLOCKS", 6)));
}
Index ndf2() { return env_or("DICYC_BENCH_NDF", 64); }
model::ModelOptions opts2(const std::string& preset) {
  return model::ModelOptions::preset(preset).generator(gen2()).ndf(ndf2()).seed(0);
}
std::vector<float> rnd(Index n, std::uint64_t seed) {
  core::Rng rng(seed);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = float(rng.normal());
  return v;
}
}  // namespace

/// The spec's generator (ngf 64, 6 blocks) and a random input of the benchmark size.
struct GenCase {
  nn::ParameterGroup<float, Dev> g{"g_ab"};
  nn::ResnetGenerator<2, float, Dev> G{g, "g_ab", gen2()};
  Shape<4> s;
  std::vector<float> x;
  GenCase() : s(1, bench_size(), bench_size(), 1), x(rnd(num_elements(s), 1)) {
    core::Rng rng(0);
    g.allocate(ctx(), rng);
  }
};

static void G_fwd(benchmark::State& st) {
  GenCase c;
  std::vector<float> y(c.x.size());
  ConstTensorMap<float, 4> xm(c.x.data(), c.s);
  TensorMap<float, 4> ym(y.data(), c.s);
  for (auto _ : st) {
    c.G.infer(ctx(), xm, ym);
    benchmark::DoNotOptimize(y.data());
  }
}

static void G_fwd_bwd(benchmark::State& st) {
  GenCase c;
  std::vector<float> dy(c.x.size(), 1.0f / float(c.x.size()));  // d mean(G(x))
  ConstTensorMap<float, 4> xm(c.x.data(), c.s), dym(dy.data(), c.s);
  for (auto _ : st) {
    c.g.zero_grad();
    nn::ResnetGenerator<2, float, Dev>::Cache cache;
    c.G.forward(ctx(), xm, cache);
    c.G.backward(ctx(), xm, cache, dym, nullptr);
    benchmark::DoNotOptimize(c.g.grads());
  }
}

static void D_fwd_bwd(benchmark::State& st) {
  const Index n = bench_size();
  nn::ParameterGroup<float, Dev> g("d_b");
  nn::PatchDiscriminator<2, float, Dev> D(g, "d_b", 1, ndf2());
  core::Rng rng(0);
  g.allocate(ctx(), rng);
  const Shape<4> s(1, n, n, 1);
  const auto ys = D.output_shape(s);
  auto x = rnd(num_elements(s), 1);
  std::vector<float> y(static_cast<std::size_t>(num_elements(ys))), dy(y.size(), 1.0f / float(y.size()));
  ConstTensorMap<float, 4> xm(x.data(), s), dym(dy.data(), ys);
  TensorMap<float, 4> ym(y.data(), ys);
  for (auto _ : st) {
    g.zero_grad();
    nn::PatchDiscriminator<2, float, Dev>::Cache c;
    D.forward(ctx(), xm, c, ym);
    D.backward(ctx(), xm, c, dym, nullptr);
    benchmark::DoNotOptimize(g.grads());
  }
}

static void cyclegan_step(benchmark::State& st) {
  const Index n = bench_size();
  model::CycleGan<2, float, Dev> m(ctx(), opts2("cyclegan"));
  const Shape<4> s(1, n, n, 1);
  auto x = rnd(num_elements(s), 1), y = rnd(num_elements(s), 2);
  ConstTensorMap<float, 4> xm(x.data(), s), ym(y.data(), s);
  for (auto _ : st) benchmark::DoNotOptimize(m.train_step(xm, ym).g_total);
}

static void dicyc_step(benchmark::State& st, model::EmMode em) {
  const Index n = bench_size();
  model::DiCyc<2, float, Dev> m(ctx(), opts2("nmi-dicyc").em(em));
  const Shape<4> s(1, n, n, 1);
  auto x = rnd(num_elements(s), 1), y = rnd(num_elements(s), 2);
  ConstTensorMap<float, 4> xm(x.data(), s), ym(y.data(), s);
  for (auto _ : st) benchmark::DoNotOptimize(m.train_step(xm, ym).g_total);
}

static void G_infer_volume(benchmark::State& st) {
  GenCase c;
  // DICYC_BENCH_SLICES: fewer slices for a quick run (the time is linear in the slice count).
  const char* zs = std::getenv("DICYC_BENCH_SLICES");
  const Index W = 184, H = 220, B = 8, Z = zs ? std::max(1, std::atoi(zs)) : 181;
  const auto vol = rnd(W * H * B, 3);
  std::vector<float> y(vol.size());
  for (auto _ : st) {
    for (Index z = 0; z < Z; z += B) {
      const Index nb = std::min(B, Z - z);
      ConstTensorMap<float, 4> xm(vol.data(), 1, W, H, nb);
      TensorMap<float, 4> ym(y.data(), 1, W, H, nb);
      c.G.infer(ctx(), xm, ym);
    }
    benchmark::DoNotOptimize(y.data());
  }
}

BENCHMARK(G_infer_volume)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
BENCHMARK(G_fwd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(G_fwd_bwd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(D_fwd_bwd)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(cyclegan_step)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(dicyc_step, single, model::EmMode::Single)->Name("dicyc_step")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(dicyc_step, sequential, model::EmMode::Sequential)
    ->Name("dicyc_step_sequential")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

DICYC_BENCHMARK_MAIN();
