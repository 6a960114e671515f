// dicyc/model/dicyc.hpp -- DiCyc, the deformation-invariant CycleGAN (dicyc-spec sections 1-5), and
// its GCC / MIND variants.
//
// Each direction (AB, BA) has a plain ResNet generator (encoder E, decoder Dec; the same network
// as a CycleGAN's, weights interchangeable), four shared-offset branches (before the stem, the two
// stride-2 convs and the residual stack; active on the deformed path only) and a TPS spatial
// transformer on the latent map. The deformed output of x toward the pose of a B sample y is
//   y^ = Dec_AB(S_AB(E~_AB(x), E_BA(y)))
// where E~ is the encoder with the offset branches and S_AB warps its first argument through the
// TPS regressed from both latent maps. At initialisation (zero last layers) it equals the plain
// output y~ = Dec_AB(E_AB(x)). Inference runs the plain generator only.
//
// One iteration (EmMode::Single, the default):
//   1. undeformed pass: f_x = E_AB(x), f_y = E_BA(y), y~ = Dec_AB(f_x), x~ = Dec_BA(f_y);
//      cycle |G_BA(y~) - x| + |G_AB(x~) - y|; alignment L(x, y~) + L(y, x~);
//   2. deformed pass (f_x, f_y reused as the STN targets, not recomputed):
//      y^ = Dec_AB(S_AB(E~_AB(x), f_y)), x^ = Dec_BA(S_BA(E~_BA(y), f_x)),
//      back_x = Dec_BA(S_BA(E~_BA(y^), f_x)), back_y = Dec_AB(S_AB(E~_AB(x^), f_y)),
//      GAN mean((D_B(y^) - 1)^2) + mean((D_A(x^) - 1)^2), deformed cycle |back_x - x| + |back_y - y|;
//      (with ModelOptions::lambda_gan_plain > 0, not in the paper: also, with that weight, the GAN
//      terms of the undeformed outputs moved into the other sample's pose by the TPS of step 2,
//      mean((D_B(W_AB(y~)) - 1)^2) + mean((D_A(W_BA(x~)) - 1)^2), whose gradient reaches the plain
//      generators and, through W, the STNs; the D step also takes W(y~), W(x~) as fakes);
//   3. one backward of GAN + 10 cycle + 10 deformed cycle + 0.9 alignment (+ identity), the
//      discriminators frozen; E step: Adam on the STNs (only the deformed-path terms reach them);
//      M step: Adam on the generators and the offset branches;
//   4. D step on the deformed outputs through the 50-image pools (and on W(y~), W(x~), unpooled,
//      with lambda_gan_plain > 0).
// EmMode::Sequential first runs an E step of its own (fresh deformed pass, GAN + deformed cycle,
// only the STNs updated), then the M step on fresh passes with the STNs frozen.
// This is benchmarks/torch_reference.py's bench_dicyc, with the pools of spec section 5.
#pragma once

#include <array>
#include <memory>

#include "dicyc/model/base.hpp"
#include "dicyc/model/cyclegan.hpp"
#include "dicyc/nn/offset.hpp"
#include "dicyc/nn/stn.hpp"

namespace dicyc::model {

template <int Dim, class S, class Device>
class DiCyc : public ModelBase<Dim, S, Device> {
  using Base = ModelBase<Dim, S, Device>;

 public:
  using typename Base::CMap;
  using typename Base::Gen;
  using typename Base::Map;
  using typename Base::T;
  static constexpr int Rank = Dim + 2;
  using Off = nn::OffsetBranch<Dim, S, Device>;
  using Stn = nn::Stn<Dim, S, Device>;

  /// One direction's deformation modules.
  struct Deformer {
    std::array<std::unique_ptr<Off>, 4> off;
    std::unique_ptr<Stn> stn;
  };

  /// The deformed encoder's state: per stage, the offset branch's cache, the warped stage input
  /// and the stage's cache.
  struct DefEncCache {
    std::array<typename Off::Cache, 4> off;
    std::array<T, 4> warped;
    typename Gen::EncoderCache enc;
  };
  /// One deformed generator call Dec(S(E~(in), target)).
  struct DeformedCache {
    DefEncCache enc;
    typename Stn::Cache stn;
    T warped_latent;
    typename Gen::DecoderCache dec;
  };

