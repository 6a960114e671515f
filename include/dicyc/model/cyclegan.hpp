// dicyc/model/cyclegan.hpp -- the CycleGAN baseline and its alignment-loss variants
// (GCC-, MIND-, NMI-CycleGAN), trained one iteration at a time (dicyc-spec sections 4 and 5).
//
// One train_step(x from A, y from B):
//   generator step (discriminators frozen):
//     y~ = G_AB(x), x~ = G_BA(y), back_x = G_BA(y~), back_y = G_AB(x~)
//     L_G = mean((D_B(y~) - 1)^2) + mean((D_A(x~) - 1)^2)                      least-squares GAN
//         + lambda_cyc (|back_x - x|_1 + |back_y - y|_1)                         cycle, mean abs
//         + lambda_id (|G_AB(y) - y|_1 + |G_BA(x) - x|_1)                         identity (off: 0)
//         + gamma (L_align(x, y~) + L_align(y, x~))                              alignment (off: none)
//     one backward, then Adam on G_AB and G_BA;
//   discriminator step, on fakes drawn from the image pools (50, probability 0.5):
//     L_D_B = 0.5 [mean((D_B(y) - 1)^2) + mean(D_B(pool_B(y~))^2)], the same for D_A;
//     Adam on D_A and D_B.
// The learning rate of every optimiser comes from the schedule (constant, then linear decay, with
// the spec's early stop), which counts iterations and epochs itself; done() says when to stop.
// Networks: ResnetGenerator (g_ab, g_ba) and PatchDiscriminator (d_a, d_b), one parameter group
// and one Adam each, all initialised N(0, 0.02) from the seed (zero biases).
// save()/load(): a safetensors checkpoint with every parameter under its dotted name (PyTorch
// layout), the Adam moments and step counts, the schedule position, the pools with their RNG
// states, and the configuration; resuming reproduces uninterrupted training bit for bit on one
// device. load() checks everything before it changes anything.
#pragma once

#include <cmath>
#include <memory>
#include <sstream>
#include <nlohmann/json.hpp>
#include <string>

#include "dicyc/io/checkpoint.hpp"
#include "dicyc/loss/gan.hpp"
#include "dicyc/model/alignment.hpp"
#include "dicyc/model/image_pool.hpp"
#include "dicyc/nn/generator.hpp"
#include "dicyc/nn/patch_discriminator.hpp"
#include "dicyc/optim/adam.hpp"
#include "dicyc/optim/schedule.hpp"

namespace dicyc::model {

class CycleGanOptions {
 public:
  CycleGanOptions& generator(nn::GeneratorOptions v) { gen_ = v; return *this; }
  CycleGanOptions& ndf(Index v) { ndf_ = v; return *this; }
  CycleGanOptions& n_layers(int v) { n_layers_ = v; return *this; }
  CycleGanOptions& lambda_cyc(double v) { cyc_ = v; return *this; }
  CycleGanOptions& lambda_id(double v) { id_ = v; return *this; }
  CycleGanOptions& alignment(AlignmentOptions v) { align_ = v; return *this; }
  CycleGanOptions& adam(optim::AdamOptions v) { adam_ = v; return *this; }
  CycleGanOptions& schedule(optim::ScheduleOptions v) { sched_ = v; return *this; }
  CycleGanOptions& pool_size(Index v) { pool_ = v; return *this; }
  CycleGanOptions& seed(std::uint64_t v) { seed_ = v; return *this; }
  const nn::GeneratorOptions& generator() const { return gen_; }
  Index ndf() const { return ndf_; }
  int n_layers() const { return n_layers_; }
  double lambda_cyc() const { return cyc_; }
  double lambda_id() const { return id_; }
  const AlignmentOptions& alignment() const { return align_; }
  const optim::AdamOptions& adam() const { return adam_; }
  const optim::ScheduleOptions& schedule() const { return sched_; }
  Index pool_size() const { return pool_; }
  std::uint64_t seed() const { return seed_; }

