// dicyc/model/image_pool.hpp -- the history of generated images that the discriminator step
// draws its fakes from (Shrivastava et al. 2017, as CycleGAN's ImagePool).
//
// Per sample of a query batch: while the pool holds fewer than `capacity` images the sample is
// stored and returned as is; once full, with probability 0.5 a uniformly chosen stored image is
// returned and the sample takes its place, otherwise the sample itself is returned. Capacity 0
// passes everything through. Seeded: the same seed and queries give the same answers, and the
// state (RNG and stored images) can be saved and restored for exact resumes.
#pragma once

#include <vector>

#include "dicyc/core/buffer.hpp"
#include "dicyc/core/rng.hpp"

namespace dicyc::model {

template <class S, int R, class Device>
class ImagePool {
 public:
  using T = core::Tensor<S, R, Device>;

  explicit ImagePool(Index capacity = 50, std::uint64_t seed = 0) : capacity_(capacity), rng_(seed) {
    DICYC_CHECK(capacity >= 0, ConfigError, "ImagePool: capacity must be >= 0, got " << capacity);
  }

  Index capacity() const { return capacity_; }
  Index size() const { return static_cast<Index>(images_.size()); }

  /// The batch the discriminator sees for `fakes` (samples along the last axis).
  T query(core::Context<Device>& ctx, const ConstTensorMap<S, R>& fakes) {
    Shape<R> one = fakes.dimensions();
    const Index N = one[R - 1];
    one[R - 1] = 1;
    const Index per = num_elements(one);
    T out(ctx, fakes.dimensions());
    auto copy = [&](const S* src, S* dst) {
      TensorMap<S, 1> d(dst, per);
      d.device(ctx.device()) = ConstTensorMap<S, 1>(src, per);
    };
    for (Index n = 0; n < N; ++n) {
      const S* sample = fakes.data() + n * per;
      S* dst = out.data() + n * per;
      if (capacity_ == 0) {
        copy(sample, dst);
        continue;
      }
      if (!images_.empty())
        DICYC_CHECK(images_.front().shape() == one, ShapeError,
                    "ImagePool: expected samples of shape " << shape_str(images_.front().shape()) << ", but got "
                                                            << shape_str(one));
      if (size() < capacity_) {
        T keep(ctx, one);
        copy(sample, keep.data());
        images_.push_back(std::move(keep));
        copy(sample, dst);
      } else if (rng_.uniform() > 0.5) {
        const auto id = static_cast<std::size_t>(rng_.uniform_int(static_cast<std::uint64_t>(capacity_)));
        copy(images_[id].data(), dst);
        copy(sample, images_[id].data());
      } else {
        copy(sample, dst);
      }
    }
    return out;
  }

  // ----------------------------------------------------------------------------- state
  const std::vector<T>& images() const { return images_; }
  core::Rng& rng() { return rng_; }
  const core::Rng& rng() const { return rng_; }
  /// Replaces the stored images (checkpoint restore); at most `capacity`, all of one shape.
  void restore(std::vector<T> images, const core::Rng::Snapshot& rng) {
    DICYC_CHECK(static_cast<Index>(images.size()) <= capacity_, ConfigError,
                "ImagePool: " << images.size() << " images to restore exceed the capacity " << capacity_);
    for (const auto& im : images)
      DICYC_CHECK(im.shape() == images.front().shape() && im.shape()[R - 1] == 1, ShapeError,
                  "ImagePool: restored images must be single samples of one shape, got " << shape_str(im.shape()));
    images_ = std::move(images);
    rng_.restore(rng);
  }

 private:
  Index capacity_;
  core::Rng rng_;
  std::vector<T> images_;
};

}  // namespace dicyc::model
