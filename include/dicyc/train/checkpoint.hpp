// dicyc/train/checkpoint.hpp -- what a training checkpoint holds, and the one place that writes and
// reads it: the model exposes its state (parameter groups, Adam moments and step counts, the
// schedule, the image pools and their RNGs, the communicator); this component decides what a run
// saves and restores and writes it through io/'s safetensors writer. model::ModelBase's save(),
// load() and load_weights() are thin calls into it.
//
// The file: every parameter under its dotted name in PyTorch's layout, the Adam moments
// ("adam.<group>.exp_avg|exp_avg_sq", step counts in the metadata), the schedule position, the
// pools ("pool.a|b.<i>") with their RNG states, and metadata format, format_version, model, dim,
// scalar, config (ModelOptions JSON) and iteration; "user.<key>" entries are the caller's
// (train::RunInfo writes the data preparation and run settings there). Writes are atomic; a load
// checks format, version, model, dimension, scalar type, configuration and every tensor before it
// changes anything, and a resumed run reproduces the uninterrupted one bit for bit.
// Several ranks (the model's communicator): save and load are collective; rank 0 writes one file
// with every rank's pools ("rank.<r>.pool.*" for r > 0, metadata "ranks"), and a load refuses a
// checkpoint of another rank count, on every rank.
#pragma once

#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dicyc/dist/device.hpp"
#include "dicyc/io/checkpoint.hpp"
#include "dicyc/io/safetensors.hpp"
#include "dicyc/model/base.hpp"
#include "dicyc/nn/parameter.hpp"

