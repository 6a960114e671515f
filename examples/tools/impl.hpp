// The model-dependent halves of dicyc-train and dicyc-synth, templated on dimension and scalar;
// each (Dim, Scalar) pair is instantiated in its own translation unit (tools_<dim>_<scalar>.cpp)
// to keep compile times and memory per file bounded.
#pragma once

#include <atomic>
#include <chrono>
#include <random>
#include <csignal>
#include <cerrno>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <set>
#include <thread>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common.hpp"
#include "device_model.hpp"
#include "dicyc/model.hpp"
#include "dicyc/train.hpp"
#include "parallel.hpp"
#include "report.hpp"

namespace tools {

struct TrainConfig {
  std::string a, b, out;
  std::string model = "dicyc";
  int dim = 2;
  bool half = false;
  std::string precision = "float";  // float, half or bf16 (float tensors, bf16 convolutions)
  int threads = 2;
  std::array<Index, 3> crop{128, 128, 1};
  Index batch = 1;
  dicyc::data::PrepareOptions prep;
  std::array<double, 2> window_a{0, 0}, window_b{0, 0};  // --window-a/-b: fixed windows (lo >= hi: none)
  dicyc::data::AugmentOptions augment;
  double min_foreground = 0.1;  // of each crop (0: any crop)
  Index ngf = 64, ndf = 64, blocks = 9, control_points = 6;
  int n_layers = 3;
  Index pool_size = 50;
  std::int64_t iterations_per_epoch = 1000, epochs = 100, decay_epochs = 100;
  bool early_stop = false;
  double lr = 2e-4, lambda_cyc = 10, lambda_id = 0, lambda_dicyc = 10, align_weight = -1, lambda_gan_plain = 0;
  std::uint64_t seed = 1;
  std::int64_t max_iters = 0, checkpoint_every = 500, sample_every = 500, log_every = 10;
  bool resume = false;
  std::string em = "single";
  bool tanh = true;               // false: unbounded generator output (for z-scored data)
  std::int64_t debug_nan_at = 0;  // testing hook: a NaN in domain A's batch at this iteration
  std::string device = "cpu";     // cpu or gpu
  int gpu = 0;                    // CUDA device index
  double max_memory = 0;          // bytes; 0: what the machine leaves; < 0: no check
  double mpi_timeout = 900;       // seconds a collective may wait under mpirun (0: no limit)
  std::set<std::string> given;    // the flags given on the command line (a resume keeps the others)
  std::shared_ptr<const dicyc::train::RunInfo> resumed;  // --resume: the checkpoint's run metadata
};

struct SynthConfig {
  std::string checkpoint, in, out;
  std::string direction = "ab";
  int threads = 2;
  Index batch = 4;
  std::array<Index, 3> tile{0, 0, 0};  // 0: the training crop
  int volume = -1;
  bool same_grid = true;  // write on the source grid (else the resampled canonical grid)
  std::string device = "cpu";
  int gpu = 0;
  double max_memory = 0;  // as TrainConfig's
  double mpi_timeout = 900;
};

/// dicyc-bench: timed training iterations and translations of one model on random images.
struct BenchConfig {
  std::string model = "cyclegan";
  Index size = 128, ngf = 64, blocks = 6, ndf = 64;
  int n_layers = 3;
  int iters = 10, warmup = 3, threads = 2;
  std::string device = "cpu";
  int gpu = 0;
};

/// The model on the device asked for: the CPU thread pool, or a GPU through libdicyc_tools_gpu.
template <int Dim, class S>
std::unique_ptr<HostModel<Dim, S>> make_host_model(const std::string& device, int threads, int gpu,
                                                   const dicyc::model::ModelOptions& mo) {
  if (device == "cpu") return std::make_unique<DeviceModel<Dim, S, Eigen::ThreadPoolDevice>>(mo, threads);
#ifdef DICYC_TOOLS_CUDA
  const std::string j = mo.to_json().dump();
  if constexpr (Dim == 2 && std::is_same_v<S, float>) return make_gpu_model_2d_float(j, gpu);
  else if constexpr (Dim == 3 && std::is_same_v<S, float>) return make_gpu_model_3d_float(j, gpu);
  else if constexpr (Dim == 2) return make_gpu_model_2d_half(j, gpu);
  else return make_gpu_model_3d_half(j, gpu);
#else
  (void)gpu;
  TOOL_REQUIRE(false, "--device gpu: these tools were built without CUDA (configure with -DDICYC_CUDA=ON, "
                      "which needs nvcc; scripts/test.sh does so when it finds one)");
  return nullptr;
#endif
}

// Set by SIGINT/SIGTERM; the training loop saves and exits at the next iteration boundary.
inline std::atomic<bool>& stop_flag() {
  static std::atomic<bool> f{false};
  return f;
}

/// Ctrl-C / SIGTERM handling without asynchronous signal handlers: SIGINT and SIGTERM are blocked
/// in this thread (and so in every thread started afterwards: the Eigen pool, the loader, the
/// GEMM library's OpenMP workers) and taken by one thread in sigwait(). The first one sets
/// stop_flag(), and training saves at the next iteration boundary; a second one exits at once
/// (every file is written atomically, so nothing is left half-written). Call before any thread
/// starts. NOTE: with an ordinary handler, a SIGINT that landed while oneDNN's sgemm ran corrupted
/// the heap about one time in twenty here ("corrupted size vs. prev_size" in a free inside
/// libdnnl); with the signals blocked in the compute threads, 60 random interrupts ran clean.
inline void install_stop_signals() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  // A non-interactive shell starts background jobs with SIGINT ignored, and an ignored signal is
  // discarded, never pending; a (never-run) handler makes it pend for sigwait() instead.
  struct sigaction sa {};
  sa.sa_handler = [](int) {};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    for (int n = 0;; ++n) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (n == 0) {
        stop_flag().store(true);
        const char msg[] = "\ninterrupted: saving a checkpoint at the end of this iteration (again to quit now)\n";
        (void)!::write(2, msg, sizeof msg - 1);
      } else {
        std::_Exit(kInterrupted);
      }
    }
  }).detach();
}

