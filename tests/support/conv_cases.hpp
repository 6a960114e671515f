// Convolution tests, written once and compiled for Dim = 2 and 3 (test_conv2d.cpp, test_conv3d.cpp).
#pragma once

#include <limits>

#include "support/test_util.hpp"

namespace dt {

using dicyc::ops::ConvOptions;
template <class D>
using Ctx = dicyc::core::Context<D>;

struct Contexts {
  Ctx<Eigen::DefaultDevice> cpu;
  Ctx<Eigen::ThreadPoolDevice> pool{2};
};
inline Contexts& contexts() {
  static Contexts c;
  return c;
}

template <int Dim>
struct ConvCase {
  ConvOptions<Dim> opts;
  Shape<Dim + 2> in;
  bool transpose;
  std::string label;
};

/// Forward on device `ctx` in scalar S; inputs and output as double on the host.
template <int Dim, class S, class Dev>
std::vector<double> run_forward(Ctx<Dev>& ctx, const ConvCase<Dim>& c, const std::vector<double>& x,
                                const std::vector<double>& w, const std::vector<double>& b) {
  using namespace dicyc;
  const auto ws = c.transpose ? ops::conv_transpose_weight_shape(c.opts) : ops::conv_weight_shape(c.opts);
  const auto ys = c.transpose ? ops::conv_transpose_output_shape(c.opts, c.in) : ops::conv_output_shape(c.opts, c.in);
  auto X = core::Tensor<S, Dim + 2, Dev>::from_host(ctx, c.in, convert<S>(x));
  auto W = core::Tensor<S, Dim + 2, Dev>::from_host(ctx, ws, convert<S>(w));
  auto B = core::Tensor<S, 1, Dev>::from_host(ctx, Shape<1>(c.opts.out_channels()), convert<S>(b));
  // The output starts as NaN: a forward must write every element, not add to what is there.
  auto Y = core::Tensor<S, Dim + 2, Dev>::from_host(
      ctx, ys, std::vector<S>(std::size_t(num_elements(ys)), S(std::numeric_limits<float>::quiet_NaN())));
  auto ym = Y.map();
  auto bm = B.cmap();
  if (c.transpose) ops::conv_transpose_forward<Dim>(ctx, c.opts, X.cmap(), W.cmap(), &bm, ym);
  else ops::conv_forward<Dim>(ctx, c.opts, X.cmap(), W.cmap(), &bm, ym);
  return convert<double>(Y.to_host());
}

/// Backward; the gradients are pre-filled with `pre` to check that they accumulate. With
/// `overwrite` the input gradient starts as NaN and is asked to be written (dx_overwrite).
template <int Dim, class S, class Dev>
void run_backward(Ctx<Dev>& ctx, const ConvCase<Dim>& c, const std::vector<double>& x, const std::vector<double>& w,
                  const std::vector<double>& dy, std::vector<double>& dx, std::vector<double>& dw,
                  std::vector<double>& db, double pre = 0.0, bool overwrite = false) {
  using namespace dicyc;
  const auto ws = c.transpose ? ops::conv_transpose_weight_shape(c.opts) : ops::conv_weight_shape(c.opts);
  const auto ys = c.transpose ? ops::conv_transpose_output_shape(c.opts, c.in) : ops::conv_output_shape(c.opts, c.in);
  auto X = core::Tensor<S, Dim + 2, Dev>::from_host(ctx, c.in, convert<S>(x));
  auto W = core::Tensor<S, Dim + 2, Dev>::from_host(ctx, ws, convert<S>(w));
  auto DY = core::Tensor<S, Dim + 2, Dev>::from_host(ctx, ys, convert<S>(dy));
  auto fill = [&](auto& t) { t.copy_from_host(std::vector<S>(static_cast<std::size_t>(t.size()), S(pre))); };
  core::Tensor<S, Dim + 2, Dev> DX(ctx, c.in), DW(ctx, ws);
  core::Tensor<S, 1, Dev> DB(ctx, Shape<1>(c.opts.out_channels()));
  if (overwrite)
    DX.copy_from_host(std::vector<S>(static_cast<std::size_t>(DX.size()), S(std::numeric_limits<float>::quiet_NaN())));
  else
    fill(DX);
  fill(DW);
  fill(DB);
  auto dxm = DX.map();
  auto dwm = DW.map();
  auto dbm = DB.map();
  if (c.transpose) ops::conv_transpose_backward<Dim>(ctx, c.opts, X.cmap(), W.cmap(), DY.cmap(), &dxm, &dwm, &dbm, overwrite);
  else ops::conv_backward<Dim>(ctx, c.opts, X.cmap(), W.cmap(), DY.cmap(), &dxm, &dwm, &dbm, overwrite);
  dx = convert<double>(DX.to_host());
  dw = convert<double>(DW.to_host());
  db = convert<double>(DB.to_host());
}

template <int Dim>
struct CaseData {
  std::vector<double> x, w, b;
  Shape<Dim + 2> ws, ys;
};

template <int Dim>
struct CaseData;

/// The input gradient written over NaN (dx_overwrite) equals it added onto zeros, bit for bit, on
/// whatever path the context plans; the weight and bias gradients are unaffected.
template <int Dim, class S, class Dev>
void check_overwrite(Ctx<Dev>& ctx, const ConvCase<Dim>& c, const std::vector<double>& x,
                     const std::vector<double>& w, const std::vector<double>& g) {
  std::vector<double> ax, aw, ab, ox, ow, ob;
  run_backward<Dim, S>(ctx, c, x, w, g, ax, aw, ab, 0.0);
  run_backward<Dim, S>(ctx, c, x, w, g, ox, ow, ob, 0.0, /*overwrite=*/true);
  BOOST_TEST_CONTEXT("input gradient written, not added") {
    BOOST_CHECK(ox == ax);
    BOOST_CHECK(ow == aw);
    BOOST_CHECK(ob == ab);
  }
}

template <int Dim>
CaseData<Dim> make_data(const ConvCase<Dim>& c, std::uint64_t seed) {
  using namespace dicyc;
  CaseData<Dim> d;
  d.ws = c.transpose ? ops::conv_transpose_weight_shape(c.opts) : ops::conv_weight_shape(c.opts);
  d.ys = c.transpose ? ops::conv_transpose_output_shape(c.opts, c.in) : ops::conv_output_shape(c.opts, c.in);
  d.x = random_vec<double>(num_elements(c.in), seed);
  d.w = random_vec<double>(num_elements(d.ws), seed + 1, -0.5, 0.5);
  d.b = random_vec<double>(c.opts.out_channels(), seed + 2);
  return d;
}

template <int Dim>
std::vector<double> reference(const ConvCase<Dim>& c, const CaseData<Dim>& d) {
  Shape<Dim + 2> ys;
  return c.transpose ? naive_conv_transpose<Dim>(c.opts, c.in, d.x, d.w, &d.b, ys)
                     : naive_conv<Dim>(c.opts, c.in, d.x, d.w, &d.b, ys);
}

/// Forward against the naive reference: double, float (both GEMM backends), ThreadPool, half.
template <int Dim>
void check_forward(const ConvCase<Dim>& c) {
  BOOST_TEST_CONTEXT(c.label) {
    auto& cx = contexts();
    const auto d = make_data(c, 11);
    const auto ref = reference(c, d);
    const double scale = std::max(1.0, max_abs(ref));
    BOOST_CHECK_LT(max_abs_diff(run_forward<Dim, double>(cx.cpu, c, d.x, d.w, d.b), ref), 1e-12 * scale);
    for (auto be : {dicyc::ops::GemmBackend::Eigen, dicyc::ops::GemmBackend::Dnnl}) {
      if (!dicyc::ops::gemm_backend_available(be)) continue;
      dicyc::ops::set_gemm_backend(be);
      BOOST_TEST_CONTEXT("gemm " << dicyc::ops::to_string(be)) {
        const auto yf = run_forward<Dim, float>(cx.cpu, c, d.x, d.w, d.b);
        const auto yp = run_forward<Dim, float>(cx.pool, c, d.x, d.w, d.b);
        BOOST_CHECK_LT(max_abs_diff(yf, ref), 2e-5 * scale);
        BOOST_CHECK_LT(max_abs_diff(yp, yf), 1e-5 * scale);
      }
    }
    dicyc::ops::set_gemm_backend(dicyc::ops::gemm_backend_available(dicyc::ops::GemmBackend::Dnnl)
                                     ? dicyc::ops::GemmBackend::Dnnl
                                     : dicyc::ops::GemmBackend::Eigen);
    // Half: inputs are rounded to half, the product accumulates in float, the output is rounded
    // to half. With |x| <= 1, |w| <= 0.5 and fan-in F, the error stays within ~1e-3 * sqrt(F) *
    // scale; we ask for 1e-2 relative to the largest output.
    const auto yh = run_forward<Dim, dicyc::half>(cx.pool, c, d.x, d.w, d.b);
    BOOST_CHECK_LT(max_abs_diff(yh, ref), 1e-2 * scale);
  }
}

/// Backward: double gradient check (input, weight, bias, with accumulation), then float parity
/// across devices and backends, and half within tolerance.
template <int Dim>
void check_backward(const ConvCase<Dim>& c) {
  BOOST_TEST_CONTEXT(c.label) {
    auto& cx = contexts();
    auto d = make_data(c, 21);
    const auto g = random_vec<double>(dicyc::num_elements(d.ys), 99);
    std::vector<double> dx, dw, db;
    const double pre = 0.25;
    run_backward<Dim, double>(cx.cpu, c, d.x, d.w, g, dx, dw, db, pre);
    for (auto* v : {&dx, &dw, &db})
      for (auto& e : *v) e -= pre;  // what was added on top of the pre-filled value
    auto loss = [&] { return dot(run_forward<Dim, double>(cx.cpu, c, d.x, d.w, d.b), g); };
    gradcheck(d.x, dx, loss, c.label + " d/dx");
    gradcheck(d.w, dw, loss, c.label + " d/dw");
    gradcheck(d.b, db, loss, c.label + " d/db");
    check_overwrite<Dim, double>(cx.cpu, c, d.x, d.w, g);

    std::vector<double> fx, fw, fb, px, pw, pb;
    const double sx = std::max(1.0, max_abs(dx)), sw = std::max(1.0, max_abs(dw)), sb = std::max(1.0, max_abs(db));
    for (auto be : {dicyc::ops::GemmBackend::Eigen, dicyc::ops::GemmBackend::Dnnl}) {
      if (!dicyc::ops::gemm_backend_available(be)) continue;
      dicyc::ops::set_gemm_backend(be);
      BOOST_TEST_CONTEXT("gemm " << dicyc::ops::to_string(be)) {
        run_backward<Dim, float>(cx.cpu, c, d.x, d.w, g, fx, fw, fb);
        run_backward<Dim, float>(cx.pool, c, d.x, d.w, g, px, pw, pb);
        BOOST_CHECK_LT(max_abs_diff(fx, dx), 2e-5 * sx);
        BOOST_CHECK_LT(max_abs_diff(fw, dw), 2e-5 * sw);
        BOOST_CHECK_LT(max_abs_diff(fb, db), 2e-5 * sb);
        BOOST_CHECK_LT(max_abs_diff(px, fx), 1e-5 * sx);
        BOOST_CHECK_LT(max_abs_diff(pw, fw), 1e-5 * sw);
        BOOST_CHECK_LT(max_abs_diff(pb, fb), 1e-5 * sb);
        check_overwrite<Dim, float>(cx.cpu, c, d.x, d.w, g);
        check_overwrite<Dim, float>(cx.pool, c, d.x, d.w, g);
      }
    }
    dicyc::ops::set_gemm_backend(dicyc::ops::gemm_backend_available(dicyc::ops::GemmBackend::Dnnl)
                                     ? dicyc::ops::GemmBackend::Dnnl
                                     : dicyc::ops::GemmBackend::Eigen);
    std::vector<double> hx, hw, hb;
    run_backward<Dim, dicyc::half>(cx.pool, c, d.x, d.w, g, hx, hw, hb);
    BOOST_CHECK_LT(max_abs_diff(hx, dx), 1e-2 * sx);
    BOOST_CHECK_LT(max_abs_diff(hw, dw), 1e-2 * sw);
    BOOST_CHECK_LT(max_abs_diff(hb, db), 1e-2 * sb);
    check_overwrite<Dim, dicyc::half>(cx.pool, c, d.x, d.w, g);
  }
}

/// Tiling the column buffer (tiny workspace) and the generic generate() path (what the GPU runs)
/// both give the same results as the default CPU path.
template <int Dim>
void check_tiling_and_generic(const ConvCase<Dim>& c) {
  BOOST_TEST_CONTEXT(c.label) {
    Ctx<Eigen::DefaultDevice> small;
    small.set_workspace_limit(4096);
    auto& cx = contexts();
    auto d = make_data(c, 31);
    const auto g = random_vec<double>(dicyc::num_elements(d.ys), 7);
    const auto y_full = run_forward<Dim, double>(cx.cpu, c, d.x, d.w, d.b);
    const auto y_tiled = run_forward<Dim, double>(small, c, d.x, d.w, d.b);
    BOOST_CHECK_LT(max_abs_diff(y_full, y_tiled), 1e-12);
    std::vector<double> ax, aw, ab, bx, bw, bb;
    run_backward<Dim, double>(cx.cpu, c, d.x, d.w, g, ax, aw, ab);
    run_backward<Dim, double>(small, c, d.x, d.w, g, bx, bw, bb);
    BOOST_CHECK_LT(max_abs_diff(ax, bx), 1e-12);
    BOOST_CHECK_LT(max_abs_diff(aw, bw), 1e-12);

    // The gathers: the CPU loop against the generate() functor the GPU runs, in both modes, on a
    // column block [j0, j1).
    for (bool transposed : {false, true}) {
      const auto img_shape = transposed ? d.ys : c.in;
      const auto grid_shape = transposed ? c.in : d.ys;
      const auto gsrc = c.transpose ? (transposed ? c.in : d.ys) : img_shape;
      const auto ggrid = c.transpose ? (transposed ? d.ys : c.in) : grid_shape;
      const Index ch = gsrc[0];
      const auto geo = dicyc::ops::detail::geometry(c.opts, ch, gsrc, ggrid, transposed);
      const Index j0 = geo.cols() / 3, j1 = geo.cols();
      const auto img = random_vec<double>(dicyc::num_elements(gsrc), 5);
      std::vector<double> c1(static_cast<std::size_t>(geo.rows() * (j1 - j0))), c2(c1.size(), -7.0);
      dicyc::ops::im2col_cpu<Dim>(cx.pool, geo, img.data(), c1.data(), j0, j1);
      dicyc::ops::im2col_generic<Dim>(cx.cpu.device(), geo, img.data(), c2.data(), j0, j1);
      BOOST_CHECK(c1 == c2);
    }
  }
}

/// The col2im paths (conv input gradients, transposed-conv forwards; wide: gemm_col2im, thin:
/// gemm_col2im_thin) against the transposed gather they replace (the context's set_col2im(false)): the `on`
/// cases are eligible -- the float results differ from the gather's at rounding level, so the
/// switch reaches them, and agree in double to 1e-12 --, the `off` ones are not and give the same
/// bits either way. The pool (2 threads) agrees with one thread.
template <int Dim>
void check_col2im_dispatch(const std::vector<ConvCase<Dim>>& on, const std::vector<ConvCase<Dim>>& off) {
  using namespace dicyc;
  auto& cx = contexts();
  BOOST_REQUIRE(cx.pool.col2im());
  // dicyc's own kernels are under test: the 4^d convs among the cases would go to oneDNN.
  // The same for the stride-1 thin convs (ConvPath::ThinDirect) among the ineligible ones.
  struct DnnlOff {
    DnnlOff() { set(dicyc::core::DnnlConvMode::Off, false); }
    ~DnnlOff() { set(dicyc::core::DnnlConvMode::Auto, true); }
    static void set(dicyc::core::DnnlConvMode m, bool thin) {
      contexts().pool.set_dnnl_conv(m);
      contexts().cpu.set_dnnl_conv(m);
      contexts().pool.set_thin_direct(thin);
      contexts().cpu.set_thin_direct(thin);
    }
  } dnnl_off;
  // What the switch changes: the input gradient of a conv, the forward of a transposed conv.
  auto result = [&](const ConvCase<Dim>& c, auto scalar, auto& ctx) {
    using S = decltype(scalar);
    const auto d = make_data(c, 71);
    if (c.transpose) return run_forward<Dim, S>(ctx, c, d.x, d.w, d.b);
    const auto g = random_vec<double>(num_elements(d.ys), 73);
    std::vector<double> dx, dw, db;
    run_backward<Dim, S>(ctx, c, d.x, d.w, g, dx, dw, db);
    return dx;
  };
  for (const auto& c : on) {
    BOOST_TEST_CONTEXT(c.label) {
      BOOST_CHECK(ops::detail::col2im_problem(c.opts, c.in, c.transpose).applies());
      const auto pass = c.transpose ? ops::ConvPass::TransposedForward : ops::ConvPass::InputGrad;
      const auto planned = ops::plan_conv<Dim, float>(cx.pool, c.opts, pass, c.in);
      BOOST_CHECK(planned == ops::ConvPath::GemmCol2im || planned == ops::ConvPath::GemmCol2imThin);
      cx.pool.set_col2im(false);
      const auto off = ops::plan_conv<Dim, float>(cx.pool, c.opts, pass, c.in);
      const auto other = ops::plan_conv<Dim, float>(cx.cpu, c.opts, pass, c.in);
      BOOST_CHECK(off == ops::ConvPath::TransposedGather);
      BOOST_CHECK(other == planned);  // a setting of one context only
      cx.pool.set_col2im(true);
      const auto a = result(c, float(), cx.pool), a1 = result(c, float(), cx.cpu), ad = result(c, double(), cx.pool);
      cx.pool.set_col2im(false);
      const auto b = result(c, float(), cx.pool), bd = result(c, double(), cx.pool);
      cx.pool.set_col2im(true);
      BOOST_CHECK(a != b);
      BOOST_CHECK_LT(max_abs_diff(a, a1), 1e-5 * std::max(1.0, max_abs(a1)));
      BOOST_CHECK_LT(max_abs_diff(a, b), 2e-5 * std::max(1.0, max_abs(b)));
      BOOST_CHECK_LT(max_abs_diff(ad, bd), 1e-12 * std::max(1.0, max_abs(bd)));
    }
  }
  for (const auto& c : off) {
    BOOST_TEST_CONTEXT(c.label) {
      BOOST_CHECK(!ops::detail::col2im_problem(c.opts, c.in, c.transpose).applies());
      const auto planned =
          ops::plan_conv<Dim, float>(cx.pool, c.opts, c.transpose ? ops::ConvPass::TransposedForward : ops::ConvPass::InputGrad, c.in);
      BOOST_CHECK(planned == ops::ConvPath::TransposedGather);
      const auto a = result(c, float(), cx.pool);
      cx.pool.set_col2im(false);
      const auto b = result(c, float(), cx.pool);
      cx.pool.set_col2im(true);
      BOOST_CHECK(a == b);
    }
  }
}

/// The thin col2im's gather (col2im_gather_add) on its own, against col2im_add (the channel-slice
/// scatter) on the same GEMM columns, for every block of columns of a tiny workspace (partial grid
/// planes) and of whole planes: the same sums in double to 1e-12, and the same bits on 1 and 2
/// threads.
template <int Dim>
void check_col2im_gather(const ConvCase<Dim>& c) {
  using namespace dicyc;
  auto& cx = contexts();
  BOOST_TEST_CONTEXT(c.label) {
    const auto p = ops::detail::col2im_problem(c.opts, c.in, c.transpose);
    BOOST_REQUIRE(p.thin());
    const auto& g = p.g;
    const Index rows = g.rows(), npo = g.out_pixels(), plane = npo / g.out[Dim - 1];
    const auto cols = random_vec<double>(static_cast<std::size_t>(rows * g.cols()), 13);
    const std::size_t n_img = static_cast<std::size_t>(g.channels * g.image_pixels() * g.batch);
    const ops::detail::Col2imTaps<Dim> tp(g);
    for (Index bw : {Index(1), Index(3), plane, 2 * plane, npo}) {
      BOOST_TEST_CONTEXT("block width " << bw) {
        std::vector<double> ref(n_img, 0.5), got(n_img, 0.5), got1(n_img, 0.5);
        std::vector<float> gf(n_img, 0.5f), gf1(n_img, 0.5f);
        const std::vector<float> colsf(cols.begin(), cols.end());
        for (Index n = 0; n < g.batch; ++n)
          for (Index q0 = 0; q0 < npo; q0 += bw) {
            const Index j0 = n * npo + q0, j1 = n * npo + std::min(npo, q0 + bw);
            ops::detail::col2im_add<Dim>(cx.cpu, g, cols.data() + rows * j0, j0, j1, ref.data());
            ops::detail::col2im_gather_add<Dim>(cx.pool, g, tp, cols.data() + rows * j0, j0, j1, got.data());
            ops::detail::col2im_gather_add<Dim>(cx.cpu, g, tp, cols.data() + rows * j0, j0, j1, got1.data());
            ops::detail::col2im_gather_add<Dim>(cx.pool, g, tp, colsf.data() + rows * j0, j0, j1, gf.data());
            ops::detail::col2im_gather_add<Dim>(cx.cpu, g, tp, colsf.data() + rows * j0, j0, j1, gf1.data());
          }
        BOOST_CHECK_LT(max_abs_diff(got, ref), 1e-12 * std::max(1.0, max_abs(ref)));
        BOOST_CHECK(got == got1);
        BOOST_CHECK(gf == gf1);
      }
    }
  }
}

/// detail::swap_kernel_axes (the tiled CPU transpose behind the transposed gather: conv input
/// gradients and transposed-conv forwards where gemm_col2im does not apply) against an
/// element-by-element swap, on kernels with extents that are and are not multiples of its 16 x 16
/// tiles, on the pool and single-threaded.
template <int Dim>
void check_swap_kernel_axes() {
  using namespace dicyc;
  auto& cx = contexts();
  for (const auto& ab : std::vector<std::array<Index, 2>>{{1, 1}, {3, 5}, {8, 16}, {19, 13}, {64, 1}, {33, 40}}) {
    Shape<Dim + 2> s;
    s[0] = ab[0];
    s[1] = ab[1];
    for (int d = 0; d < Dim; ++d) s[2 + d] = 3 + d;
    const auto v = random_vec<double>(num_elements(s), 5);
    const Index A = s[0], B = s[1], K = num_elements(s) / (A * B);
    std::vector<double> want(v.size());
    for (Index k = 0; k < K; ++k)
      for (Index b = 0; b < B; ++b)
        for (Index a = 0; a < A; ++a) want[std::size_t(b + B * a + A * B * k)] = v[std::size_t(a + A * b + A * B * k)];
    BOOST_TEST_CONTEXT("kernel " << shape_str(s)) {
      auto W = core::Tensor<double, Dim + 2, Eigen::ThreadPoolDevice>::from_host(cx.pool, s, v);
      const auto T = ops::detail::swap_kernel_axes<Dim>(cx.pool, W.cmap());
      BOOST_CHECK_EQUAL(T.shape()[0], B);
      BOOST_CHECK_EQUAL(T.shape()[1], A);
      BOOST_CHECK(T.to_host() == want);
      auto W1 = core::Tensor<float, Dim + 2, Eigen::DefaultDevice>::from_host(cx.cpu, s, convert<float>(v));
      const auto T1 = ops::detail::swap_kernel_axes<Dim>(cx.cpu, W1.cmap());
      BOOST_CHECK(T1.to_host() == convert<float>(want));
    }
  }
}
/// A case's three passes: a conv's, or a transposed conv's.
template <int Dim>
std::array<dicyc::ops::ConvPass, 3> case_passes(const ConvCase<Dim>& c) {
  using P = dicyc::ops::ConvPass;
  if (c.transpose) return {P::TransposedForward, P::TransposedInputGrad, P::TransposedWeightGrad};
  return {P::Forward, P::InputGrad, P::WeightGrad};
}

/// The oneDNN path (ops/conv_dnnl.hpp, ConvPath::Dnnl): with the context's DnnlConvMode::Always
/// every conv and transposed conv that oneDNN can describe plans on it (a transposed conv as the
/// passes of ops::detail::transposed_as_conv), and its float forward (written over a NaN-filled
/// output) and gradients (accumulated onto pre-filled buffers) agree with the naive double
/// reference as the other paths must; with Off nothing plans on it and the results are dicyc's
/// own kernels'; Auto takes the passes of ops::detail::dnnl_conv_auto (table below). The switch is
/// reached: some result differs in its bits between Always and Off. Without oneDNN nothing plans
/// on it whatever the mode. The pool (2 threads) agrees with one thread.
template <int Dim>
void check_dnnl_dispatch(const std::vector<ConvCase<Dim>>& cs) {
  using namespace dicyc;
  using core::DnnlConvMode;
  auto& cx = contexts();
  const bool have = ops::gemm_backend() == ops::GemmBackend::Dnnl && ops::detail::dnnl_conv_capable_v<float, Eigen::DefaultDevice>;
  BOOST_REQUIRE(cx.pool.dnnl_conv() == DnnlConvMode::Auto);
#if defined(DICYC_DNNL_CONV)
  BOOST_CHECK(have);  // a build with oneDNN, on the default GEMM backend
#else
  BOOST_CHECK(!have);
#endif
  auto set_mode = [&](DnnlConvMode m) {
    cx.pool.set_dnnl_conv(m);
    cx.cpu.set_dnnl_conv(m);
  };
  bool some_differ = false;
  int on_dnnl = 0;
  int transposed_on_dnnl = 0;
  for (const auto& c : cs) {
    BOOST_TEST_CONTEXT(c.label) {
      const auto passes = case_passes(c);
      const bool shape_ok = ops::detail::dnnl_conv_shape<Dim>(c.opts, passes[0], c.in);
      auto dnnl_planned = [&](auto scalar, ops::ConvPass pass) {
        return ops::plan_conv<Dim, decltype(scalar)>(cx.pool, c.opts, pass, c.in) == ops::ConvPath::Dnnl;
      };
      for (auto pass : passes) {
        BOOST_CHECK_EQUAL(dnnl_planned(float(), pass), have && shape_ok && ops::detail::dnnl_conv_auto(c.opts, pass));
        BOOST_CHECK(!dnnl_planned(double(), pass));
        set_mode(DnnlConvMode::Always);
        BOOST_CHECK_EQUAL(dnnl_planned(float(), pass), have && shape_ok);
        set_mode(DnnlConvMode::Off);
        BOOST_CHECK(!dnnl_planned(float(), pass));
        set_mode(DnnlConvMode::Auto);
      }
      on_dnnl += have && shape_ok;
      transposed_on_dnnl += have && shape_ok && c.transpose;
      auto d = make_data(c, 41);
      const auto ref = reference(c, d);
      const auto g = random_vec<double>(num_elements(d.ys), 43);
      const double pre = 0.25;
      std::vector<double> rx, rw, rb;
      run_backward<Dim, double>(cx.cpu, c, d.x, d.w, g, rx, rw, rb, pre);
      const double sy = std::max(1.0, max_abs(ref)), sx = std::max(1.0, max_abs(rx)), sw = std::max(1.0, max_abs(rw));
      std::vector<double> y[2], dx[2], dw[2], db[2], y1, dx1, dw1, db1;
      for (int on = 0; on < 2; ++on) {
        BOOST_TEST_CONTEXT((on ? "always" : "off")) {
          set_mode(on ? DnnlConvMode::Always : DnnlConvMode::Off);
          y[on] = run_forward<Dim, float>(cx.pool, c, d.x, d.w, d.b);
          run_backward<Dim, float>(cx.pool, c, d.x, d.w, g, dx[on], dw[on], db[on], pre);
          y1 = run_forward<Dim, float>(cx.cpu, c, d.x, d.w, d.b);
          run_backward<Dim, float>(cx.cpu, c, d.x, d.w, g, dx1, dw1, db1, pre);
          BOOST_CHECK_LT(max_abs_diff(y[on], ref), 2e-5 * sy);
          BOOST_CHECK_LT(max_abs_diff(dx[on], rx), 2e-5 * sx);
          BOOST_CHECK_LT(max_abs_diff(dw[on], rw), 2e-5 * sw);
          BOOST_CHECK_LT(max_abs_diff(y1, y[on]), 1e-5 * sy);
          BOOST_CHECK_LT(max_abs_diff(dx1, dx[on]), 1e-5 * sx);
          BOOST_CHECK_LT(max_abs_diff(dw1, dw[on]), 1e-5 * sw);
          check_overwrite<Dim, float>(cx.pool, c, d.x, d.w, g);
        }
      }
      set_mode(DnnlConvMode::Auto);
      some_differ = some_differ || y[0] != y[1] || dx[0] != dx[1] || dw[0] != dw[1];
    }
  }
  BOOST_CHECK_EQUAL(some_differ, have);
  if (have) BOOST_CHECK_GT(on_dnnl, 3);
  if (have) BOOST_CHECK_GT(transposed_on_dnnl, 1);

  // bf16 compute (set_conv_bf16): the passes of ops::detail::dnnl_conv_bf16 go to oneDNN in bf16
  // (the others as before), within bf16's tolerance of the double reference (inputs rounded to 8 significant bits,
  // products summed in float: 2e-2 of the largest value), and visibly not float (some result off
  // by more than float's 2e-5) where the CPU has bf16 primitives.
  bool bf16_seen = false;
  long shared_reused = 0;  // input gradients that took dy from the weight gradient's bf16 copy
  auto shared_reused_now = []() -> long {
#if defined(DICYC_DNNL_CONV)
    return dicyc::ops::detail::dnnl_shared_input_reuses().load();
#else
    return 0;
#endif
  };
  for (const auto& c : cs) {
    BOOST_TEST_CONTEXT(c.label << ", bf16") {
      cx.pool.set_conv_bf16(true);
      cx.cpu.set_conv_bf16(true);
      const auto passes = case_passes(c);
      const bool shape_ok = ops::detail::dnnl_conv_shape<Dim>(c.opts, passes[0], c.in);
      for (auto pass : passes) {
        const bool planned = ops::plan_conv<Dim, float>(cx.pool, c.opts, pass, c.in) == ops::ConvPath::Dnnl;
        BOOST_CHECK_EQUAL(planned, have && shape_ok &&
                                       (ops::detail::dnnl_conv_bf16(c.opts, pass) || ops::detail::dnnl_conv_auto(c.opts, pass)));
      }
      auto d = make_data(c, 51);
      const auto ref = reference(c, d);
      const auto g = random_vec<double>(num_elements(d.ys), 53);
      std::vector<double> rx, rw, rb, bx, bw, bb;
      run_backward<Dim, double>(cx.cpu, c, d.x, d.w, g, rx, rw, rb, 0.25);
      const auto y = run_forward<Dim, float>(cx.pool, c, d.x, d.w, d.b);
      const long shared_before = shared_reused_now();
      run_backward<Dim, float>(cx.pool, c, d.x, d.w, g, bx, bw, bb, 0.25);
      shared_reused += shared_reused_now() - shared_before;
      check_overwrite<Dim, float>(cx.pool, c, d.x, d.w, g);
      cx.pool.set_conv_bf16(false);
      cx.cpu.set_conv_bf16(false);
      const double sy = std::max(1.0, max_abs(ref)), sx = std::max(1.0, max_abs(rx)), sw = std::max(1.0, max_abs(rw));
      BOOST_CHECK_LT(max_abs_diff(y, ref), 2e-2 * sy);
      BOOST_CHECK_LT(max_abs_diff(bx, rx), 2e-2 * sx);
      BOOST_CHECK_LT(max_abs_diff(bw, rw), 2e-2 * sw);
      bf16_seen = bf16_seen || max_abs_diff(y, ref) > 2e-5 * sy || max_abs_diff(bx, rx) > 2e-5 * sx;
    }
  }
  const std::string support = ops::bf16_conv_support();
  BOOST_TEST_MESSAGE("bf16 convolutions on this CPU: " << support);
  if (have && (support == "amx" || support == "avx512_bf16")) BOOST_CHECK(bf16_seen);
  if (have) BOOST_CHECK_GT(shared_reused, 0);
  if (!have) BOOST_CHECK(!bf16_seen);

  // The Auto rule on the networks' layers ({forward, input gradient, weight gradient}).
  struct Layer {
    ConvOptions<Dim> o;
    std::array<bool, 3> want;
    const char* what;
  };
  const std::vector<Layer> layers{
      {ConvOptions<Dim>(1, 16, 7).padding(3), {true, false, true}, "generator stem 1 -> 16, k7"},
      {ConvOptions<Dim>(3, 64, 7).padding(3), {true, false, true}, "generator stem 3 -> 64, k7"},
      {ConvOptions<Dim>(16, 1, 7).padding(3), {false, false, false}, "generator head 16 -> 1, k7"},
      {ConvOptions<Dim>(16, 32, 3).stride(2).padding(1), {false, true, false}, "downsampling 16 -> 32, k3 s2"},
      {ConvOptions<Dim>(64, 64, 3).padding(1), {false, false, false}, "residual 64 -> 64, k3 s1"},
      {ConvOptions<Dim>(1, 32, 4).stride(2).padding(1), {true, false, true}, "PatchGAN stem 1 -> 32, k4 s2"},
      {ConvOptions<Dim>(32, 64, 4).stride(2).padding(1), {true, true, true}, "PatchGAN 32 -> 64, k4 s2"},
      {ConvOptions<Dim>(128, 256, 4).padding(1), {true, true, true}, "PatchGAN 128 -> 256, k4 s1"},
      {ConvOptions<Dim>(256, 1, 4).padding(1), {false, false, false}, "PatchGAN last 256 -> 1, k4 s1"},
  };
  const ops::ConvPass passes[] = {ops::ConvPass::Forward, ops::ConvPass::InputGrad, ops::ConvPass::WeightGrad};
  for (const auto& l : layers) {
    Shape<Dim + 2> in;
    in[0] = l.o.in_channels();
    for (int d = 0; d < Dim; ++d) in[d + 1] = 24;
    in[Dim + 1] = 1;
    for (int i = 0; i < 3; ++i) {
      BOOST_TEST_CONTEXT(l.what << ", pass " << i) {
        BOOST_CHECK_EQUAL(ops::detail::dnnl_conv_auto(l.o, passes[i]), l.want[i]);
        const bool planned = ops::plan_conv<Dim, float>(cx.pool, l.o, passes[i], in) == ops::ConvPath::Dnnl;
        BOOST_CHECK_EQUAL(planned, have && l.want[i]);
      }
    }
  }
  // Transposed convs ({forward, input gradient, weight gradient}): the forward from 16 channels
  // on both sides; in bf16 all three passes there.
  const std::vector<Layer> up{
      {ConvOptions<Dim>(64, 32, 3).stride(2).padding(1).output_padding(1), {true, false, false}, "upsampling 64 -> 32"},
      {ConvOptions<Dim>(32, 16, 3).stride(2).padding(1).output_padding(1), {true, false, false}, "upsampling 32 -> 16"},
      {ConvOptions<Dim>(16, 8, 3).stride(2).padding(1).output_padding(1), {false, false, false}, "upsampling 16 -> 8"},
      {ConvOptions<Dim>(8, 16, 3).stride(2).padding(1).output_padding(1), {false, false, false}, "upsampling 8 -> 16"},
  };
  const ops::ConvPass tpasses[] = {ops::ConvPass::TransposedForward, ops::ConvPass::TransposedInputGrad,
                                   ops::ConvPass::TransposedWeightGrad};
  for (const auto& l : up) {
    Shape<Dim + 2> in;
    in[0] = l.o.in_channels();
    for (int d = 0; d < Dim; ++d) in[d + 1] = 12;
    in[Dim + 1] = 1;
    const bool big = l.o.in_channels() >= 16 && l.o.out_channels() >= 16;
    for (int i = 0; i < 3; ++i) {
      BOOST_TEST_CONTEXT(l.what << ", pass " << i) {
        BOOST_CHECK_EQUAL(ops::detail::dnnl_conv_auto(l.o, tpasses[i]), l.want[i]);
        const bool planned = ops::plan_conv<Dim, float>(cx.pool, l.o, tpasses[i], in) == ops::ConvPath::Dnnl;
        BOOST_CHECK_EQUAL(planned, have && l.want[i]);
        BOOST_CHECK_EQUAL(ops::detail::dnnl_conv_bf16(l.o, tpasses[i]), big);
        cx.pool.set_conv_bf16(true);
        const bool planned_bf16 = ops::plan_conv<Dim, float>(cx.pool, l.o, tpasses[i], in) == ops::ConvPath::Dnnl;
        BOOST_CHECK_EQUAL(planned_bf16, have && big);
        cx.pool.set_conv_bf16(false);
      }
    }
  }
}
/// The direct thin kernels (ops/conv_thin.hpp, ConvPath::ThinDirect; stride-1 convs with one
/// channel on one side): the `on` cases plan their eligible passes on it (forward and input
/// gradient of C -> 1 and 1 -> C, weight gradient of C -> 1; oneDNN off, so that its Auto rule
/// does not take the 1 -> C forward first), the context's set_thin_direct(false) sends them back
/// to the gather/GEMV/col2im paths, and both agree with the naive double reference: the forward
/// written over NaN, the gradients accumulated onto pre-filled buffers, float to 2e-5 of the
/// scale, double to 1e-12; the switch is reached (some float result differs in its bits), the
/// pool's bits equal one thread's. The `off` cases never plan on it.
template <int Dim>
void check_thin_dispatch(const std::vector<ConvCase<Dim>>& on, const std::vector<ConvCase<Dim>>& off) {
  using namespace dicyc;
  using ops::ConvPass;
  auto& cx = contexts();
  BOOST_REQUIRE(cx.pool.thin_direct() && cx.cpu.thin_direct());
  struct Restore {
    ~Restore() {
      for (auto* c : {static_cast<core::ContextSettings*>(&contexts().pool), static_cast<core::ContextSettings*>(&contexts().cpu)}) {
        c->set_dnnl_conv(core::DnnlConvMode::Auto);
        c->set_thin_direct(true);
      }
    }
  } restore;
  cx.pool.set_dnnl_conv(core::DnnlConvMode::Off);
  cx.cpu.set_dnnl_conv(core::DnnlConvMode::Off);
  auto set_thin = [&](bool t) {
    cx.pool.set_thin_direct(t);
    cx.cpu.set_thin_direct(t);
  };
  bool some_differ = false;
  for (const auto& c : on) {
    BOOST_TEST_CONTEXT(c.label) {
      BOOST_REQUIRE(!c.transpose);
      auto thin = [&](auto& ctx, auto scalar, ConvPass pass) {
        return ops::plan_conv<Dim, decltype(scalar)>(ctx, c.opts, pass, c.in) == ops::ConvPath::ThinDirect;
      };
      auto eligible = [&](auto scalar, ConvPass pass) { return ops::detail::thin_direct_shape<Dim, decltype(scalar)>(c.opts, pass); };
      int planned = 0;
      for (auto pass : {ConvPass::Forward, ConvPass::InputGrad, ConvPass::WeightGrad}) {
        const bool expect = eligible(float(), pass);
        planned += expect;
        BOOST_CHECK_EQUAL(thin(cx.pool, float(), pass), expect);
        BOOST_CHECK_EQUAL(thin(cx.cpu, double(), pass), eligible(double(), pass));
        cx.pool.set_thin_direct(false);
        BOOST_CHECK(!thin(cx.pool, float(), pass));
        BOOST_CHECK_EQUAL(thin(cx.cpu, float(), pass), expect);  // a setting of one context only
        cx.pool.set_thin_direct(true);
      }
      BOOST_CHECK_GE(planned, 2);  // forward and input gradient at least
      const auto d = make_data(c, 51);
      const auto ref = reference(c, d);
      const auto g = random_vec<double>(num_elements(d.ys), 53);
      const double pre = 0.25;
      std::vector<double> rx, rw, rb;
      set_thin(false);
      run_backward<Dim, double>(cx.cpu, c, d.x, d.w, g, rx, rw, rb, pre);
      const auto ry = run_forward<Dim, double>(cx.cpu, c, d.x, d.w, d.b);
      set_thin(true);
      BOOST_CHECK_LT(max_abs_diff(ry, ref), 1e-12 * std::max(1.0, max_abs(ref)));
      const double sy = std::max(1.0, max_abs(ref)), sx = std::max(1.0, max_abs(rx)), sw = std::max(1.0, max_abs(rw));
      std::vector<double> y[2], dx[2], dw[2], db[2];
      for (int t = 0; t < 2; ++t) {
        BOOST_TEST_CONTEXT((t ? "thin on" : "thin off")) {
          set_thin(t == 1);
          y[t] = run_forward<Dim, float>(cx.pool, c, d.x, d.w, d.b);
          run_backward<Dim, float>(cx.pool, c, d.x, d.w, g, dx[t], dw[t], db[t], pre);
          BOOST_CHECK_LT(max_abs_diff(y[t], ref), 2e-5 * sy);
          BOOST_CHECK_LT(max_abs_diff(dx[t], rx), 2e-5 * sx);
          BOOST_CHECK_LT(max_abs_diff(dw[t], rw), 2e-5 * sw);
          check_overwrite<Dim, float>(cx.pool, c, d.x, d.w, g);
          check_overwrite<Dim, double>(cx.cpu, c, d.x, d.w, g);
          std::vector<double> y1, dx1, dw1, db1;
          y1 = run_forward<Dim, float>(cx.cpu, c, d.x, d.w, d.b);
          run_backward<Dim, float>(cx.cpu, c, d.x, d.w, g, dx1, dw1, db1, pre);
          if (t == 1) {  // the thin kernels' passes: the same bits on 1 and 2 threads
            if (eligible(float(), ConvPass::Forward)) BOOST_CHECK(y1 == y[t]);
            if (eligible(float(), ConvPass::InputGrad)) BOOST_CHECK(dx1 == dx[t]);
            if (eligible(float(), ConvPass::WeightGrad)) BOOST_CHECK(dw1 == dw[t]);
          }
          std::vector<double> qx, qw, qb;
          run_backward<Dim, double>(cx.pool, c, d.x, d.w, g, qx, qw, qb, pre);
          BOOST_CHECK_LT(max_abs_diff(run_forward<Dim, double>(cx.pool, c, d.x, d.w, d.b), ref), 1e-12 * sy);
          BOOST_CHECK_LT(max_abs_diff(qx, rx), 1e-12 * sx);
          BOOST_CHECK_LT(max_abs_diff(qw, rw), 1e-12 * sw);
        }
      }
      set_thin(true);
      some_differ = some_differ || y[0] != y[1] || dx[0] != dx[1] || dw[0] != dw[1];
    }
  }
  BOOST_CHECK(some_differ);
  for (const auto& c : off) {
    BOOST_TEST_CONTEXT(c.label) {
      for (auto pass : case_passes(c)) {
        const bool eligible = ops::detail::thin_direct_shape<Dim, float>(c.opts, pass);
        const bool planned = ops::plan_conv<Dim, float>(cx.pool, c.opts, pass, c.in) == ops::ConvPath::ThinDirect;
        BOOST_CHECK(!eligible);
        BOOST_CHECK(!planned);
      }
    }
  }
}

}  // namespace dt
