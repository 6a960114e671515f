// dicyc/model/base.hpp -- what every model of the trainer shares: the two ResNet generators and the
// two PatchGAN discriminators, one parameter group and one Adam per network part, the image pools,
// the schedule, the alignment hook, the loss helpers and the checkpoints.
//
// Parameter groups (each its own Adam): g_ab, g_ba (generators), d_a, d_b (discriminators), and for
// DiCyc o_ab, o_ba (offset branches, updated in the M step with the generators) and s_ab, s_ba
// (STNs, the E step). Every group is initialised N(0, 0.02) with zero biases (the offset branches'
// and STNs' last layers zero) from the seed, in that order.
// Checkpoints: the model exposes its state (groups(), optimizer(i), schedule(), pool_a(), pool_b(),
// communicator(), context()); train/checkpoint.hpp decides what a checkpoint holds and writes and
// reads it. save(), load() and load_weights() here are thin calls into it (dicyc/model.hpp
// includes it; this layer includes nothing from io/).
//
// Data parallelism (set_communicator): every rank trains on its own batches; after each backward,
// each parameter group's flat gradient buffer is averaged over the ranks before its Adam step (the
// generator, offset, STN and discriminator steps alike), so every rank keeps identical weights and
// optimiser state; the loss terms are averaged too (the logs and the schedule see the mean, and a
// non-finite term on any rank stops every rank). The image pools stay per rank (seeded by the
// seed and the rank). save() and load() are then collective (train/checkpoint.hpp).
#pragma once

#include <cmath>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "dicyc/dist/device.hpp"
#include "dicyc/loss/gan.hpp"
#include "dicyc/model/image_pool.hpp"
#include "dicyc/model/options.hpp"
#include "dicyc/nn/generator.hpp"
#include "dicyc/nn/patch_discriminator.hpp"

namespace dicyc::model {
template <int Dim, class S, class Device>
class ModelBase;
}  // namespace dicyc::model

namespace dicyc::train {  // train/checkpoint.hpp (included by dicyc/model.hpp) defines them
template <int Dim, class S, class Device>
void save_checkpoint(model::ModelBase<Dim, S, Device>& m, const std::string& path,
                     const std::map<std::string, std::string>& user);
template <int Dim, class S, class Device>
void load_checkpoint(model::ModelBase<Dim, S, Device>& m, const std::string& path);
template <int Dim, class S, class Device>
std::vector<std::string> load_weights(model::ModelBase<Dim, S, Device>& m, const std::string& path);
}  // namespace dicyc::train

namespace dicyc::model {

template <int Dim, class S, class Device>
class ModelBase {
 public:
  static constexpr int Rank = Dim + 2;
  using T = core::Tensor<S, Rank, Device>;
  using CMap = ConstTensorMap<S, Rank>;
  using Map = TensorMap<S, Rank>;
  using Group = nn::ParameterGroup<S, Device>;
  using Gen = nn::ResnetGenerator<Dim, S, Device>;
  using Disc = nn::PatchDiscriminator<Dim, S, Device>;

  virtual ~ModelBase() = default;
  ModelBase(const ModelBase&) = delete;
  ModelBase& operator=(const ModelBase&) = delete;

  /// One training iteration on a batch x of domain A and a batch y of domain B (unpaired).
  virtual StepLosses train_step(const CMap& x, const CMap& y) = 0;

  const ModelOptions& options() const { return o_; }
  std::string name() const { return o_.model_name(); }
  /// Replaces the alignment loss (any function; empty: none). Its weight stays options().alignment().weight().
  void set_alignment(AlignmentFn<Dim, S, Device> f) { align_ = std::move(f); }

