// The held-out simulated-deformation experiment (dicyc-spec section 6, issues #16 and #32): does
// DiCyc keep unseen images aligned where the CycleGAN family reproduces the domain's deformation,
// in the paper's geometry, in both directions, for all seven models?
//
//   protocol [--data data] [--out protocol_out] [--part main|crops|long|flip|em|onemm|all]
//            [--models LIST] [--seeds 3] [--iters 1500] [--long-iters 6000] [--spacing 1.8] [--crop 128]
//            [--ngf 16] [--blocks 4] [--ndf 32] [--flip 0] [--em single] [--threads 2] [--quick]
//            [--report-only] [--precision float|bf16]
//
// Data (real anatomy, one synthetic contrast):
//   B (T1):      ch2 (mricron's T1 template, 181x217x181 at 1 mm);
//   A (PD-like): the same volume through a contrast map fitted on the one real pair: ITK's PD slice
//                lies on ch2's grid at axial index 94 (same pixel order; ITK's T1 slice correlates
//                0.989 with ch2[:, :, 94]); the conditional mean PD given the ch2 intensity
//                (data::ContrastMap, 256 bins, sigma 2 bins) predicts the real PD slice with
//                r = 0.98 (ch2 itself: 0.76); the run refuses to go on below 0.95.
//   Every B training slice carries ONE domain deformation (a seeded 4x4 TPS, up to 6 % of the field
//   of view) plus a small jitter per slice; A stays undeformed.
// Geometry (the paper's, the default): both volumes resampled to --spacing 1.8 mm (101x121 axial
// slices), training crops of --crop 128 (the whole slice, padded with background), drawn by
// dicyc-train's sampler through train::Trainer (data::Sampler: foreground-centred crops holding
// >= 10 % foreground, dicyc-train's random affine augmentation with --flip 0 by default: a flip
// would make the mirrored domain warp "real" too). Training slices are the 1.8 mm slices of
// [--lo, --hi] whose centres lie more than --gap mm from the test slab.
// Testing as dicyc-synth does it: the whole 1 mm source volume is resampled to the training
// spacing, normalised, translated slice by slice (whole slices), mapped back to the target's units
// and resampled onto the source's 1 mm grid; the 20 slices of the test slab [--test-first,
// --test-first + --test-count) are scored there, in the target domain's normalised units (range 2):
//   A -> B: source = the undeformed PD-like volume, truth = the aligned T1;
//   B -> A: source = the T1 under the domain warp (no jitter), truth = the PD-like volume under
//           the same warp.
// alpha (eval::deformation_fraction): the share of the domain warp the output carries against the
// undeformed anatomy (0 none, 1 all of it), by NMI (the headline) and by SSIM, with an interval
// (eval::alpha_interval: the grid alphas whose NMI score is within 5 % of the score range of the
// best). drift = how far the output's geometry is from its source's, in the same units:
// A -> B drift = alpha, B -> A drift = 1 - alpha; 0 is aligned with the source in both directions.
// The real ITK PD slice (truth: the real ITK T1 slice, calibrated onto ch2's intensities) is an
// extra A -> B row.
// Runs: each (setting, model, seed) is its own resumable job under <out>/runs/<setting>/<model>_seed<k>
// (the Trainer's checkpoint and losses.csv, eval_<iteration>.csv per evaluation, job.txt with its
// time); a job whose final evaluation exists is skipped, an interrupted one resumes. --part picks
// the jobs: main (the seven models x --seeds at the default setting; CycleGAN and NMI-DiCyc of
// seed 1 also evaluated every 250 iterations), crops (--crop 32, 48, 64, 96 for CycleGAN and
// NMI-DiCyc, seed 1), long (those two seed-1 runs continued to --long-iters, evaluated every 250),
// flip (--flip 0.5), em (NMI-DiCyc with --em sequential), onemm (1 mm slices and 96-pixel crops,
// the geometry of the earlier experiment), all. The report (summary.md, results.csv, curves.csv,
// crops.csv, plots and montages) is written from whatever evaluations exist, after every job.
// --quick: 30 iterations, one seed, three models, 64-pixel crops, ngf 8, 2 blocks, ndf 16 (a
// smoke test of the whole pipeline for ctest and the demo; its numbers mean nothing).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "dicyc/core/openmp_env.hpp"
#include "dicyc/data/contrast.hpp"
#include "dicyc/data/synthesis.hpp"
#include "dicyc/eval.hpp"
#include "dicyc/eval/deformation_fraction.hpp"
#include "dicyc/io/atomic_file.hpp"
#include "dicyc/io/grid.hpp"
#include "dicyc/io/nifti.hpp"
#include "dicyc/io/png.hpp"
#include "dicyc/model.hpp"
#include "dicyc/tps.hpp"
#include "dicyc/train.hpp"

using namespace dicyc;
namespace fs = std::filesystem;
using Dev = Eigen::ThreadPoolDevice;
constexpr int kMapSlice = 94;  // where ITK's PD/T1 pair lies on ch2's grid
constexpr double kAlphaTolerance = 0.05;
const char* const kSeven[] = {"cyclegan", "gcc-cyclegan", "mind-cyclegan", "nmi-cyclegan", "nmi-dicyc", "gcc-dicyc", "mind-dicyc"};

using Img = std::vector<float>;  // x fastest

// ---------------------------------------------------------------------------------------- data
std::vector<float> read_png_values(const std::string& path) {
  const auto g = io::read_png_gray(path);
  DICYC_CHECK(g.width == 181 && g.height == 217, ShapeError,
              "protocol: " << path << " is " << g.width << "x" << g.height << ", expected ITK's 181x217 slice");
  return std::vector<float>(g.pixels.begin(), g.pixels.end());
}

std::vector<float> storage(const io::VolumeData& v) { return std::vector<float>(v.data(), v.data() + v.size()); }
Img slice_of(const io::Volume& v, Index k) {
  const auto d = v.dim();
  return Img(v.data.data() + k * d[0] * d[1], v.data.data() + (k + 1) * d[0] * d[1]);
}
Img mapped(const data::IntensityMap& m, Img v) {
  for (auto& x : v) x = m.forward(x);
  return v;
}

Img warp(core::Context<Dev>& ctx, const tps::Deformation<2>& d, const Img& in, Index w, Index h) {
  Img out(in.size());
  ConstTensorMap<float, 4> im(in.data(), 1, w, h, 1);
  TensorMap<float, 4> om(out.data(), 1, w, h, 1);
  d.apply<float>(ctx, im, om);
  return out;
}
/// Every axial slice of v through d (2-D, in each slice's normalised coordinates).
io::Volume warp_volume(core::Context<Dev>& ctx, const tps::Deformation<2>& d, const io::Volume& v) {
  io::Volume r = v;
  const auto n = v.dim();
  for (Index k = 0; k < n[2]; ++k) {
    const Img w = warp(ctx, d, slice_of(v, k), n[0], n[1]);
    std::copy(w.begin(), w.end(), r.data.data() + k * n[0] * n[1]);
  }
  return r;
}

/// The experiment's inputs at one geometry: the training domains (slices at the training spacing)
/// and the domains' intensity maps (fitted as dicyc-train's prepare() does, on the resampled volumes).
struct Geometry {
  double spacing = 1.8;
  std::shared_ptr<data::Domain> dom_a, dom_b;
  data::IntensityMap map_a, map_b;
  Index w = 0, h = 0;
  std::size_t train_slices = 0;
  std::vector<Img> train_b;  // for the crop-share measure
};

struct Data {
  io::Volume t1, pd;              // 1 mm, the raw ch2 grid
  io::Volume t1_warped, pd_warped;  // under the domain warp (no jitter): B -> A source and truth
  tps::Deformation<2> domain{4};
  Img pd_itk, t1_itk;  // the real pair, 181x217, in PD and T1 (calibrated) units
  double r_map = 0, r_t1 = 0, r_itk_t1 = 0;
  std::uint64_t data_seed = 1;
  int lo = 30, hi = 150, test_first = 84, test_count = 20, gap = 5;
  std::map<double, Geometry> geometries;
};

