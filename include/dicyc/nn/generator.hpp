// dicyc/nn/generator.hpp -- the ResNet generator (dicyc-spec section 2), with the encoder and the
// decoder exposed separately, stage by stage.
//
//   encoder  stage 0 "stem":  reflect-pad 3, conv 7 (in -> ngf), IN, ReLU
//            stage 1 "down1": conv 3 s2 p1 (ngf -> 2 ngf), IN, ReLU
//            stage 2 "down2": conv 3 s2 p1 (2 ngf -> 4 ngf), IN, ReLU
//            stage 3 "res":   n_blocks ResnetBlocks at 4 ngf            -> the latent map
//   decoder  convT 3 s2 p1 op1 (4 ngf -> 2 ngf), IN, ReLU; the same (2 ngf -> ngf);
//            reflect-pad 3, conv 7 (ngf -> out), tanh (optional: a z-scored target needs none)
//
// Parameter names are those of the reference's state dict (python/dicyc/nn.py, the Python package's Generator):
// "<name>.stem.1", "<name>.down1.0", "<name>.down2.0", "<name>.res.<i>.block.1|5", "<name>.dec.0",
// "<name>.dec.3", "<name>.dec.7" (".weight" / ".bias"), so weights move to and from PyTorch by name.
// A 1 -> 1 generator with ngf 64 and 6 blocks has 7,825,153 parameters.
//
// Per-call state lives in caller-owned caches, so one generator can run several times (x -> y~,
// then the cycle's y~ -> x) before the backward passes. Every cache owns its outputs: encode()
// returns the latent map (a reference into the EncoderCache), decode() the image. Backward
// ACCUMULATES into the input gradient (null skips) and, when the group requires gradients, into
// the parameter gradients. The stages are public because DiCyc's deformed path warps the input
// of every stage with an offset branch (stage_forward / stage_backward take that input
// explicitly). infer() runs the plain generator keeping only what the next layer needs.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "dicyc/nn/conv.hpp"
#include "dicyc/nn/resnet_block.hpp"

namespace dicyc::nn {

/// Options of the ResNet generator: GeneratorOptions().ngf(32).n_blocks(9).
class GeneratorOptions {
 public:
  GeneratorOptions& in_channels(Index v) { in_ = v; return *this; }
  GeneratorOptions& out_channels(Index v) { out_ = v; return *this; }
  GeneratorOptions& ngf(Index v) { ngf_ = v; return *this; }
  GeneratorOptions& n_blocks(int v) { blocks_ = v; return *this; }
  GeneratorOptions& tanh(bool v) { tanh_ = v; return *this; }
  Index in_channels() const { return in_; }
  Index out_channels() const { return out_; }
  Index ngf() const { return ngf_; }
  int n_blocks() const { return blocks_; }
  bool tanh() const { return tanh_; }

 private:
  Index in_ = 1, out_ = 1, ngf_ = 64;
  int blocks_ = 6;
  bool tanh_ = true;
};

namespace detail {

/// One "[reflect-pad] conv|convT [IN] [ReLU|tanh]" unit of the generator, with its cache.
template <int Dim, class S, class Device>
class ConvUnit {
 public:
  static constexpr int Rank = Dim + 2;
  using T = core::Tensor<S, Rank, Device>;
  using Stats = core::Tensor<acc_t<S>, 2, Device>;
  enum class Act { None, Relu, Tanh };
  struct Cache {
    T pad;        // the padded input (when the unit pads)
    T norm;       // IN output (when the unit normalises and activates)
    Stats mean, invstd;
    T out;        // the unit's output
  };

  ConvUnit(ParameterGroup<S, Device>& group, const std::string& name, ops::ConvOptions<Dim> o, bool transposed,
           Index reflect_pad, bool norm, Act act)
      : pad_(reflect_pad), norm_(norm), act_(act) {
    if (transposed)
      convt_ = std::make_unique<ConvTranspose<Dim, S, Device>>(group, name, std::move(o));
    else
      conv_ = std::make_unique<Conv<Dim, S, Device>>(group, name, std::move(o));
  }

  Shape<Rank> output_shape(Shape<Rank> s) const {
    if (pad_ > 0) s = ops::reflection_pad_output_shape<Dim>(s, ops::uniform_pad<Dim>(pad_));
    return conv_ ? conv_->output_shape(s) : convt_->output_shape(s);
  }
  Index in_channels() const { return conv_ ? conv_->options().in_channels() : convt_->options().in_channels(); }