template <int Dim, class S>
struct Runner {
  using Model = HostModel<Dim, S>;
  static constexpr int Rank = Dim + 2;

  static typename Model::Shape hs(const dicyc::Shape<Rank>& s) {
    typename Model::Shape r;
    for (int i = 0; i < Rank; ++i) r[i] = static_cast<long>(s[i]);
    return r;
  }

  static dicyc::model::ModelOptions options_of(const TrainConfig& c) {
    using namespace dicyc;
    auto o = model::ModelOptions::preset(c.model);
    o.generator(nn::GeneratorOptions().ngf(c.ngf).n_blocks(static_cast<int>(c.blocks)).tanh(c.tanh))
        .ndf(c.ndf)
        .n_layers(c.n_layers)
        .pool_size(c.pool_size)
        .lambda_cyc(c.lambda_cyc)
        .lambda_id(c.lambda_id)
        .lambda_dicyc(c.lambda_dicyc)
        .lambda_gan_plain(c.lambda_gan_plain)
        .control_points(c.control_points)
        .seed(c.seed)
        .em(c.em == "sequential" ? model::EmMode::Sequential : model::EmMode::Single)
        .schedule(optim::ScheduleOptions()
                      .lr(c.lr)
                      .constant_epochs(c.epochs)
                      .decay_epochs(c.decay_epochs)
                      .iterations_per_epoch(c.iterations_per_epoch)
                      .early_stop(c.early_stop));
    if (c.align_weight >= 0) o.alignment(model::AlignmentOptions(o.alignment()).weight(c.align_weight));
    return o;
  }

  /// --resume with model flags: the loss weights, the learning rate and the schedule's epochs
  /// given on the command line replace the checkpoint's from here on (one note each: the run is
  /// then not an uninterrupted one); a flag that would change the networks (--model, --ngf, ...)
  /// and differs from the checkpoint is refused, since the stored weights fit only its networks.
  static std::vector<std::string> resume_model_flags(const TrainConfig& c, dicyc::model::ModelOptions& mo) {
    using namespace dicyc;
    const model::ModelOptions want = options_of(c);
    auto has = [&](const char* f) { return c.given.count(f) > 0; };
    auto keep = [&](const char* flag, const std::string& theirs, const std::string& ours) {
      TOOL_REQUIRE(!has(flag) || theirs == ours, "--resume: the checkpoint's networks have " << flag << " " << theirs << ", and --"
                                                     << flag << " says " << ours << ": a resumed run keeps its networks "
                                                     << "(drop --" << flag << ", or start a new run in another --out folder)");
    };
    const auto& g = mo.generator();
    const auto& wg = want.generator();
    keep("model", mo.model_name(), want.model_name());
    keep("ngf", std::to_string(g.ngf()), std::to_string(wg.ngf()));
    keep("blocks", std::to_string(g.n_blocks()), std::to_string(wg.n_blocks()));
    keep("ndf", std::to_string(mo.ndf()), std::to_string(want.ndf()));
    keep("d-layers", std::to_string(mo.n_layers()), std::to_string(want.n_layers()));
    keep("pool-size", std::to_string(mo.pool_size()), std::to_string(want.pool_size()));
    keep("control-points", std::to_string(mo.control_points()), std::to_string(want.control_points()));
    keep("em", mo.em() == model::EmMode::Single ? "single" : "sequential", c.em);
    keep("no-tanh", g.tanh() ? "tanh" : "no tanh", wg.tanh() ? "tanh" : "no tanh");
    keep("iters-per-epoch", std::to_string(mo.schedule().iterations_per_epoch()), std::to_string(c.iterations_per_epoch));

    std::vector<std::string> notes;
    auto change = [&](const char* flag, double theirs, double ours) {
      if (!has(flag) || theirs == ours) return false;
      std::ostringstream n;
      n << "--" << flag << " " << ours << " replaces the checkpoint's " << theirs
        << " from this iteration on (the run is no longer an uninterrupted one)";
      notes.push_back(n.str());
      return true;
    };
    if (change("lambda-cyc", mo.lambda_cyc(), c.lambda_cyc)) mo.lambda_cyc(c.lambda_cyc);
    if (change("lambda-id", mo.lambda_id(), c.lambda_id)) mo.lambda_id(c.lambda_id);
    if (change("lambda-dicyc", mo.lambda_dicyc(), c.lambda_dicyc)) {
      TOOL_REQUIRE(mo.deformation(), "--lambda-dicyc: the checkpoint holds a " << mo.model_name()
                                                                               << ", which has no deformation-invariant cycle loss");
      mo.lambda_dicyc(c.lambda_dicyc);
    }
    if (has("align-weight")) {
      TOOL_REQUIRE(c.align_weight >= 0, "--align-weight must be >= 0, got " << c.align_weight);
      TOOL_REQUIRE(mo.alignment().kind() != model::AlignKind::None,
                   "--align-weight: the checkpoint holds a " << mo.model_name() << ", which has no alignment loss");
      if (change("align-weight", mo.alignment().weight(), c.align_weight))
        mo.alignment(model::AlignmentOptions(mo.alignment()).weight(c.align_weight));
    }
    if (change("lambda-gan-plain", mo.lambda_gan_plain(), c.lambda_gan_plain)) {
      TOOL_REQUIRE(mo.deformation() || c.lambda_gan_plain == 0,
                   "--lambda-gan-plain: the checkpoint holds a " << mo.model_name()
                       << ", whose only output its discriminators already see (the term is for DiCyc models)");
      mo.lambda_gan_plain(c.lambda_gan_plain);
    }
    auto sched = mo.schedule();
    if (change("lr", sched.lr(), c.lr)) sched.lr(c.lr);
    if (change("epochs", static_cast<double>(sched.constant_epochs()), static_cast<double>(c.epochs))) sched.constant_epochs(c.epochs);
    if (change("decay-epochs", static_cast<double>(sched.decay_epochs()), static_cast<double>(c.decay_epochs)))
      sched.decay_epochs(c.decay_epochs);
    if (has("early-stop") && !sched.early_stop()) {
      notes.push_back("--early-stop turns early stopping on from this iteration on");
      sched.early_stop(true);
    }
    mo.schedule(sched);
    return notes;
  }

