// GPU instantiations, float. See gpu_ops_impl.cuh.
#include "gpu_ops_impl.cuh"

int gpu_api::device_count() { return dicyc::core::gpu_device_count(); }

DICYC_GPU_API_DEFINE(float, float)

gpu_api::ModuleResult gpu_api::modules_float(const long* shape, const std::vector<double>& x,
                                             const std::vector<double>& t, const std::vector<double>& g,
                                             const std::vector<double>& off_params,
                                             const std::vector<double>& stn_params) {
  return gpu_impl::modules<float>(shape, x, t, g, off_params, stn_params);
}
