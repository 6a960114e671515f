// The deformation modules: OffsetBranch (shared-offset layer) and Stn (TPS spatial transformer).
// Identity at initialisation, parameter names and counts, and finite-difference gradient checks in
// double with respect to the inputs and every parameter tensor (after randomising the parameters,
// since the zero-initialised last layers make the identity a flat spot).
#define BOOST_TEST_MODULE nn_deform
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <functional>
#include <vector>

#include "dicyc/nn/offset.hpp"
#include "dicyc/nn/patch_discriminator.hpp"
#include "dicyc/nn/resnet_block.hpp"
#include "dicyc/nn/stn.hpp"
#include "support/nn_check.hpp"
#include "support/test_util.hpp"

using namespace dicyc;
using Dev = Eigen::DefaultDevice;

namespace {

using dt::check;
using dt::check_param;
using dt::cpu;
using dt::randomise;

template <int Dim>
constexpr Index ipow3() {
  return Dim == 2 ? 9 : 27;
}

template <int Dim>
void offset_case(const Shape<Dim + 2>& xs) {
  constexpr int R = Dim + 2;
  nn::ParameterGroup<double, Dev> g("offsets");
  nn::OffsetBranch<Dim, double, Dev> ob(g, "off0", xs[0], 6);
  core::Rng rng(1);
  g.allocate(cpu(), rng);
  BOOST_CHECK_EQUAL(g.name_of(0), "off0.c1.weight");
  BOOST_CHECK_EQUAL(g.name_of(3), "off0.c2.bias");
  BOOST_CHECK_EQUAL(g.size(), xs[0] * 6 * ipow3<Dim>() + 6 + 6 * Dim * ipow3<Dim>() + Dim);
  const Index n = num_elements(xs);
  auto x = dt::random_vec<double>(n, 2);
  std::vector<double> y(n);
  typename nn::OffsetBranch<Dim, double, Dev>::Cache cache;
  {
    ConstTensorMap<double, R> xm(x.data(), xs);
    TensorMap<double, R> ym(y.data(), xs);
    ob.forward(cpu(), xm, cache, ym);
  }
  BOOST_CHECK(y == x);  // zero-initialised last conv: the identity warp, exactly
  // Random parameters giving displacements of a fraction of a pixel.
  randomise(g, 3, [](const std::string& name) { return name.find("c2") != std::string::npos ? 0.05 : 0.3; });
  const auto w = dt::random_vec<double>(n, 4);
  auto f = [&] {
    ConstTensorMap<double, R> xm(x.data(), xs);
    TensorMap<double, R> ym(y.data(), xs);
    typename nn::OffsetBranch<Dim, double, Dev>::Cache c;
    ob.forward(cpu(), xm, c, ym);
    return dt::dot(y, w);
  };
  f();
  g.zero_grad();
  std::vector<double> dx(n, 0.25);
  {
    ConstTensorMap<double, R> xm(x.data(), xs), wm(w.data(), xs);
    TensorMap<double, R> ym(y.data(), xs), dxm(dx.data(), xs);
    ob.forward(cpu(), xm, cache, ym);
    ob.backward(cpu(), xm, cache, wm, &dxm);
  }
  for (auto& v : dx) v -= 0.25;
  check("OffsetBranch d input", x, dx, f);
  for (Index i = 0; i < g.count(); ++i)
    check_param("OffsetBranch d " + g.name_of(i), g.value(g.ref_of(i)), g.grads() + g.ref_of(i).offset,
                g.ref_of(i).size(), f);
}

template <int Dim>
void stn_case(const Shape<Dim + 2>& s, Index control) {
  constexpr int R = Dim + 2;
  nn::ParameterGroup<double, Dev> g("stn");
  nn::Stn<Dim, double, Dev> stn(g, "stn_ab", s[0], control, 8, 6);
  core::Rng rng(7);
  g.allocate(cpu(), rng);
  const Index K = stn.num_control_points();
  BOOST_CHECK_EQUAL(g.size(), 2 * s[0] * 8 * ipow3<Dim>() + 8 + 8 * 6 * ipow3<Dim>() + 6 + 6 * K * Dim + K * Dim);
  BOOST_CHECK_EQUAL(g.name_of(4), "stn_ab.fc.weight");
  const Index n = num_elements(s);
  auto src = dt::random_vec<double>(n, 8), tgt = dt::random_vec<double>(n, 9);
  std::vector<double> out(n);
  typename nn::Stn<Dim, double, Dev>::Cache cache;
  auto run = [&](typename nn::Stn<Dim, double, Dev>::Cache& c) {
    ConstTensorMap<double, R> sm(src.data(), s), tm(tgt.data(), s);
    TensorMap<double, R> om(out.data(), s);
    stn.forward(cpu(), sm, tm, c, om);
  };
  run(cache);
  BOOST_CHECK(out == src);  // zero-initialised fc: the identity, exactly
  randomise(g, 10, [](const std::string& name) { return name.find("fc") != std::string::npos ? 0.2 : 0.3; });
  const auto w = dt::random_vec<double>(n, 11);
  auto f = [&] {
    typename nn::Stn<Dim, double, Dev>::Cache c;
    run(c);
    return dt::dot(out, w);
  };
  g.zero_grad();
  std::vector<double> ds(n, 0.0), dt_(n, 0.0);
  run(cache);
  {
    ConstTensorMap<double, R> sm(src.data(), s), tm(tgt.data(), s), wm(w.data(), s);
    TensorMap<double, R> dsm(ds.data(), s), dtm(dt_.data(), s);
    stn.backward(cpu(), sm, tm, cache, wm, &dsm, &dtm);
  }
  check("Stn d source", src, ds, f);
  check("Stn d target", tgt, dt_, f);
  for (Index i = 0; i < g.count(); ++i)
    check_param("Stn d " + g.name_of(i), g.value(g.ref_of(i)), g.grads() + g.ref_of(i).offset, g.ref_of(i).size(), f);
}

// Stn::warp: the forward's TPS applied to an image of another resolution (DiCyc's undeformed-output
// GAN term). At the latent's own grid it is the forward's output, bit for bit; the gradient of
// <forward, w> + <warp(img at 2x), w2> with respect to the source, the target, the image and every
// STN parameter (the warp's part reaching the STN through warp_backward's displacement gradient)
// against central differences.
template <int Dim>
void stn_warp_case(const Shape<Dim + 2>& s, Index control) {
  constexpr int R = Dim + 2;
  using Stn = nn::Stn<Dim, double, Dev>;
  nn::ParameterGroup<double, Dev> g("stn");
  Stn stn(g, "stn_ab", s[0], control, 8, 6);
  core::Rng rng(17);
  g.allocate(cpu(), rng);
  randomise(g, 12, [](const std::string& name) { return name.find("fc") != std::string::npos ? 0.2 : 0.3; });
  const Index n = num_elements(s);
  auto src = dt::random_vec<double>(n, 18), tgt = dt::random_vec<double>(n, 19);
  Shape<R> is = s;  // one channel at twice the resolution
  is[0] = 1;
  for (int d = 1; d <= Dim; ++d) is[d] = 2 * s[d];
  const Index ni = num_elements(is);
  auto img = dt::random_vec<double>(ni, 20);
  std::vector<double> out(n), wout(ni), same(n);
  core::Tensor<double, R, Dev> grid, grid_same;
  auto run = [&](typename Stn::Cache& c) {
    ConstTensorMap<double, R> sm(src.data(), s), tm(tgt.data(), s), im(img.data(), is);
    TensorMap<double, R> om(out.data(), s), wm(wout.data(), is), sam(same.data(), s);
    stn.forward(cpu(), sm, tm, c, om);
    stn.warp(cpu(), c, im, grid, wm);
    stn.warp(cpu(), c, sm, grid_same, sam);
  };
  typename Stn::Cache cache;
  run(cache);
  BOOST_CHECK(same == out);  // the same TPS, the same grid: the forward's output exactly
  BOOST_CHECK(dt::max_abs_diff(wout, img) > 1e-2);  // and it does move the image
  const auto w = dt::random_vec<double>(n, 21), w2 = dt::random_vec<double>(ni, 22);
  auto f = [&] {
    typename Stn::Cache c;
    run(c);
    return dt::dot(out, w) + dt::dot(wout, w2);
  };
  g.zero_grad();
  std::vector<double> ds(n, 0.0), dt_(n, 0.0), di(ni, 0.0);
  run(cache);
  {
    ConstTensorMap<double, R> sm(src.data(), s), tm(tgt.data(), s), wm(w.data(), s), w2m(w2.data(), is), im(img.data(), is);
    TensorMap<double, R> dsm(ds.data(), s), dtm(dt_.data(), s), dim(di.data(), is);
    auto ddisp = core::Tensor<double, 2, Dev>::zeros(cpu(), cache.disp.shape());
    stn.warp_backward(cpu(), im, grid, w2m, &dim, &ddisp);
    stn.backward(cpu(), sm, tm, cache, wm, &dsm, &dtm, &ddisp);
  }
  check("Stn+warp d source", src, ds, f);
  check("Stn+warp d target", tgt, dt_, f);
  check("Stn+warp d image", img, di, f);
  for (Index i = 0; i < g.count(); ++i)
    check_param("Stn+warp d " + g.name_of(i), g.value(g.ref_of(i)), g.grads() + g.ref_of(i).offset, g.ref_of(i).size(), f);
}

}  // namespace

