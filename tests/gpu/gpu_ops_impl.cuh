// The GPU instantiations behind gpu_api.hpp, written once and compiled per scalar
// (gpu_ops_float.cu, gpu_ops_half.cu). Everything here runs on Eigen::GpuDevice: im2col/col2im and
// padding as generate() expressions, the GEMMs through cuBLAS, the rest as tensor expressions.
#pragma once

#include "dicyc/loss.hpp"
#include "dicyc/nn/offset.hpp"
#include "dicyc/nn/stn.hpp"
#include "dicyc/tps.hpp"
#include "dicyc/ops.hpp"
#include "gpu_api.hpp"

namespace gpu_impl {

using namespace dicyc;
using Gpu = Eigen::GpuDevice;

template <class S>
std::vector<S> to_s(const std::vector<double>& v) {
  std::vector<S> o(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) o[i] = S(static_cast<float>(v[i]));
  return o;
}
template <class S>
std::vector<double> to_d(const std::vector<S>& v) {
  std::vector<double> o(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) o[i] = static_cast<double>(static_cast<float>(v[i]));
  return o;
}

inline core::Context<Gpu>& ctx() {
  static core::Context<Gpu> c;
  return c;
}

template <int Dim, class S>
gpu_api::ConvResult conv(const gpu_api::ConvDesc& d, const std::vector<double>& x, const std::vector<double>& w,
                         const std::vector<double>& b, const std::vector<double>& dy) {
  constexpr int R = Dim + 2;
  std::array<Index, Dim> k, s, p, op;
  for (int i = 0; i < Dim; ++i) {
    k[i] = d.kernel[i];
    s[i] = d.stride[i];
    p[i] = d.pad[i];
    op[i] = d.out_pad[i];
  }
  const auto o = ops::ConvOptions<Dim>(d.in_ch, d.out_ch, k).stride(s).padding(p).output_padding(op);
  Shape<R> xs;
  for (int i = 0; i < R; ++i) xs[i] = d.in_shape[i];
  auto& c = ctx();
  const auto ws = d.transpose ? ops::conv_transpose_weight_shape(o) : ops::conv_weight_shape(o);
  const auto ys = d.transpose ? ops::conv_transpose_output_shape(o, xs) : ops::conv_output_shape(o, xs);
  auto X = core::Tensor<S, R, Gpu>::from_host(c, xs, to_s<S>(x));
  auto W = core::Tensor<S, R, Gpu>::from_host(c, ws, to_s<S>(w));
  auto B = core::Tensor<S, 1, Gpu>::from_host(c, Shape<1>(d.out_ch), to_s<S>(b));
  auto DY = core::Tensor<S, R, Gpu>::from_host(c, ys, to_s<S>(dy));
  core::Tensor<S, R, Gpu> Y(c, ys);
  auto DX = core::Tensor<S, R, Gpu>::zeros(c, xs);
  auto DW = core::Tensor<S, R, Gpu>::zeros(c, ws);
  auto DB = core::Tensor<S, 1, Gpu>::zeros(c, Shape<1>(d.out_ch));
  auto ym = Y.map();
  auto bm = B.cmap();
  auto dxm = DX.map();
  auto dwm = DW.map();
  auto dbm = DB.map();
  if (d.transpose) {
    ops::conv_transpose_forward<Dim>(c, o, X.cmap(), W.cmap(), &bm, ym);
    ops::conv_transpose_backward<Dim>(c, o, X.cmap(), W.cmap(), DY.cmap(), &dxm, &dwm, &dbm);
  } else {
    ops::conv_forward<Dim>(c, o, X.cmap(), W.cmap(), &bm, ym);
    ops::conv_backward<Dim>(c, o, X.cmap(), W.cmap(), DY.cmap(), &dxm, &dwm, &dbm);
  }
  return {to_d(Y.to_host()), to_d(DX.to_host()), to_d(DW.to_host()), to_d(DB.to_host())};
}

template <int Dim, class S>
gpu_api::MiscResult misc(const long* shape, const std::vector<double>& x, const std::vector<double>& g) {
  constexpr int R = Dim + 2;
  using A = acc_t<S>;
  Shape<R> xs;
  for (int i = 0; i < R; ++i) xs[i] = shape[i];
  auto& c = ctx();
  gpu_api::MiscResult r;
  auto X = core::Tensor<S, R, Gpu>::from_host(c, xs, to_s<S>(x));
  auto G = core::Tensor<S, R, Gpu>::from_host(c, xs, to_s<S>(g));
  const auto pad = ops::uniform_pad<Dim>(1);
  const auto ps = ops::reflection_pad_output_shape<Dim>(xs, pad);
  core::Tensor<S, R, Gpu> P(c, ps);
  auto pm = P.map();
  ops::reflection_pad_forward<Dim>(c, pad, X.cmap(), pm);
  r.pad_y = to_d(P.to_host());
  auto DX = core::Tensor<S, R, Gpu>::zeros(c, xs);
  auto dxm = DX.map();
  ops::reflection_pad_backward<Dim>(c, pad, P.cmap(), dxm);  // fold of the padded tensor itself
  r.pad_dx = to_d(DX.to_host());

  core::Tensor<S, R, Gpu> Y(c, xs);
  core::Tensor<A, 2, Gpu> M(c, Shape<2>(xs[0], xs[R - 1])), I(c, Shape<2>(xs[0], xs[R - 1]));
  auto ym = Y.map();
  auto mm = M.map();
  auto im = I.map();
  ops::instance_norm_forward<Dim>(c, X.cmap(), ym, mm, im);
  r.in_y = to_d(Y.to_host());
  DX.set_zero();
  ops::instance_norm_backward<Dim>(c, Y.cmap(), I.cmap(), G.cmap(), dxm);
  r.in_dx = to_d(DX.to_host());

  core::Tensor<S, R, Gpu> T(c, xs);
  auto tm = T.map();
  ops::relu_forward(c, X.cmap(), tm);
  DX.set_zero();
  ops::relu_backward(c, T.cmap(), G.cmap(), dxm);
  r.relu_dx = to_d(DX.to_host());
  ops::leaky_relu_forward(c, X.cmap(), tm, 0.2);
  r.lrelu_y = to_d(T.to_host());
  DX.set_zero();
  ops::leaky_relu_backward(c, T.cmap(), G.cmap(), dxm, 0.2);
  ops::tanh_forward(c, X.cmap(), tm);
  r.tanh_y = to_d(T.to_host());
  DX.set_zero();
  ops::tanh_backward(c, T.cmap(), G.cmap(), dxm);
  r.tanh_dx = to_d(DX.to_host());
  r.sum_abs = double(ops::sum_abs(c, X.cmap()));
  r.sum_sq = double(ops::sum_squares(c, X.cmap()));
  r.mean = double(ops::mean(c, X.cmap()));
  DX.set_zero();
  ops::sum_abs_backward(c, X.cmap(), A(1), dxm);
  ops::sum_squares_backward(c, X.cmap(), A(1), dxm);
  ops::mean_backward(c, X.cmap(), A(1), dxm);
  return r;
}

template <int Dim, class S>
gpu_api::LossResult losses(const long* shape, const std::vector<double>& a, const std::vector<double>& b,
                           const std::vector<double>& mask) {
  constexpr int R = Dim + 2;
  Shape<R> xs;
  for (int i = 0; i < R; ++i) xs[i] = shape[i];
  auto& c = ctx();
  auto A = core::Tensor<S, R, Gpu>::from_host(c, xs, to_s<S>(a));
  auto B = core::Tensor<S, R, Gpu>::from_host(c, xs, to_s<S>(b));
  core::Tensor<S, R, Gpu> M;
  if (!mask.empty()) M = core::Tensor<S, R, Gpu>::from_host(c, xs, to_s<S>(mask));
  auto GA = core::Tensor<S, R, Gpu>::zeros(c, xs);
  auto GB = core::Tensor<S, R, Gpu>::zeros(c, xs);
  auto ga = GA.map();
  auto gb = GB.map();
  auto mm = M.cmap();
  const ConstTensorMap<S, R>* mp = mask.empty() ? nullptr : &mm;
  gpu_api::LossResult r;
  r.values[0] = double(loss::l1<S, R>(c, A.cmap(), B.cmap(), {&ga, &gb, 1.0}, mp));
  r.values[1] = double(loss::lsgan<S, R>(c, A.cmap(), 1.0, {&ga, nullptr, 2.0}, mp));
  r.values[2] = double(loss::lsgan_discriminator<S, R>(c, A.cmap(), B.cmap(), {&ga, &gb, 3.0}));
  r.values[3] = double(loss::nmi_loss<S, R>(c, A.cmap(), B.cmap(), {}, {&ga, &gb, 4.0}, mp));
  r.values[4] = double(loss::gcc_loss<Dim, S>(c, A.cmap(), B.cmap(), {&ga, &gb, 5.0}, mp));
  r.values[5] = double(loss::mind_loss<Dim, S>(c, A.cmap(), B.cmap(), {}, {&ga, &gb, 6.0}, mp));
  r.ga = to_d(GA.to_host());
  r.gb = to_d(GB.to_host());
  return r;
}

template <int Dim, class S>
gpu_api::SampleResult sample(const long* x_shape, const long* grid_shape, bool border, long control,
                             const std::vector<double>& x, const std::vector<double>& grid,
                             const std::vector<double>& dy, const std::vector<double>& disp) {
  constexpr int R = Dim + 2;
  Shape<R> xs, gs, ys;
  for (int i = 0; i < R; ++i) {
    xs[i] = x_shape[i];
    gs[i] = grid_shape[i];
  }
  ys = gs;
  ys[0] = xs[0];
  auto& c = ctx();
  const auto pm = border ? tps::PaddingMode::Border : tps::PaddingMode::Zeros;
  auto X = core::Tensor<S, R, Gpu>::from_host(c, xs, to_s<S>(x));
  auto G = core::Tensor<S, R, Gpu>::from_host(c, gs, to_s<S>(grid));
  auto DY = core::Tensor<S, R, Gpu>::from_host(c, ys, to_s<S>(dy));
  core::Tensor<S, R, Gpu> Y(c, ys);
  auto DX = core::Tensor<S, R, Gpu>::zeros(c, xs);
  auto DG = core::Tensor<S, R, Gpu>::zeros(c, gs);
  auto ym = Y.map();
  auto dxm = DX.map();
  auto dgm = DG.map();
  tps::grid_sample_forward<Dim, S>(c, X.cmap(), G.cmap(), ym, pm);
  tps::grid_sample_backward<Dim, S>(c, X.cmap(), G.cmap(), DY.cmap(), &dxm, &dgm, pm);
  gpu_api::SampleResult r;
  r.y = to_d(Y.to_host());
  r.dx = to_d(DX.to_host());
  r.dgrid = to_d(DG.to_host());
  std::array<Index, Dim> ctl, out;
  for (int d = 0; d < Dim; ++d) {
    ctl[d] = control;
    out[d] = gs[d + 1];
  }
  tps::TpsGrid<Dim, S, Gpu> tg(c, ctl, out);
  const Index N = gs[R - 1];
  auto D = core::Tensor<S, 3, Gpu>::from_host(c, tg.disp_shape(N), to_s<S>(disp));
  core::Tensor<S, R, Gpu> TG(c, tg.grid_shape(N));
  auto DD = core::Tensor<S, 3, Gpu>::zeros(c, tg.disp_shape(N));
  auto tgm = TG.map();
  auto ddm = DD.map();
  tg.forward(c, D.cmap(), tgm);
  tg.backward(c, G.cmap(), ddm);
  r.tps_grid = to_d(TG.to_host());
  r.tps_ddisp = to_d(DD.to_host());
  return r;
}

template <class S>
gpu_api::ModuleResult modules(const long* shape, const std::vector<double>& x, const std::vector<double>& t,
                              const std::vector<double>& g, const std::vector<double>& off_params,
                              const std::vector<double>& stn_params) {
  Shape<4> xs;
  for (int i = 0; i < 4; ++i) xs[i] = shape[i];
  auto& c = ctx();
  core::Rng rng(1);
  nn::ParameterGroup<S, Gpu> go("off"), gs("stn");
  nn::OffsetBranch<2, S, Gpu> ob(go, "off", xs[0], 6);
  nn::Stn<2, S, Gpu> stn(gs, "stn", xs[0], 4, 8, 6);
  go.allocate(c, rng);
  gs.allocate(c, rng);
  auto load = [&](nn::ParameterGroup<S, Gpu>& grp, const std::vector<double>& v) {
    const auto h = to_s<S>(v);
    c.device().memcpyHostToDevice(grp.values(), h.data(), sizeof(S) * h.size());
    c.synchronize();
  };
  load(go, off_params);
  load(gs, stn_params);
  auto X = core::Tensor<S, 4, Gpu>::from_host(c, xs, to_s<S>(x));
  auto T = core::Tensor<S, 4, Gpu>::from_host(c, xs, to_s<S>(t));
  auto G = core::Tensor<S, 4, Gpu>::from_host(c, xs, to_s<S>(g));
  core::Tensor<S, 4, Gpu> Y(c, xs);
  auto DX = core::Tensor<S, 4, Gpu>::zeros(c, xs), DT = core::Tensor<S, 4, Gpu>::zeros(c, xs);
  auto ym = Y.map();
  auto dxm = DX.map();
  auto dtm = DT.map();
  gpu_api::ModuleResult r;
  typename nn::OffsetBranch<2, S, Gpu>::Cache oc;
  ob.forward(c, X.cmap(), oc, ym);
  ob.backward(c, X.cmap(), oc, G.cmap(), &dxm);
  r.off_y = to_d(Y.to_host());
  r.off_dx = to_d(DX.to_host());
  std::vector<S> og(static_cast<std::size_t>(go.size()));
  c.device().memcpyDeviceToHost(og.data(), go.grads(), sizeof(S) * og.size());
  c.synchronize();
  r.off_grads = to_d(og);
  DX.set_zero();
  typename nn::Stn<2, S, Gpu>::Cache sc;
  stn.forward(c, X.cmap(), T.cmap(), sc, ym);
  stn.backward(c, X.cmap(), T.cmap(), sc, G.cmap(), &dxm, &dtm);
  r.stn_y = to_d(Y.to_host());
  r.stn_dsrc = to_d(DX.to_host());
  r.stn_dtgt = to_d(DT.to_host());
  std::vector<S> sg(static_cast<std::size_t>(gs.size()));
  c.device().memcpyDeviceToHost(sg.data(), gs.grads(), sizeof(S) * sg.size());
  c.synchronize();
  r.stn_grads = to_d(sg);
  return r;
}

}  // namespace gpu_impl

