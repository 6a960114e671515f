// dicyc/loss/mind.hpp -- MIND descriptors (Heinrich et al. 2012) and the MIND loss, value and
// exact gradient, 2-D and 3-D, batches, optional mask.
//
// Per sample n, channel c, and each of the 2*Dim neighbours r = +-e_k (order +x, -x, +y, -y, +z, -z):
//   S_r(p) = (I(p) - I(p + r))^2 where p + r is inside the image, 0 elsewhere
//   D_r(p) = sum_q G(q) S_r(p + q)         Gaussian patch, separable, weights normalised to 1 per
//                                          axis, radius `radius`, sigma `sigma`; zero outside
//   V(p)   = mean_r D_r(p), clamped to [m / clamp, m * clamp] with m = mean_p V(p)  (clamp = 1000)
//   MIND_r(p) = exp(-(D_r(p) - min_r D_r(p)) / V(p))      (= exp(-D_r/V) / max_r exp(-D_r/V))
// An image whose V is 0 everywhere (constant) gets V = 1: its descriptors are all 1, not NaN; its
// gradient is 0 (every S_r is at its minimum), and loss::degenerate_samples() counts it.
// Loss = mean over samples, channels, voxels (inside the mask) and neighbours of
//   |MIND_r(a) - MIND_r(b)|   (subgradient 0 where they are equal).
// D, V and the descriptors are invariant to a positive affine rescale a*I + b of the image.
//
// Gradient: exact for the function above, including the clamp bounds' dependence on m; min_r is
// differentiated at its first minimiser. The patch sum is a symmetric zero-padded correlation, so
// its adjoint is itself, and every step of the backward is a gather except the last, a difference.
// Computed in double on the host, one image per task (tasks in parallel when there are at least as
// many as threads, otherwise the voxel loops of each image in parallel). On a GPU context the data
// go through the host (no device kernel yet).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <mutex>
#include <vector>

#include "dicyc/loss/common.hpp"

namespace dicyc::loss {

class MindOptions {
 public:
  MindOptions() = default;
  MindOptions& sigma(double v) { sigma_ = v; return *this; }
  MindOptions& radius(int v) { radius_ = v; return *this; }
  MindOptions& variance_clamp(double v) { clamp_ = v; return *this; }
  double sigma() const { return sigma_; }
  int radius() const { return radius_; }
  double variance_clamp() const { return clamp_; }
  void validate() const {
    DICYC_CHECK(sigma_ > 0 && std::isfinite(sigma_), ConfigError, "mind: patch sigma must be positive, got " << sigma_);
    DICYC_CHECK(radius_ >= 0 && radius_ <= 16, ConfigError, "mind: patch radius must be in [0, 16], got " << radius_);
    DICYC_CHECK(clamp_ >= 1 && std::isfinite(clamp_), ConfigError,
                "mind: variance clamp factor must be >= 1, got " << clamp_);
  }

 private:
  double sigma_ = 0.5;
  int radius_ = 1;
  double clamp_ = 1000.0;
};

namespace detail {

/// Runs f(begin, end) over [0, n) either on the context's pool or serially.
template <class Ctx>
struct Par {
  Ctx* ctx;  // null: serial
  template <class F>
  void operator()(Index n, double cost, F&& f) const {
    if (ctx)
      ctx->parallel_for(n, cost, f);
    else if (n > 0)
      f(Index(0), n);
  }
};

/// MIND of one single-channel image (P voxels, x fastest) with what its backward needs.
template <int Dim>
struct MindImage {
  static constexpr int R = 2 * Dim;
  std::array<Index, Dim> ext{}, vs{};
  Index P = 0;
  std::vector<double> taps;  // normalised 1-D Gaussian, 2 * radius + 1
  std::array<std::vector<double>, Dim> diff;  // I(p) - I(p + e_k), 0 at the far edge
  std::array<std::vector<double>, R> D, desc;
  std::vector<double> V, work, gs;
  std::vector<signed char> state;  // -1 clamped low, 0 free, +1 clamped high
  std::vector<unsigned char> argmin;
  double clamp = 1000, mean_v = 0;
  bool constant = false;

