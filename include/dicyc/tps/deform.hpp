// dicyc/tps/deform.hpp -- the deformation simulator: seeded random smooth warps (a TPS on a coarse
// control grid plus an optional small affine), applied identically to several images, with the
// dense displacement field returned so that any ground truth can be rebuilt later.
//
// Convention (the one of tps.hpp and grid_sampler.hpp): normalised coordinates in [-1, 1],
// align_corners = false, axis order (x, y[, z]). A deformation T maps output positions to input
// positions: warped(p) = image(T(p)), with T(p) = Aff(TPS(p)), TPS(p) = p + the TPS interpolant of
// the control displacements, Aff(q) = L q + t. The amplitude is a fraction of the field of view:
// the field of view spans 2 normalised units, so amplitude 0.06 draws control displacements
// uniformly in [-0.12, 0.12] per component (dicyc-spec section 6). The affine parameters, all in
// normalised coordinates, are drawn uniformly: rotation angle(s) in [-r, r] degrees, one isotropic
// scale in [1 - s, 1 + s], shears in [-h, h], translations in [-2t, 2t].
// inverse() fits T^-1 with a TPS on a (denser) control grid: at each control point c it solves
// T(x) = c by fixed-point iteration, so warping with T and then with inverse() returns close to
// the original wherever T is well inside the image.
#pragma once

#include <array>
#include <cmath>
#include <memory>
#include <vector>

#include "dicyc/core/rng.hpp"
#include "dicyc/tps/grid_sampler.hpp"
#include "dicyc/tps/tps.hpp"

namespace dicyc::tps {

class DeformOptions {
 public:
  DeformOptions() = default;
  DeformOptions& control(Index g) { control_ = g; return *this; }
  DeformOptions& amplitude(double fraction_of_fov) { amplitude_ = fraction_of_fov; return *this; }
  DeformOptions& rotation(double max_degrees) { rotation_ = max_degrees; return *this; }
  DeformOptions& scale(double max_relative) { scale_ = max_relative; return *this; }
  DeformOptions& shear(double max_shear) { shear_ = max_shear; return *this; }
  DeformOptions& translation(double fraction_of_fov) { translation_ = fraction_of_fov; return *this; }
  Index control() const { return control_; }
  double amplitude() const { return amplitude_; }
  double rotation() const { return rotation_; }
  double scale() const { return scale_; }
  double shear() const { return shear_; }
  double translation() const { return translation_; }
  void validate() const {
    DICYC_CHECK(control_ >= 2, ConfigError, "deformation: the control grid needs at least 2 points per axis, got "
                                                << control_);
    for (double v : {amplitude_, rotation_, scale_, shear_, translation_})
      DICYC_CHECK(v >= 0 && std::isfinite(v), ConfigError,
                  "deformation: amplitudes must be finite and >= 0, got " << v);
    DICYC_CHECK(scale_ < 1, ConfigError, "deformation: the scale range must be below 1, got " << scale_);
  }

 private:
  Index control_ = 4;
  double amplitude_ = 0.06, rotation_ = 0, scale_ = 0, shear_ = 0, translation_ = 0;
};

template <int Dim>
class Deformation {
 public:
  using Vec = Eigen::Matrix<double, Dim, 1>;
  using Affine = Eigen::Matrix<double, Dim, Dim + 1>;

  /// The identity on a g^Dim control grid.
  explicit Deformation(Index g = 4) {
    DICYC_CHECK(g >= 2, ConfigError, "deformation: the control grid needs at least 2 points per axis, got " << g);
    control_.fill(g);
    Index K = 1;
    for (Index c : control_) K *= c;
    disp_ = Eigen::MatrixXd::Zero(Dim, K);
    affine_.setZero();
    affine_.template leftCols<Dim>().setIdentity();
    init();
  }
  Deformation(const std::array<Index, Dim>& control, Eigen::MatrixXd disp, const Affine& affine)
      : control_(control), disp_(std::move(disp)), affine_(affine) {
    Index K = 1;
    for (Index g : control_) K *= g;
    DICYC_CHECK(disp_.rows() == Dim && disp_.cols() == K, ShapeError,
                "deformation: expected " << Dim << " x " << K << " control displacements, got " << disp_.rows() << " x "
                                         << disp_.cols());
    DICYC_CHECK(disp_.allFinite() && affine_.allFinite(), NumericError, "deformation: non-finite parameters");
    init();
  }

  const std::array<Index, Dim>& control() const { return control_; }
  const Eigen::MatrixXd& control_displacements() const { return disp_; }
  const Affine& affine() const { return affine_; }

  /// T at one point.
  Vec map(const Vec& p) const {
    const Vec q = sys_->evaluate(coef_, p);
    return affine_.template leftCols<Dim>() * q + affine_.col(Dim);
  }

