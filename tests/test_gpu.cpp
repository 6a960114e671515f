// GPU parity: the GPU instantiations (tests/gpu/*.cu, compiled by nvcc) against the CPU ops and
// the naive references (compiled by g++). Without a CUDA device the program exits 77, which ctest
// reports as skipped.
#define BOOST_TEST_MODULE gpu
#define BOOST_TEST_NO_MAIN
#include "support/conv_cases.hpp"
#include "dicyc/loss.hpp"
#include "dicyc/nn/offset.hpp"
#include "dicyc/nn/stn.hpp"
#include "dicyc/tps.hpp"
#include "dicyc/model.hpp"
#include "gpu/gpu_api.hpp"
#include "gpu/model_spec.hpp"

#include <cstdio>

using namespace dt;

template <int Dim>
gpu_api::ConvDesc desc(const ConvCase<Dim>& c) {
  gpu_api::ConvDesc d;
  d.dim = Dim;
  d.transpose = c.transpose;
  d.in_ch = c.opts.in_channels();
  d.out_ch = c.opts.out_channels();
  for (int i = 0; i < Dim; ++i) {
    d.kernel[i] = c.opts.kernel_size()[i];
    d.stride[i] = c.opts.stride()[i];
    d.pad[i] = c.opts.padding()[i];
    d.out_pad[i] = c.opts.output_padding()[i];
  }
  for (int i = 0; i < Dim + 2; ++i) d.in_shape[i] = c.in[i];
  return d;
}

