// The ResNet generator and ConvTranspose: the spec's parameter count and reference names, shapes,
// the stage API against the whole forward, inference against the training forward, and
// finite-difference gradient checks in double (small widths) for the input and every parameter.
#define BOOST_TEST_MODULE nn_generator
#include <boost/test/unit_test.hpp>

#include <vector>

#include "dicyc/nn/generator.hpp"
#include "support/nn_check.hpp"
#include "support/test_util.hpp"

using namespace dicyc;
using Dev = Eigen::DefaultDevice;
using dt::cpu;

BOOST_AUTO_TEST_CASE(conv_transpose_module_matches_the_naive_reference) {
  nn::ParameterGroup<double, Dev> g("t");
  const auto o = ops::ConvOptions<2>(3, 2, 3).stride(2).padding(1).output_padding(1);
  nn::ConvTranspose<2, double, Dev> ct(g, "t.up", o);
  core::Rng rng(3);
  g.allocate(cpu(), rng);
  BOOST_CHECK_EQUAL(g.name_of(0), "t.up.weight");
  BOOST_CHECK_EQUAL(shape_str(Shape<4>(3, 2, 3, 3)), shape_str(Shape<4>(g.ref_of(0).shape[0], g.ref_of(0).shape[1],
                                                                        g.ref_of(0).shape[2], g.ref_of(0).shape[3])));
  dt::randomise(g, 4, [](const std::string&) { return 0.5; });
  const Shape<4> xs(3, 5, 4, 2);
  const auto ys = ct.output_shape(xs);
  BOOST_CHECK_EQUAL(shape_str(ys), shape_str(Shape<4>(2, 10, 8, 2)));
  auto x = dt::random_vec<double>(num_elements(xs), 5);
  std::vector<double> y(num_elements(ys));
  ConstTensorMap<double, 4> xm(x.data(), xs);
  TensorMap<double, 4> ym(y.data(), ys);
  ct.forward(cpu(), xm, ym);
  const std::vector<double> w(g.value(g.ref_of(0)), g.value(g.ref_of(0)) + g.ref_of(0).size());
  const std::vector<double> b(g.value(g.ref_of(1)), g.value(g.ref_of(1)) + 2);
  Shape<4> rs;
  const auto ref = dt::naive_conv_transpose<2>(o, xs, x, w, &b, rs);
  BOOST_CHECK_LT(dt::max_abs_diff(y, ref), 1e-12);
}

BOOST_AUTO_TEST_CASE(spec_parameter_count_and_reference_names) {
  nn::ParameterGroup<float, Dev> g("g_ab");
  nn::ResnetGenerator<2, float, Dev> G(g, "g_ab");
  BOOST_CHECK_EQUAL(g.size(), 7825153);
  BOOST_CHECK_EQUAL(g.name_of(0), "g_ab.stem.1.weight");
  BOOST_CHECK_EQUAL(g.name_of(2), "g_ab.down1.0.weight");
  BOOST_CHECK_EQUAL(g.name_of(4), "g_ab.down2.0.weight");
  BOOST_CHECK_EQUAL(g.name_of(6), "g_ab.res.0.block.1.weight");
  BOOST_CHECK_EQUAL(g.name_of(9), "g_ab.res.0.block.5.bias");
  BOOST_CHECK_EQUAL(g.name_of(30), "g_ab.dec.0.weight");
  BOOST_CHECK_EQUAL(g.name_of(32), "g_ab.dec.3.weight");
  BOOST_CHECK_EQUAL(g.name_of(35), "g_ab.dec.7.bias");
  BOOST_CHECK_EQUAL(g.count(), 36);
  // ConvTranspose keeps PyTorch's (Cin, Cout, k, k) weight layout.
  BOOST_CHECK_EQUAL(g.ref_of(30).shape[0], 256);
  BOOST_CHECK_EQUAL(g.ref_of(30).shape[1], 128);
  BOOST_CHECK_EQUAL(shape_str(G.latent_shape(Shape<4>(1, 128, 128, 1))), shape_str(Shape<4>(256, 32, 32, 1)));
  BOOST_CHECK_EQUAL(shape_str(G.output_shape(Shape<4>(1, 128, 128, 1))), shape_str(Shape<4>(1, 128, 128, 1)));
  // A size that is not a multiple of 4 comes back rounded up, as in PyTorch.
  BOOST_CHECK_EQUAL(shape_str(G.output_shape(Shape<4>(1, 181, 217, 1))), shape_str(Shape<4>(1, 184, 220, 1)));
  nn::ParameterGroup<float, Dev> g3("g3");
  nn::ResnetGenerator<3, float, Dev> G3(g3, "g3", nn::GeneratorOptions().ngf(16).n_blocks(2).in_channels(2));
  Index expect = 2 * 16 * 343 + 16 + 16 * 32 * 27 + 32 + 32 * 64 * 27 + 64 + 2 * 2 * (64 * 64 * 27 + 64) +
                 64 * 32 * 27 + 32 + 32 * 16 * 27 + 16 + 16 * 343 + 1;
  BOOST_CHECK_EQUAL(g3.size(), expect);
}

