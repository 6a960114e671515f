// dicyc/loss/gcc.hpp -- gradient correlation (Hiasa et al. 2018) and its loss 1 - GC, value and
// exact gradient, 2-D and 3-D, batches, optional mask.
//
// Per sample n and spatial axis k, with the forward difference d_k x(p) = x(p + e_k) - x(p) taken
// at every p with p + e_k inside the image (and, with a mask, both p and p + e_k inside the mask),
// over all channels:
//   NCC_k = sum (d_k a - mean)(d_k b - mean) / sqrt(sum (d_k a - mean)^2 * sum (d_k b - mean)^2)
//   GC = mean over axes k of NCC_k;   the batch value is the mean over samples;  loss = 1 - GC.
// Gradient: dNCC/d(d_k a)_p = (db~_p / sqrt(Sxx Syy) - NCC da~_p / Sxx), then through the
// difference: a(p + e_k) += g_p, a(p) -= g_p (computed as a gather, so it parallelises).
// Sums are in double over fixed blocks (the same result for any thread count). On a GPU context
// the data go through the host (no device kernel yet).
// An axis along which a or b has no variation of its derivative (a constant image, a linear ramp)
// makes NCC 0/0; it counts as no shared structure: NCC_k = 0 and no gradient from that axis. A
// sample where this happens on every axis (a constant image) is counted in
// loss::degenerate_samples(); its GC is 0 and the loss 1.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "dicyc/loss/common.hpp"

