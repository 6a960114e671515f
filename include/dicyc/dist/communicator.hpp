// dicyc/dist/communicator.hpp -- the communicator of data-parallel training: rank and size, an
// in-place all-reduce of a flat buffer, broadcast, barrier and a gather of byte strings.
//
// SingleProcess (here, header-only, the default everywhere) is one rank that reduces nothing, so
// nothing changes for a user who does not ask for parallelism. dist::Mpi (dicyc/dist/mpi.hpp,
// target dicyc::mpi) spans processes and machines; dist::Nccl (dicyc/dist/nccl.hpp, inside
// dicyc::cuda where the toolkit has NCCL) reduces GPU memory between GPUs and leaves the host-side
// operations to an MPI communicator.
//
// Every operation is collective: all ranks call it, in the same order. A rank that cannot go on
// must not simply return from a collective while the others wait in it; all_ok() below lets every
// rank learn of a failure on one, so that all of them throw.
// This header holds standard C++ only (the tools pass a Communicator across their GPU library's
// boundary); dicyc/dist/device.hpp averages and broadcasts device memory.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <cstdlib>

#include "dicyc/core/error.hpp"

namespace dicyc::dist {

/// A collective operation failed, or another rank failed and said so.
class CommError : public Error {
 public:
  using Error::Error;
};

enum class DType { F32, F64, I32, I64, U8 };
enum class Op { Sum, Max, Min };

inline std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 1;
}

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "single process", "MPI (Open MPI v4.1.4), 2 ranks on 1 node", ...
  virtual std::string name() const = 0;

  /// In-place all-reduce of `count` elements of host memory; every rank gets the same result.
  virtual void all_reduce(void* data, std::size_t count, DType t, Op op) = 0;
  /// root's `bytes` bytes of host memory to every rank.
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  /// Every rank's byte string, in rank order, at root; other ranks get an empty vector.
  virtual std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& mine, int root) = 0;

  /// Whether all_reduce_device() takes device (GPU) memory on a CUDA stream.
  virtual bool reduces_device_memory() const { return false; }
  /// In-place all-reduce of device memory, ordered on `stream` (a cudaStream_t).
  virtual void all_reduce_device(void* data, std::size_t count, DType t, Op op, void* stream) {
    (void)data, (void)count, (void)t, (void)op, (void)stream;
    DICYC_CHECK(false, CommError, "communicator '" << name() << "' does not reduce device memory");
  }

  /// Bytes this rank has all-reduced so far (either kind): the benchmarks' traffic counter.
  std::uint64_t reduced_bytes() const { return reduced_bytes_; }
  /// Number of all-reduce calls so far.
  std::uint64_t reduce_calls() const { return reduce_calls_; }
  /// Wall seconds spent in all-reduce calls so far (transfer and waiting for the slowest rank).
  double reduce_seconds() const { return reduce_seconds_; }

 protected:
  void count_reduce(std::size_t count, DType t) {
    reduced_bytes_ += static_cast<std::uint64_t>(count * dtype_size(t));
    ++reduce_calls_;
  }
  /// Adds its lifetime to reduce_seconds().
  struct ReduceTimer {
    explicit ReduceTimer(Communicator& c) : c_(c), t0_(std::chrono::steady_clock::now()) {}
    ~ReduceTimer() { c_.reduce_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }
    Communicator& c_;
    std::chrono::steady_clock::time_point t0_;
  };

 private:
  std::uint64_t reduced_bytes_ = 0, reduce_calls_ = 0;
  double reduce_seconds_ = 0;
};

/// One rank; every collective is the identity.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single process"; }
  void all_reduce(void*, std::size_t count, DType t, Op) override { count_reduce(count, t); }
  void broadcast(void*, std::size_t, int root) override { check_root(root); }
  void barrier() override {}
  std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& mine, int root) override {
    check_root(root);
    return {mine};
  }

 private:
  void check_root(int root) const {
    DICYC_CHECK(root == 0, CommError, "single process: root " << root << " does not exist (one rank, 0)");
  }
};

/// The process-wide single-process communicator (what a model uses until told otherwise).
inline Communicator& single_process() {
  static SingleProcess c;
  return c;
}

/// Whether this process was started by an MPI launcher (mpirun/mpiexec, srun with PMI/PMIx).
inline bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

// ------------------------------------------------------------------------------------ helpers
/// True on every rank when `ok` is true on every rank.
inline bool all_ok(Communicator& c, bool ok) {
  if (c.size() == 1) return ok;
  std::int32_t v = ok ? 0 : 1;
  c.all_reduce(&v, 1, DType::I32, Op::Max);
  return v == 0;
}

/// True on every rank when every rank passes the same h (a hash of its state).
inline bool same_on_all_ranks(Communicator& c, std::uint64_t h) {
  if (c.size() == 1) return true;
  // max(h') and max(-h') over the ranks: equal magnitudes iff every h' is the same (h' = h >> 1
  // keeps the negation in range).
  std::int64_t v[2] = {static_cast<std::int64_t>(h >> 1), -static_cast<std::int64_t>(h >> 1)};
  c.all_reduce(v, 2, DType::I64, Op::Max);
  return v[0] == -v[1];
}

/// The mean of v over the ranks (NaN on any rank gives NaN everywhere).
inline void mean_over_ranks(Communicator& c, double* v, std::size_t n) {
  if (c.size() == 1 || n == 0) return;
  c.all_reduce(v, n, DType::F64, Op::Sum);
  for (std::size_t i = 0; i < n; ++i) v[i] /= static_cast<double>(c.size());
}

/// A 64-bit FNV-1a hash of bytes (the cross-rank consistency check).
inline std::uint64_t fnv1a(const void* p, std::size_t n, std::uint64_t h = 1469598103934665603ULL) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

}  // namespace dicyc::dist
