// dicyc/core/context.hpp -- one Context per device: the Eigen device, its threads or stream, and
// a caching allocator for tensors and scratch space.
//
// Context<Eigen::DefaultDevice>      single-threaded, always available.
// Context<Eigen::ThreadPoolDevice>   needs EIGEN_USE_THREADS (link dicyc::threads).
// Context<Eigen::GpuDevice>          needs EIGEN_USE_GPU (link dicyc::cuda); see context_gpu.hpp.
//
// NOTE(threads): one threading scheme per process. The Eigen ThreadPool of the context owns the
// worker threads; the oneDNN GEMM backend is called single-threaded (OpenMP pinned to 1 thread)
// from the pool's partitions. Mixing OpenMP's own team with the pool halved GEMM speed on this
// 2-core machine; partitioned single-thread sgemm measured 346 GFLOP/s against 345 for oneDNN's
// own 2-thread OpenMP run.
//
// Allocations are cached by size (as PyTorch's caching allocator does): a training step allocates
// the same sizes every iteration, and returning large blocks to the OS costs page faults on the
// CPU and a synchronising cudaFree on the GPU. A Context must outlive every Buffer made from it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dicyc/core/types.hpp"

#if defined(EIGEN_USE_GPU)
#include <cublas_v2.h>
#endif

namespace dicyc::core {

template <class Device>
struct is_gpu_device : std::false_type {};
#if defined(EIGEN_USE_GPU)
template <>
struct is_gpu_device<Eigen::GpuDevice> : std::true_type {};
#endif
template <class Device>
constexpr bool is_gpu_v = is_gpu_device<Device>::value;

/// Which convolution passes run on oneDNN's own convolution primitives (CPU, float, builds that
/// link oneDNN; ops/conv_dnnl.hpp): Auto those that measured faster than dicyc's kernels
/// (ops::plan_conv), Always every conv pass oneDNN can take (tests, measurements), Off none.
enum class DnnlConvMode { Off, Auto, Always };

/// "0" or "off", "auto" (or empty), "always" (DICYC_DNNL_CONV in the tools' environment).
inline DnnlConvMode parse_dnnl_conv_mode(const std::string& v) {
  if (v == "0" || v == "off") return DnnlConvMode::Off;
  if (v.empty() || v == "auto" || v == "1") return DnnlConvMode::Auto;
  DICYC_CHECK(v == "always", ConfigError, "DICYC_DNNL_CONV='" << v << "': expected 0 (off), auto or always");
  return DnnlConvMode::Always;
}

/// A new parameter version: every call returns a value no call returned before (process-wide), so
/// a (memory, version) pair never names two different contents.
inline std::uint64_t next_parameter_version() {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}

/// Whether the CPU thread pool's idle workers should spin (Context<Eigen::ThreadPoolDevice>::
/// set_pool_spinning) for a model whose generator has `ngf` channels: only for float convolutions
/// with ngf >= 64. Measured on 2 cores of an Intel Xeon (docs/performance.md, "... the pool's
/// spinning"): with bf16 convolutions, most of a step runs on oneDNN's OpenMP team, and the
/// pool's spinning took its cores (CycleGAN step without spinning: 2-D at 96^2, ngf 16, 0.92 of
/// the time, 3-D at 48^3 0.96); in float at ngf 16 the PatchGAN and the stems run on oneDNN too
/// (2-D CycleGAN 0.91, NMI-DiCyc 0.93; 3-D the same within the spread); at ngf 32 the same either
/// way; at ngf 64 the pool does most of the work back to back and spinning pays (without it
/// 1.02-1.05).
inline bool pool_spinning_pays(Index ngf, bool conv_bf16) { return !conv_bf16 && ngf >= 64; }

/// Settings shared by every context: the scratch bound of tiled ops, and the switches of the
/// convolution paths that ops::plan_conv() reads (on by default; the tools set them from
/// DICYC_WINOGRAD=0 / DICYC_COL2IM=0 / DICYC_THIN_DIRECT=0 / DICYC_DNNL_CONV=0|auto|always in the environment).
class ContextSettings {
 public:
  /// Conv passes on oneDNN's primitives (see DnnlConvMode).
  DnnlConvMode dnnl_conv() const { return dnnl_conv_; }
  void set_dnnl_conv(DnnlConvMode m) { dnnl_conv_ = m; }
  /// Float convolutions compute in bf16 (as PyTorch's CPU autocast does for them): every conv
  /// pass oneDNN takes runs on its bf16 primitives (AMX or AVX512-BF16 where the CPU has them,
  /// emulated on other AVX-512 CPUs; ops::bf16_conv_support() says which), with the inputs rounded
  /// to bf16 by the reorders, products accumulated in float and float results; the tensors, the
  /// weights, Adam and every other op stay float. Off by default; DnnlConvMode::Off overrides it;
  /// no effect in builds without oneDNN or where oneDNN has no bf16 primitive (then float).
  bool conv_bf16() const { return conv_bf16_; }
  void set_conv_bf16(bool on) { conv_bf16_ = on; }
  /// Stride-1 3x3(x3) convs with >= 64 channels both ways on Winograd (CPU, float and double).
  bool winograd() const { return winograd_; }
  void set_winograd(bool on) { winograd_ = on; }
  /// Conv input gradients and transposed-conv forwards on GEMM + col2im where the shapes suit it (CPU).
  bool col2im() const { return col2im_; }
  void set_col2im(bool on) { col2im_ = on; }
  /// Stride-1 convs with one channel on one side (the 7^d heads and the stems' input gradients)
  /// on direct sums instead of a GEMV or rank-1 GEMM over im2col columns (CPU, float and double;
  /// ops/conv_thin.hpp).
  bool thin_direct() const { return thin_direct_; }
  void set_thin_direct(bool on) { thin_direct_ = on; }

