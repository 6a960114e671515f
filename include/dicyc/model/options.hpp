// dicyc/model/options.hpp -- the configuration of every model the trainer runs (the paper's seven:
// CycleGAN, GCC-, MIND-, NMI-CycleGAN, NMI-DiCyc, GCC-DiCyc, MIND-DiCyc), and the loss record of
// one iteration.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "dicyc/model/alignment.hpp"
#include "dicyc/model/losses.hpp"
#include "dicyc/nn/generator.hpp"
#include "dicyc/optim/adam.hpp"
#include "dicyc/optim/schedule.hpp"

namespace dicyc::model {

/// DiCyc's EM schedule: Single = one backward of the total loss, then the STN (E) and generator (M)
/// updates; Sequential = a separate E step (deformed terms, STNs only) before the M step.
enum class EmMode { Single, Sequential };

class ModelOptions {
 public:
  ModelOptions& generator(nn::GeneratorOptions v) { gen_ = v; return *this; }
  ModelOptions& ndf(Index v) { ndf_ = v; return *this; }
  ModelOptions& n_layers(int v) { n_layers_ = v; return *this; }
  ModelOptions& lambda_cyc(double v) { cyc_ = v; return *this; }
  ModelOptions& lambda_id(double v) { id_ = v; return *this; }
  ModelOptions& alignment(AlignmentOptions v) { align_ = v; return *this; }
  ModelOptions& adam(optim::AdamOptions v) { adam_ = v; return *this; }
  ModelOptions& schedule(optim::ScheduleOptions v) { sched_ = v; return *this; }
  ModelOptions& pool_size(Index v) { pool_ = v; return *this; }
  ModelOptions& seed(std::uint64_t v) { seed_ = v; return *this; }
  /// DiCyc's deformation modules (offset branches + TPS STN) and EM training; off: a CycleGAN.
  ModelOptions& deformation(bool v) { deform_ = v; return *this; }
  ModelOptions& lambda_dicyc(double v) { dicyc_ = v; return *this; }
  /// Beyond the paper (0 there, the default): the weight of an adversarial term on DiCyc's
  /// undeformed outputs, the images synthesis runs. The paper's discriminators see only the
  /// deformed outputs, and on MR -> CT the undeformed ones keep the MR's contrast (docs/demo.md).
  /// Each undeformed output is moved into the other sample's pose by the TPS its deformed pass
  /// regressed (no local offsets), W_AB(G_AB(x)), and the term is mean((D_B(W_AB(G_AB(x))) - 1)^2)
  /// + mean((D_A(W_BA(G_BA(y))) - 1)^2); the discriminators take those warped images as fakes too
  /// (unpooled), so the generator cannot fool them with patterns they never saw, and since they are
  /// in the target's pose, D judges appearance rather than pose. Only for deformation(true).
  ModelOptions& lambda_gan_plain(double v) { gan_plain_ = v; return *this; }
  ModelOptions& control_points(Index v) { control_ = v; return *this; }
  ModelOptions& offset_hidden(Index v) { off_hidden_ = v; return *this; }
  ModelOptions& stn_hidden(Index h1, Index h2) { stn_h1_ = h1; stn_h2_ = h2; return *this; }
  ModelOptions& em(EmMode v) { em_ = v; return *this; }
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
  bool deformation() const { return deform_; }
  double lambda_dicyc() const { return dicyc_; }
  double lambda_gan_plain() const { return gan_plain_; }
  Index control_points() const { return control_; }
  Index offset_hidden() const { return off_hidden_; }
  Index stn_hidden1() const { return stn_h1_; }
  Index stn_hidden2() const { return stn_h2_; }
  EmMode em() const { return em_; }

  /// The configuration keys (to_json()) that a resumed run may change: the loss weights, the
  /// learning rate and the number of epochs. They leave every tensor's shape and meaning as it
  /// was, so a checkpoint written with other values loads into a model with these (with a note);
  /// the other keys describe the networks or the epoch length and must match.
  static bool tunable(const std::string& key) {
    static const char* const keys[] = {"lambda_cyc",      "lambda_id",    "lambda_dicyc", "align_weight",
                                       "lambda_gan_plain", "lr",              "constant_epochs", "decay_epochs", "early_stop"};
    for (const char* k : keys)
      if (key == k) return true;
    return false;
  }

