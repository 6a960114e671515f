// dicyc-train and dicyc-synth on the GPU: 3d float models.
#include "tools_gpu_impl.cuh"

namespace tools {
std::unique_ptr<HostModel<3, float>> make_gpu_model_3d_float(const std::string& options_json, int device) {
  return make_gpu_model<3, float>(options_json, device);
}
}  // namespace tools