  /// Weights in the layout of a oneDNN convolution primitive (bf16 or float blocked) are kept
  /// between the passes that use them while their parameter group is unchanged
  /// (ops/conv_dnnl.hpp, DnnlWeightCache): on by default; off reorders them at every pass
  /// (DICYC_WEIGHT_REUSE=0 in the tools' environment, for comparison). Same results either way.
  bool reuse_weight_layouts() const { return reuse_weight_layouts_; }
  void set_reuse_weight_layouts(bool on) { reuse_weight_layouts_ = on; }

  /// Parameter memory: nn::ParameterGroup registers its values, [begin, begin + bytes), with the
  /// address of its version (next_parameter_version(), renewed whenever the values may be
  /// written). Ops that keep a weight tensor in another layout reuse it while the version holds.
  /// Like the rest of a context, used from one thread at a time.
  void register_parameters(const void* begin, std::size_t bytes, const std::uint64_t* version) {
    unregister_parameters(begin);
    params_.push_back({static_cast<const char*>(begin), bytes, version});
  }
  void unregister_parameters(const void* begin) {
    for (std::size_t i = 0; i < params_.size(); ++i)
      if (params_[i].begin == begin) {
        params_.erase(params_.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
  }
  /// The current version of the registered parameters holding [p, p + bytes), or 0 when no
  /// registered range holds all of it (a temporary, an activation).
  std::uint64_t parameter_version(const void* p, std::size_t bytes) const {
    const char* c = static_cast<const char*>(p);
    for (const auto& r : params_)
      if (c >= r.begin && c + bytes <= r.begin + r.bytes) return *r.version;
    return 0;
  }

  /// Upper bound on the scratch memory of one tiled op (im2col columns): large convolutions are
  /// processed in column blocks that fit. Default 64 MiB.
  std::size_t workspace_limit() const { return workspace_limit_; }
  void set_workspace_limit(std::size_t bytes) {
    DICYC_CHECK(bytes >= 4096, ConfigError, "workspace limit must be at least 4096 bytes, got " << bytes);
    workspace_limit_ = bytes;
  }

 private:
  std::size_t workspace_limit_ = std::size_t(64) << 20;
  bool winograd_ = true, col2im_ = true, thin_direct_ = true;
  DnnlConvMode dnnl_conv_ = DnnlConvMode::Auto;
  bool conv_bf16_ = false;
  bool reuse_weight_layouts_ = true;
  struct ParamRange {
    const char* begin;
    std::size_t bytes;
    const std::uint64_t* version;
  };
  std::vector<ParamRange> params_;
};

namespace detail {

/// Size-keyed cache of device blocks. Thread-safe; blocks go back to the device on destruction.
template <class Device>
class BlockCache {
 public:
  explicit BlockCache(const Device* dev) : dev_(dev) {}
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;
  ~BlockCache() { release_all(); }

  void* acquire(std::size_t bytes) {
    bytes = round_up(bytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.lower_bound(bytes);
      // Reuse a block up to twice the request; larger ones stay for larger requests.
      if (it != free_.end() && it->first <= 2 * bytes) {
        void* p = it->second;
        sizes_[p] = it->first;
        free_.erase(it);
        return p;
      }
    }
    void* p = dev_->allocate(bytes);
    if (p == nullptr) {
      release_all();
      p = dev_->allocate(bytes);
    }
    DICYC_CHECK(p != nullptr, DeviceError, "out of memory allocating " << bytes << " bytes");
    std::lock_guard<std::mutex> lock(mu_);
    sizes_[p] = bytes;
    return p;
  }

  void release(void* p) {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sizes_.find(p);
    if (it == sizes_.end()) return;
    free_.emplace(it->second, p);
    sizes_.erase(it);
  }

  /// Returns every cached free block to the device.
  void release_all() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& kv : free_) dev_->deallocate(kv.second);
    free_.clear();
  }

  /// Bytes obtained from the device and not returned: blocks in use plus cached free blocks. The
  /// cache returns nothing until it is destroyed (or an allocation fails), so after some work this
  /// is the peak of that work's device memory.
  std::size_t footprint_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::size_t n = 0;
    for (auto& kv : free_) n += kv.first;
    for (auto& kv : sizes_) n += kv.second;
    return n;
  }

