// dicyc/train/run_info.hpp -- the run metadata a training checkpoint carries besides the model's
// own state, written and read in this one place:
// - DataInfo: how the data was prepared (dimension, crop, spacing, orientation, normalisation) and
//   the intensity maps of both domains, so that synthesis prepares its inputs as training did and
//   writes its outputs in the target domain's units (e.g. Hounsfield units);
// - RunSettings: what decides the data stream and where the run ends (seed, batch, foreground
//   minimum, augmentation, max iterations, checkpoint and sample cadence), so that a resume with
//   no other settings continues the same run;
// - user keys of the caller's own.
// They are stored as the checkpoint's "user.<key>" metadata (keys: dim, crop, spacing, canonical,
// normalisation, percentiles, intensity_a, intensity_b, window_a and window_b when a fixed
// intensity window was used, train, and the caller's). RunInfo::read() opens a checkpoint once
// for all of it and for the model's configuration, dimension and scalar, validates them, and
// keeps the file open (RunInfo::file) so that a resume loads the model from the same open file.
#pragma once

#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dicyc/data/dataset.hpp"
#include "dicyc/io/checkpoint.hpp"
#include "dicyc/io/safetensors.hpp"

namespace dicyc::train {

struct DataInfo {
  int dim = 2;
  std::array<Index, 3> crop{128, 128, 1};
  data::PrepareOptions prep;  // both domains' (the windows below replace the percentiles per domain)
  data::IntensityMap map_a, map_b;
  /// A fixed intensity window per domain ([lo, hi] in source units -> [-1, 1], e.g. -1024..3000 HU
  /// for CT, so that bone survives); lo >= hi: none (percentiles or z-score as prep says).
  std::array<double, 2> window_a{0, 0}, window_b{0, 0};

  /// How volumes of domain 'a' or 'b' are prepared (prep with that domain's window).
  data::PrepareOptions prep_for(char domain) const {
    data::PrepareOptions p = prep;
    const auto& w = domain == 'a' ? window_a : window_b;
    p.window_lo = w[0];
    p.window_hi = w[1];
    return p;
  }

