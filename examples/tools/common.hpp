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
#include "dicyc/data/synthesis.hpp"
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

using dicyc::data::synthesize;
using dicyc::data::Translate;

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
