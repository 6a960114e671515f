// dicyc/train/trainer.hpp -- the training loop: what dicyc-train runs, and what a user's own
// program runs on its own data.
//
//   train::ModelTrainable<2, float, Dev> m(ctx, *model);          // or any Trainable
//   train::SamplerSource src(domain_a, domain_b, sampler_options); // or any BatchSource
//   train::Trainer t(m, src, train::TrainerOptions().out("run1").max_iterations(5000));
//   const auto r = t.fit();                                       // r.outcome, r.iteration
//
// fit() owns, in one place:
// - exact resume: with resume(true) the model's state comes back from <out>/checkpoint.safetensors,
//   the source restarts at batch i (i = the checkpoint's iteration) of the same seeded stream, and
//   losses.csv is cut back to iteration i, so the resumed run's rows and checkpoint equal an
//   uninterrupted run's bit for bit; the run settings that decide the stream are stored in every
//   checkpoint (RunInfo) for the caller to restore before it builds the source;
// - per-rank data streams (stream_seed) and the agreement of every rank to go on or to stop at the
//   same iteration boundary (a stop request or a failed source on any rank stops them all);
// - the non-finite stop: a NumericError from the step ends the run with Outcome::NonFinite and
//   leaves the last good checkpoint as it was;
// - losses.csv: "iteration,epoch", the columns of model::kLossFields, "constant_samples,seconds";
// - the checkpoint cadence, with the guard that several ranks still hold the same weights;
// - the memory check before anything is spent (Trainable::memory_need, train/memory.hpp).
// Files are written by rank 0 only, atomically where a crash could leave them half-written.
#pragma once

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dicyc/data/dataset.hpp"
#include "dicyc/dist/communicator.hpp"
#include "dicyc/io/atomic_file.hpp"
#include "dicyc/model/losses.hpp"
#include "dicyc/train/memory.hpp"
#include "dicyc/train/run_info.hpp"
#include "dicyc/train/source.hpp"

