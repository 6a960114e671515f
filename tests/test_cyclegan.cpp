// The CycleGAN model: 2-D and 3-D training with a finite, decreasing cycle loss, the alignment
// variants (NMI, GCC, MIND and a custom hook), input validation, exact resume from a checkpoint,
// and checkpoint errors (wrong version, model, configuration, missing or mismatched tensors,
// truncation), which leave the model untouched.
#define BOOST_TEST_MODULE cyclegan
#include <boost/test/unit_test.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <utility>

#include "dicyc/model.hpp"
#include "support/test_util.hpp"

using namespace dicyc;
using Dev = Eigen::DefaultDevice;
using dt::cpu;

namespace {

/// A smooth blob image (C = 1) of the given spatial size, shifted by `phase`; domain B is a
/// contrast change of domain A (inverted, gamma).
template <int Dim>
std::vector<float> blob(const std::array<Index, Dim>& sz, double phase, bool domain_b) {
  Index n = 1;
  for (Index e : sz) n *= e;
  std::vector<float> v(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) {
    Index r = i;
    double acc = 0;
    for (int d = 0; d < Dim; ++d) {
      const double c = (double(r % sz[d]) + 0.5) / double(sz[d]) - 0.5 - 0.1 * std::sin(phase + d);
      acc += c * c;
      r /= sz[d];
    }
    const double a = std::exp(-acc * 8.0);
    v[static_cast<std::size_t>(i)] = float(domain_b ? 1.0 - 2.0 * std::pow(a, 0.7) : 2.0 * a - 1.0);
  }
  return v;
}

model::CycleGanOptions tiny(std::uint64_t seed = 1) {
  return model::CycleGanOptions()
      .generator(nn::GeneratorOptions().ngf(4).n_blocks(1))
      .ndf(4)
      .n_layers(2)
      .seed(seed)
      .schedule(optim::ScheduleOptions().lr(2e-3).iterations_per_epoch(4).constant_epochs(50).decay_epochs(50));
}


template <int Dim>
std::vector<double> train_for(model::CycleGan<Dim, float, Dev>& m, const std::array<Index, Dim>& sz, int iters, int start = 0) {
  Shape<Dim + 2> s;
  s[0] = 1;
  for (int d = 0; d < Dim; ++d) s[d + 1] = sz[d];
  s[Dim + 1] = 1;
  std::vector<double> cyc;
  for (int it = start; it < start + iters; ++it) {
    const auto x = blob<Dim>(sz, 0.3 * it, false), y = blob<Dim>(sz, 1.0 + 0.7 * it, true);
    ConstTensorMap<float, Dim + 2> xm(x.data(), s), ym(y.data(), s);
    const auto L = m.train_step(xm, ym);
    BOOST_REQUIRE(std::isfinite(L.g_total) && std::isfinite(L.d_a) && std::isfinite(L.d_b));
    cyc.push_back(L.cyc_a + L.cyc_b);
  }
  return cyc;
}

double mean(const std::vector<double>& v, std::size_t b, std::size_t e) {
  double s = 0;
  for (std::size_t i = b; i < e; ++i) s += v[i];
  return s / double(e - b);
}

template <class S>
std::vector<S> all_values(model::CycleGan<2, S, Dev>& m) {
  std::vector<S> v;
  for (auto* g : m.groups()) v.insert(v.end(), g->values(), g->values() + g->size());
  return v;
}

}  // namespace

BOOST_AUTO_TEST_CASE(train_2d_cycle_loss_decreases) {
  model::CycleGan<2, float, Dev> m(cpu(), tiny());
  const auto cyc = train_for<2>(m, {16, 16}, 40);
  BOOST_TEST_MESSAGE("2-D cycle loss: first 5 " << mean(cyc, 0, 5) << ", last 5 " << mean(cyc, 35, 40));
  BOOST_CHECK_LT(mean(cyc, 35, 40), 0.7 * mean(cyc, 0, 5));
  BOOST_CHECK_EQUAL(m.iteration(), 40);
  BOOST_CHECK_EQUAL(m.schedule().epoch(), 10);
  BOOST_CHECK_EQUAL(m.optimizer(0).steps(), 40);
  // Synthesis: the plain generator, the input's shape.
  const auto x = blob<2>({16, 16}, 0.0, false);
  std::vector<float> y(x.size());
  ConstTensorMap<float, 4> xm(x.data(), 1, 16, 16, 1);
  TensorMap<float, 4> ym(y.data(), 1, 16, 16, 1);
  m.translate_ab(xm, ym);
  for (float v : y) BOOST_REQUIRE(std::isfinite(v) && std::abs(v) <= 1.0f);
}

