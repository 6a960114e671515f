// dicyc/dist/device.hpp -- averaging and broadcasting buffers of a dicyc device (host memory of
// the CPU devices, GPU memory) over a dist::Communicator's ranks.
#pragma once

#include <type_traits>
#include <vector>

#include "dicyc/core/buffer.hpp"
#include "dicyc/dist/communicator.hpp"

namespace dicyc::dist {

/// data[0, n) (memory of ctx's device) = its mean over the ranks. Float and double buffers on the
/// CPU are reduced where they are; GPU memory goes through the communicator's device path where
/// it has one (NCCL, float) and through the host otherwise; half is summed in float.
template <class S, class Device>
void average(core::Context<Device>& ctx, Communicator& c, S* data, Index n) {
  const int K = c.size();
  if (K == 1 || n <= 0) return;
  const float inv = 1.0f / static_cast<float>(K);
  TensorMap<S, 1> m(data, n);
  if constexpr (std::is_same_v<S, float>) {
    if constexpr (core::is_gpu_v<Device>) {
      if (c.reduces_device_memory()) {
        c.all_reduce_device(data, static_cast<std::size_t>(n), DType::F32, Op::Sum, (void*)ctx.device().stream());
        m.device(ctx.device()) = m * inv;
        ctx.synchronize();
        return;
      }
    } else {
      c.all_reduce(data, static_cast<std::size_t>(n), DType::F32, Op::Sum);
      m.device(ctx.device()) = m * inv;
      return;
    }
  }
  if constexpr (std::is_same_v<S, double> && !core::is_gpu_v<Device>) {
    c.all_reduce(data, static_cast<std::size_t>(n), DType::F64, Op::Sum);
    m.device(ctx.device()) = m / static_cast<double>(K);
    return;
  }
  if constexpr (std::is_same_v<S, double>) {
    std::vector<double> h = core::to_host(ctx, static_cast<const double*>(data), n);
    c.all_reduce(h.data(), h.size(), DType::F64, Op::Sum);
    for (auto& v : h) v /= static_cast<double>(K);
    core::copy_from_host(ctx, h.data(), n, data);
    return;
  }
  const std::vector<S> h = core::to_host(ctx, static_cast<const S*>(data), n);
  std::vector<float> f(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) f[i] = static_cast<float>(h[i]);
  c.all_reduce(f.data(), f.size(), DType::F32, Op::Sum);
  std::vector<S> back(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) back[i] = S(f[i] * inv);
  core::copy_from_host(ctx, back.data(), n, data);
}

/// data[0, n) (memory of ctx's device) = root's copy, on every rank.
template <class S, class Device>
void broadcast(core::Context<Device>& ctx, Communicator& c, S* data, Index n, int root = 0) {
  if (c.size() == 1 || n <= 0) return;
  if constexpr (core::is_gpu_v<Device>) {
    std::vector<S> h = core::to_host(ctx, static_cast<const S*>(data), n);
    c.broadcast(h.data(), h.size() * sizeof(S), root);
    core::copy_from_host(ctx, h.data(), n, data);
  } else {
    ctx.synchronize();
    c.broadcast(data, static_cast<std::size_t>(n) * sizeof(S), root);
  }
}

}  // namespace dicyc::dist