  DiCyc(core::Context<Device>& ctx, ModelOptions o = ModelOptions::preset("nmi-dicyc"))
      : Base(ctx, check(o)), ab_(make_deformer(o, "ab")), ba_(make_deformer(o, "ba")) {
    this->allocate();
  }

  const Deformer& deformer_ab() const { return ab_; }
  const Deformer& deformer_ba() const { return ba_; }

  // ---------------------------------------------------------------------------------- building blocks
  /// E~(x): the encoder with the offset branches in front of every stage.
  const T& encode_deformed(const Gen& g, const Deformer& d, const CMap& x, DefEncCache& c) const {
    auto& ctx = *this->ctx_;
    for (int i = 0; i < Gen::kStages; ++i) {
      const CMap in = i == 0 ? x : g.stage_output(i - 1, c.enc.stage[i - 1]).cmap();
      c.warped[i] = T(ctx, in.dimensions());
      auto wm = c.warped[i].map();
      d.off[i]->forward(ctx, in, c.off[i], wm);
      g.stage_forward(ctx, i, c.warped[i].cmap(), c.enc.stage[i]);
    }
    return g.latent(c.enc);
  }
  void encode_deformed_backward(const Gen& g, const Deformer& d, const CMap& x, const DefEncCache& c,
                                const CMap& dlatent, nondeduced_t<Map>* dx) const {
    auto& ctx = *this->ctx_;
    T gout;
    for (int i = Gen::kStages; i-- > 0;) {
      const CMap in = i == 0 ? x : g.stage_output(i - 1, c.enc.stage[i - 1]).cmap();
      T gw = T::zeros(ctx, in.dimensions());
      auto gwm = gw.map();
      g.stage_backward(ctx, i, c.warped[i].cmap(), c.enc.stage[i], i == Gen::kStages - 1 ? dlatent : gout.cmap(), &gwm);
      if (i == 0) {
        d.off[0]->backward(ctx, in, c.off[0], gw.cmap(), dx);
        break;
      }
      T gi = T::zeros(ctx, in.dimensions());
      auto gim = gi.map();
      d.off[i]->backward(ctx, in, c.off[i], gw.cmap(), &gim);
      gout = std::move(gi);
    }
  }

  /// Dec(S(E~(in), target)): the deformed output of `in` in the pose of the sample whose plain
  /// latent map is `target`.
  const T& deformed(const Gen& g, const Deformer& d, const CMap& in, const CMap& target, DeformedCache& c) const {
    auto& ctx = *this->ctx_;
    const T& h = encode_deformed(g, d, in, c.enc);
    DICYC_CHECK(h.shape() == target.dimensions(), ShapeError,
                this->o_.model_name() << ": the STN's source and target latent maps differ in shape: "
                                      << shape_str(h.shape()) << " and " << shape_str(target.dimensions())
                                      << " (x and y must have the same size)");
    c.warped_latent = T(ctx, h.shape());
    auto wl = c.warped_latent.map();
    d.stn->forward(ctx, h.cmap(), target, c.stn, wl);
    return g.decode(ctx, c.warped_latent.cmap(), c.dec);
  }
  /// din += d/d in, dtarget += d/d target (either null skips) of <deformed output, dout>.
  void deformed_backward(const Gen& g, const Deformer& d, const CMap& in, const CMap& target, const DeformedCache& c,
                         const CMap& dout, nondeduced_t<Map>* din, nondeduced_t<Map>* dtarget,
                         const core::Tensor<S, 2, Device>* ddisp_extra = nullptr) const {
    auto& ctx = *this->ctx_;
    T dwl = T::zeros(ctx, c.warped_latent.shape());
    auto dwlm = dwl.map();
    g.decode_backward(ctx, c.warped_latent.cmap(), c.dec, dout, &dwlm);
    const T& h = g.latent(c.enc.enc);
    T dh = T::zeros(ctx, h.shape());
    auto dhm = dh.map();
    d.stn->backward(ctx, h.cmap(), target, c.stn, dwl.cmap(), &dhm, dtarget, ddisp_extra);
    encode_deformed_backward(g, d, in, c.enc, dh.cmap(), din);
  }