  /// Fills c (c.out is the output). keep = false drops what only the backward needs.
  void forward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& x, Cache& c, bool keep = true) const {
    const Shape<Rank> os = output_shape(x.dimensions());
    const S* conv_in = x.data();
    Shape<Rank> conv_in_shape = x.dimensions();
    if (pad_ > 0) {
      const auto pad = ops::uniform_pad<Dim>(pad_);
      c.pad = T(ctx, ops::reflection_pad_output_shape<Dim>(x.dimensions(), pad));
      auto pm = c.pad.map();
      ops::reflection_pad_forward<Dim, S>(ctx, pad, x, pm);
      conv_in = c.pad.data();
      conv_in_shape = c.pad.shape();
    }
    const ConstTensorMap<S, Rank> in(conv_in, conv_in_shape);
    T conv_out(ctx, os);
    auto com = conv_out.map();
    if (conv_)
      conv_->forward(ctx, in, com);
    else
      convt_->forward(ctx, in, com);
    if (!keep) c.pad = T();
    T normed;
    if (norm_) {
      const Shape<2> st(os[0], os[Rank - 1]);
      normed = T(ctx, os);
      c.mean = Stats(ctx, st);
      c.invstd = Stats(ctx, st);
      auto nm = normed.map();
      auto mm = c.mean.map();
      auto im = c.invstd.map();
      ops::instance_norm_forward<Dim, S>(ctx, conv_out.cmap(), nm, mm, im);
      conv_out = T();
    } else {
      normed = std::move(conv_out);
    }
    if (act_ == Act::None) {
      c.out = std::move(normed);
      return;
    }
    c.out = T(ctx, os);
    auto om = c.out.map();
    if (act_ == Act::Relu)
      ops::relu_forward<S, Rank>(ctx, normed.cmap(), om);
    else
      ops::tanh_forward<S, Rank>(ctx, normed.cmap(), om);
    if (norm_ && keep) c.norm = std::move(normed);
  }

  /// dx += d<out, dout>/dx (null skips), or dx = that with dx_overwrite (dx not read);
  /// parameter gradients into the group.
  void backward(core::Context<Device>& ctx, const ConstTensorMap<S, Rank>& x, const Cache& c,
                const ConstTensorMap<S, Rank>& dout, nondeduced_t<TensorMap<S, Rank>>* dx,
                bool dx_overwrite = false) const {
    const Shape<Rank> os = c.out.shape();
    DICYC_CHECK(dout.dimensions() == os, ShapeError,
                "generator unit: expected output gradient of shape " << shape_str(os) << ", but got "
                                                                     << shape_str(dout.dimensions()));
    // Through the activation, then the norm: g is the gradient at the conv's output.
    // (Each gradient buffer here is written whole by the op that fills it: no zeroing.)
    T g;
    if (act_ != Act::None) {
      g = T(ctx, os);
      auto gm = g.map();
      if (act_ == Act::Relu)
        ops::relu_backward<S, Rank>(ctx, c.out.cmap(), dout, gm, /*overwrite=*/true);
      else
        ops::tanh_backward<S, Rank>(ctx, c.out.cmap(), dout, gm, /*overwrite=*/true);
    }
    if (norm_) {
      const ConstTensorMap<S, Rank> gin = act_ != Act::None ? g.cmap() : dout;
      const ConstTensorMap<S, Rank> y = act_ != Act::None ? c.norm.cmap() : c.out.cmap();
      T gn(ctx, os);
      auto gnm = gn.map();
      ops::instance_norm_backward<Dim, S>(ctx, y, c.invstd.cmap(), gin, gnm, /*overwrite=*/true);
      g = std::move(gn);
    }
    const ConstTensorMap<S, Rank> gconv = (act_ != Act::None || norm_) ? g.cmap() : dout;
    if (pad_ == 0) {
      if (conv_)
        conv_->backward(ctx, x, gconv, dx, dx_overwrite);
      else
        convt_->backward(ctx, x, gconv, dx, dx_overwrite);
      return;
    }
    if (!dx) {
      if (conv_)
        conv_->backward(ctx, c.pad.cmap(), gconv, nullptr);
      else
        convt_->backward(ctx, c.pad.cmap(), gconv, nullptr);
      return;
    }
    T gp(ctx, c.pad.shape());  // written by the conv's backward
    auto gpm = gp.map();
    if (conv_)
      conv_->backward(ctx, c.pad.cmap(), gconv, &gpm, /*dx_overwrite=*/true);
    else
      convt_->backward(ctx, c.pad.cmap(), gconv, &gpm, /*dx_overwrite=*/true);
    ops::reflection_pad_backward<Dim, S>(ctx, ops::uniform_pad<Dim>(pad_), gp.cmap(), *dx, dx_overwrite);
  }