BOOST_AUTO_TEST_CASE(stn_warp_2d) { stn_warp_case<2>(Shape<4>(3, 9, 8, 2), 4); }
BOOST_AUTO_TEST_CASE(stn_warp_3d) { stn_warp_case<3>(Shape<5>(2, 6, 5, 7, 2), 3); }

BOOST_AUTO_TEST_CASE(offset_branch_2d) { offset_case<2>(Shape<4>(3, 7, 6, 2)); }
BOOST_AUTO_TEST_CASE(offset_branch_3d) { offset_case<3>(Shape<5>(2, 5, 4, 3, 2)); }
BOOST_AUTO_TEST_CASE(stn_2d) { stn_case<2>(Shape<4>(3, 9, 8, 2), 4); }
BOOST_AUTO_TEST_CASE(stn_3d) { stn_case<3>(Shape<5>(2, 6, 5, 7, 2), 3); }

BOOST_AUTO_TEST_CASE(parameter_counts_of_the_spec_sizes) {
  nn::ParameterGroup<float, Dev> g("dicyc");
  nn::OffsetBranch<2, float, Dev> o0(g, "off0", 1), o1(g, "off1", 64), o2(g, "off2", 128), o3(g, "off3", 256);
  const Index offsets = g.size();
  // Each branch: C*32*9 + 32 + 32*2*9 + 2.
  Index expect = 0;
  for (Index c : {1, 64, 128, 256}) expect += c * 32 * 9 + 32 + 32 * 2 * 9 + 2;
  BOOST_CHECK_EQUAL(offsets, expect);
  nn::ParameterGroup<float, Dev> s("stn");
  nn::Stn<2, float, Dev> stn(s, "stn_ab", 256, 6);
  BOOST_CHECK_EQUAL(s.size(), 512 * 128 * 9 + 128 + 128 * 64 * 9 + 64 + 64 * 72 + 72);
  dt::expect_error<ConfigError>([&] { s.declare("stn_ab.body.0.weight", {1}, nn::Init::Zeros); }, "duplicate");
  dt::expect_error<ConfigError>([&] { s.values(); }, "before allocate");
}

