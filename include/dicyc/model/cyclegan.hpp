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
// The alignment term is added straight to the generator loss: the formulation whose conflict
// with the GAN loss the paper demonstrates. The learning rate comes from the schedule; done() says
// when to stop. Networks, groups, pools and checkpoints: model/base.hpp.
#pragma once

#include "dicyc/model/base.hpp"

namespace dicyc::model {

template <int Dim, class S, class Device>
class CycleGan : public ModelBase<Dim, S, Device> {
  using Base = ModelBase<Dim, S, Device>;

 public:
  using typename Base::CMap;
  using typename Base::Gen;
  using typename Base::Map;
  using typename Base::T;
  static constexpr int Rank = Dim + 2;

  CycleGan(core::Context<Device>& ctx, ModelOptions o = {}) : Base(ctx, check(o)) { this->allocate(); }

  StepLosses train_step(const CMap& x, const CMap& y) override {
    auto& ctx = *this->ctx_;
    const auto& o = this->o_;
    StepLosses L;
    this->begin_step(L, x, y);
    // ---------------------------------------------------------------- generator step
    this->group("g_ab").zero_grad();
    this->group("g_ba").zero_grad();
    this->group("d_a").requires_grad(false);
    this->group("d_b").requires_grad(false);
    typename Gen::Cache c_xb, c_ya;  // G_AB(x), G_BA(y)
    const T* fb = nullptr;
    const T* fa = nullptr;
    this->guarded([&] {  // a NumericError here (a loss's input check) reaches every rank
      const T& fake_b = *(fb = &this->g_ab_.forward(ctx, x, c_xb));
      const T& fake_a = *(fa = &this->g_ba_.forward(ctx, y, c_ya));
      T dfake_b = T::zeros(ctx, fake_b.shape()), dfake_a = T::zeros(ctx, fake_a.shape());
      Map dfb = dfake_b.map(), dfa = dfake_a.map();
      L.gan_ab = this->gan_generator(this->d_b_, fake_b, dfb);  // through the frozen discriminators
      L.gan_ba = this->gan_generator(this->d_a_, fake_a, dfa);
      L.cyc_a = this->cycle(this->g_ba_, fake_b, x, dfb, o.lambda_cyc());
      L.cyc_b = this->cycle(this->g_ab_, fake_a, y, dfa, o.lambda_cyc());
      if (o.lambda_id() > 0) {
        L.id_b = this->identity(this->g_ab_, y);
        L.id_a = this->identity(this->g_ba_, x);
      }
      if (this->align_ && o.alignment().weight() > 0) {
        L.align_a = this->align_(ctx, x, fake_b.cmap(), &dfb, o.alignment().weight());
        L.align_b = this->align_(ctx, y, fake_a.cmap(), &dfa, o.alignment().weight());
      }
      this->g_ab_.backward(ctx, x, c_xb, dfake_b.cmap(), nullptr);
      this->g_ba_.backward(ctx, y, c_ya, dfake_a.cmap(), nullptr);
    });
    L.g_total = this->total(L);
    this->check_total(L);
    this->step("g_ab");
    this->step("g_ba");
    // ---------------------------------------------------------------- discriminator step
    this->discriminator_update(L, x, y, fa->cmap(), fb->cmap());
    this->schedule_.record(L.g_total);
    return L;
  }

 private:
  static const ModelOptions& check(const ModelOptions& o) {
    DICYC_CHECK(!o.deformation(), ConfigError,
                "CycleGan: the options ask for deformation modules; use model::DiCyc (or model::make_model)");
    return o;
  }
};

}  // namespace dicyc::model
