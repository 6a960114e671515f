// Shared parts of the command-line tools: option handling with the exit codes the README
// documents, PNG panels and grids, checkerboards, whole-volume synthesis (slice by slice in 2-D,
// overlapping tiles in 3-D) and the checkpoint's data metadata.
//
// Exit codes: 0 done; 1 a failure while running (unreadable file, I/O error); 2 a bad flag or
// value (including a missing data folder or an unknown model); 3 a non-finite loss (training
// stopped, the last good checkpoint kept); 130 interrupted (Ctrl-C, after saving).
#pragma once

#include <cxxopts.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dicyc/core/error.hpp"
#include "dicyc/data/dataset.hpp"
#include "dicyc/io/grid.hpp"
#include "dicyc/train/memory.hpp"
#include "dicyc/train/run_info.hpp"

namespace tools {

using dicyc::Index;

/// A bad flag or value: message, exit code 2.
struct UsageError : dicyc::Error {
  using dicyc::Error::Error;
};

#define TOOL_REQUIRE(cond, msg) DICYC_CHECK(cond, ::tools::UsageError, msg)

enum Exit { kOk = 0, kFailure = 1, kUsage = 2, kNonFinite = 3, kInterrupted = 130 };

/// Runs a tool body; maps exceptions to messages and exit codes.
inline int run_tool(const char* name, const std::function<int()>& body) {
  try {
    return body();
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "%s: %s\nRun '%s --help' for the options.\n", name, e.what(), name);
    return kUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s\nRun '%s --help' for the options.\n", name, e.what(), name);
    return kUsage;
  } catch (const dicyc::ConfigError& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return kUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return kFailure;
  }
}

/// Parses, refusing positional leftovers (a typo such as "--itres 5" would otherwise vanish).
inline cxxopts::ParseResult parse(cxxopts::Options& o, int argc, char** argv) {
  auto r = o.parse(argc, argv);
  TOOL_REQUIRE(r.unmatched().empty(), "unexpected argument '" << r.unmatched().front() << "'");
  return r;
}

inline void require_data(const std::string& what, const std::string& path) {
  TOOL_REQUIRE(!path.empty(), what << " is required");
  std::error_code ec;
  TOOL_REQUIRE(std::filesystem::exists(path, ec), what << " '" << path << "' does not exist");
}

/// Spacing flag: "0" (keep), "1.8" (isotropic) or "1,1,2".
/// --device: "cpu", "gpu" or "gpu:<index>"; sets the device kind and the CUDA device index.
inline void parse_device(const std::string& s, std::string& device, int& gpu) {
  gpu = 0;
  if (s == "cpu" || s == "gpu") {
    device = s;
    return;
  }
  char* end = nullptr;
  const long i = s.rfind("gpu:", 0) == 0 ? std::strtol(s.c_str() + 4, &end, 10) : -1;
  TOOL_REQUIRE(end && end != s.c_str() + 4 && *end == '\0' && i >= 0 && i < 64,
               "--device must be cpu, gpu or gpu:<index>, got '" << s << "'");
  device = "gpu";
  gpu = static_cast<int>(i);
}

inline std::array<double, 3> parse_spacing(const std::string& s) {
  std::array<double, 3> v{0, 0, 0};
  std::vector<double> parts;
  std::string cur;
  for (char c : s + ",") {
    if (c == ',') {
      TOOL_REQUIRE(!cur.empty(), "--spacing '" << s << "': expected one number or three separated by commas");
      char* end = nullptr;
      const double x = std::strtod(cur.c_str(), &end);
      TOOL_REQUIRE(end && *end == '\0' && std::isfinite(x) && x >= 0, "--spacing '" << s << "': '" << cur << "' is not a spacing in mm");
      parts.push_back(x);
      cur.clear();
    } else {
      cur += c;
    }
  }
  TOOL_REQUIRE(parts.size() == 1 || parts.size() == 3, "--spacing '" << s << "': expected 1 or 3 values");
  for (int d = 0; d < 3; ++d) v[d] = parts[parts.size() == 1 ? 0 : d];
  return v;
}

// ------------------------------------------------------------------------------------- images
using dicyc::io::checkerboard;
using dicyc::io::Panel;
using dicyc::io::panel_of;
using dicyc::io::write_grid;

/// A panel of a volume's middle axial slice, rescaled to [-1, 1] between lo and hi.
inline Panel middle_slice(const dicyc::io::Volume& v, float lo, float hi) {
  const auto d = v.dim();
  const Index k = d[2] / 2;
  Panel p{d[0], d[1], std::vector<float>(static_cast<std::size_t>(d[0] * d[1]))};
  for (Index i = 0; i < d[0] * d[1]; ++i)
    p.v[i] = hi > lo ? 2.0f * (v.data.data()[k * d[0] * d[1] + i] - lo) / (hi - lo) - 1.0f : 0.0f;
  return p;
}

// ------------------------------------------------------------------------------------- synthesis
/// Synthesizes a whole normalised volume through `translate` (which maps an (1, x, y[, z], N)
/// host array to the same shape). 2-D: every axial slice, padded to a multiple of 4 with the
/// background level and cropped back, `batch` slices per call. 3-D: overlapping tiles of `tile`
/// voxels (multiples of 4), blended with linear ramps, so tile seams do not show.
using Translate = std::function<void(const std::vector<float>& in, std::vector<float>& out,
                                     const std::array<Index, 4>& shape)>;  // x, y, z (1 in 2-D), N

inline dicyc::io::VolumeData synthesize(const dicyc::io::VolumeData& in, float background, int dim, const Translate& translate,
                                       Index batch = 4, std::array<Index, 3> tile = {64, 64, 64}) {
  const Index nx = static_cast<Index>(in.shape()[0]), ny = static_cast<Index>(in.shape()[1]),
              nz = static_cast<Index>(in.shape()[2]);
  dicyc::io::VolumeData out = dicyc::io::VolumeData::from_shape(in.shape());
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
    DICYC_CHECK(tile[d] >= 8 && tile[d] % 4 == 0, dicyc::ConfigError, "synthesis: tiles must be multiples of 4, >= 8");
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

/// --max-memory: "auto" (0: what the machine and cgroup leave), "off" (-1: no check) or GiB.
inline double parse_max_memory(const std::string& s) {
  if (s == "auto") return 0;
  if (s == "off") return -1;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  TOOL_REQUIRE(end && end != s.c_str() && *end == '\0' && std::isfinite(v) && v > 0,
               "--max-memory must be auto, off or a size in GiB (e.g. 12.5), got '" << s << "'");
  return v * 1024.0 * 1024.0 * 1024.0;
}

/// What a checkpoint records about the data (train/run_info.hpp).
using DataMeta = dicyc::train::DataInfo;
using dicyc::train::check_memory;

inline std::string strip_nifti_ext(std::string name) {
  for (const char* e : {".nii.gz", ".nii", ".hdr.gz", ".hdr"})
    if (dicyc::io::detail::ends_with(name, e)) return name.substr(0, name.size() - std::strlen(e));
  return name;
}

}  // namespace tools
