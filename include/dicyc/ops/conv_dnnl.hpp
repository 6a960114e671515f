// dicyc/ops/conv_dnnl.hpp -- convolution passes on oneDNN's own convolution primitives (CPU, float).
//
// ConvPath::Dnnl (ops/conv.hpp, plan_conv) runs a conv's forward, input gradient or weight gradient
// on oneDNN's convolution_forward / _backward_data / _backward_weights primitives (jit:avx512_core
// or whatever the CPU has; oneDNN 2.6). dicyc's tensors are oneDNN's plain layouts as they are:
//   activations (C, x, y[, z], N) column-major  = nhwc / ndhwc  with W = x, H = y, D = z
//   conv kernel (Cout, Cin, kx, ky[, kz])       = hwio / dhwio
// so oneDNN's logical dims are the reverse of ours: {N, C, [z,] y, x}. Each primitive picks its
// own (blocked) layouts; the user tensors are reordered in and out with each pass (but for
// weights that are a parameter group's values: their copies in the forward's and the input
// gradient's layouts are kept while the group is unchanged, DnnlWeightCache; and dy, which a
// conv's weight and input gradients both read, is reordered once for the two, DnnlSharedInput),
// and the gradients are accumulated (dicyc's backward contract is +=) by the reorder back, whose
// sum post-op adds into the user's buffer; an input gradient the caller asks to have written
// (conv_backward's dx_overwrite: a fresh buffer) goes straight into it where the primitive's
// layout is the user's (bf16 compute: its diff_src is plain float). Primitives, their reorders and their scratchpad sizes are
// created once per shape and thread count and kept in a process-wide cache (creation takes
// milliseconds; a training step meets the same few shapes every iteration). Bias gradients stay
// with conv.hpp's sum_bias.
//
// NOTE(threads): the primitives run on oneDNN's OpenMP team, sized to the context's thread count
// for the duration of the pass, on the calling thread, while the context's pool is idle (no
// pool partition is running: a conv pass is called from the model's thread). This is the second
// threading scheme that context.hpp's NOTE warns about; it is used only where the measurements
// in docs/results/conv-paths.md ("oneDNN's convolution primitives as a path") found the pass
// faster in a whole training step, OpenMP's wait after the region included.
//
// Compiled where the build links oneDNN (DICYC_HAVE_DNNL, not DICYC_NO_DNNL), for host code only
// (not in nvcc translation units).
#pragma once

#include "dicyc/ops/gemm.hpp"

#if defined(DICYC_DNNL_GEMM) && !defined(__CUDACC__)
#define DICYC_DNNL_CONV 1
#endif

#if defined(DICYC_DNNL_CONV)
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

namespace dicyc::ops {
template <int Dim>
class ConvOptions;  // ops/conv.hpp
}  // namespace dicyc::ops

