// dicyc/core/buffer.hpp -- owning device storage (Buffer) and a shaped tensor over it (Tensor).
//
// Memory lives on the context's device (host memory for the CPU devices, device memory for the
// GPU). Host <-> device transfers are explicit: copy_from_host / copy_to_host. map() gives an
// Eigen TensorMap over the storage; evaluate into it with `t.map().device(ctx.device()) = expr`.
#pragma once

#include <utility>
#include <vector>

#include "dicyc/core/context.hpp"

namespace dicyc::core {

template <class Scalar, class Device>
class Buffer {
 public:
  Buffer() = default;
  Buffer(Context<Device>& ctx, Index size) : ctx_(&ctx), size_(size) {
    DICYC_CHECK(size >= 0, ShapeError, "Buffer: negative size " << size);
    if (size > 0) data_ = static_cast<Scalar*>(ctx.allocator().acquire(sizeof(Scalar) * size));
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { swap(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    Buffer tmp(std::move(o));
    swap(tmp);
    return *this;
  }
  ~Buffer() {
    if (data_) ctx_->allocator().release(data_);
  }
  void swap(Buffer& o) noexcept {
    std::swap(ctx_, o.ctx_);
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
  }

  Scalar* data() { return data_; }
  const Scalar* data() const { return data_; }
  Index size() const { return size_; }
  Context<Device>& context() const { return *ctx_; }

  void set_zero() {
    if (size_ > 0) ctx_->device().memset(data_, 0, sizeof(Scalar) * size_);
  }
  void copy_from_host(const Scalar* src, Index n) {
    DICYC_CHECK(n == size_, ShapeError, "Buffer: copy of " << n << " elements into a buffer of " << size_);
    if (n > 0) ctx_->device().memcpyHostToDevice(data_, src, sizeof(Scalar) * n);
  }
  void copy_to_host(Scalar* dst, Index n) const {
    DICYC_CHECK(n == size_, ShapeError, "Buffer: copy of " << size_ << " elements into " << n);
    if (n > 0) {
      ctx_->device().memcpyDeviceToHost(dst, data_, sizeof(Scalar) * n);
      ctx_->synchronize();
    }
  }

 private:
  Context<Device>* ctx_ = nullptr;
  Scalar* data_ = nullptr;
  Index size_ = 0;
};

/// The n elements at p (memory of ctx's device) as a host vector; waits for the copy. For the ops
/// that run on the host for a GPU context.
template <class S, class Device>
std::vector<S> to_host(Context<Device>& ctx, const S* p, Index n) {
  std::vector<S> v(static_cast<std::size_t>(n));
  if (n > 0) {
    ctx.synchronize();
    ctx.device().memcpyDeviceToHost(v.data(), p, sizeof(S) * static_cast<std::size_t>(n));
    ctx.synchronize();
  }
  return v;
}

/// d[0, n) = h[0, n) on ctx's device; waits for the copy.
template <class S, class Device>
void copy_from_host(Context<Device>& ctx, const S* h, Index n, S* d) {
  if (n <= 0) return;
  ctx.synchronize();
  ctx.device().memcpyHostToDevice(d, h, sizeof(S) * static_cast<std::size_t>(n));
  ctx.synchronize();
}

/// d[0, h.size()) += h on ctx's device, summed in the accumulation type; waits for it.
template <class S, class Device>
void add_from_host(Context<Device>& ctx, const std::vector<S>& h, S* d) {
  const Index n = static_cast<Index>(h.size());
  if (n == 0) return;
  Buffer<S, Device> tmp(ctx, n);
  tmp.copy_from_host(h.data(), n);
  TensorMap<S, 1> t(tmp.data(), n), dm(d, n);
  dm.device(ctx.device()) = (dm.template cast<acc_t<S>>() + t.template cast<acc_t<S>>()).template cast<S>();
  ctx.synchronize();
}

/// A shaped, owning tensor on a device.
template <class Scalar, int Rank, class Device>
class Tensor {
 public:
  using Map = TensorMap<Scalar, Rank>;
  using ConstMap = ConstTensorMap<Scalar, Rank>;

  Tensor() = default;
  Tensor(Context<Device>& ctx, const Shape<Rank>& shape)
      : shape_(shape), buf_(ctx, num_elements(shape)) {}

  static Tensor zeros(Context<Device>& ctx, const Shape<Rank>& shape) {
    Tensor t(ctx, shape);
    t.buf_.set_zero();
    return t;
  }
  static Tensor from_host(Context<Device>& ctx, const Shape<Rank>& shape, const std::vector<Scalar>& v) {
    Tensor t(ctx, shape);
    t.buf_.copy_from_host(v.data(), static_cast<Index>(v.size()));
    return t;
  }

  const Shape<Rank>& shape() const { return shape_; }
  Index dimension(int i) const { return shape_[i]; }
  Index size() const { return buf_.size(); }
  Scalar* data() { return buf_.data(); }
  const Scalar* data() const { return buf_.data(); }
  Context<Device>& context() const { return buf_.context(); }

  Map map() { return Map(buf_.data(), shape_); }
  ConstMap map() const { return ConstMap(buf_.data(), shape_); }
  ConstMap cmap() const { return ConstMap(buf_.data(), shape_); }

  void set_zero() { buf_.set_zero(); }
  std::vector<Scalar> to_host() const {
    std::vector<Scalar> v(static_cast<std::size_t>(size()));
    buf_.copy_to_host(v.data(), size());
    return v;
  }
  void copy_from_host(const std::vector<Scalar>& v) { buf_.copy_from_host(v.data(), static_cast<Index>(v.size())); }

 private:
  Shape<Rank> shape_{};
  Buffer<Scalar, Device> buf_;
};

}  // namespace dicyc::core