 private:
  std::unique_ptr<Conv<Dim, S, Device>> conv_;
  std::unique_ptr<ConvTranspose<Dim, S, Device>> convt_;
  Index pad_;
  bool norm_;
  Act act_;
};

}  // namespace detail

template <int Dim, class S, class Device>
class ResnetGenerator {
 public:
  static constexpr int Rank = Dim + 2;
  static constexpr int kStages = 4;  // stem, down1, down2, res
  using T = core::Tensor<S, Rank, Device>;
  using Map = TensorMap<S, Rank>;
  using CMap = ConstTensorMap<S, Rank>;
  using Unit = detail::ConvUnit<Dim, S, Device>;
  using Block = ResnetBlock<Dim, S, Device>;

  struct StageCache {
    typename Unit::Cache unit;                  // stages 0-2
    std::vector<typename Block::Cache> blocks;  // stage 3
    T res_out;                                  // stage 3's output
  };
  struct EncoderCache {
    std::array<StageCache, kStages> stage;
  };
  struct DecoderCache {
    std::array<typename Unit::Cache, 3> unit;
  };
  struct Cache {
    EncoderCache enc;
    DecoderCache dec;
  };

  ResnetGenerator(ParameterGroup<S, Device>& group, const std::string& name, GeneratorOptions o = {})
      : name_(name), opts_(o) {
    DICYC_CHECK(o.in_channels() > 0 && o.out_channels() > 0 && o.ngf() > 0 && o.n_blocks() >= 0, ConfigError,
                "ResnetGenerator '" << name << "': needs positive channel counts and n_blocks >= 0, got in "
                                    << o.in_channels() << ", out " << o.out_channels() << ", ngf " << o.ngf()
                                    << ", n_blocks " << o.n_blocks());
    using A = typename Unit::Act;
    const Index f = o.ngf();
    enc_.push_back(std::make_unique<Unit>(group, name + ".stem.1", ops::ConvOptions<Dim>(o.in_channels(), f, 7), false,
                                          3, true, A::Relu));
    enc_.push_back(std::make_unique<Unit>(group, name + ".down1.0",
                                          ops::ConvOptions<Dim>(f, 2 * f, 3).stride(2).padding(1), false, 0, true,
                                          A::Relu));
    enc_.push_back(std::make_unique<Unit>(group, name + ".down2.0",
                                          ops::ConvOptions<Dim>(2 * f, 4 * f, 3).stride(2).padding(1), false, 0, true,
                                          A::Relu));
    for (int b = 0; b < o.n_blocks(); ++b)
      blocks_.push_back(std::make_unique<Block>(group, name + ".res." + std::to_string(b), 4 * f));
    dec_.push_back(std::make_unique<Unit>(
        group, name + ".dec.0", ops::ConvOptions<Dim>(4 * f, 2 * f, 3).stride(2).padding(1).output_padding(1), true, 0,
        true, A::Relu));
    dec_.push_back(std::make_unique<Unit>(
        group, name + ".dec.3", ops::ConvOptions<Dim>(2 * f, f, 3).stride(2).padding(1).output_padding(1), true, 0,
        true, A::Relu));
    dec_.push_back(std::make_unique<Unit>(group, name + ".dec.7", ops::ConvOptions<Dim>(f, o.out_channels(), 7), false,
                                          3, false, o.tanh() ? A::Tanh : A::None));
  }

  const std::string& name() const { return name_; }
  const GeneratorOptions& options() const { return opts_; }
  /// Input channels of stage i (0: the image; 1: ngf; 2: 2 ngf; 3: 4 ngf).
  Index stage_channels(int i) const {
    check_stage(i);
    return i == 0 ? opts_.in_channels() : opts_.ngf() << (i - 1);
  }
  Shape<Rank> stage_output_shape(int i, const Shape<Rank>& in) const {
    check_stage(i);
    return i < 3 ? enc_[i]->output_shape(in) : in;
  }
  Shape<Rank> latent_shape(Shape<Rank> in) const {
    for (int i = 0; i < kStages; ++i) in = stage_output_shape(i, in);
    return in;
  }
  Shape<Rank> output_shape(const Shape<Rank>& in) const {
    Shape<Rank> s = latent_shape(in);
    for (const auto& u : dec_) s = u->output_shape(s);
    return s;
  }