  // ------------------------------------------------------------------------ data parallelism
  /// Trains data-parallel over c's ranks (c must outlive the model; the default is one process).
  /// Collective: call it on every rank, on models of the same configuration, before training or
  /// load(). Rank 0's weights are broadcast to the others and each rank's pools are reseeded from
  /// the seed and the rank (rank 0 keeps the single-process pools' seeds).
  void set_communicator(dist::Communicator& c) {
    DICYC_CHECK(iteration() == 0 && pool_a_.size() == 0 && pool_b_.size() == 0, ConfigError,
                o_.model_name() << ": set_communicator() must come before training and before load() (iteration "
                                << iteration() << ")");
    const std::string cfg = o_.to_json().dump();
    std::uint64_t h = dist::fnv1a(cfg.data(), cfg.size());
    for (auto& g : groups_) {
      const auto n = static_cast<std::uint64_t>(g->size());
      h = dist::fnv1a(&n, sizeof n, h);
    }
    DICYC_CHECK(dist::same_on_all_ranks(c, h), ConfigError,
                o_.model_name() << ": the ranks' models differ in configuration (seen on rank " << c.rank()
                                << "); every rank must build the same model");
    comm_ = &c;
    const auto r = static_cast<std::uint64_t>(c.rank());
    pool_a_.restore({}, core::Rng(pool_seed(0xa11ceULL, r)).snapshot());
    pool_b_.restore({}, core::Rng(pool_seed(0xb0bULL, r)).snapshot());
    for (auto& g : groups_) dist::broadcast(*ctx_, c, g->values(), g->size(), 0);
  }
  dist::Communicator& communicator() const { return *comm_; }
  /// FNV-1a of every parameter, Adam moment and step count (equal on all ranks of a healthy run).
  std::uint64_t state_hash() const {
    std::uint64_t h = 1469598103934665603ULL;
    for (std::size_t i = 0; i < groups_.size(); ++i) {
      const Index n = groups_[i]->size();
      const auto v = core::to_host(*ctx_, static_cast<const S*>(groups_[i]->values()), n);
      const auto m = core::to_host(*ctx_, static_cast<const acc_t<S>*>(adam_[i]->exp_avg()), n);
      const auto q = core::to_host(*ctx_, static_cast<const acc_t<S>*>(adam_[i]->exp_avg_sq()), n);
      const std::int64_t t = adam_[i]->steps();
      h = dist::fnv1a(v.data(), v.size() * sizeof(S), h);
      h = dist::fnv1a(m.data(), m.size() * sizeof(acc_t<S>), h);
      h = dist::fnv1a(q.data(), q.size() * sizeof(acc_t<S>), h);
      h = dist::fnv1a(&t, sizeof t, h);
    }
    return h;
  }
  /// Collective: whether every rank holds the same weights and optimiser state (state_hash()).
  bool ranks_consistent() {
    return comm_->size() == 1 || dist::same_on_all_ranks(*comm_, state_hash());
  }

  Gen& g_ab() { return g_ab_; }
  Gen& g_ba() { return g_ba_; }
  Disc& d_a() { return d_a_; }
  Disc& d_b() { return d_b_; }
  std::vector<Group*> groups() {
    std::vector<Group*> r;
    for (auto& g : groups_) r.push_back(g.get());
    return r;
  }
  Group& group(const std::string& name) { return *groups_.at(group_index(name)); }
  optim::Adam<S, Device>& optimizer(std::size_t i) { return *adam_.at(i); }
  optim::Adam<S, Device>& optimizer(const std::string& group_name) { return *adam_.at(group_index(group_name)); }
  optim::Schedule& schedule() { return schedule_; }
  const optim::Schedule& schedule() const { return schedule_; }
  bool done() const { return schedule_.done(); }
  std::int64_t iteration() const { return schedule_.iteration(); }

  /// The D step: both discriminators on real images and on fakes drawn through the pools, then
  /// their Adam steps (only d_a and d_b change). extra_a / extra_b (null: none; DiCyc's warped
  /// undeformed outputs with ModelOptions::lambda_gan_plain > 0) are further fakes, unpooled: the
  /// loss is then 0.5 mean((D(real) - 1)^2) + 0.25 mean(D(pooled)^2) + 0.25 mean(D(extra)^2).
  void discriminator_update(StepLosses& L, const CMap& x, const CMap& y, const CMap& fake_a, const CMap& fake_b,
                            const CMap* extra_a = nullptr, const CMap* extra_b = nullptr) {
    group("d_a").requires_grad(true);
    group("d_b").requires_grad(true);
    group("d_a").zero_grad();
    group("d_b").zero_grad();
    L.d_b = discriminator_step(d_b_, pool_b_, y, fake_b, extra_b);
    L.d_a = discriminator_step(d_a_, pool_a_, x, fake_a, extra_a);
    if (comm_->size() > 1) {
      double d[2] = {L.d_a, L.d_b};
      dist::mean_over_ranks(*comm_, d, 2);
      L.d_a = d[0];
      L.d_b = d[1];
    }
    step("d_a");
    step("d_b");
  }
  /// Synthesis with the plain generators (no caches kept): A -> B and B -> A. Any size whose spatial
  /// extents are multiples of 4 comes back at its own size.
  void translate_ab(const CMap& x, Map& y) const { g_ab_.infer(*ctx_, x, y); }
  void translate_ba(const CMap& y, Map& x) const { g_ba_.infer(*ctx_, y, x); }