namespace dicyc::train {

/// Memory a training run needs on top of what the process holds once the model is built.
struct MemoryNeed {
  double per_rank = 0;  // the step's peak beyond the model's weights, the batches in flight, full pools
  double save = 0;      // a checkpoint save's host copy
};

/// What a Trainer runs: the library's models through ModelTrainable (model_trainable.hpp), the
/// tools' device wrapper, or a user's own model.
class Trainable {
 public:
  virtual ~Trainable() = default;
  /// One iteration on a batch. A non-finite loss throws NumericError.
  virtual model::StepLosses train_step(const data::Batch& b) = 0;
  virtual std::int64_t iteration() const = 0;
  virtual std::int64_t epoch() const = 0;
  /// Whether the schedule has ended (early stop included).
  virtual bool done() const = 0;
  /// Iterations the schedule runs when nothing stops it early.
  virtual std::int64_t total_iterations() const = 0;
  /// Writes the whole state atomically, with `user` as "user.<key>" metadata (collective).
  virtual void save(const std::string& path, const std::map<std::string, std::string>& user) = 0;
  /// Restores a save() of the same configuration (collective).
  virtual void load(const std::string& path) = 0;
  /// The same from an opened checkpoint (RunInfo::file), so a resume reads the file once; the
  /// default opens it again by name.
  virtual void load_file(const io::SafeTensorsFile& f) { load(f.label()); }
  /// Collective: whether every rank holds the same weights and optimiser state.
  virtual bool ranks_consistent() { return true; }
  /// Samples whose alignment loss was undefined (constant images) since the model was made.
  virtual std::int64_t degenerate_samples() const { return 0; }
  /// The memory a run of this crop and batch needs; false: no estimate (the check is skipped).
  virtual bool memory_need(int /*dim*/, const std::array<Index, 3>& /*crop*/, Index /*batch*/, MemoryNeed* /*need*/) {
    return false;
  }
  virtual std::string name() const = 0;
};

class TrainerOptions {
 public:
  /// The run's folder: checkpoint.safetensors and losses.csv.
  TrainerOptions& out(std::string v) { out_ = std::move(v); return *this; }
  /// Stop after this iteration (0: the schedule's end).
  TrainerOptions& max_iterations(std::int64_t v) { run_.max_iters = v; return *this; }
  /// Save every n iterations (0: only at the end, on a stop request and when the source fails).
  TrainerOptions& checkpoint_every(std::int64_t v) { run_.checkpoint_every = v; return *this; }
  /// Call the sample hook every n iterations (0: never).
  TrainerOptions& sample_every(std::int64_t v) { run_.sample_every = v; return *this; }
  /// Call the log hook every n iterations, at the last one and at least every 10 s.
  TrainerOptions& log_every(std::int64_t v) { log_every_ = v; return *this; }
  /// The data stream's seed (the source draws stream_seed(seed, rank)).
  TrainerOptions& seed(std::uint64_t v) { run_.seed = v; return *this; }
  /// Continue from <out>/checkpoint.safetensors.
  TrainerOptions& resume(bool v) { resume_ = v; return *this; }
  /// With resume(true): that checkpoint, already opened (RunInfo::read's file), so it is read once.
  TrainerOptions& resume_from(std::shared_ptr<const io::SafeTensorsFile> f) { resume_file_ = std::move(f); return *this; }
  /// Bytes the run may take: 0 what the machine leaves, > 0 this limit, < 0 no check.
  TrainerOptions& max_memory(double v) { max_memory_ = v; return *this; }
  /// Ranks sharing this machine's memory (the memory check counts each).
  TrainerOptions& local_ranks(int v) { local_ranks_ = v; return *this; }
  /// Without a log hook: print one line of losses at the log cadence.
  TrainerOptions& verbose(bool v) { verbose_ = v; return *this; }
  /// The data preparation stored with every checkpoint (see RunInfo).
  TrainerOptions& data_info(DataInfo v) { data_ = v; has_data_ = true; return *this; }
  /// All run settings at once (a resume's restored ones).
  TrainerOptions& run_settings(RunSettings v) { run_ = v; return *this; }
  /// A key of the caller's own, stored as the checkpoint's "user.<key>".
  TrainerOptions& user(const std::string& k, std::string v) { user_[k] = std::move(v); return *this; }

  const std::string& out() const { return out_; }
  std::int64_t max_iterations() const { return run_.max_iters; }
  std::int64_t checkpoint_every() const { return run_.checkpoint_every; }
  std::int64_t sample_every() const { return run_.sample_every; }
  std::int64_t log_every() const { return log_every_; }
  std::uint64_t seed() const { return run_.seed; }
  bool resume() const { return resume_; }
  const std::shared_ptr<const io::SafeTensorsFile>& resume_file() const { return resume_file_; }
  double max_memory() const { return max_memory_; }
  int local_ranks() const { return local_ranks_; }
  bool verbose() const { return verbose_; }
  const DataInfo& data_info() const { return data_; }
  bool has_data_info() const { return has_data_; }
  const RunSettings& run_settings() const { return run_; }
  const std::map<std::string, std::string>& user() const { return user_; }
  std::string checkpoint_path() const { return out_ + "/checkpoint.safetensors"; }
  std::string log_path() const { return out_ + "/losses.csv"; }