  // ---------------------------------------------------------------------------------- stages
  /// Runs stage i on `in` (the previous stage's output, or its warped version); returns the
  /// stage's output, owned by c.
  const T& stage_forward(core::Context<Device>& ctx, int i, const CMap& in, StageCache& c) const {
    check_input(i, in.dimensions());
    if (i < 3) {
      enc_[i]->forward(ctx, in, c.unit);
      return c.unit.out;
    }
    c.blocks.clear();
    c.blocks.resize(blocks_.size());
    c.res_out = T(ctx, in.dimensions());
    if (blocks_.empty()) {
      auto om = c.res_out.map();
      om.device(ctx.device()) = in;
      return c.res_out;
    }
    // Block b reads the previous output (copied into its padded-input cache), so only the
    // current and the next output are ever alive.
    T cur;
    for (std::size_t b = 0; b < blocks_.size(); ++b) {
      T next(ctx, in.dimensions());
      auto nm = next.map();
      blocks_[b]->forward(ctx, b == 0 ? in : cur.cmap(), c.blocks[b], nm);
      cur = std::move(next);
    }
    c.res_out = std::move(cur);
    return c.res_out;
  }
  const T& stage_output(int i, const StageCache& c) const { return i < 3 ? c.unit.out : c.res_out; }

  /// din += d<stage output, dout>/din (null skips), or din = that with din_overwrite (din not
  /// read); parameter gradients into the group.
  void stage_backward(core::Context<Device>& ctx, int i, const CMap& in, const StageCache& c, const CMap& dout,
                      nondeduced_t<Map>* din, bool din_overwrite = false) const {
    check_input(i, in.dimensions());
    if (i < 3) {
      enc_[i]->backward(ctx, in, c.unit, dout, din, din_overwrite);
      return;
    }
    DICYC_CHECK(c.blocks.size() == blocks_.size(), ConfigError,
                "ResnetGenerator '" << name_ << "': backward of the residual stage without its forward cache");
    if (blocks_.empty()) {
      if (din && din_overwrite)
        din->device(ctx.device()) = dout;
      else if (din)
        din->device(ctx.device()) = *din + dout;
      return;
    }
    T g(ctx, dout.dimensions());
    {
      auto gm = g.map();
      gm.device(ctx.device()) = dout;
    }
    for (std::size_t b = blocks_.size(); b-- > 0;) {
      if (b == 0) {
        blocks_[0]->backward(ctx, c.blocks[0], g.cmap(), din, din_overwrite);
        break;
      }
      T gp(ctx, dout.dimensions());  // written by the block's backward
      auto gpm = gp.map();
      blocks_[b]->backward(ctx, c.blocks[b], g.cmap(), &gpm, /*dx_overwrite=*/true);
      g = std::move(gp);
    }
  }

  // ---------------------------------------------------------------------------------- encoder, decoder
  /// The latent map E(x), owned by c.
  const T& encode(core::Context<Device>& ctx, const CMap& x, EncoderCache& c) const {
    for (int i = 0; i < kStages; ++i) stage_forward(ctx, i, i == 0 ? x : stage_output(i - 1, c.stage[i - 1]).cmap(), c.stage[i]);
    return c.stage[3].res_out;
  }
  const T& latent(const EncoderCache& c) const { return c.stage[3].res_out; }

  void encode_backward(core::Context<Device>& ctx, const CMap& x, const EncoderCache& c, const CMap& dlatent,
                       nondeduced_t<Map>* dx) const {
    T g;
    for (int i = kStages; i-- > 0;) {
      const CMap in = i == 0 ? x : stage_output(i - 1, c.stage[i - 1]).cmap();
      const CMap dout = i == kStages - 1 ? dlatent : g.cmap();
      if (i == 0) {
        stage_backward(ctx, 0, in, c.stage[0], dout, dx);
        break;
      }
      T gi(ctx, in.dimensions());  // written by the stage's backward
      auto gim = gi.map();
      stage_backward(ctx, i, in, c.stage[i], dout, &gim, /*din_overwrite=*/true);
      g = std::move(gi);
    }
  }