BOOST_AUTO_TEST_CASE(train_3d_cycle_loss_decreases) {
  model::CycleGan<3, float, Dev> m(cpu(), tiny(2).n_layers(1));
  const auto cyc = train_for<3>(m, {12, 12, 8}, 30);
  BOOST_TEST_MESSAGE("3-D cycle loss: first 5 " << mean(cyc, 0, 5) << ", last 5 " << mean(cyc, 25, 30));
  BOOST_CHECK_LT(mean(cyc, 25, 30), 0.8 * mean(cyc, 0, 5));
}

BOOST_AUTO_TEST_CASE(alignment_variants_and_custom_hook) {
  for (auto k : {model::AlignKind::Nmi, model::AlignKind::Gcc, model::AlignKind::Mind}) {
    auto o = tiny(3);
    o.alignment(model::AlignmentOptions().kind(k).weight(0.9).nmi(loss::NmiOptions().bins(16)));
    model::CycleGan<2, float, Dev> m(cpu(), o);
    const Shape<4> s(1, 16, 16, 1);
    const auto x = blob<2>({16, 16}, 0.1, false), y = blob<2>({16, 16}, 0.5, true);
    ConstTensorMap<float, 4> xm(x.data(), s), ym(y.data(), s);
    const auto L = m.train_step(xm, ym);
    BOOST_TEST_INFO(model::align_name(k));
    BOOST_CHECK(L.align_a > 0 && L.align_a < 2 && L.align_b > 0 && L.align_b < 2);
    BOOST_CHECK_CLOSE(L.g_total,
                      L.gan_ab + L.gan_ba + 10 * (L.cyc_a + L.cyc_b) + 0.9 * (L.align_a + L.align_b), 1e-9);
  }
  // A custom hook: called once per direction with the source and the output, its gradient used.
  auto o = tiny(4);
  o.alignment(model::AlignmentOptions().weight(2.0));
  model::CycleGan<2, float, Dev> m(cpu(), o);
  int calls = 0;
  m.set_alignment([&](core::Context<Dev>& ctx, const ConstTensorMap<float, 4>& src, const ConstTensorMap<float, 4>& out,
                      TensorMap<float, 4>* d, double w) {
    ++calls;
    BOOST_CHECK(src.dimensions() == out.dimensions());
    return static_cast<double>(loss::l1<float, 4>(ctx, out, src, {d, nullptr, w}));
  });
  const Shape<4> s(1, 16, 16, 1);
  const auto x = blob<2>({16, 16}, 0.1, false), y = blob<2>({16, 16}, 0.5, true);
  ConstTensorMap<float, 4> xm(x.data(), s), ym(y.data(), s);
  const auto L = m.train_step(xm, ym);
  BOOST_CHECK_EQUAL(calls, 2);
  BOOST_CHECK_GT(L.align_a, 0.0);
}