  /// Sizes the buffers for an image of extents e; buffers keep their capacity between calls, so a
  /// cached MindImage costs no allocation (fresh multi-megabyte vectors spent 60 % of a 128x128
  /// MIND call in page faults and memset).
  void reset(const std::array<Index, Dim>& e, const MindOptions& o) {
    ext = e;
    clamp = o.variance_clamp();
    taps.clear();
    P = 1;
    for (int d = 0; d < Dim; ++d) {
      vs[d] = P;
      P *= ext[d];
    }
    const int rad = o.radius();
    double s = 0;
    for (int j = -rad; j <= rad; ++j) {
      taps.push_back(std::exp(-0.5 * j * j / (o.sigma() * o.sigma())));
      s += taps.back();
    }
    for (double& t : taps) t /= s;
    for (auto& v : diff) v.resize(P);
    for (int r = 0; r < R; ++r) {
      D[r].resize(P);
      desc[r].resize(P);
    }
    V.resize(P);
    work.resize(P);
    state.resize(P);
    argmin.resize(P);
  }

  /// f(p, od) over [0, P) in parallel ranges, with od holding the coordinates of p.
  template <class ParT, class F>
  void voxels(const ParT& par, double cost, F&& f) const {
    par(P, cost, [&](Index p0, Index p1) {
      Odometer<Dim> od(ext);
      od.seek(p0);
      for (Index p = p0; p < p1; ++p, od.next()) f(p, od);
    });
  }

  /// out = separable zero-padded Gaussian patch sum of in (in is overwritten as scratch).
  template <class ParT>
  void patch_sum(std::vector<double>& in, std::vector<double>& out, const ParT& par) {
    const int rad = static_cast<int>(taps.size() / 2);
    std::vector<double>* src = &in;
    std::vector<double>* dst = &out;
    for (int d = 0; d < Dim; ++d) {
      const double* sp = src->data();
      double* dp = dst->data();
      const Index st = vs[d], n = ext[d];
      voxels(par, 4.0 * taps.size(), [&](Index p, const Odometer<Dim>& od) {
        const Index x = od.c[d];
        double acc = 0;
        const int j0 = static_cast<int>(std::max<Index>(-rad, -x));
        const int j1 = static_cast<int>(std::min<Index>(rad, n - 1 - x));
        for (int j = j0; j <= j1; ++j) acc += taps[j + rad] * sp[p + j * st];
        dp[p] = acc;
      });
      std::swap(src, dst);
    }
    if (src != &out) out.swap(*src);
  }

  /// S_r for neighbour r into buf, from the stored differences (r = 2k: +e_k, r = 2k+1: -e_k).
  template <class ParT>
  void squared_shift(int r, std::vector<double>& buf, const ParT& par) const {
    const int d = r / 2;
    const double* df = diff[d].data();
    if (r % 2 == 0) {
      voxels(par, 2.0, [&](Index p, const Odometer<Dim>&) { buf[p] = df[p] * df[p]; });
    } else {
      voxels(par, 3.0, [&](Index p, const Odometer<Dim>& od) {
        const double t = od.c[d] >= 1 ? df[p - vs[d]] : 0.0;
        buf[p] = t * t;
      });
    }
  }