Data load_data(core::Context<Dev>& ctx, const std::string& dir, std::uint64_t data_seed) {
  Data D;
  D.data_seed = data_seed;
  const std::string path = dir + "/mricron/ch2.nii.gz";
  DICYC_CHECK(fs::exists(path), IoError, "protocol: no '" << path << "' (run scripts/fetch_data.sh)");
  D.t1 = io::read_nifti(path);
  const auto dm = D.t1.dim();
  DICYC_CHECK(dm[0] == 181 && dm[1] == 217 && dm[2] == 181, IoError,
              "protocol: '" << path << "' is not ch2 (181x217x181 voxels), it has " << dm[0] << "x" << dm[1] << "x" << dm[2]);
  const auto pd_real = read_png_values(dir + "/itk/BrainProtonDensitySlice.png");
  const auto t1_real = read_png_values(dir + "/itk/BrainT1Slice.png");
  const Img s94 = slice_of(D.t1, kMapSlice);
  const auto cmap = data::ContrastMap::fit(s94, pd_real, 256, 2.0);
  D.r_map = data::pearson(cmap.apply(s94), pd_real);
  D.r_t1 = data::pearson(s94, pd_real);
  D.r_itk_t1 = data::pearson(s94, t1_real);
  std::printf("contrast map (fitted at ch2 slice %d): predicts the real PD slice with r = %.4f (ch2 itself: %.4f; "
              "ITK T1 vs ch2: %.4f)\n",
              kMapSlice, D.r_map, D.r_t1, D.r_itk_t1);
  DICYC_CHECK(D.r_itk_t1 > 0.95, IoError,
              "protocol: ITK's T1 slice does not match ch2's slice " << kMapSlice << " (r = " << D.r_itk_t1
                                                                     << "); the data is not the expected ITK/mricron pair");
  DICYC_CHECK(D.r_map >= 0.95, NumericError,
              "protocol: the contrast map predicts the real PD slice with r = " << D.r_map << " < 0.95; A would not be PD-like");
  D.pd = D.t1;
  {
    const Img v = cmap.apply(storage(D.t1.data));
    std::copy(v.begin(), v.end(), D.pd.data.data());
  }
  // The real pair: PD in the contrast map's units already (PD grey values); T1 calibrated onto ch2's.
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < s94.size(); ++i) {
    sx += t1_real[i];
    sy += s94[i];
    sxx += double(t1_real[i]) * t1_real[i];
    sxy += double(t1_real[i]) * s94[i];
  }
  const double n = double(s94.size()), slope = (n * sxy - sx * sy) / (n * sxx - sx * sx), icpt = (sy - slope * sx) / n;
  D.t1_itk = t1_real;
  for (auto& v : D.t1_itk) v = float(slope * v + icpt);
  D.pd_itk = pd_real;
  D.domain = tps::simulate_deformation<2>(tps::DeformOptions().control(4).amplitude(0.06), data_seed * 7919 + 1);
  D.t1_warped = warp_volume(ctx, D.domain, D.t1);
  D.pd_warped = warp_volume(ctx, D.domain, D.pd);
  return D;
}

/// 1.8 mm slice k's centre in 1 mm slice units.
double centre_mm(Index k, double spacing) { return (static_cast<double>(k) + 0.5) * spacing - 0.5; }

const Geometry& geometry(core::Context<Dev>& ctx, Data& D, double spacing) {
  auto it = D.geometries.find(spacing);
  if (it != D.geometries.end()) return it->second;
  Geometry G;
  G.spacing = spacing;
  const std::array<double, 3> sp{spacing, spacing, spacing};
  const io::Volume t1 = spacing == 1.0 ? D.t1 : data::resample(D.t1, sp), pd = spacing == 1.0 ? D.pd : data::resample(D.pd, sp);
  G.map_a = data::IntensityMap::percentile(pd.data);
  G.map_b = data::IntensityMap::percentile(t1.data);
  const auto n = t1.dim();
  G.w = n[0];
  G.h = n[1];
  auto jitter = [&](std::uint64_t s) {
    return tps::simulate_deformation<2>(tps::DeformOptions().control(4).amplitude(0.01).rotation(3).translation(0.02), s);
  };
  std::vector<Img> A, B;
  const double t0 = D.test_first - D.gap, t1mm = D.test_first + D.test_count - 1 + D.gap;
  for (Index k = 0; k < n[2]; ++k) {
    const double z = centre_mm(k, spacing);
    if (z < D.lo || z > D.hi || (z >= t0 && z <= t1mm)) continue;
    A.push_back(mapped(G.map_a, slice_of(pd, k)));
    B.push_back(warp(ctx, jitter(D.data_seed * 1000 + 500 + std::uint64_t(k)),
                     warp(ctx, D.domain, mapped(G.map_b, slice_of(t1, k)), n[0], n[1]), n[0], n[1]));
  }
  DICYC_CHECK(!A.empty(), ConfigError,
              "protocol: no training slice is left in [" << D.lo << ", " << D.hi << "] more than " << D.gap
                                                         << " mm from the test slab at " << spacing << " mm");
  G.train_slices = A.size();
  G.dom_a = std::make_shared<data::Domain>(data::Domain::from_slices("A (PD-like)", A, n[0], n[1], G.map_a, 0.0));
  G.dom_b = std::make_shared<data::Domain>(data::Domain::from_slices("B (T1, warped)", B, n[0], n[1], G.map_b, 0.0));
  G.train_b = std::move(B);
  return D.geometries.emplace(spacing, std::move(G)).first->second;
}

/// The mean share of a training slice's foreground (data::foreground_threshold) that a crop of
/// `crop` pixels centred on the foreground's centroid holds.
double crop_share(const Geometry& G, Index crop) {
  double sum = 0;
  for (const Img& s : G.train_b) {
    const float thr = data::foreground_threshold(s.data(), s.size(), 0.05);
    double cx = 0, cy = 0, n = 0;
    for (Index y = 0; y < G.h; ++y)
      for (Index x = 0; x < G.w; ++x)
        if (s[x + G.w * y] > thr) {
          cx += x;
          cy += y;
          n += 1;
        }
    if (n == 0) continue;
    const double x0 = cx / n - crop / 2.0, y0 = cy / n - crop / 2.0;
    double in = 0;
    for (Index y = 0; y < G.h; ++y)
      for (Index x = 0; x < G.w; ++x)
        if (s[x + G.w * y] > thr && x >= x0 && x < x0 + crop && y >= y0 && y < y0 + crop) in += 1;
    sum += in / n;
  }
  return sum / static_cast<double>(G.train_b.size());
}

// ---------------------------------------------------------------------------------------- jobs
struct Setting {
  std::string name;  // main, crop32, ..., flip, em-sequential, 1mm-crop96
  double spacing = 1.8;
  Index crop = 128;
  double flip = 0;
  std::string em = "single";
};

struct Job {
  Setting setting;
  std::string model;
  int seed = 1;
  std::int64_t iters = 1500;
  bool curve = false;  // evaluate every 250 iterations
  std::string dir;
  bool montage = false;  // write montage_<model>_<ab|ba>.png from its final evaluation
};

struct Width {
  int ngf = 16, blocks = 4, ndf = 32;
  double gan_plain = 0;  // --lambda-gan-plain for the DiCyc models (beyond the paper; 0: the paper's)
};

/// One evaluation row: a model's output on one test slice in one direction.
struct Row {
  std::string setting, model;
  int seed = 0;
  std::int64_t iteration = 0;
  std::string direction, slice;
  double mse = 0, psnr = 0, ssim = 0, alpha = 0, alpha_ssim = 0, alpha_lo = 0, alpha_hi = 0, drift = 0;
};
const char* const kRowHeader = "setting,model,seed,iteration,direction,slice,mse,psnr,ssim,alpha,alpha_ssim,alpha_lo,alpha_hi,drift";

std::string row_csv(const Row& r) {
  char b[512];
  std::snprintf(b, sizeof b, "%s,%s,%d,%lld,%s,%s,%.6f,%.4f,%.6f,%.4f,%.4f,%.4f,%.4f,%.4f\n", r.setting.c_str(),
                r.model.c_str(), r.seed, static_cast<long long>(r.iteration), r.direction.c_str(), r.slice.c_str(), r.mse,
                r.psnr, r.ssim, r.alpha, r.alpha_ssim, r.alpha_lo, r.alpha_hi, r.drift);
  return b;
}
std::vector<Row> read_rows(const std::string& path) {
  std::vector<Row> rows;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::vector<std::string> f;
    std::string c;
    while (std::getline(ss, c, ',')) f.push_back(c);
    if (f.size() != 14) continue;
    Row r;
    r.setting = f[0];
    r.model = f[1];
    r.seed = std::atoi(f[2].c_str());
    r.iteration = std::atoll(f[3].c_str());
    r.direction = f[4];
    r.slice = f[5];
    double* v[] = {&r.mse, &r.psnr, &r.ssim, &r.alpha, &r.alpha_ssim, &r.alpha_lo, &r.alpha_hi, &r.drift};
    for (int i = 0; i < 8; ++i) *v[i] = std::strtod(f[6 + i].c_str(), nullptr);
    rows.push_back(r);
  }
  return rows;
}