 private:
  std::string out_ = "run";
  RunSettings run_;
  std::int64_t log_every_ = 10;
  bool resume_ = false, verbose_ = false, has_data_ = false;
  std::shared_ptr<const io::SafeTensorsFile> resume_file_;
  double max_memory_ = -1;
  int local_ranks_ = 1;
  DataInfo data_;
  std::map<std::string, std::string> user_;
};

/// Where the loop stands, for the hooks.
struct Progress {
  std::int64_t iteration = 0, goal = 0, start_iteration = 0, steps = 0, epoch = 0;
  double seconds = 0;  // since fit() began its loop
  std::int64_t degenerate = 0;  // constant samples so far in this fit()
  double rate() const { return steps / std::max(1e-9, seconds); }
  double eta_seconds() const { return static_cast<double>(goal - iteration) / std::max(1e-9, rate()); }
};

struct TrainerHooks {
  /// Polled before each batch: true stops every rank at this boundary, with a checkpoint.
  std::function<bool()> stop_requested;
  /// Before each step, on the batch about to be used (e.g. to inspect or alter it).
  std::function<void(data::Batch&, std::int64_t next_iteration)> before_step;
  /// At the log cadence (TrainerOptions::log_every), after the CSV row.
  std::function<void(const model::StepLosses&, const Progress&)> log;
  /// Rank 0, every sample_every iterations, with the batch just trained on.
  std::function<void(const data::Batch&, std::int64_t iteration)> sample;
  /// Rank 0, after each checkpoint is written.
  std::function<void(std::int64_t iteration)> saved;
};

enum class Outcome { Done, Interrupted, NonFinite };

struct TrainResult {
  Outcome outcome = Outcome::Done;
  std::int64_t iteration = 0, start_iteration = 0, steps = 0;
  double seconds = 0, waited_seconds = 0;
  std::int64_t degenerate = 0;
  std::string message;  // NonFinite: what was not finite
  bool checkpoint_written = false;
};

/// The CSV header: iteration, epoch, the loss fields, constant_samples, seconds.
inline std::string loss_log_header() {
  std::string h = "iteration,epoch";
  for (const auto& f : model::kLossFields) h += std::string(",") + f.name;
  return h + ",constant_samples,seconds\n";
}

inline std::string loss_log_row(std::int64_t it, std::int64_t epoch, const model::StepLosses& L, std::int64_t degenerate,
                                double seconds) {
  std::string r = std::to_string(it) + "," + std::to_string(epoch);
  char b[40];
  for (const auto& f : model::kLossFields) {
    std::snprintf(b, sizeof b, ",%.6g", L.*f.member);
    r += b;
  }
  std::snprintf(b, sizeof b, ",%lld,%.3f\n", static_cast<long long>(degenerate), seconds);
  return r + b;
}

class Trainer {
 public:
  Trainer(Trainable& model, BatchSource& source, TrainerOptions o, dist::Communicator& comm = dist::single_process())
      : m_(model), src_(source), o_(std::move(o)), comm_(comm) {
    DICYC_CHECK(o_.log_every() >= 1 && o_.checkpoint_every() >= 0 && o_.sample_every() >= 0 && o_.max_iterations() >= 0,
                ConfigError, "Trainer: log_every must be >= 1, checkpoint_every, sample_every and max_iterations >= 0");
    DICYC_CHECK(!o_.out().empty(), ConfigError, "Trainer: out() must name a folder");
    if (auto* s = dynamic_cast<SamplerSource*>(&src_)) {  // store the settings the stream is drawn with
      RunSettings r = o_.run_settings();
      r.batch = s->options().batch;
      r.min_foreground = s->options().min_foreground;
      r.augment = s->options().augment;
      o_.run_settings(r);
    }
  }

  TrainerHooks& hooks() { return hooks_; }
  const TrainerOptions& options() const { return o_; }
  /// The metadata every checkpoint of this run carries ("user.<key>").
  std::map<std::string, std::string> metadata() const {
    RunInfo info;
    info.data = o_.data_info();
    info.has_data_info = o_.has_data_info();
    info.run = o_.run_settings();
    info.user = o_.user();
    return info.metadata();
  }

  /// The memory check on its own (fit() runs it first): throws MemoryError when the run will not fit.
  void check_memory(int dim, const std::array<Index, 3>& crop, Index batch, const std::string& what) {
    memory_checked_ = true;
    if (o_.max_memory() < 0) return;
    const double rss0 = resident_bytes();
    MemoryNeed need;
    if (!m_.memory_need(dim, crop, batch, &need)) return;
    const int local = std::max(1, o_.local_ranks());
    const bool root = comm_.rank() == 0;
    train::check_memory(what + (local > 1 ? " x " + std::to_string(local) + " ranks on this machine" : ""),
                        need.per_rank * local + need.save * (comm_.size() > 1 ? 2 : 1), o_.max_memory(), rss0, root);
  }

