// dicyc/tps/tps.hpp -- thin-plate-spline dense sampling grids from control-point displacements,
// 2-D and 3-D, forward and backward.
//
// Control points: a regular g_x x g_y [x g_z] grid over [-1, 1], inset by half a cell
// (c = -1 + (2i + 1)/g per axis), x fastest; K = prod g. Kernel U(r) = r^2 log r^2 (2-D, U(0) = 0)
// or U(r) = r (3-D). System [[U(|c_i - c_j|), P], [P^T, 0]] [W; A] = [V; 0], P = [1, c], solved
// once per control grid and output resolution (LU in double).
// Dense map at the output pixel centres p (align_corners = false: p = -1 + (2i + 1)/n):
//   f(p) = A^T [1, p] + sum_i W_i U(|p - c_i|), with V = c + displacement.
// Since [W; A] is linear in V, f = M V with the constant (P x K) matrix M = [U | 1 | p] L^-1[:, :K];
// and because the TPS reproduces affine maps exactly, M c = p, so
//   grid = base + M disp      (one GEMM per sample: disp (Dim x K) times M^T (K x P)),
// the precomputed form of the spec's "two products". Backward: ddisp += dgrid M.
// Layouts: disp (Dim, K, N), components fastest; grid (Dim, ox, oy[, oz], N), the grid_sample layout.
#pragma once

#include <Eigen/Dense>

#include <array>
#include <cmath>
#include <vector>

#include "dicyc/core/buffer.hpp"
#include "dicyc/ops/gemm.hpp"

namespace dicyc::tps {

/// The TPS kernel: r^2 log r^2 in 2-D, r in 3-D, as a function of the squared distance.
template <int Dim>
inline double tps_kernel(double r2) {
  if constexpr (Dim == 2)
    return r2 > 0 ? r2 * std::log(r2) : 0.0;
  else
    return std::sqrt(r2);
}

/// Normalised pixel-centre coordinate of index i on an axis of n pixels (align_corners = false).
inline double pixel_center(Index i, Index n) { return -1.0 + (2.0 * double(i) + 1.0) / double(n); }

/// Host-side TPS geometry in double: control points, the system's inverse, and the dense matrix.
template <int Dim>
struct TpsSystem {
  std::array<Index, Dim> control{}, out{};
  Index K = 0, P = 0;
  Eigen::MatrixXd ctrl;  // Dim x K
  Eigen::MatrixXd base;  // Dim x P: the pixel centres
  Eigen::MatrixXd Mt;    // K x P: grid = base + disp * Mt
  Eigen::MatrixXd Linv;  // (K + Dim + 1)^2

  TpsSystem(const std::array<Index, Dim>& g, const std::array<Index, Dim>& o, double kernel_scale = 1.0)
      : control(g), out(o) {
    K = P = 1;
    for (int d = 0; d < Dim; ++d) {
      DICYC_CHECK(g[d] >= 2, ConfigError,
                  "tps: the control grid needs at least 2 points per axis, got " << g[d] << " along axis " << d);
      DICYC_CHECK(o[d] >= 1, ShapeError, "tps: empty output extent along axis " << d);
      K *= g[d];
      P *= o[d];
    }
    ctrl.resize(Dim, K);
    for (Index i = 0; i < K; ++i) {
      Index r = i;
      for (int d = 0; d < Dim; ++d) {
        ctrl(d, i) = pixel_center(r % g[d], g[d]);
        r /= g[d];
      }
    }
    base.resize(Dim, P);
    for (Index p = 0; p < P; ++p) {
      Index r = p;
      for (int d = 0; d < Dim; ++d) {
        base(d, p) = pixel_center(r % o[d], o[d]);
        r /= o[d];
      }
    }
    const Index S = K + Dim + 1;
    Eigen::MatrixXd L = Eigen::MatrixXd::Zero(S, S);
    for (Index i = 0; i < K; ++i) {
      for (Index j = 0; j < K; ++j) L(i, j) = kernel_scale * tps_kernel<Dim>((ctrl.col(i) - ctrl.col(j)).squaredNorm());
      L(i, K) = L(K, i) = 1;
      for (int d = 0; d < Dim; ++d) L(i, K + 1 + d) = L(K + 1 + d, i) = ctrl(d, i);
    }
    Eigen::FullPivLU<Eigen::MatrixXd> lu(L);
    DICYC_CHECK(lu.isInvertible(), NumericError, "tps: the control-point system is singular");
    Linv = lu.inverse();
    // M = rep * Linv[:, :K], built in column blocks of pixels to bound the temporary.
    Mt.resize(K, P);
    const Index blk = 4096;
    Eigen::MatrixXd rep(S, std::min(blk, P));
    for (Index p0 = 0; p0 < P; p0 += blk) {
      const Index w = std::min(blk, P - p0);
      for (Index q = 0; q < w; ++q) {
        for (Index i = 0; i < K; ++i)
          rep(i, q) = kernel_scale * tps_kernel<Dim>((base.col(p0 + q) - ctrl.col(i)).squaredNorm());
        rep(K, q) = 1;
        for (int d = 0; d < Dim; ++d) rep(K + 1 + d, q) = base(d, p0 + q);
      }
      Mt.middleCols(p0, w).noalias() = Linv.leftCols(K).transpose() * rep.leftCols(w);
    }
    kernel_scale_ = kernel_scale;
  }

