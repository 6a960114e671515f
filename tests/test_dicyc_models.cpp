// The paper's seven models through one configuration (ModelOptions::preset + make_model): a few
// iterations each in 2-D and 3-D with finite losses, both EM modes, half precision, exact resume of
// a DiCyc from a checkpoint, and generator weights moving between a DiCyc and a CycleGAN.
#define BOOST_TEST_MODULE dicyc_models
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdio>

#include "dicyc/model.hpp"
#include "support/test_util.hpp"

using namespace dicyc;
using Dev = Eigen::DefaultDevice;
using dt::cpu;

namespace {

const char* kModels[] = {"cyclegan", "gcc-cyclegan", "mind-cyclegan", "nmi-cyclegan", "nmi-dicyc", "gcc-dicyc", "mind-dicyc"};

model::ModelOptions small(const std::string& name, std::uint64_t seed = 1) {
  return model::ModelOptions::preset(name)
      .generator(nn::GeneratorOptions().ngf(4).n_blocks(1))
      .ndf(4)
      .n_layers(1)
      .control_points(3)
      .offset_hidden(4)
      .stn_hidden(8, 4)
      .pool_size(2)
      .seed(seed)
      .schedule(optim::ScheduleOptions().lr(1e-3).iterations_per_epoch(2));
}

template <class S>
std::vector<S> pattern(Index n, double phase, bool domain_b) {
  std::vector<S> v(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    const double a = std::sin(0.23 * double(i) + phase) * std::cos(0.05 * double(i) - phase);
    v[i] = S(domain_b ? 0.8 * a * a - 0.4 : 0.9 * a);
  }
  return v;
}

template <int Dim, class S>
std::vector<double> run(model::ModelBase<Dim, S, Dev>& m, const Shape<Dim + 2>& s, int iters, int start = 0) {
  std::vector<double> totals;
  for (int it = start; it < start + iters; ++it) {
    const auto x = pattern<S>(num_elements(s), 0.4 * it, false), y = pattern<S>(num_elements(s), 1.3 + 0.9 * it, true);
    ConstTensorMap<S, Dim + 2> xm(x.data(), s), ym(y.data(), s);
    const auto L = m.train_step(xm, ym);
    BOOST_REQUIRE_MESSAGE(std::isfinite(L.g_total) && std::isfinite(L.d_a) && std::isfinite(L.d_b),
                          m.name() << " iteration " << it << ": non-finite losses");
    totals.push_back(L.g_total);
    if (m.options().deformation())
      BOOST_CHECK(L.dicyc_a > 0 && L.dicyc_b > 0);
    else
      BOOST_CHECK(L.dicyc_a == 0 && L.dicyc_b == 0);
    if (m.options().alignment().kind() != model::AlignKind::None) BOOST_CHECK(L.align_a > 0 && L.align_b > 0);
  }
  return totals;
}

template <class S>
std::vector<S> all_values(model::ModelBase<2, S, Dev>& m) {
  std::vector<S> v;
  for (auto* g : m.groups()) v.insert(v.end(), g->values(), g->values() + g->size());
  return v;
}

}  // namespace

BOOST_AUTO_TEST_CASE(seven_models_2d_and_3d) {
  for (const char* name : kModels) {
    BOOST_TEST_CONTEXT(name) {
      auto m2 = model::make_model<2, float, Dev>(cpu(), small(name));
      BOOST_CHECK_EQUAL(m2->name(), name);
      run<2, float>(*m2, Shape<4>(1, 16, 16, 1), 3);
      auto m3 = model::make_model<3, float, Dev>(cpu(), small(name));
      run<3, float>(*m3, Shape<5>(1, 12, 8, 8, 1), 2);
    }
  }
  BOOST_CHECK_EQUAL(model::ModelOptions::preset("dicyc").model_name(), "nmi-dicyc");
  dt::expect_error<ConfigError>([] { model::ModelOptions::preset("ssim-dicyc"); }, "unknown model 'ssim-dicyc'");
  dt::expect_error<ConfigError>([] { model::CycleGan<2, float, Dev>(cpu(), model::ModelOptions::preset("dicyc")); },
                                "use model::DiCyc");
}

BOOST_AUTO_TEST_CASE(sequential_em_and_half_precision) {
  auto seq = model::make_model<2, float, Dev>(cpu(), small("nmi-dicyc").em(model::EmMode::Sequential));
  run<2, float>(*seq, Shape<4>(1, 16, 16, 1), 3);
  auto h = model::make_model<2, half, Dev>(cpu(), small("nmi-dicyc"));
  run<2, half>(*h, Shape<4>(1, 16, 16, 1), 3);
  auto h3 = model::make_model<3, half, Dev>(cpu(), small("mind-dicyc"));
  run<3, half>(*h3, Shape<5>(1, 8, 8, 8, 1), 2);
  // x and y of different shapes cannot share an STN.
  std::vector<float> a(256), b(384);
  ConstTensorMap<float, 4> am(a.data(), 1, 16, 16, 1), bm(b.data(), 1, 16, 24, 1);
  dt::expect_error<ShapeError>([&] { seq->train_step(am, bm); }, "x and y must have the same shape");
}

BOOST_AUTO_TEST_CASE(dicyc_resume_is_exact) {
  const std::string path = "/tmp/dicyc_test_dicyc_resume.safetensors";
  const Shape<4> s(1, 16, 16, 1);
  auto straight = model::make_model<2, float, Dev>(cpu(), small("nmi-dicyc", 3));
  const auto t1 = run<2, float>(*straight, s, 7);
  auto first = model::make_model<2, float, Dev>(cpu(), small("nmi-dicyc", 3));
  run<2, float>(*first, s, 4);
  first->save(path);
  auto resumed = model::make_model<2, float, Dev>(cpu(), small("nmi-dicyc", 42));
  resumed->load(path);
  const auto t2 = run<2, float>(*resumed, s, 3, 4);
  for (int i = 0; i < 3; ++i) BOOST_CHECK_EQUAL(t1[4 + i], t2[i]);
  BOOST_CHECK(all_values(*straight) == all_values(*resumed));
  // A CycleGAN checkpoint is not a DiCyc one, but generator weights move both ways.
  auto cg = model::make_model<2, float, Dev>(cpu(), small("nmi-cyclegan", 5));
  dt::expect_error<SerializationError>([&] { cg->load(path); }, "holds a 'dicyc' model, expected 'cyclegan'");
  BOOST_CHECK((cg->load_weights(path) == std::vector<std::string>{"g_ab", "g_ba", "d_a", "d_b"}));
  BOOST_CHECK(std::equal(cg->group("g_ab").values(), cg->group("g_ab").values() + cg->group("g_ab").size(),
                         first->group("g_ab").values()));
  const std::string cgpath = "/tmp/dicyc_test_cg.safetensors";
  cg->save(cgpath);
  auto d2 = model::make_model<2, float, Dev>(cpu(), small("nmi-dicyc", 6));
  BOOST_CHECK((d2->load_weights(cgpath) == std::vector<std::string>{"g_ab", "g_ba", "d_a", "d_b"}));
  std::remove(path.c_str());
  std::remove(cgpath.c_str());
}