  /// The configuration as JSON (checkpoint metadata; also what the tools print).
  nlohmann::ordered_json to_json() const {
    nlohmann::ordered_json j;
    j["in_channels"] = gen_.in_channels();
    j["out_channels"] = gen_.out_channels();
    j["ngf"] = gen_.ngf();
    j["n_blocks"] = gen_.n_blocks();
    j["tanh"] = gen_.tanh();
    j["ndf"] = ndf_;
    j["n_layers"] = n_layers_;
    j["lambda_cyc"] = cyc_;
    j["lambda_id"] = id_;
    j["align"] = align_name(align_.kind());
    j["align_weight"] = align_.weight();
    j["nmi_bins"] = align_.nmi().bins();
    j["mind_radius"] = align_.mind().radius();
    j["lr"] = sched_.lr();
    j["beta1"] = adam_.beta1();
    j["beta2"] = adam_.beta2();
    j["constant_epochs"] = sched_.constant_epochs();
    j["decay_epochs"] = sched_.decay_epochs();
    j["iterations_per_epoch"] = sched_.iterations_per_epoch();
    j["early_stop"] = sched_.early_stop();
    j["pool_size"] = pool_;
    j["seed"] = seed_;
    return j;
  }

 private:
  nn::GeneratorOptions gen_;
  Index ndf_ = 64;
  int n_layers_ = 3;
  double cyc_ = 10.0, id_ = 0.0;
  AlignmentOptions align_;
  optim::AdamOptions adam_;
  optim::ScheduleOptions sched_;
  Index pool_ = 50;
  std::uint64_t seed_ = 0;
};

/// The losses of one iteration (unweighted terms; g_total is the weighted sum that was minimised).
struct CycleGanLosses {
  double gan_ab = 0, gan_ba = 0;  // generator LSGAN terms on y~ (D_B) and x~ (D_A)
  double cyc_a = 0, cyc_b = 0;    // |G_BA(G_AB(x)) - x|, |G_AB(G_BA(y)) - y|
  double id_a = 0, id_b = 0;      // |G_BA(x) - x|, |G_AB(y) - y| (0 when lambda_id is 0)
  double align_a = 0, align_b = 0;  // L(x, y~), L(y, x~) (0 without alignment)
  double g_total = 0;
  double d_a = 0, d_b = 0;        // discriminator losses
  double lr = 0;                  // learning rate used
};

template <int Dim, class S, class Device>
class CycleGan {
 public:
  static constexpr int Rank = Dim + 2;
  using T = core::Tensor<S, Rank, Device>;
  using CMap = ConstTensorMap<S, Rank>;
  using Map = TensorMap<S, Rank>;
  using Group = nn::ParameterGroup<S, Device>;
  using Gen = nn::ResnetGenerator<Dim, S, Device>;
  using Disc = nn::PatchDiscriminator<Dim, S, Device>;
  static constexpr const char* kFormat = "dicyc.checkpoint";
  static constexpr int kFormatVersion = 1;

  CycleGan(core::Context<Device>& ctx, CycleGanOptions o = {})
      : ctx_(&ctx),
        o_(o),
        gp_ab_("g_ab"), gp_ba_("g_ba"), dp_a_("d_a"), dp_b_("d_b"),
        g_ab_(gp_ab_, "g_ab", o.generator()),
        g_ba_(gp_ba_, "g_ba", swapped(o.generator())),
        d_a_(dp_a_, "d_a", o.generator().in_channels(), o.ndf(), o.n_layers()),
        d_b_(dp_b_, "d_b", o.generator().out_channels(), o.ndf(), o.n_layers()),
        pool_a_(o.pool_size(), o.seed() ^ 0xa11ceULL),
        pool_b_(o.pool_size(), o.seed() ^ 0xb0bULL),
        schedule_(o.schedule()) {
    DICYC_CHECK(o.lambda_cyc() >= 0 && o.lambda_id() >= 0 && o.alignment().weight() >= 0, ConfigError,
                "CycleGan: loss weights must be >= 0 (lambda_cyc " << o.lambda_cyc() << ", lambda_id " << o.lambda_id()
                                                                   << ", alignment " << o.alignment().weight() << ")");
    DICYC_CHECK(o.lambda_id() == 0 || o.generator().in_channels() == o.generator().out_channels(), ConfigError,
                "CycleGan: the identity loss needs as many input as output channels");
    DICYC_CHECK(o.alignment().kind() == AlignKind::None ||
                    o.generator().in_channels() == o.generator().out_channels(),
                ConfigError, "CycleGan: alignment losses compare source and output: they need equal channel counts");
    if (o.alignment().kind() == AlignKind::Nmi) o.alignment().nmi().validate();
    if (o.alignment().kind() == AlignKind::Mind) o.alignment().mind().validate();
    align_ = make_alignment<Dim, S, Device>(o.alignment());
    core::Rng rng(o.seed());
    for (Group* g : groups()) g->allocate(ctx, rng);
    for (Group* g : groups()) adam_.push_back(std::make_unique<optim::Adam<S, Device>>(ctx, *g, o.adam()));
  }