  /// --resume keeps the checkpoint's data preparation (its intensity maps were computed with it):
  /// a data flag that differs from it is refused, one that repeats it is accepted.
  static void check_resume_data_flags(const TrainConfig& c, const dicyc::train::DataInfo& d) {
    auto has = [&](const char* f) { return c.given.count(f) > 0; };
    auto keep = [&](const char* flag, bool same) {
      TOOL_REQUIRE(!has(flag) || same, "--resume: --" << flag << " differs from the checkpoint's data preparation, "
                                                         "which a resumed run keeps (its intensity maps were computed "
                                                         "with it): drop --" << flag << ", or start a new run in another --out folder");
    };
    keep("spacing", c.prep.spacing == d.prep.spacing);
    keep("zscore", c.prep.zscore == d.prep.zscore);
    keep("percentiles", c.prep.p_lo == d.prep.p_lo && c.prep.p_hi == d.prep.p_hi);
    keep("no-reorient", c.prep.canonical == d.prep.canonical);
    keep("volume", c.prep.volume == d.prep.volume);
    keep("window-a", c.window_a == d.window_a);
    keep("window-b", c.window_b == d.window_b);
    keep("crop", c.crop[0] == d.crop[0] && c.crop[1] == d.crop[1]);
    keep("crop-z", Dim == 2 || c.crop[2] == d.crop[2]);
  }

  static dicyc::Shape<Rank> shape_of(const std::array<Index, 3>& crop, Index n) {
    dicyc::Shape<Rank> s;
    s[0] = 1;
    for (int d = 0; d < Dim; ++d) s[d + 1] = crop[d];
    s[Rank - 1] = n;
    return s;
  }

  static std::vector<S> to_s(const std::vector<float>& v) {
    if constexpr (std::is_same_v<S, float>) return v;
    std::vector<S> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r[i] = S(v[i]);
    return r;
  }
  static std::vector<float> to_f(const std::vector<S>& v) {
    if constexpr (std::is_same_v<S, float>) return v;
    std::vector<float> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r[i] = static_cast<float>(v[i]);
    return r;
  }