namespace dicyc::loss {
namespace detail {

inline const char* axis_name(int d) {
  static const char* names[] = {"x", "y", "z"};
  return d < 3 ? names[d] : "?";
}

template <int Dim, class S, class Ctx>
double gc_host(Ctx& ctx, const S* a, const S* b, const S* m, const SampleGeometry<Dim>& g, S* ga, S* gb,
               double weight) {
  const Index M = g.M;
  const Index nb = num_blocks(M);
  std::array<Index, Dim + 1> full{};
  full[0] = g.C;
  for (int d = 0; d < Dim; ++d) full[d + 1] = g.ext[d];
  // Whether the pair (i, i + e_d) exists, given the axis coordinate x of i.
  auto valid = [&](const S* mn, Index i, int d, Index x) {
    if (x + 1 >= g.ext[d]) return false;
    return !mn || (mn[i] != S(0) && mn[i + g.stride[d]] != S(0));
  };
  double total = 0;
  std::vector<double> part(static_cast<std::size_t>(nb) * 3 * Dim);
  for (Index n = 0; n < g.N; ++n) {
    const S* an = a + n * M;
    const S* bn = b + n * M;
    const S* mn = m ? m + n * M : nullptr;
    // Pass 1: counts and means of the derivatives; pass 2: centred second moments.
    std::array<double, Dim> cnt{}, ma{}, mb{}, sxx{}, syy{}, sxy{};
    auto blocked = [&](auto&& body, auto&& fold) {
      std::fill(part.begin(), part.end(), 0.0);
      ctx.parallel_for(nb, double(kSumBlock) * 4 * Dim, [&](Index b0, Index b1) {
        for (Index blk = b0; blk < b1; ++blk) {
          double* p = part.data() + blk * 3 * Dim;
          const Index i1 = std::min(M, (blk + 1) * kSumBlock);
          Odometer<Dim + 1> od(full);
          od.seek(blk * kSumBlock);
          for (Index i = blk * kSumBlock; i < i1; ++i, od.next())
            for (int d = 0; d < Dim; ++d)
              if (valid(mn, i, d, od.c[d + 1])) {
                const double da = double(an[i + g.stride[d]]) - double(an[i]);
                const double db = double(bn[i + g.stride[d]]) - double(bn[i]);
                body(p + 3 * d, d, da, db);
              }
        }
      });
      for (Index blk = 0; blk < nb; ++blk)
        for (int d = 0; d < Dim; ++d) fold(d, part.data() + blk * 3 * Dim + 3 * d);
    };
    blocked(
        [](double* p, int, double da, double db) {
          p[0] += 1;
          p[1] += da;
          p[2] += db;
        },
        [&](int d, const double* p) {
          cnt[d] += p[0];
          ma[d] += p[1];
          mb[d] += p[2];
        });
    for (int d = 0; d < Dim; ++d) {
      DICYC_CHECK(cnt[d] > 0, ShapeError,
                  "gcc: sample " << n << " has no pair of neighbours along " << axis_name(d)
                                 << (m ? " inside the mask" : "") << " (extent " << g.ext[d] << ")");
      ma[d] /= cnt[d];
      mb[d] /= cnt[d];
    }
    blocked(
        [&](double* p, int d, double da, double db) {
          const double x = da - ma[d], y = db - mb[d];
          p[0] += x * x;
          p[1] += y * y;
          p[2] += x * y;
        },
        [&](int d, const double* p) {
          sxx[d] += p[0];
          syy[d] += p[1];
          sxy[d] += p[2];
        });
    std::array<double, Dim> ncc{}, alpha{}, beta_a{}, beta_b{};
    double gc = 0;
    int flat = 0;
    for (int d = 0; d < Dim; ++d) {
      if (!(sxx[d] > 0) || !(syy[d] > 0)) {  // 0/0: no shared structure along this axis
        ++flat;
        continue;
      }
      const double den = std::sqrt(sxx[d] * syy[d]);
      ncc[d] = sxy[d] / den;
      gc += ncc[d] / Dim;
      // dGC/d(derivatives), with the mean over axes and samples and the caller's weight.
      const double c = weight / (double(Dim) * double(g.N));
      alpha[d] = c / den;
      beta_a[d] = c * ncc[d] / sxx[d];
      beta_b[d] = c * ncc[d] / syy[d];
    }
    total += gc;
    if (flat == Dim) {
      degenerate_samples().fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (!ga && !gb) continue;
    S* gan = ga ? ga + n * M : nullptr;
    S* gbn = gb ? gb + n * M : nullptr;
    ctx.parallel_for(M, 20.0 * Dim, [&](Index j0, Index j1) {
      Odometer<Dim + 1> od(full);
      od.seek(j0);
      for (Index j = j0; j < j1; ++j, od.next()) {
        double sa = 0, sb = 0;
        for (int d = 0; d < Dim; ++d) {
          // g at position i contributes +g to i + e_k and -g to i.
          auto at = [&](Index i, double sgn) {
            const double x = double(an[i + g.stride[d]]) - double(an[i]) - ma[d];
            const double y = double(bn[i + g.stride[d]]) - double(bn[i]) - mb[d];
            sa += sgn * (alpha[d] * y - beta_a[d] * x);
            sb += sgn * (alpha[d] * x - beta_b[d] * y);
          };
          const Index x = od.c[d + 1];
          if (valid(mn, j, d, x)) at(j, -1.0);
          if (x >= 1 && valid(mn, j - g.stride[d], d, x - 1)) at(j - g.stride[d], 1.0);
        }
        if (gan) gan[j] = S(double(gan[j]) + sa);
        if (gbn) gbn[j] = S(double(gbn[j]) + sb);
      }
    });
  }
  return total / double(g.N);
}

}  // namespace detail

/// Gradient correlation GC(a, b) in [-1, 1] (mean over the batch), with weight * dGC accumulated
/// into grad.a / grad.b.
template <int Dim, class S, class Device>
acc_t<S> gradient_correlation(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& a,
                              const ConstTensorMap<S, Dim + 2>& b, nondeduced_t<GradTo<S, Dim + 2>> grad = {},
                              nondeduced_t<MaskPtr<S, Dim + 2>> mask = nullptr) {
  static_assert(Dim == 2 || Dim == 3, "gcc: 2-D or 3-D");
  constexpr int R = Dim + 2;
  detail::check_pair<S, R>("gcc", a.dimensions(), b.dimensions());
  detail::check_grad_mask<S, R>("gcc", a.dimensions(), grad, mask);
  const detail::SampleGeometry<Dim> geo(a.dimensions());
  for (int d = 0; d < Dim; ++d)
    DICYC_CHECK(geo.ext[d] >= 2, ShapeError,
                "gcc: every spatial extent must be at least 2, but got " << shape_str(a.dimensions()));
  const GradTo<S, R> g = grad;
  detail::HostView<S, R, Device> hv(ctx, a.data(), b.data(), a.size(), mask, g);
  double v = 0;
  detail::HostRunner<Device>::run(
      ctx, [&](auto& host) { v = detail::gc_host<Dim, S>(host, hv.a, hv.b, hv.m, geo, hv.ga, hv.gb, g.weight); });
  hv.finish();
  return static_cast<acc_t<S>>(v);
}

/// The alignment loss 1 - GC, with its gradient.
template <int Dim, class S, class Device>
acc_t<S> gcc_loss(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& a, const ConstTensorMap<S, Dim + 2>& b,
                  nondeduced_t<GradTo<S, Dim + 2>> grad = {}, nondeduced_t<MaskPtr<S, Dim + 2>> mask = nullptr) {
  GradTo<S, Dim + 2> g = grad;
  g.weight = -grad.weight;
  return acc_t<S>(1) - gradient_correlation<Dim, S>(ctx, a, b, g, mask);
}

}  // namespace dicyc::loss