template <int Dim>
void check_conv_case(const ConvCase<Dim>& c) {
  BOOST_TEST_CONTEXT(c.label) {
    auto d = make_data(c, 41);
    const auto g = random_vec<double>(dicyc::num_elements(d.ys), 42);
    const auto ref = reference(c, d);
    std::vector<double> dx, dw, db;
    run_backward<Dim, double>(contexts().cpu, c, d.x, d.w, g, dx, dw, db);
    for (int h = 0; h < 2; ++h) {
      const auto r = h ? gpu_api::conv_half(desc(c), d.x, d.w, d.b, g) : gpu_api::conv_float(desc(c), d.x, d.w, d.b, g);
      const double tol = h ? 1e-2 : 1e-5;
      BOOST_TEST_CONTEXT((h ? "half" : "float")) {
        BOOST_CHECK_LT(max_abs_diff(r.y, ref), tol * std::max(1.0, max_abs(ref)));
        BOOST_CHECK_LT(max_abs_diff(r.dx, dx), tol * std::max(1.0, max_abs(dx)));
        BOOST_CHECK_LT(max_abs_diff(r.dw, dw), tol * std::max(1.0, max_abs(dw)));
        BOOST_CHECK_LT(max_abs_diff(r.db, db), tol * std::max(1.0, max_abs(db)));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(conv_gpu_equals_cpu) {
  using O2 = ConvOptions<2>;
  using O3 = ConvOptions<3>;
  check_conv_case<2>({O2(3, 4, 7), Shape<4>(3, 9, 11, 2), false, "k7"});
  check_conv_case<2>({O2(3, 5, 3).stride(2).padding(1), Shape<4>(3, 7, 9, 2), false, "k3 s2 p1"});
  check_conv_case<2>({O2(2, 4, 4).stride(2).padding(1), Shape<4>(2, 7, 9, 2), false, "k4 s2 p1"});
  check_conv_case<2>({O2(4, 3, 3).stride(2).padding(1).output_padding(1), Shape<4>(4, 3, 5, 2), true, "convT"});
  check_conv_case<3>({O3(3, 4, 3).stride(2).padding(1), Shape<5>(3, 5, 3, 4, 2), false, "3d k3 s2 p1"});
  check_conv_case<3>({O3(3, 2, 3).stride(2).padding(1).output_padding(1), Shape<5>(3, 3, 2, 3, 2), true, "3d convT"});
}

template <int Dim>
void check_misc(const Shape<Dim + 2>& xs) {
  using namespace dicyc;
  auto& c = contexts().cpu;
  const auto x = random_vec<double>(num_elements(xs), 51);
  const auto g = random_vec<double>(num_elements(xs), 52);
  long shape[5];
  for (int i = 0; i < Dim + 2; ++i) shape[i] = xs[i];
  // CPU double references through the CPU ops.
  auto X = core::Tensor<double, Dim + 2, Eigen::DefaultDevice>::from_host(c, xs, x);
  auto G = core::Tensor<double, Dim + 2, Eigen::DefaultDevice>::from_host(c, xs, g);
  core::Tensor<double, Dim + 2, Eigen::DefaultDevice> Y(c, xs), DX(c, xs);
  core::Tensor<double, 2, Eigen::DefaultDevice> M(c, Shape<2>(xs[0], xs[Dim + 1])), I(c, M.shape());
  auto ym = Y.map();
  auto dxm = DX.map();
  auto mm = M.map();
  auto im = I.map();
  ops::instance_norm_forward<Dim>(c, X.cmap(), ym, mm, im);
  DX.set_zero();
  ops::instance_norm_backward<Dim>(c, Y.cmap(), I.cmap(), G.cmap(), dxm);
  const auto in_y = Y.to_host(), in_dx = DX.to_host();
  ops::tanh_forward(c, X.cmap(), ym);
  const auto tanh_y = Y.to_host();
  for (int h = 0; h < 2; ++h) {
    BOOST_TEST_CONTEXT((h ? "half " : "float ") << shape_str(xs)) {
      const auto r = h ? gpu_api::misc_half(Dim, shape, x, g) : gpu_api::misc_float(Dim, shape, x, g);
      const double tol = h ? 2e-2 : 1e-5;
      BOOST_CHECK_LT(max_abs_diff(r.in_y, in_y), tol * 5);
      BOOST_CHECK_LT(max_abs_diff(r.in_dx, in_dx), tol * 5 * std::max(1.0, max_abs(in_dx)));
      BOOST_CHECK_LT(max_abs_diff(r.tanh_y, tanh_y), tol);
      BOOST_CHECK_CLOSE(r.sum_abs, ops::sum_abs(c, X.cmap()), h ? 0.5 : 1e-3);
      BOOST_CHECK_CLOSE(r.mean, ops::mean(c, X.cmap()), h ? 2.0 : 1e-2);
    }
  }
}

BOOST_AUTO_TEST_CASE(misc_gpu_equals_cpu) {
  check_misc<2>(Shape<4>(3, 7, 9, 2));
  check_misc<3>(Shape<5>(2, 5, 3, 4, 2));
}

template <int Dim>
void check_losses(const Shape<Dim + 2>& s, bool masked) {
  constexpr int R = Dim + 2;
  const Index n = dicyc::num_elements(s);
  auto a = random_vec<double>(n, 51), e = random_vec<double>(n, 52);
  std::vector<double> b(n), m;
  for (Index i = 0; i < n; ++i) b[i] = a[i] * a[i] - 0.5 * a[i] + 0.3 * e[i];
  if (masked) {
    m.assign(n, 1.0);
    for (Index i = 0; i < n; i += 3) m[i] = 0.0;
  }
  // The CPU reference in double.
  auto& cpu = contexts().cpu;
  std::vector<double> ga(n, 0.0), gb(n, 0.0);
  dicyc::ConstTensorMap<double, R> am(a.data(), s), bm(b.data(), s), mm(m.data(), s);
  dicyc::TensorMap<double, R> gam(ga.data(), s), gbm(gb.data(), s);
  const dicyc::ConstTensorMap<double, R>* mp = masked ? &mm : nullptr;
  double v[6];
  v[0] = dicyc::loss::l1<double, R>(cpu, am, bm, {&gam, &gbm, 1.0}, mp);
  v[1] = dicyc::loss::lsgan<double, R>(cpu, am, 1.0, {&gam, nullptr, 2.0}, mp);
  v[2] = dicyc::loss::lsgan_discriminator<double, R>(cpu, am, bm, {&gam, &gbm, 3.0});
  v[3] = dicyc::loss::nmi_loss<double, R>(cpu, am, bm, {}, {&gam, &gbm, 4.0}, mp);
  v[4] = dicyc::loss::gcc_loss<Dim, double>(cpu, am, bm, {&gam, &gbm, 5.0}, mp);
  v[5] = dicyc::loss::mind_loss<Dim, double>(cpu, am, bm, {}, {&gam, &gbm, 6.0}, mp);
  std::vector<long> shape(s.begin(), s.end());
  for (int h = 0; h < 2; ++h) {
    const auto r = h ? gpu_api::losses_half(Dim, shape.data(), a, b, m) : gpu_api::losses_float(Dim, shape.data(), a, b, m);
    const double tol = h ? 3e-2 : 1e-4;
    BOOST_TEST_CONTEXT((h ? "half" : "float") << (masked ? " masked" : "")) {
      for (int k = 0; k < 6; ++k) BOOST_CHECK_SMALL(r.values[k] - v[k], tol * std::max(1.0, std::abs(v[k])));
      auto rel = [](const std::vector<double>& x, const std::vector<double>& y) {
        double num = 0, den = 0;
        for (std::size_t i = 0; i < x.size(); ++i) {
          num += (x[i] - y[i]) * (x[i] - y[i]);
          den += y[i] * y[i];
        }
        return std::sqrt(num / den);
      };
      BOOST_CHECK_LT(rel(r.ga, ga), tol);
      BOOST_CHECK_LT(rel(r.gb, gb), tol);
    }
  }
}

BOOST_AUTO_TEST_CASE(losses_gpu_equal_cpu) {
  check_losses<2>(Shape<4>(1, 17, 13, 2), false);
  check_losses<2>(Shape<4>(1, 17, 13, 2), true);
  check_losses<3>(Shape<5>(1, 7, 6, 5, 2), true);
}

template <int Dim>
void check_sampler(const Shape<Dim + 2>& xs, const Shape<Dim + 2>& gs) {
  constexpr int R = Dim + 2;
  auto& cpu = contexts().cpu;
  Shape<R> ys = gs;
  ys[0] = xs[0];
  const Index nx = dicyc::num_elements(xs), ng = dicyc::num_elements(gs), ny = dicyc::num_elements(ys);
  const auto x = random_vec<double>(nx, 61), g = random_vec<double>(ng, 62, -1.1, 1.1), dy = random_vec<double>(ny, 63);
  const long control = 3;
  std::array<Index, Dim> ctl, out;
  for (int d = 0; d < Dim; ++d) {
    ctl[d] = control;
    out[d] = gs[d + 1];
  }
  dicyc::tps::TpsGrid<Dim, double, Eigen::DefaultDevice> tg(cpu, ctl, out);
  const Index N = gs[R - 1];
  const auto disp = random_vec<double>(dicyc::num_elements(tg.disp_shape(N)), 64, -0.1, 0.1);
  std::vector<long> xl(xs.begin(), xs.end()), gl(gs.begin(), gs.end());
  for (bool border : {true, false}) {
    const auto pm = border ? dicyc::tps::PaddingMode::Border : dicyc::tps::PaddingMode::Zeros;
    std::vector<double> y(ny), dx(nx, 0.0), dg(ng, 0.0), tgrid(ng), tdd(disp.size(), 0.0);
    dicyc::ConstTensorMap<double, R> xm(x.data(), xs), gm(g.data(), gs), dym(dy.data(), ys);
    dicyc::TensorMap<double, R> ym(y.data(), ys), dxm(dx.data(), xs), dgm(dg.data(), gs), tgm(tgrid.data(), gs);
    dicyc::tps::grid_sample_forward<Dim, double>(cpu, xm, gm, ym, pm);
    dicyc::tps::grid_sample_backward<Dim, double>(cpu, xm, gm, dym, &dxm, &dgm, pm);
    dicyc::ConstTensorMap<double, 3> dm(disp.data(), tg.disp_shape(N));
    dicyc::TensorMap<double, 3> ddm(tdd.data(), tg.disp_shape(N));
    tg.forward(cpu, dm, tgm);
    tg.backward(cpu, gm, ddm);
    for (int h = 0; h < 2; ++h) {
      const auto r = h ? gpu_api::sample_half(Dim, xl.data(), gl.data(), border, control, x, g, dy, disp)
                       : gpu_api::sample_float(Dim, xl.data(), gl.data(), border, control, x, g, dy, disp);
      const double tol = h ? 2e-2 : 1e-5;
      BOOST_TEST_CONTEXT((h ? "half" : "float") << (border ? " border" : " zeros")) {
        BOOST_CHECK_LT(max_abs_diff(r.y, y), tol * std::max(1.0, max_abs(y)));
        BOOST_CHECK_LT(max_abs_diff(r.dx, dx), tol * std::max(1.0, max_abs(dx)));
        BOOST_CHECK_LT(max_abs_diff(r.dgrid, dg), 5 * tol * std::max(1.0, max_abs(dg)));
        BOOST_CHECK_LT(max_abs_diff(r.tps_grid, tgrid), tol * std::max(1.0, max_abs(tgrid)));
        BOOST_CHECK_LT(max_abs_diff(r.tps_ddisp, tdd), tol * std::max(1.0, max_abs(tdd)));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(sampler_and_tps_gpu_equal_cpu) {
  check_sampler<2>(Shape<4>(3, 9, 7, 2), Shape<4>(2, 6, 5, 2));
  check_sampler<3>(Shape<5>(2, 5, 4, 6, 2), Shape<5>(3, 4, 3, 5, 2));
}

BOOST_AUTO_TEST_CASE(deformation_modules_gpu_equal_cpu) {
  using Dev = Eigen::DefaultDevice;
  auto& cpu = contexts().cpu;
  const Shape<4> xs(3, 9, 8, 2);
  const Index n = dicyc::num_elements(xs);
  const auto x = random_vec<double>(n, 71), t = random_vec<double>(n, 72), g = random_vec<double>(n, 73);
  dicyc::core::Rng rng(1);
  dicyc::nn::ParameterGroup<double, Dev> go("off"), gs("stn");
  dicyc::nn::OffsetBranch<2, double, Dev> ob(go, "off", 3, 6);
  dicyc::nn::Stn<2, double, Dev> stn(gs, "stn", 3, 4, 8, 6);
  go.allocate(cpu, rng);
  gs.allocate(cpu, rng);
  const auto op = random_vec<double>(go.size(), 74, -0.2, 0.2), sp = random_vec<double>(gs.size(), 75, -0.2, 0.2);
  std::copy(op.begin(), op.end(), go.values());
  std::copy(sp.begin(), sp.end(), gs.values());
  std::vector<double> y(n), dx(n, 0.0), dt_(n, 0.0), sy(n), sdx(n, 0.0);
  dicyc::ConstTensorMap<double, 4> xm(x.data(), xs), tm(t.data(), xs), gm(g.data(), xs);
  dicyc::TensorMap<double, 4> ym(y.data(), xs), dxm(dx.data(), xs), sym(sy.data(), xs), sdxm(sdx.data(), xs),
      dtm(dt_.data(), xs);
  typename dicyc::nn::OffsetBranch<2, double, Dev>::Cache oc;
  ob.forward(cpu, xm, oc, ym);
  ob.backward(cpu, xm, oc, gm, &dxm);
  typename dicyc::nn::Stn<2, double, Dev>::Cache sc;
  stn.forward(cpu, xm, tm, sc, sym);
  stn.backward(cpu, xm, tm, sc, gm, &sdxm, &dtm);
  std::vector<long> shape(xs.begin(), xs.end());
  const auto r = gpu_api::modules_float(shape.data(), x, t, g, op, sp);
  const double tol = 1e-4;
  BOOST_CHECK_LT(max_abs_diff(r.off_y, y), tol);
  BOOST_CHECK_LT(max_abs_diff(r.off_dx, dx), tol * std::max(1.0, max_abs(dx)));
  BOOST_CHECK_LT(max_abs_diff(r.off_grads, std::vector<double>(go.grads(), go.grads() + go.size())), tol * 10);
  BOOST_CHECK_LT(max_abs_diff(r.stn_y, sy), tol);
  BOOST_CHECK_LT(max_abs_diff(r.stn_dsrc, sdx), tol * std::max(1.0, max_abs(sdx)));
  BOOST_CHECK_LT(max_abs_diff(r.stn_dtgt, dt_), tol * std::max(1.0, max_abs(dt_)));
  BOOST_CHECK_LT(max_abs_diff(r.stn_grads, std::vector<double>(gs.grads(), gs.grads() + gs.size())), tol * 10);
}

// A few training iterations of a CycleGAN and a DiCyc on the GPU against the same on the CPU.
#ifdef DICYC_TEST_NCCL
BOOST_AUTO_TEST_CASE(nccl_one_gpu_one_rank) {
  const std::string err = gpu_api::nccl_one_rank();
  BOOST_CHECK_MESSAGE(err.empty(), "NCCL: " << err);
}
#endif

BOOST_AUTO_TEST_CASE(models_gpu_equal_cpu) {
  auto& cpu = contexts().cpu;
  const auto x = random_vec<double>(256, 81), y = random_vec<double>(256, 82, -0.5, 0.5);
  for (const char* name : {"cyclegan", "nmi-dicyc"}) {
    BOOST_TEST_CONTEXT(name) {
      auto m = dicyc::model::make_model<2, float, Eigen::DefaultDevice>(cpu, gpu_api::small_model_options(name));
      const std::vector<float> xf(x.begin(), x.end()), yf(y.begin(), y.end());
      dicyc::ConstTensorMap<float, 4> xm(xf.data(), 1, 16, 16, 1), ym(yf.data(), 1, 16, 16, 1);
      const int iters = 2;
      std::vector<double> g_total;
      for (int i = 0; i < iters; ++i) g_total.push_back(m->train_step(xm, ym).g_total);
      const auto r = gpu_api::model_float(name, iters, x, y);
      for (int i = 0; i < iters; ++i) BOOST_CHECK_CLOSE(r.g_total[i], g_total[i], 0.1);  // percent
      auto& g = m->group("g_ab");
      const std::vector<double> ours(g.values(), g.values() + g.size());
      // Adam moves every weight by about lr per step; weights whose gradient is rounding noise may
      // move the other way on the other device, so the bound is 2 lr per step; the mean is tight.
      BOOST_CHECK_LT(max_abs_diff(r.g_ab, ours), 2 * 2e-4 * iters + 1e-6);
      double mean = 0;
      for (std::size_t k = 0; k < ours.size(); ++k) mean += std::abs(r.g_ab[k] - ours[k]);
      BOOST_CHECK_LT(mean / double(ours.size()), 2e-5);
    }
  }
}

int main(int argc, char** argv) {
  if (gpu_api::device_count() == 0) {
    std::printf("test_gpu: no CUDA device present, skipped\n");
    return 77;
  }
  return boost::unit_test::unit_test_main([] { return true; }, argc, argv);
}