  // ---------------------------------------------------------------------------------- training
  StepLosses train_step(const CMap& x, const CMap& y) override {
    StepLosses L;
    this->begin_step(L, x, y);
    if (this->o_.em() == EmMode::Sequential) e_step(x, y);
    T y_hat, x_hat, y_plain, x_plain;
    generator_step(x, y, L, y_hat, x_hat, &y_plain, &x_plain);
    if (this->o_.lambda_gan_plain() > 0) {
      const CMap pa = x_plain.cmap(), pb = y_plain.cmap();
      this->discriminator_update(L, x, y, x_hat.cmap(), y_hat.cmap(), &pa, &pb);
    } else {
      this->discriminator_update(L, x, y, x_hat.cmap(), y_hat.cmap());
    }
    this->schedule_.record(L.g_total);
    return L;
  }

  /// Steps 1-3 of an iteration: both passes, one backward, the E step (EmMode::Single) and the M
  /// step; fills L's generator terms and returns the deformed outputs (the D step's fakes). With
  /// EmMode::Sequential the STNs stay frozen here (run e_step() first). With lambda_gan_plain > 0,
  /// y_plain / x_plain (when given) receive the warped undeformed outputs, the D step's other fakes.
  void generator_step(const CMap& x, const CMap& y, StepLosses& L, T& y_hat, T& x_hat, T* y_plain = nullptr,
                      T* x_plain = nullptr) {
    check_pair(x, y);
    const bool seq = this->o_.em() == EmMode::Sequential;
    for (const char* n : {"d_a", "d_b"}) this->group(n).requires_grad(false);
    if (seq)
      for (const char* n : {"s_ab", "s_ba"}) this->group(n).requires_grad(false);
    for (const char* n : {"g_ab", "g_ba", "o_ab", "o_ba", "s_ab", "s_ba"}) this->group(n).zero_grad();
    this->guarded([&] { generator_pass(x, y, L, y_hat, x_hat, true, y_plain, x_plain); });  // its NumericError reaches every rank
    L.g_total = this->total(L);
    this->check_total(L);
    for (const char* n : {"d_a", "d_b", "s_ab", "s_ba"}) this->group(n).requires_grad(true);
    if (!seq) {
      this->step("s_ab");  // E
      this->step("s_ba");
    }
    for (const char* n : {"g_ab", "g_ba", "o_ab", "o_ba"}) this->step(n);  // M
  }

  /// The E step of EmMode::Sequential: a deformed pass of its own (GAN + deformed cycle) with the
  /// generators and offset branches frozen; only the STNs are updated.
  void e_step(const CMap& x, const CMap& y) {
    auto& ctx = *this->ctx_;
    check_pair(x, y);
    const char* frozen[] = {"g_ab", "g_ba", "o_ab", "o_ba", "d_a", "d_b"};
    for (const char* n : frozen) this->group(n).requires_grad(false);
    this->group("s_ab").zero_grad();
    this->group("s_ba").zero_grad();
    StepLosses L;
    {
      typename Gen::EncoderCache ex, ey;
      const T& f_x = this->g_ab_.encode(ctx, x, ex);
      const T& f_y = this->g_ba_.encode(ctx, y, ey);
      T y_hat, x_hat;
      this->guarded([&] { deformed_pass(x, y, f_x.cmap(), f_y.cmap(), nullptr, nullptr, L, y_hat, x_hat, true); });
    }
    for (const char* n : frozen) this->group(n).requires_grad(true);
    L.g_total = L.gan_ab + L.gan_ba + L.dicyc_a + L.dicyc_b;
    this->check_total(L);  // a NaN or a NumericError on any rank stops every rank
    this->step("s_ab");
    this->step("s_ba");
  }

  /// The generator-side loss terms of one iteration and, when `backward`, their gradients
  /// accumulated into every unfrozen generator-side group (nothing is stepped; the discriminators
  /// are frozen meanwhile). For tests and tools.
  StepLosses generator_losses(const CMap& x, const CMap& y, bool backward) {
    check_pair(x, y);
    StepLosses L;
    T y_hat, x_hat;
    const bool da = this->group("d_a").requires_grad(), db = this->group("d_b").requires_grad();
    this->group("d_a").requires_grad(false);
    this->group("d_b").requires_grad(false);
    generator_pass(x, y, L, y_hat, x_hat, backward);
    this->group("d_a").requires_grad(da);
    this->group("d_b").requires_grad(db);
    L.g_total = this->total(L);
    return L;
  }