  const CycleGanOptions& options() const { return o_; }
  /// Replaces the alignment loss (any function; empty: none). Its weight stays options().alignment().weight().
  void set_alignment(AlignmentFn<Dim, S, Device> f) { align_ = std::move(f); }

  Gen& g_ab() { return g_ab_; }
  Gen& g_ba() { return g_ba_; }
  Disc& d_a() { return d_a_; }
  Disc& d_b() { return d_b_; }
  Group& group(const std::string& name) {
    for (Group* g : groups())
      if (g->name() == name) return *g;
    DICYC_CHECK(false, ConfigError, "CycleGan: no parameter group '" << name << "'");
    return gp_ab_;
  }
  std::vector<Group*> groups() { return {&gp_ab_, &gp_ba_, &dp_a_, &dp_b_}; }
  optim::Adam<S, Device>& optimizer(std::size_t i) { return *adam_.at(i); }
  optim::Schedule& schedule() { return schedule_; }
  const optim::Schedule& schedule() const { return schedule_; }
  bool done() const { return schedule_.done(); }
  std::int64_t iteration() const { return schedule_.iteration(); }

  /// One training iteration on a batch x of domain A and a batch y of domain B (unpaired).
  CycleGanLosses train_step(const CMap& x, const CMap& y) {
    auto& ctx = *ctx_;
    DICYC_CHECK(!done(), ConfigError, "CycleGan: the schedule is done (epoch " << schedule_.epoch() << ")");
    check_input("x (domain A)", x.dimensions(), o_.generator().in_channels());
    check_input("y (domain B)", y.dimensions(), o_.generator().out_channels());
    CycleGanLosses L;
    L.lr = schedule_.lr();
    for (auto& a : adam_) a->set_lr(L.lr);

    // ---------------------------------------------------------------- generator step
    gp_ab_.zero_grad();
    gp_ba_.zero_grad();
    dp_a_.requires_grad(false);
    dp_b_.requires_grad(false);
    typename Gen::Cache c_xb, c_ya;  // G_AB(x), G_BA(y)
    const T& fake_b = g_ab_.forward(ctx, x, c_xb);
    const T& fake_a = g_ba_.forward(ctx, y, c_ya);
    T dfake_b = T::zeros(ctx, fake_b.shape()), dfake_a = T::zeros(ctx, fake_a.shape());
    Map dfb = dfake_b.map(), dfa = dfake_a.map();
    {  // GAN terms through the frozen discriminators
      L.gan_ab = gan_generator(d_b_, fake_b, dfb);
      L.gan_ba = gan_generator(d_a_, fake_a, dfa);
    }
    {  // cycle: back_x = G_BA(y~), back_y = G_AB(x~)
      L.cyc_a = cycle(g_ba_, fake_b, x, dfb);
      L.cyc_b = cycle(g_ab_, fake_a, y, dfa);
    }
    if (o_.lambda_id() > 0) {
      L.id_b = identity(g_ab_, y);
      L.id_a = identity(g_ba_, x);
    }
    if (align_ && o_.alignment().weight() > 0) {
      L.align_a = align_(ctx, x, fake_b.cmap(), &dfb, o_.alignment().weight());
      L.align_b = align_(ctx, y, fake_a.cmap(), &dfa, o_.alignment().weight());
    }
    g_ab_.backward(ctx, x, c_xb, dfake_b.cmap(), nullptr);
    g_ba_.backward(ctx, y, c_ya, dfake_a.cmap(), nullptr);
    L.g_total = L.gan_ab + L.gan_ba + o_.lambda_cyc() * (L.cyc_a + L.cyc_b) + o_.lambda_id() * (L.id_a + L.id_b) +
                o_.alignment().weight() * (L.align_a + L.align_b);
    DICYC_CHECK(std::isfinite(L.g_total), NumericError,
                "CycleGan: non-finite generator loss at iteration " << iteration() << " (GAN " << L.gan_ab << ", "
                                                                    << L.gan_ba << "; cycle " << L.cyc_a << ", "
                                                                    << L.cyc_b << "; alignment " << L.align_a << ", "
                                                                    << L.align_b << ")");
    adam_[0]->step(ctx);
    adam_[1]->step(ctx);
    dp_a_.requires_grad(true);
    dp_b_.requires_grad(true);

    // ---------------------------------------------------------------- discriminator step
    dp_a_.zero_grad();
    dp_b_.zero_grad();
    L.d_b = discriminator_step(d_b_, pool_b_, y, fake_b.cmap());
    L.d_a = discriminator_step(d_a_, pool_a_, x, fake_a.cmap());
    adam_[2]->step(ctx);
    adam_[3]->step(ctx);
    schedule_.record(L.g_total);
    return L;
  }