/// dicyc-synth's 2-D path on a whole volume: resample to `spacing` (unless it is the volume's own),
/// normalise with the volume's own percentile map, translate every whole slice, map back with the
/// target domain's map, resample onto the source grid.
io::Volume synthesize_volume(model::ModelBase<2, float, Dev>& m, bool ab, const io::Volume& src,
                             const std::array<double, 3>& spacing, const data::IntensityMap& target) {
  const bool same = spacing == src.spacing;
  io::Volume v = same ? src : data::resample(src, spacing);
  const auto own = data::IntensityMap::percentile(v.data);
  own.apply(v.data);
  const float background = *std::min_element(v.data.data(), v.data.data() + v.data.size());
  const data::Translate tr = [&](const std::vector<float>& in, std::vector<float>& out, const std::array<Index, 4>& sh) {
    out.resize(in.size());
    ConstTensorMap<float, 4> xm(in.data(), 1, sh[0], sh[1], sh[3]);
    TensorMap<float, 4> ym(out.data(), 1, sh[0], sh[1], sh[3]);
    if (ab) m.translate_ab(xm, ym);
    else m.translate_ba(xm, ym);
  };
  io::Volume out = v;
  out.data = data::synthesize(v.data, background, 2, tr, 4);
  target.invert(out.data);
  return same ? out : data::resample_like(out, src);
}

struct TestView {
  std::vector<Img> src, out, truth, other;  // the montage's slices (three), target-normalised
};

/// One row: the output against the truth (aligned with the source) and alpha against the
/// undeformed anatomy `aligned`; all three in the target's normalised units, 181 x 217.
Row score(core::Context<Dev>& ctx, const Data& D, const Job& job, std::int64_t iteration, bool ab, const std::string& slice,
          const Img& out, const Img& truth, const Img& aligned) {
  const eval::Image<float, 2> o2(out.data(), 181, 217), t2(truth.data(), 181, 217), a2(aligned.data(), 181, 217);
  Row r;
  r.setting = job.setting.name;
  r.model = job.model;
  r.seed = job.seed;
  r.iteration = iteration;
  r.direction = ab ? "ab" : "ba";
  r.slice = slice;
  r.mse = eval::mse(o2, t2);
  r.psnr = eval::psnr(o2, t2, 2.0);
  r.ssim = eval::ssim(o2, t2, eval::SsimOptions(2.0));
  const auto an = eval::deformation_fraction<2>(ctx, D.domain, a2, o2);
  r.alpha = an.alpha;
  std::tie(r.alpha_lo, r.alpha_hi) = eval::alpha_interval(an, kAlphaTolerance);
  r.alpha_ssim = eval::deformation_fraction<2>(ctx, D.domain, a2, o2,
                                               eval::AlphaOptions().measure(eval::AlphaMeasure::Ssim).refine_iterations(0))
                     .alpha;
  r.drift = ab ? r.alpha : 1.0 - r.alpha;
  return r;
}

/// Scores a model at its current state on the test slab, both directions (+ the ITK slice for A -> B).
std::vector<Row> evaluate(core::Context<Dev>& ctx, model::ModelBase<2, float, Dev>& m, const Data& D, const Geometry& G,
                          const Job& job, std::int64_t iteration, std::map<std::string, TestView>* views) {
  std::vector<Row> rows;
  const std::array<double, 3> sp{G.spacing, G.spacing, G.spacing};
  const int mont[3] = {0, (D.test_count - 1) / 2, D.test_count - 1};
  for (bool ab : {true, false}) {
    const io::Volume& src = ab ? D.pd : D.t1_warped;
    const data::IntensityMap& tmap = ab ? G.map_b : G.map_a;
    const io::Volume syn = synthesize_volume(m, ab, src, sp, tmap);
    TestView tv;
    for (int t = 0; t < D.test_count; ++t) {
      const Index k = D.test_first + t;
      const Img out = mapped(tmap, slice_of(syn, k));
      // truth: aligned with the source; `aligned`: the undeformed anatomy alpha is measured against
      const Img truth = mapped(tmap, slice_of(ab ? D.t1 : D.pd_warped, k));
      rows.push_back(score(ctx, D, job, iteration, ab, std::to_string(k), out, truth,
                           ab ? truth : mapped(tmap, slice_of(D.pd, k))));
      if (views && (t == mont[0] || t == mont[1] || t == mont[2])) {
        tv.src.push_back(mapped(ab ? G.map_a : G.map_b, slice_of(src, k)));
        tv.out.push_back(out);
        tv.truth.push_back(truth);
        tv.other.push_back(mapped(tmap, slice_of(ab ? D.t1_warped : D.pd, k)));
      }
    }
    if (views) (*views)[ab ? "ab" : "ba"] = std::move(tv);
  }
  // The real ITK PD slice, A -> B, as a one-slice volume on ch2's in-plane grid (resampled in plane).
  io::Volume v = D.t1;
  v.data = io::VolumeData::from_shape({std::size_t(181), std::size_t(217), std::size_t(1)});
  std::copy(D.pd_itk.begin(), D.pd_itk.end(), v.data.data());
  const io::Volume syn = synthesize_volume(m, true, v, {G.spacing, G.spacing, v.spacing[2]}, G.map_b);
  const Img t = mapped(G.map_b, D.t1_itk);
  rows.push_back(score(ctx, D, job, iteration, true, "itk_pd", mapped(G.map_b, storage(syn.data)), t, t));
  return rows;
}

std::string eval_path(const Job& j, std::int64_t it) { return j.dir + "/eval_" + std::to_string(it) + ".csv"; }

void write_rows(const std::string& path, const std::vector<Row>& rows) {
  std::string s = std::string(kRowHeader) + "\n";
  for (const auto& r : rows) s += row_csv(r);
  io::write_file_atomic(path, s);
}

/// The montage of one model: rows = three test slices; columns: source, output, truth (aligned with
/// the source), the truth in the other geometry, |output - truth|.
void write_montage(const std::string& path, const TestView& v) {
  std::vector<std::vector<io::Panel>> rows;
  for (std::size_t r = 0; r < v.src.size(); ++r) {
    Img diff(v.out[r].size());
    for (std::size_t i = 0; i < diff.size(); ++i) diff[i] = std::abs(v.out[r][i] - v.truth[r][i]) - 1.0f;  // 0 -> black
    rows.push_back({io::panel_of(v.src[r].data(), 181, 217), io::panel_of(v.out[r].data(), 181, 217),
                    io::panel_of(v.truth[r].data(), 181, 217), io::panel_of(v.other[r].data(), 181, 217),
                    io::panel_of(diff.data(), 181, 217)});
  }
  io::write_grid(path, rows, io::GridOptions{0, true, {"source", "output", "truth, aligned", "truth, other geometry",
                                                        "|output - truth|"}});
}