  /// The dense sampling grid (Dim, out..., 1) at the pixel centres of an image of extents `out`.
  std::vector<double> grid(const std::array<Index, Dim>& out) const {
    const TpsSystem<Dim> s(control_, out);
    const Eigen::MatrixXd q = s.base + disp_ * s.Mt;
    const Eigen::MatrixXd t = (affine_.template leftCols<Dim>() * q).colwise() + affine_.col(Dim);
    return std::vector<double>(t.data(), t.data() + t.size());
  }
  /// T(p) - p at every pixel centre, (Dim, out..., 1), in normalised units.
  std::vector<double> displacement(const std::array<Index, Dim>& out) const {
    auto g = grid(out);
    const TpsSystem<Dim> s(control_, out);
    for (Index i = 0; i < s.P * Dim; ++i) g[i] -= s.base.data()[i];
    return g;
  }

  /// A TPS fit of T^-1 on a g^Dim control grid (identity affine).
  Deformation inverse(Index g = 12, int iterations = 100) const {
    std::array<Index, Dim> c;
    c.fill(g);
    const TpsSystem<Dim> s(c, c);
    Eigen::MatrixXd d(Dim, s.K);
    for (Index i = 0; i < s.K; ++i) {
      const Vec target = s.ctrl.col(i);
      Vec x = target;
      for (int it = 0; it < iterations; ++it) x -= map(x) - target;
      DICYC_CHECK((map(x) - target).norm() < 1e-6, NumericError,
                  "deformation: the warp is not invertible near control point " << i << " (fixed point diverged)");
      d.col(i) = x - target;
    }
    Affine id;
    id.setZero();
    id.template leftCols<Dim>().setIdentity();
    return Deformation(c, d, id);
  }

  /// Warps input (C, x, y[, z], N) into out (same shape) with border padding: out(p) = input(T(p)).
  template <class S, class Device>
  void apply(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& input, TensorMap<S, Dim + 2>& out) const {
    std::array<Index, Dim> ext;
    for (int d = 0; d < Dim; ++d) ext[d] = input.dimension(d + 1);
    const Index N = input.dimension(Dim + 1);
    const auto g1 = grid(ext);
    std::vector<S> gs(g1.size() * static_cast<std::size_t>(N));
    for (Index n = 0; n < N; ++n)
      for (std::size_t i = 0; i < g1.size(); ++i) gs[n * g1.size() + i] = S(g1[i]);
    Shape<Dim + 2> gshape = input.dimensions();
    gshape[0] = Dim;
    auto gt = core::Tensor<S, Dim + 2, Device>::from_host(ctx, gshape, gs);
    grid_sample_forward<Dim, S>(ctx, input, gt.cmap(), out, PaddingMode::Border);
  }

 private:
  void init() {
    sys_ = std::make_shared<const TpsSystem<Dim>>(control_, control_);
    coef_ = sys_->coefficients(sys_->ctrl + disp_);
  }

  std::array<Index, Dim> control_{};
  Eigen::MatrixXd disp_;
  Affine affine_;
  std::shared_ptr<const TpsSystem<Dim>> sys_;  // at the control resolution, for point evaluation
  Eigen::MatrixXd coef_;                       // the TPS coefficients [W; A] of the control targets
};

/// A seeded random deformation (the same seed gives the same warp on every platform).
template <int Dim>
Deformation<Dim> simulate_deformation(const DeformOptions& o, std::uint64_t seed) {
  o.validate();
  core::Rng rng(seed);
  std::array<Index, Dim> c;
  c.fill(o.control());
  Index K = 1;
  for (Index g : c) K *= g;
  Eigen::MatrixXd d(Dim, K);
  const double a = 2.0 * o.amplitude();
  for (Index i = 0; i < K; ++i)
    for (int k = 0; k < Dim; ++k) d(k, i) = rng.uniform(-a, a);
  using Mat = Eigen::Matrix<double, Dim, Dim>;
  const double deg = 3.14159265358979323846 / 180.0;
  Mat R = Mat::Identity();
  if constexpr (Dim == 2) {
    const double th = rng.uniform(-o.rotation(), o.rotation()) * deg;
    R << std::cos(th), -std::sin(th), std::sin(th), std::cos(th);
  } else {
    for (int ax = 0; ax < 3; ++ax) {
      const double th = rng.uniform(-o.rotation(), o.rotation()) * deg;
      Mat r = Mat::Identity();
      const int i = (ax + 1) % 3, j = (ax + 2) % 3;
      r(i, i) = std::cos(th);
      r(i, j) = -std::sin(th);
      r(j, i) = std::sin(th);
      r(j, j) = std::cos(th);
      R = r * R;
    }
  }
  const double sc = rng.uniform(1 - o.scale(), 1 + o.scale());
  Mat H = Mat::Identity();
  for (int i = 0; i < Dim; ++i)
    for (int j = i + 1; j < Dim; ++j) H(i, j) = rng.uniform(-o.shear(), o.shear());
  typename Deformation<Dim>::Affine A;
  A.template leftCols<Dim>() = R * (sc * H);
  for (int k = 0; k < Dim; ++k) A(k, Dim) = rng.uniform(-2 * o.translation(), 2 * o.translation());
  return Deformation<Dim>(c, d, A);
}

}  // namespace dicyc::tps