  template <class ParT>
  void forward(const std::vector<double>& I, const ParT& par) {
    voxels(par, 3.0 * Dim, [&](Index p, const Odometer<Dim>& od) {
      for (int d = 0; d < Dim; ++d) diff[d][p] = od.c[d] + 1 < ext[d] ? I[p] - I[p + vs[d]] : 0.0;
    });
    for (int r = 0; r < R; ++r) {
      squared_shift(r, work, par);
      patch_sum(work, D[r], par);
    }
    mean_v = 0;
    for (Index p = 0; p < P; ++p) {
      double v = 0;
      for (int r = 0; r < R; ++r) v += D[r][p];
      V[p] = v / R;
      mean_v += V[p];
    }
    mean_v /= double(P);
    constant = !(mean_v > 0);
    if (constant) degenerate_samples().fetch_add(1, std::memory_order_relaxed);
    const double lo = mean_v / clamp, hi = mean_v * clamp;
    par(P, 30.0 * R, [&](Index p0, Index p1) {
      for (Index p = p0; p < p1; ++p) {
        if (constant) {
          V[p] = 1.0;
          state[p] = 0;
        } else if (V[p] < lo) {
          V[p] = lo;
          state[p] = -1;
        } else if (V[p] > hi) {
          V[p] = hi;
          state[p] = 1;
        } else {
          state[p] = 0;
        }
        int am = 0;
        for (int r = 1; r < R; ++r)
          if (D[r][p] < D[am][p]) am = r;
        argmin[p] = static_cast<unsigned char>(am);
        const double dmin = D[am][p], iv = -1.0 / V[p];
        for (int r = 0; r < R; ++r) desc[r][p] = (D[r][p] - dmin) * iv;
      }
      // The exponentials, vectorised by Eigen in fixed blocks of 64 that are always full (the tail
      // padded), so every element takes the same packet path whatever the range and the alignment:
      // the result does not depend on the thread count.
      Eigen::Array<double, 64, 1> blk;
      for (int r = 0; r < R; ++r)
        for (Index q = p0; q < p1; q += 64) {
          const Index len = std::min<Index>(64, p1 - q);
          blk.setZero();
          std::copy(desc[r].data() + q, desc[r].data() + q + len, blk.data());
          blk = blk.exp();
          std::copy(blk.data(), blk.data() + len, desc[r].data() + q);
        }
    });
  }

  /// Given g_r = d loss / d desc_r (consumed as scratch), accumulates d loss / d I into gI.
  template <class ParT>
  void backward(std::array<std::vector<double>, R>& g, std::vector<double>& gI, const ParT& par) {
    // d/dD_r, d/dV per voxel; the clamp bounds' share goes through m = mean V.
    std::vector<double>& gv = work;
    par(P, 10.0 * R, [&](Index p0, Index p1) {
      for (Index p = p0; p < p1; ++p) {
        const int am = argmin[p];
        const double dmin = D[am][p], iv = 1.0 / V[p];
        double gmin = 0, gV = 0;
        for (int r = 0; r < R; ++r) {
          const double gd = g[r][p] * desc[r][p];
          gV += gd * (D[r][p] - dmin) * iv * iv;
          gmin += gd * iv;
          g[r][p] = -gd * iv;
        }
        g[am][p] += gmin;
        gv[p] = constant ? 0.0 : gV;
      }
    });
    if (!constant) {
      double gm = 0;
      for (Index p = 0; p < P; ++p) {
        if (state[p] < 0) gm += gv[p] / clamp;
        if (state[p] > 0) gm += gv[p] * clamp;
      }
      const double share = gm / double(P);
      par(P, 4.0 * R, [&](Index p0, Index p1) {
        for (Index p = p0; p < p1; ++p) {
          const double t = ((state[p] == 0 ? gv[p] : 0.0) + share) / R;
          for (int r = 0; r < R; ++r) g[r][p] += t;
        }
      });
    }
    // Through the patch sum (self-adjoint), then S_r = diff^2 with the -e_k images shifted.
    gs.resize(P);
    for (int r = 0; r < R; ++r) {
      patch_sum(g[r], gs, par);
      g[r].swap(gs);
    }
    voxels(par, 10.0 * Dim, [&](Index p, const Odometer<Dim>& od) {
      double acc = 0;
      for (int d = 0; d < Dim; ++d) {
        // gSd(q) = gS_{+d}(q) + gS_{-d}(q + e_d) for q with q + e_d inside; I(p) enters diff(p)
        // with + and diff(p - e_d) with -.
        const Index x = od.c[d], st = vs[d];
        if (x + 1 < ext[d]) acc += 2.0 * diff[d][p] * (g[2 * d][p] + g[2 * d + 1][p + st]);
        if (x >= 1) acc -= 2.0 * diff[d][p - st] * (g[2 * d][p - st] + g[2 * d + 1][p]);
      }
      gI[p] += acc;
    });
  }
};

template <int Dim, class S>
void gather_channel(const S* x, const SampleGeometry<Dim>& g, Index n, Index c, std::vector<double>& out) {
  const S* base = x + n * g.M + c;
  for (Index p = 0; p < g.P; ++p) out[p] = static_cast<double>(base[p * g.C]);
}

/// Runs f(task, par) for every task: the tasks in parallel when there are at least as many as
/// threads (each then serial inside), otherwise one after the other with parallel voxel loops.
template <class Ctx, class F>
void run_tasks(Ctx& ctx, Index tasks, double cost, F&& f) {
  if (tasks >= ctx.num_threads()) {
    ctx.parallel_for(tasks, cost, [&](Index t0, Index t1) {
      for (Index t = t0; t < t1; ++t) f(t, Par<Ctx>{nullptr});
    });
  } else {
    for (Index t = 0; t < tasks; ++t) f(t, Par<Ctx>{&ctx});
  }
}

/// Per-call buffers of mind_host, cached between calls (a small free list shared by the threads).
template <int Dim>
struct MindScratch {
  std::vector<std::unique_ptr<MindImage<Dim>>> im;
  std::vector<std::array<std::vector<double>, 2 * Dim>> gd;
  std::vector<std::vector<double>> buf;