  /// The paper's name of this configuration: cyclegan, nmi-cyclegan, ..., nmi-dicyc.
  std::string model_name() const {
    const std::string base = deform_ ? "dicyc" : "cyclegan";
    if (align_.kind() == AlignKind::None) return base;
    return std::string(align_name(align_.kind())) + "-" + base;
  }
  /// The options of one of the paper's seven models (the spec's defaults otherwise): cyclegan,
  /// gcc-cyclegan, mind-cyclegan, nmi-cyclegan, nmi-dicyc (also "dicyc"), gcc-dicyc, mind-dicyc.
  static ModelOptions preset(const std::string& name) {
    ModelOptions o;
    std::string rest = name;
    AlignKind k = AlignKind::None;
    for (AlignKind c : {AlignKind::Nmi, AlignKind::Gcc, AlignKind::Mind}) {
      const std::string p = std::string(align_name(c)) + "-";
      if (rest.rfind(p, 0) == 0) {
        k = c;
        rest = rest.substr(p.size());
      }
    }
    if (rest == "dicyc") {
      o.deformation(true);
      if (k == AlignKind::None) k = AlignKind::Nmi;  // "dicyc" is NMI-DiCyc
    } else {
      DICYC_CHECK(rest == "cyclegan", ConfigError,
                  "unknown model '" << name << "' (expected cyclegan, gcc-cyclegan, mind-cyclegan, nmi-cyclegan, "
                                       "dicyc, nmi-dicyc, gcc-dicyc or mind-dicyc)");
    }
    o.alignment(AlignmentOptions().kind(k).weight(0.9));
    return o;
  }

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
    j["deformation"] = deform_;
    j["lambda_dicyc"] = dicyc_;
    // Written only when used, so that a paper configuration's metadata (and checkpoint) is byte
    // for byte what it was before the term existed; a missing key reads as 0.
    if (gan_plain_ != 0) j["lambda_gan_plain"] = gan_plain_;
    j["control_points"] = control_;
    j["offset_hidden"] = off_hidden_;
    j["stn_hidden"] = {stn_h1_, stn_h2_};
    j["em"] = em_ == EmMode::Single ? "single" : "sequential";
    j["seed"] = seed_;
    return j;
  }

  /// The inverse of to_json(): rebuilds the options a checkpoint was trained with (the tools
  /// use it, so that synthesis and --resume need no repeated flags). Unknown keys are ignored;
  /// a missing or mistyped key is a SerializationError naming it.
  static ModelOptions from_json(const nlohmann::json& j) {
    auto get = [&](const char* k) -> const nlohmann::json& {
      DICYC_CHECK(j.is_object() && j.contains(k), SerializationError, "model configuration: missing '" << k << "'");
      return j.at(k);
    };
    try {
      ModelOptions o;
      o.generator(nn::GeneratorOptions()
                      .in_channels(get("in_channels").get<Index>())
                      .out_channels(get("out_channels").get<Index>())
                      .ngf(get("ngf").get<Index>())
                      .n_blocks(get("n_blocks").get<int>())
                      .tanh(get("tanh").get<bool>()));
      o.ndf(get("ndf").get<Index>()).n_layers(get("n_layers").get<int>());
      o.lambda_cyc(get("lambda_cyc").get<double>()).lambda_id(get("lambda_id").get<double>());
      const std::string align = get("align").get<std::string>();
      const AlignKind k = parse_align(align);
      DICYC_CHECK(k != AlignKind::None || align == align_name(AlignKind::None), SerializationError,
                  "model configuration: unknown alignment '" << align << "'");
      o.alignment(AlignmentOptions()
                      .kind(k)
                      .weight(get("align_weight").get<double>())
                      .nmi(loss::NmiOptions().bins(get("nmi_bins").get<int>()))
                      .mind(loss::MindOptions().radius(get("mind_radius").get<int>())));
      o.adam(optim::AdamOptions().lr(get("lr").get<double>()).betas(get("beta1").get<double>(), get("beta2").get<double>()));
      o.schedule(optim::ScheduleOptions()
                     .lr(get("lr").get<double>())
                     .constant_epochs(get("constant_epochs").get<std::int64_t>())
                     .decay_epochs(get("decay_epochs").get<std::int64_t>())
                     .iterations_per_epoch(get("iterations_per_epoch").get<std::int64_t>())
                     .early_stop(get("early_stop").get<bool>()));
      o.pool_size(get("pool_size").get<Index>());
      o.deformation(get("deformation").get<bool>()).lambda_dicyc(get("lambda_dicyc").get<double>());
      o.lambda_gan_plain(j.contains("lambda_gan_plain") ? j.at("lambda_gan_plain").get<double>() : 0.0);
      o.control_points(get("control_points").get<Index>()).offset_hidden(get("offset_hidden").get<Index>());
      const auto& sh = get("stn_hidden");
      DICYC_CHECK(sh.is_array() && sh.size() == 2, SerializationError, "model configuration: 'stn_hidden' is not a pair");
      o.stn_hidden(sh[0].get<Index>(), sh[1].get<Index>());
      const std::string em = get("em").get<std::string>();
      DICYC_CHECK(em == "single" || em == "sequential", SerializationError, "model configuration: unknown em '" << em << "'");
      o.em(em == "single" ? EmMode::Single : EmMode::Sequential);
      o.seed(get("seed").get<std::uint64_t>());
      return o;
    } catch (const nlohmann::json::exception& e) {
      DICYC_CHECK(false, SerializationError, "model configuration: " << e.what());
    }
    return {};
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
  bool deform_ = false;
  double dicyc_ = 10.0;
  double gan_plain_ = 0.0;
  Index control_ = 6, off_hidden_ = 32, stn_h1_ = 128, stn_h2_ = 64;
  EmMode em_ = EmMode::Single;
};

using CycleGanOptions = ModelOptions;

/// Whether the CPU thread pool's idle workers should spin for this model
/// (core::Context<Eigen::ThreadPoolDevice>::set_pool_spinning): core::pool_spinning_pays for its
/// generator width.
inline bool pool_spinning_pays(const ModelOptions& o, bool conv_bf16) {
  return core::pool_spinning_pays(o.generator().ngf(), conv_bf16);
}


}  // namespace dicyc::model