namespace dicyc::ops::detail {

/// What a cached oneDNN pass is keyed by: pass (0 forward, 1 input gradient, 2 weight gradient),
/// dimension, input shape, output channels, kernel, stride, padding, bias, threads, bf16 compute,
/// and whether the output is added to the user's buffer (the gradients; and the forward when it is
/// a transposed conv's input gradient) or written (the forward; and the input gradient when it is
/// a transposed conv's forward).
struct DnnlConvKey {
  int pass, dim;
  std::array<Index, 5> x;
  Index cout;
  std::array<Index, 3> k, s, p;
  bool bias;
  int threads;
  bool bf16;
  bool accumulate;
  auto tie() const { return std::tie(pass, dim, x, cout, k, s, p, bias, threads, bf16, accumulate); }
  bool operator<(const DnnlConvKey& o) const { return tie() < o.tie(); }
};

/// One pass, ready to run: the primitive, the user-layout descriptors, and the reorders between
/// them (empty where the layouts agree; the output reorder of an accumulating pass always exists
/// and adds).
struct DnnlConvPass {
  dnnl::primitive prim;
  // a: src (forward, weight gradient) or diff_dst (input gradient); b: weights (forward, input
  // gradient) or diff_dst (weight gradient); out: dst, diff_src or diff_weights.
  dnnl::memory::desc a_user, a_prim, b_user, b_prim, out_user, out_prim, bias_md;
  dnnl::reorder a_in, b_in, out_back;
  bool a_reorder = false, b_reorder = false, out_reorder = false;
  std::size_t scratch_bytes = 0;
};

inline dnnl::engine& dnnl_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

/// Sets OpenMP's thread count for one scope (on the calling thread) and restores it.
struct OmpThreadsScope {
  int prev;
  explicit OmpThreadsScope(int n) : prev(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreadsScope() { omp_set_num_threads(prev); }
  OmpThreadsScope(const OmpThreadsScope&) = delete;
  OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;
};

/// oneDNN's dims of a dicyc shape (C, s_1..s_Dim, N): {N, C, s_Dim, .., s_1}.
template <int Dim>
dnnl::memory::dims dnnl_act_dims(const Shape<Dim + 2>& s) {
  dnnl::memory::dims d{s[Dim + 1], s[0]};
  for (int i = Dim; i >= 1; --i) d.push_back(s[i]);
  return d;
}

template <int Dim>
dnnl::memory::dims dnnl_spatial(const std::array<Index, Dim>& v) {
  dnnl::memory::dims d;
  for (int i = Dim - 1; i >= 0; --i) d.push_back(v[i]);
  return d;
}

/// The right padding oneDNN needs for dicyc's output size (floor division may leave some of the
/// left padding unused on the right); negative when the last window ends before the padding.
template <int Dim>
std::array<Index, Dim> dnnl_right_padding(const ConvOptions<Dim>& o, const Shape<Dim + 2>& x, const Shape<Dim + 2>& y) {
  std::array<Index, Dim> r{};
  for (int d = 0; d < Dim; ++d)
    r[d] = (y[d + 1] - 1) * o.stride()[d] + o.kernel_size()[d] - x[d + 1] - o.padding()[d];
  return r;
}

class DnnlConvCache {
 public:
  static DnnlConvCache& instance() {
    static DnnlConvCache c;
    return c;
  }

  /// The pass for `key` (created on first use, under `threads` OpenMP threads as it will run);
  /// null when oneDNN has no primitive for it (the caller falls back to dicyc's own kernels).
  /// Shared, so a caller keeps its pass when another thread starts the cache over.
  template <int Dim>
  std::shared_ptr<const DnnlConvPass> get(const DnnlConvKey& key, const ConvOptions<Dim>& o, const Shape<Dim + 2>& x,
                          const Shape<Dim + 2>& y) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    if (cache_.size() >= kMaxEntries) cache_.clear();  // a process that meets many shapes: start over
    std::shared_ptr<const DnnlConvPass> p;
    try {
      p = create<Dim>(key, o, x, y);
    } catch (const dnnl::error&) {
      p.reset();
    }
    cache_.emplace(key, p);
    return p;
  }

 private:
  static constexpr std::size_t kMaxEntries = 512;