  /// Deformed outputs (y^ of x toward y's pose, x^ of y toward x's) without any backward.
  void deform_ab(const CMap& x, const CMap& y, Map& y_hat) {
    auto& ctx = *this->ctx_;
    typename Gen::EncoderCache ey;
    const T& f_y = this->g_ba_.encode(ctx, y, ey);
    DeformedCache c;
    y_hat.device(ctx.device()) = deformed(this->g_ab_, ab_, x, f_y.cmap(), c).cmap();
  }
  /// x^ = G~_BA(y; pose of x): the deformed B -> A output, as in the training step.
  void deform_ba(const CMap& y, const CMap& x, Map& x_hat) {
    auto& ctx = *this->ctx_;
    typename Gen::EncoderCache ex;
    const T& f_x = this->g_ab_.encode(ctx, x, ex);
    DeformedCache c;
    x_hat.device(ctx.device()) = deformed(this->g_ba_, ba_, y, f_x.cmap(), c).cmap();
  }

 private:
  static const ModelOptions& check(const ModelOptions& o) {
    DICYC_CHECK(o.deformation(), ConfigError, "DiCyc: the options have deformation(false); use model::CycleGan");
    DICYC_CHECK(o.control_points() >= 2 && o.offset_hidden() > 0 && o.stn_hidden1() > 0 && o.stn_hidden2() > 0,
                ConfigError,
                "DiCyc: needs at least 2 control points per axis and positive hidden widths, got "
                    << o.control_points() << " control points, offset hidden " << o.offset_hidden() << ", STN hidden "
                    << o.stn_hidden1() << "/" << o.stn_hidden2());
    return o;
  }

  Deformer make_deformer(const ModelOptions& o, const std::string& dir) {
    Deformer d;
    auto& og = this->group("o_" + dir);
    const Gen& g = dir == "ab" ? this->g_ab_ : this->g_ba_;
    for (int i = 0; i < 4; ++i)
      d.off[i] = std::make_unique<Off>(og, "g_" + dir + ".off." + std::to_string(i), g.stage_channels(i), o.offset_hidden());
    d.stn = std::make_unique<Stn>(this->group("s_" + dir), "s_" + dir, 4 * o.generator().ngf(), o.control_points(),
                                  o.stn_hidden1(), o.stn_hidden2());
    return d;
  }

  void check_pair(const CMap& x, const CMap& y) const {
    this->check_input("x (domain A)", x.dimensions(), this->o_.generator().in_channels());
    this->check_input("y (domain B)", y.dimensions(), this->o_.generator().out_channels());
    DICYC_CHECK(x.dimensions() == y.dimensions(), ShapeError,
                this->o_.model_name() << ": x and y must have the same shape (the STN compares their latent maps), got "
                                      << shape_str(x.dimensions()) << " and " << shape_str(y.dimensions()));
  }