  std::size_t cached_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::size_t n = 0;
    for (auto& kv : free_) n += kv.first;
    return n;
  }

 private:
  static std::size_t round_up(std::size_t b) {
    const std::size_t a = 256;
    return b == 0 ? a : (b + a - 1) / a * a;
  }
  const Device* dev_;
  mutable std::mutex mu_;
  std::multimap<std::size_t, void*> free_;
  std::map<void*, std::size_t> sizes_;
};

}  // namespace detail

template <class Device>
class Context;

/// Single-threaded CPU context.
template <>
class Context<Eigen::DefaultDevice> : public ContextSettings {
 public:
  using Device = Eigen::DefaultDevice;
  Context() : cache_(&dev_) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const Device& device() const { return dev_; }
  int num_threads() const { return 1; }
  void synchronize() const {}
  detail::BlockCache<Device>& allocator() { return cache_; }
  std::string name() const { return "cpu (1 thread)"; }

  /// Runs f(begin, end) over [0, n); serial here.
  template <class F>
  void parallel_for(Index n, double /*cost_per_item*/, F&& f) const {
    if (n > 0) f(Index(0), n);
  }

 private:
  Device dev_;
  detail::BlockCache<Device> cache_;
};

#if defined(EIGEN_USE_THREADS)
/// Multi-threaded CPU context over an Eigen ThreadPool it owns.
template <>
class Context<Eigen::ThreadPoolDevice> : public ContextSettings {
 public:
  using Device = Eigen::ThreadPoolDevice;
  /// threads <= 0 picks std::thread::hardware_concurrency().
  explicit Context(int threads = 0)
      : pool_(std::make_unique<Eigen::ThreadPool>(pick(threads))),
        dev_(pool_.get(), pool_->NumThreads()),
        cache_(&dev_) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const Device& device() const { return dev_; }
  int num_threads() const { return dev_.numThreads(); }
  void synchronize() const {}
  detail::BlockCache<Device>& allocator() { return cache_; }
  std::string name() const { return "cpu (" + std::to_string(num_threads()) + " threads)"; }