  template <int Dim>
  static std::unique_ptr<DnnlConvPass> create(const DnnlConvKey& key, const ConvOptions<Dim>& o,
                                              const Shape<Dim + 2>& x, const Shape<Dim + 2>& y) {
    using namespace dnnl;
    using tag = memory::format_tag;
    using dt = memory::data_type;
    auto& eng = dnnl_engine();
    const tag act = Dim == 3 ? tag::ndhwc : tag::nhwc, wt = Dim == 3 ? tag::dhwio : tag::hwio;
    const memory::dims xd = dnnl_act_dims<Dim>(x), yd = dnnl_act_dims<Dim>(y);
    memory::dims wd{o.out_channels(), o.in_channels()};
    for (int i = Dim - 1; i >= 0; --i) wd.push_back(o.kernel_size()[i]);
    const memory::dims bd{o.out_channels()};
    const memory::dims st = dnnl_spatial<Dim>(o.stride()), pl = dnnl_spatial<Dim>(o.padding()),
                       pr = dnnl_spatial<Dim>(dnnl_right_padding(o, x, y));
    const memory::desc x_user(xd, dt::f32, act), y_user(yd, dt::f32, act), w_user(wd, dt::f32, wt);
    // bf16 compute: the pass's inputs in bf16 (the reorders from the float user tensors round
    // them), its output (dst, diff_src, diff_weights) and the bias in float.
    const dt cdt = key.bf16 ? dt::bf16 : dt::f32;
    auto any = [](const memory::dims& d, dt t = dt::f32) { return memory::desc(d, t, tag::any); };
    primitive_attr attr;
    attr.set_scratchpad_mode(scratchpad_mode::user);
    OmpThreadsScope threads(key.threads);
    const auto fd = key.bias ? convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct,
                                                         any(xd, cdt), any(wd, cdt), memory::desc(bd, dt::f32, tag::x),
                                                         any(yd), st, pl, pr)
                             : convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct,
                                                         any(xd, cdt), any(wd, cdt), any(yd), st, pl, pr);
    const convolution_forward::primitive_desc fpd(fd, attr, eng);
    auto p = std::make_unique<DnnlConvPass>();
    auto in = [&](const memory::desc& user, const memory::desc& prim, dnnl::reorder& r, bool& needed) {
      needed = user != prim;
      if (needed) r = dnnl::reorder(reorder::primitive_desc(eng, user, eng, prim));
    };
    // The output always goes back through a reorder when it accumulates (its sum post-op is the
    // accumulation), and otherwise only when the layouts differ.
    auto out = [&](const memory::desc& prim, const memory::desc& user, bool accumulate) {
      p->out_prim = prim;
      p->out_user = user;
      p->out_reorder = accumulate || prim != user;
      if (!p->out_reorder) return;
      primitive_attr ra;
      if (accumulate) {
        post_ops po;
        po.append_sum(1.0f);
        ra.set_post_ops(po);
      }
      p->out_back = dnnl::reorder(reorder::primitive_desc(eng, prim, eng, user, ra));
    };
    if (key.pass == 0) {
      p->prim = convolution_forward(fpd);
      p->a_user = x_user, p->a_prim = fpd.src_desc();
      p->b_user = w_user, p->b_prim = fpd.weights_desc();
      p->bias_md = key.bias ? fpd.bias_desc() : memory::desc();
      in(p->a_user, p->a_prim, p->a_in, p->a_reorder);
      in(p->b_user, p->b_prim, p->b_in, p->b_reorder);
      out(fpd.dst_desc(), y_user, key.accumulate);
      p->scratch_bytes = fpd.scratchpad_desc().get_size();
    } else if (key.pass == 1) {
      const convolution_backward_data::desc bd_(algorithm::convolution_direct, any(xd), any(wd, cdt), any(yd, cdt), st,
                                                pl, pr);
      const convolution_backward_data::primitive_desc pd(bd_, attr, eng, fpd);
      p->prim = convolution_backward_data(pd);
      p->a_user = y_user, p->a_prim = pd.diff_dst_desc();
      p->b_user = w_user, p->b_prim = pd.weights_desc();
      in(p->a_user, p->a_prim, p->a_in, p->a_reorder);
      in(p->b_user, p->b_prim, p->b_in, p->b_reorder);
      out(pd.diff_src_desc(), x_user, key.accumulate);
      p->scratch_bytes = pd.scratchpad_desc().get_size();
    } else {
      const convolution_backward_weights::desc bw(algorithm::convolution_direct, any(xd, cdt), any(wd), any(yd, cdt), st,
                                                  pl, pr);
      const convolution_backward_weights::primitive_desc pd(bw, attr, eng, fpd);
      p->prim = convolution_backward_weights(pd);
      p->a_user = x_user, p->a_prim = pd.src_desc();
      p->b_user = y_user, p->b_prim = pd.diff_dst_desc();
      in(p->a_user, p->a_prim, p->a_in, p->a_reorder);
      in(p->b_user, p->b_prim, p->b_in, p->b_reorder);
      out(pd.diff_weights_desc(), w_user, key.accumulate);
      p->scratch_bytes = pd.scratchpad_desc().get_size();
    }
    return p;
  }

  std::mutex mu_;
  std::map<DnnlConvKey, std::shared_ptr<const DnnlConvPass>> cache_;
};