  /// Steps 1-3 of the iteration (no optimiser step): losses into L, deformed outputs out; with
  /// lambda_gan_plain > 0 also the warped undeformed outputs (plain_gan_term()) into y_plain_out /
  /// x_plain_out when given.
  void generator_pass(const CMap& x, const CMap& y, StepLosses& L, T& y_hat_out, T& x_hat_out, bool backward,
                      T* y_plain_out = nullptr, T* x_plain_out = nullptr) {
    auto& ctx = *this->ctx_;
    const auto& o = this->o_;
    const bool plain_gan = o.lambda_gan_plain() > 0;
    // 1. Undeformed pass.
    typename Gen::EncoderCache ex, ey;
    const T& f_x = this->g_ab_.encode(ctx, x, ex);
    const T& f_y = this->g_ba_.encode(ctx, y, ey);
    T df_x = T::zeros(ctx, f_x.shape()), df_y = T::zeros(ctx, f_y.shape());
    Map dfx = df_x.map(), dfy = df_y.map();
    typename Gen::DecoderCache dx_, dy_;
    const T& y_til = this->g_ab_.decode(ctx, f_x.cmap(), dx_);
    const T& x_til = this->g_ba_.decode(ctx, f_y.cmap(), dy_);
    T dyt = T::zeros(ctx, y_til.shape()), dxt = T::zeros(ctx, x_til.shape());
    Map dytm = dyt.map(), dxtm = dxt.map();
    L.cyc_a = this->cycle(this->g_ba_, y_til, x, dytm, backward ? o.lambda_cyc() : 0.0);
    L.cyc_b = this->cycle(this->g_ab_, x_til, y, dxtm, backward ? o.lambda_cyc() : 0.0);
    if (this->align_ && o.alignment().weight() > 0) {
      L.align_a = this->align_(ctx, x, y_til.cmap(), backward ? &dytm : nullptr, o.alignment().weight());
      L.align_b = this->align_(ctx, y, x_til.cmap(), backward ? &dxtm : nullptr, o.alignment().weight());
    }
    auto undeformed_backward = [&] {
      if (!backward) return;
      this->g_ab_.decode_backward(ctx, f_x.cmap(), dx_, dyt.cmap(), &dfx);
      this->g_ba_.decode_backward(ctx, f_y.cmap(), dy_, dxt.cmap(), &dfy);
    };
    // The paper's order (bit for bit as before the option existed); with the undeformed GAN terms
    // the decoders' backward waits for them, as they need the deformed pass's TPS.
    if (!plain_gan) undeformed_backward();
    if (o.lambda_id() > 0) {
      L.id_b = identity_term(this->g_ab_, y, backward);
      L.id_a = identity_term(this->g_ba_, x, backward);
    }
    // 2. Deformed pass, with the plain latents as the STN targets (and, beyond the paper, the
    // undeformed outputs' GAN terms, which need its TPS).
    PlainOutputs po{&y_til, &x_til, &dytm, &dxtm, y_plain_out, x_plain_out};
    deformed_pass(x, y, f_x.cmap(), f_y.cmap(), backward ? &dfx : nullptr, backward ? &dfy : nullptr, L, y_hat_out,
                  x_hat_out, backward, plain_gan ? &po : nullptr);
    if (plain_gan) undeformed_backward();
    // 3. The plain encoders receive the cycle, alignment and STN-target gradients.
    if (backward) {
      this->g_ab_.encode_backward(ctx, x, ex, df_x.cmap(), nullptr);
      this->g_ba_.encode_backward(ctx, y, ey, df_y.cmap(), nullptr);
    }
  }

  /// The undeformed outputs, their gradients and where their warped copies go (the D step's fakes).
  struct PlainOutputs {
    const T *y_til, *x_til;
    Map *dyt, *dxt;
    T *y_out, *x_out;
  };

  /// mean((D(W(plain)) - 1)^2), W the TPS of the deformed pass's STN cache `sc` (warp()); with
  /// `backward`, lambda_gan_plain times its gradient into dplain and, through the TPS, into ddisp
  /// (allocated here; deformed_backward() takes it on into the STN); the warped image into `out`.
  double plain_gan_term(const typename Base::Disc& d, const Deformer& def, const typename Stn::Cache& sc, const T& plain,
                        Map& dplain, bool backward, T* out, core::Tensor<S, 2, Device>& ddisp) {
    auto& ctx = *this->ctx_;
    T warped(ctx, plain.shape()), grid;
    auto wm = warped.map();
    def.stn->warp(ctx, sc, plain.cmap(), grid, wm);
    double v;
    if (backward) {
      T dw = T::zeros(ctx, plain.shape());
      auto dwm = dw.map();
      v = this->gan_generator(d, warped, dwm, this->o_.lambda_gan_plain());
      ddisp = core::Tensor<S, 2, Device>::zeros(ctx, sc.disp.shape());
      def.stn->warp_backward(ctx, plain.cmap(), grid, dw.cmap(), &dplain, &ddisp);
    } else {
      v = gan_value(d, warped);
    }
    if (out) *out = std::move(warped);
    return v;
  }

  double identity_term(const Gen& g, const CMap& real, bool backward) {
    if (backward) return this->identity(g, real);
    auto& ctx = *this->ctx_;
    typename Gen::Cache c;
    return static_cast<double>(loss::l1<S, Rank>(ctx, g.forward(ctx, real, c).cmap(), real));
  }

