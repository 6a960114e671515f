// Datasets: file lists, preparation, slice/patch sampling (exact without augmentation, mirrored
// with a flip), foreground slice selection, seeded determinism, and the background loader
// (the same stream as the sampler it runs).
#define BOOST_TEST_MODULE data_dataset
#include <boost/test/unit_test.hpp>


#include <algorithm>
#include <cmath>
#include <set>

#include "support/test_util.hpp"
#include "support/tmp_dir.hpp"
#include "dicyc/data/dataset.hpp"

namespace fs = std::filesystem;
using namespace dicyc;

namespace {

using TmpDir = dt::TmpDir;

/// A 3-D test volume: a bright block in slices [k0, k1), a value pattern elsewhere zero.
io::Volume block_volume(std::size_t nx, std::size_t ny, std::size_t nz, std::size_t k0, std::size_t k1) {
  io::Volume v;
  v.data = io::VolumeData::from_shape({nx, ny, nz});
  v.data.fill(0.0f);
  for (std::size_t k = k0; k < k1; ++k)
    for (std::size_t j = 1; j + 1 < ny; ++j)
      for (std::size_t i = 1; i + 1 < nx; ++i) v.data(i, j, k) = static_cast<float>(10 + i + 3 * j + 7 * k);
  v.qform_code = v.sform_code = NIFTI_XFORM_SCANNER_ANAT;
  return v;
}

std::shared_ptr<data::Domain> domain_of(const std::vector<io::Volume>& vols, double min_fg = 0.05) {
  auto d = std::make_shared<data::Domain>();
  for (const auto& v : vols) {
    data::Prepared p;
    p.path = "mem";
    p.volume = v;
    p.map = data::IntensityMap::percentile(v.data, 0, 100);
    p.map.apply(p.volume.data);
    p.background = *std::min_element(p.volume.data.begin(), p.volume.data.end());
    d->add(std::move(p), min_fg);
  }
  return d;
}

data::SamplerOptions plain(std::array<Index, 3> crop, int dim = 2) {
  data::SamplerOptions o;
  o.dim = dim;
  o.crop = crop;
  o.augment.enabled = false;
  o.seed = 11;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(file_lists) {
  TmpDir tmp("dataset");
  fs::create_directories(tmp("a"));
  const io::Volume v = block_volume(8, 8, 4, 1, 3);
  io::write_nifti(tmp("a/2.nii.gz"), v);
  io::write_nifti(tmp("a/1.nii"), v);
  { std::ofstream(tmp("a/notes.txt")) << "x"; }
  const auto files = data::list_volumes(tmp("a"));
  BOOST_REQUIRE_EQUAL(files.size(), 2u);
  BOOST_TEST(files[0] == tmp("a/1.nii"));
  { std::ofstream(tmp("list.txt")) << "# two volumes\n a/2.nii.gz  \n\n" << tmp("a/1.nii") << "\n"; }
  const auto listed = data::list_volumes(tmp("list.txt"));
  BOOST_REQUIRE_EQUAL(listed.size(), 2u);
  BOOST_TEST(listed[0] == (tmp("") + "a/2.nii.gz"));
  BOOST_TEST(data::list_volumes(tmp("a/1.nii")).size() == 1u);
  BOOST_CHECK_THROW(data::list_volumes(tmp("missing")), IoError);
  fs::create_directories(tmp("empty"));
  BOOST_CHECK_THROW(data::list_volumes(tmp("empty")), IoError);
  { std::ofstream(tmp("bad.txt")) << "a/3.nii\n"; }
  try {
    data::list_volumes(tmp("bad.txt"));
    BOOST_ERROR("no error");
  } catch (const IoError& e) {
    BOOST_TEST(std::string(e.what()).find("bad.txt:1") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(prepare_resamples_reorients_and_normalises) {
  TmpDir tmp("dataset");
  io::Volume v = block_volume(12, 10, 6, 1, 5);
  v.spacing = {1, 1, 2};
  v.qform.setIdentity();
  v.qform(0, 0) = -1;  // LAS: the x axis points left
  v.qform(2, 2) = 2;
  v.sform = v.qform;
  io::write_nifti(tmp("v.nii.gz"), v);
  data::PrepareOptions o;
  o.spacing = {1, 1, 1};
  const data::Prepared p = data::prepare(tmp("v.nii.gz"), o);
  BOOST_TEST(p.volume.dim()[2] == 12);
  BOOST_TEST(data::Orientation::code(p.volume.affine()) == "RAS");
  BOOST_TEST(*std::max_element(p.volume.data.begin(), p.volume.data.end()) == 1.0f);
  BOOST_TEST(p.background == -1.0f);
  BOOST_TEST(p.map.inverse(1.0f) == static_cast<float>(p.map.b));
  io::Volume flat = v;
  flat.data.fill(3.0f);
  io::write_nifti(tmp("flat.nii"), flat);
  try {
    data::prepare(tmp("flat.nii"), o);
    BOOST_ERROR("no error");
  } catch (const NumericError& e) {
    BOOST_TEST(std::string(e.what()).find("flat.nii") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(slices_without_augmentation_are_exact_and_have_foreground) {
  const io::Volume v = block_volume(16, 12, 10, 3, 6);
  auto dom = domain_of({v});
  BOOST_TEST((dom->slices[0] == std::vector<std::int64_t>{3, 4, 5}));
  data::Sampler s(dom, dom, plain({16, 12, 1}));
  std::set<int> seen;
  for (int it = 0; it < 30; ++it) {
    const data::Batch b = s.next();
    BOOST_REQUIRE_EQUAL(b.a.size(), 16u * 12u);
    // Which slice is it? Compare with each normalised slice.
    int match = -1;
    for (int k = 0; k < 10; ++k) {
      bool same = true;
      for (std::size_t j = 0; j < 12 && same; ++j)
        for (std::size_t i = 0; i < 16 && same; ++i) same = b.a[i + 16 * j] == dom->volumes[0].volume.data(i, j, k);
      if (same) match = k;
    }
    BOOST_REQUIRE(match >= 3 && match < 6);
    seen.insert(match);
  }
  BOOST_TEST(seen.size() == 3u);
}

BOOST_AUTO_TEST_CASE(flip_mirrors_and_crops_stay_inside) {
  const io::Volume v = block_volume(16, 12, 4, 0, 4);
  auto dom = domain_of({v}, 0.0);
  data::SamplerOptions o = plain({16, 12, 1});
  o.augment.enabled = true;
  o.augment.rotation = o.augment.scale = o.augment.shear = o.augment.translation = 0;
  o.augment.flip = 1.0;
  data::Sampler flipped(dom, dom, o);
  const data::Batch f = flipped.next();
  // Same seed, same draws up to the augmentation: find the slice of the flipped sample.
  bool found = false;
  for (int k = 0; k < 4 && !found; ++k) {
    bool same = true;
    for (std::size_t j = 0; j < 12 && same; ++j)
      for (std::size_t i = 0; i < 16 && same; ++i) same = f.a[i + 16 * j] == dom->volumes[0].volume.data(15 - i, j, k);
    found = same;
  }
  BOOST_TEST(found);
  // Random crops smaller than the slice are sub-blocks of it.
  data::Sampler crops(dom, dom, plain({8, 4, 1}));
  const data::Batch c = crops.next();
  BOOST_TEST(c.a.size() == 32u);
  for (float x : c.a) BOOST_TEST((x >= -1.0f && x <= 1.0f));
}

BOOST_AUTO_TEST_CASE(patches_3d_and_augmented_values_in_range) {
  const io::Volume v = block_volume(8, 8, 8, 0, 8);
  auto dom = domain_of({v});
  data::Sampler s(dom, dom, plain({8, 8, 8}, 3));
  const data::Batch b = s.next();
  BOOST_REQUIRE_EQUAL(b.a.size(), 512u);
  for (std::size_t n = 0; n < 512; ++n) BOOST_TEST(b.a[n] == dom->volumes[0].volume.data.data()[n]);
  data::SamplerOptions o = plain({8, 8, 4}, 3);
  o.augment.enabled = true;
  o.batch = 3;
  data::Sampler aug(dom, dom, o);
  const data::Batch ab = aug.next();
  BOOST_TEST(ab.a.size() == 3u * 256u);
  for (float x : ab.a) BOOST_TEST((x >= -1.0f && x <= 1.0f));
  BOOST_CHECK_THROW(data::Sampler(dom, dom, plain({6, 8, 1})), ConfigError);
  BOOST_CHECK_THROW(data::Sampler(dom, dom, plain({8, 8, 8}, 4)), ConfigError);
}

BOOST_AUTO_TEST_CASE(loader_gives_the_sampler_stream) {
  const io::Volume v1 = block_volume(20, 16, 6, 1, 5), v2 = block_volume(16, 20, 8, 2, 7);
  auto a = domain_of({v1, v2}), b = domain_of({v2});
  data::SamplerOptions o;
  o.crop = {12, 8, 1};
  o.batch = 2;
  o.seed = 5;
  data::Sampler direct(a, b, o);
  data::Loader loader(data::Sampler(a, b, o), 3);
  for (int it = 0; it < 20; ++it) {
    const data::Batch x = direct.next(), y = loader.next();
    BOOST_REQUIRE((x.a == y.a));
    BOOST_REQUIRE((x.b == y.b));
  }
  BOOST_TEST(loader.taken() == 20u);
  o.seed = 6;
  data::Sampler other(a, b, o);
  data::Sampler same5(a, b, [&] { auto p = o; p.seed = 5; return p; }());
  BOOST_TEST((other.next().a != same5.next().a));
}

// A small object in a large background: uniform crop centres give mostly background crops (so
// the check below can fail), foreground-centred ones with the minimum always hold anatomy, in
// 2-D and 3-D, with augmentation on; a minimum no crop can reach is an error naming the volume.
BOOST_AUTO_TEST_CASE(crops_hold_the_minimum_foreground) {
  io::Volume v;
  v.data = io::VolumeData::from_shape({96, 80, 24});
  v.data.fill(0.0f);
  for (std::size_t k = 6; k < 16; ++k)
    for (std::size_t j = 46; j < 60; ++j)
      for (std::size_t i = 20; i < 36; ++i) v.data(i, j, k) = 100.0f + float(i % 3);
  v.qform_code = v.sform_code = NIFTI_XFORM_SCANNER_ANAT;
  auto dom = domain_of({v}, 0.0);
  const float thr = dom->thresholds[0];
  for (int dim : {2, 3}) {
    BOOST_TEST_CONTEXT(dim << "-D") {
      const Index c = dim == 3 ? 24 : 32, cz = dim == 3 ? 12 : 1;
      data::SamplerOptions o = plain({c, c, cz}, dim);
      o.augment.enabled = true;
      o.batch = 2;
      const Index per = c * c * cz;
      auto min_fraction = [&](double min_fg, int batches) {
        o.min_foreground = min_fg;
        data::Sampler s(dom, dom, o);
        double lo = 1;
        for (int it = 0; it < batches; ++it) {
          const data::Batch b = s.next();
          for (const auto* img : {&b.a, &b.b})
            for (Index n = 0; n < o.batch; ++n) {
              Index fg = 0;
              for (Index i = 0; i < per; ++i) fg += (*img)[n * per + i] > thr;
              lo = std::min(lo, double(fg) / double(per));
            }
        }
        return lo;
      };
      BOOST_TEST(min_fraction(0.0, 40) == 0.0);  // uniform centres: some crops are pure background
      BOOST_TEST(min_fraction(0.08, 40) >= 0.08);
      o.min_foreground = 0.9;
      data::Sampler hopeless(dom, dom, o);
      dt::expect_error<ConfigError>([&] { hopeless.next(); }, "'mem'");
      dt::expect_error<ConfigError>([&] { hopeless.next(); }, "lower --min-foreground");
    }
  }
}

// Batch i comes from its own stream: a sampler started at batch i (a resumed run) gives exactly
// the batches a fresh one gives from i on, with augmentation and foreground retries.
BOOST_AUTO_TEST_CASE(batches_are_indexed_for_exact_resume) {
  const io::Volume v1 = block_volume(40, 36, 10, 2, 8), v2 = block_volume(36, 40, 12, 3, 9);
  auto a = domain_of({v1, v2}), b = domain_of({v2});
  data::SamplerOptions o;
  o.crop = {16, 12, 1};
  o.batch = 2;
  o.seed = 9;
  data::Sampler full(a, b, o);
  std::vector<data::Batch> ref;
  for (int i = 0; i < 12; ++i) ref.push_back(full.next());
  for (std::int64_t start : {1, 5, 11}) {
    o.first_batch = start;
    data::Loader resumed(data::Sampler(a, b, o), 2);
    for (std::int64_t i = start; i < 12; ++i) {
      const data::Batch x = resumed.next();
      BOOST_REQUIRE((x.a == ref[static_cast<std::size_t>(i)].a));
      BOOST_REQUIRE((x.b == ref[static_cast<std::size_t>(i)].b));
    }
  }
  BOOST_TEST((ref[0].a != ref[1].a));
}

BOOST_AUTO_TEST_CASE(a_fixed_window_keeps_ct_values_up_to_3000_hu) {
  // A CT with values from -1024 to 3000 HU (dense bone) prepared with the window -1024..3000 and
  // mapped back (what dicyc-synth does with the checkpoint's map) returns every value within 1 HU;
  // percentiles would clip the top of the range.
  TmpDir tmp("window");
  io::Volume v = block_volume(16, 16, 8, 0, 1);
  for (std::size_t i = 0; i < v.data.size(); ++i) v.data.data()[i] = -1024.0f + 4024.0f * float(i) / float(v.data.size() - 1);
  io::write_nifti(tmp("ct.nii.gz"), v);
  data::PrepareOptions o;
  o.window_lo = -1024;
  o.window_hi = 3000;
  const data::Prepared p = data::prepare(tmp("ct.nii.gz"), o);
  BOOST_TEST(p.map.a == -1024.0);
  BOOST_TEST(p.map.b == 3000.0);
  float worst = 0;
  for (std::size_t i = 0; i < v.data.size(); ++i)
    worst = std::max(worst, std::abs(p.map.inverse(p.volume.data.data()[i]) - v.data.data()[i]));
  BOOST_TEST(worst < 1.0f);
  // The percentile map of the same volume loses the top half percent (about 20 HU here).
  const data::Prepared q = data::prepare(tmp("ct.nii.gz"), data::PrepareOptions{});
  BOOST_TEST(q.map.inverse(1.0f) < 2990.0f);
  // The checkpoint's record of it round-trips, and a bad window is refused.
  BOOST_TEST(data::IntensityMap::from_string(p.map.to_string()).b == 3000.0);
  dt::expect_error<ConfigError>([] { data::IntensityMap::window(5, 5); }, "lo < hi");
}
