// dicyc/loss/nmi.hpp -- soft (Parzen-window) normalized mutual information, value and exact
// gradient, 2-D and 3-D, batches, optional mask.
//
// Per sample n (all C x spatial elements of sample n, or those inside the mask):
//   u_i  = (a_i - lo) / (hi - lo + unit_eps)        lo, hi: min and max of the sample, CONSTANT in
//                                                   the gradient (as PyTorch's .detach())
//   w_ik = exp(-(u_i - c_k)^2 / (2 sigma^2)),  c_k = k / (bins - 1),  sigma = sigma_frac / (bins - 1)
//   p_ik = w_ik / (sum_k w_ik + weight_eps)          (each voxel's weights sum to 1)
//   P(A=k, B=l) = mean_i p_ik q_il,  P(A=k) = mean_i p_ik,  H(X) = -sum P log(P + log_eps)
//   NMI = 2 (H(A) + H(B) - H(A,B)) / (H(A) + H(B))  (NmiForm::Arithmetic, default, in [0, 1])
//   NMI = (H(A) + H(B)) / H(A,B)                    (NmiForm::Studholme, scikit-image's, in [1, 2])
// The batch value is the mean over samples. This is, epsilons included, the nmi() of the PyTorch
// reference (nmi() in python/dicyc/nn.py).
//
// Gradient (exact for the function above): dNMI/dP(A,B), dNMI/dP(A), dNMI/dP(B) follow from the
// entropies; then for each voxel
//   dNMI/du_i = (1/n) [sum_k R_ik p_ik e_ik - (sum_k R_ik p_ik)(sum_k p_ik e_ik)],
//   R_ik = sum_l dNMI/dP(k,l) q_il + dNMI/dP(A=k),   e_ik = -(u_i - c_k) / sigma^2,
// and du/da = 1/(hi - lo + unit_eps).
//
// NOTE(speed): a Gaussian of sigma = half a bin is below 1e-12 of its peak beyond 3.7 bins, so each
// voxel touches a window of 9 bins instead of all 32 (window_tol sets the cut; the truncated
// weights change the value by less than window_tol relative). The joint histogram is then 81
// multiply-adds per voxel instead of the 1024 of the dense outer product, and it runs in fixed
// voxel blocks whose partial histograms are added in order (the same result for any thread count).
// On a GPU context the data are copied to the host and back: there is no device kernel yet.
//
// A constant sample: when every value of a or b (inside the mask) is the same, the [0, 1] mapping
// is undefined and the image has no intensity distribution to share. Such a sample counts as no
// shared information: its NMI is the form's minimum (0 Arithmetic, 1 Studholme; the loss 1 - NMI
// is 1), it contributes no gradient to either input, and loss::degenerate_samples() counts it.
// (An all-background training crop is the usual cause.)
// Errors: non-finite values throw NumericError naming the sample; an empty mask throws ShapeError.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "dicyc/loss/common.hpp"

namespace dicyc::loss {

enum class NmiForm { Arithmetic, Studholme };

class NmiOptions {
 public:
  NmiOptions() = default;
  NmiOptions& bins(int v) { bins_ = v; return *this; }
  /// Parzen sigma as a fraction of the bin spacing.
  NmiOptions& sigma(double v) { sigma_ = v; return *this; }
  NmiOptions& form(NmiForm v) { form_ = v; return *this; }
  NmiOptions& unit_eps(double v) { unit_eps_ = v; return *this; }
  NmiOptions& weight_eps(double v) { weight_eps_ = v; return *this; }
  NmiOptions& log_eps(double v) { log_eps_ = v; return *this; }
  /// Parzen weights below this fraction of the peak are skipped.
  NmiOptions& window_tol(double v) { window_tol_ = v; return *this; }

  int bins() const { return bins_; }
  double sigma() const { return sigma_; }
  NmiForm form() const { return form_; }
  double unit_eps() const { return unit_eps_; }
  double weight_eps() const { return weight_eps_; }
  double log_eps() const { return log_eps_; }
  double window_tol() const { return window_tol_; }

