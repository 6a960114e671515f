// dicyc/ops/gemm.hpp -- the GEMM behind every contraction-heavy op.
//
//   gemm(ctx, ta, tb, m, n, k, A, B, C, alpha, beta):  C = alpha * op(A) op(B) + beta * C
//
// Column-major and contiguous: A is stored (ta ? k x m : m x k), B (tb ? n x k : k x n), C m x n.
//
// Backends:
//   * Eigen  -- a Tensor contraction evaluated on the context's device. Always available.
//   * Dnnl   -- oneDNN's dnnl_sgemm, for float on the CPU devices, when built with
//               DICYC_HAVE_DNNL (CMake option DICYC_GEMM=dnnl, the default when libdnnl-dev is
//               present). About 1.5x Eigen's GEMM on this machine (346 vs 224 GFLOP/s).
//   * cuBLAS -- on the GPU (gemm_gpu.hpp), always.
// The CPU backend is chosen at run time with set_gemm_backend() among those compiled in, so tests
// can compare the two in one process.
//
// Half on the CPU is a storage format: the operands are converted to float, multiplied in float,
// and the result converted back (Eigen's CPU half contraction is ~280x slower than float).
//
// NOTE(threads): with the ThreadPool context, the product is split into as many column (or row)
// blocks as the pool has threads, and each block calls dnnl_sgemm with OpenMP pinned to one
// thread. No OpenMP team ever runs beside the Eigen pool.
#pragma once

#include <algorithm>
#include <atomic>

#include "dicyc/core/buffer.hpp"

// DICYC_NO_DNNL forces the pure-Eigen path in a translation unit even when the build links oneDNN
// (the test suite builds one such program).
#if defined(DICYC_HAVE_DNNL) && !defined(DICYC_NO_DNNL)
#define DICYC_DNNL_GEMM 1
#endif

#if defined(DICYC_DNNL_GEMM)
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#endif