  TrainResult fit() {
    namespace fs = std::filesystem;
    const bool root = comm_.rank() == 0;
    const int K = comm_.size();
    const std::string ckpt = o_.checkpoint_path(), csv = o_.log_path();
    if (root) {
      fs::create_directories(o_.out());
      io::remove_stale_temporaries(o_.out());
    }
    if (o_.has_data_info() && !memory_checked_) {
      const auto& d = o_.data_info();
      check_memory(d.dim, d.crop, o_.run_settings().batch,
                   "training (" + m_.name() + ", crop " + std::to_string(d.crop[0]) + (d.dim == 3 ? "^3" : "^2") +
                       ", batch " + std::to_string(o_.run_settings().batch) + ")");
    }
    TrainResult r;
    if (o_.resume()) {
      DICYC_CHECK(fs::exists(ckpt), ConfigError,
                  "resume: no checkpoint at '" << ckpt << "'"
                                               << (K > 1 ? " (with several ranks, the folder must be on a filesystem that "
                                                           "every rank sees)"
                                                         : ""));
      // Collective: refuses a checkpoint of another configuration or rank count on every rank.
      const auto& opened = o_.resume_file();
      std::error_code same_ec;
      if (opened && fs::equivalent(opened->label(), ckpt, same_ec)) m_.load_file(*opened);
      else m_.load(ckpt);
    }
    r.start_iteration = m_.iteration();
    if (root) start_log(csv, r.start_iteration);
    std::ofstream log;  // rank 0's; the others' stays closed
    if (root) {
      log.open(csv, std::ios::app);
      DICYC_CHECK(log.good(), IoError, "cannot write '" << csv << "'");
    }
    const std::int64_t total = m_.total_iterations();
    const std::int64_t goal = o_.max_iterations() > 0 ? std::min(total, o_.max_iterations()) : total;
    src_.start(r.start_iteration, o_.seed(), comm_.rank(), K);

    const auto t0 = std::chrono::steady_clock::now();
    auto last_log = t0;
    const std::int64_t degenerate0 = m_.degenerate_samples();
    std::int64_t degenerate_seen = 0;
    Progress p;
    p.goal = goal;
    p.start_iteration = r.start_iteration;
    auto finish = [&](Outcome oc) {
      log.flush();
      r.outcome = oc;
      r.iteration = m_.iteration();
      r.steps = p.steps;
      r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      r.waited_seconds = src_.waited_seconds();
      r.degenerate = degenerate_seen;
      return r;
    };
    std::int64_t saved_at = -1;
    auto save = [&] {
      log.flush();
      if (saved_at == m_.iteration()) return;  // the cadence saved this iteration already
      DICYC_CHECK(K == 1 || m_.ranks_consistent(), NumericError,
                  "the ranks' weights differ at iteration " << m_.iteration() << ": the gradient all-reduce did not give "
                  "every rank the same result; not saving (the last checkpoint is kept)");
      m_.save(ckpt, metadata());
      saved_at = m_.iteration();
      r.checkpoint_written = true;
      if (root && hooks_.saved) hooks_.saved(m_.iteration());
    };
    // Every rank goes on, or every rank stops at the same boundary: 0 go on, 1 stop, 2 a source failed.
    auto agree = [&](std::int32_t mine) {
      if (K > 1) comm_.all_reduce(&mine, 1, dist::DType::I32, dist::Op::Max);
      return mine;
    };
    while (!m_.done() && m_.iteration() < goal) {
      data::Batch bt;
      std::exception_ptr source_error;
      const bool stop = hooks_.stop_requested && hooks_.stop_requested();
      if (!stop) {
        try {
          bt = src_.next();
        } catch (...) {  // e.g. a volume that gives no crop with enough foreground: keep the run so far
          source_error = std::current_exception();
        }
      }
      const std::int32_t status = agree(source_error ? 2 : stop ? 1 : 0);
      if (status == 1) {
        save();
        return finish(Outcome::Interrupted);
      }
      if (status == 2) {
        log.flush();
        if (m_.iteration() > r.start_iteration) save();
        if (source_error) std::rethrow_exception(source_error);
        throw std::runtime_error("the data source of another rank failed before iteration " +
                                 std::to_string(m_.iteration() + 1) + " (its own message says why)");
      }
      if (hooks_.before_step) hooks_.before_step(bt, m_.iteration() + 1);
      model::StepLosses L;
      try {
        L = m_.train_step(bt);
      } catch (const NumericError& e) {
        r.message = e.what();
        return finish(Outcome::NonFinite);  // every rank sees the same (averaged) losses: all stop here
      }
      ++p.steps;
      p.iteration = m_.iteration();
      p.epoch = m_.epoch();
      const std::int64_t deg = m_.degenerate_samples() - degenerate0 - degenerate_seen;
      degenerate_seen += deg;
      p.degenerate = degenerate_seen;
      const auto now = std::chrono::steady_clock::now();
      p.seconds = std::chrono::duration<double>(now - t0).count();
      if (root) log << loss_log_row(p.iteration, p.epoch, L, deg, p.seconds);
      if (p.iteration % o_.log_every() == 0 || p.iteration == goal ||
          std::chrono::duration<double>(now - last_log).count() > 10) {
        last_log = now;
        log.flush();
        if (hooks_.log) hooks_.log(L, p);
        else if (o_.verbose() && root) print_losses(L, p);
      }
      if (root && o_.sample_every() > 0 && p.iteration % o_.sample_every() == 0 && hooks_.sample) hooks_.sample(bt, p.iteration);
      if (o_.checkpoint_every() > 0 && p.iteration % o_.checkpoint_every() == 0) save();
    }
    save();
    return finish(Outcome::Done);
  }