BOOST_AUTO_TEST_CASE(identity_loss_and_bad_inputs) {
  auto o = tiny(5);
  o.lambda_id(5.0);
  model::CycleGan<2, float, Dev> m(cpu(), o);
  const auto x = blob<2>({16, 16}, 0.1, false), y = blob<2>({16, 16}, 0.5, true);
  ConstTensorMap<float, 4> xm(x.data(), 1, 16, 16, 1), ym(y.data(), 1, 16, 16, 1);
  const auto L = m.train_step(xm, ym);
  BOOST_CHECK(L.id_a > 0 && L.id_b > 0);
  BOOST_CHECK_CLOSE(L.g_total, L.gan_ab + L.gan_ba + 10 * (L.cyc_a + L.cyc_b) + 5 * (L.id_a + L.id_b), 1e-9);
  std::vector<float> odd(18 * 16);
  ConstTensorMap<float, 4> om(odd.data(), 1, 18, 16, 1), two(odd.data(), 2, 12, 12, 1);
  dt::expect_error<ShapeError>([&] { m.train_step(om, ym); }, "multiple of 4 along every spatial axis");
  dt::expect_error<ShapeError>([&] { m.train_step(two, ym); }, "x (domain A) must have 1 channels");
  dt::expect_error<ConfigError>([&] { model::CycleGan<2, float, Dev>(cpu(), tiny().lambda_cyc(-1)); }, "loss weights");
  dt::expect_error<ConfigError>(
      [&] { model::CycleGan<2, float, Dev>(cpu(), tiny().generator(nn::GeneratorOptions().ngf(4).out_channels(2)).lambda_id(1)); },
      "identity loss needs");
  // A non-finite input is caught before any weight changes.
  const auto before = all_values(m);
  std::vector<float> bad(x);
  bad[7] = std::nanf("");
  ConstTensorMap<float, 4> bm(bad.data(), 1, 16, 16, 1);
  dt::expect_error<NumericError>([&] { m.train_step(bm, ym); }, "non-finite loss term 'gan_ab' at iteration 1");
  BOOST_CHECK(all_values(m) == before);
}

