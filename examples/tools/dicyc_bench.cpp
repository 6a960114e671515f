// dicyc-bench: per-iteration time of one model's training step and translation on this machine's
// CPU or GPU, on random images (batch 1, one channel), as one JSON line per run:
//
//   dicyc-bench --model nmi-dicyc --dim 2 --size 128 --ngf 64 --blocks 6 --ndf 64 --device gpu
//
// Medians, minima and maxima over --iters timed runs after --warmup; the training step includes
// the return of its losses to the host (so on a GPU, its completion). Used by
// scripts/gpu_check.sh and comparable with benchmarks/torch_reference.py's steps of the same
// networks (--device cuda there).
#include "dicyc/core/openmp_env.hpp"
#include "impl.hpp"

using namespace tools;

namespace {

int main_impl(int argc, char** argv) {
  cxxopts::Options o("dicyc-bench", "Time a model's training iterations and translations on random images");
  o.add_options()
    ("model", "cyclegan, gcc-cyclegan, mind-cyclegan, nmi-cyclegan, nmi-dicyc, gcc-dicyc, mind-dicyc",
     cxxopts::value<std::string>()->default_value("cyclegan"))
    ("dim", "2 or 3", cxxopts::value<int>()->default_value("2"))
    ("precision", "float or half", cxxopts::value<std::string>()->default_value("float"))
    ("size", "image side (a square or cube), a multiple of 4", cxxopts::value<int>()->default_value("128"))
    ("ngf", "generator width", cxxopts::value<int>()->default_value("64"))
    ("blocks", "residual blocks", cxxopts::value<int>()->default_value("6"))
    ("ndf", "discriminator width", cxxopts::value<int>()->default_value("64"))
    ("d-layers", "discriminator layers", cxxopts::value<int>()->default_value("3"))
    ("iters", "timed iterations", cxxopts::value<int>()->default_value("10"))
    ("warmup", "untimed iterations first", cxxopts::value<int>()->default_value("3"))
    ("threads", "CPU threads", cxxopts::value<int>()->default_value("2"))
    ("device", "cpu, gpu or gpu:<index>", cxxopts::value<std::string>()->default_value("cpu"))
    ("h,help", "this help");
  const auto r = parse(o, argc, argv);
  if (r.count("help")) {
    std::cout << o.help() << "\n";
    return kOk;
  }
  BenchConfig b;
  b.model = r["model"].as<std::string>();
  try {
    (void)dicyc::model::ModelOptions::preset(b.model);
  } catch (const dicyc::Error& e) {
    TOOL_REQUIRE(false, e.what());
  }
  const int dim = r["dim"].as<int>();
  TOOL_REQUIRE(dim == 2 || dim == 3, "--dim must be 2 or 3");
  const std::string prec = r["precision"].as<std::string>();
  TOOL_REQUIRE(prec == "float" || prec == "half", "--precision must be float or half");
  b.size = r["size"].as<int>();
  TOOL_REQUIRE(b.size >= 16 && b.size % 4 == 0 && b.size <= 4096, "--size must be a multiple of 4 in [16, 4096]");
  b.ngf = r["ngf"].as<int>();
  b.blocks = r["blocks"].as<int>();
  b.ndf = r["ndf"].as<int>();
  b.n_layers = r["d-layers"].as<int>();
  TOOL_REQUIRE(b.ngf >= 1 && b.ngf <= 1024 && b.ndf >= 1 && b.ndf <= 1024 && b.blocks >= 0 && b.blocks <= 64 &&
                   b.n_layers >= 1 && b.n_layers <= 6,
               "--ngf/--ndf must be in [1, 1024], --blocks in [0, 64], --d-layers in [1, 6]");
  b.iters = r["iters"].as<int>();
  b.warmup = r["warmup"].as<int>();
  TOOL_REQUIRE(b.iters >= 1 && b.iters <= 100000 && b.warmup >= 0 && b.warmup <= 1000, "--iters >= 1, --warmup >= 0");
  b.threads = r["threads"].as<int>();
  TOOL_REQUIRE(b.threads >= 1 && b.threads <= 256, "--threads must be in [1, 256]");
  parse_device(r["device"].as<std::string>(), b.device, b.gpu);
  const bool half = prec == "half";
#ifdef DICYC_TOOLS_2D_FLOAT_ONLY
  TOOL_REQUIRE(dim == 2 && !half, "this build of the tools has 2-D float models only (DICYC_TOOLS_VARIANTS=2d-float)");
  return run_bench<2, float>(b);
#else
  if (dim == 2) return half ? run_bench<2, Eigen::half>(b) : run_bench<2, float>(b);
  return half ? run_bench<3, Eigen::half>(b) : run_bench<3, float>(b);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  dicyc::core::limit_openmp_spin(argv);  // GOMP_SPINCOUNT=1000 unless the user set one (see the header)
  return run_tool("dicyc-bench", [&] { return main_impl(argc, argv); });
}
