// The train layer without the tools: train::Trainer on in-memory sources and a library model.
// - exact resume: a run stopped at iteration k (by max_iterations, or by a stop request) and
//   resumed gives the uninterrupted run's losses.csv rows and every checkpoint tensor bit for bit
//   (CycleGAN and NMI-DiCyc, 2-D; a 3-D CycleGAN);
// - a non-finite loss ends the run with Outcome::NonFinite and leaves the last good checkpoint as
//   it was, byte for byte;
// - losses.csv's header is the documented column list, which kLossFields generates (the
//   static_asserts in model/losses.hpp tie the table to StepLosses' members at compile time);
// - the memory check refuses a limit below the estimate before anything is written, and passes
//   one above it;
// - the run metadata (data preparation, run settings, user keys) round-trips through a checkpoint
//   with one read, and a resume's restore keeps given settings and notes differing ones;
// - checkpoint_image / write_checkpoint_image / SafeTensorsFile::image / load_checkpoint_image
//   (how the tools' device wrapper moves state as host buffers) are the checkpoint file, byte for
//   byte, and a damaged image changes nothing;
// - the sources: SamplerSource's batches are data::Sampler's with stream_seed, ListSource's
//   rank/resume indexing.
#define BOOST_TEST_MODULE train
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

#include "support/test_util.hpp"
#include "support/tmp_dir.hpp"
#include "dicyc/train.hpp"

namespace fs = std::filesystem;
using namespace dicyc;
using Dev = Eigen::DefaultDevice;

namespace {

/// n smooth w x h images in [-1, 1] with a background border, different per seed.
std::vector<std::vector<float>> images(std::size_t n, Index w, Index h, std::uint64_t seed) {
  core::Rng rng(seed);
  std::vector<std::vector<float>> r;
  for (std::size_t k = 0; k < n; ++k) {
    const double fx = rng.uniform(0.5, 2.0), fy = rng.uniform(0.5, 2.0), ph = rng.uniform(0, 3);
    std::vector<float> im(static_cast<std::size_t>(w * h), -1.0f);
    for (Index y = 2; y < h - 2; ++y)
      for (Index x = 2; x < w - 2; ++x)
        im[x + w * y] = static_cast<float>(0.8 * std::sin(fx * x * 0.3 + ph) * std::cos(fy * y * 0.25));
    r.push_back(std::move(im));
  }
  return r;
}

struct Setup {
  std::shared_ptr<data::Domain> a, b;
  data::SamplerOptions so;
  explicit Setup(int dim = 2) {
    const Index w = dim == 2 ? 24 : 20, h = dim == 2 ? 24 : 20;
    a = std::make_shared<data::Domain>(data::Domain::from_slices("a", images(dim == 2 ? 4 : 20, w, h, 1), w, h));
    b = std::make_shared<data::Domain>(data::Domain::from_slices("b", images(dim == 2 ? 4 : 20, w, h, 2), w, h));
    so.dim = dim;
    so.crop = {16, 16, dim == 3 ? 16 : 1};
    so.min_foreground = 0.1;
  }
};

model::ModelOptions tiny(const std::string& preset, int dim = 2) {
  return model::ModelOptions::preset(preset)
      .generator(nn::GeneratorOptions().ngf(4).n_blocks(1))
      .ndf(4)
      .n_layers(dim == 2 ? 2 : 1)
      .control_points(3)
      .offset_hidden(4)
      .stn_hidden(8, 4)
      .pool_size(3)
      .seed(7)
      .schedule(optim::ScheduleOptions().iterations_per_epoch(4).constant_epochs(2).decay_epochs(2));
}

std::vector<std::string> csv_rows_without_time(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> rows;
  std::string line;
  while (std::getline(in, line)) rows.push_back(line.substr(0, line.rfind(',')));
  return rows;
}

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

/// Every tensor of two checkpoints equal byte for byte, and their metadata equal.
void check_same_checkpoint(const std::string& p, const std::string& q) {
  const auto f = io::SafeTensorsFile::read(p), g = io::SafeTensorsFile::read(q);
  BOOST_TEST(f.names() == g.names());
  std::size_t compared = 0;
  for (const auto& n : f.names()) {
    if (!g.has(n)) continue;
    const auto a = f.raw_bytes(n), b = g.raw_bytes(n);
    BOOST_TEST_CONTEXT("tensor " << n) BOOST_TEST((a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin())));
    ++compared;
  }
  BOOST_TEST(compared > 10u);
  BOOST_TEST(f.metadata() == g.metadata());
}

