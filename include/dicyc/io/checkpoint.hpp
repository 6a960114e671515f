// dicyc/io/checkpoint.hpp -- the format pieces of a training checkpoint in a safetensors file
// (what a checkpoint holds is decided in train/checkpoint.hpp).
//
// Parameters are stored under their dotted names in PyTorch's layout and shape, so
// `model.load_state_dict(safetensors.torch.load_file(path))` works on the reference networks
// (after stripping the "g_ab." prefix) and a PyTorch state dict saved with safetensors loads
// here. dicyc keeps tensors column-major with the first index fastest; the conversion is
//   rank 1 (bias)              [d0]                  -> [d0]
//   rank 2 (Linear weight)     [out, in]             -> [out, in]      (transposed in memory)
//   rank >= 3 (conv kernels)   [d0, d1, k_x, k_y...] -> [d0, d1, ..., k_y, k_x]
// (the spatial axes reversed: x is dicyc's first and PyTorch's last). Adam moments, pooled images
// and everything else internal stay in dicyc's memory order, flattened or as the reversed shape
// (an image (C, x, y, N) is stored as [N, y, x, C], which is numpy's NHWC).
// Small state (RNG words, schedule counters, step counts) goes to the metadata as exact text:
// integers in decimal, doubles as C99 hex floats.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "dicyc/core/rng.hpp"
#include "dicyc/io/safetensors.hpp"
#include "dicyc/core/types.hpp"

namespace dicyc::io {

// ------------------------------------------------------------------------------- layout
/// PyTorch's shape of a dicyc parameter of shape `s`.
inline std::vector<std::int64_t> torch_shape(const std::vector<Index>& s) {
  std::vector<std::int64_t> t(s.begin(), s.end());
  if (s.size() >= 3) std::reverse(t.begin() + 2, t.end());
  return t;
}

namespace detail {
/// For each element in PyTorch's row-major order, its offset in dicyc's column-major memory.
inline std::vector<std::size_t> torch_order(const std::vector<Index>& s) {
  const std::size_t R = s.size();
  std::vector<std::size_t> axes;  // dicyc axis of each PyTorch axis
  if (R >= 1) axes.push_back(0);
  if (R >= 2) axes.push_back(1);
  for (std::size_t a = R; a-- > 2;) axes.push_back(a);
  std::vector<std::size_t> stride(R, 1);
  for (std::size_t a = 1; a < R; ++a) stride[a] = stride[a - 1] * static_cast<std::size_t>(s[a - 1]);
  std::size_t n = 1;
  for (Index e : s) n *= static_cast<std::size_t>(e);
  std::vector<std::size_t> off(n);
  std::vector<Index> idx(R, 0);
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t o = 0;
    for (std::size_t j = 0; j < R; ++j) o += static_cast<std::size_t>(idx[j]) * stride[axes[j]];
    off[k] = o;
    for (std::size_t j = R; j-- > 0;) {  // row-major odometer over the PyTorch axes
      if (++idx[j] < s[axes[j]]) break;
      idx[j] = 0;
    }
  }
  return off;
}
}  // namespace detail

template <class S>
std::vector<S> to_torch_layout(const std::vector<S>& ours, const std::vector<Index>& shape) {
  const auto off = detail::torch_order(shape);
  std::vector<S> t(off.size());
  for (std::size_t k = 0; k < off.size(); ++k) t[k] = ours[off[k]];
  return t;
}
template <class S>
std::vector<S> from_torch_layout(const std::vector<S>& torch, const std::vector<Index>& shape) {
  const auto off = detail::torch_order(shape);
  std::vector<S> o(off.size());
  for (std::size_t k = 0; k < off.size(); ++k) o[off[k]] = torch[k];
  return o;
}

// ------------------------------------------------------------------------------- exact text
inline std::string hexfloat(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%a", v);
  return b;
}
inline double parse_double(const std::string& s, const std::string& what) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  DICYC_CHECK(!s.empty() && end == s.c_str() + s.size(), SerializationError,
              "checkpoint: " << what << ": expected a number, found '" << s << "'");
  return v;
}
inline std::int64_t parse_int(const std::string& s, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  DICYC_CHECK(!s.empty() && end == s.c_str() + s.size() && errno == 0, SerializationError,
              "checkpoint: " << what << ": expected an integer, found '" << s << "'");
  return v;
}

inline std::string rng_text(const core::Rng& r) {
  const auto s = r.snapshot();
  std::string t;
  for (auto w : s.s) t += std::to_string(w) + " ";
  return t + hexfloat(s.spare) + " " + (s.has_spare ? "1" : "0");
}
inline core::Rng::Snapshot parse_rng(const std::string& text, const std::string& what) {
  core::Rng::Snapshot s{};
  char spare[64] = {0};
  int flag = -1, used = 0;
  unsigned long long w[4];
  const int got = std::sscanf(text.c_str(), "%llu %llu %llu %llu %63s %d%n", &w[0], &w[1], &w[2], &w[3], spare, &flag,
                              &used);
  DICYC_CHECK(got == 6 && (flag == 0 || flag == 1) && static_cast<std::size_t>(used) == text.size(), SerializationError,
              "checkpoint: " << what << ": corrupt RNG state '" << text << "'");
  for (int i = 0; i < 4; ++i) s.s[i] = w[i];
  s.spare = parse_double(spare, what);
  s.has_spare = flag == 1;
  return s;
}

}  // namespace dicyc::io
