// GPU instantiations, half (float accumulation in reductions and GEMMs). See gpu_ops_impl.cuh.
#include "gpu_ops_impl.cuh"

DICYC_GPU_API_DEFINE(half, Eigen::half)