  /// y^, x^, the deformed cycles and the GAN terms; with `backward`, their gradients into the
  /// unfrozen groups and, through the STN targets, into dfx / dfy (null skips).
  /// With `plain` (lambda_gan_plain > 0), also the undeformed outputs' GAN terms through the TPS of
  /// y^ and x^, their gradients into plain's dyt / dxt and on through the STNs.
  void deformed_pass(const CMap& x, const CMap& y, const CMap& f_x, const CMap& f_y, Map* dfx, Map* dfy, StepLosses& L,
                     T& y_hat_out, T& x_hat_out, bool backward, const PlainOutputs* plain = nullptr) {
    auto& ctx = *this->ctx_;
    const auto& o = this->o_;
    const Gen &gab = this->g_ab_, &gba = this->g_ba_;
    DeformedCache cy, cx;  // y^ = G~_AB(x; pose of y), x^ = G~_BA(y; pose of x)
    const T& y_hat = deformed(gab, ab_, x, f_y, cy);
    const T& x_hat = deformed(gba, ba_, y, f_x, cx);
    T dyh = T::zeros(ctx, y_hat.shape()), dxh = T::zeros(ctx, x_hat.shape());
    Map dyhm = dyh.map(), dxhm = dxh.map();
    const double wd = backward ? o.lambda_dicyc() : 0.0;
    // back_x = G~_BA(y^; pose of x), back_y = G~_AB(x^; pose of y)
    L.dicyc_a = deformed_cycle(gba, ba_, y_hat, f_x, x, wd, backward ? &dyhm : nullptr, dfx);
    L.dicyc_b = deformed_cycle(gab, ab_, x_hat, f_y, y, wd, backward ? &dxhm : nullptr, dfy);
    core::Tensor<S, 2, Device> ddisp_y, ddisp_x;  // the plain terms' displacement gradients
    if (plain) {
      L.gan_plain_ab = plain_gan_term(this->d_b_, ab_, cy.stn, *plain->y_til, *plain->dyt, backward, plain->y_out, ddisp_y);
      L.gan_plain_ba = plain_gan_term(this->d_a_, ba_, cx.stn, *plain->x_til, *plain->dxt, backward, plain->x_out, ddisp_x);
    }
    const bool pd = plain && backward;
    if (backward) {
      L.gan_ab = this->gan_generator(this->d_b_, y_hat, dyhm);
      L.gan_ba = this->gan_generator(this->d_a_, x_hat, dxhm);
      deformed_backward(gab, ab_, x, f_y, cy, dyh.cmap(), nullptr, dfy, pd ? &ddisp_y : nullptr);
      deformed_backward(gba, ba_, y, f_x, cx, dxh.cmap(), nullptr, dfx, pd ? &ddisp_x : nullptr);
    } else {
      L.gan_ab = gan_value(this->d_b_, y_hat);
      L.gan_ba = gan_value(this->d_a_, x_hat);
    }
    y_hat_out = T(ctx, y_hat.shape());
    x_hat_out = T(ctx, x_hat.shape());
    auto ym = y_hat_out.map();
    auto xm = x_hat_out.map();
    ym.device(ctx.device()) = y_hat.cmap();
    xm.device(ctx.device()) = x_hat.cmap();
  }

  /// weight * |G~(fake; pose of target) - real|_1; with din non-null, its gradient into din (the
  /// fake) and dtarget (null skips) and into the unfrozen groups.
  double deformed_cycle(const Gen& g, const Deformer& d, const T& fake, const CMap& target, const CMap& real,
                        double weight, Map* din, Map* dtarget) {
    auto& ctx = *this->ctx_;
    DeformedCache c;
    const T& back = deformed(g, d, fake.cmap(), target, c);
    T db = T::zeros(ctx, back.shape());
    Map dbm = db.map();
    const double v = loss::l1<S, Rank>(ctx, back.cmap(), real, {&dbm, nullptr, weight});
    if (din) deformed_backward(g, d, fake.cmap(), target, c, db.cmap(), din, dtarget);
    return v;
  }

  double gan_value(const typename Base::Disc& d, const T& fake) {
    auto& ctx = *this->ctx_;
    typename Base::Disc::Cache c;
    T pred(ctx, d.output_shape(fake.shape()));
    auto pm = pred.map();
    d.forward(ctx, fake.cmap(), c, pm);
    return static_cast<double>(loss::lsgan_generator<S, Rank>(ctx, pred.cmap()));
  }

  Deformer ab_, ba_;
};

/// The model an options object describes: a DiCyc with deformation(true), a CycleGAN otherwise.
template <int Dim, class S, class Device>
std::unique_ptr<ModelBase<Dim, S, Device>> make_model(core::Context<Device>& ctx, const ModelOptions& o) {
  if (o.deformation()) return std::make_unique<DiCyc<Dim, S, Device>>(ctx, o);
  return std::make_unique<CycleGan<Dim, S, Device>>(ctx, o);
}

}  // namespace dicyc::model