  /// [W; A] ((K + Dim + 1) x Dim) for control-point targets V (Dim x K).
  Eigen::MatrixXd coefficients(const Eigen::MatrixXd& V) const {
    Eigen::MatrixXd rhs = Eigen::MatrixXd::Zero(K + Dim + 1, Dim);
    rhs.topRows(K) = V.transpose();
    return Linv * rhs;
  }
  /// f(p) at an arbitrary point for the given coefficients.
  Eigen::Matrix<double, Dim, 1> evaluate(const Eigen::MatrixXd& coef, const Eigen::Matrix<double, Dim, 1>& p) const {
    Eigen::Matrix<double, Dim, 1> f = coef.row(K).transpose();
    for (int d = 0; d < Dim; ++d) f += coef.row(K + 1 + d).transpose() * p(d);
    for (Index i = 0; i < K; ++i)
      f += coef.row(i).transpose() * (kernel_scale_ * tps_kernel<Dim>((p - ctrl.col(i)).squaredNorm()));
    return f;
  }

 private:
  double kernel_scale_ = 1.0;
};

/// A TPS grid generator for one control grid and output resolution, with its matrices on the
/// device in the scalar type S.
template <int Dim, class S, class Device>
class TpsGrid {
 public:
  static constexpr int Rank = Dim + 2;
  TpsGrid(core::Context<Device>& ctx, const std::array<Index, Dim>& control, const std::array<Index, Dim>& out)
      : sys_(control, out) {
    std::vector<S> mt(static_cast<std::size_t>(sys_.K * sys_.P)), base(static_cast<std::size_t>(Dim * sys_.P));
    for (Index p = 0; p < sys_.P; ++p) {
      for (Index i = 0; i < sys_.K; ++i) mt[p * sys_.K + i] = S(sys_.Mt(i, p));
      for (int d = 0; d < Dim; ++d) base[p * Dim + d] = S(sys_.base(d, p));
    }
    mt_ = core::Tensor<S, 2, Device>::from_host(ctx, Shape<2>(sys_.K, sys_.P), mt);
    base_ = core::Tensor<S, 2, Device>::from_host(ctx, Shape<2>(Dim, sys_.P), base);
  }

  Index num_control_points() const { return sys_.K; }
  const std::array<Index, Dim>& control() const { return sys_.control; }
  const std::array<Index, Dim>& out_extent() const { return sys_.out; }
  const TpsSystem<Dim>& system() const { return sys_; }

  Shape<3> disp_shape(Index N) const { return Shape<3>(Dim, sys_.K, N); }
  Shape<Rank> grid_shape(Index N) const {
    Shape<Rank> s;
    s[0] = Dim;
    for (int d = 0; d < Dim; ++d) s[d + 1] = sys_.out[d];
    s[Rank - 1] = N;
    return s;
  }

  /// grid = base + disp * M^T, per sample.
  void forward(core::Context<Device>& ctx, const ConstTensorMap<S, 3>& disp, TensorMap<S, Rank>& grid) const {
    const Index N = check(disp.dimensions(), grid.dimensions());
    check_finite(ctx, disp);
    for (Index n = 0; n < N; ++n) {
      TensorMap<S, 2> g(grid.data() + n * Dim * sys_.P, Dim, sys_.P);
      g.device(ctx.device()) = base_.cmap();
      ops::gemm<S>(ctx, false, false, Dim, sys_.P, sys_.K, disp.data() + n * Dim * sys_.K, mt_.data(), g.data(), 1.0f,
                   1.0f);
    }
  }
  /// ddisp += dgrid * M, per sample.
  void backward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& dgrid, TensorMap<S, 3>& ddisp) const {
    const Index N = check(ddisp.dimensions(), dgrid.dimensions());
    for (Index n = 0; n < N; ++n)
      ops::gemm<S>(ctx, false, true, Dim, sys_.K, sys_.P, dgrid.data() + n * Dim * sys_.P, mt_.data(),
                   ddisp.data() + n * Dim * sys_.K, 1.0f, 1.0f);
  }

 private:
  void check_finite(core::Context<Device>& ctx, const ConstTensorMap<S, 3>& disp) const {
    // CPU contexts read the caller's memory; a GPU context copies the (small) displacements over.
    std::vector<S> copy;
    if constexpr (core::is_gpu_v<Device>) copy = core::to_host(ctx, disp.data(), disp.size());
    const S* h = core::is_gpu_v<Device> ? copy.data() : disp.data();
    for (Index i = 0; i < disp.size(); ++i)
      DICYC_CHECK(std::isfinite(double(h[i])), NumericError,
                  "tps: control displacement component " << i % Dim << " of point " << (i / Dim) % sys_.K
                                                         << ", sample " << i / (Dim * sys_.K) << " is not finite ("
                                                         << double(h[i]) << ")");
  }
  Index check(const Shape<3>& ds, const Shape<Rank>& gs) const {
    const Index N = ds[2];
    DICYC_CHECK(ds == disp_shape(N), ShapeError,
                "tps: expected control displacements of shape " << shape_str(disp_shape(N)) << " (" << Dim
                                                                << " components x " << sys_.K << " points x N), but got "
                                                                << shape_str(ds));
    DICYC_CHECK(gs == grid_shape(N), ShapeError,
                "tps: expected a grid of shape " << shape_str(grid_shape(N)) << ", but got " << shape_str(gs));
    return N;
  }
  TpsSystem<Dim> sys_;
  core::Tensor<S, 2, Device> mt_, base_;
};

}  // namespace dicyc::tps