template <int Dim>
struct Run {
  core::Context<Dev> ctx;
  std::unique_ptr<model::ModelBase<Dim, float, Dev>> m;
  train::ModelTrainable<Dim, float, Dev> t;
  Run(const model::ModelOptions& mo) : m(model::make_model<Dim, float, Dev>(ctx, mo)), t(ctx, *m) {}
};

enum class Stop { MaxIterations, Request, Killed };

/// Trains `preset` to `total` iterations uninterrupted, and again stopped at `stop_at` and resumed.
/// Stop::Request stops through the hook (an interrupt); Stop::Killed runs on to stop_at + 1 and
/// then puts back the checkpoint of stop_at (even), as a SIGKILL before the next save leaves it:
/// the log then has a row past the checkpoint, which the resume must drop.
/// gan_plain: ModelOptions::lambda_gan_plain of both runs. old_log: before the resume, the log is
/// rewritten as a dicyc from before the gan_plain columns wrote it (those columns dropped, the
/// others moved); the resumed run must give it back in the current columns, equal to the whole run's.
template <int Dim>
void check_resume(const std::string& preset, std::int64_t total, std::int64_t stop_at, Stop how, double gan_plain = 0,
                  bool old_log = false) {
  const bool stop_request = how == Stop::Request;
  auto tiny = [&](const std::string& p, int dim) { return ::tiny(p, dim).lambda_gan_plain(gan_plain); };
  dt::TmpDir tmp("train_resume_" + preset + std::to_string(Dim) + "_" + std::to_string(static_cast<int>(how)) +
                 (gan_plain > 0 ? "_gp" : "") + (old_log ? "_old" : ""));
  Setup s(Dim);
  auto opts = [&](const std::string& out, std::int64_t max_it) {
    return train::TrainerOptions().out(tmp(out)).max_iterations(max_it).checkpoint_every(2).seed(3).log_every(1);
  };
  {
    Run<Dim> r(tiny(preset, Dim));
    train::SamplerSource src(s.a, s.b, s.so);
    train::Trainer t(r.t, src, opts("whole", total));
    const auto res = t.fit();
    BOOST_TEST((res.outcome == train::Outcome::Done));
    BOOST_TEST(res.iteration == total);
  }
  {
    Run<Dim> r(tiny(preset, Dim));
    train::SamplerSource src(s.a, s.b, s.so);
    const bool killed = how == Stop::Killed;
    train::Trainer t(r.t, src, opts("parts", stop_request ? total : killed ? stop_at + 1 : stop_at));
    int polled = 0;
    if (stop_request) t.hooks().stop_requested = [&] { return ++polled > stop_at; };
    std::vector<char> at_stop;
    t.hooks().saved = [&](std::int64_t it) {
      if (it == stop_at) at_stop = file_bytes(tmp("parts/checkpoint.safetensors"));
    };
    const auto res = t.fit();
    BOOST_TEST((res.outcome == (stop_request ? train::Outcome::Interrupted : train::Outcome::Done)));
    BOOST_TEST(res.iteration == stop_at + (killed ? 1 : 0));
    if (killed) {
      BOOST_TEST_REQUIRE(!at_stop.empty());
      BOOST_TEST(csv_rows_without_time(tmp("parts/losses.csv")).size() == static_cast<std::size_t>(stop_at + 2));
      std::ofstream(tmp("parts/checkpoint.safetensors"), std::ios::binary).write(at_stop.data(), static_cast<std::streamsize>(at_stop.size()));
    }
  }
  if (old_log) {
    std::ifstream in(tmp("parts/losses.csv"));
    std::string line, text;
    std::vector<std::size_t> keep;
    while (std::getline(in, line)) {
      std::vector<std::string> cells;
      std::stringstream ss(line);
      for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
      if (keep.empty())
        for (std::size_t i = 0; i < cells.size(); ++i)
          if (cells[i].rfind("gan_plain", 0) != 0) keep.push_back(i);
      BOOST_TEST_REQUIRE(keep.size() + 2 == cells.size());
      for (std::size_t k = 0; k < keep.size(); ++k) text += (k ? "," : "") + cells[keep[k]];
      text += "\n";
    }
    BOOST_TEST_REQUIRE(text.find("gan_plain") == std::string::npos);
    std::ofstream(tmp("parts/losses.csv"), std::ios::binary) << text;
  }
  {
    Run<Dim> r(tiny(preset, Dim));  // a fresh process: new model, new source
    train::SamplerSource src(s.a, s.b, s.so);
    train::Trainer t(r.t, src, opts("parts", total).resume(true));
    const auto res = t.fit();
    BOOST_TEST((res.outcome == train::Outcome::Done));
    BOOST_TEST(res.start_iteration == stop_at);
    BOOST_TEST(res.iteration == total);
  }
  const auto whole = csv_rows_without_time(tmp("whole/losses.csv")), parts = csv_rows_without_time(tmp("parts/losses.csv"));
  BOOST_TEST(whole.size() == static_cast<std::size_t>(total + 1));
  BOOST_TEST(whole == parts, boost::test_tools::per_element());
  check_same_checkpoint(tmp("whole/checkpoint.safetensors"), tmp("parts/checkpoint.safetensors"));
}

}  // namespace