#define DICYC_GPU_API_DEFINE(SUFFIX, SCALAR)                                                                   \
  gpu_api::ConvResult gpu_api::conv_##SUFFIX(const ConvDesc& d, const std::vector<double>& x,                 \
                                             const std::vector<double>& w, const std::vector<double>& b,      \
                                             const std::vector<double>& dy) {                                 \
    return d.dim == 2 ? gpu_impl::conv<2, SCALAR>(d, x, w, b, dy) : gpu_impl::conv<3, SCALAR>(d, x, w, b, dy); \
  }                                                                                                            \
  gpu_api::MiscResult gpu_api::misc_##SUFFIX(int dim, const long* shape, const std::vector<double>& x,         \
                                             const std::vector<double>& g) {                                  \
    return dim == 2 ? gpu_impl::misc<2, SCALAR>(shape, x, g) : gpu_impl::misc<3, SCALAR>(shape, x, g);        \
  }                                                                                                            \
  gpu_api::LossResult gpu_api::losses_##SUFFIX(int dim, const long* shape, const std::vector<double>& a,       \
                                               const std::vector<double>& b, const std::vector<double>& m) {  \
    return dim == 2 ? gpu_impl::losses<2, SCALAR>(shape, a, b, m) : gpu_impl::losses<3, SCALAR>(shape, a, b, m); \
  }                                                                                                            \
  gpu_api::SampleResult gpu_api::sample_##SUFFIX(int dim, const long* xs, const long* gs, bool border, long ctl, \
                                                 const std::vector<double>& x, const std::vector<double>& g,  \
                                                 const std::vector<double>& dy, const std::vector<double>& d) { \
    return dim == 2 ? gpu_impl::sample<2, SCALAR>(xs, gs, border, ctl, x, g, dy, d)                            \
                    : gpu_impl::sample<3, SCALAR>(xs, gs, border, ctl, x, g, dy, d);                           \
  }