BOOST_AUTO_TEST_CASE(bad_configuration_and_shapes) {
  nn::ParameterGroup<double, Dev> g("g");
  dt::expect_error<ConfigError>([&] { nn::ResnetGenerator<2, double, Dev>(g, "bad", nn::GeneratorOptions().ngf(0)); },
                                "positive channel counts");
  nn::ResnetGenerator<2, double, Dev> G(g, "g", nn::GeneratorOptions().ngf(2).n_blocks(1));
  core::Rng rng(1);
  g.allocate(cpu(), rng);
  std::vector<double> x(2 * 8 * 8);
  ConstTensorMap<double, 4> xm(x.data(), 2, 8, 8, 1);
  nn::ResnetGenerator<2, double, Dev>::Cache c;
  dt::expect_error<ShapeError>([&] { G.forward(cpu(), xm, c); }, "stage 0 expected an input with 1 channels");
  dt::expect_error<ConfigError>([&] { G.stage_forward(cpu(), 4, xm, c.enc.stage[0]); }, "stage index 4 out of range");
  ConstTensorMap<double, 4> fm(x.data(), 2, 8, 8, 1);
  dt::expect_error<ShapeError>([&] { G.decode(cpu(), fm, c.dec); }, "latent map with 8 channels");
}

template <int Dim>
void generator_case(const Shape<Dim + 2>& xs, Index out_channels, bool tanh) {
  constexpr int R = Dim + 2;
  using G_t = nn::ResnetGenerator<Dim, double, Dev>;
  nn::ParameterGroup<double, Dev> g("g");
  G_t G(g, "g", nn::GeneratorOptions().in_channels(xs[0]).out_channels(out_channels).ngf(2).n_blocks(2).tanh(tanh));
  core::Rng rng(11);
  g.allocate(cpu(), rng);
  dt::randomise(g, 12, [](const std::string&) { return 0.4; });
  const auto ys = G.output_shape(xs);
  const Index n = num_elements(xs), m = num_elements(ys);
  auto x = dt::random_vec<double>(n, 13);
  const auto w = dt::random_vec<double>(m, 14);
  std::vector<double> y(m);
  auto f = [&] {
    ConstTensorMap<double, R> xm(x.data(), xs);
    typename G_t::Cache c;
    const auto& out = G.forward(cpu(), xm, c);
    const auto h = out.to_host();
    std::copy(h.begin(), h.end(), y.begin());
    return dt::dot(y, w);
  };
  f();
  // Stage by stage gives the same output; inference gives the same output.
  {
    ConstTensorMap<double, R> xm(x.data(), xs);
    typename G_t::EncoderCache ec;
    for (int i = 0; i < G_t::kStages; ++i) {
      const auto& o = G.stage_forward(cpu(), i, i == 0 ? xm : G.stage_output(i - 1, ec.stage[i - 1]).cmap(), ec.stage[i]);
      if (i == 3) {
        typename G_t::DecoderCache dc;
        const auto h = G.decode(cpu(), o.cmap(), dc).to_host();
        BOOST_CHECK(h == y);
      }
    }
    std::vector<double> yi(m);
    TensorMap<double, R> yim(yi.data(), ys);
    G.infer(cpu(), xm, yim);
    BOOST_CHECK(yi == y);
  }
  g.zero_grad();
  std::vector<double> dx(n, 0.5);
  {
    ConstTensorMap<double, R> xm(x.data(), xs), wm(w.data(), ys);
    TensorMap<double, R> dxm(dx.data(), xs);
    typename G_t::Cache c;
    G.forward(cpu(), xm, c);
    G.backward(cpu(), xm, c, wm, &dxm);
  }
  for (auto& v : dx) v -= 0.5;  // accumulated onto a pre-filled gradient
  dt::check("Generator d input", x, dx, f);
  dt::check_all_params("Generator", g, f);
}

BOOST_AUTO_TEST_CASE(generator_gradients_2d) { generator_case<2>(Shape<4>(1, 12, 8, 2), 1, true); }
BOOST_AUTO_TEST_CASE(generator_gradients_2d_no_tanh) { generator_case<2>(Shape<4>(2, 8, 12, 1), 3, false); }
BOOST_AUTO_TEST_CASE(generator_gradients_3d) { generator_case<3>(Shape<5>(1, 8, 12, 8, 1), 1, true); }

// One generator run twice (x -> y, then y -> z) before a single backward through both: the caches
// are independent, and the gradient of <z, w> matches finite differences.
BOOST_AUTO_TEST_CASE(generator_twice_before_backward) {
  using G_t = nn::ResnetGenerator<2, double, Dev>;
  nn::ParameterGroup<double, Dev> g("g");
  G_t G(g, "g", nn::GeneratorOptions().ngf(2).n_blocks(1));
  core::Rng rng(21);
  g.allocate(cpu(), rng);
  dt::randomise(g, 22, [](const std::string&) { return 0.4; });
  const Shape<4> xs(1, 8, 8, 1);
  const Index n = num_elements(xs);
  auto x = dt::random_vec<double>(n, 23);
  const auto w = dt::random_vec<double>(n, 24);
  auto f = [&] {
    ConstTensorMap<double, 4> xm(x.data(), xs);
    G_t::Cache c1, c2;
    const auto& y = G.forward(cpu(), xm, c1);
    return dt::dot(G.forward(cpu(), y.cmap(), c2).to_host(), w);
  };
  g.zero_grad();
  std::vector<double> dx(n, 0.0);
  {
    ConstTensorMap<double, 4> xm(x.data(), xs), wm(w.data(), xs);
    TensorMap<double, 4> dxm(dx.data(), xs);
    G_t::Cache c1, c2;
    const auto& y = G.forward(cpu(), xm, c1);
    G.forward(cpu(), y.cmap(), c2);
    auto dy = core::Tensor<double, 4, Dev>::zeros(cpu(), xs);
    auto dym = dy.map();
    G.backward(cpu(), y.cmap(), c2, wm, &dym);
    G.backward(cpu(), xm, c1, dy.cmap(), &dxm);
  }
  dt::check("Generator twice d input", x, dx, f);
  dt::check_all_params("Generator twice", g, f);
}