  // ---------------------------------------------------------------------------------- checkpoints
  /// Writes a checkpoint atomically (train::save_checkpoint). `extra` entries are stored as metadata
  /// "user.<key>" (train::RunInfo keeps the data preparation and run settings there); load()
  /// ignores them. Collective with several ranks.
  void save(const std::string& path, const std::map<std::string, std::string>& extra = {}) {
    train::save_checkpoint(*this, path, extra);
  }
  /// Restores a checkpoint written by save() for the same configuration; nothing changes unless
  /// everything in the file checks out (train::load_checkpoint; collective with several ranks).
  void load(const std::string& path) { train::load_checkpoint(*this, path); }
  /// Loads network weights only (train::load_weights): a checkpoint of any of the models, or a
  /// weights file made from PyTorch state dicts. A DiCyc's generators (g_ab, g_ba) and a CycleGAN's
  /// are the same networks, so their weights move between the two. Returns the groups loaded.
  std::vector<std::string> load_weights(const std::string& path) { return train::load_weights(*this, path); }

  // ------------------------------------------------------------------- state, for checkpoints
  core::Context<Device>& context() const { return *ctx_; }
  ImagePool<S, Rank, Device>& pool_a() { return pool_a_; }
  ImagePool<S, Rank, Device>& pool_b() { return pool_b_; }


 protected:
  ModelBase(core::Context<Device>& ctx, const ModelOptions& o)
      : ctx_(&ctx),
        o_(o),
        groups_(make_groups(o)),
        g_ab_(*groups_[0], "g_ab", o.generator()),
        g_ba_(*groups_[1], "g_ba", swapped(o.generator())),
        d_a_(*groups_[2], "d_a", o.generator().in_channels(), o.ndf(), o.n_layers()),
        d_b_(*groups_[3], "d_b", o.generator().out_channels(), o.ndf(), o.n_layers()),
        pool_a_(o.pool_size(), o.seed() ^ 0xa11ceULL),
        pool_b_(o.pool_size(), o.seed() ^ 0xb0bULL),
        schedule_(o.schedule()) {
    DICYC_CHECK(o.lambda_cyc() >= 0 && o.lambda_id() >= 0 && o.alignment().weight() >= 0 && o.lambda_dicyc() >= 0,
                ConfigError,
                "model: loss weights must be >= 0 (lambda_cyc " << o.lambda_cyc() << ", lambda_dicyc " << o.lambda_dicyc()
                                                                << ", lambda_id " << o.lambda_id() << ", alignment "
                                                                << o.alignment().weight() << ")");
    DICYC_CHECK(o.lambda_gan_plain() >= 0 && std::isfinite(o.lambda_gan_plain()), ConfigError,
                "model: the undeformed outputs' adversarial weight must be >= 0, got " << o.lambda_gan_plain());
    DICYC_CHECK(o.lambda_gan_plain() == 0 || o.deformation(), ConfigError,
                "model: an adversarial weight on the undeformed outputs (" << o.lambda_gan_plain() << ") needs a DiCyc "
                    "model: a " << o.model_name() << " has only one output, which its discriminators already see");
    DICYC_CHECK(o.lambda_id() == 0 || o.generator().in_channels() == o.generator().out_channels(), ConfigError,
                "model: the identity loss needs as many input as output channels");
    DICYC_CHECK(o.alignment().kind() == AlignKind::None ||
                    o.generator().in_channels() == o.generator().out_channels(),
                ConfigError, "model: alignment losses compare source and output: they need equal channel counts");
    if (o.alignment().kind() == AlignKind::Nmi) o.alignment().nmi().validate();
    if (o.alignment().kind() == AlignKind::Mind) o.alignment().mind().validate();
    align_ = make_alignment<Dim, S, Device>(o.alignment());
  }

  /// Called by the derived model's constructor once every module has declared its parameters.
  void allocate() {
    core::Rng rng(o_.seed());
    for (auto& g : groups_) g->allocate(*ctx_, rng);
    for (auto& g : groups_) adam_.push_back(std::make_unique<optim::Adam<S, Device>>(*ctx_, *g, o_.adam()));
  }