/// Runs (or resumes, or skips) one job. The crops of the first batches are checked against a
/// data::Sampler built from the same domains and settings (they must be its crops, bit for bit).
void run_job(core::Context<Dev>& ctx, Data& D, const Job& job, const Width& wd, const std::string& out,
             bool first_crops_check) {
  const std::string final_eval = eval_path(job, job.iters);
  if (fs::exists(final_eval)) {
    std::printf("  %s/%s seed %d: done (%s)\n", job.setting.name.c_str(), job.model.c_str(), job.seed, final_eval.c_str());
    return;
  }
  const Geometry& G = geometry(ctx, D, job.setting.spacing);
  auto mo = model::ModelOptions::preset(job.model)
                .generator(nn::GeneratorOptions().ngf(wd.ngf).n_blocks(wd.blocks))
                .ndf(wd.ndf)
                .seed(static_cast<std::uint64_t>(job.seed))
                .em(job.setting.em == "sequential" ? model::EmMode::Sequential : model::EmMode::Single)
                .schedule(optim::ScheduleOptions().iterations_per_epoch(1000000));
  if (mo.deformation()) mo.lambda_gan_plain(wd.gan_plain);
  ctx.set_pool_spinning(model::pool_spinning_pays(mo, ctx.conv_bf16()));
  auto m = model::make_model<2, float, Dev>(ctx, mo);
  train::ModelTrainable<2, float, Dev> trainable(ctx, *m);
  data::SamplerOptions so;  // dicyc-train's sampler: 10 % foreground per crop, affine augmentation
  so.dim = 2;
  so.crop = {job.setting.crop, job.setting.crop, 1};
  so.augment.flip = job.setting.flip;
  train::SamplerSource source(G.dom_a, G.dom_b, so);
  const std::string ckpt = job.dir + "/checkpoint.safetensors";
  const bool resume = fs::exists(ckpt);
  train::Trainer trainer(trainable, source,
                         train::TrainerOptions()
                             .out(job.dir)
                             .max_iterations(job.iters)
                             .checkpoint_every(250)
                             .seed(static_cast<std::uint64_t>(job.seed))
                             .log_every(250)
                             .resume(resume)
                             .user("experiment", "protocol " + job.setting.name));
  trainer.hooks().log = [&](const model::StepLosses& L, const train::Progress& p) {
    std::printf("  %s/%s seed %d %5lld: G %.4f (GAN %.3f/%.3f, cyc %.4f/%.4f, dicyc %.4f/%.4f, align %.4f/%.4f) D %.4f/%.4f, %.2f it/s\n",
                job.setting.name.c_str(), job.model.c_str(), job.seed, static_cast<long long>(p.iteration), L.g_total,
                L.gan_ab, L.gan_ba, L.cyc_a, L.cyc_b, L.dicyc_a, L.dicyc_b, L.align_a, L.align_b, L.d_a, L.d_b, p.rate());
    std::fflush(stdout);
  };
  // The crops the trainer trains on are data::Sampler's with the same seed and settings.
  std::vector<std::vector<float>> seen;
  std::int64_t first = -1;
  if (first_crops_check)
    trainer.hooks().before_step = [&](data::Batch& b, std::int64_t next) {
      if (first < 0) first = next - 1;
      if (seen.size() < 6) {
        seen.push_back(b.a);
        seen.push_back(b.b);
      }
    };
  std::map<std::string, TestView> views;
  double eval_seconds = 0;
  trainer.hooks().saved = [&](std::int64_t it) {
    if (!(job.curve && it % 250 == 0) && it != job.iters) return;
    if (fs::exists(eval_path(job, it))) return;
    const auto t0 = std::chrono::steady_clock::now();
    write_rows(eval_path(job, it), evaluate(ctx, *m, D, G, job, it, it == job.iters && job.montage ? &views : nullptr));
    const double e = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    eval_seconds += e;
    std::printf("  %s/%s seed %d: evaluated at iteration %lld (%.1f s)\n", job.setting.name.c_str(), job.model.c_str(),
                job.seed, static_cast<long long>(it), e);
  };
  fs::create_directories(job.dir);
  const auto t0 = std::chrono::steady_clock::now();
  const train::TrainResult r = trainer.fit();
  DICYC_CHECK(r.outcome == train::Outcome::Done, NumericError,
              "protocol: " << job.model << " seed " << job.seed << ": " << r.message << " (at iteration " << r.iteration + 1 << ")");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (first_crops_check && !seen.empty()) {
    data::SamplerOptions o = so;
    o.seed = train::stream_seed(static_cast<std::uint64_t>(job.seed), 0);
    o.first_batch = first;
    data::Sampler ref(G.dom_a, G.dom_b, o);
    bool same = true;
    for (std::size_t i = 0; i + 1 < seen.size(); i += 2) {
      const auto b = ref.next();
      same = same && b.a == seen[i] && b.b == seen[i + 1];
    }
    std::printf("  %s/%s seed %d: the first %zu training batches equal data::Sampler's (seed %d, stream %llu, batch %lld on): %s\n",
                job.setting.name.c_str(), job.model.c_str(), job.seed, seen.size() / 2, job.seed,
                static_cast<unsigned long long>(o.seed), static_cast<long long>(first), same ? "yes" : "NO");
    DICYC_CHECK(same, NumericError, "protocol: the trainer's crops are not the library sampler's");
  }
  if (job.montage && !views.empty()) {
    write_montage(out + "/montage_" + job.model + "_ab.png", views["ab"]);
    write_montage(out + "/montage_" + job.model + "_ba.png", views["ba"]);
  }
  char b[256];
  // Training time alone: the evaluations (in the checkpoint hook) are taken out.
  std::snprintf(b, sizeof b, "iterations %lld -> %lld, %.1f s, %.3f s/iteration, %d threads, %.1f s of evaluations%s\n",
                static_cast<long long>(r.start_iteration), static_cast<long long>(r.iteration), secs,
                r.steps ? (r.seconds - eval_seconds) / static_cast<double>(r.steps) : 0.0, ctx.num_threads(), eval_seconds,
                ctx.conv_bf16() ? ", bf16 convolutions" : "");
  std::ofstream(job.dir + "/job.txt", std::ios::app) << b;
  std::printf("  %s/%s seed %d: %s", job.setting.name.c_str(), job.model.c_str(), job.seed, b);
}

// ---------------------------------------------------------------------------------------- report
using eval::mean;
double sd(const std::vector<double>& v) { return eval::sample_sd(v); }

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string e;
  while (std::getline(ss, e, ','))
    if (!e.empty()) out.push_back(e);
  return out;
}

/// Seconds per iteration from a job's job.txt (the mean over its parts).
double job_seconds_per_iteration(const std::string& dir) {
  std::ifstream in(dir + "/job.txt");
  std::string line;
  double s = 0, n = 0;
  while (std::getline(in, line)) {
    const auto p = line.find(" s, ");
    if (p == std::string::npos) continue;
    const double v = std::strtod(line.c_str() + p + 4, nullptr);
    if (v > 0) {
      s += v;
      n += 1;
    }
  }
  return n > 0 ? s / n : std::nan("");
}

/// A line chart (SVG) of series of (x, y) points with error bars (y_lo, y_hi).
struct Series {
  std::string name, colour;
  std::vector<std::array<double, 4>> pts;  // x, y, lo, hi
};
std::string svg_plot(const std::string& title, const std::string& xlabel, const std::string& ylabel,
                     const std::vector<Series>& series, double ymin, double ymax) {
  const double W = 560, H = 300, L = 56, R = 12, T = 30, B = 44;
  double xmin = INFINITY, xmax = -INFINITY;
  for (const auto& s : series)
    for (const auto& p : s.pts) {
      xmin = std::min(xmin, p[0]);
      xmax = std::max(xmax, p[0]);
    }
  if (!(xmax > xmin)) {
    xmin = 0;
    xmax = 1;
  }
  auto px = [&](double x) { return L + (x - xmin) / (xmax - xmin) * (W - L - R); };
  auto py = [&](double y) { return T + (ymax - std::clamp(y, ymin, ymax)) / (ymax - ymin) * (H - T - B); };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' font-family='sans-serif'>"
    << "<rect width='100%' height='100%' fill='#fff'/><text x='" << L << "' y='18' font-size='13'>" << title << "</text>"
    << "<rect x='" << L << "' y='" << T << "' width='" << W - L - R << "' height='" << H - T - B << "' fill='none' stroke='#999'/>";
  char b[64];
  for (int i = 0; i <= 4; ++i) {
    const double y = ymin + (ymax - ymin) * i / 4.0;
    std::snprintf(b, sizeof b, "%.2f", y);
    s << "<text x='" << L - 34 << "' y='" << py(y) + 4 << "' font-size='10'>" << b << "</text><line x1='" << L << "' x2='"
      << W - R << "' y1='" << py(y) << "' y2='" << py(y) << "' stroke='#eee'/>";
    const double x = xmin + (xmax - xmin) * i / 4.0;
    std::snprintf(b, sizeof b, "%.3g", x);
    s << "<text x='" << px(x) - 10 << "' y='" << H - B + 14 << "' font-size='10'>" << b << "</text>";
  }
  s << "<text x='" << (L + W - R) / 2 - 40 << "' y='" << H - 8 << "' font-size='11'>" << xlabel << "</text>"
    << "<text x='12' y='" << T + (H - T - B) / 2 << "' font-size='11' transform='rotate(-90 12 " << T + (H - T - B) / 2
    << ")'>" << ylabel << "</text>";
  for (std::size_t k = 0; k < series.size(); ++k) {
    const auto& se = series[k];
    s << "<polyline fill='none' stroke-width='1.8' stroke='" << se.colour << "' points='";
    for (const auto& p : se.pts) s << px(p[0]) << "," << py(p[1]) << " ";
    s << "'/>";
    for (const auto& p : se.pts)
      s << "<line x1='" << px(p[0]) << "' x2='" << px(p[0]) << "' y1='" << py(p[2]) << "' y2='" << py(p[3]) << "' stroke='"
        << se.colour << "' stroke-opacity='0.5'/><circle cx='" << px(p[0]) << "' cy='" << py(p[1]) << "' r='2.5' fill='"
        << se.colour << "'/>";
    s << "<text x='" << L + 10 + 150 * static_cast<double>(k) << "' y='" << T + 14 << "' font-size='11' fill='" << se.colour
      << "'>" << se.name << "</text>";
  }
  return s.str() + "</svg>\n";
}

