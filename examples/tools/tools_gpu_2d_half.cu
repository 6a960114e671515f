// dicyc-train and dicyc-synth on the GPU: 2d half models.
#include "tools_gpu_impl.cuh"

namespace tools {
std::unique_ptr<HostModel<2, Eigen::half>> make_gpu_model_2d_half(const std::string& options_json, int device) {
  return make_gpu_model<2, Eigen::half>(options_json, device);
}
}  // namespace tools
