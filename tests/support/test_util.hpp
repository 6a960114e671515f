// Shared helpers for the tests: random tensors, naive reference ops on the host, and a central
// difference gradient check.
#pragma once

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "dicyc/ops.hpp"

namespace dt {

using dicyc::Index;
using dicyc::Shape;

/// Shared CPU contexts: single-threaded, and a 2-thread pool.
inline dicyc::core::Context<Eigen::DefaultDevice>& cpu() {
  static dicyc::core::Context<Eigen::DefaultDevice> c;
  return c;
}
inline dicyc::core::Context<Eigen::ThreadPoolDevice>& pool() {
  static dicyc::core::Context<Eigen::ThreadPoolDevice> c(2);
  return c;
}

template <class S>
std::vector<S> random_vec(Index n, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
  dicyc::core::Rng rng(seed);
  std::vector<S> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = S(rng.uniform(lo, hi));
  return v;
}

template <class To, class From>
std::vector<To> convert(const std::vector<From>& v) {
  std::vector<To> o(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) o[i] = To(static_cast<double>(v[i]));
  return o;
}

inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  BOOST_REQUIRE_EQUAL(a.size(), b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

template <class A, class B>
double max_abs_diff_any(const std::vector<A>& a, const std::vector<B>& b) {
  return max_abs_diff(convert<double>(a), convert<double>(b));
}

inline double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double v : a) m = std::max(m, std::abs(v));
  return m;
}

/// Checks that `fn` throws E whose message contains `needle`.
template <class E, class F>
void expect_error(F&& fn, const std::string& needle) {
  try {
    fn();
  } catch (const E& e) {
    const std::string msg = e.what();
    BOOST_TEST_INFO("message: " << msg);
    BOOST_CHECK(msg.find(needle) != std::string::npos);
    return;
  } catch (const std::exception& e) {
    BOOST_ERROR("wrong exception type, message: " << e.what());
    return;
  }
  BOOST_ERROR("no exception thrown; expected one containing '" << needle << "'");
}

// ----------------------------------------------------------------- naive references (host, double)
// Flat index of (c, spatial..., n) in a ColMajor (C, s..., N) tensor.
template <int Dim>
Index flat(const Shape<Dim + 2>& s, Index c, const std::array<Index, Dim>& p, Index n) {
  Index f = n;
  for (int d = Dim - 1; d >= 0; --d) f = f * s[d + 1] + p[d];
  return f * s[0] + c;
}

template <int Dim, class F>
void for_each_pos(const std::array<Index, Dim>& ext, F&& f) {
  std::array<Index, Dim> p{};
  Index total = 1;
  for (Index e : ext) total *= e;
  for (Index t = 0; t < total; ++t) {
    f(p);
    for (int d = 0; d < Dim; ++d) {
      if (++p[d] < ext[d]) break;
      p[d] = 0;
    }
  }
}

/// Naive convolution: y(co, o, n) = b(co) + sum w(co, ci, k) x(ci, o*s - p + k, n).
template <int Dim>
std::vector<double> naive_conv(const dicyc::ops::ConvOptions<Dim>& o, const Shape<Dim + 2>& xs,
                               const std::vector<double>& x, const std::vector<double>& w,
                               const std::vector<double>* b, Shape<Dim + 2>& ys) {
  ys = dicyc::ops::conv_output_shape(o, xs);
  const auto ws = dicyc::ops::conv_weight_shape(o);
  std::vector<double> y(static_cast<std::size_t>(dicyc::num_elements(ys)), 0.0);
  const auto in = dicyc::spatial_of<Dim>(xs);
  const auto out = dicyc::spatial_of<Dim>(ys);
  for (Index n = 0; n < xs[Dim + 1]; ++n)
    for (Index co = 0; co < ys[0]; ++co)
      for_each_pos<Dim>(out, [&](const std::array<Index, Dim>& op) {
        double acc = b ? (*b)[co] : 0.0;
        for (Index ci = 0; ci < xs[0]; ++ci)
          for_each_pos<Dim>(o.kernel_size(), [&](const std::array<Index, Dim>& k) {
            std::array<Index, Dim> ip;
            for (int d = 0; d < Dim; ++d) {
              ip[d] = op[d] * o.stride()[d] - o.padding()[d] + k[d];
              if (ip[d] < 0 || ip[d] >= in[d]) return;
            }
            // weight (Cout, Cin, k...) ColMajor
            Index wf = 0;
            for (int d = Dim - 1; d >= 0; --d) wf = wf * ws[d + 2] + k[d];
            wf = (wf * ws[1] + ci) * ws[0] + co;
            acc += w[wf] * x[flat<Dim>(xs, ci, ip, n)];
          });
        y[flat<Dim>(ys, co, op, n)] = acc;
      });
  return y;
}