struct Report {
  const Data& D;
  std::string out;
  bool quick = false;
  Width wd;
  std::vector<std::string> models;
  int seeds = 3;
  std::int64_t iters = 1500, long_iters = 6000;
  Setting main_setting;
  std::map<std::string, Index> crops;  // setting -> crop (for the crop sweep)
  std::map<std::string, std::string> job_dirs;  // "setting/model/seed" -> dir
  std::string precision = "float";               // float, or bf16 (float weights, bf16 convolutions)

  std::vector<Row> rows_of(const std::string& setting, const std::string& model, int seed, std::int64_t it) const {
    const auto k = job_dirs.find(setting + "/" + model + "/" + std::to_string(seed));
    if (k == job_dirs.end()) return {};
    return read_rows(k->second + "/eval_" + std::to_string(it) + ".csv");
  }
  static std::vector<double> metric(const std::vector<Row>& rows, const std::string& dir, int k, bool itk = false) {
    std::vector<double> v;
    for (const auto& r : rows)
      if (r.direction == dir && (r.slice == "itk_pd") == itk) {
        const double x[] = {r.mse, r.psnr, r.ssim, r.alpha, r.alpha_ssim, r.drift, r.alpha_lo, r.alpha_hi};
        v.push_back(x[k]);
      }
    return v;
  }

  void write() const {
    const char* mnames[] = {"MSE", "PSNR (dB)", "SSIM", "alpha (NMI)", "alpha (SSIM)", "drift"};
    std::ostringstream md;
    char b[1024];
    md << "# Held-out simulated-deformation experiment, in the paper's geometry\n\n";
    std::snprintf(b, sizeof b,
                  "%s: %lld iterations per run, seeds 1-%d, ch2 resampled to %.1f mm, %lldx%lld training crops (dicyc-train's "
                  "sampler: >= 10 %% foreground, affine augmentation, flip probability %.2f), whole-slice inference as "
                  "dicyc-synth runs it, scored on the 1 mm grid; ngf %d, %d blocks, ndf %d, batch 1, constant lr 2e-4, "
                  "EM %s; %s.\n\n",
                  quick ? "QUICK MODE (a smoke test; the numbers mean nothing)" : "Configuration",
                  static_cast<long long>(iters), seeds, main_setting.spacing, static_cast<long long>(main_setting.crop),
                  static_cast<long long>(main_setting.crop), main_setting.flip, wd.ngf, wd.blocks, wd.ndf, main_setting.em.c_str(),
                  precision == "bf16" ? "bf16 convolutions on oneDNN (float weights, Adam, norms, losses), in training and "
                                        "evaluation"
                                      : "float");
    md << b;
    if (wd.gan_plain != 0)
      md << "**Beyond the paper: the DiCyc models trained with `--lambda-gan-plain " << wd.gan_plain
         << "`** (their undeformed outputs, warped into the target's pose, meet the discriminators too).\n\n";
    std::snprintf(b, sizeof b,
                  "Data: B = ch2 (real T1 anatomy); its training slices carry one domain TPS (4x4, 6 %% of the field of "
                  "view) and a per-slice jitter. A = the same anatomy through a contrast map fitted on ITK's real PD "
                  "slice (r = %.4f with it; ch2 itself: %.4f). Test: the 1 mm slab [%d, %d], no training slice within "
                  "%d mm of it; A -> B from the undeformed PD-like slices (truth: the aligned T1), B -> A from the T1 "
                  "under the domain warp (truth: the PD-like slices under the same warp); and the real ITK PD slice "
                  "(truth: the real ITK T1). alpha: the share of the domain warp an output carries (NMI; SSIM beside "
                  "it; [lo, hi]: the alphas within %.0f %% of the NMI score range of the best). drift: the share of the "
                  "warp by which the output's geometry departs from its source's (A -> B: alpha; B -> A: 1 - alpha); "
                  "0 = aligned with the source.\n\n",
                  D.r_map, D.r_t1, D.test_first, D.test_first + D.test_count - 1, D.gap, 100 * kAlphaTolerance);
    md << b;
    std::string csv = std::string(kRowHeader) + "\n";
    for (const std::string dir : {"ab", "ba"}) {
      md << "## " << (dir == "ab" ? "A -> B (PD-like -> T1)" : "B -> A (warped T1 -> PD-like, warped)")
         << ": mean (sd over seeds) of the per-seed means over the test slab\n\n| model | seeds | ";
      for (int k : {0, 1, 2, 3, 4, 5}) md << mnames[k] << " | ";
      md << "alpha interval | s / iteration |\n|---|---|---|---|---|---|---|---|---|---|\n";
      for (const auto& name : models) {
        std::vector<std::vector<double>> per(8);
        int n = 0;
        for (int s = 1; s <= seeds; ++s) {
          const auto rows = rows_of("main", name, s, iters);
          if (rows.empty()) continue;
          ++n;
          if (dir == "ab")
            for (const auto& r : rows) csv += row_csv(r);
          for (int k = 0; k < 8; ++k) per[static_cast<std::size_t>(k)].push_back(mean(metric(rows, dir, k)));
        }
        if (n == 0) {
          md << "| " << name << " | 0 | not run yet |||||||\n";
          continue;
        }
        md << "| " << name << " | " << n << " | ";
        for (int k = 0; k < 6; ++k) {
          std::snprintf(b, sizeof b, k == 1 ? "%.2f (%.2f) | " : "%.4f (%.4f) | ", mean(per[k]), sd(per[k]));
          md << b;
        }
        std::snprintf(b, sizeof b, "[%.2f, %.2f] | %.3f |\n", mean(per[6]), mean(per[7]),
                      job_seconds_per_iteration(job_dirs.count("main/" + name + "/1") ? job_dirs.at("main/" + name + "/1") : ""));
        md << b;
      }
      md << "\n";
    }
    io::write_file_atomic(out + "/results.csv", csv);
    md << "## The real ITK PD slice (truth: the real ITK T1), A -> B: mean (sd) over seeds\n\n| model | MSE | PSNR (dB) | SSIM | "
          "alpha (NMI) |\n|---|---|---|---|---|\n";
    for (const auto& name : models) {
      std::vector<std::vector<double>> v(4);
      for (int s = 1; s <= seeds; ++s) {
        const auto rows = rows_of("main", name, s, iters);
        if (rows.empty()) continue;
        for (int k = 0; k < 4; ++k) v[static_cast<std::size_t>(k)].push_back(metric(rows, "ab", k, true).at(0));
      }
      if (v[0].empty()) continue;
      std::snprintf(b, sizeof b, "| %s | %.4f (%.4f) | %.2f (%.2f) | %.4f (%.4f) | %.3f (%.3f) |\n", name.c_str(), mean(v[0]),
                    sd(v[0]), mean(v[1]), sd(v[1]), mean(v[2]), sd(v[2]), mean(v[3]), sd(v[3]));
      md << b;
    }
    write_tests(md);
    write_margins(md);
    write_sweeps(md);
    md << "\nFiles: results.csv (main setting, every model, seed and test slice, both directions), curves.csv, crops.csv, "
          "alpha_vs_crop.svg, alpha_vs_iteration.svg, montage_<model>_<ab|ba>.png (seed 1; rows: test slices "
       << D.test_first << ", " << D.test_first + (D.test_count - 1) / 2 << ", " << D.test_first + D.test_count - 1
       << "; columns: source, output, truth aligned with the source, the truth in the other geometry, |output - truth|); "
          "runs/<setting>/<model>_seed<k>/ (checkpoint, losses.csv, eval_<iteration>.csv, job.txt).\n";
    io::write_file_atomic(out + "/summary.md", md.str());
  }