// The generator's residual block: output shape, gradient checks in double for the input and every
// parameter tensor, and pre-filled input gradients accumulate.
template <int Dim>
void resnet_block_case(const Shape<Dim + 2>& xs) {
  constexpr int R = Dim + 2;
  nn::ParameterGroup<double, Dev> g("g_ab");
  nn::ResnetBlock<Dim, double, Dev> blk(g, "g_ab.res.0", xs[0]);
  core::Rng rng(21);
  g.allocate(cpu(), rng);
  BOOST_CHECK_EQUAL(g.name_of(0), "g_ab.res.0.block.1.weight");
  BOOST_CHECK_EQUAL(g.size(), 2 * (xs[0] * xs[0] * ipow3<Dim>() + xs[0]));
  randomise(g, 22, [](const std::string&) { return 0.3; });
  const Index n = num_elements(xs);
  auto x = dt::random_vec<double>(n, 23);
  const auto w = dt::random_vec<double>(n, 24);
  std::vector<double> y(n);
  auto f = [&] {
    ConstTensorMap<double, R> xm(x.data(), xs);
    TensorMap<double, R> ym(y.data(), xs);
    typename nn::ResnetBlock<Dim, double, Dev>::Cache c;
    blk.forward(cpu(), xm, c, ym);
    return dt::dot(y, w);
  };
  g.zero_grad();
  std::vector<double> dx(n, 0.5);
  {
    ConstTensorMap<double, R> xm(x.data(), xs), wm(w.data(), xs);
    TensorMap<double, R> ym(y.data(), xs), dxm(dx.data(), xs);
    typename nn::ResnetBlock<Dim, double, Dev>::Cache c;
    blk.forward(cpu(), xm, c, ym);
    blk.backward(cpu(), c, wm, &dxm);
  }
  for (auto& v : dx) v -= 0.5;
  check("ResnetBlock d input", x, dx, f);
  for (Index i = 0; i < g.count(); ++i)
    check_param("ResnetBlock d " + g.name_of(i), g.value(g.ref_of(i)), g.grads() + g.ref_of(i).offset,
                g.ref_of(i).size(), f);
}