  /// Averages group `name`'s gradients over the ranks, then takes its Adam step.
  void step(const char* name) {
    const std::size_t i = group_index(name);
    if (comm_->size() > 1) dist::average(*ctx_, *comm_, groups_[i]->grads(), groups_[i]->size());
    adam_[i]->step(*ctx_);
  }
  /// The loss terms and the total as their means over the ranks (NaN anywhere: NaN everywhere).
  void reduce_losses(StepLosses& L) const {
    if (comm_->size() == 1) return;
    double v[kLossFieldCount];
    std::size_t n = 0;
    for (const auto& f : kLossFields)
      if (f.kind == LossKind::GeneratorTerm || f.kind == LossKind::GeneratorTotal) v[n++] = L.*f.member;
    dist::mean_over_ranks(*comm_, v, n);
    n = 0;
    for (const auto& f : kLossFields)
      if (f.kind == LossKind::GeneratorTerm || f.kind == LossKind::GeneratorTotal) L.*f.member = v[n++];
  }
  std::uint64_t pool_seed(std::uint64_t tag, std::uint64_t rank) const {
    std::uint64_t s = o_.seed() ^ tag;
    if (rank > 0) s ^= (rank * 0x9E3779B97F4A7C15ULL) ^ 0x5eedULL;
    return s;
  }

  std::size_t group_index(const std::string& name) const {
    for (std::size_t i = 0; i < groups_.size(); ++i)
      if (groups_[i]->name() == name) return i;
    DICYC_CHECK(false, ConfigError, "model: no parameter group '" << name << "'");
    return 0;
  }

  static std::vector<std::unique_ptr<Group>> make_groups(const ModelOptions& o) {
    std::vector<std::unique_ptr<Group>> g;
    for (const char* n : {"g_ab", "g_ba", "d_a", "d_b"}) g.push_back(std::make_unique<Group>(n));
    if (o.deformation())
      for (const char* n : {"o_ab", "o_ba", "s_ab", "s_ba"}) g.push_back(std::make_unique<Group>(n));
    return g;
  }
  static nn::GeneratorOptions swapped(nn::GeneratorOptions g) {
    const Index in = g.in_channels();
    return g.in_channels(g.out_channels()).out_channels(in);
  }

  void check_input(const char* what, const Shape<Rank>& s, Index channels) const {
    DICYC_CHECK(s[0] == channels, ShapeError,
                o_.model_name() << ": " << what << " must have " << channels << " channels, but has shape " << shape_str(s));
    for (int d = 1; d <= Dim; ++d)
      DICYC_CHECK(s[d] % 4 == 0 && s[d] >= 8, ShapeError,
                  o_.model_name() << ": training images must be at least 8 and a multiple of 4 along every spatial axis "
                                     "(two stride-2 levels), but " << what << " has shape " << shape_str(s));
  }
  /// Runs a pass whose NumericError (a loss's or the TPS's input check) may come on this rank
  /// alone: with several ranks it is kept for check_total(), which then stops every rank, rather
  /// than leaving the other ranks waiting in the next all-reduce.
  template <class F>
  void guarded(F&& pass) {
    if (comm_->size() == 1) return pass();
    try {
      pass();
    } catch (const NumericError& e) {
      pending_numeric_ = e.what();
    }
  }
  /// Averages the loss terms over the ranks, then throws NumericError (on every rank) when one
  /// is not finite or a guarded() pass failed on some rank.
  void check_total(StepLosses& L) const {
    if (!pending_numeric_.empty()) L.g_total = std::numeric_limits<double>::quiet_NaN();
    reduce_losses(L);
    if (!pending_numeric_.empty()) {
      const std::string m = pending_numeric_;
      pending_numeric_.clear();
      throw NumericError(m);
    }
    if (std::isfinite(L.g_total)) return;
    std::string first = "g_total";
    for (const auto& f : kLossFields)
      if (f.kind == LossKind::GeneratorTerm && !std::isfinite(L.*f.member)) {
        first = f.name;
        break;
      }
    DICYC_CHECK(false, NumericError,
                o_.model_name() << ": non-finite loss term '" << first << "' at iteration " << iteration() << " (GAN "
                                << L.gan_ab << ", " << L.gan_ba << "; cycle " << L.cyc_a << ", " << L.cyc_b
                                << "; deformed cycle " << L.dicyc_a << ", " << L.dicyc_b << "; alignment "
                                << L.align_a << ", " << L.align_b << ")");
  }
  double total(const StepLosses& L) const {
    return L.gan_ab + L.gan_ba + o_.lambda_cyc() * (L.cyc_a + L.cyc_b) + o_.lambda_dicyc() * (L.dicyc_a + L.dicyc_b) +
           o_.lambda_id() * (L.id_a + L.id_b) + o_.alignment().weight() * (L.align_a + L.align_b) +
           o_.lambda_gan_plain() * (L.gan_plain_ab + L.gan_plain_ba);
  }
  void begin_step(StepLosses& L, const CMap& x, const CMap& y) {
    DICYC_CHECK(!done(), ConfigError, o_.model_name() << ": the schedule is done (epoch " << schedule_.epoch() << ")");
    check_input("x (domain A)", x.dimensions(), o_.generator().in_channels());
    check_input("y (domain B)", y.dimensions(), o_.generator().out_channels());
    L.lr = schedule_.lr();
    for (auto& a : adam_) a->set_lr(L.lr);
  }