/// Weights in a primitive's layout (bf16 blocked, or float blocked), kept while their parameter
/// group is unchanged: keyed by the weights' address and the pass that wants them (DnnlConvKey),
/// valid while the version ContextSettings::parameter_version() gives for that address is the one
/// they were made at (nn::ParameterGroup renews it at every writable access, the optimiser's
/// step included). A training step passes the same weights through several passes between two
/// optimiser steps (a generator's forward on the real image and again in the cycle, a
/// discriminator's three forwards), so each layout is made once per step instead of once per pass.
/// One entry per key; a new version replaces it. Bounded (kMaxBytes, kMaxEntries: then it starts
/// over). Process-wide and thread-safe; entries are shared, so a pass keeps its copy while another
/// thread replaces it.
class DnnlWeightCache {
 public:
  static DnnlWeightCache& instance() {
    static DnnlWeightCache c;
    return c;
  }
  struct Stats {
    std::uint64_t hits = 0, misses = 0;
  };
  Stats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  /// The copy of the weights at `w` for `key` at `version`, `bytes` long, made by fill(dst) on a
  /// miss; null when no memory could be had for it (the caller reorders as without the cache).
  template <class Fill>
  std::shared_ptr<void> get(const float* w, const DnnlConvKey& key, std::uint64_t version, std::size_t bytes,
                            Fill&& fill) {
    const auto k = std::make_pair(w, key);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = map_.find(k);
      if (it != map_.end() && it->second.version == version && it->second.bytes == bytes) {
        ++stats_.hits;
        return it->second.data;
      }
    }
    const std::size_t padded = (bytes + 63) / 64 * 64;
    std::shared_ptr<void> mem(std::aligned_alloc(64, padded), [](void* q) { std::free(q); });
    if (!mem.get()) return nullptr;
    fill(mem.get());
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.misses;
    auto it = map_.find(k);
    if (it != map_.end()) {
      total_ -= it->second.bytes;
      map_.erase(it);
    }
    if (map_.size() >= kMaxEntries || total_ + bytes > kMaxBytes) {  // many models or shapes: start over
      map_.clear();
      total_ = 0;
    }
    map_.emplace(k, Entry{version, bytes, mem});
    total_ += bytes;
    return mem;
  }

 private:
  static constexpr std::size_t kMaxEntries = 4096;
  static constexpr std::size_t kMaxBytes = std::size_t(512) << 20;
  struct Entry {
    std::uint64_t version;
    std::size_t bytes;
    std::shared_ptr<void> data;
  };
  mutable std::mutex mu_;
  std::map<std::pair<const float*, DnnlConvKey>, Entry> map_;
  std::size_t total_ = 0;
  Stats stats_;
};

template <int Dim>
DnnlConvKey dnnl_conv_key(int pass, const ConvOptions<Dim>& o, const Shape<Dim + 2>& x, bool bias, int threads,
                          bool bf16, bool accumulate) {
  DnnlConvKey k{pass, Dim, {}, o.out_channels(), {}, {}, {}, bias, threads, bf16, accumulate};
  for (int i = 0; i < Dim + 2; ++i) k.x[i] = x[i];
  for (int d = 0; d < Dim; ++d) {
    k.k[d] = o.kernel_size()[d];
    k.s[d] = o.stride()[d];
    k.p[d] = o.padding()[d];
  }
  return k;
}