BOOST_AUTO_TEST_CASE(resume_cyclegan_2d_bit_for_bit) { check_resume<2>("cyclegan", 7, 3, Stop::MaxIterations); }
BOOST_AUTO_TEST_CASE(resume_after_kill_drops_log_rows_past_the_checkpoint) {
  check_resume<2>("nmi-cyclegan", 7, 4, Stop::Killed);
}
BOOST_AUTO_TEST_CASE(resume_after_stop_request_nmi_dicyc_2d) { check_resume<2>("nmi-dicyc", 6, 3, Stop::Request); }
BOOST_AUTO_TEST_CASE(resume_cyclegan_3d_bit_for_bit) { check_resume<3>("cyclegan", 4, 2, Stop::MaxIterations); }
BOOST_AUTO_TEST_CASE(resume_with_the_undeformed_gan_term_bit_for_bit) {
  check_resume<2>("nmi-dicyc", 6, 2, Stop::MaxIterations, 0.5);
}
BOOST_AUTO_TEST_CASE(resume_rewrites_a_log_from_before_the_undeformed_gan_columns) {
  check_resume<2>("nmi-cyclegan", 6, 4, Stop::MaxIterations, 0, true);
}

BOOST_AUTO_TEST_CASE(non_finite_loss_keeps_last_good_checkpoint) {
  dt::TmpDir tmp("train_nan");
  Setup s;
  Run<2> r(tiny("nmi-cyclegan"));
  train::SamplerSource src(s.a, s.b, s.so);
  train::Trainer t(r.t, src, train::TrainerOptions().out(tmp("run")).max_iterations(8).checkpoint_every(2));
  std::vector<char> saved_at_4;
  t.hooks().saved = [&](std::int64_t it) {
    if (it == 4) saved_at_4 = file_bytes(tmp("run/checkpoint.safetensors"));
  };
  t.hooks().before_step = [](data::Batch& b, std::int64_t next) {
    if (next == 5) b.a[3] = std::nanf("");
  };
  const auto res = t.fit();
  BOOST_TEST((res.outcome == train::Outcome::NonFinite));
  BOOST_TEST(res.message.find("non-finite") != std::string::npos, res.message);
  BOOST_TEST(!saved_at_4.empty());
  BOOST_TEST((file_bytes(tmp("run/checkpoint.safetensors")) == saved_at_4));
  BOOST_TEST(train::RunInfo::read(tmp("run/checkpoint.safetensors")).iteration == 4);
  // the log ends with the last good iteration
  const auto rows = csv_rows_without_time(tmp("run/losses.csv"));
  BOOST_TEST(rows.size() == 5u);
  BOOST_TEST(rows.back().rfind("4,", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(csv_header_is_the_field_table) {
  // The documented column list of losses.csv (README), written out independently of the table.
  const std::string documented =
      "iteration,epoch,lr,g_total,gan_ab,gan_ba,cyc_a,cyc_b,dicyc_a,dicyc_b,id_a,id_b,align_a,align_b,gan_plain_ab,"
      "gan_plain_ba,d_a,d_b,constant_samples,seconds\n";
  BOOST_TEST(train::loss_log_header() == documented);
  static_assert(model::kLossFieldCount * sizeof(double) == sizeof(model::StepLosses));
  model::StepLosses L;
  L.cyc_b = 0.25;
  L.lr = 2e-4;
  const std::string row = train::loss_log_row(12, 1, L, 0, 1.5);
  BOOST_TEST(row == "12,1,0.0002,0,0,0,0,0.25,0,0,0,0,0,0,0,0,0,0,0,1.500\n");

  dt::TmpDir tmp("train_csv");
  Setup s;
  Run<2> r(tiny("cyclegan"));
  train::SamplerSource src(s.a, s.b, s.so);
  train::Trainer t(r.t, src, train::TrainerOptions().out(tmp("run")).max_iterations(2));
  (void)t.fit();
  std::ifstream in(tmp("run/losses.csv"));
  std::string first;
  std::getline(in, first);
  BOOST_TEST(first + "\n" == documented);
}

BOOST_AUTO_TEST_CASE(memory_check_refuses_below_the_estimate) {
  dt::TmpDir tmp("train_mem");
  Setup s;
  Run<2> r(tiny("cyclegan"));
  train::MemoryNeed need;
  BOOST_TEST_REQUIRE(r.t.memory_need(2, s.so.crop, 1, &need));
  BOOST_TEST(need.per_rank > 0);
  BOOST_TEST(need.save > 0);
  train::DataInfo d;
  d.crop = s.so.crop;
  const double rss = train::resident_bytes();
  const double total = need.per_rank + need.save;
  {
    train::SamplerSource src(s.a, s.b, s.so);
    train::Trainer t(r.t, src,
                     train::TrainerOptions().out(tmp("low")).max_iterations(1).data_info(d).max_memory(rss + 0.5 * total));
    BOOST_CHECK_THROW(t.fit(), train::MemoryError);
    BOOST_TEST(!fs::exists(tmp("low/checkpoint.safetensors")));
    BOOST_TEST(r.m->iteration() == 0);
  }
  {
    train::SamplerSource src(s.a, s.b, s.so);
    train::Trainer t(r.t, src,
                     train::TrainerOptions().out(tmp("high")).max_iterations(1).data_info(d).max_memory(rss + 4 * total + (64 << 20)));
    BOOST_TEST((t.fit().outcome == train::Outcome::Done));
  }
}

BOOST_AUTO_TEST_CASE(run_info_round_trip_and_restore) {
  dt::TmpDir tmp("train_info");
  Setup s;
  Run<2> r(tiny("cyclegan"));
  train::DataInfo d;
  d.dim = 2;
  d.crop = {16, 16, 1};
  d.prep.spacing = {1.8, 1.8, 1.8};
  d.prep.p_lo = 1;
  d.prep.p_hi = 99;
  d.map_a.a = -3.5;
  d.map_b.b = 3000;
  train::RunSettings rs;
  rs.seed = 42;
  rs.max_iters = 2;
  rs.checkpoint_every = 1;
  rs.sample_every = 0;
  s.so.augment.flip = 0;
  s.so.batch = 2;
  train::SamplerSource src(s.a, s.b, s.so);
  train::Trainer t(r.t, src, train::TrainerOptions().out(tmp("run")).run_settings(rs).data_info(d).user("note", "x y"));
  (void)t.fit();
  const auto info = train::RunInfo::read(tmp("run/checkpoint.safetensors"));
  BOOST_TEST(info.iteration == 2);
  BOOST_TEST(info.scalar == "F32");
  BOOST_TEST(info.model_config == r.m->options().to_json().dump());
  BOOST_TEST(info.data.prep.spacing[1] == 1.8);
  BOOST_TEST(info.data.prep.p_hi == 99.0);
  BOOST_TEST(info.data.map_a.a == -3.5);
  BOOST_TEST(info.data.map_b.b == 3000.0);
  BOOST_TEST_REQUIRE(info.has_run_settings);
  BOOST_TEST(info.run.seed == 42u);
  BOOST_TEST(info.run.batch == 2);           // from the sampler the run drew with
  BOOST_TEST(info.run.augment.flip == 0.0);  // likewise
  BOOST_TEST(info.user.at("note") == "x y");
  BOOST_TEST(info.user.size() == 1u);

  train::RunSettings now;  // a resume: seed given (and different), everything else taken
  now.seed = 5;
  const auto notes = now.restore(info.run.to_json(), {"seed"});
  BOOST_TEST(now.seed == 5u);
  BOOST_TEST(now.batch == 2);
  BOOST_TEST(now.max_iters == 2);
  BOOST_TEST_REQUIRE(notes.size() == 1u);
  BOOST_TEST(notes[0].find("seed differs from the checkpoint's setting (42)") != std::string::npos, notes[0]);
}

// The tools' device wrapper hands a model's state over as the bytes of the checkpoint file
// (checkpoint_image; the GPU models across the nvcc boundary) and writes them on the g++ side
// (write_checkpoint_image); a resume hands the once-opened file over whole (SafeTensorsFile::image,
// load_checkpoint_image). All of it must be the save_checkpoint/load_checkpoint file, byte for byte.
BOOST_AUTO_TEST_CASE(checkpoint_image_is_the_file) {
  dt::TmpDir tmp("train_image");
  Setup s;
  Run<2> r(tiny("nmi-dicyc"));
  train::SamplerSource src(s.a, s.b, s.so);
  train::RunSettings rs;
  rs.max_iters = 3;
  rs.checkpoint_every = 3;
  rs.sample_every = 0;
  train::Trainer t(r.t, src, train::TrainerOptions().out(tmp("run")).run_settings(rs));
  (void)t.fit();
  const std::map<std::string, std::string> user{{"note", "image"}};
  const std::string path = tmp("saved.safetensors");
  train::save_checkpoint(*r.m, path, user);
  const auto file = dt::read_bytes(path);
  const auto image = train::checkpoint_image(*r.m, user);
  BOOST_TEST_REQUIRE(image.size() == file.size());
  BOOST_TEST((image == file));
  const auto opened = io::SafeTensorsFile::open(path);
  BOOST_TEST((opened.image() == file));
  BOOST_TEST((io::SafeTensorsFile::read(path).image() == file));
  dist::SingleProcess one;
  train::write_checkpoint_image(one, tmp("written.safetensors"), [&] { return image; });
  BOOST_TEST((dt::read_bytes(tmp("written.safetensors")) == file));
  // A fresh model (untrained; the same options, so the configuration metadata agrees) restored
  // from the image saves the same file.
  Run<2> other(tiny("nmi-dicyc"));
  train::load_checkpoint_image(*other.m, opened.image(), path);
  train::save_checkpoint(*other.m, tmp("other.safetensors"), user);
  BOOST_TEST((dt::read_bytes(tmp("other.safetensors")) == file));
  // A damaged image is refused with the tensor named, and the model is left as it was.
  Run<2> fresh(tiny("nmi-dicyc"));
  train::save_checkpoint(*fresh.m, tmp("fresh_before.safetensors"), user);
  auto bad = image;
  bad[bad.size() - 5] ^= 0x5a;
  BOOST_CHECK_EXCEPTION(train::load_checkpoint_image(*fresh.m, bad, "damaged"), SerializationError,
                        [](const SerializationError& e) {
                          return std::string(e.what()).find("fails its checksum") != std::string::npos;
                        });
  train::save_checkpoint(*fresh.m, tmp("fresh_after.safetensors"), user);
  BOOST_TEST((dt::read_bytes(tmp("fresh_before.safetensors")) == dt::read_bytes(tmp("fresh_after.safetensors"))));
  // An empty image (what ranks other than 0 get) is never written as a checkpoint.
  BOOST_CHECK_THROW(train::write_checkpoint_image(one, tmp("empty.safetensors"), [] { return std::vector<unsigned char>{}; }),
                    IoError);
  BOOST_TEST(!fs::exists(tmp("empty.safetensors")));
}

BOOST_AUTO_TEST_CASE(sources) {
  Setup s;
  train::SamplerSource src(s.a, s.b, s.so);
  src.start(5, 9, 0, 1);
  data::SamplerOptions o = s.so;
  o.seed = train::stream_seed(9, 0);
  o.first_batch = 5;
  data::Sampler ref(s.a, s.b, o);
  for (int i = 0; i < 3; ++i) {
    const auto x = src.next(), y = ref.next();
    BOOST_TEST(x.a == y.a);
    BOOST_TEST(x.b == y.b);
  }
  BOOST_TEST(train::stream_seed(9, 1) != train::stream_seed(9, 0));

  std::vector<data::Batch> list(5);
  for (int i = 0; i < 5; ++i) list[static_cast<std::size_t>(i)].a = {static_cast<float>(i)};
  train::ListSource ls(list);
  ls.start(2, 0, 1, 2);  // rank 1 of 2 from batch 2: items 5, 7, 9 -> 0, 2, 4
  BOOST_TEST(ls.next().a[0] == 0.0f);
  BOOST_TEST(ls.next().a[0] == 2.0f);
  BOOST_TEST(ls.next().a[0] == 4.0f);
  BOOST_CHECK_THROW(train::ListSource({}), ConfigError);
}