  /// mean((D(fake) - 1)^2) with weight times its gradient accumulated into dfake (D frozen).
  double gan_generator(const Disc& d, const T& fake, Map& dfake, double weight = 1.0) {
    auto& ctx = *ctx_;
    typename Disc::Cache c;
    T pred(ctx, d.output_shape(fake.shape()));
    auto pm = pred.map();
    d.forward(ctx, fake.cmap(), c, pm);
    T dpred = T::zeros(ctx, pred.shape());
    auto dpm = dpred.map();
    const double v = loss::lsgan_generator<S, Rank>(ctx, pred.cmap(), {&dpm, nullptr, weight});
    d.backward(ctx, fake.cmap(), c, dpred.cmap(), &dfake);
    return v;
  }

  /// weight * |G(fake) - real|_1 through the plain generator; its gradient flows back into dfake.
  double cycle(const Gen& g, const T& fake, const CMap& real, Map& dfake, double weight) {
    auto& ctx = *ctx_;
    typename Gen::Cache c;
    const T& back = g.forward(ctx, fake.cmap(), c);
    T dback = T::zeros(ctx, back.shape());
    auto dbm = dback.map();
    const double v = loss::l1<S, Rank>(ctx, back.cmap(), real, {&dbm, nullptr, weight});
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

  /// The LSGAN discriminator loss on real and pooled fakes; gradients into d's group.
  double discriminator_step(const Disc& d, ImagePool<S, Rank, Device>& pool, const CMap& real, const CMap& fake,
                            const CMap* extra = nullptr) {
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
    if (!extra) {
      const double v = loss::lsgan_discriminator<S, Rank>(ctx, pr.cmap(), pf.cmap(), {&drm, &dfm, 1.0});
      d.backward(ctx, real, cr, dr.cmap(), nullptr);
      d.backward(ctx, pooled.cmap(), cf, df.cmap(), nullptr);
      return v;
    }
    typename Disc::Cache ce;
    T pe(ctx, d.output_shape(extra->dimensions()));
    auto pem = pe.map();
    d.forward(ctx, *extra, ce, pem);
    T de = T::zeros(ctx, pe.shape());
    auto dem = de.map();
    const double v = 0.5 * static_cast<double>(loss::lsgan<S, Rank>(ctx, pr.cmap(), 1.0, {&drm, nullptr, 0.5})) +
                     0.25 * static_cast<double>(loss::lsgan<S, Rank>(ctx, pf.cmap(), 0.0, {&dfm, nullptr, 0.25})) +
                     0.25 * static_cast<double>(loss::lsgan<S, Rank>(ctx, pe.cmap(), 0.0, {&dem, nullptr, 0.25}));
    d.backward(ctx, real, cr, dr.cmap(), nullptr);
    d.backward(ctx, pooled.cmap(), cf, df.cmap(), nullptr);
    d.backward(ctx, *extra, ce, de.cmap(), nullptr);
    return v;
  }

  core::Context<Device>* ctx_;
  ModelOptions o_;
  std::vector<std::unique_ptr<Group>> groups_;
  Gen g_ab_, g_ba_;
  Disc d_a_, d_b_;
  ImagePool<S, Rank, Device> pool_a_, pool_b_;
  optim::Schedule schedule_;
  std::vector<std::unique_ptr<optim::Adam<S, Device>>> adam_;
  AlignmentFn<Dim, S, Device> align_;
  dist::Communicator* comm_ = &dist::single_process();
  mutable std::string pending_numeric_;  // a guarded() pass's NumericError, for check_total()
};

}  // namespace dicyc::model
