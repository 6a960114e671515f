// dicyc/core/types.hpp -- data layout, scalar traits and shapes.
//
// Layout (decided once for the whole library):
//   * Eigen ColMajor; logical index order (C, x, y[, z], N): channels fastest, batch slowest.
//     This is the order Eigen's patch extractors expect, and x is fastest in space as in NIfTI,
//     so a volume maps without a transpose.
//   * A feature map of Dim spatial axes has Rank = Dim + 2.
//   * Conv kernels are (Cout, Cin, kx, ky[, kz]); transposed-conv kernels (Cin, Cout, k...), as
//     in PyTorch (whose (Cout, Cin, kh, kw) row-major kernel is our (Cout, Cin, kx, ky) after
//     swapping the two spatial axes).
//   * Scalars: float, Eigen::half (storage; arithmetic accumulates in acc_t = float), double
//     (gradient checks).
#pragma once

#include <array>
#include <cstdint>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "dicyc/core/config.hpp"
#include "dicyc/core/error.hpp"

namespace dicyc {

using Index = Eigen::Index;
using half = Eigen::half;

template <int Dim>
constexpr int rank_of = Dim + 2;

/// Accumulation type: float for half, the scalar itself otherwise.
template <class Scalar>
struct acc {
  using type = Scalar;
};
template <>
struct acc<Eigen::half> {
  using type = float;
};
template <class Scalar>
using acc_t = typename acc<Scalar>::type;

/// Blocks template argument deduction (for optional pointer parameters that may be nullptr).
template <class T>
struct nondeduced {
  using type = T;
};
template <class T>
using nondeduced_t = typename nondeduced<T>::type;

template <class Scalar>
constexpr bool is_half_v = std::is_same_v<Scalar, Eigen::half>;

template <class Scalar>
constexpr const char* scalar_name() {
  if constexpr (std::is_same_v<Scalar, float>) return "float32";
  else if constexpr (std::is_same_v<Scalar, double>) return "float64";
  else if constexpr (std::is_same_v<Scalar, Eigen::half>) return "float16";
  else return "unknown";
}

/// A static-rank shape. Extents are Eigen::Index.
template <int Rank>
using Shape = Eigen::DSizes<Index, Rank>;

template <class S, int Rank>
using TensorMap = Eigen::TensorMap<Eigen::Tensor<S, Rank, Eigen::ColMajor, Index>>;
template <class S, int Rank>
using ConstTensorMap = Eigen::TensorMap<const Eigen::Tensor<S, Rank, Eigen::ColMajor, Index>>;

/// "[a, b, c]", PyTorch-style.
template <class Dims>
std::string shape_str(const Dims& d) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < static_cast<std::size_t>(d.size()); ++i) os << (i ? ", " : "") << d[i];
  os << ']';
  return os.str();
}

/// "3 x 4" for a spatial extent.
template <class Dims>
std::string extent_str(const Dims& d) {
  std::ostringstream os;
  for (std::size_t i = 0; i < static_cast<std::size_t>(d.size()); ++i) os << (i ? " x " : "") << d[i];
  return os.str();
}

template <int Rank>
Index num_elements(const Shape<Rank>& s) {
  Index n = 1;
  for (int i = 0; i < Rank; ++i) n *= s[i];
  return n;
}

/// Checked conversion from a run-time shape (a file, a flag, Python) to a static-rank Shape.
template <int Rank>
Shape<Rank> to_shape(const std::vector<Index>& dims, const std::string& what = "tensor") {
  DICYC_CHECK(static_cast<int>(dims.size()) == Rank, ShapeError,
              what << ": expected a tensor of rank " << Rank << ", but got rank " << dims.size()
                   << " (shape " << shape_str(dims) << ") instead");
  Shape<Rank> s;
  for (int i = 0; i < Rank; ++i) {
    DICYC_CHECK(dims[i] >= 0, ShapeError,
                what << ": negative extent in shape " << shape_str(dims));
    s[i] = dims[i];
  }
  return s;
}

/// Spatial extents of a (C, x, y[, z], N) shape.
template <int Dim>
std::array<Index, Dim> spatial_of(const Shape<Dim + 2>& s) {
  std::array<Index, Dim> a{};
  for (int i = 0; i < Dim; ++i) a[i] = s[i + 1];
  return a;
}

}  // namespace dicyc
