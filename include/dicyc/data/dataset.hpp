// dicyc/data/dataset.hpp -- unpaired datasets of NIfTI volumes: preparation (resample,
// reorient, normalise), seeded random 2-D slices or 3-D patches with random affine augmentation,
// and a loader that prepares the next batch on its own thread while the training step runs.
// Link dicyc::io.
//
//   data::PrepareOptions prep;                      // 1 mm, RAS+, percentiles -> [-1, 1]
//   auto a = data::Domain::load(data::list_volumes("mr/"), prep);
//   auto b = data::Domain::load(data::list_volumes("ct/"), prep);
//   data::SamplerOptions so;  so.dim = 2; so.crop = {128, 128, 1}; so.seed = 7;
//   data::Loader loader(data::Sampler(a, b, so), 2);      // 2 batches queued ahead
//   data::Batch batch = loader.next();                    // batch.a, batch.b: (1, x, y[, z], N)
//
// Sampling (seeded; batch i is drawn from its own stream, seeded by the seed and i, so the same
// seed gives the same batches whatever the thread count, and a sampler started at batch i, as a
// resumed run is, gives exactly the batches an uninterrupted one gives from i on):
// - a volume of the domain, uniformly;
// - the crop centre: a foreground voxel (above the volume's background level + 5 % of its range),
//   uniformly, in 2-D among the axial slices whose foreground covers at least the domain's
//   slice fraction; the centre is moved inwards so that the crop stays inside the volume where it
//   fits (MONAI's positive crop sampling). With SamplerOptions::min_foreground = 0 the centre is
//   uniform over the volume (2-D: over the slices kept), as before;
// - a random affine about the crop centre: rotation (degrees; about z in 2-D, about each axis in
//   3-D), isotropic scale, shear, translation (fraction of the crop), and a left-right flip;
// - bilinear/trilinear sampling; outside the volume reads the volume's background level;
// - the crop is kept when at least `min_foreground` of it is foreground; otherwise it is drawn
//   again (centre, augmentation), up to `max_tries` times, then a ConfigError names the volume.
#pragma once

#include <Eigen/Geometry>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dicyc/core/error.hpp"
#include "dicyc/core/rng.hpp"
#include "dicyc/core/types.hpp"
#include "dicyc/data/volume.hpp"

