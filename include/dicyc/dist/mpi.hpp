// dicyc/dist/mpi.hpp -- dist::Communicator on MPI (target dicyc::mpi: Open MPI from Debian,
// libopenmpi-dev), between processes on one machine and across machines.
//
// The communicator duplicates MPI_COMM_WORLD and sets MPI_ERRORS_RETURN on it: every return code
// is checked and turned into a CommError that names the call, the rank and MPI's own message.
// MPI-3 has no timeouts on collectives, so an optional watchdog (set_timeout) ends this process
// when one collective has waited longer than the timeout (a rank that died without the launcher
// noticing, or hangs): the launcher (mpirun, srun) then ends the job with a non-zero exit rather
// than letting it hang. A rank that throws should call abort(), which ends every rank.
// Only the thread that made the communicator calls MPI (MPI_THREAD_FUNNELED).
#pragma once

// The C API only: Open MPI's deprecated C++ bindings are not needed and do not compile warning-free.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "dicyc/dist/communicator.hpp"

namespace dicyc::dist {

class Mpi final : public Communicator {
 public:
  /// Whether this process was started by an MPI launcher (mpirun/mpiexec, srun with PMI/PMIx):
  /// then a program may make an Mpi; without one, it should stay single-process.
  static bool launched() { return launched_by_mpi(); }

  /// Initialises MPI unless the program already has (then finalising stays the program's job).
  explicit Mpi(int* argc = nullptr, char*** argv = nullptr) {
    int inited = 0;
    check(MPI_Initialized(&inited), "MPI_Initialized");
    if (!inited) {
      int provided = 0;
      check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      own_ = true;
      DICYC_CHECK(provided >= MPI_THREAD_FUNNELED, CommError,
                  "MPI: the library gives thread level " << provided << ", below MPI_THREAD_FUNNELED");
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    MPI_Comm local;
    check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local), "MPI_Comm_split_type");
    check(MPI_Comm_rank(local, &local_rank_), "MPI_Comm_rank (node)");
    check(MPI_Comm_size(local, &local_size_), "MPI_Comm_size (node)");
    MPI_Comm_free(&local);
    std::int32_t leader = local_rank_ == 0 ? 1 : 0;
    check(MPI_Allreduce(MPI_IN_PLACE, &leader, 1, MPI_INT32_T, MPI_SUM, comm_), "MPI_Allreduce (node count)");
    nodes_ = leader;
    char ver[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (MPI_Get_library_version(ver, &len) == MPI_SUCCESS) {
      library_.assign(ver, static_cast<std::size_t>(len));
      const auto cut = library_.find_first_of(",\n");
      if (cut != std::string::npos) library_.resize(cut);
    }
  }
  Mpi(const Mpi&) = delete;
  Mpi& operator=(const Mpi&) = delete;
  ~Mpi() override {
    stop_watchdog();
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return;
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    if (own_) MPI_Finalize();
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  /// This rank's index among the ranks on its machine (to pick a GPU), and their number.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  int nodes() const { return nodes_; }
  std::string name() const override {
    return "MPI (" + (library_.empty() ? std::string("unknown library") : library_) + "), " + std::to_string(size_) +
           " rank" + (size_ == 1 ? "" : "s") + " on " + std::to_string(nodes_) + " node" + (nodes_ == 1 ? "" : "s");
  }
  MPI_Comm comm() const { return comm_; }

  void all_reduce(void* data, std::size_t count, DType t, Op op) override {
    count_reduce(count, t);
    ReduceTimer timer(*this);
    Guard g(*this, "MPI_Allreduce");
    auto* p = static_cast<unsigned char*>(data);
    const std::size_t es = dtype_size(t);
    for (std::size_t done = 0; done < count;) {
      const std::size_t n = std::min<std::size_t>(count - done, kChunk);
      check(MPI_Allreduce(MPI_IN_PLACE, p + done * es, static_cast<int>(n), mpi_type(t), mpi_op(op), comm_),
            "MPI_Allreduce");
      done += n;
    }
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    check_root(root);
    Guard g(*this, "MPI_Bcast");
    auto* p = static_cast<unsigned char*>(data);
    for (std::size_t done = 0; done < bytes;) {
      const std::size_t n = std::min<std::size_t>(bytes - done, kChunk);
      check(MPI_Bcast(p + done, static_cast<int>(n), MPI_BYTE, root, comm_), "MPI_Bcast");
      done += n;
    }
  }
  void barrier() override {
    Guard g(*this, "MPI_Barrier");
    check(MPI_Barrier(comm_), "MPI_Barrier");
  }
  std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& mine, int root) override {
    check_root(root);
    Guard g(*this, "MPI_Gather");
    std::uint64_t n = mine.size();
    std::vector<std::uint64_t> sizes(rank_ == root ? static_cast<std::size_t>(size_) : 0);
    check(MPI_Gather(&n, 1, MPI_UINT64_T, sizes.data(), 1, MPI_UINT64_T, root, comm_), "MPI_Gather (sizes)");
    std::vector<int> counts, displs;
    std::vector<std::uint8_t> all;
    std::int32_t too_big = 0;
    if (rank_ == root) {
      std::uint64_t total = 0;
      for (auto s : sizes) {
        counts.push_back(static_cast<int>(std::min<std::uint64_t>(s, INT_MAX)));
        displs.push_back(static_cast<int>(std::min<std::uint64_t>(total, INT_MAX)));
        total += s;
      }
      too_big = total > static_cast<std::uint64_t>(INT_MAX) ? 1 : 0;
      if (!too_big) all.resize(static_cast<std::size_t>(total));
    }
    check(MPI_Bcast(&too_big, 1, MPI_INT32_T, root, comm_), "MPI_Bcast (gather size)");
    DICYC_CHECK(!too_big, CommError,
                "MPI gather: the ranks' byte strings exceed 2 GiB in all (MPI_Gatherv counts are int)");
    check(MPI_Gatherv(mine.data(), static_cast<int>(mine.size()), MPI_BYTE, all.data(), counts.data(), displs.data(),
                      MPI_BYTE, root, comm_),
          "MPI_Gatherv");
    std::vector<std::vector<std::uint8_t>> r;
    if (rank_ == root)
      for (int i = 0; i < size_; ++i)
        r.emplace_back(all.begin() + displs[static_cast<std::size_t>(i)],
                       all.begin() + displs[static_cast<std::size_t>(i)] + counts[static_cast<std::size_t>(i)]);
    return r;
  }

