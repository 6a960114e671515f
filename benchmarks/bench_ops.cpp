// Op benchmarks on the CPU thread pool (2 threads by default; DICYC_BENCH_THREADS overrides).
// Labels name op, dimension, channels, size and kernel. GFLOP/s counts 2 flops per MAC; forward +
// backward counts 3 passes (forward, input gradient, weight gradient), as PyTorch's reference does.
// Compare with PyTorch through benchmarks/compare_torch.py, never by absolute times alone.
#include <benchmark/benchmark.h>

#include "bench_common.hpp"

#include <cstdlib>

#include "dicyc/ops.hpp"

using namespace dicyc;
using dicyc_bench::ctx;
using dicyc_bench::Dev;

template <int R>
static core::Tensor<float, R, Dev> rnd(const Shape<R>& s, std::uint64_t seed) {
  core::Rng rng(seed);
  std::vector<float> v(static_cast<std::size_t>(num_elements(s)));
  for (auto& e : v) e = float(rng.normal(0, 0.1));
  return core::Tensor<float, R, Dev>::from_host(ctx(), s, v);
}

static void set_backend(benchmark::State& st, int b) {
  const auto be = b ? ops::GemmBackend::Dnnl : ops::GemmBackend::Eigen;
  if (!ops::gemm_backend_available(be)) {
    st.SkipWithError("backend not built");
    return;
  }
  ops::set_gemm_backend(be);
}

template <int Dim>
static void conv_bench(benchmark::State& st, Index ch, Index size, bool backward) {
  set_backend(st, int(st.range(0)));
  constexpr int R = Dim + 2;
  Shape<R> xs;
  xs[0] = ch;
  for (int d = 0; d < Dim; ++d) xs[d + 1] = size;
  xs[R - 1] = 1;
  const auto o = ops::ConvOptions<Dim>(ch, ch, 3).padding(1).bias(false);
  auto x = rnd<R>(xs, 1);
  auto w = rnd<R>(ops::conv_weight_shape(o), 2);
  core::Tensor<float, R, Dev> y(ctx(), ops::conv_output_shape(o, xs)), dx(ctx(), xs), dw(ctx(), w.shape());
  auto ym = y.map();
  auto dxm = dx.map();
  auto dwm = dw.map();
  for (auto _ : st) {
    ops::conv_forward<Dim>(ctx(), o, x.cmap(), w.cmap(), nullptr, ym);
    if (backward) {
      dx.set_zero();
      dw.set_zero();
      ops::conv_backward<Dim>(ctx(), o, x.cmap(), w.cmap(), y.cmap(), &dxm, &dwm, nullptr);
    }
    benchmark::DoNotOptimize(y.data());
  }
  double macs = double(ch) * ch;
  for (int d = 0; d < Dim; ++d) macs *= 3.0 * size;
  st.counters["GFLOP/s"] = benchmark::Counter(2 * macs * (backward ? 3 : 1) * st.iterations(), benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
}

static void BM_conv2d_fwd(benchmark::State& st) { conv_bench<2>(st, 256, 32, false); }
static void BM_conv2d_fwd_bwd(benchmark::State& st) { conv_bench<2>(st, 256, 32, true); }
static void BM_conv3d_fwd(benchmark::State& st) { conv_bench<3>(st, 32, 32, false); }
static void BM_conv3d_fwd_bwd(benchmark::State& st) { conv_bench<3>(st, 32, 32, true); }
// Arg: 1 = oneDNN sgemm, 0 = pure Eigen.
BENCHMARK(BM_conv2d_fwd)->Name("conv_fwd/2d/c256/32x32/k3")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_conv2d_fwd_bwd)->Name("conv_fwd_bwd/2d/c256/32x32/k3")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_conv3d_fwd)->Name("conv_fwd/3d/c32/32^3/k3")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_conv3d_fwd_bwd)->Name("conv_fwd_bwd/3d/c32/32^3/k3")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();

