// Parity with PyTorch (tests/fixtures/make_nn_fixtures.py, the networks of
// python/dicyc/nn.py): the generator (2-D and 3-D) and the PatchGAN in double
// (outputs and every gradient) and in float, and two CycleGAN iterations in float: losses and
// the weights after each Adam step.
#define BOOST_TEST_MODULE nn_parity
#include <boost/test/unit_test.hpp>

#include "dicyc/model.hpp"
#include "support/fixture.hpp"
#include "support/test_util.hpp"

using namespace dicyc;
using Dev = Eigen::DefaultDevice;
using dt::cpu;

namespace {
const dt::Fixture& fx() {
  static const dt::Fixture f("nn.txt");
  return f;
}

/// Copies the fixture's weights "<prefix>.<name>" into every parameter of g.
template <class S>
void load(nn::ParameterGroup<S, Dev>& g, const std::string& prefix) {
  for (Index i = 0; i < g.count(); ++i) {
    const auto& v = fx()[prefix + "." + g.name_of(i)];
    BOOST_REQUIRE_EQUAL(static_cast<Index>(v.size()), g.ref_of(i).size());
    std::transform(v.begin(), v.end(), g.value(g.ref_of(i)), [](double d) { return S(d); });
  }
}

double rel_err(const std::vector<double>& got, const std::vector<double>& want) {
  return dt::max_abs_diff(got, want) / std::max(dt::max_abs(want), 1e-30);
}

template <class S, int R>
std::vector<double> host(const core::Tensor<S, R, Dev>& t) {
  return dt::convert<double>(t.to_host());
}
}  // namespace

template <class S>
void generator_parity(double tol) {
  nn::ParameterGroup<S, Dev> g("g_ab");
  nn::ResnetGenerator<2, S, Dev> G(g, "g_ab", nn::GeneratorOptions().ngf(4).n_blocks(1));
  core::Rng rng(0);
  g.allocate(cpu(), rng);
  load(g, "gen");
  const Shape<4> xs(1, 24, 20, 1);  // torch (1, 1, 20, 24)
  const auto x = dt::convert<S>(fx()["gen.x"]);
  ConstTensorMap<S, 4> xm(x.data(), xs);
  typename nn::ResnetGenerator<2, S, Dev>::Cache c;
  const auto& y = G.forward(cpu(), xm, c);
  BOOST_TEST_INFO("scalar size " << sizeof(S));
  BOOST_CHECK_LT(rel_err(host(G.latent(c.enc)), fx()["gen.latent"]), tol);
  BOOST_CHECK_LT(rel_err(host(y), fx()["gen.y"]), tol);
  const auto w = dt::convert<S>(fx()["gen.wout"]);
  std::vector<S> dx(x.size(), S(0));
  ConstTensorMap<S, 4> wm(w.data(), xs);
  TensorMap<S, 4> dxm(dx.data(), xs);
  G.backward(cpu(), xm, c, wm, &dxm);
  BOOST_CHECK_LT(rel_err(dt::convert<double>(dx), fx()["gen.dx"]), tol * 10);
  for (Index i = 0; i < g.count(); ++i) {
    const auto& r = g.ref_of(i);
    const std::vector<double> gr = dt::convert<double>(std::vector<S>(g.grads() + r.offset, g.grads() + r.offset + r.size()));
    const auto& want = fx()["gen.d." + g.name_of(i)];
    BOOST_TEST_INFO(g.name_of(i));
    // Biases in front of an instance norm have an exactly zero gradient: compare absolutely.
    if (dt::max_abs(want) < 1e-9)
      BOOST_CHECK_LT(dt::max_abs(gr), (std::is_same_v<S, float> ? 1e-4 : 1e-9));
    else
      BOOST_CHECK_LT(rel_err(gr, want), tol * 10);
  }
}

BOOST_AUTO_TEST_CASE(generator_matches_torch_double) { generator_parity<double>(1e-9); }
BOOST_AUTO_TEST_CASE(generator_matches_torch_float) { generator_parity<float>(2e-5); }

BOOST_AUTO_TEST_CASE(generator_3d_matches_torch) {
  nn::ParameterGroup<double, Dev> g("g3");
  nn::ResnetGenerator<3, double, Dev> G(g, "g3", nn::GeneratorOptions().ngf(2).n_blocks(1));
  core::Rng rng(0);
  g.allocate(cpu(), rng);
  load(g, "gen3");
  const Shape<5> xs(1, 16, 12, 8, 1);  // torch (1, 1, D 8, H 12, W 16)
  const auto& x = fx()["gen3.x"];
  ConstTensorMap<double, 5> xm(x.data(), xs);
  nn::ResnetGenerator<3, double, Dev>::Cache c;
  BOOST_CHECK_LT(rel_err(host(G.forward(cpu(), xm, c)), fx()["gen3.y"]), 1e-9);
  std::vector<double> dx(x.size(), 0.0);
  ConstTensorMap<double, 5> wm(fx()["gen3.wout"].data(), xs);
  TensorMap<double, 5> dxm(dx.data(), xs);
  G.backward(cpu(), xm, c, wm, &dxm);
  BOOST_CHECK_LT(rel_err(dx, fx()["gen3.dx"]), 1e-8);
}