  /// Runs f(begin, end) over [0, n) in blocks on the pool; cost_per_item is in cycles.
  template <class F>
  void parallel_for(Index n, double cost_per_item, F&& f) const {
    if (n <= 0) return;
    dev_.parallelFor(n, Eigen::TensorOpCost(0, 0, cost_per_item), [&f](Index b, Index e) { f(b, e); });
  }

  /// Whether the pool's idle workers spin before they sleep (Eigen's default, on: about 5000 /
  /// threads turns of looking for work after each op). Spinning shortens the start of the next op
  /// when the pool does one op after another (wide float layers: Winograd, GEMM partitions); it
  /// takes the cores from oneDNN's OpenMP team when the next op is a oneDNN convolution primitive,
  /// which is most of a step with bf16 convolutions or narrow generators
  /// (pool_spinning_pays() has the rule and its measurements). Changing it re-creates the
  /// pool with the same thread count: call it only while no work is in flight on this context.
  void set_pool_spinning(bool on) {
    if (on == spinning_) return;
    const int n = pool_->NumThreads();
    pool_.reset();  // joins the old workers
    pool_ = std::make_unique<Eigen::ThreadPool>(n, on);
    dev_ = Device(pool_.get(), n);
    spinning_ = on;
  }
  bool pool_spinning() const { return spinning_; }

 private:
  static int pick(int t) {
    DICYC_CHECK(t >= 0, ConfigError, "Context: thread count must be >= 0 (0 = all cores), got " << t);
    if (t == 0) t = static_cast<int>(std::thread::hardware_concurrency());
    return t > 0 ? t : 1;
  }
  std::unique_ptr<Eigen::ThreadPool> pool_;
  Device dev_;
  detail::BlockCache<Device> cache_;
  bool spinning_ = true;
};
#endif

#if defined(EIGEN_USE_GPU)
/// Number of CUDA devices visible, 0 when there is no GPU or no driver.
inline int gpu_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

/// GPU context: an Eigen stream device on one CUDA device, and a cuBLAS handle on that stream.
template <>
class Context<Eigen::GpuDevice> : public ContextSettings {
 public:
  using Device = Eigen::GpuDevice;
  explicit Context(int device_id = 0)
      : stream_(checked(device_id)), dev_(stream_.get()), cache_(&dev_) {
    DICYC_CHECK(cublasCreate(&cublas_) == CUBLAS_STATUS_SUCCESS, DeviceError, "cuBLAS initialisation failed");
    cublasSetStream(cublas_, stream_->stream());
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  ~Context() {
    cache_.release_all();
    cublasDestroy(cublas_);
  }

  const Device& device() const { return dev_; }
  int num_threads() const { return 1; }
  void synchronize() const { dev_.synchronize(); }
  detail::BlockCache<Device>& allocator() { return cache_; }
  cublasHandle_t cublas() const { return cublas_; }
  std::string name() const { return "cuda (compute " + std::to_string(dev_.majorDeviceVersion()) + "." +
                                    std::to_string(dev_.minorDeviceVersion()) + ")"; }

 private:
  static std::unique_ptr<Eigen::GpuStreamDevice> checked(int id) {
    const int n = gpu_device_count();
    DICYC_CHECK(n > 0, DeviceError, "a GPU context was requested, but no CUDA device is available");
    DICYC_CHECK(id >= 0 && id < n, DeviceError, "CUDA device " << id << " requested, but only " << n << " present");
    return std::make_unique<Eigen::GpuStreamDevice>(id);
  }
  std::unique_ptr<Eigen::GpuStreamDevice> stream_;
  Device dev_;
  detail::BlockCache<Device> cache_;
  cublasHandle_t cublas_ = nullptr;
};
#endif

}  // namespace dicyc::core