  /// Ends every rank of the job (MPI_Abort) with `code`; for a rank that cannot go on.
  [[noreturn]] void abort(int code) {
    MPI_Abort(comm_ != MPI_COMM_NULL ? comm_ : MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; should it, end this rank anyway
  }

  /// Ends this process with `exit_code` when one collective waits longer than `seconds` (0: never),
  /// after saying so on stderr; the launcher then ends the other ranks.
  void set_timeout(double seconds, int exit_code = 70) {
    stop_watchdog();
    timeout_ = seconds;
    exit_code_ = exit_code;
    if (seconds <= 0) return;
    stop_.store(false);
    watchdog_ = std::thread([this] {
      using namespace std::chrono;
      while (!stop_.load()) {
        std::this_thread::sleep_for(milliseconds(100));
        const auto since = since_ns_.load();
        if (since == 0) continue;
        const double waited =
            static_cast<double>(duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count() - since) * 1e-9;
        if (waited > timeout_) {
          std::fprintf(stderr,
                       "\ndicyc: rank %d of %d: %s has waited %.0f s for the other ranks (timeout %g s): one of them has "
                       "died or hangs; ending this rank so that the launcher ends the job\n",
                       rank_, size_, what_.load(), waited, timeout_);
          std::fflush(stderr);
          std::_Exit(exit_code_);
        }
      }
    });
  }
  double timeout() const { return timeout_; }

 private:
  static constexpr std::size_t kChunk = std::size_t(1) << 30;  // elements per MPI call (int counts)

  struct Guard {  // marks a collective in progress for the watchdog
    Guard(Mpi& m, const char* what) : m_(m) {
      m_.what_.store(what);
      m_.since_ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count());
    }
    ~Guard() { m_.since_ns_.store(0); }
    Mpi& m_;
  };

  void check(int rc, const char* call) const {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = std::snprintf(msg, sizeof msg, "error code %d", rc);
    DICYC_CHECK(false, CommError,
                call << " failed on rank " << rank_ << " of " << size_ << ": " << std::string(msg, static_cast<std::size_t>(len))
                     << " (another rank has probably failed; its own message says why)");
  }
  void check_root(int root) const {
    DICYC_CHECK(root >= 0 && root < size_, CommError, "MPI: root " << root << " out of range (" << size_ << " ranks)");
  }
  static MPI_Datatype mpi_type(DType t) {
    switch (t) {
      case DType::F32: return MPI_FLOAT;
      case DType::F64: return MPI_DOUBLE;
      case DType::I32: return MPI_INT32_T;
      case DType::I64: return MPI_INT64_T;
      case DType::U8: return MPI_UINT8_T;
    }
    return MPI_BYTE;
  }
  static MPI_Op mpi_op(Op op) {
    switch (op) {
      case Op::Sum: return MPI_SUM;
      case Op::Max: return MPI_MAX;
      case Op::Min: return MPI_MIN;
    }
    return MPI_SUM;
  }
  void stop_watchdog() {
    stop_.store(true);
    if (watchdog_.joinable()) watchdog_.join();
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  bool own_ = false;
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1, nodes_ = 1;
  std::string library_;
  double timeout_ = 0;
  int exit_code_ = 70;
  std::thread watchdog_;
  std::atomic<bool> stop_{false};
  std::atomic<std::int64_t> since_ns_{0};
  std::atomic<const char*> what_{""};
};

}  // namespace dicyc::dist