namespace dicyc::data {

/// The NIfTI files named by `spec`: a folder (its *.nii and *.nii.gz, sorted), a text file with
/// one path per line (relative paths are relative to the list file; '#' starts a comment), or a
/// single NIfTI file.
inline std::vector<std::string> list_volumes(const std::string& spec) {
  namespace fs = std::filesystem;
  std::error_code ec;
  DICYC_CHECK(!spec.empty(), ConfigError, "no data given (an empty folder or list name)");
  DICYC_CHECK(fs::exists(spec, ec), IoError, "data '" << spec << "' does not exist");
  auto is_nifti = [](const std::string& p) {
    return io::detail::ends_with(p, ".nii") || io::detail::ends_with(p, ".nii.gz") ||
           io::detail::ends_with(p, ".hdr") || io::detail::ends_with(p, ".hdr.gz");
  };
  std::vector<std::string> out;
  if (fs::is_directory(spec, ec)) {
    for (const auto& e : fs::directory_iterator(spec, ec))
      if (e.is_regular_file() && is_nifti(e.path().filename().string())) out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    DICYC_CHECK(!out.empty(), IoError, "folder '" << spec << "' holds no .nii, .nii.gz or .hdr files");
    return out;
  }
  if (is_nifti(spec)) return {spec};
  std::ifstream in(spec);
  DICYC_CHECK(in, IoError, "cannot read the file list '" << spec << "'");
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    const auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    line.erase(0, line.find_first_not_of(" \t\r"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (line.empty()) continue;
    fs::path p(line);
    if (p.is_relative()) p = fs::path(spec).parent_path() / p;
    DICYC_CHECK(fs::exists(p, ec), IoError, spec << ":" << lineno << ": '" << p.string() << "' does not exist");
    out.push_back(p.string());
  }
  DICYC_CHECK(!out.empty(), IoError, "the file list '" << spec << "' names no volumes");
  return out;
}

struct PrepareOptions {
  std::array<double, 3> spacing{0, 0, 0};  // 0: keep the file's spacing
  bool canonical = true;                   // reorient to RAS+
  bool zscore = false;                     // default: percentiles -> [-1, 1]
  double p_lo = 0.5, p_hi = 99.5;
  int volume = -1;                         // for 4-D files (3-D files ignore it)
  // A fixed window [window_lo, window_hi] (source units) -> [-1, 1], clipped, instead of each
  // volume's percentiles (e.g. -1024..3000 HU for CT, so dense bone is not clipped away);
  // window_lo >= window_hi: none.
  double window_lo = 0, window_hi = 0;
  bool windowed() const { return window_hi > window_lo; }
};

/// A volume ready for the networks, with the map back to source units.
struct Prepared {
  std::string path;
  io::Volume volume;  // normalised
  IntensityMap map;
  float background = -1;  // the normalised minimum: what lies outside the volume
};

inline Prepared prepare(const std::string& path, const PrepareOptions& o) {
  io::NiftiReadOptions ro;
  ro.volume = o.volume >= 0 && io::nifti_volumes(path) > 1 ? o.volume : -1;
  Prepared p;
  p.path = path;
  p.volume = io::read_nifti(path, ro);
  if (o.spacing[0] > 0 || o.spacing[1] > 0 || o.spacing[2] > 0) {
    std::array<double, 3> sp = p.volume.spacing;
    for (int d = 0; d < 3; ++d)
      if (o.spacing[d] > 0) sp[d] = o.spacing[d];
    p.volume = resample(p.volume, sp);
  }
  if (o.canonical) p.volume = reorient_canonical(p.volume);
  try {
    if (o.windowed()) {
      DICYC_CHECK(std::isfinite(o.window_lo) && std::isfinite(o.window_hi), ConfigError, "the intensity window is not finite");
      p.map = IntensityMap::window(o.window_lo, o.window_hi);
    } else {
      p.map = o.zscore ? IntensityMap::zscore(p.volume.data) : IntensityMap::percentile(p.volume.data, o.p_lo, o.p_hi);
    }
  } catch (const Error& e) {
    DICYC_CHECK(false, NumericError, "'" << path << "': " << e.what());
  }
  p.map.apply(p.volume.data);
  p.background = *std::min_element(p.volume.data.begin(), p.volume.data.end());
  return p;
}

/// One domain: its prepared volumes and, per volume, the axial slices with enough foreground.
struct Domain {
  std::vector<Prepared> volumes;
  std::vector<std::vector<std::int64_t>> slices;
  /// Per volume: the foreground level (data::foreground_threshold, 5 %) and the linear indices of
  /// the voxels above it (2-D: only those on the slices kept), the positive crop centres.
  std::vector<float> thresholds;
  std::vector<std::vector<std::uint32_t>> foreground;

  static Domain load(const std::vector<std::string>& paths, const PrepareOptions& o, double min_foreground = 0.05) {
    Domain d;
    for (const auto& p : paths) d.add(prepare(p, o), min_foreground);
    return d;
  }
  /// A domain of images already in memory and normalised (each w x h, x fastest), stacked as the
  /// axial planes of one volume named `name` (1 mm spacing); `map` is how they map back to source
  /// units. The sampler then draws from them as from prepared volumes.
  static Domain from_slices(const std::string& name, const std::vector<std::vector<float>>& slices, Index w, Index h,
                            IntensityMap map = {}, double min_foreground = 0.05) {
    DICYC_CHECK(!slices.empty() && w > 0 && h > 0, ShapeError, "domain '" << name << "': no slices, or an empty size");
    Prepared p;
    p.path = name;
    p.map = map;
    p.volume.data = io::VolumeData::from_shape({static_cast<std::size_t>(w), static_cast<std::size_t>(h), slices.size()});
    for (std::size_t k = 0; k < slices.size(); ++k) {
      DICYC_CHECK(static_cast<Index>(slices[k].size()) == w * h, ShapeError,
                  "domain '" << name << "': slice " << k << " has " << slices[k].size() << " values, expected " << w << " x " << h);
      std::copy(slices[k].begin(), slices[k].end(), p.volume.data.data() + k * static_cast<std::size_t>(w * h));
    }
    p.background = *std::min_element(p.volume.data.begin(), p.volume.data.end());
    Domain d;
    d.add(std::move(p), min_foreground);
    return d;
  }
  void add(Prepared p, double min_foreground = 0.05) {
    const auto dim = p.volume.dim();
    const float thr = foreground_threshold(p.volume.data.data(), p.volume.data.size(), 0.05);
    std::vector<std::int64_t> ok;
    for (std::int64_t k = 0; k < dim[2]; ++k) {
      std::int64_t fg = 0;
      const float* s = p.volume.data.data() + k * dim[0] * dim[1];
      for (std::int64_t i = 0; i < dim[0] * dim[1]; ++i) fg += s[i] > thr;
      if (static_cast<double>(fg) >= min_foreground * static_cast<double>(dim[0] * dim[1])) ok.push_back(k);
    }
    DICYC_CHECK(!ok.empty(), ConfigError,
                "'" << p.path << "': no axial slice has " << 100 * min_foreground << " % foreground");
    const std::int64_t plane = dim[0] * dim[1];
    DICYC_CHECK(plane * dim[2] <= std::int64_t(UINT32_MAX), ConfigError,
                "'" << p.path << "': more than 2^32 voxels after resampling; use a coarser --spacing");
    std::vector<std::uint32_t> fg;
    for (const std::int64_t k : ok) {
      const float* s = p.volume.data.data() + k * plane;
      for (std::int64_t i = 0; i < plane; ++i)
        if (s[i] > thr) fg.push_back(static_cast<std::uint32_t>(k * plane + i));
    }
    volumes.push_back(std::move(p));
    slices.push_back(std::move(ok));
    thresholds.push_back(thr);
    foreground.push_back(std::move(fg));
  }
  /// The mean of the volumes' intensity maps: how the networks' output maps back to this domain's
  /// units (e.g. Hounsfield units).
  IntensityMap reference_map() const {
    DICYC_CHECK(!volumes.empty(), ConfigError, "empty domain");
    IntensityMap m = volumes[0].map;
    bool same = true;  // a fixed window: every volume's map, exactly
    for (const auto& v : volumes) same = same && v.map.kind == m.kind && v.map.a == m.a && v.map.b == m.b;
    if (same) return m;
    m.a = m.b = 0;
    for (const auto& v : volumes) {
      m.a += v.map.a / static_cast<double>(volumes.size());
      m.b += v.map.b / static_cast<double>(volumes.size());
    }
    return m;
  }
};

struct AugmentOptions {
  bool enabled = true;
  double rotation = 10;      // degrees, uniform in [-r, r]
  double scale = 0.1;        // isotropic factor in [1 - s, 1 + s]
  double shear = 0.05;       // each off-diagonal term in [-h, h]
  double translation = 0.05; // fraction of the crop, per axis
  double flip = 0.5;         // probability of a left-right (axis 0) flip
};

struct SamplerOptions {
  int dim = 2;                            // 2: axial slices, 3: patches
  std::array<Index, 3> crop{128, 128, 1}; // third entry used in 3-D
  Index batch = 1;
  AugmentOptions augment;
  std::uint64_t seed = 1;
  /// Least fraction of a crop that must be foreground (0: any crop, centres uniform).
  double min_foreground = 0.1;
  /// Draws of one crop before giving up with an error naming the volume.
  int max_tries = 200;
  /// The index of the first batch next() gives (a run resumed at iteration i starts at i).
  std::int64_t first_batch = 0;
};

/// One training batch: a and b as (1, x, y[, z], N), x fastest.
struct Batch {
  std::vector<float> a, b;
  int dim = 2;
  std::array<Index, 3> crop{};  // x, y[, z]
  Index batch = 1;
};

class Sampler {
 public:
  Sampler(std::shared_ptr<const Domain> a, std::shared_ptr<const Domain> b, SamplerOptions o)
      : a_(std::move(a)), b_(std::move(b)), o_(o), index_(o.first_batch) {
    DICYC_CHECK(o_.dim == 2 || o_.dim == 3, ConfigError, "sampler: dim must be 2 or 3, got " << o_.dim);
    for (int d = 0; d < o_.dim; ++d)
      DICYC_CHECK(o_.crop[d] >= 4 && o_.crop[d] % 4 == 0, ConfigError,
                  "sampler: crop sizes must be positive multiples of 4 (two stride-2 stages), got " << o_.crop[d]);
    DICYC_CHECK(o_.batch >= 1, ConfigError, "sampler: batch must be >= 1");
    DICYC_CHECK(o_.min_foreground >= 0 && o_.min_foreground < 1 && o_.max_tries >= 1 && o_.first_batch >= 0,
                ConfigError, "sampler: min_foreground must be in [0, 1), max_tries >= 1, first_batch >= 0");
    DICYC_CHECK(a_ && b_ && !a_->volumes.empty() && !b_->volumes.empty(), ConfigError,
                "sampler: both domains need at least one volume");
  }

  const SamplerOptions& options() const { return o_; }
  /// The index of the batch the next call of next() gives.
  std::int64_t batch_index() const { return index_; }

  /// The seed of batch i's stream.
  static std::uint64_t batch_seed(std::uint64_t seed, std::int64_t i) {
    std::uint64_t z = seed ^ 0x5851f42d4c957f2dULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (z ^ (z >> 31)) + 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(i);
  }

  Batch next() {
    rng_.reseed(batch_seed(o_.seed, index_++));
    Batch bt;
    bt.dim = o_.dim;
    bt.crop = o_.crop;
    bt.batch = o_.batch;
    const Index per = o_.crop[0] * o_.crop[1] * (o_.dim == 3 ? o_.crop[2] : 1);
    bt.a.resize(static_cast<std::size_t>(per * o_.batch));
    bt.b.resize(bt.a.size());
    for (Index n = 0; n < o_.batch; ++n) {
      sample(*a_, bt.a.data() + n * per);
      sample(*b_, bt.b.data() + n * per);
    }
    return bt;
  }

 private:
  void sample(const Domain& dom, float* out) {
    const std::size_t vi = static_cast<std::size_t>(rng_.uniform_int(dom.volumes.size()));
    const Index per = o_.crop[0] * o_.crop[1] * (o_.dim == 3 ? o_.crop[2] : 1);
    const bool positive = o_.min_foreground > 0 && vi < dom.foreground.size() && !dom.foreground[vi].empty();
    const float thr = vi < dom.thresholds.size() ? dom.thresholds[vi] : dom.volumes[vi].background;
    double best = 0;
    for (int t = 0; t < o_.max_tries; ++t) {
      draw(dom, vi, positive, out);
      if (o_.min_foreground <= 0) return;
      Index fg = 0;
      for (Index n = 0; n < per; ++n) fg += out[n] > thr;
      const double frac = static_cast<double>(fg) / static_cast<double>(per);
      if (frac >= o_.min_foreground) return;
      best = std::max(best, frac);
    }
    const auto dim = dom.volumes[vi].volume.dim();
    DICYC_CHECK(false, ConfigError,
                "'" << dom.volumes[vi].path << "' (" << dim[0] << " x " << dim[1] << " x " << dim[2]
                    << " voxels after preparation) gave no crop of " << o_.crop[0] << " x " << o_.crop[1]
                    << (o_.dim == 3 ? " x " + std::to_string(o_.crop[2]) : std::string())
                    << " with at least " << 100 * o_.min_foreground << " % foreground in " << o_.max_tries
                    << " tries (the best had " << 100 * best
                    << " %): lower --min-foreground, use a smaller --crop, or check that the volume holds anatomy");
  }

  /// One crop of volume vi (centre, augmentation, resampling) into out.
  void draw(const Domain& dom, std::size_t vi, bool positive, float* out) {
    const Prepared& p = dom.volumes[vi];
    const auto dim = p.volume.dim();
    const float* src = p.volume.data.data();
    const int D = o_.dim;
    // The crop centre in voxel coordinates: a foreground voxel moved inwards so that the crop fits
    // (positive), or uniform over the positions where it fits.
    std::array<double, 3> centre{};
    std::array<double, 3> fgv{};
    if (positive) {
      const auto& fg = dom.foreground[vi];
      std::uint64_t l = fg[rng_.uniform_int(fg.size())];
      for (int d = 0; d < 3; ++d) {
        fgv[d] = static_cast<double>(l % static_cast<std::uint64_t>(dim[d]));
        l /= static_cast<std::uint64_t>(dim[d]);
      }
    }
    for (int d = 0; d < 3; ++d) {
      if (d == 2 && D == 2) {
        const auto& ks = dom.slices[vi];
        centre[2] = positive ? fgv[2] : static_cast<double>(ks[rng_.uniform_int(ks.size())]);
        continue;
      }
      const double half = 0.5 * static_cast<double>(o_.crop[d]);
      const double lo = half - 0.5, hi = static_cast<double>(dim[d]) - half - 0.5;
      if (hi < lo) centre[d] = 0.5 * static_cast<double>(dim[d] - 1);
      else centre[d] = positive ? std::clamp(fgv[d], lo, hi) : rng_.uniform(lo, hi);
    }
    // The augmentation: src = centre + M (p - crop centre) + t.
    Eigen::Matrix3d M = Eigen::Matrix3d::Identity();
    Eigen::Vector3d t = Eigen::Vector3d::Zero();
    const AugmentOptions& au = o_.augment;
    if (au.enabled) {
      const double deg = 3.14159265358979323846 / 180.0;
      Eigen::Matrix3d R = Eigen::Matrix3d::Identity();
      const int n_rot = D == 2 ? 1 : 3;
      for (int r = 0; r < n_rot; ++r) {
        const double ang = rng_.uniform(-au.rotation, au.rotation) * deg;
        const int axis = D == 2 ? 2 : r;
        R = R * Eigen::AngleAxisd(ang, Eigen::Vector3d::Unit(axis)).toRotationMatrix();
      }
      const double s = rng_.uniform(1 - au.scale, 1 + au.scale);
      Eigen::Matrix3d H = Eigen::Matrix3d::Identity();
      for (int i = 0; i < D; ++i)
        for (int j = 0; j < D; ++j)
          if (i != j) H(i, j) = rng_.uniform(-au.shear, au.shear);
      M = R * (s * H);
      for (int d = 0; d < D; ++d)
        t[d] = rng_.uniform(-au.translation, au.translation) * static_cast<double>(o_.crop[d]);
      if (rng_.uniform() < au.flip) M.col(0) *= -1;
    }
    const Index cx = o_.crop[0], cy = o_.crop[1], cz = D == 3 ? o_.crop[2] : 1;
    const double hx = 0.5 * static_cast<double>(cx - 1), hy = 0.5 * static_cast<double>(cy - 1),
                 hz = 0.5 * static_cast<double>(cz - 1);
    const float bg = p.background;
    auto at = [&](std::int64_t i, std::int64_t j, std::int64_t k) -> float {
      if (i < 0 || j < 0 || k < 0 || i >= dim[0] || j >= dim[1] || k >= dim[2]) return bg;
      return src[i + dim[0] * (j + dim[1] * k)];
    };
    Index n = 0;
    for (Index z = 0; z < cz; ++z)
      for (Index y = 0; y < cy; ++y)
        for (Index x = 0; x < cx; ++x, ++n) {
          const Eigen::Vector3d q(static_cast<double>(x) - hx, static_cast<double>(y) - hy,
                                  D == 3 ? static_cast<double>(z) - hz : 0.0);
          Eigen::Vector3d s = M * q + t;
          s[0] += centre[0];
          s[1] += centre[1];
          s[2] = D == 3 ? s[2] + centre[2] : centre[2];
          const double fx = std::floor(s[0]), fy = std::floor(s[1]), fz = std::floor(s[2]);
          const auto i0 = static_cast<std::int64_t>(fx), j0 = static_cast<std::int64_t>(fy),
                     k0 = static_cast<std::int64_t>(fz);
          const float wx = static_cast<float>(s[0] - fx), wy = static_cast<float>(s[1] - fy),
                      wz = static_cast<float>(s[2] - fz);
          auto plane = [&](std::int64_t k) {
            return (at(i0, j0, k) * (1 - wx) + at(i0 + 1, j0, k) * wx) * (1 - wy) +
                   (at(i0, j0 + 1, k) * (1 - wx) + at(i0 + 1, j0 + 1, k) * wx) * wy;
          };
          out[n] = wz == 0 ? plane(k0) : plane(k0) * (1 - wz) + plane(k0 + 1) * wz;
        }
  }

  std::shared_ptr<const Domain> a_, b_;
  SamplerOptions o_;
  std::int64_t index_ = 0;
  core::Rng rng_;
};

/// Runs a Sampler on its own thread, `depth` batches ahead. next() blocks only when the producer
/// is behind; an exception in the producer is rethrown by next().
class Loader {
 public:
  Loader(Sampler sampler, std::size_t depth = 2) : sampler_(std::move(sampler)), depth_(std::max<std::size_t>(1, depth)) {
    thread_ = std::thread([this] { run(); });
  }
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  ~Loader() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  Batch next() {
    std::unique_lock<std::mutex> l(m_);
    const auto t0 = std::chrono::steady_clock::now();
    cv_.wait(l, [&] { return !queue_.empty() || error_; });
    waited_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (queue_.empty() && error_) std::rethrow_exception(error_);
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    ++taken_;
    cv_.notify_all();
    return b;
  }
  /// Seconds the consumer spent waiting in next(), and batches taken: a loader that keeps up
  /// leaves the waiting near zero after the first batch.
  double waited_seconds() const {
    std::lock_guard<std::mutex> l(m_);
    return waited_;
  }
  std::size_t taken() const {
    std::lock_guard<std::mutex> l(m_);
    return taken_;
  }

 private:
  void run() {
    try {
      for (;;) {
        {
          std::unique_lock<std::mutex> l(m_);
          cv_.wait(l, [&] { return stop_ || queue_.size() < depth_; });
          if (stop_) return;
        }
        Batch b = sampler_.next();
        std::lock_guard<std::mutex> l(m_);
        queue_.push_back(std::move(b));
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> l(m_);
      error_ = std::current_exception();
      cv_.notify_all();
    }
  }

  Sampler sampler_;
  std::size_t depth_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  bool stop_ = false;
  double waited_ = 0;
  std::size_t taken_ = 0;
  std::thread thread_;
};

}  // namespace dicyc::data