/// One input of two passes run back to back (a conv's weight and input gradients both read dy),
/// in the layout the first pass reordered it to: the second pass uses it instead of reordering
/// the same tensor again when its primitive wants the same layout (in bf16 both want dy as plain
/// bf16). `user` names the tensor (set by the caller); the copy is made by the first pass that
/// reorders it and lives as long as this object.
struct DnnlSharedInput {
  const float* user = nullptr;
  dnnl::memory::desc md;
  std::shared_ptr<void> data;
};

/// How many passes took their input from a DnnlSharedInput, process-wide (what the tests read to
/// see that the sharing happens).
inline std::atomic<long>& dnnl_shared_input_reuses() {
  static std::atomic<long> n{0};
  return n;
}

/// Runs pass `pass` of conv `o` (input shape x, output shape y) with oneDNN, in bf16 if `bf16`:
/// a and b as DnnlConvPass names them, out written or, if `accumulate` (a conv's gradients),
/// added to. Returns false, having done nothing, when oneDNN has no primitive for the shape. A transposed conv's passes are those of the conv from its output grid to its input
/// grid (ops/conv.hpp, transposed_as_conv): its forward is that conv's input gradient, written;
/// its input gradient that conv's forward, accumulated. With `shared`, the input that is
/// shared->user (a or b) comes from, or is kept in, *shared (DnnlSharedInput).
template <int Dim, class Device>
bool dnnl_conv_run(Context<Device>& ctx, int pass, bool bf16, const ConvOptions<Dim>& o, const Shape<Dim + 2>& x,
                   const Shape<Dim + 2>& y, const float* a, const float* b, const float* bias, float* out,
                   bool accumulate, DnnlSharedInput* shared = nullptr) {
  const int threads = ctx.num_threads();
  const auto key = dnnl_conv_key<Dim>(pass, o, x, bias != nullptr, threads, bf16, accumulate);
  const std::shared_ptr<const DnnlConvPass> p = DnnlConvCache::instance().get<Dim>(key, o, x, y);
  if (!p) return false;
  using dnnl::memory;
  auto& eng = dnnl_engine();
  dnnl::stream s(eng);
  auto bytes_floats = [](const memory::desc& md) { return Index((md.get_size() + sizeof(float) - 1) / sizeof(float)); };
  OmpThreadsScope omp(threads);
  memory a_user(p->a_user, eng, const_cast<float*>(a)), b_user(p->b_user, eng, const_cast<float*>(b));
  // The forward's and the input gradient's b are the weights: when they are a parameter group's
  // values, their copy in the primitive's layout comes from DnnlWeightCache (made once per version).
  std::shared_ptr<void> b_kept;
  if (p->b_reorder && pass != 2 && ctx.reuse_weight_layouts())
    if (const std::uint64_t version = ctx.parameter_version(b, p->b_user.get_size()))
      b_kept = DnnlWeightCache::instance().get(b, key, version, p->b_prim.get_size(), [&](void* dst) {
        memory d(p->b_prim, eng, dst);
        p->b_in.execute(s, b_user, d);
        s.wait();
      });
  // The shared input (DnnlSharedInput): taken from *shared when it holds this tensor in this
  // pass's layout; otherwise, when this pass reorders it, its copy is kept there.
  const bool a_shared = shared && a == shared->user && p->a_reorder,
             b_shared = shared && b == shared->user && p->b_reorder && !b_kept;
  const bool a_from = a_shared && shared->data && shared->md == p->a_prim,
             b_from = b_shared && shared->data && shared->md == p->b_prim;
  // Owned buffers for the other primitive-layout copies (the context's caching allocator).
  core::Buffer<float, Device> abuf(ctx, p->a_reorder && !a_from ? bytes_floats(p->a_prim) : 0),
      bbuf(ctx, p->b_reorder && !b_kept && !b_from ? bytes_floats(p->b_prim) : 0),
      obuf(ctx, p->out_reorder ? bytes_floats(p->out_prim) : 0),
      sbuf(ctx, Index((p->scratch_bytes + sizeof(float) - 1) / sizeof(float)));
  memory a_prim = a_from ? memory(p->a_prim, eng, shared->data.get())
                  : p->a_reorder ? memory(p->a_prim, eng, abuf.data()) : a_user;
  memory b_prim = b_kept ? memory(p->b_prim, eng, b_kept.get())
                  : b_from ? memory(p->b_prim, eng, shared->data.get())
                  : p->b_reorder ? memory(p->b_prim, eng, bbuf.data()) : b_user;
  memory o_user(p->out_user, eng, out);
  memory o_prim = p->out_reorder ? memory(p->out_prim, eng, obuf.data()) : o_user;
  memory scratch(dnnl::memory::desc({Index(p->scratch_bytes)}, memory::data_type::u8, memory::format_tag::x), eng,
                 p->scratch_bytes ? static_cast<void*>(sbuf.data()) : nullptr);
  if (p->a_reorder && !a_from) p->a_in.execute(s, a_user, a_prim);
  if (p->b_reorder && !b_kept && !b_from) p->b_in.execute(s, b_user, b_prim);
  auto keep = [&](core::Buffer<float, Device>& buf, const memory::desc& md) {
    auto owner = std::make_shared<core::Buffer<float, Device>>(std::move(buf));
    shared->data = std::shared_ptr<void>(owner, owner->data());
    shared->md = md;
  };
  if (a_from || b_from) ++dnnl_shared_input_reuses();
  else if (a_shared) keep(abuf, p->a_prim);
  else if (b_shared) keep(bbuf, p->b_prim);
  std::unordered_map<int, memory> args{{DNNL_ARG_SCRATCHPAD, scratch}};
  if (pass == 0) {
    args.insert({DNNL_ARG_SRC, a_prim});
    args.insert({DNNL_ARG_WEIGHTS, b_prim});
    args.insert({DNNL_ARG_DST, o_prim});
    if (bias) args.insert({DNNL_ARG_BIAS, memory(p->bias_md, eng, const_cast<float*>(bias))});
  } else if (pass == 1) {
    args.insert({DNNL_ARG_DIFF_DST, a_prim});
    args.insert({DNNL_ARG_WEIGHTS, b_prim});
    args.insert({DNNL_ARG_DIFF_SRC, o_prim});
  } else {
    args.insert({DNNL_ARG_SRC, a_prim});
    args.insert({DNNL_ARG_DIFF_DST, b_prim});
    args.insert({DNNL_ARG_DIFF_WEIGHTS, o_prim});
  }
  p->prim.execute(s, args);
  if (p->out_reorder) p->out_back.execute(s, o_prim, o_user);
  s.wait();
  return true;
}

}  // namespace dicyc::ops::detail

#endif  // DICYC_DNNL_CONV

namespace dicyc::ops {

/// How this CPU runs bf16 convolutions (ContextSettings::set_conv_bf16): "amx" or "avx512_bf16"
/// (native), "emulated" (AVX-512 without bf16 instructions: oneDNN converts in software, slower
/// than float), "none" (no AVX-512, or a build without oneDNN: the convolutions stay float).
inline const char* bf16_conv_support() {
#if defined(DICYC_DNNL_CONV)
  const auto isa = dnnl::get_effective_cpu_isa();
  if (isa == dnnl::cpu_isa::avx512_core_amx) return "amx";
  if (isa == dnnl::cpu_isa::avx512_core_bf16) return "avx512_bf16";
  if (isa == dnnl::cpu_isa::avx512_core || isa == dnnl::cpu_isa::avx512_core_vnni) return "emulated";
#endif
  return "none";
}

}  // namespace dicyc::ops