// Winograd F(4x4, 3x3) against im2col + oneDNN GEMM on one pass of a 2-D stride-1 3x3 conv, C
// channels in and out, at size^2: the measurements behind ops::detail::kWinogradMinChannels.
// Args: C, size, path (1 Winograd, 0 im2col), pass (0 forward, 1 input gradient, 2 weight
// gradient). The Winograd side calls the kernels directly, so it runs below the threshold too.
static void BM_conv_winograd(benchmark::State& st) {
  const Index C = st.range(0), size = st.range(1);
  const bool wino = st.range(2) != 0;
  const int pass = int(st.range(3));
  ops::set_gemm_backend(ops::gemm_backend_available(ops::GemmBackend::Dnnl) ? ops::GemmBackend::Dnnl
                                                                            : ops::GemmBackend::Eigen);
  const auto o = ops::ConvOptions<2>(C, C, 3).padding(1).bias(false);
  const Shape<4> xs(C, size, size, 1);
  auto x = rnd<4>(xs, 7);
  auto w = rnd<4>(ops::conv_weight_shape(o), 8);
  auto dy = rnd<4>(xs, 9);
  core::Tensor<float, 4, Dev> y(ctx(), xs), dx(ctx(), xs), dw(ctx(), w.shape());
  dx.set_zero();
  dw.set_zero();
  auto ym = y.map();
  auto dxm = dx.map();
  auto dwm = dw.map();
  const Index cc = C * C;
  ctx().set_winograd(false);
  for (auto _ : st) {
    if (!wino) {
      if (pass == 0) ops::conv_forward<2>(ctx(), o, x.cmap(), w.cmap(), nullptr, ym);
      if (pass == 1) ops::conv_backward<2>(ctx(), o, x.cmap(), w.cmap(), dy.cmap(), &dxm, nullptr, nullptr);
      if (pass == 2) ops::conv_backward<2>(ctx(), o, x.cmap(), w.cmap(), dy.cmap(), nullptr, &dwm, nullptr);
    } else if (pass == 0) {
      const float* w0 = w.data();
      ops::detail::winograd_conv2d<float>(ctx(), x.data(), xs, C, [&](int a, int b) { return w0 + cc * (a + 3 * b); },
                                          y.data(), xs, 1, 1, false);
    } else if (pass == 1) {
      const float* w0 = w.data();
      ops::detail::winograd_conv2d<float>(
          ctx(), dy.data(), xs, C, [&](int a, int b) { return w0 + cc * ((2 - a) + 3 * (2 - b)); }, dx.data(), xs, 1,
          1, true, true);
    } else {
      ops::detail::winograd_wgrad2d<float>(ctx(), x.data(), xs, dy.data(), xs, dw.data(), 1, 1);
    }
    benchmark::DoNotOptimize(y.data());
  }
  ctx().set_winograd(true);
  const double macs = double(C) * C * 9 * size * size;
  st.counters["GFLOP/s"] = benchmark::Counter(2 * macs * st.iterations(), benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_conv_winograd)
    ->Name("conv_winograd/2d")
    ->ArgNames({"C", "size", "winograd", "pass"})
    ->ArgsProduct({{16, 32, 64, 128, 256}, {32, 64, 128}, {0, 1}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The same for 3-D, Winograd F(2x2x2, 3x3x3) against im2col at size^3: the measurements behind
// ops::detail::kWinograd3MinChannels.
static void BM_conv_winograd3(benchmark::State& st) {
  const Index C = st.range(0), size = st.range(1);
  const bool wino = st.range(2) != 0;
  const int pass = int(st.range(3));
  ops::set_gemm_backend(ops::gemm_backend_available(ops::GemmBackend::Dnnl) ? ops::GemmBackend::Dnnl
                                                                            : ops::GemmBackend::Eigen);
  const auto o = ops::ConvOptions<3>(C, C, 3).padding(1).bias(false);
  const Shape<5> xs(C, size, size, size, 1);
  auto x = rnd<5>(xs, 7);
  auto w = rnd<5>(ops::conv_weight_shape(o), 8);
  auto dy = rnd<5>(xs, 9);
  core::Tensor<float, 5, Dev> y(ctx(), xs), dx(ctx(), xs), dw(ctx(), w.shape());
  dx.set_zero();
  dw.set_zero();
  auto ym = y.map();
  auto dxm = dx.map();
  auto dwm = dw.map();
  const Index cc = C * C;
  ctx().set_winograd(false);
  for (auto _ : st) {
    if (!wino) {
      if (pass == 0) ops::conv_forward<3>(ctx(), o, x.cmap(), w.cmap(), nullptr, ym);
      if (pass == 1) ops::conv_backward<3>(ctx(), o, x.cmap(), w.cmap(), dy.cmap(), &dxm, nullptr, nullptr);
      if (pass == 2) ops::conv_backward<3>(ctx(), o, x.cmap(), w.cmap(), dy.cmap(), nullptr, &dwm, nullptr);
    } else if (pass == 0) {
      const float* w0 = w.data();
      ops::detail::winograd_conv3d<float>(
          ctx(), x.data(), xs, C, [&](int a, int b, int c) { return w0 + cc * (a + 3 * b + 9 * c); }, y.data(), xs, 1,
          1, 1, false);
    } else if (pass == 1) {
      const float* w0 = w.data();
      ops::detail::winograd_conv3d<float>(
          ctx(), dy.data(), xs, C, [&](int a, int b, int c) { return w0 + cc * ((2 - a) + 3 * (2 - b) + 9 * (2 - c)); },
          dx.data(), xs, 1, 1, 1, true, true);
    } else {
      ops::detail::winograd_wgrad3d<float>(ctx(), x.data(), xs, dy.data(), xs, dw.data(), 1, 1, 1);
    }
    benchmark::DoNotOptimize(y.data());
  }
  ctx().set_winograd(true);
  const double macs = double(C) * C * 27 * size * size * size;
  st.counters["GFLOP/s"] = benchmark::Counter(2 * macs * st.iterations(), benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_conv_winograd3)
    ->Name("conv_winograd/3d")
    ->ArgNames({"C", "size", "winograd", "pass"})
    ->ArgsProduct({{8, 16, 32, 64, 128}, {16, 32}, {0, 1}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// One pass of one conv layer, batch 1, float: the PatchGAN's (4x4 kernels, padding 1, stride 2 for
// the first three; input 128^2) and the 2-D generator's non-Winograd ones at 128^2, ngf 64 (7x7
// stem and head, the 3x3 stride-2 downsampling; transposed = the 3x3 stride-2 upsampling, output
// padding 1), and the 3-D generator's at 64^3, ngf 16. Args: cin, cout, input size, kernel, stride,
// transposed, pass (0 forward, 1 input gradient, 2 weight gradient). Where a model's time goes,
// layer by layer, with the current dispatch (DICYC_COL2IM=0 / DICYC_WINOGRAD=0 switch paths off).
template <int Dim>
static void conv_layer_bench(benchmark::State& st) {
  constexpr int R = Dim + 2;
  const Index cin = st.range(0), cout = st.range(1), size = st.range(2), k = st.range(3), stride = st.range(4);
  const bool tr = st.range(5) != 0;
  const int pass = int(st.range(6));
  ops::set_gemm_backend(ops::gemm_backend_available(ops::GemmBackend::Dnnl) ? ops::GemmBackend::Dnnl
                                                                            : ops::GemmBackend::Eigen);
  auto o = ops::ConvOptions<Dim>(cin, cout, k).stride(stride).padding(k == 4 ? 1 : k / 2).bias(false);
  if (tr) o.output_padding(stride - 1);
  Shape<R> xs;
  xs[0] = cin;
  for (int d = 0; d < Dim; ++d) xs[d + 1] = size;
  xs[R - 1] = 1;
  const auto ys = tr ? ops::conv_transpose_output_shape(o, xs) : ops::conv_output_shape(o, xs);
  auto x = rnd<R>(xs, 7);
  auto w = rnd<R>(tr ? ops::conv_transpose_weight_shape(o) : ops::conv_weight_shape(o), 8);
  auto dy = rnd<R>(ys, 9);
  core::Tensor<float, R, Dev> y(ctx(), ys), dx(ctx(), xs), dw(ctx(), w.shape());
  dx.set_zero();
  dw.set_zero();
  auto ym = y.map();
  auto dxm = dx.map();
  auto dwm = dw.map();
  for (auto _ : st) {
    if (tr) {
      if (pass == 0) ops::conv_transpose_forward<Dim>(ctx(), o, x.cmap(), w.cmap(), nullptr, ym);
      if (pass == 1) ops::conv_transpose_backward<Dim>(ctx(), o, x.cmap(), w.cmap(), dy.cmap(), &dxm, nullptr, nullptr);
      if (pass == 2) ops::conv_transpose_backward<Dim>(ctx(), o, x.cmap(), w.cmap(), dy.cmap(), nullptr, &dwm, nullptr);
    } else {
      if (pass == 0) ops::conv_forward<Dim>(ctx(), o, x.cmap(), w.cmap(), nullptr, ym);
      if (pass == 1) ops::conv_backward<Dim>(ctx(), o, x.cmap(), w.cmap(), dy.cmap(), &dxm, nullptr, nullptr);
      if (pass == 2) ops::conv_backward<Dim>(ctx(), o, x.cmap(), w.cmap(), dy.cmap(), nullptr, &dwm, nullptr);
    }
    benchmark::DoNotOptimize(y.data());
  }
  double macs = double(cin) * cout;
  for (int d = 0; d < Dim; ++d) macs *= double(k) * double(tr ? xs[d + 1] : ys[d + 1]);
  st.counters["GFLOP/s"] = benchmark::Counter(2 * macs * st.iterations(), benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
}
static void BM_conv_layer2(benchmark::State& st) { conv_layer_bench<2>(st); }
static void BM_conv_layer3(benchmark::State& st) { conv_layer_bench<3>(st); }
// Each model's layers as {cin, cout, input size, kernel, stride, transposed}, three passes each.
static const int conv_layers_registered = [] {
  struct Model {
    const char* name;
    void (*fn)(benchmark::State&);
    std::vector<std::vector<int64_t>> layers;
  };
  const Model models[] = {
      {"conv_layer/2d/patchgan", BM_conv_layer2,
       {{1, 64, 128, 4, 2, 0}, {64, 128, 64, 4, 2, 0}, {128, 256, 32, 4, 2, 0}, {256, 512, 16, 4, 1, 0},
        {512, 1, 15, 4, 1, 0}}},
      {"conv_layer/2d/generator", BM_conv_layer2,
       {{1, 64, 128, 7, 1, 0}, {64, 128, 128, 3, 2, 0}, {128, 256, 64, 3, 2, 0}, {256, 128, 32, 3, 2, 1},
        {128, 64, 64, 3, 2, 1}, {64, 1, 128, 7, 1, 0}}},
      // The demo's and the held-out experiment's 2-D widths (ngf 16, ndf 32, 96^2 crops).
      {"conv_layer/2d/generator_ngf16", BM_conv_layer2,
       {{1, 16, 96, 7, 1, 0}, {16, 32, 96, 3, 2, 0}, {32, 64, 48, 3, 2, 0}, {64, 32, 24, 3, 2, 1},
        {32, 16, 48, 3, 2, 1}, {16, 1, 96, 7, 1, 0}}},
      {"conv_layer/2d/patchgan_ndf32", BM_conv_layer2,
       {{1, 32, 96, 4, 2, 0}, {32, 64, 48, 4, 2, 0}, {64, 128, 24, 4, 2, 0}, {128, 256, 12, 4, 1, 0},
        {256, 1, 11, 4, 1, 0}}},
      {"conv_layer/3d/generator", BM_conv_layer3,
       {{1, 16, 64, 7, 1, 0}, {16, 32, 64, 3, 2, 0}, {32, 64, 32, 3, 2, 0}, {64, 32, 16, 3, 2, 1},
        {32, 16, 32, 3, 2, 1}, {16, 1, 64, 7, 1, 0}}},
      // The demo's 3-D residual blocks (ngf 16 -> 64 channels at 48^3 / 4 = 12^3; padding 1 here
      // where the network pads by reflection first: the same multiply-adds).
      {"conv_layer/3d/res_ngf16", BM_conv_layer3, {{64, 64, 12, 3, 1, 0}}},
      // The 3-D DiCyc's offset branches at the demo's widths (48^3, ngf 16): conv 3 (C -> 32) and
      // conv 3 (32 -> 3) on the input of each encoder stage (1 and 16 channels at 48^3, 32 at 24^3,
      // 64 at 12^3).
      {"conv_layer/3d/offset_ngf16", BM_conv_layer3,
       {{1, 32, 48, 3, 1, 0}, {16, 32, 48, 3, 1, 0}, {32, 3, 48, 3, 1, 0}, {32, 32, 24, 3, 1, 0}, {32, 3, 24, 3, 1, 0},
        {64, 32, 12, 3, 1, 0}, {32, 3, 12, 3, 1, 0}}},
      {"conv_layer/3d/patchgan", BM_conv_layer3,
       {{1, 32, 64, 4, 2, 0}, {32, 64, 32, 4, 2, 0}, {64, 128, 16, 4, 2, 0}, {128, 256, 8, 4, 1, 0},
        {256, 1, 7, 4, 1, 0}}},
  };
  for (const auto& m : models) {
    auto* b = benchmark::RegisterBenchmark(m.name, m.fn);
    b->ArgNames({"cin", "cout", "size", "k", "s", "tr", "pass"})->Unit(benchmark::kMillisecond)->UseRealTime();
    for (const auto& l : m.layers)
      for (int64_t pass = 0; pass < 3; ++pass) {
        auto args = l;
        args.push_back(pass);
        b->Args(args);
      }
  }
  return 0;
}();

static void BM_convT(benchmark::State& st) {
  set_backend(st, int(st.range(0)));
  const auto o = ops::ConvOptions<2>(256, 128, 3).stride(2).padding(1).output_padding(1);
  auto x = rnd<4>(Shape<4>(256, 32, 32, 1), 3);
  auto w = rnd<4>(ops::conv_transpose_weight_shape(o), 4);
  core::Tensor<float, 4, Dev> y(ctx(), ops::conv_transpose_output_shape(o, x.shape()));
  auto ym = y.map();
  for (auto _ : st) {
    ops::conv_transpose_forward<2>(ctx(), o, x.cmap(), w.cmap(), nullptr, ym);
    benchmark::DoNotOptimize(y.data());
  }
  const double macs = 256.0 * 128 * 9 * 32 * 32;
  st.counters["GFLOP/s"] = benchmark::Counter(2 * macs * st.iterations(), benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
}
BENCHMARK(BM_convT)->Name("convT_fwd/2d/c256-128/32x32-64x64/k3")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond)->UseRealTime();

static void BM_instance_norm(benchmark::State& st) {
  const bool backward = st.range(0) != 0;
  auto x = rnd<4>(Shape<4>(256, 32, 32, 1), 5);
  auto g = rnd<4>(x.shape(), 6);
  core::Tensor<float, 4, Dev> y(ctx(), x.shape()), dx(ctx(), x.shape());
  core::Tensor<float, 2, Dev> m(ctx(), Shape<2>(256, 1)), is(ctx(), Shape<2>(256, 1));
  auto ym = y.map();
  auto mm = m.map();
  auto im = is.map();
  auto dxm = dx.map();
  for (auto _ : st) {
    ops::instance_norm_forward<2>(ctx(), x.cmap(), ym, mm, im);
    if (backward) {
      dx.set_zero();
      ops::instance_norm_backward<2>(ctx(), y.cmap(), is.cmap(), g.cmap(), dxm);
    }
    benchmark::DoNotOptimize(y.data());
  }
}
BENCHMARK(BM_instance_norm)->Name("instance_norm/2d/c256/32x32")->ArgName("bwd")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime();

DICYC_BENCHMARK_MAIN();