 private:
  /// A fresh run starts losses.csv anew; a resumed one keeps its rows up to the checkpoint. A log
  /// written by an older dicyc with other columns (a loss term added since) has its kept rows
  /// rewritten to the current columns by name: a column the old log lacks is 0, the value such a
  /// term had there (a term that was not computed), so every row has the header's columns.
  static void start_log(const std::string& csv, std::int64_t upto) {
    const std::string header = loss_log_header();
    std::string kept = header;
    if (upto > 0) {
      std::ifstream in(csv);
      std::string line;
      bool first = true;
      std::vector<std::string> old_names;
      bool remap = false;
      const std::vector<std::string> names = split_csv(header.substr(0, header.size() - 1));
      while (std::getline(in, line)) {
        if (first) {
          first = false;
          old_names = split_csv(line);
          remap = line + "\n" != header;
          continue;
        }
        const long long it = std::atoll(line.c_str());
        if (!(it > 0 && it <= upto && !line.empty())) continue;
        if (!remap) {
          kept += line + "\n";
          continue;
        }
        const std::vector<std::string> vals = split_csv(line);
        std::string row;
        for (std::size_t i = 0; i < names.size(); ++i) {
          std::string v = "0";
          for (std::size_t k = 0; k < old_names.size() && k < vals.size(); ++k)
            if (old_names[k] == names[i]) v = vals[k];
          row += (i ? "," : "") + v;
        }
        kept += row + "\n";
      }
    }
    io::write_file_atomic(csv, kept);
  }
  static std::vector<std::string> split_csv(const std::string& line) {
    std::vector<std::string> out(1);
    for (char ch : line) {
      if (ch == ',') out.emplace_back();
      else if (ch != '\r') out.back() += ch;
    }
    return out;
  }
  static void print_losses(const model::StepLosses& L, const Progress& p) {
    std::printf("it %lld/%lld ep %lld  %.2f it/s |", static_cast<long long>(p.iteration), static_cast<long long>(p.goal),
                static_cast<long long>(p.epoch), p.rate());
    for (const auto& f : model::kLossFields)
      if (f.kind != model::LossKind::LearningRate && L.*f.member != 0) std::printf(" %s %.4g", f.name, L.*f.member);
    std::printf(" | lr %.3g\n", L.lr);
    std::fflush(stdout);
  }

  Trainable& m_;
  BatchSource& src_;
  TrainerOptions o_;
  dist::Communicator& comm_;
  TrainerHooks hooks_;
  bool memory_checked_ = false;
};

}  // namespace dicyc::train