  void validate() const {
    DICYC_CHECK(bins_ >= 2 && bins_ <= 4096, ConfigError, "nmi: bins must be in [2, 4096], got " << bins_);
    DICYC_CHECK(sigma_ > 0 && std::isfinite(sigma_), ConfigError,
                "nmi: sigma (a fraction of the bin spacing) must be positive, got " << sigma_);
    DICYC_CHECK(unit_eps_ >= 0 && weight_eps_ >= 0 && log_eps_ > 0, ConfigError,
                "nmi: epsilons must be >= 0 (log_eps > 0), got unit " << unit_eps_ << ", weight " << weight_eps_
                                                                       << ", log " << log_eps_);
    DICYC_CHECK(window_tol_ > 0 && window_tol_ < 1, ConfigError,
                "nmi: window_tol must be in (0, 1), got " << window_tol_);
  }

 private:
  int bins_ = 32;
  double sigma_ = 0.5;
  NmiForm form_ = NmiForm::Arithmetic;
  double unit_eps_ = 1e-8, weight_eps_ = 1e-10, log_eps_ = 1e-10;
  double window_tol_ = 1e-12;
};

namespace detail {

/// The Parzen window of one normalised value: bins [k0, k0 + len), normalised weights p and their
/// log-derivative factors e = -(u - c_k) / sigma^2.
struct ParzenWindow {
  int k0 = 0, len = 0;
  double p[64];
  double e[64];
};

struct ParzenGeometry {
  int bins, half;
  double h, inv_h, inv2s2, inv_s2, weight_eps;
  explicit ParzenGeometry(const NmiOptions& o) {
    bins = o.bins();
    h = 1.0 / (bins - 1);
    inv_h = bins - 1;
    const double sigma = o.sigma() * h;
    inv2s2 = 1.0 / (2 * sigma * sigma);
    inv_s2 = 1.0 / (sigma * sigma);
    half = static_cast<int>(std::ceil(o.sigma() * std::sqrt(-2.0 * std::log(o.window_tol()))));
    half = std::min(half, 31);
    weight_eps = o.weight_eps();
  }
  void window(double u, ParzenWindow& w) const {
    const int kc = static_cast<int>(std::lround(u * inv_h));
    const int k0 = std::max(0, kc - half), k1 = std::min(bins - 1, kc + half);
    w.k0 = k0;
    w.len = k1 - k0 + 1;
    double s = 0;
    for (int j = 0; j < w.len; ++j) {
      const double d = u - (k0 + j) * h;
      w.p[j] = std::exp(-d * d * inv2s2);
      w.e[j] = -d * inv_s2;
      s += w.p[j];
    }
    const double inv = 1.0 / (s + weight_eps);
    for (int j = 0; j < w.len; ++j) w.p[j] *= inv;
  }
};

struct SampleRange {
  double lo = 0, hi = 0, inv = 0;
  Index count = 0;
};

template <class S, class Ctx>
SampleRange sample_range(Ctx& ctx, const char* op, const char* which, Index n, const S* x, const S* m, Index M,
                         double unit_eps) {
  const Index nb = num_blocks(M);
  std::vector<double> lo(nb, std::numeric_limits<double>::infinity()), hi(nb, -std::numeric_limits<double>::infinity());
  std::vector<Index> cnt(nb, 0);
  std::vector<char> bad(nb, 0);
  ctx.parallel_for(nb, double(kSumBlock) * 3, [&](Index b0, Index b1) {
    for (Index b = b0; b < b1; ++b) {
      const Index i1 = std::min(M, (b + 1) * kSumBlock);
      for (Index i = b * kSumBlock; i < i1; ++i) {
        if (m && !(m[i] != S(0))) continue;
        const double v = static_cast<double>(x[i]);
        if (!std::isfinite(v)) bad[b] = 1;
        lo[b] = std::min(lo[b], v);
        hi[b] = std::max(hi[b], v);
        ++cnt[b];
      }
    }
  });
  SampleRange r;
  r.lo = std::numeric_limits<double>::infinity();
  r.hi = -r.lo;
  for (Index b = 0; b < nb; ++b) {
    DICYC_CHECK(!bad[b], NumericError, op << ": input " << which << ", sample " << n << " contains non-finite values");
    r.lo = std::min(r.lo, lo[b]);
    r.hi = std::max(r.hi, hi[b]);
    r.count += cnt[b];
  }
  DICYC_CHECK(r.count > 0, ShapeError, op << ": the mask of sample " << n << " is empty");
  r.inv = r.hi > r.lo ? 1.0 / (r.hi - r.lo + unit_eps) : 0.0;  // 0: a constant sample
  return r;
}

/// Soft NMI of N samples of M elements on the host; returns the mean over samples and accumulates
/// weight * dNMI into ga / gb (null skips).
template <class S, class Ctx>
double soft_nmi_host(Ctx& ctx, const S* a, const S* b, const S* m, Index N, Index M, const NmiOptions& o, S* ga,
                     S* gb, double weight) {
  const ParzenGeometry geo(o);
  const int B = geo.bins;
  const Index nb = num_blocks(M);
  const std::size_t slot = static_cast<std::size_t>(B) * B + 2 * B;
  std::vector<double> part(static_cast<std::size_t>(nb) * slot);
  std::vector<double> gab(static_cast<std::size_t>(B) * B), gA(B), gB(B);
  const double le = o.log_eps();
  double total = 0;
  for (Index n = 0; n < N; ++n) {
    const S* an = a + n * M;
    const S* bn = b + n * M;
    const S* mn = m ? m + n * M : nullptr;
    const SampleRange ra = sample_range(ctx, "nmi", "a", n, an, mn, M, o.unit_eps());
    const SampleRange rb = sample_range(ctx, "nmi", "b", n, bn, mn, M, o.unit_eps());
    if (!(ra.hi > ra.lo) || !(rb.hi > rb.lo)) {  // a constant sample: no shared information
      total += o.form() == NmiForm::Arithmetic ? 0.0 : 1.0;
      degenerate_samples().fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    std::fill(part.begin(), part.end(), 0.0);
    ctx.parallel_for(nb, double(kSumBlock) * 120, [&](Index b0, Index b1) {
      ParzenWindow wa, wb;
      for (Index blk = b0; blk < b1; ++blk) {
        double* joint = part.data() + blk * slot;
        double* pa = joint + B * B;
        double* pb = pa + B;
        const Index i1 = std::min(M, (blk + 1) * kSumBlock);
        for (Index i = blk * kSumBlock; i < i1; ++i) {
          if (mn && !(mn[i] != S(0))) continue;
          geo.window((static_cast<double>(an[i]) - ra.lo) * ra.inv, wa);
          geo.window((static_cast<double>(bn[i]) - rb.lo) * rb.inv, wb);
          for (int j = 0; j < wa.len; ++j) {
            pa[wa.k0 + j] += wa.p[j];
            double* row = joint + static_cast<std::size_t>(wa.k0 + j) * B + wb.k0;
            for (int l = 0; l < wb.len; ++l) row[l] += wa.p[j] * wb.p[l];
          }
          for (int l = 0; l < wb.len; ++l) pb[wb.k0 + l] += wb.p[l];
        }
      }
    });
    for (Index blk = 1; blk < nb; ++blk)
      for (std::size_t t = 0; t < slot; ++t) part[t] += part[blk * slot + t];
    const double inv_n = 1.0 / static_cast<double>(ra.count);
    double* joint = part.data();
    double* pa = joint + B * B;
    double* pb = pa + B;
    auto ent = [&](double* p, int k, double* dh) {
      double h = 0;
      for (int i = 0; i < k; ++i) {
        p[i] *= inv_n;
        h -= p[i] * std::log(p[i] + le);
        dh[i] = -std::log(p[i] + le) - p[i] / (p[i] + le);
      }
      return h;
    };
    const double ha = ent(pa, B, gA.data()), hb = ent(pb, B, gB.data()), hab = ent(joint, B * B, gab.data());
    double nmi, d_ha, d_hab;
    if (o.form() == NmiForm::Arithmetic) {
      nmi = 2.0 * (ha + hb - hab) / (ha + hb);
      d_ha = 2.0 * hab / ((ha + hb) * (ha + hb));
      d_hab = -2.0 / (ha + hb);
    } else {
      nmi = (ha + hb) / hab;
      d_ha = 1.0 / hab;
      d_hab = -(ha + hb) / (hab * hab);
    }
    total += nmi;
    if (!ga && !gb) continue;
    // Chain to the probabilities, folding in 1/n (mean over voxels), 1/N (mean over samples) and
    // the caller's weight.
    const double f = weight / static_cast<double>(N) * inv_n;
    for (auto& v : gab) v *= d_hab * f;
    for (auto& v : gA) v *= d_ha * f;
    for (auto& v : gB) v *= d_ha * f;
    const Index nblk = num_blocks(M, 4096);
    ctx.parallel_for(nblk, 4096.0 * 200, [&](Index b0, Index b1) {
      ParzenWindow wa, wb;
      double r[64];
      for (Index blk = b0; blk < b1; ++blk) {
        const Index i1 = std::min(M, (blk + 1) * 4096);
        for (Index i = blk * 4096; i < i1; ++i) {
          if (mn && !(mn[i] != S(0))) continue;
          geo.window((static_cast<double>(an[i]) - ra.lo) * ra.inv, wa);
          geo.window((static_cast<double>(bn[i]) - rb.lo) * rb.inv, wb);
          if (ga) {
            double s1 = 0, s2 = 0, s3 = 0;
            for (int j = 0; j < wa.len; ++j) {
              const int k = wa.k0 + j;
              const double* row = gab.data() + static_cast<std::size_t>(k) * B + wb.k0;
              double rk = gA[k];
              for (int l = 0; l < wb.len; ++l) rk += row[l] * wb.p[l];
              s1 += rk * wa.p[j] * wa.e[j];
              s2 += rk * wa.p[j];
              s3 += wa.p[j] * wa.e[j];
            }
            ga[n * M + i] = S(static_cast<double>(ga[n * M + i]) + (s1 - s2 * s3) * ra.inv);
          }
          if (gb) {
            for (int l = 0; l < wb.len; ++l) r[l] = gB[wb.k0 + l];
            for (int j = 0; j < wa.len; ++j) {
              const double* row = gab.data() + static_cast<std::size_t>(wa.k0 + j) * B + wb.k0;
              for (int l = 0; l < wb.len; ++l) r[l] += row[l] * wa.p[j];
            }
            double s1 = 0, s2 = 0, s3 = 0;
            for (int l = 0; l < wb.len; ++l) {
              s1 += r[l] * wb.p[l] * wb.e[l];
              s2 += r[l] * wb.p[l];
              s3 += wb.p[l] * wb.e[l];
            }
            gb[n * M + i] = S(static_cast<double>(gb[n * M + i]) + (s1 - s2 * s3) * rb.inv);
          }
        }
      }
    });
  }
  return total / static_cast<double>(N);
}

}  // namespace detail

/// Soft NMI of a and b (mean over the batch), with weight * dNMI accumulated into grad.a / grad.b.
template <class S, int R, class Device>
acc_t<S> soft_nmi(core::Context<Device>& ctx, const ConstTensorMap<S, R>& a, const ConstTensorMap<S, R>& b,
                  const NmiOptions& opts = {}, nondeduced_t<GradTo<S, R>> grad = {},
                  nondeduced_t<MaskPtr<S, R>> mask = nullptr) {
  static_assert(R >= 2, "nmi: inputs are (C, spatial..., N)");
  opts.validate();
  detail::check_pair<S, R>("nmi", a.dimensions(), b.dimensions());
  detail::check_grad_mask<S, R>("nmi", a.dimensions(), grad, mask);
  const Index N = a.dimension(R - 1), M = a.size() / N;
  detail::HostView<S, R, Device> hv(ctx, a.data(), b.data(), a.size(), mask, grad);
  double v = 0;
  detail::HostRunner<Device>::run(
      ctx, [&](auto& host) { v = detail::soft_nmi_host<S>(host, hv.a, hv.b, hv.m, N, M, opts, hv.ga, hv.gb, grad.weight); });
  hv.finish();
  return static_cast<acc_t<S>>(v);
}

/// The alignment loss 1 - NMI, with its gradient.
template <class S, int R, class Device>
acc_t<S> nmi_loss(core::Context<Device>& ctx, const ConstTensorMap<S, R>& a, const ConstTensorMap<S, R>& b,
                  const NmiOptions& opts = {}, nondeduced_t<GradTo<S, R>> grad = {},
                  nondeduced_t<MaskPtr<S, R>> mask = nullptr) {
  GradTo<S, R> g = grad;
  g.weight = -grad.weight;
  return acc_t<S>(1) - soft_nmi<S, R>(ctx, a, b, opts, g, mask);
}

}  // namespace dicyc::loss