  void write_tests(std::ostringstream& md) const {
    const std::string dicyc = "nmi-dicyc";
    if (std::find(models.begin(), models.end(), dicyc) == models.end()) return;
    const char* names[] = {"MSE", "PSNR", "SSIM", "", "", "drift"};
    char b[512];
    md << "\n## Paired t-tests: NMI-DiCyc minus the best baseline per metric (the CycleGAN family), over the test slices\n\n"
          "Neighbouring slices are correlated, so the effective sample size is below the slice count and these p-values "
          "overstate the evidence. 'seed k': over the slices of seed k; 'seed mean': over the per-slice scores averaged "
          "over the seeds.\n\n| direction | metric | best baseline | run | mean difference | t | p |\n|---|---|---|---|---|---|---|\n";
    for (const std::string dir : {"ab", "ba"})
      for (int k : {0, 1, 2, 5}) {
        const bool lower = k == 0 || k == 5;
        std::string best;
        double bv = 0;
        for (const auto& base : models) {
          if (base.find("dicyc") != std::string::npos) continue;
          std::vector<double> m;
          for (int s = 1; s <= seeds; ++s) {
            const auto rows = rows_of("main", base, s, iters);
            if (!rows.empty()) m.push_back(mean(metric(rows, dir, k)));
          }
          if (m.empty()) continue;
          if (best.empty() || (lower ? mean(m) < bv : mean(m) > bv)) {
            best = base;
            bv = mean(m);
          }
        }
        if (best.empty()) continue;
        std::vector<double> avg_d, avg_b;
        int n = 0;
        for (int s = 1; s <= seeds; ++s) {
          const auto rd = rows_of("main", dicyc, s, iters), rb = rows_of("main", best, s, iters);
          if (rd.empty() || rb.empty()) continue;
          const auto d = metric(rd, dir, k), bb = metric(rb, dir, k);
          if (avg_d.empty()) {
            avg_d.assign(d.size(), 0.0);
            avg_b.assign(d.size(), 0.0);
          }
          for (std::size_t i = 0; i < d.size(); ++i) {
            avg_d[i] += d[i];
            avg_b[i] += bb[i];
          }
          ++n;
          try {
            const auto tt = eval::ttest_rel(d, bb);
            std::snprintf(b, sizeof b, "| %s | %s | %s | seed %d | %+.4f | %.2f | %.3g |\n", dir.c_str(), names[k], best.c_str(), s,
                          tt.mean_difference, tt.t, tt.p);
          } catch (const std::exception& e) {
            std::snprintf(b, sizeof b, "| %s | %s | %s | seed %d | %s |||\n", dir.c_str(), names[k], best.c_str(), s, e.what());
          }
          md << b;
        }
        if (n > 1) {
          for (auto& x : avg_d) x /= n;
          for (auto& x : avg_b) x /= n;
          try {
            const auto tt = eval::ttest_rel(avg_d, avg_b);
            std::snprintf(b, sizeof b, "| %s | %s | %s | seed mean | %+.4f | %.2f | %.3g |\n", dir.c_str(), names[k], best.c_str(),
                          tt.mean_difference, tt.t, tt.p);
            md << b;
          } catch (const std::exception&) {
          }
        }
      }
  }

  void write_margins(std::ostringstream& md) const {
    const std::string dicyc = "nmi-dicyc";
    if (std::find(models.begin(), models.end(), dicyc) == models.end()) return;
    md << "\n## Against the paper's margins (NMI-DiCyc against the best CycleGAN-family baseline per metric)\n\n| direction | "
          "metric | NMI-DiCyc | best baseline | relative improvement | paper |\n|---|---|---|---|---|---|\n";
    const char* names[] = {"MSE", "PSNR", "SSIM"};
    const char* paper[] = {">= 18 %", ">= 8 %", ">= 12 %"};
    char b[512];
    for (const std::string dir : {"ab", "ba"})
      for (int k = 0; k < 3; ++k) {
        auto overall = [&](const std::string& mdl) {
          std::vector<double> m;
          for (int s = 1; s <= seeds; ++s) {
            const auto rows = rows_of("main", mdl, s, iters);
            if (!rows.empty()) m.push_back(mean(metric(rows, dir, k)));
          }
          return m.empty() ? std::nan("") : mean(m);
        };
        const double d = overall(dicyc);
        std::string best;
        double bv = 0;
        for (const auto& base : models) {
          if (base.find("dicyc") != std::string::npos) continue;
          const double v = overall(base);
          if (!std::isfinite(v)) continue;
          if (best.empty() || (k == 0 ? v < bv : v > bv)) {
            best = base;
            bv = v;
          }
        }
        if (best.empty() || !std::isfinite(d)) continue;
        const double rel = k == 0 ? (bv - d) / bv : (d - bv) / std::abs(bv);
        std::snprintf(b, sizeof b, "| %s | %s | %.4f | %.4f (%s) | %+.1f %% | %s |\n", dir.c_str(), names[k], d, bv, best.c_str(),
                      100 * rel, paper[k]);
        md << b;
      }
  }

