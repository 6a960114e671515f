// dicyc-train and dicyc-synth on the GPU: 3d half models.
#include "tools_gpu_impl.cuh"

namespace tools {
std::unique_ptr<HostModel<3, Eigen::half>> make_gpu_model_3d_half(const std::string& options_json, int device) {
  return make_gpu_model<3, Eigen::half>(options_json, device);
}
}  // namespace tools
