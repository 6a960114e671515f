// Gradient-check helpers for the nn modules: parameter randomisation, and dt::gradcheck (the one
// finite-difference checker, support/test_util.hpp) in the modules' measure, for inputs and for
// parameter tensors in a group's buffers.
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "dicyc/nn/parameter.hpp"
#include "support/test_util.hpp"

namespace dt {

using dicyc::Index;

/// Sets every parameter of the group to uniform(-a, a) values, scaled per tensor by `scale(name)`.
inline void randomise(dicyc::nn::ParameterGroup<double, Eigen::DefaultDevice>& g, std::uint64_t seed, const std::function<double(const std::string&)>& scale) {
  dicyc::core::Rng r(seed);
  for (Index i = 0; i < g.count(); ++i) {
    const auto& ref = g.ref_of(i);
    double* v = g.value(ref);
    const double s = scale(g.name_of(i));
    for (Index k = 0; k < ref.size(); ++k) v[k] = r.uniform(-s, s);
  }
}

/// dt::gradcheck against the gradient's scale (the nn modules' measure): tolerance 2e-6, step h,
/// `probes` indices.
inline void check(const std::string& what, std::vector<double>& x, const std::vector<double>& grad,
                  const std::function<double()>& f, double tol = 2e-6, double h = 1e-6, Index probes = 24) {
  GradcheckOptions o;
  o.tol = tol;
  o.h = h;
  o.probes = probes;
  o.seed = 5;
  o.relative_to_scale = true;
  (void)gradcheck(x, grad, f, what, o);
}

/// The same for a parameter tensor living in the group's buffers.
inline void check_param(const std::string& what, double* p, const double* grad, Index n, const std::function<double()>& f,
                        double h = 1e-6, Index probes = 24) {
  std::vector<double> x(p, p + n), g(grad, grad + n);
  check(
      what, x, g,
      [&] {
        std::copy(x.begin(), x.end(), p);
        return f();
      },
      2e-6, h, probes);
  std::copy(x.begin(), x.end(), p);
}

/// Checks the gradient of every parameter tensor of g against f.
inline void check_all_params(const std::string& what, dicyc::nn::ParameterGroup<double, Eigen::DefaultDevice>& g,
                             const std::function<double()>& f, double h = 1e-6, Index probes = 24) {
  for (Index i = 0; i < g.count(); ++i)
    check_param(what + " d " + g.name_of(i), g.value(g.ref_of(i)), g.grads() + g.ref_of(i).offset, g.ref_of(i).size(), f,
                h, probes);
}

}  // namespace dt