  /// Crop share and training time: alpha and quality of CycleGAN and NMI-DiCyc (seed 1).
  void write_sweeps(std::ostringstream& md) const {
    char b[512];
    const std::vector<std::pair<std::string, std::string>> two{{"cyclegan", "#d62728"}, {"nmi-dicyc", "#1f77b4"}};
    // crops
    std::string ccsv = "setting,model,spacing,crop,crop_share,direction,mse,psnr,ssim,alpha,alpha_ssim,alpha_lo,alpha_hi,drift\n";
    std::vector<Series> cs;
    md << "\n## When a CycleGAN copies the deformation: the training crop's share of the head (seed 1)\n\n"
          "| setting | model | crop share | A -> B alpha [interval] | alpha (SSIM) | MSE | PSNR | SSIM | B -> A drift | MSE | s / it |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& [mdl, colour] : two) {
      Series se{mdl + " (A -> B)", colour, {}};
      for (const auto& [setting, crop] : crops) {
        const auto rows = rows_of(setting, mdl, 1, iters);
        if (rows.empty()) continue;
        const double spacing = setting == "1mm-crop96" ? 1.0 : main_setting.spacing;
        const auto git = D.geometries.find(spacing);
        const double share = git == D.geometries.end() ? std::nan("") : crop_share(git->second, crop);
        for (const std::string dir : {"ab", "ba"}) {
          std::snprintf(b, sizeof b, "%s,%s,%.1f,%lld,%.4f,%s", setting.c_str(), mdl.c_str(), spacing, static_cast<long long>(crop),
                        share, dir.c_str());
          ccsv += b;
          for (int k : {0, 1, 2, 3, 4, 6, 7, 5}) {
            std::snprintf(b, sizeof b, ",%.5f", mean(metric(rows, dir, k)));
            ccsv += b;
          }
          ccsv += "\n";
        }
        std::snprintf(b, sizeof b, "| %s | %s | %.2f | %.3f [%.2f, %.2f] | %.3f | %.4f | %.2f | %.4f | %.3f | %.4f | %.3f |\n",
                      setting.c_str(), mdl.c_str(), share, mean(metric(rows, "ab", 3)), mean(metric(rows, "ab", 6)),
                      mean(metric(rows, "ab", 7)), mean(metric(rows, "ab", 4)), mean(metric(rows, "ab", 0)),
                      mean(metric(rows, "ab", 1)), mean(metric(rows, "ab", 2)), mean(metric(rows, "ba", 5)),
                      mean(metric(rows, "ba", 0)),
                      job_seconds_per_iteration(job_dirs.count(setting + "/" + mdl + "/1") ? job_dirs.at(setting + "/" + mdl + "/1") : ""));
        md << b;
        if (setting != "1mm-crop96")
          se.pts.push_back({share, mean(metric(rows, "ab", 3)), mean(metric(rows, "ab", 6)), mean(metric(rows, "ab", 7))});
      }
      std::sort(se.pts.begin(), se.pts.end());
      cs.push_back(se);
    }
    io::write_file_atomic(out + "/crops.csv", ccsv);
    io::write_file_atomic(out + "/alpha_vs_crop.svg",
                          svg_plot("alpha (A -> B, NMI) against the training crop's share of the head, 1.8 mm, seed 1",
                                   "share of the slice's foreground inside a training crop", "alpha", cs, -0.1, 1.0));
    // training time
    std::string tcsv = "setting,model,iteration,direction,mse,psnr,ssim,alpha,alpha_ssim,alpha_lo,alpha_hi,drift\n";
    std::vector<Series> ts;
    md << "\n## ... and against training time (seed 1, evaluated every 250 iterations)\n\n| model | iteration | A -> B alpha "
          "[interval] | alpha (SSIM) | MSE | PSNR | SSIM | B -> A drift |\n|---|---|---|---|---|---|---|---|\n";
    for (const auto& [mdl, colour] : two) {
      Series se{mdl + " (A -> B)", colour, {}};
      for (std::int64_t it = 250; it <= long_iters; it += 250) {
        const auto rows = rows_of("main", mdl, 1, it);
        if (rows.empty()) continue;
        for (const std::string dir : {"ab", "ba"}) {
          std::snprintf(b, sizeof b, "main,%s,%lld,%s", mdl.c_str(), static_cast<long long>(it), dir.c_str());
          tcsv += b;
          for (int k : {0, 1, 2, 3, 4, 6, 7, 5}) {
            std::snprintf(b, sizeof b, ",%.5f", mean(metric(rows, dir, k)));
            tcsv += b;
          }
          tcsv += "\n";
        }
        std::snprintf(b, sizeof b, "| %s | %lld | %.3f [%.2f, %.2f] | %.3f | %.4f | %.2f | %.4f | %.3f |\n", mdl.c_str(),
                      static_cast<long long>(it), mean(metric(rows, "ab", 3)), mean(metric(rows, "ab", 6)),
                      mean(metric(rows, "ab", 7)), mean(metric(rows, "ab", 4)), mean(metric(rows, "ab", 0)),
                      mean(metric(rows, "ab", 1)), mean(metric(rows, "ab", 2)), mean(metric(rows, "ba", 5)));
        md << b;
        se.pts.push_back({static_cast<double>(it), mean(metric(rows, "ab", 3)), mean(metric(rows, "ab", 6)),
                          mean(metric(rows, "ab", 7))});
      }
      ts.push_back(se);
    }
    io::write_file_atomic(out + "/curves.csv", tcsv);
    io::write_file_atomic(out + "/alpha_vs_iteration.svg",
                          svg_plot("alpha (A -> B, NMI) against training iterations, 1.8 mm, 128 crops, seed 1", "iteration",
                                   "alpha", ts, -0.1, 1.0));
    // the other settings, once each
    md << "\n## Other settings (seed 1)\n\n| setting | model | A -> B alpha [interval] | MSE | PSNR | SSIM | B -> A drift | MSE "
          "|\n|---|---|---|---|---|---|---|---|\n";
    for (const std::string setting : {"flip", "em-sequential"})
      for (const auto& mdl : {std::string("cyclegan"), std::string("nmi-dicyc")}) {
        const auto rows = rows_of(setting, mdl, 1, iters);
        if (rows.empty()) continue;
        std::snprintf(b, sizeof b, "| %s | %s | %.3f [%.2f, %.2f] | %.4f | %.2f | %.4f | %.3f | %.4f |\n", setting.c_str(), mdl.c_str(),
                      mean(metric(rows, "ab", 3)), mean(metric(rows, "ab", 6)), mean(metric(rows, "ab", 7)),
                      mean(metric(rows, "ab", 0)), mean(metric(rows, "ab", 1)), mean(metric(rows, "ab", 2)),
                      mean(metric(rows, "ba", 5)), mean(metric(rows, "ba", 0)));
        md << b;
      }
  }
};