namespace dicyc::train {

inline constexpr const char* kCheckpointFormat = "dicyc.checkpoint";
inline constexpr int kCheckpointFormatVersion = 1;

namespace detail {

// ------------------------------------------------------------------------------- parameter groups
/// Adds every parameter of g under its name, in PyTorch's layout.
template <class S, class Device>
void add_parameters(io::SafeTensorsWriter& w, core::Context<Device>& ctx, nn::ParameterGroup<S, Device>& g) {
  for (Index i = 0; i < g.count(); ++i) {
    const auto& r = g.ref_of(i);
    const auto host = core::to_host(ctx, g.value(r), r.size());
    const auto t = io::to_torch_layout(host, r.shape);
    w.add(g.name_of(i), io::dtype_of<S>(), io::torch_shape(r.shape), t.data());
  }
}

/// Reads every parameter of g from f into host memory (dicyc's layout), checking that each is
/// present with g's dtype and PyTorch shape; nothing in g changes. Commit with commit_parameters.
template <class S, class Device>
std::vector<std::vector<S>> stage_parameters(const io::SafeTensorsFile& f, const nn::ParameterGroup<S, Device>& g) {
  std::vector<std::vector<S>> staged;
  for (Index i = 0; i < g.count(); ++i) {
    const auto& r = g.ref_of(i);
    const auto ts = io::torch_shape(r.shape);
    DICYC_CHECK(f.has(g.name_of(i)), SerializationError,
                "checkpoint '" << f.label() << "': missing tensor '" << g.name_of(i) << "' (expected "
                               << io::dtype_name(io::dtype_of<S>()) << " " << io::shape_string(ts) << ")");
    std::vector<S> t(static_cast<std::size_t>(r.size()));
    f.read_into(g.name_of(i), ts, t.data());
    staged.push_back(io::from_torch_layout(t, r.shape));
  }
  return staged;
}
template <class S, class Device>
void commit_parameters(core::Context<Device>& ctx, nn::ParameterGroup<S, Device>& g,
                       const std::vector<std::vector<S>>& staged) {
  for (Index i = 0; i < g.count(); ++i)
    core::copy_from_host(ctx, staged.at(i).data(), g.ref_of(i).size(), g.value(g.ref_of(i)));
}

/// "pool.a", or "rank.<r>.pool.a" for rank r > 0's.
inline std::string rank_key(int rank) { return rank == 0 ? "" : "rank." + std::to_string(rank) + "."; }

template <int Rank, class Pool>
void save_pool(io::SafeTensorsWriter& w, const std::string& key, Pool& p) {
  w.metadata(key + ".size", std::to_string(p.size()));
  w.metadata(key + ".rng", io::rng_text(p.rng()));
  for (Index i = 0; i < p.size(); ++i) {
    const auto& im = p.images()[static_cast<std::size_t>(i)];
    const auto h = im.to_host();
    std::vector<std::int64_t> shape;
    for (int d = Rank; d-- > 0;) shape.push_back(im.shape()[d]);
    w.add(key + "." + std::to_string(i), shape, h.data());
  }
}

template <class S, int Rank>
struct StagedPool {
  std::vector<std::vector<S>> images;
  Shape<Rank> shape;
  core::Rng::Snapshot rng;
};
template <class S, int Rank, class Pool>
StagedPool<S, Rank> stage_pool(const io::SafeTensorsFile& f, const std::string& L, const std::string& key, const Pool& p) {
  StagedPool<S, Rank> s;
  DICYC_CHECK(f.has_metadata(key + ".size") && f.has_metadata(key + ".rng"), SerializationError,
              L << ": missing metadata for image pool " << key);
  const auto n = io::parse_int(f.metadata(key + ".size"), key + ".size");
  DICYC_CHECK(n >= 0 && n <= p.capacity(), SerializationError,
              L << ": image pool " << key << " holds " << n << " images, the capacity is " << p.capacity());
  s.rng = io::parse_rng(f.metadata(key + ".rng"), key + ".rng");
  for (std::int64_t i = 0; i < n; ++i) {
    const std::string name = key + "." + std::to_string(i);
    const auto& info = f.info(name);
    DICYC_CHECK(static_cast<int>(info.shape.size()) == Rank && info.shape[0] == 1, SerializationError,
                L << ": tensor '" << name << "': expected a single image of rank " << Rank << ", found "
                  << io::shape_string(info.shape));
    Shape<Rank> sh;
    for (int d = 0; d < Rank; ++d) sh[d] = info.shape[Rank - 1 - d];
    if (i == 0) s.shape = sh;
    DICYC_CHECK(sh == s.shape, SerializationError, L << ": pooled images of different shapes");
    std::vector<S> h(static_cast<std::size_t>(num_elements(sh)));
    f.read_into(name, info.shape, h.data());
    s.images.push_back(std::move(h));
  }
  return s;
}

/// The saved configuration must match the model's (architecture and training settings; the seed
/// may differ).
/// The checkpoint's model configuration against the model's: the networks' keys must match; a
/// tunable one (ModelOptions::tunable: loss weights, learning rate, epochs) may differ, and the
/// model's value is then used from here on, with a note on stderr (rank 0, when `speak`).
inline void check_config(const std::string& L, const std::string& text, const model::ModelOptions& o, bool speak = true) {
  nlohmann::json saved;
  try {
    saved = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    DICYC_CHECK(false, SerializationError, L << ": corrupt configuration metadata: " << e.what());
  }
  nlohmann::json ours = nlohmann::json::parse(o.to_json().dump());
  // Optional keys, written only when not at their default: a missing one is that default on
  // either side (so a checkpoint from before the key existed loads, and a change is a tunable one).
  for (auto* j : {&saved, &ours})
    if (j->is_object() && !j->contains("lambda_gan_plain")) (*j)["lambda_gan_plain"] = 0.0;
  for (auto it = ours.begin(); it != ours.end(); ++it) {
    if (it.key() == "seed") continue;
    DICYC_CHECK(saved.contains(it.key()), SerializationError,
                L << ": configuration has no '" << it.key() << "' (expected " << it.value().dump() << ")");
    if (saved[it.key()] != it.value() && model::ModelOptions::tunable(it.key())) {
      if (speak)
        std::fprintf(stderr, "dicyc: note: %s has %s %s; this model's %s is used from here on\n", L.c_str(),
                     it.key().c_str(), saved[it.key()].dump().c_str(), it.value().dump().c_str());
      continue;
    }
    DICYC_CHECK(saved[it.key()] == it.value(), SerializationError,
                L << ": configuration '" << it.key() << "' is " << saved[it.key()].dump() << ", but this model has "
                  << it.value().dump());
  }
}

/// The file's contents, in memory (rank 0, with the other ranks' pools from gather_pools()).
template <int Dim, class S, class Device>
io::SafeTensorsWriter checkpoint_writer(model::ModelBase<Dim, S, Device>& m,
                                        const std::map<std::string, std::string>& user,
                                        const std::vector<std::vector<std::uint8_t>>& other_ranks_pools) {
  auto& ctx = m.context();
  const auto& o = m.options();
  io::SafeTensorsWriter w;
  for (const auto& [k, v] : user) w.metadata("user." + k, v);
  w.metadata("format", kCheckpointFormat);
  w.metadata("format_version", std::to_string(kCheckpointFormatVersion));
  w.metadata("model", o.deformation() ? "dicyc" : "cyclegan");
  w.metadata("dim", std::to_string(Dim));
  w.metadata("scalar", io::dtype_name(io::dtype_of<S>()));
  w.metadata("config", o.to_json().dump());
  w.metadata("iteration", std::to_string(m.iteration()));
  const auto st = m.schedule().state();
  w.metadata("schedule", std::to_string(st.iteration) + " " + std::to_string(st.epoch) + " " +
                             std::to_string(st.epoch_in_phase) + " " + std::to_string(static_cast<int>(st.phase)) + " " +
                             io::hexfloat(st.best) + " " + std::to_string(st.since_best) + " " + io::hexfloat(st.epoch_sum) +
                             " " + std::to_string(st.epoch_count));
  auto gs = m.groups();
  for (std::size_t i = 0; i < gs.size(); ++i) {
    add_parameters(w, ctx, *gs[i]);
    auto& adam = m.optimizer(i);
    const Index n = gs[i]->size();
    const auto mo = core::to_host(ctx, adam.exp_avg(), n), v = core::to_host(ctx, adam.exp_avg_sq(), n);
    w.add("adam." + gs[i]->name() + ".exp_avg", {n}, mo.data());
    w.add("adam." + gs[i]->name() + ".exp_avg_sq", {n}, v.data());
    w.metadata("adam." + gs[i]->name() + ".steps", std::to_string(adam.steps()));
  }
  save_pool<Dim + 2>(w, "pool.a", m.pool_a());
  save_pool<Dim + 2>(w, "pool.b", m.pool_b());
  if (other_ranks_pools.size() > 1) {
    w.metadata("ranks", std::to_string(other_ranks_pools.size()));
    for (std::size_t r = 1; r < other_ranks_pools.size(); ++r) {
      const auto f = io::SafeTensorsFile::parse(
          std::vector<unsigned char>(other_ranks_pools[r].begin(), other_ranks_pools[r].end()),
          "rank " + std::to_string(r) + "'s pools");
      for (const auto& [k, v] : f.metadata()) w.metadata(k, v);
      for (const auto& n : f.names()) {
        const auto& info = f.info(n);
        w.add(n, info.dtype, info.shape, f.raw_bytes(n).data());
      }
    }
  }
  return w;
}

/// Collective: every other rank's pools, serialized, on rank 0 (nothing with one rank).
template <int Dim, class S, class Device>
std::vector<std::vector<std::uint8_t>> gather_pools(model::ModelBase<Dim, S, Device>& m) {
  auto& comm = m.communicator();
  const int rank = comm.rank();
  if (comm.size() == 1) return {};
  io::SafeTensorsWriter pw;
  if (rank != 0) {
    save_pool<Dim + 2>(pw, rank_key(rank) + "pool.a", m.pool_a());
    save_pool<Dim + 2>(pw, rank_key(rank) + "pool.b", m.pool_b());
  }
  const auto bytes = pw.serialize();
  return comm.gather(std::vector<std::uint8_t>(bytes.begin(), bytes.end()), 0);
}

/// A note on stderr (rank 0) for a file written before checkpoints carried checksums.
inline void note_unverified(const io::SafeTensorsFile& f, bool root) {
  if (root && !f.has_checksums())
    std::fprintf(stderr,
                 "dicyc: note: '%s' carries no checksums (written before dicyc stored them): its tensors cannot be "
                 "verified against damage\n",
                 f.label().c_str());
}

/// Checks and stages a checkpoint on the host (from an opened file); the returned function
/// commits it into m.
template <int Dim, class S, class Device>
std::function<void()> stage_checkpoint(model::ModelBase<Dim, S, Device>& m, const io::SafeTensorsFile& f) {
  constexpr int Rank = Dim + 2;
  const std::string& path = f.label();
  const std::string L = "checkpoint '" + path + "'";
  note_unverified(f, m.communicator().rank() == 0);
  const auto& o = m.options();
  auto meta = [&](const std::string& k) -> const std::string& {
    DICYC_CHECK(f.has_metadata(k), SerializationError, L << ": missing metadata '" << k << "' (not a dicyc checkpoint?)");
    return f.metadata(k);
  };
  DICYC_CHECK(meta("format") == kCheckpointFormat, SerializationError,
              L << ": format '" << meta("format") << "', expected '" << kCheckpointFormat << "'");
  DICYC_CHECK(meta("format_version") == std::to_string(kCheckpointFormatVersion), SerializationError,
              L << ": format version " << meta("format_version") << ", this build reads version " << kCheckpointFormatVersion);
  const std::string kind = o.deformation() ? "dicyc" : "cyclegan";
  DICYC_CHECK(meta("model") == kind, SerializationError, L << ": holds a '" << meta("model") << "' model, expected '" << kind << "'");
  DICYC_CHECK(meta("dim") == std::to_string(Dim), SerializationError,
              L << ": holds a " << meta("dim") << "-D model, expected " << Dim << "-D");
  DICYC_CHECK(meta("scalar") == io::dtype_name(io::dtype_of<S>()), SerializationError,
              L << ": holds " << meta("scalar") << " weights, expected " << io::dtype_name(io::dtype_of<S>()));
  check_config(L, meta("config"), o, m.communicator().rank() == 0);
  auto& comm = m.communicator();
  const int K = comm.size(), rank = comm.rank();
  const std::int64_t ranks = f.has_metadata("ranks") ? io::parse_int(f.metadata("ranks"), "ranks") : 1;
  DICYC_CHECK(ranks == K, SerializationError,
              L << ": written by a run of " << ranks << " rank" << (ranks == 1 ? "" : "s") << ", and this run has " << K
                << ": an exact resume needs the same number of ranks (each rank's image pools and batches are its "
                   "own); resume with " << ranks << " rank" << (ranks == 1 ? "" : "s")
                << ", or start a new run from its weights (load_weights)");
  // Stage everything on the host.
  auto gs = m.groups();
  std::vector<std::vector<std::vector<S>>> params;
  std::vector<std::vector<acc_t<S>>> ms, vs;
  std::vector<std::int64_t> steps;
  for (auto* g : gs) {
    params.push_back(stage_parameters(f, *g));
    const std::vector<std::int64_t> n{g->size()};
    ms.emplace_back(static_cast<std::size_t>(g->size()));
    vs.emplace_back(static_cast<std::size_t>(g->size()));
    f.read_into("adam." + g->name() + ".exp_avg", n, ms.back().data());
    f.read_into("adam." + g->name() + ".exp_avg_sq", n, vs.back().data());
    steps.push_back(io::parse_int(meta("adam." + g->name() + ".steps"), "adam." + g->name() + ".steps"));
    DICYC_CHECK(steps.back() >= 0, SerializationError, L << ": negative Adam step count");
  }
  optim::Schedule::State st;
  {
    std::istringstream in(meta("schedule"));
    std::string best, sum;
    int phase = -1;
    in >> st.iteration >> st.epoch >> st.epoch_in_phase >> phase >> best >> st.since_best >> sum >> st.epoch_count;
    DICYC_CHECK(!in.fail() && phase >= 0 && phase <= 2, SerializationError,
                L << ": corrupt schedule state '" << meta("schedule") << "'");
    st.phase = static_cast<optim::Phase>(phase);
    st.best = io::parse_double(best, "schedule best loss");
    st.epoch_sum = io::parse_double(sum, "schedule epoch sum");
  }
  optim::Schedule sched_check(o.schedule());
  try {
    sched_check.restore(st);
  } catch (const Error& e) {
    DICYC_CHECK(false, SerializationError, L << ": " << e.what());
  }
  const std::string pk = rank_key(rank);
  auto pa = std::make_shared<StagedPool<S, Rank>>(stage_pool<S, Rank>(f, L, pk + "pool.a", m.pool_a()));
  auto pb = std::make_shared<StagedPool<S, Rank>>(stage_pool<S, Rank>(f, L, pk + "pool.b", m.pool_b()));
  auto staged = std::make_shared<decltype(params)>(std::move(params));
  auto sm = std::make_shared<decltype(ms)>(std::move(ms));
  auto sv = std::make_shared<decltype(vs)>(std::move(vs));
  return [&m, gs, staged, sm, sv, steps, st, pa, pb] {
    auto& ctx = m.context();
    for (std::size_t i = 0; i < gs.size(); ++i) {
      commit_parameters(ctx, *gs[i], (*staged)[i]);
      auto& adam = m.optimizer(i);
      const Index n = gs[i]->size();
      core::copy_from_host(ctx, (*sm)[i].data(), n, adam.exp_avg());
      core::copy_from_host(ctx, (*sv)[i].data(), n, adam.exp_avg_sq());
      adam.set_steps(steps[i]);
    }
    m.schedule().restore(st);
    auto commit_pool = [&](auto& p, StagedPool<S, Rank>& s) {
      std::vector<typename model::ModelBase<Dim, S, Device>::T> ims;
      for (auto& h : s.images) ims.push_back(model::ModelBase<Dim, S, Device>::T::from_host(ctx, s.shape, h));
      p.restore(std::move(ims), s.rng);
    };
    commit_pool(m.pool_a(), *pa);
    commit_pool(m.pool_b(), *pb);
  };
}

}  // namespace detail

/// Runs `save` on every rank (it gathers and, on rank 0, writes `path`), then agrees: a failure on
/// rank 0 throws on every rank, naming the file.
inline void agreed_write(dist::Communicator& comm, const std::string& path, const std::function<void()>& save) {
  std::exception_ptr failed;
  try {
    save();
  } catch (...) {
    failed = std::current_exception();
  }
  if (comm.size() > 1 && !dist::all_ok(comm, !failed)) {
    if (failed) std::rethrow_exception(failed);
    throw dist::CommError("checkpoint '" + path + "': rank 0 could not write it (its own message says why)");
  }
  if (failed) std::rethrow_exception(failed);
}

/// Writes m's whole training state to `path` atomically, with `user` as "user.<key>" metadata.
/// Collective with several ranks: rank 0 writes, with every rank's pools; the others wait for it,
/// and a failed write throws on every rank.
template <int Dim, class S, class Device>
void save_checkpoint(model::ModelBase<Dim, S, Device>& m, const std::string& path,
                     const std::map<std::string, std::string>& user) {
  agreed_write(m.communicator(), path, [&] {
    const auto theirs = detail::gather_pools(m);
    if (m.communicator().rank() == 0) detail::checkpoint_writer(m, user, theirs).write(path);
  });
}

/// What save_checkpoint() writes, as the bytes of the file, for a caller that writes it itself
/// (the tools' device wrapper, whose GPU models hand their state across the nvcc boundary as host
/// buffers). Collective; ranks other than 0 get an empty buffer. Write it with
/// write_checkpoint_image().
template <int Dim, class S, class Device>
std::vector<unsigned char> checkpoint_image(model::ModelBase<Dim, S, Device>& m,
                                            const std::map<std::string, std::string>& user) {
  const auto theirs = detail::gather_pools(m);
  if (m.communicator().rank() != 0) return {};
  return detail::checkpoint_writer(m, user, theirs).serialize();
}

/// Writes what `image` makes (checkpoint_image() through whatever wrapper; called on every rank)
/// to `path` atomically on rank 0, with save_checkpoint()'s agreement across ranks.
inline void write_checkpoint_image(dist::Communicator& comm, const std::string& path,
                                   const std::function<std::vector<unsigned char>()>& image) {
  agreed_write(comm, path, [&] {
    const auto bytes = image();
    if (comm.rank() == 0) {
      DICYC_CHECK(!bytes.empty(), IoError, "checkpoint '" << path << "': rank 0 has no checkpoint contents to write");
      io::write_file_atomic(path, bytes);
    }
  });
}

/// Restores a save_checkpoint() of the same configuration from an opened file (e.g. the one
/// RunInfo::read() opened, so a resume reads the file once); nothing changes unless everything in
/// the file checks out (on every rank, when there are several: collective; each rank its own file).
template <int Dim, class S, class Device>
void load_checkpoint(model::ModelBase<Dim, S, Device>& m, const io::SafeTensorsFile& f) {
  auto& comm = m.communicator();
  if (comm.size() == 1) return detail::stage_checkpoint(m, f)();
  std::function<void()> commit;
  std::exception_ptr failed;
  try {
    commit = detail::stage_checkpoint(m, f);
  } catch (...) {
    failed = std::current_exception();
  }
  if (!dist::all_ok(comm, !failed)) {
    if (failed) std::rethrow_exception(failed);
    throw dist::CommError("checkpoint '" + f.label() + "': another rank could not load it (its own message says why)");
  }
  commit();
}

/// Restores a checkpoint from the bytes of its file (a checkpoint_image(), or an opened file's
/// SafeTensorsFile::image()); every tensor's checksum is verified first. `label` names it in errors.
template <int Dim, class S, class Device>
void load_checkpoint_image(model::ModelBase<Dim, S, Device>& m, std::vector<unsigned char> image, const std::string& label) {
  std::unique_ptr<io::SafeTensorsFile> f;
  std::exception_ptr failed;
  try {
    f = std::make_unique<io::SafeTensorsFile>(io::SafeTensorsFile::parse(std::move(image), label));
  } catch (...) {
    failed = std::current_exception();
  }
  auto& comm = m.communicator();
  if (comm.size() > 1 && !dist::all_ok(comm, !failed)) {
    if (failed) std::rethrow_exception(failed);
    throw dist::CommError("checkpoint '" + label + "': another rank could not read it (its own message says why)");
  }
  if (failed) std::rethrow_exception(failed);
  load_checkpoint(m, *f);
}

/// Restores a save_checkpoint() of the same configuration from `path` (collective).
template <int Dim, class S, class Device>
void load_checkpoint(model::ModelBase<Dim, S, Device>& m, const std::string& path) {
  auto& comm = m.communicator();
  if (comm.size() == 1) return load_checkpoint(m, io::SafeTensorsFile::open(path));
  std::unique_ptr<io::SafeTensorsFile> f;
  std::exception_ptr failed;
  try {
    f = std::make_unique<io::SafeTensorsFile>(io::SafeTensorsFile::open(path));
  } catch (...) {
    failed = std::current_exception();
  }
  if (!dist::all_ok(comm, !failed)) {
    if (failed) std::rethrow_exception(failed);
    throw dist::CommError("checkpoint '" + path + "': another rank could not open it (its own message says why)");
  }
  load_checkpoint(m, *f);
}

/// Loads network weights only (a checkpoint of any of the models, or a weights file made from
/// PyTorch state dicts by scripts/checkpoint_torch.py import): every parameter group with a tensor
/// in the file must be complete there; the others, the optimiser state, the schedule and the pools
/// are left as they are. Returns the names of the groups loaded.
template <int Dim, class S, class Device>
std::vector<std::string> load_weights(model::ModelBase<Dim, S, Device>& m, const std::string& path) {
  const auto f = io::SafeTensorsFile::open(path);
  detail::note_unverified(f, m.communicator().rank() == 0);
  // The metadata a weights file may carry must agree with the model (a file made from PyTorch
  // state dicts has none of it; the tensors' dtypes and shapes are checked one by one below).
  if (f.has_metadata("scalar"))
    DICYC_CHECK(f.metadata("scalar") == io::dtype_name(io::dtype_of<S>()), SerializationError,
                "weights file '" << path << "': its metadata says " << f.metadata("scalar") << " weights, this model is "
                                 << io::dtype_name(io::dtype_of<S>()));
  if (f.has_metadata("dim"))
    DICYC_CHECK(f.metadata("dim") == std::to_string(Dim), SerializationError,
                "weights file '" << path << "': its metadata says a " << f.metadata("dim") << "-D model, this one is "
                                 << Dim << "-D");
  std::vector<nn::ParameterGroup<S, Device>*> present;
  for (auto* g : m.groups())
    for (Index i = 0; i < g->count(); ++i)
      if (f.has(g->name_of(i))) {
        present.push_back(g);
        break;
      }
  DICYC_CHECK(!present.empty(), SerializationError, "weights file '" << path << "': no parameter of this model's networks");
  std::vector<std::vector<std::vector<S>>> staged;
  for (auto* g : present) staged.push_back(detail::stage_parameters(f, *g));
  std::vector<std::string> names;
  for (std::size_t i = 0; i < present.size(); ++i) {
    detail::commit_parameters(m.context(), *present[i], staged[i]);
    names.push_back(present[i]->name());
  }
  return names;
}

/// One group's parameters from a safetensors file (PyTorch's layout, checked names, dtypes and
/// shapes); g is untouched when anything is wrong.
template <class S, class Device>
void load_parameters(const io::SafeTensorsFile& f, core::Context<Device>& ctx, nn::ParameterGroup<S, Device>& g) {
  detail::commit_parameters(ctx, g, detail::stage_parameters(f, g));
}

/// One group's parameters into a safetensors writer, in PyTorch's layout (weights files of one's own).
template <class S, class Device>
void add_parameters(io::SafeTensorsWriter& w, core::Context<Device>& ctx, nn::ParameterGroup<S, Device>& g) {
  detail::add_parameters(w, ctx, g);
}

}  // namespace dicyc::train
