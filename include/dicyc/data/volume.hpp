// dicyc/data/volume.hpp -- volume handling on the host: resampling to a target spacing,
// reorientation to a canonical (RAS+) voxel order, axial slices, and intensity normalisation
// with its stored inverse. Link dicyc::io.
//
//   io::Volume v = io::read_nifti("ct.nii.gz");
//   v = data::reorient_canonical(data::resample(v, {1.8, 1.8, 1.8}));   // geometry follows
//   const auto map = data::IntensityMap::percentile(v.data, 0.5, 99.5);  // [-1, 1] by default
//   map.apply(v.data);        ...        map.invert(out.data);           // back to source units
//
// Every operation keeps the voxel -> world transform exact: resampling maps new voxel centres
// onto the old grid (centre-aligned, as scipy.ndimage.zoom with grid_mode=True), reorientation
// permutes and flips axes and composes the index map into both qform and sform, so an output
// written with io::write_nifti() overlays its source.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "dicyc/core/error.hpp"
#include "dicyc/io/nifti.hpp"

namespace dicyc::data {

using io::Volume;
using io::VolumeData;

enum class Interp { linear, nearest };

/// A 2-D image on the host, x fastest.
using Slice = xt::xtensor<float, 2, xt::layout_type::column_major>;

/// Resamples to `spacing` (mm): the new grid covers the same field of view, with
/// round(dim * old / new) voxels per axis; trilinear (edge values held) or nearest (for masks).
inline Volume resample(const Volume& v, const std::array<double, 3>& spacing, Interp interp = Interp::linear) {
  const auto od = v.dim();
  std::array<std::int64_t, 3> nd;
  Eigen::Matrix4d m = Eigen::Matrix4d::Identity();
  std::array<double, 3> scale;
  for (int d = 0; d < 3; ++d) {
    DICYC_CHECK(std::isfinite(spacing[d]) && spacing[d] > 0, ConfigError,
                "resample: target spacing must be positive, got " << spacing[d] << " on axis " << d);
    scale[d] = spacing[d] / v.spacing[d];
    const double n = std::round(static_cast<double>(od[d]) / scale[d]);
    DICYC_CHECK(n <= 32767, ConfigError,
                "resample: spacing " << spacing[d] << " mm would give " << n << " voxels on axis " << d);
    nd[d] = std::max<std::int64_t>(1, static_cast<std::int64_t>(n));
    m(d, d) = scale[d];
    m(d, 3) = 0.5 * scale[d] - 0.5;  // new voxel centre (i + 0.5) * scale - 0.5 in old indices
  }
  Volume out = v.regridded(nd, m, spacing);
  // Separable weights per axis.
  struct Tap {
    std::int64_t i0, i1;
    float w1;
  };
  std::array<std::vector<Tap>, 3> taps;
  for (int d = 0; d < 3; ++d) {
    taps[d].resize(static_cast<std::size_t>(nd[d]));
    for (std::int64_t i = 0; i < nd[d]; ++i) {
      const double x = std::clamp((static_cast<double>(i) + 0.5) * scale[d] - 0.5, 0.0, static_cast<double>(od[d] - 1));
      Tap t;
      if (interp == Interp::nearest) {
        t.i0 = t.i1 = std::min<std::int64_t>(od[d] - 1, static_cast<std::int64_t>(std::floor(x + 0.5)));
        t.w1 = 0;
      } else {
        t.i0 = static_cast<std::int64_t>(std::floor(x));
        t.i1 = std::min<std::int64_t>(t.i0 + 1, od[d] - 1);
        t.w1 = static_cast<float>(x - static_cast<double>(t.i0));
      }
      taps[d][static_cast<std::size_t>(i)] = t;
    }
  }
  const float* src = v.data.data();
  float* dst = out.data.data();
  const std::int64_t sx = 1, sy = od[0], sz = od[0] * od[1];
  for (std::int64_t k = 0; k < nd[2]; ++k) {
    const Tap tz = taps[2][static_cast<std::size_t>(k)];
    for (std::int64_t j = 0; j < nd[1]; ++j) {
      const Tap ty = taps[1][static_cast<std::size_t>(j)];
      for (std::int64_t i = 0; i < nd[0]; ++i) {
        const Tap tx = taps[0][static_cast<std::size_t>(i)];
        auto at = [&](std::int64_t a, std::int64_t b, std::int64_t c) { return src[a * sx + b * sy + c * sz]; };
        const float c00 = at(tx.i0, ty.i0, tz.i0) * (1 - tx.w1) + at(tx.i1, ty.i0, tz.i0) * tx.w1;
        const float c10 = at(tx.i0, ty.i1, tz.i0) * (1 - tx.w1) + at(tx.i1, ty.i1, tz.i0) * tx.w1;
        const float c01 = at(tx.i0, ty.i0, tz.i1) * (1 - tx.w1) + at(tx.i1, ty.i0, tz.i1) * tx.w1;
        const float c11 = at(tx.i0, ty.i1, tz.i1) * (1 - tx.w1) + at(tx.i1, ty.i1, tz.i1) * tx.w1;
        const float c0 = c00 * (1 - ty.w1) + c10 * ty.w1, c1 = c01 * (1 - ty.w1) + c11 * ty.w1;
        dst[i + nd[0] * (j + nd[1] * k)] = c0 * (1 - tz.w1) + c1 * tz.w1;
      }
    }
  }
  return out;
}

/// Resamples `src` onto the voxel grid of `like` (its dimensions and geometry), through both
/// volumes' voxel -> world transforms: trilinear (edges held) or nearest. Used to bring a result
/// computed on a resampled, reoriented grid back onto the source grid.
inline Volume resample_like(const Volume& src, const Volume& like, Interp interp = Interp::linear) {
  Volume out = like;
  const Eigen::Matrix4d m = src.affine().inverse() * like.affine();  // like index -> src index
  const auto sd = src.dim(), ld = like.dim();
  const float* s = src.data.data();
  float* dst = out.data.data();
  auto at = [&](std::int64_t i, std::int64_t j, std::int64_t k) {
    i = std::clamp<std::int64_t>(i, 0, sd[0] - 1);
    j = std::clamp<std::int64_t>(j, 0, sd[1] - 1);
    k = std::clamp<std::int64_t>(k, 0, sd[2] - 1);
    return s[i + sd[0] * (j + sd[1] * k)];
  };
  std::int64_t n = 0;
  for (std::int64_t k = 0; k < ld[2]; ++k)
    for (std::int64_t j = 0; j < ld[1]; ++j)
      for (std::int64_t i = 0; i < ld[0]; ++i, ++n) {
        const Eigen::Vector4d p = m * Eigen::Vector4d(static_cast<double>(i), static_cast<double>(j),
                                                      static_cast<double>(k), 1.0);
        std::array<double, 3> q;
        for (int d = 0; d < 3; ++d) q[d] = std::clamp(p[d], 0.0, static_cast<double>(sd[d] - 1));
        if (interp == Interp::nearest) {
          dst[n] = at(std::lround(q[0]), std::lround(q[1]), std::lround(q[2]));
          continue;
        }
        const auto i0 = static_cast<std::int64_t>(std::floor(q[0])), j0 = static_cast<std::int64_t>(std::floor(q[1])),
                   k0 = static_cast<std::int64_t>(std::floor(q[2]));
        const double wx = q[0] - static_cast<double>(i0), wy = q[1] - static_cast<double>(j0),
                     wz = q[2] - static_cast<double>(k0);
        double acc = 0;
        for (int c = 0; c < 8; ++c) {
          const double w = ((c & 1) ? wx : 1 - wx) * ((c & 2) ? wy : 1 - wy) * ((c & 4) ? wz : 1 - wz);
          if (w != 0) acc += w * at(i0 + (c & 1), j0 + ((c >> 1) & 1), k0 + ((c >> 2) & 1));
        }
        dst[n] = static_cast<float>(acc);
      }
  return out;
}

/// How the voxel axes of `v` map onto the world (RAS+) axes: new axis i is old axis perm[i],
/// flipped when flip[i].
struct Orientation {
  std::array<int, 3> perm{0, 1, 2};
  std::array<bool, 3> flip{false, false, false};
  bool identity() const { return perm == std::array<int, 3>{0, 1, 2} && !flip[0] && !flip[1] && !flip[2]; }
  /// e.g. "RAS", "LPS": the direction each voxel axis of the source points to.
  static std::string code(const Eigen::Matrix4d& affine) {
    const Orientation o = of(affine);
    std::string s(3, '?');
    const char pos[3] = {'R', 'A', 'S'}, neg[3] = {'L', 'P', 'I'};
    for (int i = 0; i < 3; ++i) s[static_cast<std::size_t>(o.perm[i])] = o.flip[i] ? neg[i] : pos[i];
    return s;
  }
  /// Greedy closest-axis assignment on the direction cosines (as nibabel's io_orientation).
  static Orientation of(const Eigen::Matrix4d& affine) {
    Eigen::Matrix3d r = affine.topLeftCorner<3, 3>();
    for (int c = 0; c < 3; ++c) {
      const double n = r.col(c).norm();
      DICYC_CHECK(n > 0 && std::isfinite(n), NumericError, "orientation: voxel axis " << c << " has no direction");
      r.col(c) /= n;
    }
    Orientation o;
    std::array<bool, 3> row_used{}, col_used{};
    for (int step = 0; step < 3; ++step) {
      double best = -1;
      int bi = 0, bj = 0;
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
          if (!row_used[i] && !col_used[j] && std::abs(r(i, j)) > best) {
            best = std::abs(r(i, j));
            bi = i;
            bj = j;
          }
      row_used[bi] = col_used[bj] = true;
      o.perm[bi] = bj;
      o.flip[bi] = r(bi, bj) < 0;
    }
    return o;
  }
};

/// Reorders the voxels so that axis 0 points Right, 1 Anterior, 2 Superior (the closest
/// canonical orientation). Axial slices of the result are then consistent across scanners.
inline Volume reorient_canonical(const Volume& v) {
  const Orientation o = Orientation::of(v.affine());
  if (o.identity()) return v;
  const auto od = v.dim();
  std::array<std::int64_t, 3> nd;
  std::array<double, 3> sp;
  Eigen::Matrix4d m = Eigen::Matrix4d::Zero();
  m(3, 3) = 1;
  for (int i = 0; i < 3; ++i) {
    nd[i] = od[o.perm[i]];
    sp[i] = v.spacing[o.perm[i]];
    m(o.perm[i], i) = o.flip[i] ? -1 : 1;
    m(o.perm[i], 3) = o.flip[i] ? static_cast<double>(od[o.perm[i]] - 1) : 0;
  }
  Volume out = v.regridded(nd, m, sp);
  const std::array<std::int64_t, 3> stride{1, od[0], od[0] * od[1]};
  const float* src = v.data.data();
  float* dst = out.data.data();
  std::int64_t n = 0;
  for (std::int64_t k = 0; k < nd[2]; ++k)
    for (std::int64_t j = 0; j < nd[1]; ++j)
      for (std::int64_t i = 0; i < nd[0]; ++i, ++n) {
        const std::int64_t p[3] = {i, j, k};
        std::int64_t off = 0;
        for (int a = 0; a < 3; ++a) off += (o.flip[a] ? nd[a] - 1 - p[a] : p[a]) * stride[o.perm[a]];
        dst[n] = src[off];
      }
  return out;
}

/// Axial slice k (the third voxel axis) as an (x, y) image.
inline Slice axial_slice(const Volume& v, std::int64_t k) {
  const auto d = v.dim();
  DICYC_CHECK(k >= 0 && k < d[2], ShapeError, "axial_slice: slice " << k << " of a volume with " << d[2] << " slices");
  Slice s = Slice::from_shape({static_cast<std::size_t>(d[0]), static_cast<std::size_t>(d[1])});
  std::copy_n(v.data.data() + k * d[0] * d[1], d[0] * d[1], s.data());
  return s;
}

/// The numpy.percentile value (linear interpolation) of n values; they are partially reordered.
inline double percentile_inplace(std::vector<float>& v, double q) {
  DICYC_CHECK(!v.empty(), ShapeError, "percentile of no values");
  DICYC_CHECK(q >= 0 && q <= 100, ConfigError, "percentile " << q << " outside [0, 100]");
  const double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
  const double a = v[lo];
  if (lo + 1 >= v.size()) return a;
  const double b = *std::min_element(v.begin() + static_cast<std::ptrdiff_t>(lo) + 1, v.end());
  return a + (pos - static_cast<double>(lo)) * (b - a);
}

/// The one rule for what is foreground in an image or volume: a value above `fraction` of the way
/// from its 0.5th to its 99.5th percentile. The sampler's crop centres and foreground shares
/// (fraction 0.05), dicyc-eval's masks for Dice (0.1) and the experiment all use it. On a volume
/// normalised to [-1, 1] between those percentiles and clipped, this is background + fraction of
/// the range.
inline float foreground_threshold(const float* v, std::size_t n, double fraction = 0.05) {
  DICYC_CHECK(n > 0, ShapeError, "foreground_threshold: no values");
  DICYC_CHECK(fraction >= 0 && fraction < 1, ConfigError, "foreground_threshold: fraction " << fraction << " outside [0, 1)");
  std::vector<float> vals(v, v + n);
  const double lo = percentile_inplace(vals, 0.5), hi = percentile_inplace(vals, 99.5);
  return static_cast<float>(lo + fraction * (hi - lo));
}

/// Intensity normalisation and its inverse. `percentile`: [lo, hi] (source units) -> [-1, 1],
/// clipped (the spec's default, matching the tanh output). `zscore`: (v - mean) / sd, unclipped.
struct IntensityMap {
  enum class Kind { percentile, zscore };
  Kind kind = Kind::percentile;
  double a = -1, b = 1;  // percentile: lo, hi; zscore: mean, sd