  /// Synthesis with the plain generators (no caches kept): A -> B and B -> A.
  void translate_ab(const CMap& x, Map& y) const { g_ab_.infer(*ctx_, x, y); }
  void translate_ba(const CMap& y, Map& x) const { g_ba_.infer(*ctx_, y, x); }

  // ---------------------------------------------------------------------------------- checkpoints
  void save(const std::string& path) {
    auto& ctx = *ctx_;
    io::SafeTensorsWriter w;
    w.metadata("format", kFormat);
    w.metadata("format_version", std::to_string(kFormatVersion));
    w.metadata("model", "cyclegan");
    w.metadata("dim", std::to_string(Dim));
    w.metadata("scalar", io::dtype_name(io::dtype_of<S>()));
    w.metadata("config", o_.to_json().dump());
    w.metadata("iteration", std::to_string(iteration()));
    const auto st = schedule_.state();
    w.metadata("schedule", std::to_string(st.iteration) + " " + std::to_string(st.epoch) + " " +
                               std::to_string(st.epoch_in_phase) + " " + std::to_string(static_cast<int>(st.phase)) +
                               " " + io::hexfloat(st.best) + " " + std::to_string(st.since_best) + " " +
                               io::hexfloat(st.epoch_sum) + " " + std::to_string(st.epoch_count));
    auto gs = groups();
    for (std::size_t i = 0; i < gs.size(); ++i) {
      io::add_parameters(w, ctx, *gs[i]);
      const Index n = gs[i]->size();
      const auto m = core::to_host(ctx, adam_[i]->exp_avg(), n), v = core::to_host(ctx, adam_[i]->exp_avg_sq(), n);
      w.add("adam." + gs[i]->name() + ".exp_avg", {n}, m.data());
      w.add("adam." + gs[i]->name() + ".exp_avg_sq", {n}, v.data());
      w.metadata("adam." + gs[i]->name() + ".steps", std::to_string(adam_[i]->steps()));
    }
    save_pool(w, "a", pool_a_);
    save_pool(w, "b", pool_b_);
    w.write(path);
  }

  /// Loads network weights only (a checkpoint, or a weights file made from PyTorch state dicts by
  /// scripts/checkpoint_torch.py import): every group with a tensor in the file ("g_ab.*", ...)
  /// must be complete there; optimiser state, schedule and pools are left as they are. Returns
  /// the names of the groups loaded.
  std::vector<std::string> load_weights(const std::string& path) {
    const auto f = io::SafeTensorsFile::read(path);
    std::vector<Group*> present;
    for (Group* g : groups())
      for (const auto& n : f.names())
        if (n.rfind(g->name() + ".", 0) == 0) {
          present.push_back(g);
          break;
        }
    DICYC_CHECK(!present.empty(), SerializationError,
                "weights file '" << path << "': no tensor of g_ab, g_ba, d_a or d_b");
    std::vector<std::vector<std::vector<S>>> staged;
    for (Group* g : present) staged.push_back(io::stage_parameters(f, *g));
    std::vector<std::string> names;
    for (std::size_t i = 0; i < present.size(); ++i) {
      io::commit_parameters(*ctx_, *present[i], staged[i]);
      names.push_back(present[i]->name());
    }
    return names;
  }

