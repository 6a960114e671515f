// GPU instantiation of the trainable models (CycleGan and DiCyc, 2-D float on Eigen::GpuDevice),
// compiled by nvcc; test_gpu.cpp compares a few iterations with the CPU's.
#include "dicyc/model.hpp"
#include "gpu/gpu_api.hpp"
#include "gpu/model_spec.hpp"

namespace gpu_api {

ModelRunResult model_float(const char* name, int iters, const std::vector<double>& x, const std::vector<double>& y) {
  using namespace dicyc;
  core::Context<Eigen::GpuDevice> ctx;
  auto m = model::make_model<2, float, Eigen::GpuDevice>(ctx, small_model_options(name));
  const Shape<4> s(1, 16, 16, 1);
  std::vector<float> xf(x.begin(), x.end()), yf(y.begin(), y.end());
  auto xd = core::Tensor<float, 4, Eigen::GpuDevice>::from_host(ctx, s, xf);
  auto yd = core::Tensor<float, 4, Eigen::GpuDevice>::from_host(ctx, s, yf);
  ModelRunResult r;
  for (int i = 0; i < iters; ++i) {
    const auto L = m->train_step(xd.cmap(), yd.cmap());
    r.g_total.push_back(L.g_total);
    r.d_total.push_back(L.d_a + L.d_b);
  }
  auto& g = m->group("g_ab");
  const auto h = core::to_host(ctx, g.values(), g.size());
  r.g_ab.assign(h.begin(), h.end());
  return r;
}

}  // namespace gpu_api