  static IntensityMap percentile(const VolumeData& v, double p_lo = 0.5, double p_hi = 99.5,
                                 const VolumeData* mask = nullptr) {
    DICYC_CHECK(p_lo < p_hi, ConfigError, "percentile normalisation: low percentile " << p_lo << " >= high " << p_hi);
    std::vector<float> vals = masked_values(v, mask);
    IntensityMap m;
    m.kind = Kind::percentile;
    m.a = percentile_inplace(vals, p_lo);
    m.b = percentile_inplace(vals, p_hi);
    DICYC_CHECK(m.b > m.a, NumericError,
                "percentile normalisation: the " << p_lo << " and " << p_hi << " percentiles are both " << m.a
                                                 << " (a constant image?)");
    return m;
  }
  /// A fixed window [lo, hi] (source units) -> [-1, 1], clipped: the percentile map with given
  /// bounds (stored as "percentile lo hi", so older readers invert it too).
  static IntensityMap window(double lo, double hi) {
    DICYC_CHECK(std::isfinite(lo) && std::isfinite(hi) && hi > lo, ConfigError,
                "intensity window: expected finite lo < hi, got " << lo << ", " << hi);
    IntensityMap m;
    m.kind = Kind::percentile;
    m.a = lo;
    m.b = hi;
    return m;
  }
  static IntensityMap zscore(const VolumeData& v, const VolumeData* mask = nullptr) {
    const std::vector<float> vals = masked_values(v, mask);
    double s = 0, s2 = 0;
    for (float x : vals) s += x;
    const double mean = s / static_cast<double>(vals.size());
    for (float x : vals) s2 += (x - mean) * (x - mean);
    const double sd = std::sqrt(s2 / static_cast<double>(vals.size()));
    DICYC_CHECK(sd > 0, NumericError, "z-score normalisation: zero standard deviation (a constant image?)");
    IntensityMap m;
    m.kind = Kind::zscore;
    m.a = mean;
    m.b = sd;
    return m;
  }

