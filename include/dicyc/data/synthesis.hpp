// dicyc/data/synthesis.hpp -- whole-volume synthesis through any image-to-image function, as
// dicyc-synth runs it: 2-D models on every uncropped axial slice, 3-D models on overlapping tiles
// blended with linear ramps (no seams). The networks are fully convolutional; inputs are padded to
// multiples of 4 (two stride-2 levels) with the background level and cropped back.
#pragma once

#include <algorithm>
#include <array>
#include <functional>
#include <vector>

#include "dicyc/core/error.hpp"
#include "dicyc/core/types.hpp"
#include "dicyc/io/nifti.hpp"

namespace dicyc::data {

/// Synthesizes a whole normalised volume through `translate` (which maps an (1, x, y[, z], N)
/// host array to the same shape). 2-D: every axial slice, padded to a multiple of 4 with the
/// background level and cropped back, `batch` slices per call. 3-D: overlapping tiles of `tile`
/// voxels (multiples of 4), blended with linear ramps, so tile seams do not show.
using Translate = std::function<void(const std::vector<float>& in, std::vector<float>& out,
                                     const std::array<Index, 4>& shape)>;  // x, y, z (1 in 2-D), N

inline io::VolumeData synthesize(const io::VolumeData& in, float background, int dim, const Translate& translate,
                               Index batch = 4, std::array<Index, 3> tile = {64, 64, 64}) {
  const Index nx = static_cast<Index>(in.shape()[0]), ny = static_cast<Index>(in.shape()[1]),
              nz = static_cast<Index>(in.shape()[2]);
  io::VolumeData out = io::VolumeData::from_shape(in.shape());
  auto up4 = [](Index n) { return std::max<Index>(8, (n + 3) / 4 * 4); };
  if (dim == 2) {
    const Index px = up4(nx), py = up4(ny);
    for (Index z0 = 0; z0 < nz; z0 += batch) {
      const Index nb = std::min(batch, nz - z0);
      std::vector<float> x(static_cast<std::size_t>(px * py * nb), background), y(x.size());
      for (Index b = 0; b < nb; ++b)
        for (Index j = 0; j < ny; ++j)
          for (Index i = 0; i < nx; ++i) x[i + px * (j + py * b)] = in.data()[i + nx * (j + ny * (z0 + b))];
      translate(x, y, {px, py, 1, nb});
      for (Index b = 0; b < nb; ++b)
        for (Index j = 0; j < ny; ++j)
          for (Index i = 0; i < nx; ++i) out.data()[i + nx * (j + ny * (z0 + b))] = y[i + px * (j + py * b)];
    }
    return out;
  }
  // 3-D tiles over the volume padded to at least one tile.
  std::array<Index, 3> n{nx, ny, nz}, p, t;
  for (int d = 0; d < 3; ++d) {
    DICYC_CHECK(tile[d] >= 8 && tile[d] % 4 == 0, ConfigError, "synthesis: tiles must be multiples of 4, >= 8");
    t[d] = std::min(tile[d], up4(n[d]));
    p[d] = std::max(t[d], n[d]);
  }
  std::vector<double> acc(static_cast<std::size_t>(nx * ny * nz), 0.0), wsum(acc.size(), 0.0);
  auto starts = [](Index len, Index t) {
    std::vector<Index> s;
    const Index step = std::max<Index>(1, t * 3 / 4);  // 25 % overlap
    for (Index o = 0;; o += step) {
      if (o + t >= len) {
        s.push_back(std::max<Index>(0, len - t));
        break;
      }
      s.push_back(o);
    }
    return s;
  };
  auto ramp = [](Index i, Index t) { return static_cast<double>(std::min(i + 1, t - i)); };
  std::vector<float> x(static_cast<std::size_t>(t[0] * t[1] * t[2])), y(x.size());
  for (Index oz : starts(p[2], t[2]))
    for (Index oy : starts(p[1], t[1]))
      for (Index ox : starts(p[0], t[0])) {
        for (Index k = 0; k < t[2]; ++k)
          for (Index j = 0; j < t[1]; ++j)
            for (Index i = 0; i < t[0]; ++i) {
              const Index a = ox + i, b = oy + j, c = oz + k;
              x[i + t[0] * (j + t[1] * k)] = (a < nx && b < ny && c < nz) ? in.data()[a + nx * (b + ny * c)] : background;
            }
        translate(x, y, {t[0], t[1], t[2], 1});
        for (Index k = 0; k < t[2]; ++k)
          for (Index j = 0; j < t[1]; ++j)
            for (Index i = 0; i < t[0]; ++i) {
              const Index a = ox + i, b = oy + j, c = oz + k;
              if (a >= nx || b >= ny || c >= nz) continue;
              const double w = ramp(i, t[0]) * ramp(j, t[1]) * ramp(k, t[2]);
              acc[a + nx * (b + ny * c)] += w * y[i + t[0] * (j + t[1] * k)];
              wsum[a + nx * (b + ny * c)] += w;
            }
      }
  for (std::size_t i = 0; i < acc.size(); ++i) out.data()[i] = static_cast<float>(acc[i] / wsum[i]);
  return out;
}

}  // namespace dicyc::data
