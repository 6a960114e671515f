// dicyc/dist/nccl.hpp -- dist::Communicator whose all_reduce_device() runs on NCCL, between GPUs
// of one machine or of many (inside dicyc::cuda where the CUDA toolkit has NCCL: DICYC_HAVE_NCCL).
//
// NCCL reduces device memory only; the host-side collectives (the step agreement, the losses,
// the checkpoint's pools) and the bootstrap (rank 0's ncclUniqueId) go through a host
// communicator, an MPI one between processes (or the single process for one GPU). One rank per
// GPU: `device` is this rank's CUDA device. Every NCCL and CUDA return code is checked; an
// asynchronous NCCL error (a peer gone) is polled while a reduction waits, and after
// `timeout_s` seconds the communicator is aborted and CommError thrown, instead of a hang.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <thread>

#include "dicyc/dist/communicator.hpp"

namespace dicyc::dist {

class Nccl final : public Communicator {
 public:
  Nccl(Communicator& host, int device, double timeout_s = 900) : host_(host), device_(device), timeout_(timeout_s) {
    cuda(cudaSetDevice(device), "cudaSetDevice");
    ncclUniqueId id{};
    if (host.rank() == 0) nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    host.broadcast(&id, sizeof id, 0);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;  // non-blocking: the waits below poll ncclCommGetAsyncError
    nccl(ncclCommInitRankConfig(&comm_, host.size(), id, host.rank(), &cfg), "ncclCommInitRankConfig");
    wait_ready("ncclCommInitRankConfig");
    int v = 0;
    ncclGetVersion(&v);
    version_ = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
  }
  Nccl(const Nccl&) = delete;
  Nccl& operator=(const Nccl&) = delete;
  ~Nccl() override {
    if (comm_) ncclCommDestroy(comm_);
  }

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::string name() const override {
    return "NCCL " + version_ + " (GPU " + std::to_string(device_) + ") over " + host_.name();
  }
  void all_reduce(void* data, std::size_t count, DType t, Op op) override { host_.all_reduce(data, count, t, op); }
  void broadcast(void* data, std::size_t bytes, int root) override { host_.broadcast(data, bytes, root); }
  void barrier() override { host_.barrier(); }
  std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& mine, int root) override {
    return host_.gather(mine, root);
  }

  bool reduces_device_memory() const override { return true; }
  void all_reduce_device(void* data, std::size_t count, DType t, Op op, void* stream) override {
    count_reduce(count, t);
    ReduceTimer timer(*this);
    auto s = static_cast<cudaStream_t>(stream);
    nccl(ncclAllReduce(data, data, count, nccl_type(t), nccl_op(op), comm_, s), "ncclAllReduce");
    wait_ready("ncclAllReduce");
    // Wait for the reduction itself, polling for a peer's failure meanwhile.
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t q = cudaStreamQuery(s);
      if (q == cudaSuccess) return;
      DICYC_CHECK(q == cudaErrorNotReady, CommError, "ncclAllReduce: CUDA error " << cudaGetErrorString(q));
      check_async("ncclAllReduce", t0);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

 private:
  void wait_ready(const char* what) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t st = ncclSuccess;
      nccl(ncclCommGetAsyncError(comm_, &st), "ncclCommGetAsyncError");
      if (st == ncclSuccess) return;
      DICYC_CHECK(st == ncclInProgress, CommError, what << " failed on rank " << rank() << ": " << ncclGetErrorString(st));
      check_async(what, t0);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }
  void check_async(const char* what, std::chrono::steady_clock::time_point t0) {
    ncclResult_t st = ncclSuccess;
    ncclCommGetAsyncError(comm_, &st);
    if (st != ncclSuccess && st != ncclInProgress) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
      DICYC_CHECK(false, CommError, what << " failed on rank " << rank() << ": " << ncclGetErrorString(st));
    }
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (timeout_ > 0 && waited > timeout_) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
      DICYC_CHECK(false, CommError,
                  what << " on rank " << rank() << " waited " << waited << " s for the other ranks (timeout " << timeout_
                       << " s): one of them has died or hangs");
    }
  }
  void nccl(ncclResult_t r, const char* call) const {
    DICYC_CHECK(r == ncclSuccess || r == ncclInProgress, CommError,
                call << " failed on rank " << host_.rank() << ": " << ncclGetErrorString(r));
  }
  static void cuda(cudaError_t e, const char* call) {
    DICYC_CHECK(e == cudaSuccess, CommError, call << " failed: " << cudaGetErrorString(e));
  }
  static ncclDataType_t nccl_type(DType t) {
    switch (t) {
      case DType::F32: return ncclFloat32;
      case DType::F64: return ncclFloat64;
      case DType::I32: return ncclInt32;
      case DType::I64: return ncclInt64;
      case DType::U8: return ncclUint8;
    }
    return ncclFloat32;
  }
  static ncclRedOp_t nccl_op(Op op) {
    switch (op) {
      case Op::Sum: return ncclSum;
      case Op::Max: return ncclMax;
      case Op::Min: return ncclMin;
    }
    return ncclSum;
  }

  Communicator& host_;
  int device_;
  double timeout_;
  ncclComm_t comm_ = nullptr;
  std::string version_;
};

}  // namespace dicyc::dist