  /// The image Dec(f), owned by c.
  const T& decode(core::Context<Device>& ctx, const CMap& f, DecoderCache& c) const {
    DICYC_CHECK(f.dimension(0) == 4 * opts_.ngf(), ShapeError,
                "ResnetGenerator '" << name_ << "': expected a latent map with " << 4 * opts_.ngf()
                                    << " channels, but got shape " << shape_str(f.dimensions()));
    for (std::size_t u = 0; u < dec_.size(); ++u) dec_[u]->forward(ctx, u == 0 ? f : c.unit[u - 1].out.cmap(), c.unit[u]);
    return c.unit.back().out;
  }
  const T& output(const DecoderCache& c) const { return c.unit.back().out; }

  /// df += d<Dec(f), dy>/df (null skips), or df = that with df_overwrite (df not read).
  void decode_backward(core::Context<Device>& ctx, const CMap& f, const DecoderCache& c, const CMap& dy,
                       nondeduced_t<Map>* df, bool df_overwrite = false) const {
    T g;
    for (std::size_t u = dec_.size(); u-- > 0;) {
      const CMap in = u == 0 ? f : c.unit[u - 1].out.cmap();
      const CMap dout = u + 1 == dec_.size() ? dy : g.cmap();
      if (u == 0) {
        dec_[0]->backward(ctx, in, c.unit[0], dout, df, df_overwrite);
        break;
      }
      T gi(ctx, in.dimensions());  // written by the unit's backward
      auto gim = gi.map();
      dec_[u]->backward(ctx, in, c.unit[u], dout, &gim, /*dx_overwrite=*/true);
      g = std::move(gi);
    }
  }

  // ---------------------------------------------------------------------------------- whole
  const T& forward(core::Context<Device>& ctx, const CMap& x, Cache& c) const {
    const T& f = encode(ctx, x, c.enc);
    return decode(ctx, f.cmap(), c.dec);
  }
  void backward(core::Context<Device>& ctx, const CMap& x, const Cache& c, const CMap& dy,
                nondeduced_t<Map>* dx) const {
    T df(ctx, latent(c.enc).shape());  // written by the decoder's backward
    auto dfm = df.map();
    decode_backward(ctx, latent(c.enc).cmap(), c.dec, dy, &dfm, /*df_overwrite=*/true);
    encode_backward(ctx, x, c.enc, df.cmap(), dx);
  }

  /// Inference: y = G(x), keeping only the tensors the next layer needs (no backward possible).
  void infer(core::Context<Device>& ctx, const CMap& x, Map& y) const {
    const Shape<Rank> ys = output_shape(x.dimensions());
    DICYC_CHECK(y.dimensions() == ys, ShapeError,
                "ResnetGenerator '" << name_ << "': expected output of shape " << shape_str(ys) << ", but got "
                                    << shape_str(y.dimensions()));
    T cur;
    auto unit = [&](const Unit& u, const CMap& in) {
      typename Unit::Cache c;
      u.forward(ctx, in, c, false);
      cur = std::move(c.out);
    };
    unit(*enc_[0], x);
    for (int i = 1; i < 3; ++i) unit(*enc_[i], cur.cmap());
    for (const auto& b : blocks_) {
      typename Block::Cache c;
      T next(ctx, cur.shape());
      auto nm = next.map();
      b->forward(ctx, cur.cmap(), c, nm);
      cur = std::move(next);
    }
    for (const auto& u : dec_) unit(*u, cur.cmap());
    y.device(ctx.device()) = cur.cmap();
  }

 private:
  void check_stage(int i) const {
    DICYC_CHECK(i >= 0 && i < kStages, ConfigError,
                "ResnetGenerator '" << name_ << "': stage index " << i << " out of range [0, " << kStages << ")");
  }
  void check_input(int i, const Shape<Rank>& s) const {
    check_stage(i);
    DICYC_CHECK(s[0] == stage_channels(i), ShapeError,
                "ResnetGenerator '" << name_ << "': stage " << i << " expected an input with " << stage_channels(i)
                                    << " channels, but got shape " << shape_str(s));
  }
  std::string name_;
  GeneratorOptions opts_;
  std::vector<std::unique_ptr<Unit>> enc_, dec_;
  std::vector<std::unique_ptr<Block>> blocks_;
};

}  // namespace dicyc::nn
