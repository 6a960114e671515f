// NCCL with one GPU and one rank (compiled by nvcc where the toolkit has NCCL): the communicator
// starts, reduces device memory in place on a stream (sum and max of one rank: the identity),
// counts the traffic, and dist::average through it leaves a float buffer as it was.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "dicyc/dist/nccl.hpp"
#include "gpu/gpu_api.hpp"

namespace gpu_api {

std::string nccl_one_rank() {
  using namespace dicyc::dist;
  try {
    Nccl n(single_process(), 0, 60);
    if (n.name().find("NCCL") == std::string::npos) return "name: " + n.name();
    const std::vector<float> h{1.0f, -2.0f, 3.5f, 1e-30f};
    float* d = nullptr;
    if (cudaMalloc(&d, h.size() * sizeof(float)) != cudaSuccess) return "cudaMalloc failed";
    cudaStream_t s;
    cudaStreamCreate(&s);
    cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice);
    n.all_reduce_device(d, h.size(), DType::F32, Op::Sum, s);
    n.all_reduce_device(d, h.size(), DType::F32, Op::Max, s);
    std::vector<float> back(h.size());
    cudaMemcpy(back.data(), d, h.size() * sizeof(float), cudaMemcpyDeviceToHost);
    cudaFree(d);
    cudaStreamDestroy(s);
    if (back != h) return "the one-rank all-reduce changed the buffer";
    if (n.reduced_bytes() != 2 * h.size() * sizeof(float) || n.reduce_calls() != 2) return "traffic counter wrong";
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace gpu_api