  static std::unique_ptr<MindScratch> acquire() {
    std::lock_guard<std::mutex> lock(mutex());
    auto& fl = free_list();
    if (fl.empty()) return std::make_unique<MindScratch>();
    auto s = std::move(fl.back());
    fl.pop_back();
    return s;
  }
  static void release(std::unique_ptr<MindScratch> s) {
    std::lock_guard<std::mutex> lock(mutex());
    if (free_list().size() < 4) free_list().push_back(std::move(s));
  }
  void size(Index tasks) {
    while (static_cast<Index>(im.size()) < tasks) im.push_back(std::make_unique<MindImage<Dim>>());
    if (static_cast<Index>(gd.size()) < tasks) gd.resize(tasks);
    if (static_cast<Index>(buf.size()) < tasks) buf.resize(tasks);
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static std::vector<std::unique_ptr<MindScratch>>& free_list() {
    static std::vector<std::unique_ptr<MindScratch>> fl;
    return fl;
  }
};

/// MIND loss on the host over N x C single-channel images; returns the mean.
template <int Dim, class S, class Ctx>
double mind_host(Ctx& ctx, const S* a, const S* b, const S* m, const SampleGeometry<Dim>& g, const MindOptions& o,
                 S* ga, S* gb, double weight) {
  constexpr int R = 2 * Dim;
  const Index images = g.N * g.C;
  // The denominator: masked elements times neighbours.
  double count = double(g.N * g.M);
  if (m) {
    count = 0;
    for (Index i = 0; i < g.N * g.M; ++i) count += m[i] != S(0) ? 1.0 : 0.0;
    DICYC_CHECK(count > 0, ShapeError, "mind: the mask is empty");
  }
  count *= R;
  // Task t < images is image t of a, the others of b; a and b run side by side.
  auto scratch = MindScratch<Dim>::acquire();
  scratch->size(2 * images);
  auto& im = scratch->im;
  auto& gd = scratch->gd;
  run_tasks(ctx, 2 * images, double(g.P) * 200, [&](Index t, const auto& par) {
    const Index i = t % images, n = i / g.C, c = i % g.C;
    im[t]->reset(g.ext, o);
    auto& buf = scratch->buf[t];
    buf.resize(g.P);
    gather_channel<Dim>(t < images ? a : b, g, n, c, buf);
    im[t]->forward(buf, par);
  });
  const bool want = ga || gb;
  const double w = weight / count;
  double total = 0;
  for (Index i = 0; i < images; ++i) {
    const Index n = i / g.C, c = i % g.C;
    const S* mn = m ? m + n * g.M + c : nullptr;
    const auto& da = im[i]->desc;
    const auto& db = im[images + i]->desc;
    if (want)
      for (int r = 0; r < R; ++r) {
        gd[i][r].assign(g.P, 0.0);
        gd[images + i][r].assign(g.P, 0.0);
      }
    double s = 0;
    for (int r = 0; r < R; ++r)
      for (Index p = 0; p < g.P; ++p) {
        if (mn && mn[p * g.C] == S(0)) continue;
        const double dd = da[r][p] - db[r][p];
        s += std::abs(dd);
        if (want) {
          const double sg = dd > 0 ? w : dd < 0 ? -w : 0.0;
          gd[i][r][p] = sg;
          gd[images + i][r][p] = -sg;
        }
      }
    total += s;
  }
  if (want)
    run_tasks(ctx, 2 * images, double(g.P) * 200, [&](Index t, const auto& par) {
      S* gx = t < images ? ga : gb;
      if (!gx) return;
      const Index i = t % images, n = i / g.C, c = i % g.C;
      auto& gi = scratch->buf[t];
      gi.assign(g.P, 0.0);
      im[t]->backward(gd[t], gi, par);
      S* base = gx + n * g.M + c;
      for (Index p = 0; p < g.P; ++p) base[p * g.C] = S(double(base[p * g.C]) + gi[p]);
    });
  MindScratch<Dim>::release(std::move(scratch));
  return total / count;
}

}  // namespace detail

/// MIND loss mean |MIND(a) - MIND(b)|, with weight * dloss accumulated into grad.a / grad.b.
template <int Dim, class S, class Device>
acc_t<S> mind_loss(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& a, const ConstTensorMap<S, Dim + 2>& b,
                   const MindOptions& opts = {}, nondeduced_t<GradTo<S, Dim + 2>> grad = {},
                   nondeduced_t<MaskPtr<S, Dim + 2>> mask = nullptr) {
  static_assert(Dim == 2 || Dim == 3, "mind: 2-D or 3-D");
  constexpr int R = Dim + 2;
  opts.validate();
  detail::check_pair<S, R>("mind", a.dimensions(), b.dimensions());
  detail::check_grad_mask<S, R>("mind", a.dimensions(), grad, mask);
  const detail::SampleGeometry<Dim> geo(a.dimensions());
  detail::HostView<S, R, Device> hv(ctx, a.data(), b.data(), a.size(), mask, grad);
  double v = 0;
  detail::HostRunner<Device>::run(ctx, [&](auto& host) {
    v = detail::mind_host<Dim, S>(host, hv.a, hv.b, hv.m, geo, opts, hv.ga, hv.gb, grad.weight);
  });
  hv.finish();
  return static_cast<acc_t<S>>(v);
}

/// The MIND descriptors of x, as a (C * 2 Dim, spatial..., N) tensor on the host in double:
/// channel c * 2 Dim + r holds neighbour r of input channel c. For inspection and tests.
template <int Dim, class S, class Device>
std::vector<double> mind_descriptors(core::Context<Device>& ctx, const ConstTensorMap<S, Dim + 2>& x,
                                     const MindOptions& opts = {}) {
  static_assert(Dim == 2 || Dim == 3, "mind: 2-D or 3-D");
  constexpr int R = Dim + 2, K = 2 * Dim;
  opts.validate();
  DICYC_CHECK(num_elements(x.dimensions()) > 0, ShapeError, "mind: empty input of shape " << shape_str(x.dimensions()));
  const detail::SampleGeometry<Dim> geo(x.dimensions());
  detail::HostView<S, R, Device> hv(ctx, x.data(), nullptr, x.size(), nullptr, {});
  std::vector<double> out(static_cast<std::size_t>(x.size() * K));
  std::vector<double> buf(geo.P);
  detail::HostRunner<Device>::run(ctx, [&](auto& host) {
    using HostCtx = std::remove_reference_t<decltype(host)>;
    for (Index n = 0; n < geo.N; ++n)
      for (Index c = 0; c < geo.C; ++c) {
        detail::MindImage<Dim> im;
        im.reset(geo.ext, opts);
        detail::gather_channel<Dim>(hv.a, geo, n, c, buf);
        im.forward(buf, detail::Par<HostCtx>{&host});
        for (int r = 0; r < K; ++r)
          for (Index p = 0; p < geo.P; ++p) out[(n * geo.P + p) * geo.C * K + c * K + r] = im.desc[r][p];
      }
  });
  return out;
}

}  // namespace dicyc::loss
