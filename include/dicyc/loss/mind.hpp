// dicyc/loss/mind.hpp -- MIND descriptors (Heinrich et al. 2012) and the MIND loss, value and
// exact gradient, 2-D and 3-D, batches, optional mask.
//
// Per sample n, channel c, and each of the 2*Dim neighbours r = +-e_k (order +x, -x, +y, -y, +z, -z):
//   S_r(p) = (I(p) - I(p + r))^2 where p + r is inside the image, 0 elsewhere
//   D_r(p) = sum_q G(q) S_r(p + q)         Gaussian patch, separable, weights normalised to 1 per
//                                          axis, radius `radius`, sigma `sigma`; zero outside
//   V(p)   = mean_r D_r(p), clamped to [m / clamp, m * clamp] with m = mean_p V(p)  (clamp = 1000)
//   MIND_r(p) = exp(-(D_r(p) - min_r D_r(p)) / V(p))      (= exp(-D_r/V) / max_r exp(-D_r/V))
// An image whose V is 0 everywhere (constant) gets V = 1: its descriptors are all 1, not NaN.
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
  std::vector<double> V, work;
  std::vector<signed char> state;  // -1 clamped low, 0 free, +1 clamped high
  std::vector<unsigned char> argmin;
  double clamp = 1000, mean_v = 0;
  bool constant = false;

  MindImage(const std::array<Index, Dim>& e, const MindOptions& o) : ext(e), clamp(o.variance_clamp()) {
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
  Index pos(Index p, int d) const { return (p / vs[d]) % ext[d]; }

  /// out = separable zero-padded Gaussian patch sum of in (in is overwritten as scratch).
  template <class ParT>
  void patch_sum(std::vector<double>& in, std::vector<double>& out, const ParT& par) {
    const int rad = static_cast<int>(taps.size() / 2);
    std::vector<double>* src = &in;
    std::vector<double>* dst = &out;
    for (int d = 0; d < Dim; ++d) {
      par(P, 4.0 * taps.size(), [&](Index p0, Index p1) {
        for (Index p = p0; p < p1; ++p) {
          const Index x = pos(p, d);
          double acc = 0;
          const int j0 = static_cast<int>(std::max<Index>(-rad, -x));
          const int j1 = static_cast<int>(std::min<Index>(rad, ext[d] - 1 - x));
          for (int j = j0; j <= j1; ++j) acc += taps[j + rad] * (*src)[p + j * vs[d]];
          (*dst)[p] = acc;
        }
      });
      std::swap(src, dst);
    }
    if (src != &out) out.swap(*src);
  }

  /// S_r for neighbour r into buf, from the stored differences (r = 2k: +e_k, r = 2k+1: -e_k).
  template <class ParT>
  void squared_shift(int r, std::vector<double>& buf, const ParT& par) const {
    const int d = r / 2;
    const bool minus = r % 2;
    par(P, 3.0, [&](Index p0, Index p1) {
      for (Index p = p0; p < p1; ++p) {
        if (!minus) {
          buf[p] = diff[d][p] * diff[d][p];
        } else {
          const double t = pos(p, d) >= 1 ? diff[d][p - vs[d]] : 0.0;
          buf[p] = t * t;
        }
      }
    });
  }

  template <class ParT>
  void forward(const std::vector<double>& I, const ParT& par) {
    par(P, 3.0 * Dim, [&](Index p0, Index p1) {
      for (Index p = p0; p < p1; ++p)
        for (int d = 0; d < Dim; ++d) diff[d][p] = pos(p, d) + 1 < ext[d] ? I[p] - I[p + vs[d]] : 0.0;
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
    const double lo = mean_v / clamp, hi = mean_v * clamp;
    par(P, 20.0 * R, [&](Index p0, Index p1) {
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
        const double dmin = D[am][p];
        for (int r = 0; r < R; ++r) desc[r][p] = std::exp(-(D[r][p] - dmin) / V[p]);
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
      for (Index p = 0; p < P; ++p) gv[p] = (state[p] == 0 ? gv[p] : 0.0) + share;
      for (int r = 0; r < R; ++r)
        par(P, 2.0, [&](Index p0, Index p1) {
          for (Index p = p0; p < p1; ++p) g[r][p] += gv[p] / R;
        });
    }
    // Through the patch sum (self-adjoint), then S_r = diff^2 with the -e_k images shifted.
    std::vector<double> gs(P);
    for (int r = 0; r < R; ++r) {
      patch_sum(g[r], gs, par);
      g[r].swap(gs);
    }
    for (int d = 0; d < Dim; ++d) {
      // gSd(p) = gS_{+d}(p) + gS_{-d}(p + e_d), for p with p + e_d inside.
      par(P, 8.0, [&](Index p0, Index p1) {
        for (Index p = p0; p < p1; ++p) {
          const Index x = pos(p, d);
          double acc = 0;
          if (x + 1 < ext[d]) {
            const double gsd = g[2 * d][p] + g[2 * d + 1][p + vs[d]];
            acc += 2.0 * diff[d][p] * gsd;
          }
          if (x >= 1) {
            const Index q = p - vs[d];
            const double gsd = g[2 * d][q] + g[2 * d + 1][p];
            acc -= 2.0 * diff[d][q] * gsd;
          }
          gI[p] += acc;
        }
      });
    }
  }
};

template <int Dim, class S>
void gather_channel(const S* x, const SampleGeometry<Dim>& g, Index n, Index c, std::vector<double>& out) {
  const S* base = x + n * g.M + c;
  for (Index p = 0; p < g.P; ++p) out[p] = static_cast<double>(base[p * g.C]);
}

/// MIND loss on the host over N x C single-channel images; returns the mean.
template <int Dim, class S, class Ctx>
double mind_host(Ctx& ctx, const S* a, const S* b, const S* m, const SampleGeometry<Dim>& g, const MindOptions& o,
                 S* ga, S* gb, double weight) {
  constexpr int R = 2 * Dim;
  const Index tasks = g.N * g.C;
  // The denominator: masked elements times neighbours.
  double count = double(g.N * g.M);
  if (m) {
    count = 0;
    for (Index i = 0; i < g.N * g.M; ++i) count += m[i] != S(0) ? 1.0 : 0.0;
    DICYC_CHECK(count > 0, ShapeError, "mind: the mask is empty");
  }
  count *= R;
  std::vector<double> sums(static_cast<std::size_t>(tasks), 0.0);
  const bool outer = tasks >= ctx.num_threads();
  auto one = [&](Index t, const auto& par) {
    const Index n = t / g.C, c = t % g.C;
    MindImage<Dim> ia(g.ext, o), ib(g.ext, o);
    std::vector<double> buf(g.P);
    gather_channel<Dim>(a, g, n, c, buf);
    ia.forward(buf, par);
    gather_channel<Dim>(b, g, n, c, buf);
    ib.forward(buf, par);
    const S* mn = m ? m + n * g.M + c : nullptr;
    double s = 0;
    for (int r = 0; r < R; ++r)
      for (Index p = 0; p < g.P; ++p)
        if (!mn || mn[p * g.C] != S(0)) s += std::abs(ia.desc[r][p] - ib.desc[r][p]);
    sums[t] = s;
    if (!ga && !gb) return;
    const double w = weight / count;
    std::array<std::vector<double>, R> gda, gdb;
    for (int r = 0; r < R; ++r) {
      gda[r].assign(g.P, 0.0);
      gdb[r].assign(g.P, 0.0);
      for (Index p = 0; p < g.P; ++p) {
        if (mn && mn[p * g.C] == S(0)) continue;
        const double dd = ia.desc[r][p] - ib.desc[r][p];
        const double sg = dd > 0 ? w : dd < 0 ? -w : 0.0;
        gda[r][p] = sg;
        gdb[r][p] = -sg;
      }
    }
    auto fold = [&](MindImage<Dim>& im, std::array<std::vector<double>, R>& gd, S* gx) {
      if (!gx) return;
      std::vector<double> gi(g.P, 0.0);
      im.backward(gd, gi, par);
      S* base = gx + n * g.M + c;
      for (Index p = 0; p < g.P; ++p) base[p * g.C] = S(double(base[p * g.C]) + gi[p]);
    };
    fold(ia, gda, ga);
    fold(ib, gdb, gb);
  };
  if (outer) {
    ctx.parallel_for(tasks, double(g.P) * 400, [&](Index t0, Index t1) {
      for (Index t = t0; t < t1; ++t) one(t, Par<Ctx>{nullptr});
    });
  } else {
    for (Index t = 0; t < tasks; ++t) one(t, Par<Ctx>{&ctx});
  }
  double s = 0;
  for (double v : sums) s += v;
  return s / count;
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
        detail::MindImage<Dim> im(geo.ext, opts);
        detail::gather_channel<Dim>(hv.a, geo, n, c, buf);
        im.forward(buf, detail::Par<HostCtx>{&host});
        for (int r = 0; r < K; ++r)
          for (Index p = 0; p < geo.P; ++p) out[(n * geo.P + p) * geo.C * K + c * K + r] = im.desc[r][p];
      }
  });
  return out;
}

}  // namespace dicyc::loss
