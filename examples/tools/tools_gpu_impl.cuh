// The tools' GPU models (compiled by nvcc into libdicyc-tools-gpu, with hidden visibility; see
// host_model.hpp). One (dim, scalar) per translation unit: tools_gpu_<dim>_<scalar>.cu.
#pragma once

#include "device_model.hpp"

namespace tools {

template <int Dim, class S>
std::unique_ptr<HostModel<Dim, S>> make_gpu_model(const std::string& options_json, int device) {
  const int n = dicyc::core::gpu_device_count();
  DICYC_CHECK(n > 0, dicyc::DeviceError, "--device gpu: no CUDA GPU found (no device, or no driver)");
  DICYC_CHECK(device >= 0 && device < n, dicyc::DeviceError,
              "--device gpu:" << device << ": there are " << n << " CUDA device(s), numbered from 0");
  const auto mo = dicyc::model::ModelOptions::from_json(nlohmann::json::parse(options_json));
  return std::make_unique<DeviceModel<Dim, S, Eigen::GpuDevice>>(mo, device);
}

}  // namespace tools