  /// Restores a checkpoint written by save() for the same configuration; nothing changes unless
  /// everything in the file checks out.
  void load(const std::string& path) {
    auto& ctx = *ctx_;
    const auto f = io::SafeTensorsFile::read(path);
    const std::string L = "checkpoint '" + path + "'";
    auto meta = [&](const std::string& k) -> const std::string& {
      DICYC_CHECK(f.has_metadata(k), SerializationError, L << ": missing metadata '" << k << "' (not a dicyc checkpoint?)");
      return f.metadata(k);
    };
    DICYC_CHECK(meta("format") == kFormat, SerializationError,
                L << ": format '" << meta("format") << "', expected '" << kFormat << "'");
    DICYC_CHECK(meta("format_version") == std::to_string(kFormatVersion), SerializationError,
                L << ": format version " << meta("format_version") << ", this build reads version " << kFormatVersion);
    DICYC_CHECK(meta("model") == "cyclegan", SerializationError,
                L << ": holds a '" << meta("model") << "' model, expected 'cyclegan'");
    DICYC_CHECK(meta("dim") == std::to_string(Dim), SerializationError,
                L << ": holds a " << meta("dim") << "-D model, expected " << Dim << "-D");
    DICYC_CHECK(meta("scalar") == io::dtype_name(io::dtype_of<S>()), SerializationError,
                L << ": holds " << meta("scalar") << " weights, expected " << io::dtype_name(io::dtype_of<S>()));
    check_config(L, meta("config"));
    // Stage everything on the host.
    auto gs = groups();
    std::vector<std::vector<std::vector<S>>> params;
    std::vector<std::vector<acc_t<S>>> ms, vs;
    std::vector<std::int64_t> steps;
    for (Group* g : gs) {
      params.push_back(io::stage_parameters(f, *g));
      const std::vector<std::int64_t> n{g->size()};
      ms.emplace_back(static_cast<std::size_t>(g->size()));
      vs.emplace_back(static_cast<std::size_t>(g->size()));
      f.read_into("adam." + g->name() + ".exp_avg", n, ms.back().data());
      f.read_into("adam." + g->name() + ".exp_avg_sq", n, vs.back().data());
      steps.push_back(io::parse_int(meta("adam." + g->name() + ".steps"), "adam." + g->name() + ".steps"));
      DICYC_CHECK(steps.back() >= 0, SerializationError, L << ": negative Adam step count");
    }
    optim::Schedule::State st;
    {
      std::istringstream in(meta("schedule"));
      std::string best, sum;
      int phase = -1;
      in >> st.iteration >> st.epoch >> st.epoch_in_phase >> phase >> best >> st.since_best >> sum >> st.epoch_count;
      DICYC_CHECK(!in.fail() && phase >= 0 && phase <= 2, SerializationError,
                  L << ": corrupt schedule state '" << meta("schedule") << "'");
      st.phase = static_cast<optim::Phase>(phase);
      st.best = io::parse_double(best, "schedule best loss");
      st.epoch_sum = io::parse_double(sum, "schedule epoch sum");
    }
    optim::Schedule sched_check(o_.schedule());
    try {
      sched_check.restore(st);
    } catch (const Error& e) {
      DICYC_CHECK(false, SerializationError, L << ": " << e.what());
    }
    auto pa = stage_pool(f, L, "a", pool_a_), pb = stage_pool(f, L, "b", pool_b_);
    // Commit.
    for (std::size_t i = 0; i < gs.size(); ++i) {
      io::commit_parameters(ctx, *gs[i], params[i]);
      const Index n = gs[i]->size();
      core::copy_from_host(ctx, ms[i].data(), n, adam_[i]->exp_avg());
      core::copy_from_host(ctx, vs[i].data(), n, adam_[i]->exp_avg_sq());
      adam_[i]->set_steps(steps[i]);
    }
    schedule_.restore(st);
    commit_pool(pool_a_, std::move(pa));
    commit_pool(pool_b_, std::move(pb));
  }