BOOST_AUTO_TEST_CASE(discriminator_matches_torch) {
  nn::ParameterGroup<double, Dev> g("d_b");
  nn::PatchDiscriminator<2, double, Dev> D(g, "d_b", 1, 2);
  core::Rng rng(0);
  g.allocate(cpu(), rng);
  load(g, "dis");
  const Shape<4> xs(1, 36, 40, 1);  // torch (1, 1, 40, 36)
  const auto& x = fx()["dis.x"];
  ConstTensorMap<double, 4> xm(x.data(), xs);
  const auto ys = D.output_shape(xs);
  std::vector<double> y(num_elements(ys));
  TensorMap<double, 4> ym(y.data(), ys);
  nn::PatchDiscriminator<2, double, Dev>::Cache c;
  D.forward(cpu(), xm, c, ym);
  BOOST_REQUIRE_EQUAL(y.size(), fx()["dis.y"].size());
  BOOST_CHECK_LT(rel_err(y, fx()["dis.y"]), 1e-9);
  std::vector<double> dx(x.size(), 0.0);
  ConstTensorMap<double, 4> wm(fx()["dis.wout"].data(), ys);
  TensorMap<double, 4> dxm(dx.data(), xs);
  D.backward(cpu(), xm, c, wm, &dxm);
  BOOST_CHECK_LT(rel_err(dx, fx()["dis.dx"]), 1e-8);
  for (Index i = 0; i < g.count(); ++i) {
    const auto& r = g.ref_of(i);
    const std::vector<double> gr(g.grads() + r.offset, g.grads() + r.offset + r.size());
    const auto& want = fx()["dis.d." + g.name_of(i)];
    BOOST_TEST_INFO(g.name_of(i));
    if (dt::max_abs(want) < 1e-9)
      BOOST_CHECK_LT(dt::max_abs(gr), 1e-9);
    else
      BOOST_CHECK_LT(rel_err(gr, want), 1e-8);
  }
}

// Two CycleGAN iterations from PyTorch's initial weights: the loss terms, and the weights after
// each iteration's Adam steps.
BOOST_AUTO_TEST_CASE(cyclegan_iterations_match_torch) {
  using M = model::CycleGan<2, float, Dev>;
  M m(cpu(), model::CycleGanOptions().generator(nn::GeneratorOptions().ngf(2).n_blocks(1)).ndf(2));
  for (const char* n : {"g_ab", "g_ba", "d_a", "d_b"}) load(m.group(n), "cg.init");
  const Shape<4> s(1, 32, 32, 1);
  const auto x = dt::convert<float>(fx()["cg.x"]), y = dt::convert<float>(fx()["cg.y"]);
  ConstTensorMap<float, 4> xm(x.data(), s), ym(y.data(), s);
  for (int it = 1; it <= 2; ++it) {
    std::vector<double> before;
    for (const char* n : {"g_ab", "g_ba", "d_a", "d_b"}) {
      auto& g = m.group(n);
      before.insert(before.end(), g.values(), g.values() + g.size());
    }
    const auto L = m.train_step(xm, ym);
    const auto& want = fx()["cg.it" + std::to_string(it) + ".loss"];  // gan_ab gan_ba cyc_a cyc_b total d_a d_b
    const double got[7] = {L.gan_ab, L.gan_ba, L.cyc_a, L.cyc_b, L.g_total, L.d_a, L.d_b};
    for (int k = 0; k < 7; ++k) {
      BOOST_TEST_INFO("iteration " << it << ", loss term " << k);
      BOOST_CHECK_CLOSE(got[k], want[k], 1e-3);  // percent: 1e-5 relative
    }
    // Weights: each Adam step moves a weight by about lr = 2e-4 whatever its gradient's size, so
    // the updates are compared with an absolute tolerance of 0.25 % of lr (measured: 2e-8). Exceptions: the biases in
    // front of an instance norm, whose gradient is exactly zero in exact arithmetic and rounding
    // noise in float (in PyTorch as here), so Adam moves them by up to lr in a random direction;
    // they are held to 2 lr per step.
    std::size_t off = 0;
    double worst = 0;
    std::string worst_name;
    for (const char* n : {"g_ab", "g_ba", "d_a", "d_b"}) {
      auto& g = m.group(n);
      for (Index i = 0; i < g.count(); ++i) {
        const auto& r = g.ref_of(i);
        const auto& wv = fx()["cg.it" + std::to_string(it) + "." + g.name_of(i)];
        const std::string nm = g.name_of(i);
        const bool pre_norm_bias = nm.find(".bias") != std::string::npos && nm.find("dec.7") == std::string::npos &&
                                   nm.find("d_a.0.") == std::string::npos && nm.find("d_b.0.") == std::string::npos &&
                                   nm.find(".11.") == std::string::npos;
        for (Index k = 0; k < r.size(); ++k) {
          const double err = std::abs(double(g.value(r)[k]) - wv[k]);
          if (pre_norm_bias) {
            if (err > 2 * 2e-4 * it) BOOST_ERROR(nm << "[" << k << "] off by " << err);
            continue;
          }
          if (err > worst) {
            worst = err;
            worst_name = nm + "[" + std::to_string(k) + "]";
          }
        }
        off += static_cast<std::size_t>(r.size());
      }
    }
    BOOST_TEST_MESSAGE("iteration " << it << ": largest weight difference " << worst << " at " << worst_name);
    BOOST_TEST_INFO("iteration " << it << ", worst " << worst_name);
    BOOST_CHECK_LT(worst, 5e-7);
    BOOST_CHECK_EQUAL(off, before.size());
  }
}
