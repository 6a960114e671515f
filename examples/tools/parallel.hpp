// The tools' ranks: under mpirun (or srun) dicyc-train and dicyc-synth start MPI and run one rank
// per process; otherwise they are one process, as they always were.
//
// A rank that fails says so on stderr with its rank and ends the whole job (MPI_Abort) with the
// exit code the error would have had alone, so that no other rank waits for it in a collective.
// A rank that dies is seen by the launcher, which ends the others; one that hangs is ended by the
// communicator's watchdog after --mpi-timeout seconds.
#pragma once

#include <cstdio>
#include <memory>

#include "common.hpp"
#include "dicyc/dist/communicator.hpp"
#ifdef DICYC_HAVE_MPI
#include "dicyc/dist/mpi.hpp"
#endif
#if defined(DICYC_HAVE_MPI) && defined(DICYC_TOOLS_NCCL)
#include "dicyc/dist/nccl.hpp"
#endif

namespace tools {

class Parallel {
 public:
  /// Starts MPI when this process was launched by an MPI launcher; `timeout_s` > 0 arms the
  /// watchdog of every collective.
  Parallel(const char* tool, double timeout_s) : tool_(tool), timeout_(timeout_s) {
    if (!dicyc::dist::launched_by_mpi()) return;
#ifdef DICYC_HAVE_MPI
    mpi_ = std::make_unique<dicyc::dist::Mpi>();
    if (timeout_s > 0) mpi_->set_timeout(timeout_s, kFailure);
    comm_ = mpi_.get();
#else
    (void)timeout_s;
    TOOL_REQUIRE(false, "this process was started by an MPI launcher, but these tools were built without MPI: every "
                        "process would train alone and overwrite the others' output. Install libopenmpi-dev and "
                        "rebuild, or run without mpirun");
#endif
  }
  Parallel(const Parallel&) = delete;
  Parallel& operator=(const Parallel&) = delete;

  /// --device gpu with several ranks: reduce the gradients in GPU memory through NCCL (where the
  /// tools were built with it; the host collectives stay on MPI), else through MPI via the host.
  void use_gpu(int device) {
#if defined(DICYC_HAVE_MPI) && defined(DICYC_TOOLS_NCCL)
    if (mpi_ && size() > 1) {
      nccl_ = std::make_unique<dicyc::dist::Nccl>(*mpi_, device, timeout_);
      comm_ = nccl_.get();
    }
#else
    (void)device;
#endif
  }

  dicyc::dist::Communicator& comm() { return *comm_; }
  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }
  bool root() const { return comm_->rank() == 0; }
  /// Ranks sharing this machine (its memory), 1 without MPI.
  int local_size() const {
#ifdef DICYC_HAVE_MPI
    if (mpi_) return mpi_->local_size();
#endif
    return 1;
  }
  int local_rank() const {
#ifdef DICYC_HAVE_MPI
    if (mpi_) return mpi_->local_rank();
#endif
    return 0;
  }
  std::string name() const { return comm_->name(); }

  /// Runs body; with several ranks, an exception on this rank is reported and ends the job.
  template <class F>
  int run(F&& body) {
    if (size() == 1) return body();
    try {
      return body();
    } catch (const std::exception& e) {
      const int code = dynamic_cast<const UsageError*>(&e) || dynamic_cast<const dicyc::ConfigError*>(&e) ? kUsage
                                                                                                          : kFailure;
      std::fprintf(stderr, "%s: rank %d of %d: error: %s\n%s: ending every rank of the job (exit %d)\n", tool_, rank(),
                   size(), e.what(), tool_, code);
      std::fflush(stderr);
      std::fflush(stdout);
#ifdef DICYC_HAVE_MPI
      mpi_->abort(code);
#endif
      return code;
    }
  }

 private:
  const char* tool_;
  double timeout_;
#ifdef DICYC_HAVE_MPI
  std::unique_ptr<dicyc::dist::Mpi> mpi_;
#endif
#if defined(DICYC_HAVE_MPI) && defined(DICYC_TOOLS_NCCL)
  std::unique_ptr<dicyc::dist::Nccl> nccl_;  // after mpi_: destroyed before it
#endif
  dicyc::dist::Communicator* comm_ = &dicyc::dist::single_process();
};

}  // namespace tools