  void write(std::map<std::string, std::string>& m) const {
    m["dim"] = std::to_string(dim);
    m["crop"] = std::to_string(crop[0]) + " " + std::to_string(crop[1]) + " " + std::to_string(crop[2]);
    char buf[128];
    std::snprintf(buf, sizeof buf, "%.17g %.17g %.17g", prep.spacing[0], prep.spacing[1], prep.spacing[2]);
    m["spacing"] = buf;
    m["canonical"] = prep.canonical ? "1" : "0";
    m["normalisation"] = prep.zscore ? "zscore" : "percentile";
    std::snprintf(buf, sizeof buf, "%.17g %.17g", prep.p_lo, prep.p_hi);
    m["percentiles"] = buf;
    m["intensity_a"] = map_a.to_string();
    m["intensity_b"] = map_b.to_string();
    for (const auto& [key, w] : {std::pair<const char*, const std::array<double, 2>*>{"window_a", &window_a},
                                 std::pair<const char*, const std::array<double, 2>*>{"window_b", &window_b}})
      if ((*w)[1] > (*w)[0]) {
        std::snprintf(buf, sizeof buf, "%.17g %.17g", (*w)[0], (*w)[1]);
        m[key] = buf;
      }
  }
  /// From the "user.*" metadata of a checkpoint (`path` names it in errors).
  static DataInfo read(const io::SafeTensorsFile& f, const std::string& path) {
    auto get = [&](const std::string& k) -> std::string {
      DICYC_CHECK(f.has_metadata("user." + k), SerializationError,
                  "checkpoint '" << path << "' has no '" << k << "' entry: was it written by dicyc-train or a train::Trainer?");
      return f.metadata("user." + k);
    };
    DataInfo d;
    auto parse = [&](const std::string& key, auto&... out) {
      std::istringstream in(get(key));
      (in >> ... >> out);
      DICYC_CHECK(!in.fail(), SerializationError, "checkpoint '" << path << "': corrupt '" << key << "' entry '" << get(key) << "'");
    };
    parse("dim", d.dim);
    DICYC_CHECK(d.dim == 2 || d.dim == 3, SerializationError, "checkpoint '" << path << "': bad dim " << d.dim);
    parse("crop", d.crop[0], d.crop[1], d.crop[2]);
    parse("spacing", d.prep.spacing[0], d.prep.spacing[1], d.prep.spacing[2]);
    d.prep.canonical = get("canonical") == "1";
    d.prep.zscore = get("normalisation") == "zscore";
    parse("percentiles", d.prep.p_lo, d.prep.p_hi);
    d.map_a = data::IntensityMap::from_string(get("intensity_a"));
    d.map_b = data::IntensityMap::from_string(get("intensity_b"));
    DICYC_CHECK(d.prep.p_lo >= 0 && d.prep.p_lo < d.prep.p_hi && d.prep.p_hi <= 100, SerializationError,
                "checkpoint '" << path << "': corrupt 'percentiles' entry '" << get("percentiles") << "'");
    for (int k = 0; k < 3; ++k)
      DICYC_CHECK(d.crop[k] >= 1 && std::isfinite(d.prep.spacing[k]) && d.prep.spacing[k] >= 0, SerializationError,
                  "checkpoint '" << path << "': corrupt 'crop' or 'spacing' entry");
    if (f.has_metadata("user.window_a")) parse("window_a", d.window_a[0], d.window_a[1]);
    if (f.has_metadata("user.window_b")) parse("window_b", d.window_b[0], d.window_b[1]);
    for (const auto& w : {d.window_a, d.window_b})
      DICYC_CHECK(std::isfinite(w[0]) && std::isfinite(w[1]), SerializationError,
                  "checkpoint '" << path << "': corrupt intensity window");
    return d;
  }
};

/// The settings besides the model's that decide the data stream and where the run ends.
struct RunSettings {
  std::uint64_t seed = 1;
  Index batch = 1;
  double min_foreground = 0.1;
  data::AugmentOptions augment;
  std::int64_t max_iters = 0;  // 0: the schedule's end
  std::int64_t checkpoint_every = 500, sample_every = 500;
  /// float, half or bf16 (float weights with bf16 convolutions: the weights alone do not say it).
  std::string precision = "float";

  /// The stored keys, each with whether a different value changes the data stream (a resume with
  /// it then no longer reproduces the uninterrupted run).
  template <class F>
  void each(F&& f) {
    f("seed", seed, true);
    f("batch", batch, true);
    f("min_foreground", min_foreground, true);
    f("augment", augment.enabled, true);
    f("rotation", augment.rotation, true);
    f("scale", augment.scale, true);
    f("shear", augment.shear, true);
    f("translation", augment.translation, true);
    f("flip", augment.flip, true);
    f("max_iters", max_iters, false);
    f("checkpoint_every", checkpoint_every, false);
    f("sample_every", sample_every, false);
    f("precision", precision, true);
  }
  nlohmann::json to_json() const {
    nlohmann::json j;
    const_cast<RunSettings*>(this)->each([&](const char* k, const auto& v, bool) { j[k] = v; });
    return j;
  }
  /// A resume: takes the stored value of every key not in `given` (the ones the caller set
  /// explicitly); for a given one that differs, adds a note naming the key and the stored value.
  std::vector<std::string> restore(const nlohmann::json& stored, const std::set<std::string>& given) {
    std::vector<std::string> notes;
    each([&](const char* k, auto& field, bool stream) {
      using F = std::decay_t<decltype(field)>;
      if (!stored.contains(k)) return;
      F v{};
      try {
        v = stored.at(k).get<F>();
      } catch (const std::exception& e) {
        DICYC_CHECK(false, SerializationError, "the checkpoint's run setting '" << k << "' is corrupt: " << e.what());
      }
      if (!given.count(k)) field = v;
      else if (!(v == field))
        notes.push_back(std::string(k) + " differs from the checkpoint's setting (" + stored.at(k).dump() + ")" +
                        (stream ? ": the resumed run will not reproduce an uninterrupted one" : ""));
    });
    return notes;
  }
};

/// Everything a training checkpoint says about its run, read with one open of the file.
struct RunInfo {
  DataInfo data;
  bool has_data_info = false;  // false: a checkpoint of a run that stored no data preparation
  RunSettings run;
  bool has_run_settings = false;  // false: written before run settings were stored
  std::map<std::string, std::string> user;  // the caller's own keys (without "user.")
  // The model's side (read only): its configuration (ModelOptions JSON), dimension, scalar type
  // ("F32", "F16", ...) and iteration.
  std::string model_config, scalar;
  std::int64_t iteration = 0;
  /// The checkpoint, opened and its header validated (tensors are read on demand): a resume loads
  /// the model from it (TrainerOptions::resume_from) instead of opening the file again.
  std::shared_ptr<const io::SafeTensorsFile> file;

