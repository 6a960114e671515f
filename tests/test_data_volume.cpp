// Volume handling: resampling (exact on linear ramps, world positions kept), nearest for masks,
// canonical reorientation (every voxel keeps its world position), percentiles as numpy's, and the
// intensity maps with their inverses.
#define BOOST_TEST_MODULE data_volume
#include <boost/test/unit_test.hpp>

#include <set>

#include "dicyc/data/volume.hpp"

using namespace dicyc;

namespace {

io::Volume make_volume(std::array<std::size_t, 3> d, std::array<double, 3> sp, const Eigen::Matrix4d& affine) {
  io::Volume v;
  v.data = io::VolumeData::from_shape(d);
  v.spacing = sp;
  v.qform = v.sform = affine;
  v.qform_code = v.sform_code = NIFTI_XFORM_SCANNER_ANAT;
  return v;
}

Eigen::Vector4d world(const io::Volume& v, double i, double j, double k) {
  return v.affine() * Eigen::Vector4d(i, j, k, 1);
}

}  // namespace

BOOST_AUTO_TEST_CASE(resample_reproduces_linear_ramps_and_keeps_world_positions) {
  Eigen::Matrix4d a = Eigen::Matrix4d::Identity();
  a.diagonal() << 1.0, 1.5, 2.0, 1;
  a.col(3) << -10, 20, 5, 1;
  io::Volume v = make_volume({20, 16, 12}, {1.0, 1.5, 2.0}, a);
  // f = linear in world coordinates; trilinear interpolation reproduces it wherever no clamping occurs.
  auto f = [](const Eigen::Vector4d& w) { return 0.3 * w[0] - 0.2 * w[1] + 0.7 * w[2] + 4.0; };
  for (std::size_t k = 0; k < 12; ++k)
    for (std::size_t j = 0; j < 16; ++j)
      for (std::size_t i = 0; i < 20; ++i) v.data(i, j, k) = static_cast<float>(f(world(v, i, j, k)));
  const io::Volume r = data::resample(v, {2.0, 2.0, 2.0});
  BOOST_TEST(r.dim()[0] == 10);
  BOOST_TEST(r.dim()[1] == 12);
  BOOST_TEST(r.dim()[2] == 12);
  BOOST_TEST(r.spacing[1] == 2.0);
  // Voxel centres: new voxel 0 on axis 0 lies at old index 0.5 (between old voxels 0 and 1).
  BOOST_TEST((world(r, 0, 0, 0) - world(v, 0.5, 1.0 / 6.0, 0)).norm() <= 1e-12);
  double worst = 0;
  for (std::size_t k = 0; k < 12; ++k)
    for (std::size_t j = 1; j < 11; ++j)  // axis 1 upsamples: the outermost new voxels are clamped
      for (std::size_t i = 0; i < 10; ++i)
        worst = std::max(worst, std::abs(r.data(i, j, k) - f(world(r, i, j, k))));
  BOOST_TEST(worst <= 1e-4);
  // Same spacing: identical data.
  const io::Volume same = data::resample(v, v.spacing);
  BOOST_TEST((same.data == v.data));
  BOOST_CHECK_THROW(data::resample(v, {0.0, 1.0, 1.0}), ConfigError);
}

BOOST_AUTO_TEST_CASE(nearest_keeps_labels) {
  io::Volume m = make_volume({9, 9, 9}, {1, 1, 1}, Eigen::Matrix4d::Identity());
  for (std::size_t k = 0; k < 9; ++k)
    for (std::size_t j = 0; j < 9; ++j)
      for (std::size_t i = 0; i < 9; ++i) m.data(i, j, k) = static_cast<float>((i / 3 + j / 3 + k / 3) % 3 == 0 ? 5 : 0);
  const io::Volume r = data::resample(m, {0.7, 1.3, 2.0}, data::Interp::nearest);
  std::set<float> labels(r.data.begin(), r.data.end());
  BOOST_TEST((labels == std::set<float>{0.0f, 5.0f}));
  // Each new voxel takes the label of the old voxel nearest its centre.
  for (std::size_t k = 0; k < r.data.shape()[2]; ++k)
    for (std::size_t j = 0; j < r.data.shape()[1]; ++j)
      for (std::size_t i = 0; i < r.data.shape()[0]; ++i) {
        const Eigen::Vector4d old = m.affine().inverse() * world(r, i, j, k);
        const auto c = [](double x) { return static_cast<std::size_t>(std::clamp(std::floor(x + 0.5), 0.0, 8.0)); };
        BOOST_TEST(r.data(i, j, k) == m.data(c(old[0]), c(old[1]), c(old[2])));
      }
}

