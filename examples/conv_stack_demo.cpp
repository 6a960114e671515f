// A small 2-D and 3-D convolution stack, forward and backward, on the CPU thread pool: the
// README's main job until the trainer lands. It prints the loss before and after a few plain
// gradient steps, and the time per forward+backward.
#include <chrono>
#include <cstdio>
#include <string>

#include "dicyc/ops.hpp"

using namespace dicyc;
using Dev = Eigen::ThreadPoolDevice;

template <int Dim>
void run(core::Context<Dev>& ctx, Index size, Index ch, int steps) {
  constexpr int R = Dim + 2;
  using T = core::Tensor<float, R, Dev>;
  Shape<R> xs;
  xs[0] = 1;
  for (int d = 0; d < Dim; ++d) xs[d + 1] = size;
  xs[R - 1] = 1;
  core::Rng rng(1);
  auto rand_tensor = [&](const Shape<R>& s, double sd) {
    std::vector<float> v(static_cast<std::size_t>(num_elements(s)));
    for (auto& e : v) e = float(rng.normal(0, sd));
    return T::from_host(ctx, s, v);
  };
  const auto pad = ops::uniform_pad<Dim>(3);
  const auto c1 = ops::ConvOptions<Dim>(1, ch, 7).name("stem");
  const auto c2 = ops::ConvOptions<Dim>(ch, 2 * ch, 3).stride(2).padding(1).name("down");
  const auto c3 = ops::ConvOptions<Dim>(2 * ch, 1, 3).stride(2).padding(1).output_padding(1).name("up");
  T x = rand_tensor(xs, 1.0);
  T target = rand_tensor(xs, 0.5);
  T w1 = rand_tensor(ops::conv_weight_shape(c1), 0.05), w2 = rand_tensor(ops::conv_weight_shape(c2), 0.05),
    w3 = rand_tensor(ops::conv_transpose_weight_shape(c3), 0.05);
  T xp(ctx, ops::reflection_pad_output_shape<Dim>(xs, pad));
  T h1(ctx, ops::conv_output_shape(c1, xp.shape())), a1(ctx, h1.shape());
  T h2(ctx, ops::conv_output_shape(c2, a1.shape())), a2(ctx, h2.shape());
  core::Tensor<float, 2, Dev> m2(ctx, Shape<2>(2 * ch, 1)), s2(ctx, Shape<2>(2 * ch, 1));
  T n2(ctx, h2.shape());
  T y(ctx, ops::conv_transpose_output_shape(c3, n2.shape())), out(ctx, y.shape()), diff(ctx, y.shape());
  T g1(ctx, w1.shape()), g2(ctx, w2.shape()), g3(ctx, w3.shape());
  T dy(ctx, y.shape()), dn2(ctx, n2.shape()), dh2(ctx, h2.shape()), da1(ctx, a1.shape()), dh1(ctx, h1.shape());
  const auto& d = ctx.device();
  double last = 0, first = 0, ms = 0;
  for (int it = 0; it <= steps; ++it) {
    const auto t0 = std::chrono::steady_clock::now();
    auto xpm = xp.map(), h1m = h1.map(), a1m = a1.map(), h2m = h2.map(), n2m = n2.map(), ym = y.map(),
         outm = out.map();
    auto m2m = m2.map(), s2m = s2.map();
    ops::reflection_pad_forward<Dim>(ctx, pad, x.cmap(), xpm);
    ops::conv_forward<Dim>(ctx, c1, xp.cmap(), w1.cmap(), nullptr, h1m);
    ops::relu_forward(ctx, h1.cmap(), a1m);
    ops::conv_forward<Dim>(ctx, c2, a1.cmap(), w2.cmap(), nullptr, h2m);
    ops::instance_norm_forward<Dim>(ctx, h2.cmap(), n2m, m2m, s2m);
    ops::conv_transpose_forward<Dim>(ctx, c3, n2.cmap(), w3.cmap(), nullptr, ym);
    ops::tanh_forward(ctx, y.cmap(), outm);
    auto diffm = diff.map();
    diffm.device(d) = out.map() - target.map();
    const double loss = ops::sum_squares(ctx, diff.cmap()) / double(diff.size());
    // Backward of mean((tanh(y) - t)^2).
    for (T* t : {&g1, &g2, &g3, &dy, &dn2, &dh2, &da1, &dh1}) t->set_zero();
    auto dym = dy.map(), dn2m = dn2.map(), dh2m = dh2.map(), da1m = da1.map(), dh1m = dh1.map();
    auto g1m = g1.map(), g2m = g2.map(), g3m = g3.map();
    T dout(ctx, y.shape());
    auto doutm = dout.map();
    doutm.device(d) = diff.map() * (2.0f / float(diff.size()));
    ops::tanh_backward(ctx, out.cmap(), dout.cmap(), dym);
    ops::conv_transpose_backward<Dim>(ctx, c3, n2.cmap(), w3.cmap(), dy.cmap(), &dn2m, &g3m, nullptr);
    ops::instance_norm_backward<Dim>(ctx, n2.cmap(), s2.cmap(), dn2.cmap(), dh2m);
    ops::conv_backward<Dim>(ctx, c2, a1.cmap(), w2.cmap(), dh2.cmap(), &da1m, &g2m, nullptr);
    ops::relu_backward(ctx, a1.cmap(), da1.cmap(), dh1m);
    ops::conv_backward<Dim>(ctx, c1, xp.cmap(), w1.cmap(), dh1.cmap(), nullptr, &g1m, nullptr);
    const auto t1 = std::chrono::steady_clock::now();
    if (it > 0) ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
    if (it == 0) first = loss;
    last = loss;
    for (auto pr : {std::make_pair(&w1, &g1), std::make_pair(&w2, &g2), std::make_pair(&w3, &g3)}) {
      auto wm = pr.first->map();
      wm.device(d) = wm - pr.second->map() * 0.5f;
    }
  }
  std::printf("%dd stack on %lld^%d (ch %lld): loss %.5f -> %.5f over %d steps, %.1f ms per forward+backward\n", Dim,
              static_cast<long long>(size), Dim, static_cast<long long>(ch), first, last, steps, ms / steps);
}

int main(int argc, char** argv) {
  try {
    const int threads = argc > 1 ? std::stoi(argv[1]) : 2;
    core::Context<Dev> ctx(threads);
    std::printf("dicyc %d.%d.%d demo on %s, GEMM backend %s\n", DICYC_VERSION_MAJOR, DICYC_VERSION_MINOR,
                DICYC_VERSION_PATCH, ctx.name().c_str(), ops::to_string(ops::gemm_backend()));
    run<2>(ctx, 128, 32, 20);
    run<3>(ctx, 32, 8, 10);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "conv_stack_demo: %s\n", e.what());
    return 1;
  }
}