  /// The "user.*" entries of a checkpoint (without the prefix; the model's save() adds it).
  std::map<std::string, std::string> metadata() const {
    std::map<std::string, std::string> m = user;
    if (has_data_info) data.write(m);
    m["train"] = run.to_json().dump();
    return m;
  }

  static RunInfo read(const std::string& path) {
    RunInfo r;
    r.file = std::make_shared<const io::SafeTensorsFile>(io::SafeTensorsFile::open(path));
    const io::SafeTensorsFile& f = *r.file;
    DICYC_CHECK(f.has_metadata("config") && f.has_metadata("scalar"), SerializationError,
                "'" << path << "' is not a dicyc training checkpoint (no model configuration)");
    r.model_config = f.metadata("config");
    r.scalar = f.metadata("scalar");
    // Values a tool acts on are checked here, before anything is built from them.
    DICYC_CHECK(r.scalar == "F32" || r.scalar == "F16", SerializationError,
                "checkpoint '" << path << "': scalar type '" << r.scalar << "' (expected F32 or F16): the metadata is corrupt");
    try {
      const auto j = nlohmann::json::parse(r.model_config);
      DICYC_CHECK(j.is_object(), SerializationError, "not an object");
    } catch (const std::exception& e) {
      DICYC_CHECK(false, SerializationError, "checkpoint '" << path << "': corrupt model configuration: " << e.what());
    }
    if (f.has_metadata("dim"))
      DICYC_CHECK(f.metadata("dim") == "2" || f.metadata("dim") == "3", SerializationError,
                  "checkpoint '" << path << "': dimension '" << f.metadata("dim") << "' (expected 2 or 3)");
    if (f.has_metadata("iteration")) {
      r.iteration = io::parse_int(f.metadata("iteration"), "iteration");
      DICYC_CHECK(r.iteration >= 0, SerializationError, "checkpoint '" << path << "': negative iteration");
    }
    if (f.has_metadata("user.dim")) {
      r.data = DataInfo::read(f, path);
      r.has_data_info = true;
      DICYC_CHECK(!f.has_metadata("dim") || f.metadata("dim") == std::to_string(r.data.dim), SerializationError,
                  "checkpoint '" << path << "': the model is " << f.metadata("dim") << "-D but the data entries say "
                                 << r.data.dim << "-D");
    }
    if (f.has_metadata("user.train")) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(f.metadata("user.train"));
      } catch (const std::exception& e) {
        DICYC_CHECK(false, SerializationError, "checkpoint '" << path << "': corrupt run settings: " << e.what());
      }
      (void)r.run.restore(j, {});
      r.has_run_settings = true;
    }
    static const std::set<std::string> ours{"dim",         "crop",        "spacing",  "canonical", "normalisation",
                                            "percentiles", "intensity_a", "intensity_b", "window_a", "window_b",
                                            "train"};
    for (const auto& [k, v] : f.metadata())
      if (k.rfind("user.", 0) == 0 && !ours.count(k.substr(5))) r.user[k.substr(5)] = v;
    return r;
  }
};

}  // namespace dicyc::train
