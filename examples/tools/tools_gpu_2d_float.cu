// dicyc-train and dicyc-synth on the GPU: 2d float models.
#include "tools_gpu_impl.cuh"

namespace tools {
std::unique_ptr<HostModel<2, float>> make_gpu_model_2d_float(const std::string& options_json, int device) {
  return make_gpu_model<2, float>(options_json, device);
}
}  // namespace tools