int main(int argc, char** argv) try {
  dicyc::core::limit_openmp_spin(argv);  // GOMP_SPINCOUNT=1000 unless the user set one (core/openmp_env.hpp)
  cxxopts::Options opts("protocol",
                        "The held-out simulated-deformation experiment in the paper's geometry: the seven models on ch2 slices "
                        "never seen in training, both directions (PD-like A from a contrast map fitted on ITK's PD slice)");
  opts.add_options()("data", "data folder (scripts/fetch_data.sh)", cxxopts::value<std::string>()->default_value("data"))(
      "quick", "smoke test: 30 iterations, one seed, three models, 64-pixel crops, ngf 8, 2 blocks, ndf 16")(
      "part", "jobs to run: main, crops, long, flip, em, onemm or all (comma-separated)",
      cxxopts::value<std::string>()->default_value("main"))(
      "report-only", "write the report from the evaluations that exist; train nothing")(
      "iters", "training iterations per run", cxxopts::value<int>()->default_value("1500"))(
      "long-iters", "iterations of the long runs (--part long)", cxxopts::value<int>()->default_value("6000"))(
      "seeds", "seeds per model (1, 2, ...)", cxxopts::value<int>()->default_value("3"))(
      "models", "comma-separated presets (default: the seven)", cxxopts::value<std::string>()->default_value(""))(
      "spacing", "training spacing in mm", cxxopts::value<double>()->default_value("1.8"))(
      "crop", "training crop size", cxxopts::value<int>()->default_value("128"))(
      "flip", "probability of a left-right flip of a training crop", cxxopts::value<double>()->default_value("0"))(
      "em", "DiCyc's EM schedule: single (the paper's: two forward passes, one backward) or sequential",
      cxxopts::value<std::string>()->default_value("single"))(
      "ngf", "generator width", cxxopts::value<int>()->default_value("16"))(
      "blocks", "residual blocks", cxxopts::value<int>()->default_value("4"))(
      "ndf", "discriminator width", cxxopts::value<int>()->default_value("32"))(
      "test-first", "first slice of the test slab (1 mm)", cxxopts::value<int>()->default_value("84"))(
      "test-count", "slices in the test slab (>= 20 for the experiment)", cxxopts::value<int>()->default_value("20"))(
      "gap", "mm left out on each side of the test slab", cxxopts::value<int>()->default_value("5"))(
      "lo", "lowest slice used (1 mm)", cxxopts::value<int>()->default_value("30"))(
      "hi", "highest slice used (1 mm)", cxxopts::value<int>()->default_value("150"))(
      "threads", "CPU threads", cxxopts::value<int>()->default_value("2"))(
      "precision", "float, or bf16: float weights and tensors, the convolutions that measured faster in bfloat16 on "
                   "oneDNN's bf16 primitives (training and evaluation; as dicyc-train --precision bf16); use its own --out",
      cxxopts::value<std::string>()->default_value("float"))(
      "data-seed", "seed of the domain deformation and the jitters", cxxopts::value<std::uint64_t>()->default_value("1"))(
      "lambda-gan-plain", "beyond the paper: dicyc-train --lambda-gan-plain for the DiCyc models (0: the paper's "
      "objective); a folder holds runs of one value only", cxxopts::value<double>()->default_value("0"))(
      "out", "output folder", cxxopts::value<std::string>()->default_value("protocol_out"))("h,help", "help");
  const auto a = opts.parse(argc, argv);
  if (a.count("help")) {
    std::cout << opts.help() << "\n";
    return 0;
  }
  DICYC_CHECK(a.unmatched().empty(), ConfigError, "protocol: unexpected argument '" << a.unmatched().front() << "'");
  const bool quick = a.count("quick") > 0;
  auto pick = [&](const char* k, int q) { return quick && !a.count(k) ? q : a[k].as<int>(); };
  Width wd{pick("ngf", 8), pick("blocks", 2), pick("ndf", 16)};
  const int iters = pick("iters", 30), seeds = pick("seeds", 1), crop = pick("crop", 64), long_iters = a["long-iters"].as<int>();
  const std::string data = a["data"].as<std::string>(), out = a["out"].as<std::string>();
  wd.gan_plain = a["lambda-gan-plain"].as<double>();
  DICYC_CHECK(std::isfinite(wd.gan_plain) && wd.gan_plain >= 0, ConfigError, "protocol: --lambda-gan-plain must be >= 0");
  {  // one value per output folder: its runs are skipped or resumed by name, whatever they were trained with
    const std::string tag = out + "/lambda_gan_plain.txt";
    std::string have;
    if (std::ifstream in(tag); in) std::getline(in, have);
    else if (fs::exists(out + "/runs")) have = "0";
    std::ostringstream want;
    want << wd.gan_plain;
    DICYC_CHECK(have.empty() || have == want.str(), ConfigError,
                "protocol: " << out << " holds runs trained with --lambda-gan-plain " << have << ", not " << want.str()
                             << ": give another --out");
    if (have.empty() && wd.gan_plain != 0) {
      fs::create_directories(out);
      std::ofstream(tag) << want.str() << "\n";
    }
  }
  std::vector<std::string> models = split_list(a["models"].as<std::string>());
  if (models.empty()) {
    if (quick) models = {"cyclegan", "nmi-cyclegan", "nmi-dicyc"};
    else models.assign(std::begin(kSeven), std::end(kSeven));
  }
  const double spacing = a["spacing"].as<double>(), flip = a["flip"].as<double>();
  const std::string em = a["em"].as<std::string>();
  std::set<std::string> parts;
  for (const auto& p : split_list(a["part"].as<std::string>())) {
    DICYC_CHECK(p == "main" || p == "crops" || p == "long" || p == "flip" || p == "em" || p == "onemm" || p == "all",
                ConfigError, "protocol: --part takes main, crops, long, flip, em, onemm or all, got '" << p << "'");
    if (p == "all") parts.insert({"main", "crops", "long", "flip", "em", "onemm"});
    else parts.insert(p);
  }
  DICYC_CHECK(iters > 0 && seeds >= 1 && crop >= 16 && crop % 4 == 0 && crop <= 256 && wd.ngf >= 1 && wd.blocks >= 0 &&
                  wd.ndf >= 1 && long_iters >= iters && spacing >= 1 && spacing <= 4 && flip >= 0 && flip <= 1 &&
                  (em == "single" || em == "sequential"),
              ConfigError,
              "protocol: needs iters > 0, seeds >= 1, a crop in [16, 256] that is a multiple of 4, ngf, ndf >= 1, blocks >= 0, "
              "--long-iters >= --iters, --spacing in [1, 4] mm, --flip in [0, 1] and --em single or sequential");
  for (const auto& m : models) (void)model::ModelOptions::preset(m);  // unknown names fail here, before any work
  const int lo = a["lo"].as<int>(), hi = a["hi"].as<int>(), tf = a["test-first"].as<int>(), tc = a["test-count"].as<int>(),
            gap = a["gap"].as<int>();
  const auto split = data::SlabSplit::make(lo, hi, tf, tc, gap);  // checks the slab and the gap
  DICYC_CHECK(split.test.front() >= 0 && split.test.back() < 181 && lo >= 0 && hi < 181, ConfigError,
              "protocol: slices must lie in [0, 180]");
  core::Context<Dev> ctx(a["threads"].as<int>());
  const std::string precision = a["precision"].as<std::string>();
  DICYC_CHECK(precision == "float" || precision == "bf16", ConfigError, "protocol: --precision takes float or bf16, got '" << precision << "'");
  if (precision == "bf16") {
    DICYC_CHECK(std::string(ops::bf16_conv_support()) != "none", ConfigError,
                "protocol: --precision bf16 needs oneDNN and a CPU with AVX-512 (this one: none)");
    ctx.set_conv_bf16(true);
    std::printf("precision: bf16 convolutions (%s), float weights, Adam, norms, losses and evaluation arithmetic\n",
                ops::bf16_conv_support());
  }

  Data D = load_data(ctx, data, a["data-seed"].as<std::uint64_t>());
  D.lo = lo;
  D.hi = hi;
  D.test_first = tf;
  D.test_count = tc;
  D.gap = gap;
  fs::create_directories(out);
  {  // The B -> A truth and alpha: an identity "model" on the warped T1 carries all of the warp (alpha 1), on the
     // aligned T1 none (alpha 0), measured against the undeformed PD-like anatomy as every B -> A output is.
    const Index k = tf + tc / 2;
    const auto m = data::IntensityMap::percentile(D.pd.data);
    const Img pd = mapped(m, slice_of(D.pd, k)), t1w = slice_of(D.t1_warped, k), t1 = slice_of(D.t1, k);
    eval::Image<float, 2> g(pd.data(), 181, 217), w(t1w.data(), 181, 217), u(t1.data(), 181, 217);
    const double a1 = eval::deformation_fraction<2>(ctx, D.domain, g, w).alpha, a0 = eval::deformation_fraction<2>(ctx, D.domain, g, u).alpha;
    std::printf("alpha check on slice %lld (the T1 itself as a B -> A output against the PD-like anatomy): warped %.3f, "
                "aligned %.3f\n", static_cast<long long>(k), a1, a0);
    DICYC_CHECK(std::abs(a1 - 1) <= 0.05 && std::abs(a0) <= 0.05, NumericError,
                "protocol: the alpha measure does not recover the known warp (warped " << a1 << ", aligned " << a0 << ")");
  }

  Setting main_setting{"main", spacing, crop, flip, em};
  std::vector<Job> jobs;
  Report rep{D, out, quick, wd, models, seeds, iters, long_iters, main_setting, {}, {}, precision};
  auto add = [&](const Setting& st, const std::string& mdl, int seed, std::int64_t n, bool curve, bool run) {
    Job j{st, mdl, seed, n, curve, out + "/runs/" + st.name + "/" + mdl + "_seed" + std::to_string(seed),
          st.name == "main" && seed == 1};
    rep.job_dirs[st.name + "/" + mdl + "/" + std::to_string(seed)] = j.dir;
    if (run) jobs.push_back(j);
  };
  const bool two_in = std::find(models.begin(), models.end(), "cyclegan") != models.end() &&
                      std::find(models.begin(), models.end(), "nmi-dicyc") != models.end();
  const std::vector<std::string> two{"cyclegan", "nmi-dicyc"};
  for (int s = 1; s <= seeds; ++s)  // seed by seed: a partial run has every model of the first seeds
    for (const auto& mdl : models)
      add(main_setting, mdl, s, iters, s == 1 && (mdl == "cyclegan" || mdl == "nmi-dicyc"), parts.count("main") > 0);
  rep.crops["main"] = crop;
  if (two_in) {
    for (Index c : {32, 48, 64, 96}) {
      if (c == crop) continue;
      Setting st{"crop" + std::to_string(c), spacing, c, flip, em};
      rep.crops[st.name] = c;
      for (const auto& mdl : two) add(st, mdl, 1, iters, false, parts.count("crops") > 0);
    }
    Setting onemm{"1mm-crop96", 1.0, 96, flip, em};
    rep.crops[onemm.name] = 96;
    for (const auto& mdl : two) add(onemm, mdl, 1, iters, false, parts.count("onemm") > 0);
    Setting fl{"flip", spacing, crop, 0.5, em};
    for (const auto& mdl : two) add(fl, mdl, 1, iters, false, parts.count("flip") > 0);
    if (parts.count("long"))
      for (const auto& mdl : two) {
        Job j{main_setting, mdl, 1, long_iters, true, out + "/runs/main/" + mdl + "_seed1", false};
        jobs.push_back(j);
      }
  }
  Setting emseq{"em-sequential", spacing, crop, flip, em == "single" ? "sequential" : "single"};
  if (std::find(models.begin(), models.end(), "nmi-dicyc") != models.end()) add(emseq, "nmi-dicyc", 1, iters, false, parts.count("em") > 0);

  const Geometry& G = geometry(ctx, D, spacing);
  std::printf("geometry: %.1f mm, %lldx%lld slices, %zu training slices ([%d, %d] more than %d mm from the test slab [%d, %d]); "
              "a %d-pixel crop holds %.0f %% of a training slice's foreground\n",
              spacing, static_cast<long long>(G.w), static_cast<long long>(G.h), G.train_slices, lo, hi, gap, tf, tf + tc - 1,
              crop, 100 * crop_share(G, crop));
  if (a.count("report-only")) jobs.clear();
  std::printf("%zu job(s) to run or check\n", jobs.size());
  std::fflush(stdout);
  for (const auto& j : jobs) {
    run_job(ctx, D, j, wd, out, true);
    rep.write();
  }
  for (const auto& st : {std::string("1mm-crop96")})  // the crop-share table needs this geometry's slices
    if (rep.job_dirs.count(st + "/cyclegan/1") && fs::exists(rep.job_dirs.at(st + "/cyclegan/1") + "/eval_" + std::to_string(iters) + ".csv"))
      (void)geometry(ctx, D, 1.0);
  rep.write();
  std::ifstream in(out + "/summary.md");
  std::cout << "\n" << in.rdbuf();
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "protocol: %s\n", e.what());
  return 1;
}
