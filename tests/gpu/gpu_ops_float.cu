// GPU instantiations, float. See gpu_ops_impl.cuh.
#include "gpu_ops_impl.cuh"

int gpu_api::device_count() { return dicyc::core::gpu_device_count(); }

DICYC_GPU_API_DEFINE(float, float)