// Training N iterations straight equals k, save, load into a fresh model, N - k: bit for bit.
BOOST_AUTO_TEST_CASE(resume_is_exact) {
  const std::string path = "/tmp/dicyc_test_resume.safetensors";
  auto o = tiny(6);
  o.pool_size(3);  // the pools fill up and start swapping within the run
  model::CycleGan<2, float, Dev> straight(cpu(), o);
  const auto c1 = train_for<2>(straight, {16, 16}, 9);
  model::CycleGan<2, float, Dev> first(cpu(), o);
  train_for<2>(first, {16, 16}, 5);
  first.save(path);
  model::CycleGan<2, float, Dev> resumed(cpu(), tiny(99).pool_size(3));  // another seed: everything comes from the file
  resumed.load(path);
  BOOST_CHECK_EQUAL(resumed.iteration(), 5);
  const auto c2 = train_for<2>(resumed, {16, 16}, 4, 5);
  for (int i = 0; i < 4; ++i) BOOST_CHECK_EQUAL(c1[5 + i], c2[i]);
  BOOST_CHECK(all_values(straight) == all_values(resumed));
  for (std::size_t i = 0; i < 4; ++i) {
    const Index n = straight.groups()[i]->size();
    BOOST_CHECK(std::equal(straight.optimizer(i).exp_avg_sq(), straight.optimizer(i).exp_avg_sq() + n,
                           resumed.optimizer(i).exp_avg_sq()));
  }
  const auto a = straight.schedule().state(), b = resumed.schedule().state();
  BOOST_CHECK_EQUAL(a.epoch_sum, b.epoch_sum);
  BOOST_CHECK_EQUAL(a.best, b.best);
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(checkpoint_errors_leave_the_model_untouched) {
  const std::string path = "/tmp/dicyc_test_ckpt.safetensors", bad = "/tmp/dicyc_test_ckpt_bad.safetensors";
  model::CycleGan<2, float, Dev> m(cpu(), tiny(7));
  train_for<2>(m, {16, 16}, 2);
  m.save(path);
  const auto good = dt::read_bytes(path);
  // A model of another configuration.
  model::CycleGan<2, float, Dev> other(cpu(), tiny(7).ndf(8));
  const auto before = all_values(other);
  dt::expect_error<SerializationError>([&] { other.load(path); }, "configuration 'ndf' is 4, but this model has 8");
  BOOST_CHECK(all_values(other) == before);
  // Loss weights, learning rate and epochs may differ (a resumed run that changes them): the
  // weights load, and the model keeps its own values.
  {
    auto o = tiny(7).lambda_cyc(3).alignment(model::AlignmentOptions(tiny(7).alignment()).weight(0.25));
    o.schedule(optim::ScheduleOptions(o.schedule()).lr(1e-4).decay_epochs(7));
    model::CycleGan<2, float, Dev> tuned(cpu(), o);
    tuned.load(path);
    BOOST_CHECK(all_values(tuned) == all_values(m));
    BOOST_CHECK_EQUAL(tuned.options().lambda_cyc(), 3.0);
    BOOST_CHECK_EQUAL(tuned.options().alignment().weight(), 0.25);
    BOOST_CHECK_EQUAL(tuned.options().schedule().lr(), 1e-4);
    BOOST_CHECK(!model::ModelOptions::tunable("ngf") && !model::ModelOptions::tunable("iterations_per_epoch") &&
                model::ModelOptions::tunable("align_weight"));
  }
  // Other dimension / scalar.
  model::CycleGan<3, float, Dev> m3(cpu(), tiny(7));
  dt::expect_error<SerializationError>([&] { m3.load(path); }, "holds a 2-D model, expected 3-D");
  model::CycleGan<2, double, Dev> md(cpu(), tiny(7));
  dt::expect_error<SerializationError>([&] { md.load(path); }, "holds F32 weights, expected F64");
  // Edits of the header: a wrong version, a missing tensor, a wrong shape or dtype.
  std::uint64_t n;
  std::memcpy(&n, good.data(), 8);
  // keep_sums false: the edited file as one written before checksums existed (the checks behind
  // them are what is tested); true: as damage to a file with checksums.
  auto edit = [&](const std::string& from, const std::string& to, bool keep_sums = false) {
    std::string h(reinterpret_cast<const char*>(good.data() + 8), n);
    const auto pos = h.find(from);
    BOOST_REQUIRE_MESSAGE(pos != std::string::npos, "header has no " << from);
    h.replace(pos, from.size(), to);
    if (!keep_sums) {
      auto j = nlohmann::json::parse(h);
      j["__metadata__"].erase("checksums");
      j["__metadata__"].erase("metadata_checksum");
      h = j.dump();
    }
    BOOST_REQUIRE(h.size() <= n);
    h.resize(n, ' ');
    std::vector<unsigned char> r(good);
    std::memcpy(r.data() + 8, h.data(), n);
    dt::write_bytes(bad, r);
  };
  model::CycleGan<2, float, Dev> fresh(cpu(), tiny(8));
  const auto fresh_before = all_values(fresh);
  edit("\"format_version\":\"1\"", "\"format_version\":\"7\"", true);
  dt::expect_error<SerializationError>([&] { fresh.load(bad); }, "the metadata checksum does not match");
  edit("\"g_ba.dec.7.bias\"", "\"g_ba.dec.7.bia_\"", true);
  dt::expect_error<SerializationError>([&] { fresh.load(bad); }, "tensor 'g_ba.dec.7.bias' has a checksum but is missing");
  edit("\"format_version\":\"1\"", "\"format_version\":\"7\"");
  dt::expect_error<SerializationError>([&] { fresh.load(bad); }, "format version 7, this build reads version 1");
  edit("\"g_ba.dec.7.bias\"", "\"g_ba.dec.7.bia_\"");
  dt::expect_error<SerializationError>([&] { fresh.load(bad); }, "missing tensor 'g_ba.dec.7.bias' (expected F32 [1])");
  edit("\"dtype\":\"F32\",\"shape\":[4,1,7,7]", "\"dtype\":\"I32\",\"shape\":[4,1,7,7]");
  dt::expect_error<SerializationError>([&] { fresh.load(bad); }, "expected F32 [4, 1, 7, 7], but found I32 [4, 1, 7, 7]");
  edit("\"shape\":[4,1,7,7]", "\"shape\":[1,4,7,7]");
  dt::expect_error<SerializationError>([&] { fresh.load(bad); }, "expected F32 [4, 1, 7, 7], but found F32 [1, 4, 7, 7]");
  // Truncated in the data, and garbage.
  dt::write_bytes(bad, std::vector<unsigned char>(good.begin(), good.end() - 100));
  dt::expect_error<SerializationError>([&] { fresh.load(bad); }, "outside the data block");
  dt::write_bytes(bad, std::vector<unsigned char>(64, 'z'));
  dt::expect_error<SerializationError>([&] { fresh.load(bad); }, "header length");
  dt::expect_error<IoError>([&] { fresh.load("/tmp/dicyc_no_such_checkpoint"); }, "cannot open");
  BOOST_CHECK(all_values(fresh) == fresh_before);
  BOOST_CHECK_EQUAL(fresh.iteration(), 0);
  // And the good file still loads.
  fresh.load(path);
  BOOST_CHECK(all_values(fresh) == all_values(m));
  // Weights only: the networks change, the optimiser state and the schedule do not.
  model::CycleGan<2, float, Dev> w(cpu(), tiny(11));
  BOOST_CHECK((w.load_weights(path) == std::vector<std::string>{"g_ab", "g_ba", "d_a", "d_b"}));
  BOOST_CHECK(all_values(w) == all_values(m));
  BOOST_CHECK_EQUAL(w.iteration(), 0);
  BOOST_CHECK_EQUAL(w.optimizer(0).steps(), 0);
  {
    io::SafeTensorsWriter only;
    train::add_parameters(only, cpu(), m.group("g_ba"));
    only.write(bad);
    model::CycleGan<2, float, Dev> v(cpu(), tiny(12));
    const std::vector<float> gab(v.group("g_ab").values(), v.group("g_ab").values() + v.group("g_ab").size());
    BOOST_CHECK((v.load_weights(bad) == std::vector<std::string>{"g_ba"}));
    BOOST_CHECK(std::equal(gab.begin(), gab.end(), v.group("g_ab").values()));
    BOOST_CHECK(std::equal(m.group("g_ba").values(), m.group("g_ba").values() + m.group("g_ba").size(),
                           v.group("g_ba").values()));
    io::SafeTensorsWriter none;
    const float one = 1;
    none.add("something", {1}, &one);
    none.write(bad);
    dt::expect_error<SerializationError>([&] { v.load_weights(bad); }, "no parameter of this model's networks");
  }
  std::remove(path.c_str());
  std::remove(bad.c_str());
}

// Half precision: parameters and activations in half, Adam moments and loss sums in float.
BOOST_AUTO_TEST_CASE(half_precision_trains) {
  model::CycleGan<2, half, Dev> m(cpu(), tiny(9));
  const Shape<4> s(1, 16, 16, 1);
  std::vector<double> cyc;
  for (int it = 0; it < 20; ++it) {
    const auto x = dt::convert<half>(dt::convert<double>(blob<2>({16, 16}, 0.3 * it, false)));
    const auto y = dt::convert<half>(dt::convert<double>(blob<2>({16, 16}, 1.0 + 0.7 * it, true)));
    ConstTensorMap<half, 4> xm(x.data(), s), ym(y.data(), s);
    const auto L = m.train_step(xm, ym);
    BOOST_REQUIRE(std::isfinite(L.g_total) && std::isfinite(L.d_a) && std::isfinite(L.d_b));
    cyc.push_back(L.cyc_a + L.cyc_b);
  }
  BOOST_TEST_MESSAGE("half cycle loss: first 5 " << mean(cyc, 0, 5) << ", last 5 " << mean(cyc, 15, 20));
  BOOST_CHECK_LT(mean(cyc, 15, 20), 0.8 * mean(cyc, 0, 5));
  // A half checkpoint round-trips and says F16.
  const std::string path = "/tmp/dicyc_test_half.safetensors";
  m.save(path);
  BOOST_CHECK_EQUAL(io::SafeTensorsFile::read(path).metadata("scalar"), "F16");
  model::CycleGan<2, half, Dev> r(cpu(), tiny(10));
  r.load(path);
  BOOST_CHECK(std::equal(m.group("g_ab").values(), m.group("g_ab").values() + m.group("g_ab").size(),
                         r.group("g_ab").values(), [](half a, half b) { return float(a) == float(b); }));
  std::remove(path.c_str());
}

// bf16 convolutions (ContextSettings::set_conv_bf16, dicyc-train --precision bf16): a training
// step of a 2-D and a 3-D model at the widths the bf16 rule takes (ngf/ndf 16) against the same
// step in float: the losses agree to bf16's precision, the parameters after the step too, and
// they are not bit-identical where the CPU runs bf16 (so the path is reached); the weights stay
// float.
template <int Dim>
void check_bf16_step(const std::array<Index, Dim>& sz) {
  auto o = tiny(11).generator(nn::GeneratorOptions().ngf(16).n_blocks(1)).ndf(16);
  core::Context<Dev> f32, b16;
  b16.set_conv_bf16(true);
  model::CycleGan<Dim, float, Dev> a(f32, o), b(b16, o);
  Shape<Dim + 2> s;
  s[0] = 1;
  for (int d = 0; d < Dim; ++d) s[d + 1] = sz[d];
  s[Dim + 1] = 1;
  const auto x = blob<Dim>(sz, 0.3, false), y = blob<Dim>(sz, 1.7, true);
  ConstTensorMap<float, Dim + 2> xm(x.data(), s), ym(y.data(), s);
  const auto La = a.train_step(xm, ym), Lb = b.train_step(xm, ym);
  const std::string support = ops::bf16_conv_support();
  BOOST_TEST_MESSAGE(Dim << "-D bf16 step on '" << support << "': g_total " << Lb.g_total << " (float " << La.g_total
                         << "), cyc " << Lb.cyc_a << " (" << La.cyc_a << "), d_b " << Lb.d_b << " (" << La.d_b << ")");
  for (auto [p, q] : {std::pair{La.g_total, Lb.g_total}, {La.cyc_a, Lb.cyc_a}, {La.cyc_b, Lb.cyc_b}, {La.d_a, Lb.d_a}, {La.d_b, Lb.d_b}})
    BOOST_CHECK_SMALL(p - q, 2e-2 * (1 + std::abs(p)));
  double worst = 0;
  bool differ = false;
  for (std::size_t g = 0; g < a.groups().size(); ++g) {
    const auto *pa = a.groups()[g]->values(), *pb = b.groups()[g]->values();
    for (Index i = 0; i < a.groups()[g]->size(); ++i) {
      worst = std::max(worst, std::abs(double(pa[i]) - double(pb[i])));
      differ = differ || pa[i] != pb[i];
    }
  }
  // One Adam step moves a parameter by about lr (2e-3) whatever its gradient's size, so a bf16
  // gradient of another sign moves it by at most 2 lr.
  BOOST_CHECK_LE(worst, 2 * 2e-3 + 1e-6);
  if (support == "amx" || support == "avx512_bf16") BOOST_CHECK(differ);
  if (support == "none") BOOST_CHECK(!differ);
  const std::string path = "/tmp/dicyc_test_bf16.safetensors";
  b.save(path);
  BOOST_CHECK_EQUAL(io::SafeTensorsFile::read(path).metadata("scalar"), "F32");
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(bf16_convolutions_step_like_float) {
  check_bf16_step<2>({32, 32});
  check_bf16_step<3>({16, 16, 16});
}

// Weights kept in oneDNN's layouts between passes (ContextSettings::reuse_weight_layouts,
// ops/conv_dnnl.hpp DnnlWeightCache): training steps with the copies reused and with every pass
// reordering its own give the same bits, losses and parameters, step after step (the optimiser's
// writes renew the groups' versions, so no pass meets a stale copy); the copies are used (hits)
// where oneDNN runs convolutions. Then a write through values() between two forwards: the second
// forward sees the new weights.
template <int Dim>
void check_weight_reuse(const std::string& preset, bool bf16, const std::array<Index, Dim>& sz) {
  auto o = model::ModelOptions::preset(preset)
               .generator(nn::GeneratorOptions().ngf(16).n_blocks(1))
               .ndf(16)
               .n_layers(2)
               .seed(5)
               .schedule(optim::ScheduleOptions().lr(2e-3).iterations_per_epoch(4).constant_epochs(50).decay_epochs(50));
  core::Context<Dev> on, off;
  on.set_conv_bf16(bf16);
  off.set_conv_bf16(bf16);
  off.set_reuse_weight_layouts(false);
  auto a = model::make_model<Dim, float, Dev>(on, o);
  auto b = model::make_model<Dim, float, Dev>(off, o);
  Shape<Dim + 2> s;
  s[0] = 1;
  for (int d = 0; d < Dim; ++d) s[d + 1] = sz[d];
  s[Dim + 1] = 1;
#if defined(DICYC_DNNL_CONV)
  const auto before = ops::detail::DnnlWeightCache::instance().stats();
#endif
  for (int it = 0; it < 3; ++it) {
    const auto x = blob<Dim>(sz, 0.3 + 0.5 * it, false), y = blob<Dim>(sz, 1.7 - 0.4 * it, true);
    ConstTensorMap<float, Dim + 2> xm(x.data(), s), ym(y.data(), s);
    const auto La = a->train_step(xm, ym), Lb = b->train_step(xm, ym);
    BOOST_CHECK_EQUAL(La.g_total, Lb.g_total);
    BOOST_CHECK_EQUAL(La.d_a, Lb.d_a);
    BOOST_CHECK_EQUAL(La.d_b, Lb.d_b);
  }
  for (std::size_t g = 0; g < a->groups().size(); ++g) {
    const auto& ga = std::as_const(*a->groups()[g]);
    const auto& gb = std::as_const(*b->groups()[g]);
    BOOST_CHECK_MESSAGE(std::equal(ga.values(), ga.values() + ga.size(), gb.values()),
                        preset << " " << Dim << "-D bf16 " << bf16 << ": group " << ga.name() << " differs");
  }
#if defined(DICYC_DNNL_CONV)
  const auto after = ops::detail::DnnlWeightCache::instance().stats();
  BOOST_TEST_MESSAGE(preset << " " << Dim << "-D bf16 " << bf16 << ": weight copies reused " << after.hits - before.hits
                            << " times, made " << after.misses - before.misses << " times");
  BOOST_CHECK_GT(after.misses, before.misses);
  BOOST_CHECK_GT(after.hits, before.hits);
#endif
}

BOOST_AUTO_TEST_CASE(weight_layouts_reused_between_optimiser_steps) {
  check_weight_reuse<2>("cyclegan", true, {32, 32});
  check_weight_reuse<2>("cyclegan", false, {32, 32});
  check_weight_reuse<2>("nmi-dicyc", true, {32, 32});
  check_weight_reuse<3>("cyclegan", true, {16, 16, 16});
}

BOOST_AUTO_TEST_CASE(weight_written_between_forwards_is_seen) {
  // A PatchGAN (its 4x4 layers run on oneDNN) forwarded, its weights scaled through values(),
  // forwarded again: the second output equals that of a fresh context that never kept a copy.
  for (bool bf16 : {false, true}) {
    core::Context<Dev> ctx, fresh;
    ctx.set_conv_bf16(bf16);
    fresh.set_conv_bf16(bf16);
    fresh.set_reuse_weight_layouts(false);
    nn::ParameterGroup<float, Dev> g("d"), h("d");
    nn::PatchDiscriminator<2, float, Dev> D(g, "d", 1, 16, 2), E(h, "d", 1, 16, 2);
    core::Rng r1(3), r2(3);
    g.allocate(ctx, r1);
    h.allocate(fresh, r2);
    const auto x = blob<2>({32, 32}, 0.4, false);
    ConstTensorMap<float, 4> xm(x.data(), Shape<4>(1, 32, 32, 1));
    const auto out_shape = D.output_shape(xm.dimensions());
    auto run = [&](core::Context<Dev>& c, nn::PatchDiscriminator<2, float, Dev>& d) {
      core::Tensor<float, 4, Dev> y(c, out_shape);
      auto ym = y.map();
      typename nn::PatchDiscriminator<2, float, Dev>::Cache cache;
      d.forward(c, xm, cache, ym);
      return y.to_host();
    };
    (void)run(ctx, D);
    (void)run(ctx, D);  // the kept copies now exist
    float* w = g.values();
    for (Index i = 0; i < g.size(); ++i) w[i] = 2 * w[i] - 0.01f;
    float* v = h.values();
    for (Index i = 0; i < h.size(); ++i) v[i] = 2 * v[i] - 0.01f;
    const auto got = run(ctx, D), want = run(fresh, E);
    BOOST_CHECK_MESSAGE(got == want, "bf16 " << bf16 << ": the forward after the write used stale weights");
  }
}