BOOST_AUTO_TEST_CASE(canonical_reorientation_keeps_every_voxel_in_place) {
  // An LPI-ish oblique volume with permuted axes: voxel axis 0 -> anterior-posterior (P),
  // axis 1 -> left (L), axis 2 -> inferior, plus a small rotation.
  Eigen::Matrix4d a = Eigen::Matrix4d::Zero();
  a(1, 0) = -1.2;  // i -> posterior
  a(0, 1) = -0.9;  // j -> left
  a(2, 2) = -2.0;  // k -> inferior
  a(0, 0) = 0.05;
  a(2, 1) = 0.1;
  a.col(3) << 30, -40, 60, 1;
  io::Volume v = make_volume({5, 7, 4}, {1.2, 0.9, 2.0}, a);
  for (std::size_t n = 0; n < v.data.size(); ++n) v.data.data()[n] = static_cast<float>(n);
  BOOST_TEST(data::Orientation::code(v.affine()) == "PLI");
  const io::Volume c = data::reorient_canonical(v);
  BOOST_TEST(data::Orientation::code(c.affine()) == "RAS");
  BOOST_TEST(c.dim()[0] == 7);
  BOOST_TEST(c.dim()[1] == 5);
  BOOST_TEST(c.dim()[2] == 4);
  BOOST_TEST(c.spacing[0] == 0.9);
  const Eigen::Matrix4d inv = v.affine().inverse();
  for (std::size_t k = 0; k < 4; ++k)
    for (std::size_t j = 0; j < 5; ++j)
      for (std::size_t i = 0; i < 7; ++i) {
        const Eigen::Vector4d old = inv * world(c, i, j, k);
        const auto r = [](double x) { return static_cast<std::size_t>(std::lround(x)); };
        BOOST_TEST(std::abs(old[0] - std::round(old[0])) <= 1e-9);
        BOOST_TEST(c.data(i, j, k) == v.data(r(old[0]), r(old[1]), r(old[2])));
      }
  // Already canonical: unchanged.
  const io::Volume c2 = data::reorient_canonical(c);
  BOOST_TEST((c2.data == c.data));
  const data::Slice s = data::axial_slice(c, 2);
  BOOST_TEST(s.shape()[0] == 7);
  BOOST_TEST(s(3, 1) == c.data(3, 1, 2));
  BOOST_CHECK_THROW(data::axial_slice(c, 4), ShapeError);
}

BOOST_AUTO_TEST_CASE(percentiles_as_numpy) {
  // numpy.percentile(arange(100), [0.5, 99.5, 50, 0, 100]) = 0.495, 98.505, 49.5, 0, 99 (linear).
  std::vector<float> v(100);
  for (int i = 0; i < 100; ++i) v[static_cast<std::size_t>((i * 37) % 100)] = static_cast<float>(i);
  const std::vector<std::pair<double, double>> cases{{0.5, 0.495}, {99.5, 98.505}, {50, 49.5}, {0, 0}, {100, 99}};
  for (auto [q, expect] : cases) {
    std::vector<float> w = v;
    BOOST_TEST(data::percentile_inplace(w, q) == expect, boost::test_tools::tolerance(1e-9));
  }
}

BOOST_AUTO_TEST_CASE(intensity_maps_and_inverses) {
  io::VolumeData d = io::VolumeData::from_shape({10, 10, 1});
  for (std::size_t n = 0; n < 100; ++n) d.data()[n] = static_cast<float>(n) * 10.0f - 1000.0f;  // HU-like
  const auto m = data::IntensityMap::percentile(d);
  BOOST_TEST(m.a == -995.05, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(m.b == -14.95, boost::test_tools::tolerance(1e-9));
  io::VolumeData u = d;
  m.apply(u);
  BOOST_TEST(*std::min_element(u.begin(), u.end()) == -1.0f);
  BOOST_TEST(*std::max_element(u.begin(), u.end()) == 1.0f);
  BOOST_TEST(u(5, 0, 0) == static_cast<float>(2.0 * (-950.0 + 995.05) / (980.1) - 1.0), boost::test_tools::tolerance(1e-6f));
  io::VolumeData back = u;
  m.invert(back);
  for (std::size_t n = 1; n < 99; ++n) BOOST_TEST(back.data()[n] == d.data()[n], boost::test_tools::tolerance(1e-3f));
  const auto z = data::IntensityMap::zscore(d);
  BOOST_TEST(z.a == -505.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(z.b == std::sqrt(83325.0), boost::test_tools::tolerance(1e-12));  // 10 * sqrt((100^2 - 1) / 12)
  for (float x : {-1000.0f, 0.0f, 2500.0f}) BOOST_TEST(z.inverse(z.forward(x)) == x, boost::test_tools::tolerance(1e-4f));
  const auto parsed = data::IntensityMap::from_string(m.to_string());
  BOOST_TEST(parsed.a == m.a);
  BOOST_TEST(parsed.b == m.b);
  BOOST_CHECK_THROW(data::IntensityMap::from_string("percentile 3 1"), SerializationError);
  BOOST_CHECK_THROW(data::IntensityMap::from_string("gamma 0 1"), SerializationError);
  io::VolumeData flat = io::VolumeData::from_shape({4, 4, 4});
  flat.fill(7.0f);
  BOOST_CHECK_THROW(data::IntensityMap::percentile(flat), NumericError);
  BOOST_CHECK_THROW(data::IntensityMap::zscore(flat), NumericError);
  io::VolumeData mask = io::VolumeData::from_shape({10, 10, 1});
  mask.fill(0.0f);
  BOOST_CHECK_THROW(data::IntensityMap::percentile(d, 0.5, 99.5, &mask), ShapeError);
  mask(0, 0, 0) = mask(1, 0, 0) = 1;  // the two lowest values only
  const auto mm = data::IntensityMap::percentile(d, 0, 100, &mask);
  BOOST_TEST(mm.a == -1000.0);
  BOOST_TEST(mm.b == -990.0);
}