 private:
  static nn::GeneratorOptions swapped(nn::GeneratorOptions g) {
    const Index in = g.in_channels();
    return g.in_channels(g.out_channels()).out_channels(in);
  }

  void check_input(const char* what, const Shape<Rank>& s, Index channels) const {
    DICYC_CHECK(s[0] == channels, ShapeError,
                "CycleGan: " << what << " must have " << channels << " channels, but has shape " << shape_str(s));
    for (int d = 1; d <= Dim; ++d)
      DICYC_CHECK(s[d] % 4 == 0 && s[d] >= 8, ShapeError,
                  "CycleGan: training images must be at least 8 and a multiple of 4 along every spatial axis "
                  "(two stride-2 levels), but " << what << " has shape " << shape_str(s));
  }

  /// mean((D(fake) - 1)^2) with its gradient accumulated into dfake (D frozen).
  double gan_generator(const Disc& d, const T& fake, Map& dfake) {
    auto& ctx = *ctx_;
    typename Disc::Cache c;
    T pred(ctx, d.output_shape(fake.shape()));
    auto pm = pred.map();
    d.forward(ctx, fake.cmap(), c, pm);
    T dpred = T::zeros(ctx, pred.shape());
    auto dpm = dpred.map();
    const double v = loss::lsgan_generator<S, Rank>(ctx, pred.cmap(), {&dpm, nullptr, 1.0});
    d.backward(ctx, fake.cmap(), c, dpred.cmap(), &dfake);
    return v;
  }

  /// lambda_cyc-weighted |G(fake) - real|_1; its gradient flows back into dfake.
  double cycle(const Gen& g, const T& fake, const CMap& real, Map& dfake) {
    auto& ctx = *ctx_;
    typename Gen::Cache c;
    const T& back = g.forward(ctx, fake.cmap(), c);
    T dback = T::zeros(ctx, back.shape());
    auto dbm = dback.map();
    const double v = loss::l1<S, Rank>(ctx, back.cmap(), real, {&dbm, nullptr, o_.lambda_cyc()});
    g.backward(ctx, fake.cmap(), c, dback.cmap(), &dfake);
    return v;
  }

  /// lambda_id-weighted |G(real) - real|_1 (gradients into G's parameters only).
  double identity(const Gen& g, const CMap& real) {
    auto& ctx = *ctx_;
    typename Gen::Cache c;
    const T& out = g.forward(ctx, real, c);
    T dout = T::zeros(ctx, out.shape());
    auto dom = dout.map();
    const double v = loss::l1<S, Rank>(ctx, out.cmap(), real, {&dom, nullptr, o_.lambda_id()});
    g.backward(ctx, real, c, dout.cmap(), nullptr);
    return v;
  }

  double discriminator_step(const Disc& d, ImagePool<S, Rank, Device>& pool, const CMap& real, const CMap& fake) {
    auto& ctx = *ctx_;
    const T pooled = pool.query(ctx, fake);
    typename Disc::Cache cr, cf;
    T pr(ctx, d.output_shape(real.dimensions())), pf(ctx, d.output_shape(pooled.shape()));
    auto prm = pr.map();
    auto pfm = pf.map();
    d.forward(ctx, real, cr, prm);
    d.forward(ctx, pooled.cmap(), cf, pfm);
    T dr = T::zeros(ctx, pr.shape()), df = T::zeros(ctx, pf.shape());
    auto drm = dr.map();
    auto dfm = df.map();
    const double v = loss::lsgan_discriminator<S, Rank>(ctx, pr.cmap(), pf.cmap(), {&drm, &dfm, 1.0});
    d.backward(ctx, real, cr, dr.cmap(), nullptr);
    d.backward(ctx, pooled.cmap(), cf, df.cmap(), nullptr);
    return v;
  }

