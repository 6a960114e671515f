// Embedding dicyc: include the headers, pick Dim/Scalar/Device at compile time, run ops.
// (Until the model lands: one 3-D float convolution, forward and backward.)
#include <cstdio>

#include <dicyc/ops.hpp>

int main() {
  using namespace dicyc;
  using Dev = Eigen::ThreadPoolDevice;
  core::Context<Dev> ctx(2);
  const auto opts = ops::ConvOptions<3>(1, 8, 3).padding(1).name("embed");
  auto x = core::Tensor<float, 5, Dev>::zeros(ctx, Shape<5>(1, 16, 16, 16, 1));
  auto w = core::Tensor<float, 5, Dev>::zeros(ctx, ops::conv_weight_shape(opts));
  core::Tensor<float, 5, Dev> y(ctx, ops::conv_output_shape(opts, x.shape()));
  auto ym = y.map();
  ops::conv_forward<3>(ctx, opts, x.cmap(), w.cmap(), nullptr, ym);
  auto dw = core::Tensor<float, 5, Dev>::zeros(ctx, w.shape());
  auto dwm = dw.map();
  ops::conv_backward<3>(ctx, opts, x.cmap(), w.cmap(), y.cmap(), nullptr, &dwm, nullptr);
  std::printf("embed: 3-D conv %s -> %s ok\n", shape_str(x.shape()).c_str(), shape_str(y.shape()).c_str());
  return 0;
}