  float forward(float x) const {
    if (kind == Kind::zscore) return static_cast<float>((x - a) / b);
    return static_cast<float>(std::clamp(2.0 * (x - a) / (b - a) - 1.0, -1.0, 1.0));
  }
  float inverse(float u) const {
    if (kind == Kind::zscore) return static_cast<float>(u * b + a);
    return static_cast<float>((std::clamp(static_cast<double>(u), -1.0, 1.0) + 1.0) * 0.5 * (b - a) + a);
  }
  template <class Tensor>
  void apply(Tensor& t) const {
    for (auto& x : t) x = forward(x);
  }
  template <class Tensor>
  void invert(Tensor& t) const {
    for (auto& x : t) x = inverse(x);
  }

  std::string to_string() const {
    std::ostringstream os;
    os.precision(17);
    os << (kind == Kind::zscore ? "zscore " : "percentile ") << a << " " << b;
    return os.str();
  }
  static IntensityMap from_string(const std::string& s) {
    std::istringstream is(s);
    std::string k;
    IntensityMap m;
    is >> k >> m.a >> m.b;
    DICYC_CHECK(!is.fail() && (k == "zscore" || k == "percentile") && std::isfinite(m.a) && std::isfinite(m.b) &&
                    (k == "zscore" ? m.b > 0 : m.b > m.a),
                SerializationError, "bad intensity map '" << s << "'");
    m.kind = k == "zscore" ? Kind::zscore : Kind::percentile;
    return m;
  }

 private:
  static std::vector<float> masked_values(const VolumeData& v, const VolumeData* mask) {
    std::vector<float> vals;
    if (mask) {
      DICYC_CHECK(mask->shape() == v.shape(), ShapeError, "intensity normalisation: mask shape differs from the volume");
      for (std::size_t i = 0; i < v.size(); ++i)
        if (mask->data()[i] != 0) vals.push_back(v.data()[i]);
      DICYC_CHECK(!vals.empty(), ShapeError, "intensity normalisation: the mask is empty");
    } else {
      vals.assign(v.begin(), v.end());
    }
    DICYC_CHECK(!vals.empty(), ShapeError, "intensity normalisation: empty volume");
    return vals;
  }
};

}  // namespace dicyc::data
