// dicyc/train/memory.hpp -- refusing a run that will not fit before any memory is spent on it.
//
// estimate_bytes(): memory is affine in the voxel count at fixed widths (weights, optimiser state
// and workspaces fixed; activations, caches and pools proportional), so two probe steps of small
// crops, in fresh models, give it for any size; a shape no larger than the second probe is probed
// as it is. check_memory(): compares a need with what the machine (MemAvailable) and the cgroup's
// limit leave, or with an explicit limit, and throws MemoryError (a ConfigError: the tools exit 2)
// with the numbers and what to change.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>

#include "dicyc/core/error.hpp"
#include "dicyc/core/types.hpp"

namespace dicyc::train {

/// A configuration that does not fit in the memory available.
struct MemoryError : ConfigError {
  using ConfigError::ConfigError;
};

/// This process's resident memory in bytes (VmRSS), 0 where /proc is not there.
inline double resident_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return 1024.0 * std::atof(line.c_str() + 6);
  return 0;
}

/// Bytes this process may still take: the smaller of the machine's MemAvailable and what the
/// cgroup's limit leaves (v2 memory.max - memory.current, or v1 limit - usage); `source` says
/// which bound. 0 where neither can be read.
inline double available_bytes(std::string* source) {
  double best = 0;
  *source = "unknown";
  {
    std::ifstream in("/proc/meminfo");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("MemAvailable:", 0) == 0) {
        best = 1024.0 * std::atof(line.c_str() + 13);
        *source = "MemAvailable";
      }
  }
  auto read_num = [](const std::string& f, double& v) {
    std::ifstream in(f);
    std::string t;
    if (!(in >> t) || t == "max") return false;
    char* end = nullptr;
    v = std::strtod(t.c_str(), &end);
    return end && *end == '\0' && v > 0 && v < 1e18;
  };
  double lim = 0, cur = 0;
  if ((read_num("/sys/fs/cgroup/memory.max", lim) && read_num("/sys/fs/cgroup/memory.current", cur)) ||
      (read_num("/sys/fs/cgroup/memory/memory.limit_in_bytes", lim) &&
       read_num("/sys/fs/cgroup/memory/memory.usage_in_bytes", cur))) {
    const double left = std::max(0.0, lim - cur);
    if (best == 0 || left < best) {
      best = left;
      *source = "the cgroup's memory limit";
    }
  }
  return best;
}

inline std::string gib(double bytes) {
  char b[32];
  if (std::abs(bytes) < 1024.0 * 1024.0 * 1024.0) std::snprintf(b, sizeof b, "%.1f MiB", bytes / (1024.0 * 1024.0));
  else std::snprintf(b, sizeof b, "%.2f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return b;
}

/// Throws MemoryError when `need` more bytes will not fit: in `max_memory` bytes when it is > 0
/// (resident + need must fit), else in what the machine leaves; max_memory < 0: no check.
/// `rss_before`: the resident memory before the probes that gave `need`, when they ran in this
/// process. What they freed stays resident (glibc keeps freed blocks for reuse) but the run
/// reuses it, so it counts as available, not as in use: counted as in use it made the 3-D
/// training estimate 37 % high. Prints one "memory: ..." line when `print`.
inline void check_memory(const std::string& what, double need, double max_memory, double rss_before = -1,
                         bool print = true) {
  if (max_memory < 0) return;
  const double now = resident_bytes();
  const double rss = rss_before >= 0 ? std::min(now, rss_before) : now, kept = now - rss;
  std::string src;
  double limit, have;
  if (max_memory > 0) {
    limit = max_memory;
    have = max_memory - rss;
    src = "--max-memory";
  } else {
    have = available_bytes(&src) + kept;
    limit = have + rss;
    if (have <= 0) return;  // nothing to compare with (no /proc)
  }
  if (print) {
    std::printf("memory: %s needs about %s on top of the %s in use; %s available (%s)\n", what.c_str(),
                gib(need).c_str(), gib(rss).c_str(), gib(std::max(0.0, have)).c_str(), src.c_str());
    std::fflush(stdout);
  }
  DICYC_CHECK(need <= have, MemoryError,
              what << " needs about " << gib(need) << " more memory (peak estimated from a probe step), "
                   << "but only " << gib(std::max(0.0, have)) << " is available (" << src << ": " << gib(limit)
                   << " in all, " << gib(rss) << " in use): use a smaller --crop, "
                   << "--batch or width, or raise --max-memory if you know better");
}

/// Device bytes of one training step (train) or one translation of a batch of n images of
/// `full` (x, y[, z]) voxels, from `probe(train, extents, n)`, which runs that step in a fresh
/// model and returns its context's footprint. `d_layers`: the discriminator's stride-2 layers
/// (the smallest probe must survive them).
using ProbeFn = std::function<double(bool train, const std::array<Index, 3>& extents, Index n)>;
inline double estimate_bytes(const ProbeFn& probe, int dim, bool train, const std::array<Index, 3>& full, Index n,
                             int d_layers) {
  Index s1 = std::max<Index>(dim == 2 ? 32 : 24, Index(3) << std::min(d_layers, 10));
  s1 = (s1 + 3) / 4 * 4;
  const Index s2 = (s1 * 3 / 2 + 3) / 4 * 4;
  double v = static_cast<double>(n);
  for (int d = 0; d < dim; ++d) v *= static_cast<double>(full[d]);
  const double v1 = std::pow(static_cast<double>(s1), dim), v2 = std::pow(static_cast<double>(s2), dim);
  if (v <= v2) return probe(train, full, n);
  const double f1 = probe(train, {s1, s1, s1}, 1), f2 = probe(train, {s2, s2, s2}, 1);
  return f1 + (f2 - f1) * (v - v1) / (v2 - v1);
}

}  // namespace dicyc::train