  void save_pool(io::SafeTensorsWriter& w, const std::string& tag, const ImagePool<S, Rank, Device>& p) {
    w.metadata("pool." + tag + ".size", std::to_string(p.size()));
    w.metadata("pool." + tag + ".rng", io::rng_text(p.rng()));
    for (Index i = 0; i < p.size(); ++i) {
      const auto& im = p.images()[static_cast<std::size_t>(i)];
      const auto h = im.to_host();
      std::vector<std::int64_t> shape;
      for (int d = Rank; d-- > 0;) shape.push_back(im.shape()[d]);
      w.add("pool." + tag + "." + std::to_string(i), shape, h.data());
    }
  }
  struct StagedPool {
    std::vector<std::vector<S>> images;
    Shape<Rank> shape;
    core::Rng::Snapshot rng;
  };
  StagedPool stage_pool(const io::SafeTensorsFile& f, const std::string& L, const std::string& tag,
                        const ImagePool<S, Rank, Device>& p) const {
    StagedPool s;
    const std::string key = "pool." + tag;
    DICYC_CHECK(f.has_metadata(key + ".size") && f.has_metadata(key + ".rng"), SerializationError,
                L << ": missing metadata for image pool " << tag);
    const auto n = io::parse_int(f.metadata(key + ".size"), key + ".size");
    DICYC_CHECK(n >= 0 && n <= p.capacity(), SerializationError,
                L << ": image pool " << tag << " holds " << n << " images, the capacity is " << p.capacity());
    s.rng = io::parse_rng(f.metadata(key + ".rng"), key + ".rng");
    for (std::int64_t i = 0; i < n; ++i) {
      const std::string name = key + "." + std::to_string(i);
      const auto& info = f.info(name);
      DICYC_CHECK(static_cast<int>(info.shape.size()) == Rank && info.shape[0] == 1, SerializationError,
                  L << ": tensor '" << name << "': expected a single image of rank " << Rank << ", found "
                    << io::shape_string(info.shape));
      Shape<Rank> sh;
      for (int d = 0; d < Rank; ++d) sh[d] = info.shape[Rank - 1 - d];
      if (i == 0) s.shape = sh;
      DICYC_CHECK(sh == s.shape, SerializationError, L << ": pooled images of different shapes");
      std::vector<S> h(static_cast<std::size_t>(num_elements(sh)));
      f.read_into(name, info.shape, h.data());
      s.images.push_back(std::move(h));
    }
    return s;
  }
  void commit_pool(ImagePool<S, Rank, Device>& p, StagedPool s) {
    std::vector<T> ims;
    for (auto& h : s.images) ims.push_back(T::from_host(*ctx_, s.shape, h));
    p.restore(std::move(ims), s.rng);
  }

  void check_config(const std::string& L, const std::string& text) const {
    nlohmann::json saved;
    try {
      saved = nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      DICYC_CHECK(false, SerializationError, L << ": corrupt configuration metadata: " << e.what());
    }
    const nlohmann::json ours = nlohmann::json::parse(o_.to_json().dump());
    // Architecture and training settings must match for an exact resume; the seed need not.
    for (auto it = ours.begin(); it != ours.end(); ++it) {
      if (it.key() == "seed") continue;
      DICYC_CHECK(saved.contains(it.key()), SerializationError,
                  L << ": configuration has no '" << it.key() << "' (expected " << it.value().dump() << ")");
      DICYC_CHECK(saved[it.key()] == it.value(), SerializationError,
                  L << ": configuration '" << it.key() << "' is " << saved[it.key()].dump() << ", but this model has "
                    << it.value().dump());
    }
  }

  core::Context<Device>* ctx_;
  CycleGanOptions o_;
  Group gp_ab_, gp_ba_, dp_a_, dp_b_;
  Gen g_ab_, g_ba_;
  Disc d_a_, d_b_;
  ImagePool<S, Rank, Device> pool_a_, pool_b_;
  optim::Schedule schedule_;
  std::vector<std::unique_ptr<optim::Adam<S, Device>>> adam_;
  AlignmentFn<Dim, S, Device> align_;
};

}  // namespace dicyc::model
