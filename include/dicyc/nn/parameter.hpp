// dicyc/nn/parameter.hpp -- parameter groups: one flat value buffer and one flat gradient buffer
// per group (generator, offsets, STN, discriminator), with named views.
//
// Modules declare their parameters on a group when they are built (name, shape, initialiser);
// allocate() then creates both buffers and initialises the values from a seeded RNG, in declaration
// order, so the same seed always gives the same network. Names follow PyTorch's dotted style
// (`g_ab.res.3.block.1.weight`). Gradients ACCUMULATE into the group's gradient buffer; a group with
// requires_grad(false) (a frozen discriminator, the E step's frozen encoder) hands out null
// gradient destinations, and the ops skip them.
#pragma once

#include <string>
#include <vector>

#include "dicyc/core/buffer.hpp"
#include "dicyc/core/rng.hpp"

namespace dicyc::nn {

enum class Init { Normal002, Zeros, Ones };

/// A handle to one declared parameter: its offset in the group's buffers and its shape.
struct ParamRef {
  Index index = -1;
  Index offset = 0;
  std::vector<Index> shape;
  Index size() const {
    Index n = 1;
    for (Index e : shape) n *= e;
    return n;
  }
};

template <class S, class Device>
class ParameterGroup {
 public:
  explicit ParameterGroup(std::string name = "") : name_(std::move(name)) {}
  ParameterGroup(const ParameterGroup&) = delete;
  ParameterGroup& operator=(const ParameterGroup&) = delete;
  ~ParameterGroup() {
    if (settings_ != nullptr) settings_->unregister_parameters(values_.data());
  }

  const std::string& name() const { return name_; }

  ParamRef declare(const std::string& name, std::vector<Index> shape, Init init) {
    DICYC_CHECK(!allocated(), ConfigError,
                "parameter group '" << name_ << "': cannot declare '" << name << "' after allocate()");
    for (const auto& e : entries_)
      DICYC_CHECK(e.name != name, ConfigError, "parameter group '" << name_ << "': duplicate parameter '" << name << "'");
    ParamRef r;
    r.index = static_cast<Index>(entries_.size());
    r.offset = total_;
    r.shape = std::move(shape);
    total_ += r.size();
    entries_.push_back({name, r, init});
    return r;
  }

  /// Creates the value and gradient buffers; values are initialised from rng in declaration order
  /// (element by element in dicyc's memory order), gradients zeroed.
  void allocate(core::Context<Device>& ctx, core::Rng& rng) {
    DICYC_CHECK(!allocated(), ConfigError, "parameter group '" << name_ << "': allocated twice");
    std::vector<S> host(static_cast<std::size_t>(total_));
    for (const auto& e : entries_)
      for (Index i = 0; i < e.ref.size(); ++i) {
        double v = 0;
        if (e.init == Init::Normal002) v = rng.normal(0.0, 0.02);
        if (e.init == Init::Ones) v = 1.0;
        host[e.ref.offset + i] = S(v);
      }
    values_ = core::Buffer<S, Device>(ctx, std::max<Index>(total_, 1));
    grads_ = core::Buffer<S, Device>(ctx, std::max<Index>(total_, 1));
    if (total_ > 0) values_.copy_from_host(host.data(), total_);
    grads_.set_zero();
    version_ = core::next_parameter_version();
    settings_ = &ctx;
    ctx.register_parameters(values_.data(), sizeof(S) * static_cast<std::size_t>(values_.size()), &version_);
  }
  bool allocated() const { return values_.data() != nullptr; }

  Index size() const { return total_; }
  Index count() const { return static_cast<Index>(entries_.size()); }
  const std::string& name_of(Index i) const { return entries_.at(i).name; }
  const ParamRef& ref_of(Index i) const { return entries_.at(i).ref; }

  /// Writable access (value(r), values()) renews version(): the values may change through the
  /// pointer, so copies of them in other layouts (ops/conv_dnnl.hpp) are made again. Write only
  /// through a pointer fetched after the last pass that read the values; read through the const
  /// overloads (std::as_const), which leave the version alone.
  S* value(const ParamRef& r) { return changed().values_.data() + r.offset; }
  const S* value(const ParamRef& r) const { return checked().values_.data() + r.offset; }
  /// The gradient destination of r, or null when the group does not require gradients.
  S* grad(const ParamRef& r) { return requires_grad_ ? checked().grads_.data() + r.offset : nullptr; }

  S* values() { return changed().values_.data(); }
  const S* values() const { return checked().values_.data(); }
  /// Changes whenever the values may have been written (see value()); unique in the process.
  std::uint64_t version() const { return version_; }
  S* grads() { return checked().grads_.data(); }
  void zero_grad() { checked().grads_.set_zero(); }

  void requires_grad(bool v) { requires_grad_ = v; }
  bool requires_grad() const { return requires_grad_; }

 private:
  struct Entry {
    std::string name;
    ParamRef ref;
    Init init;
  };
  ParameterGroup& checked() {
    DICYC_CHECK(allocated(), ConfigError, "parameter group '" << name_ << "': used before allocate()");
    return *this;
  }
  ParameterGroup& changed() {
    checked().version_ = core::next_parameter_version();
    return *this;
  }
  const ParameterGroup& checked() const {
    DICYC_CHECK(allocated(), ConfigError, "parameter group '" << name_ << "': used before allocate()");
    return *this;
  }
  std::string name_;
  std::vector<Entry> entries_;
  Index total_ = 0;
  bool requires_grad_ = true;
  core::Buffer<S, Device> values_, grads_;
  std::uint64_t version_ = 0;
  core::ContextSettings* settings_ = nullptr;
};

/// A view of a parameter (or its gradient) as a rank-R tensor map; null pointer -> null map.
template <class S, int R>
TensorMap<S, R> param_map(S* p, const ParamRef& r) {
  Shape<R> s;
  DICYC_CHECK(static_cast<int>(r.shape.size()) == R, ShapeError,
              "parameter of rank " << r.shape.size() << " viewed with rank " << R);
  for (int i = 0; i < R; ++i) s[i] = r.shape[i];
  return TensorMap<S, R>(p, s);
}

template <class S, int R>
ConstTensorMap<S, R> param_cmap(const S* p, const ParamRef& r) {
  Shape<R> s;
  DICYC_CHECK(static_cast<int>(r.shape.size()) == R, ShapeError,
              "parameter of rank " << r.shape.size() << " viewed with rank " << R);
  for (int i = 0; i < R; ++i) s[i] = r.shape[i];
  return ConstTensorMap<S, R>(p, s);
}

}  // namespace dicyc::nn