BOOST_AUTO_TEST_CASE(resnet_block_2d) { resnet_block_case<2>(Shape<4>(3, 6, 5, 2)); }
BOOST_AUTO_TEST_CASE(resnet_block_3d) { resnet_block_case<3>(Shape<5>(2, 4, 3, 5, 2)); }

// The PatchGAN discriminator: the spec's parameter count and reference names, the output shape, and
// gradient checks in double (small width) for the input and every parameter tensor.
BOOST_AUTO_TEST_CASE(patch_discriminator) {
  {
    nn::ParameterGroup<float, Dev> g("d_b");
    nn::PatchDiscriminator<2, float, Dev> d(g, "d_b", 1);
    BOOST_CHECK_EQUAL(g.size(), 2762689);
    BOOST_CHECK_EQUAL(g.name_of(0), "d_b.0.weight");
    BOOST_CHECK_EQUAL(g.name_of(2), "d_b.2.weight");
    BOOST_CHECK_EQUAL(g.name_of(9), "d_b.11.bias");
    // 128x128 -> 64 -> 32 -> 16 -> 15 -> 14 (the 70x70 receptive field's patch map).
    BOOST_CHECK_EQUAL(shape_str(d.output_shape(Shape<4>(1, 128, 128, 1))), shape_str(Shape<4>(1, 14, 14, 1)));
  }
  nn::ParameterGroup<double, Dev> g("d_b");
  nn::PatchDiscriminator<2, double, Dev> d(g, "d_b", 2, 3, 2);
  core::Rng rng(31);
  g.allocate(cpu(), rng);
  randomise(g, 32, [](const std::string&) { return 0.3; });
  const Shape<4> xs(2, 16, 15, 2);
  const auto ys = d.output_shape(xs);
  const Index n = num_elements(xs), m = num_elements(ys);
  auto x = dt::random_vec<double>(n, 33);
  const auto w = dt::random_vec<double>(m, 34);
  std::vector<double> y(m);
  auto f = [&] {
    ConstTensorMap<double, 4> xm(x.data(), xs);
    TensorMap<double, 4> ym(y.data(), ys);
    typename nn::PatchDiscriminator<2, double, Dev>::Cache c;
    d.forward(cpu(), xm, c, ym);
    return dt::dot(y, w);
  };
  g.zero_grad();
  std::vector<double> dx(n, 0.0);
  {
    ConstTensorMap<double, 4> xm(x.data(), xs), wm(w.data(), ys);
    TensorMap<double, 4> ym(y.data(), ys), dxm(dx.data(), xs);
    typename nn::PatchDiscriminator<2, double, Dev>::Cache c;
    d.forward(cpu(), xm, c, ym);
    d.backward(cpu(), xm, c, wm, &dxm);
  }
  check("PatchDiscriminator d input", x, dx, f);
  for (Index i = 0; i < g.count(); ++i)
    check_param("PatchDiscriminator d " + g.name_of(i), g.value(g.ref_of(i)), g.grads() + g.ref_of(i).offset,
                g.ref_of(i).size(), f);
}
