// dicyc-synth: translates whole NIfTI volumes with a trained checkpoint.
//
//   dicyc-synth --checkpoint run1/checkpoint.safetensors --in mr/ --out pseudo_ct/ [--direction ab]
//
// Each input is prepared as in training (resampled, reoriented, normalised with its own
// percentiles), translated whole (2-D: every axial slice, uncropped; 3-D: overlapping tiles),
// mapped to the target domain's units with the checkpoint's intensity map (e.g. Hounsfield units),
// resampled back onto the input's own grid and written with the input's geometry, so it overlays
// the input in any viewer.
#include <algorithm>
#include "dicyc/core/openmp_env.hpp"
#include "impl.hpp"

using namespace tools;

namespace {

int main_impl(int argc, char** argv) {
  cxxopts::Options o("dicyc-synth", "Synthesize whole NIfTI volumes with a dicyc checkpoint");
  o.add_options()
    ("checkpoint", "a checkpoint written by dicyc-train", cxxopts::value<std::string>())
    ("in", "input volumes: a folder, a list file or one file", cxxopts::value<std::string>())
    ("out", "output folder (one <name>.nii.gz per input)", cxxopts::value<std::string>()->default_value("synth_out"))
    ("direction", "ab (A -> B) or ba (B -> A)", cxxopts::value<std::string>()->default_value("ab"))
    ("threads", "CPU threads", cxxopts::value<int>()->default_value("2"))
    ("mpi-timeout", "under mpirun: seconds one collective may wait for the other ranks before this rank ends the "
                    "job (0: no limit)", cxxopts::value<double>()->default_value("900"))
    ("max-memory", "memory limit for the up-front check, in GiB; auto: what the machine leaves; off: no check",
     cxxopts::value<std::string>()->default_value("auto"))
    ("batch", "2-D: slices per generator call", cxxopts::value<int>()->default_value("4"))
    ("tile", "3-D: tile size (multiple of 4); default: the training crop", cxxopts::value<int>()->default_value("0"))
    ("volume", "the volume to use from 4-D files", cxxopts::value<int>()->default_value("-1"))
    ("resampled-grid", "write on the resampled RAS+ grid the network saw instead of the input's grid")
    ("device", "cpu, gpu or gpu:<index> (gpu needs tools built with CUDA)", cxxopts::value<std::string>()->default_value("cpu"))
    ("h,help", "this help");
  const auto r = parse(o, argc, argv);
  if (r.count("help")) {
    std::cout << o.help() << "\n";
    return kOk;
  }
  SynthConfig c;
  c.checkpoint = r.count("checkpoint") ? r["checkpoint"].as<std::string>() : "";
  c.in = r.count("in") ? r["in"].as<std::string>() : "";
  require_data("--checkpoint", c.checkpoint);
  require_data("--in (input volumes)", c.in);
  c.out = r["out"].as<std::string>();
  c.direction = r["direction"].as<std::string>();
  TOOL_REQUIRE(c.direction == "ab" || c.direction == "ba", "--direction must be ab or ba, got '" << c.direction << "'");
  c.threads = r["threads"].as<int>();
  c.max_memory = parse_max_memory(r["max-memory"].as<std::string>());
  c.mpi_timeout = r["mpi-timeout"].as<double>();
  TOOL_REQUIRE(c.mpi_timeout >= 0, "--mpi-timeout must be >= 0 seconds");
  TOOL_REQUIRE(c.threads >= 1 && c.threads <= 256, "--threads must be in [1, 256]");
  c.batch = r["batch"].as<int>();
  TOOL_REQUIRE(c.batch >= 1 && c.batch <= 4096, "--batch must be >= 1");
  const int tile = r["tile"].as<int>();
  TOOL_REQUIRE(tile == 0 || (tile >= 8 && tile % 4 == 0), "--tile must be a multiple of 4, >= 8");
  c.tile = {tile, tile, tile};
  c.volume = r["volume"].as<int>();
  c.same_grid = r.count("resampled-grid") == 0;
  parse_device(r["device"].as<std::string>(), c.device, c.gpu);
  std::string config;
  DataMeta meta;
  bool half = false;
  {  // the metadata, with one open; the file (weights, Adam moments, pools) is not kept while synthesizing
    const auto info = dicyc::train::RunInfo::read(c.checkpoint);
    DICYC_CHECK(info.has_data_info, dicyc::SerializationError,
                "checkpoint '" << c.checkpoint << "' has no data preparation entries: was it written by dicyc-train?");
    // A weights file may hold one direction's generator only (models/ does): never synthesize
    // with the untrained weights of a generator the file does not have.
    const bool ab = c.direction == "ab";
    const std::string gen = ab ? "g_ab." : "g_ba.";
    const auto names = info.file->names();
    DICYC_CHECK(std::any_of(names.begin(), names.end(), [&](const std::string& n) { return n.rfind(gen, 0) == 0; }),
                dicyc::SerializationError,
                "'" << c.checkpoint << "' has no weights of the " << (ab ? "A -> B" : "B -> A") << " generator ("
                    << gen << "*): a weights file of the other direction? Use --direction " << (ab ? "ba" : "ab")
                    << " or a full checkpoint");
    meta = info.data;
    half = info.scalar == "F16";
    config = info.model_config;
  }
#ifdef DICYC_TOOLS_2D_FLOAT_ONLY
  TOOL_REQUIRE(meta.dim == 2 && !half, "this build of the tools has 2-D float models only (DICYC_TOOLS_VARIANTS=2d-float)");
  return run_synth<2, float>(c, config, meta);
#else
  if (meta.dim == 2) return half ? run_synth<2, Eigen::half>(c, config, meta) : run_synth<2, float>(c, config, meta);
  return half ? run_synth<3, Eigen::half>(c, config, meta) : run_synth<3, float>(c, config, meta);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  dicyc::core::limit_openmp_spin(argv);  // GOMP_SPINCOUNT=1000 unless the user set one (see the header)
  return run_tool("dicyc-synth", [&] { return main_impl(argc, argv); });
}