namespace dicyc::ops {

using core::Context;

enum class GemmBackend { Eigen, Dnnl };

inline const char* to_string(GemmBackend b) { return b == GemmBackend::Eigen ? "eigen" : "dnnl"; }

inline bool gemm_backend_available(GemmBackend b) {
#if defined(DICYC_DNNL_GEMM)
  (void)b;
  return true;
#else
  return b == GemmBackend::Eigen;
#endif
}

namespace detail {
inline std::atomic<GemmBackend>& gemm_backend_slot() {
#if defined(DICYC_DNNL_GEMM)
  static std::atomic<GemmBackend> b{GemmBackend::Dnnl};
#else
  static std::atomic<GemmBackend> b{GemmBackend::Eigen};
#endif
  return b;
}
}  // namespace detail

/// The CPU float backend in use (process-wide).
inline GemmBackend gemm_backend() { return detail::gemm_backend_slot().load(); }

/// Selects the CPU float backend; throws ConfigError if it was not compiled in.
inline void set_gemm_backend(GemmBackend b) {
  DICYC_CHECK(gemm_backend_available(b), ConfigError,
              "GEMM backend '" << to_string(b) << "' is not available in this build "
                               << "(configure with -DDICYC_GEMM=dnnl and libdnnl-dev installed)");
  detail::gemm_backend_slot().store(b);
}

namespace detail {

template <class S, class Device>
void gemm_eigen(const Device& d, bool ta, bool tb, Index m, Index n, Index k, const S* a, const S* b, S* c,
                S alpha, S beta) {
  ConstTensorMap<S, 2> A(a, ta ? k : m, ta ? m : k);
  ConstTensorMap<S, 2> B(b, tb ? n : k, tb ? k : n);
  TensorMap<S, 2> C(c, m, n);
  const Eigen::array<Eigen::IndexPair<Index>, 1> dims{Eigen::IndexPair<Index>(ta ? 0 : 1, tb ? 1 : 0)};
  if (beta == S(0)) {
    if (alpha == S(1)) C.device(d) = A.contract(B, dims);
    else C.device(d) = A.contract(B, dims) * alpha;
  } else {
    // The contraction is evaluated into its own buffer before the sum, so C may appear on both
    // sides.
    C.device(d) = C * beta + A.contract(B, dims) * alpha;
  }
}

#if defined(DICYC_DNNL_GEMM)
/// One single-threaded dnnl_sgemm on a column-major problem with leading dimensions.
inline void dnnl_gemm_1t(bool ta, bool tb, Index m, Index n, Index k, float alpha, const float* a, Index lda,
                         const float* b, Index ldb, float beta, float* c, Index ldc) {
  // Column-major C = op(A) op(B) is row-major C^T = op(B)^T op(A)^T.
  const int prev = omp_get_max_threads();
  omp_set_num_threads(1);
  const dnnl_status_t st = dnnl_sgemm(tb ? 'T' : 'N', ta ? 'T' : 'N', n, m, k, alpha, b, ldb, a, lda, beta, c, ldc);
  omp_set_num_threads(prev);
  DICYC_CHECK(st == dnnl_success, DeviceError, "dnnl_sgemm failed with status " << static_cast<int>(st)
                                                 << " for m=" << m << " n=" << n << " k=" << k);
}

template <class Device>
void gemm_dnnl(const Context<Device>& ctx, bool ta, bool tb, Index m, Index n, Index k, const float* a,
               const float* b, float* c, float alpha, float beta) {
  const Index lda = ta ? k : m, ldb = tb ? n : k, ldc = m;
  const int threads = ctx.num_threads();
  const double flops = 2.0 * double(m) * double(n) * double(k);
  if (threads <= 1 || flops < 2e6) {
    dnnl_gemm_1t(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Split the larger of m and n into one block per thread.
  const bool split_n = n >= m;
  const Index total = split_n ? n : m;
  const Index parts = std::min<Index>(threads, total);
  ctx.parallel_for(parts, 1e9, [&](Index p0, Index p1) {
    for (Index p = p0; p < p1; ++p) {
      const Index lo = total * p / parts, hi = total * (p + 1) / parts;
      if (hi <= lo) continue;
      if (split_n) {
        const float* bb = tb ? b + lo : b + lo * ldb;
        dnnl_gemm_1t(ta, tb, m, hi - lo, k, alpha, a, lda, bb, ldb, beta, c + lo * ldc, ldc);
      } else {
        const float* aa = ta ? a + lo * lda : a + lo;
        dnnl_gemm_1t(ta, tb, hi - lo, n, k, alpha, aa, lda, b, ldb, beta, c + lo, ldc);
      }
    }
  });
}
#endif

}  // namespace detail

/// C = alpha * op(A) op(B) + beta * C on the calling thread alone, with leading dimensions: the
/// building block of the blocked convolutions, which run one such product per pool partition.
/// float uses the selected backend; double (and anything else) Eigen's own GEMM.
template <class S>
void gemm_serial(bool ta, bool tb, Index m, Index n, Index k, const S* a, Index lda, const S* b, Index ldb, S* c,
                 Index ldc, float alpha = 1.0f, float beta = 0.0f) {
  if (m <= 0 || n <= 0) return;
#if defined(DICYC_DNNL_GEMM)
  if constexpr (std::is_same_v<S, float>) {
    if (gemm_backend() == GemmBackend::Dnnl) {
      detail::dnnl_gemm_1t(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
  }
#endif
  using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
  using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  Eigen::Map<Mat, 0, Eigen::OuterStride<>> C(c, m, n, Eigen::OuterStride<>(ldc));
  const CMap A(a, ta ? k : m, ta ? m : k, Eigen::OuterStride<>(lda));
  const CMap B(b, tb ? n : k, tb ? k : n, Eigen::OuterStride<>(ldb));
  if (beta == 0.0f) C.setZero();
  else if (beta != 1.0f) C *= S(beta);
  if (k == 0) return;
  const S al(alpha);
  if (!ta && !tb) C.noalias() += al * A * B;
  else if (ta && !tb) C.noalias() += al * A.transpose() * B;
  else if (!ta && tb) C.noalias() += al * A * B.transpose();
  else C.noalias() += al * A.transpose() * B.transpose();
}

/// C = alpha * op(A) op(B) + beta * C on a CPU context (see the file comment for the layout).
template <class S, class Device, std::enable_if_t<!core::is_gpu_v<Device>, int> = 0>
void gemm(Context<Device>& ctx, bool ta, bool tb, Index m, Index n, Index k, const S* a, const S* b, S* c,
          float alpha = 1.0f, float beta = 0.0f) {
  DICYC_CHECK(m >= 0 && n >= 0 && k >= 0, ShapeError,
              "gemm: negative extent m=" << m << " n=" << n << " k=" << k);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    TensorMap<S, 2> C(c, m, n);
    if (beta == 0.0f) C.device(ctx.device()) = C.constant(S(0));
    else C.device(ctx.device()) = C * S(beta);
    return;
  }
  if constexpr (is_half_v<S>) {
    core::Buffer<float, Device> fa(ctx, m * k), fb(ctx, k * n), fc(ctx, m * n);
    const auto& d = ctx.device();
    TensorMap<float, 1>(fa.data(), m * k).device(d) = ConstTensorMap<S, 1>(a, m * k).template cast<float>();
    TensorMap<float, 1>(fb.data(), k * n).device(d) = ConstTensorMap<S, 1>(b, k * n).template cast<float>();
    if (beta != 0.0f)
      TensorMap<float, 1>(fc.data(), m * n).device(d) = ConstTensorMap<S, 1>(c, m * n).template cast<float>();
    gemm<float>(ctx, ta, tb, m, n, k, fa.data(), fb.data(), fc.data(), alpha, beta);
    TensorMap<S, 1>(c, m * n).device(d) = TensorMap<float, 1>(fc.data(), m * n).template cast<S>();
  } else {
#if defined(DICYC_DNNL_GEMM)
    if constexpr (std::is_same_v<S, float>) {
      if (gemm_backend() == GemmBackend::Dnnl) {
        detail::gemm_dnnl(ctx, ta, tb, m, n, k, a, b, c, alpha, beta);
        return;
      }
    }
#endif
    detail::gemm_eigen(ctx.device(), ta, tb, m, n, k, a, b, c, S(alpha), S(beta));
  }
}

#if defined(EIGEN_USE_GPU)
/// C = alpha * op(A) op(B) + beta * C on the GPU with cuBLAS (column-major, as ours). Half uses
/// cublasGemmEx with float accumulation.
template <class S, class Device, std::enable_if_t<core::is_gpu_v<Device>, int> = 0>
void gemm(Context<Device>& ctx, bool ta, bool tb, Index m, Index n, Index k, const S* a, const S* b, S* c,
          float alpha = 1.0f, float beta = 0.0f) {
  DICYC_CHECK(m >= 0 && n >= 0 && k >= 0, ShapeError,
              "gemm: negative extent m=" << m << " n=" << n << " k=" << k);
  if (m == 0 || n == 0) return;
  const int M = int(m), N = int(n), K = int(k);
  const int lda = ta ? K : M, ldb = tb ? N : K, ldc = M;
  const cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasStatus_t st;
  if (k == 0) {
    TensorMap<S, 2> C(c, m, n);
    if (beta == 0.0f) C.device(ctx.device()) = C.constant(S(0));
    else C.device(ctx.device()) = C * S(beta);
    return;
  }
  if constexpr (std::is_same_v<S, double>) {
    const double al = alpha, be = beta;
    st = cublasDgemm(ctx.cublas(), oa, ob, M, N, K, &al, a, lda, b, ldb, &be, c, ldc);
  } else if constexpr (std::is_same_v<S, float>) {
    st = cublasSgemm(ctx.cublas(), oa, ob, M, N, K, &alpha, a, lda, b, ldb, &beta, c, ldc);
  } else {
    st = cublasGemmEx(ctx.cublas(), oa, ob, M, N, K, &alpha, a, CUDA_R_16F, lda, b, CUDA_R_16F, ldb, &beta, c,
                      CUDA_R_16F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  }
  DICYC_CHECK(st == CUBLAS_STATUS_SUCCESS, DeviceError,
              "cuBLAS gemm failed with status " << int(st) << " for m=" << m << " n=" << n << " k=" << k);
}
#endif

}  // namespace dicyc::ops