  // --------------------------------------------------------------------------------- bench
  /// Times `b.iters` training iterations (after `b.warmup`) and as many translations (batch 1,
  /// one channel, a square or cube of b.size) on random images in [-1, 1]; prints one JSON line.
  /// A GPU step returns its losses to the host, so each time includes the step's completion.
  static int bench(const BenchConfig& b) {
    TrainConfig c;
    c.model = b.model;
    c.ngf = b.ngf;
    c.blocks = b.blocks;
    c.ndf = b.ndf;
    c.n_layers = b.n_layers;
    const auto mo = options_of(c);
    auto m = make_host_model<Dim, S>(b.device, b.threads, b.gpu, mo);
    std::array<Index, 3> crop{b.size, b.size, Dim == 3 ? b.size : 1};
    const auto shape = hs(shape_of(crop, 1));
    std::size_t n = 1;
    for (long e : shape) n *= static_cast<std::size_t>(e);
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1, 1);
    std::vector<float> xf(n), yf(n);
    for (auto& v : xf) v = u(rng);
    for (auto& v : yf) v = u(rng);
    const std::vector<S> x = to_s(xf), y = to_s(yf);
    std::vector<S> out(n);
    auto time_of = [](auto&& f) {
      const auto t0 = std::chrono::steady_clock::now();
      f();
      return 1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    std::vector<double> train_ms, infer_ms;
    double loss_first = 0, loss_last = 0;
    for (int i = 0; i < b.warmup + b.iters; ++i) {
      std::string err;
      dicyc::model::StepLosses L;
      const double ms = time_of([&] { L = m->train_step(x.data(), y.data(), shape, &err); });
      TOOL_REQUIRE(err.empty(), "dicyc-bench: " << err);
      if (i == 0) loss_first = L.g_total;
      loss_last = L.g_total;
      if (i >= b.warmup) train_ms.push_back(ms);
    }
    for (int i = 0; i < b.warmup + b.iters; ++i) {
      const double ms = time_of([&] { m->translate(true, x.data(), out.data(), shape); });
      if (i >= b.warmup) infer_ms.push_back(ms);
    }
    auto stats = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      const std::size_t k = v.size();
      const double med = k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
      char buf[160];
      std::snprintf(buf, sizeof buf, "{\"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, \"runs\": %zu}", med,
                    v.front(), v.back(), k);
      return std::string(buf);
    };
    std::printf("{\"model\": \"%s\", \"dim\": %d, \"precision\": \"%s\", \"device\": \"%s\", \"size\": %lld, "
                "\"ngf\": %lld, \"blocks\": %lld, \"ndf\": %lld, \"threads\": %d, \"train_step\": %s, "
                "\"translate\": %s, \"g_total_first\": %.6g, \"g_total_last\": %.6g}\n",
                mo.model_name().c_str(), Dim, std::is_same_v<S, float> ? "float" : "half", m->device_name().c_str(),
                static_cast<long long>(b.size), static_cast<long long>(b.ngf), static_cast<long long>(b.blocks),
                static_cast<long long>(b.ndf), b.threads, stats(train_ms).c_str(), stats(infer_ms).c_str(), loss_first,
                loss_last);
    return kOk;
  }

  // --------------------------------------------------------------------------------- memory
  using Probe = std::function<std::size_t(bool, const typename Model::Shape&)>;  // HostModel::probe_memory
  static double estimate_bytes(const Probe& probe_memory, bool train, const std::array<Index, 3>& full, Index n,
                               int d_layers) {
    const dicyc::train::ProbeFn probe = [&](bool t, const std::array<Index, 3>& ext, Index nb) {
      return static_cast<double>(probe_memory(t, hs(shape_of(ext, nb))));
    };
    return dicyc::train::estimate_bytes(probe, Dim, train, full, n, d_layers);
  }

  /// The tools' device wrapper as the Trainer's model: batches converted to the scalar, a
  /// non-finite loss turned back into NumericError.
  class Trainable final : public dicyc::train::Trainable {
   public:
    Trainable(Model& m, const dicyc::model::ModelOptions& mo, dicyc::dist::Communicator& comm)
        : m_(m), mo_(mo), comm_(comm) {}
    dicyc::model::StepLosses train_step(const dicyc::data::Batch& b) override {
      const std::vector<S> xs = to_s(b.a), ys = to_s(b.b);
      std::string numeric_error;
      const auto L = m_.train_step(xs.data(), ys.data(), hs(shape_of(b.crop, b.batch)), &numeric_error);
      if (!numeric_error.empty()) throw dicyc::NumericError(numeric_error);
      return L;
    }
    std::int64_t iteration() const override { return m_.iteration(); }
    std::int64_t epoch() const override { return m_.epoch(); }
    bool done() const override { return m_.done(); }
    std::int64_t total_iterations() const override {
      const auto& s = mo_.schedule();
      return s.iterations_per_epoch() * (s.constant_epochs() + s.decay_epochs());
    }
    /// The model hands its state over as host buffers (HostModel::state; the GPU models across the
    /// nvcc boundary alike) and the file is written here, by the train layer's checkpoint component.
    void save(const std::string& path, const std::map<std::string, std::string>& user) override {
      dicyc::train::write_checkpoint_image(comm_, path, [&] { return m_.state(user); });
    }
    void load(const std::string& path) override { load_file(dicyc::io::SafeTensorsFile::open(path)); }
    /// The file opened once (RunInfo::read on a resume) is read here and handed over whole.
    void load_file(const dicyc::io::SafeTensorsFile& f) override { m_.restore(f.image(), f.label()); }
    bool ranks_consistent() override { return m_.ranks_consistent(); }
    std::int64_t degenerate_samples() const override { return m_.degenerate_samples(); }
    std::string name() const override { return mo_.model_name(); }
    /// The training step's peak (probed), the loader's queue (two batches ahead, one in use, each
    /// A and B), full image pools, and a checkpoint save's host copy.
    bool memory_need(int, const std::array<Index, 3>& crop, Index batch, dicyc::train::MemoryNeed* need) override {
      const double per = static_cast<double>(crop[0] * crop[1] * (Dim == 3 ? crop[2] : 1));
      // The model already holds its weights (in the resident memory the check measures).
      const Probe probe = [&](bool t, const typename Model::Shape& s) { return m_.probe_memory(t, s); };
      const double step = estimate_bytes(probe, true, crop, batch, mo_.n_layers()) - static_cast<double>(m_.footprint_bytes());
      const double loader = 4 * 2 * per * static_cast<double>(batch) * (sizeof(float) + sizeof(S));
      // The probe step's pools held one image each; the run's fill up.
      const double pools = 2.0 * static_cast<double>(std::max<Index>(0, mo_.pool_size() - 1)) * per * sizeof(S);
      need->per_rank = step + loader + pools;
      need->save = static_cast<double>(m_.checkpoint_bytes(hs(shape_of(crop, batch))));
      return true;
    }

   private:
    Model& m_;
    dicyc::model::ModelOptions mo_;
    dicyc::dist::Communicator& comm_;
  };

  // --------------------------------------------------------------------------------- training
  static int train(const TrainConfig& cfg_in) {
    install_stop_signals();  // before the thread pool, the loader, oneDNN's and MPI's threads start
    Parallel par("dicyc-train", cfg_in.mpi_timeout);
    return par.run([&] { return train_ranks(cfg_in, par); });
  }

  /// One rank's training (the only one without MPI), through dicyc::train::Trainer. Every rank
  /// trains on its own batches; rank 0 alone writes the log, the samples, the report and the
  /// checkpoint (which holds every rank's pools), and prints.
  static int train_ranks(const TrainConfig& cfg_in, Parallel& par) {
    using namespace dicyc;
    namespace fs = std::filesystem;
    TrainConfig cfg = cfg_in;
    const bool root = par.root();
    const int K = par.size();
    if (!root) {  // the other ranks keep quiet on stdout; their errors still reach stderr
      std::fflush(stdout);
      if (!std::freopen("/dev/null", "w", stdout)) std::fclose(stdout);
    }
    if (K > 1 && cfg.device == "gpu") cfg.gpu += par.local_rank();  // one GPU per rank of a node
    const std::string ckpt = cfg.out + "/checkpoint.safetensors";
    if (root) {
      fs::create_directories(cfg.out + "/samples");
      io::remove_stale_temporaries(cfg.out + "/samples");
    }

    model::ModelOptions mo = options_of(cfg);
    DataMeta meta;
    meta.dim = Dim;
    meta.crop = cfg.crop;
    meta.prep = cfg.prep;
    meta.window_a = cfg.window_a;
    meta.window_b = cfg.window_b;
    train::RunSettings rs;
    rs.seed = cfg.seed;
    rs.batch = cfg.batch;
    rs.min_foreground = cfg.min_foreground;
    rs.augment = cfg.augment;
    rs.max_iters = cfg.max_iters;
    rs.checkpoint_every = cfg.checkpoint_every;
    rs.sample_every = cfg.sample_every;
    rs.precision = cfg.precision;
    if (cfg.resume) {  // one read of the checkpoint's metadata: model, data and run settings
      TOOL_REQUIRE(cfg.resumed, "--resume: no checkpoint at '" << ckpt << "'"
                                    << (K > 1 ? " (with several ranks, --out must be on a filesystem that every rank sees)"
                                              : ""));
      const train::RunInfo& info = *cfg.resumed;
      mo = model::ModelOptions::from_json(nlohmann::json::parse(info.model_config));
      TOOL_REQUIRE(info.has_data_info, "--resume: '" << ckpt << "' has no data preparation entries: was it written by dicyc-train?");
      for (const auto& n : resume_model_flags(cfg, mo)) std::printf("note: %s\n", n.c_str());
      check_resume_data_flags(cfg, info.data);
      meta = info.data;
      TOOL_REQUIRE(meta.dim == Dim, "--resume: the checkpoint holds a " << meta.dim << "-D model, but --dim is " << Dim);
      if (info.has_run_settings) {
        std::set<std::string> given;  // flag names -> run-setting keys
        for (const auto& f : cfg.given) {
          std::string k = f == "no-augment" ? "augment" : f;
          std::replace(k.begin(), k.end(), '-', '_');
          given.insert(k);
        }
        for (const auto& n : rs.restore(info.run.to_json(), given)) std::printf("note: %s\n", n.c_str());
        std::printf("resuming from %s (its model, data and run settings are used)\n", ckpt.c_str());
      } else {
        std::printf("resuming from %s (its model and data settings are used; it predates stored run settings, so "
                    "the seed, batch, augmentation and --max-iters are this command's)\n", ckpt.c_str());
      }
    }
    std::string precision = std::is_same_v<S, float> ? "float" : "half";
    if (rs.precision == "bf16") {
      TOOL_REQUIRE((std::is_same_v<S, float>), "--precision bf16: the checkpoint holds half weights; bf16 training keeps float ones");
      TOOL_REQUIRE(cfg.device == "cpu", "--precision bf16 runs on the CPU (oneDNN's bf16 convolutions); on a GPU, use "
                                        "--precision half");
      const std::string isa = ops::bf16_conv_support();
      TOOL_REQUIRE(isa != "none", "--precision bf16: this build or CPU has no bf16 convolutions (they need oneDNN and a CPU "
                                  "with AVX-512); use --precision float");
      conv_bf16_requested() = true;
      precision = "bf16 (float weights, Adam, norms and losses; convolutions in bf16 on oneDNN, " + isa +
                  (isa == "emulated" ? ": this CPU has no bf16 instructions, so slower than float" : "") + ")";
    } else {
      TOOL_REQUIRE(rs.precision == (std::is_same_v<S, float> ? "float" : "half"),
                   "--resume: the checkpoint's stored precision '" << rs.precision << "' does not fit its "
                                                                     << (std::is_same_v<S, float> ? "float" : "half")
                                                                     << " weights (a damaged checkpoint?)");
    }
    auto m = make_host_model<Dim, S>(cfg.device, cfg.threads, cfg.gpu, mo);
    std::printf("model %s, %d-D, %s, on %s\n%s\n", mo.model_name().c_str(), Dim, precision.c_str(),
                m->device_name().c_str(), mo.to_json().dump().c_str());
    if (K > 1) {
      if (cfg.device == "gpu") par.use_gpu(cfg.gpu);
      m->set_communicator(par.comm());
      std::printf("data parallel: %s; batch %lld per rank (%lld per step), gradients averaged over the ranks, image "
                  "pools per rank\n",
                  par.name().c_str(), static_cast<long long>(rs.batch), static_cast<long long>(rs.batch) * K);
    }

    // Data: both domains prepared up front, then sampled by the loader thread.
    std::printf("loading domain A from %s, domain B from %s\n", cfg.a.c_str(), cfg.b.c_str());
    std::fflush(stdout);
    // Every slice is a candidate: the crop centres are foreground voxels (so a slice's chance
    // follows its foreground) and each crop is checked; with --min-foreground 0, any crop.
    for (const char d : {'a', 'b'}) {
      const auto& w = d == 'a' ? meta.window_a : meta.window_b;
      if (w[1] > w[0]) std::printf("domain %c: fixed intensity window [%g, %g] -> [-1, 1]\n", d - 32, w[0], w[1]);
    }
    auto dom_a = std::make_shared<data::Domain>(data::Domain::load(data::list_volumes(cfg.a), meta.prep_for('a'), 0.0));
    auto dom_b = std::make_shared<data::Domain>(data::Domain::load(data::list_volumes(cfg.b), meta.prep_for('b'), 0.0));
    if (!cfg.resume) {
      meta.map_a = dom_a->reference_map();
      meta.map_b = dom_b->reference_map();
    }
    data::SamplerOptions so;
    so.dim = Dim;
    so.crop = meta.crop;
    so.batch = rs.batch;
    so.augment = rs.augment;
    so.min_foreground = rs.min_foreground;
    train::SamplerSource source(dom_a, dom_b, so, 2);
    Trainable trainable(*m, mo, par.comm());
    train::Trainer trainer(trainable, source,
                           train::TrainerOptions()
                               .out(cfg.out)
                               .run_settings(rs)
                               .log_every(cfg.log_every)
                               .resume(cfg.resume)
                               .resume_from(cfg.resume && cfg.resumed ? cfg.resumed->file : nullptr)
                               .max_memory(cfg.device == "cpu" ? cfg.max_memory : -1)
                               .local_ranks(par.local_size())
                               .data_info(meta),
                           par.comm());
    // Memory, before any is spent on the run (and before the crop checks: a crop too large for
    // memory is told so first).
    trainer.check_memory(Dim, meta.crop, rs.batch,
                         "training (" + std::string(mo.model_name()) + ", crop " + std::to_string(meta.crop[0]) +
                             (Dim == 3 ? "^3" : "^2") + ", batch " + std::to_string(rs.batch) + ")");
    for (const auto* d : {dom_a.get(), dom_b.get()})
      for (int k = 0; k < Dim; ++k) {
        Index largest = 0;
        for (const auto& v : d->volumes) largest = std::max<Index>(largest, v.volume.dim()[k]);
        TOOL_REQUIRE(meta.crop[k] <= 2 * largest,
                     "the crop (" << meta.crop[k] << " voxels along axis " << k << ") is more than twice the largest volume of domain "
                                  << (d == dom_a.get() ? "A" : "B") << " along that axis (" << largest
                                  << " voxels at the prepared spacing): most of every crop would be padding; use a --crop of at most "
                                  << std::max<Index>(8, largest / 4 * 4) << " or a finer --spacing");
      }
    for (const auto* d : {dom_a.get(), dom_b.get()})
      for (const auto& v : d->volumes) {
        const auto dm = v.volume.dim();
        for (int k = 0; k < Dim; ++k)
          if (meta.crop[k] > dm[k])
            std::printf("note: %s is %lld voxels along axis %d, smaller than the crop %lld; padded with background\n",
                        v.path.c_str(), static_cast<long long>(dm[k]), k, static_cast<long long>(meta.crop[k]));
      }
    std::printf("domain A: %zu volumes, domain B: %zu volumes\n", dom_a->volumes.size(), dom_b->volumes.size());

    const auto shape = shape_of(meta.crop, rs.batch);
    auto& h = trainer.hooks();
    h.stop_requested = [] { return stop_flag().load(); };
    if (cfg.debug_nan_at > 0)
      h.before_step = [&](data::Batch& b, std::int64_t next) {
        if (next == cfg.debug_nan_at) b.a[0] = std::nanf("");
      };
    h.log = [&](const model::StepLosses& L, const train::Progress& p) {
      std::printf("it %lld/%lld ep %lld  %.2f it/s  ETA %s | G %.4f gan %.3f/%.3f cyc %.4f/%.4f", static_cast<long long>(p.iteration),
                  static_cast<long long>(p.goal), static_cast<long long>(p.epoch), p.rate(),
                  format_duration(p.eta_seconds()).c_str(), L.g_total, L.gan_ab, L.gan_ba, L.cyc_a, L.cyc_b);
      if (mo.deformation()) std::printf(" dicyc %.4f/%.4f", L.dicyc_a, L.dicyc_b);
      if (mo.lambda_gan_plain() > 0) std::printf(" gan(plain) %.3f/%.3f", L.gan_plain_ab, L.gan_plain_ba);
      if (mo.alignment().kind() != model::AlignKind::None) std::printf(" align %.4f/%.4f", L.align_a, L.align_b);
      std::printf(" | D %.4f/%.4f lr %.3g", L.d_a, L.d_b, L.lr);
      if (p.degenerate > 0) std::printf(" | constant samples %lld", static_cast<long long>(p.degenerate));
      std::printf("\n");
      std::fflush(stdout);
    };
    h.sample = [&](const data::Batch& b, std::int64_t it) { write_sample(*m, b, shape, cfg.out, it); };
    h.saved = [&](std::int64_t) { write_report(cfg.out, mo.model_name(), mo.to_json().dump(2)); };

    const train::TrainResult r = trainer.fit();
    if (r.outcome == train::Outcome::NonFinite) {
      if (root) {
        std::fprintf(stderr, "\ndicyc-train: %s\ntraining stopped; the last good checkpoint (%s) is kept\n", r.message.c_str(),
                     fs::exists(ckpt) ? ckpt.c_str() : "none yet");
        write_report(cfg.out, mo.model_name(), mo.to_json().dump(2));
      }
      return kNonFinite;
    }
    const bool interrupted = r.outcome == train::Outcome::Interrupted;
    std::printf("%s at iteration %lld after %.1f s (%.3f s/iteration, the loader kept the step waiting %.2f s in all); "
                "checkpoint %s, report %s/report.html\n",
                interrupted ? "interrupted: saved" : "done", static_cast<long long>(r.iteration), r.seconds,
                r.steps ? r.seconds / static_cast<double>(r.steps) : 0.0, r.waited_seconds, ckpt.c_str(), cfg.out.c_str());
    if (K > 1 && r.steps > 0)
      std::printf("data parallel: %d ranks all-reduced %.2f MB per iteration on each rank (%.1f calls per iteration, "
                  "%.3f s per iteration in them, waiting for the slowest rank included)\n",
                  K, static_cast<double>(par.comm().reduced_bytes()) / 1e6 / static_cast<double>(r.steps),
                  static_cast<double>(par.comm().reduce_calls()) / static_cast<double>(r.steps),
                  par.comm().reduce_seconds() / static_cast<double>(r.steps));
    if (r.degenerate > 0)
      std::printf("note: %lld sample(s) of this run had a constant image in the alignment loss (counted as no shared "
                  "information, no gradient; losses.csv column constant_samples)\n",
                  static_cast<long long>(r.degenerate));
    return interrupted ? kInterrupted : kOk;
  }

  /// source | undeformed | deformed (DiCyc models only: in the pose of the other domain's sample) |
  /// cycle | checkerboard, for A -> B and B -> A.
  static void write_sample(Model& m, const dicyc::data::Batch& bt, const dicyc::Shape<Rank>& shape_n,
                           const std::string& out, std::int64_t it) {
    using namespace dicyc;
    const Index cx = bt.crop[0], cy = bt.crop[1], cz = Dim == 3 ? bt.crop[2] : 1, per = cx * cy * cz;
    Shape<Rank> s = shape_n;
    s[Rank - 1] = 1;
    auto run = [&](const std::vector<float>& in, bool ab) {
      const std::vector<S> xs = to_s(in);
      std::vector<S> ys(xs.size());
      m.translate(ab, xs.data(), ys.data(), hs(s));
      return to_f(ys);
    };
    auto mid = [&](const std::vector<float>& v) { return panel_of(v.data() + (cz / 2) * cx * cy, cx, cy); };
    std::vector<std::vector<Panel>> rows;
    for (bool ab : {true, false}) {
      const std::vector<float> src(ab ? bt.a.begin() : bt.b.begin(), (ab ? bt.a.begin() : bt.b.begin()) + per);
      const std::vector<float> other(ab ? bt.b.begin() : bt.a.begin(), (ab ? bt.b.begin() : bt.a.begin()) + per);
      const std::vector<float> fake = run(src, ab), cyc = run(fake, !ab);
      const std::vector<S> xs = to_s(src), os = to_s(other);
      std::vector<S> yh(xs.size());
      std::vector<Panel> row{mid(src), mid(fake)};
      if (m.deform(ab, xs.data(), os.data(), yh.data(), hs(s))) row.push_back(mid(to_f(yh)));  // DiCyc only
      row.push_back(mid(cyc));
      row.push_back(checkerboard(mid(src), mid(fake)));
      rows.push_back(std::move(row));
    }
    char name[64];
    std::snprintf(name, sizeof name, "/samples/iter_%07lld.png", static_cast<long long>(it));
    dicyc::io::GridOptions go;  // rows: A -> B, then B -> A
    go.labels = {"source", "output"};
    if (rows[0].size() == 5) go.labels.push_back("deformed output");
    go.labels.insert(go.labels.end(), {"cycle", "checkerboard"});
    write_grid(out + name, rows, go);
  }

  static std::string format_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    const long long t = std::llround(s);
    char b[32];
    if (t >= 3600) std::snprintf(b, sizeof b, "%lldh%02lldm", t / 3600, (t / 60) % 60);
    else std::snprintf(b, sizeof b, "%lldm%02llds", t / 60, t % 60);
    return b;
  }

  // --------------------------------------------------------------------------------- synthesis
  /// Refuses a volume whose synthesis will not fit: the source and its prepared copy, the output
  /// and its resampled copy (float), the 3-D blending sums (double), and the network's peak for
  /// one batch of slices or one tile, with the model's weights and buffers (probed in a fresh
  /// model, before the tool builds its own: the probe's model stands in for it, and the peak of
  /// the check itself is not one model more than the run's). Reads only the header.
  static void check_synth_memory(const SynthConfig& cfg, const Probe& probe, const dicyc::model::ModelOptions& mo,
                                 const std::string& path, const dicyc::data::PrepareOptions& prep,
                                 const std::array<Index, 3>& tile) {
    using namespace dicyc;
    const io::NiftiHeaderInfo info = io::nifti_header_info(path);
    double src = 1, out = 1;
    std::array<Index, 3> n{};
    for (int d = 0; d < 3; ++d) {
      const double dimd = static_cast<double>(std::max<std::int64_t>(1, info.dim[d]));
      const double px = std::abs(static_cast<double>(info.header.pixdim[d + 1]));
      const double sp = prep.spacing[d] > 0 && px > 0 ? px / prep.spacing[d] : 1.0;
      src *= dimd;
      n[d] = static_cast<Index>(std::ceil(dimd * sp));
      out *= static_cast<double>(n[d]);
    }
    // Reorientation may make any two axes the axial plane: take the two largest (the worst case).
    if (Dim == 2) std::sort(n.begin(), n.end(), std::greater<Index>());
    auto up4 = [](Index v) { return std::max<Index>(8, (v + 3) / 4 * 4); };
    double net;
    if (Dim == 2) {
      net = estimate_bytes(probe, false, {up4(n[0]), up4(n[1]), 1}, std::min<Index>(cfg.batch, n[2]), mo.n_layers());
    } else {
      std::array<Index, 3> t;
      for (int d = 0; d < 3; ++d) t[d] = std::min(tile[d], up4(n[d]));
      net = estimate_bytes(probe, false, t, 1, mo.n_layers());
    }
    const double vols = 4.0 * (2 * src + 3 * out) + (Dim == 3 ? 16.0 * out : 0.0);
    check_memory("synthesis of '" + path + "'", std::max(0.0, net) + vols, cfg.max_memory);
  }

  /// `config`: the checkpoint's ModelOptions JSON (the file itself is read again for the weights).
  static int synth(const SynthConfig& cfg, const std::string& config, const DataMeta& meta) {
    Parallel par("dicyc-synth", cfg.mpi_timeout);
    return par.run([&] { return synth_ranks(cfg, config, meta, par); });
  }

  /// One rank's share of the volumes: volume i goes to rank i mod K (each writes its own outputs).
  static int synth_ranks(const SynthConfig& cfg_in, const std::string& config, const DataMeta& meta, Parallel& par) {
    using namespace dicyc;
    namespace fs = std::filesystem;
    SynthConfig cfg = cfg_in;
    const int K = par.size(), rank = par.rank();
    if (K > 1 && cfg.device == "gpu") cfg.gpu += par.local_rank();
    const auto mo = model::ModelOptions::from_json(nlohmann::json::parse(config));
    const bool ab = cfg.direction == "ab";
    const data::IntensityMap target = ab ? meta.map_b : meta.map_a;
    std::array<Index, 3> tile = meta.crop;
    for (int d = 0; d < 3; ++d)
      if (cfg.tile[d] > 0) tile[d] = cfg.tile[d];
    fs::create_directories(cfg.out);
    data::PrepareOptions prep = meta.prep_for(ab ? 'a' : 'b');  // the source domain's preparation
    prep.volume = cfg.volume;
    const auto inputs = data::list_volumes(cfg.in);
    if (par.root())
      std::printf("%s: %zu volume(s), %s, %d-D, target units from the checkpoint's %s map (%s)\n", cfg.checkpoint.c_str(),
                  inputs.size(), ab ? "A -> B" : "B -> A", Dim, ab ? "B" : "A", target.to_string().c_str());
    if (par.root() && K > 1)
      std::printf("%s: volume i on rank i mod %d%s\n", par.name().c_str(), K,
                  static_cast<int>(inputs.size()) < K ? " (more ranks than volumes: some have nothing to do)" : "");
    std::fflush(stdout);
    // Memory first, every volume of this rank, before the model is built (see check_synth_memory).
    if (cfg.device == "cpu" && cfg.max_memory >= 0) {
      const Probe probe = [&](bool t, const typename Model::Shape& s) {
        return DeviceModel<Dim, S, Eigen::ThreadPoolDevice>::probe_fresh(mo, cfg.threads, t, s);
      };
      for (std::size_t vi = static_cast<std::size_t>(rank); vi < inputs.size(); vi += static_cast<std::size_t>(K))
        check_synth_memory(cfg, probe, mo, inputs[vi], prep, tile);
    }
    auto m = make_host_model<Dim, S>(cfg.device, cfg.threads, cfg.gpu, mo);
    m->load_weights(cfg.checkpoint);
    for (std::size_t vi = 0; vi < inputs.size(); ++vi) {
      if (static_cast<int>(vi % static_cast<std::size_t>(K)) != rank) continue;
      const std::string& path = inputs[vi];
      const auto t0 = std::chrono::steady_clock::now();
      io::NiftiReadOptions ro;
      ro.volume = cfg.volume >= 0 && io::nifti_volumes(path) > 1 ? cfg.volume : -1;
      const io::Volume source = io::read_nifti(path, ro);
      const data::Prepared p = data::prepare(path, prep);
      Translate tr = [&](const std::vector<float>& in, std::vector<float>& out, const std::array<Index, 4>& sh) {
        Shape<Rank> s;
        s[0] = 1;
        for (int d = 0; d < Dim; ++d) s[d + 1] = sh[d];
        s[Rank - 1] = sh[3];
        const std::vector<S> xs = to_s(in);
        std::vector<S> ys(xs.size());
        m->translate(ab, xs.data(), ys.data(), hs(s));
        out = to_f(ys);
      };
      io::Volume result = p.volume;
      result.data = synthesize(p.volume.data, p.background, Dim, tr, cfg.batch, tile);
      target.invert(result.data);
      if (cfg.same_grid) result = data::resample_like(result, source);
      result.descrip = "dicyc " + mo.model_name() + (ab ? " A->B" : " B->A");
      const std::string name = strip_nifti_ext(fs::path(path).filename().string());
      const std::string outp = cfg.out + "/" + name + ".nii.gz";
      io::write_nifti(outp, result);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const auto d = result.dim();
      std::printf("  %s%s -> %s (%lld x %lld x %lld, %.1f s)\n", K > 1 ? ("[rank " + std::to_string(rank) + "] ").c_str() : "",
                  path.c_str(), outp.c_str(), static_cast<long long>(d[0]),
                  static_cast<long long>(d[1]), static_cast<long long>(d[2]), secs);
      std::fflush(stdout);
    }
    if (K > 1) par.comm().barrier();  // the job ends when every rank's volumes are written
    return kOk;
  }
};

// Instantiated in tools_<dim>_<scalar>.cpp.
template <int Dim, class S>
int run_train(const TrainConfig& c);
template <int Dim, class S>
int run_synth(const SynthConfig& c, const std::string& config, const DataMeta& meta);
template <int Dim, class S>
int run_bench(const BenchConfig& c);

}  // namespace tools