/// Naive transposed convolution, as the scatter of each input through the kernel.
template <int Dim>
std::vector<double> naive_conv_transpose(const dicyc::ops::ConvOptions<Dim>& o, const Shape<Dim + 2>& xs,
                                         const std::vector<double>& x, const std::vector<double>& w,
                                         const std::vector<double>* b, Shape<Dim + 2>& ys) {
  ys = dicyc::ops::conv_transpose_output_shape(o, xs);
  const auto ws = dicyc::ops::conv_transpose_weight_shape(o);
  std::vector<double> y(static_cast<std::size_t>(dicyc::num_elements(ys)), 0.0);
  const auto in = dicyc::spatial_of<Dim>(xs);
  const auto out = dicyc::spatial_of<Dim>(ys);
  for (Index n = 0; n < xs[Dim + 1]; ++n)
    for (Index ci = 0; ci < xs[0]; ++ci)
      for_each_pos<Dim>(in, [&](const std::array<Index, Dim>& ip) {
        const double xv = x[flat<Dim>(xs, ci, ip, n)];
        for (Index co = 0; co < ys[0]; ++co)
          for_each_pos<Dim>(o.kernel_size(), [&](const std::array<Index, Dim>& k) {
            std::array<Index, Dim> op;
            for (int d = 0; d < Dim; ++d) {
              op[d] = ip[d] * o.stride()[d] - o.padding()[d] + k[d];
              if (op[d] < 0 || op[d] >= out[d]) return;
            }
            Index wf = 0;
            for (int d = Dim - 1; d >= 0; --d) wf = wf * ws[d + 2] + k[d];
            wf = (wf * ws[1] + co) * ws[0] + ci;
            y[flat<Dim>(ys, co, op, n)] += w[wf] * xv;
          });
      });
  if (b)
    for (std::size_t i = 0; i < y.size(); ++i) y[i] += (*b)[i % ys[0]];
  return y;
}

// ----------------------------------------------------------------- files
inline std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
inline void write_bytes(const std::string& path, const std::vector<unsigned char>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// ----------------------------------------------------------------- gradient check
/// Indices to probe in a tensor of n elements: all when small, else borders plus random ones.
inline std::vector<Index> probe_indices(Index n, std::uint64_t seed, Index max_probes = 40) {
  std::vector<Index> idx;
  if (n <= max_probes) {
    for (Index i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  idx = {0, 1, n / 2, n - 2, n - 1};
  dicyc::core::Rng rng(seed);
  while (static_cast<Index>(idx.size()) < max_probes) idx.push_back(static_cast<Index>(rng.uniform_int(n)));
  return idx;
}

/// How gradcheck compares: per element relative to max(1, |numeric|) (the default), or against the
/// gradient's scale, with an absolute floor for finite-difference noise on gradients that are
/// exactly 0 (such as a conv bias followed by instance norm): |numeric - analytic| <= tol *
/// max|analytic| + 1e-7 (1e-6 / h).
struct GradcheckOptions {
  double tol = 1e-6;
  double h = 1e-5;  // piecewise-linear models (ReLU, bilinear sampling) have kinks; a step that
                    // straddles one spoils the difference, so a large model wants a small step
  Index probes = 40;
  std::uint64_t seed = 77;
  bool relative_to_scale = false;
};

/// The one finite-difference checker: compares the analytic gradient `grad` of the scalar function
/// `f` (which reads `param`) with central differences at probed indices (always the borders), and
/// reports the first mismatch. Returns the worst error (in the chosen measure).
inline double gradcheck(std::vector<double>& param, const std::vector<double>& grad, const std::function<double()>& f,
                        const std::string& what, const GradcheckOptions& o) {
  BOOST_REQUIRE_EQUAL(param.size(), grad.size());
  const double scale = std::max(max_abs(grad), 1e-12);
  double worst = 0;
  int checked = 0;
  for (Index i : probe_indices(static_cast<Index>(param.size()), o.seed, o.probes)) {
    const double keep = param[i];
    param[i] = keep + o.h;
    const double fp = f();
    param[i] = keep - o.h;
    const double fm = f();
    param[i] = keep;
    const double num = (fp - fm) / (2 * o.h);
    ++checked;
    const double diff = std::abs(num - grad[i]);
    const double err = o.relative_to_scale ? diff / scale : diff / std::max(1.0, std::abs(num));
    worst = std::max(worst, err);
    const bool bad = o.relative_to_scale ? diff > o.tol * scale + 1e-7 * (1e-6 / o.h) : err > o.tol;
    if (bad) {
      BOOST_ERROR(what << ": gradient mismatch at " << i << ": analytic " << grad[i] << ", numeric " << num
                       << (o.relative_to_scale ? " (scale " + std::to_string(scale) + ")" : std::string()));
      break;
    }
  }
  BOOST_CHECK(checked > 0);
  return worst;
}
/// gradcheck with the default measure, a tolerance and a step.
inline double gradcheck(std::vector<double>& param, const std::vector<double>& grad, const std::function<double()>& f,
                        const std::string& what, double tol = 1e-6, double h = 1e-5) {
  GradcheckOptions o;
  o.tol = tol;
  o.h = h;
  return gradcheck(param, grad, f, what, o);
}

inline double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace dt
