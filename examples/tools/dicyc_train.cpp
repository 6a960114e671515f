// dicyc-train: trains any of the seven models on two unpaired sets of NIfTI volumes.
//
//   dicyc-train --domain-a mr/ --domain-b ct/ --model dicyc --out run1
//   dicyc-train -a mr/ -b ct/ --out run1 --resume        # continues from run1/checkpoint.safetensors
//
// Writes into --out: checkpoint.safetensors (atomically, every --checkpoint-every iterations, at
// the end and on Ctrl-C), losses.csv (every loss term of every iteration), samples/iter_*.png
// (source | undeformed | deformed | cycle | checkerboard) and report.html (self-contained).
#include "dicyc/core/openmp_env.hpp"
#include "impl.hpp"

using namespace tools;

namespace {

int main_impl(int argc, char** argv) {
  cxxopts::Options o("dicyc-train", "Train a DiCyc / CycleGAN-family model on unpaired NIfTI volumes");
  o.add_options("data")
    ("a,domain-a", "domain A: a folder of .nii/.nii.gz files, a text file listing them, or one file", cxxopts::value<std::string>())
    ("b,domain-b", "domain B (as --domain-a)", cxxopts::value<std::string>())
    ("spacing", "resample to this spacing in mm: 0 keeps the files' spacing, '1.8' or '1,1,2'", cxxopts::value<std::string>()->default_value("0"))
    ("zscore", "z-score intensities (needs --no-tanh) instead of percentiles -> [-1, 1]")
    ("percentiles", "low,high percentiles mapped to -1 and 1", cxxopts::value<std::string>()->default_value("0.5,99.5"))
    ("window-a", "domain A: a fixed intensity window lo,hi mapped to -1 and 1 instead of percentiles (e.g. "
                 "-1024,3000 for CT in HU: bone is kept); stored in the checkpoint, so dicyc-synth writes these units",
     cxxopts::value<std::string>())
    ("window-b", "domain B: the same (e.g. --window-b -1024,3000 for MR -> CT)", cxxopts::value<std::string>())
    ("volume", "the volume to use from 4-D files", cxxopts::value<int>()->default_value("-1"))
    ("no-reorient", "keep the files' voxel order (default: reorient to RAS+ so axial slices agree)")
    ("crop", "training crop size (multiple of 4); 3-D: also --crop-z", cxxopts::value<int>()->default_value("128"))
    ("crop-z", "3-D crop depth (multiple of 4); default: --crop", cxxopts::value<int>()->default_value("0"))
    ("batch", "images per batch", cxxopts::value<int>()->default_value("1"))
    ("min-foreground", "least foreground fraction of each crop (crops are centred on foreground voxels and drawn again "
                       "until they have it; 0: any crop)", cxxopts::value<double>()->default_value("0.1"))
    ("no-augment", "no random affine augmentation")
    ("rotation", "augmentation: max rotation (degrees)", cxxopts::value<double>()->default_value("10"))
    ("scale", "augmentation: max relative scale change", cxxopts::value<double>()->default_value("0.1"))
    ("shear", "augmentation: max shear", cxxopts::value<double>()->default_value("0.05"))
    ("translation", "augmentation: max translation (fraction of the crop)", cxxopts::value<double>()->default_value("0.05"))
    ("flip", "augmentation: left-right flip probability", cxxopts::value<double>()->default_value("0.5"));
  o.add_options("model")
    ("model", "cyclegan, gcc-cyclegan, mind-cyclegan, nmi-cyclegan, dicyc (= nmi-dicyc), gcc-dicyc, mind-dicyc", cxxopts::value<std::string>()->default_value("dicyc"))
    ("dim", "2 (axial slices) or 3 (patches)", cxxopts::value<int>()->default_value("2"))
    ("precision", "float, half or bf16 (CPU: float weights and Adam, the convolutions in bfloat16 on oneDNN; "
                  "stored in the checkpoint, so a resume keeps it)", cxxopts::value<std::string>()->default_value("float"))
    ("device", "cpu, gpu or gpu:<index> (gpu needs tools built with CUDA)", cxxopts::value<std::string>()->default_value("cpu"))
    ("threads", "CPU threads", cxxopts::value<int>()->default_value("2"))
    ("ngf", "generator width", cxxopts::value<int>()->default_value("64"))
    ("ndf", "discriminator width", cxxopts::value<int>()->default_value("64"))
    ("blocks", "generator residual blocks", cxxopts::value<int>()->default_value("9"))
    ("d-layers", "discriminator layers", cxxopts::value<int>()->default_value("3"))
    ("pool-size", "fake-image pool per domain (and per rank) for the discriminator (0: none)",
     cxxopts::value<long long>()->default_value("50"))
    ("control-points", "DiCyc TPS control points per axis", cxxopts::value<int>()->default_value("6"))
    ("em", "DiCyc EM step: single or sequential", cxxopts::value<std::string>()->default_value("single"));
  o.add_options("training")
    ("iters-per-epoch", "iterations per epoch", cxxopts::value<long long>()->default_value("1000"))
    ("epochs", "epochs at the constant learning rate", cxxopts::value<long long>()->default_value("100"))
    ("decay-epochs", "epochs of linear decay to 0", cxxopts::value<long long>()->default_value("100"))
    ("early-stop", "stop a phase early when the epoch loss stops improving")
    ("max-iters", "stop after this many iterations in all (0: the schedule's)", cxxopts::value<long long>()->default_value("0"))
    ("lr", "learning rate", cxxopts::value<double>()->default_value("2e-4"))
    ("lambda-cyc", "cycle loss weight", cxxopts::value<double>()->default_value("10"))
    ("lambda-id", "identity loss weight", cxxopts::value<double>()->default_value("0"))
    ("lambda-dicyc", "deformation-invariant cycle loss weight", cxxopts::value<double>()->default_value("10"))
    ("align-weight", "alignment loss weight (default: the preset's 0.9)", cxxopts::value<double>()->default_value("-1"))
    ("lambda-gan-plain", "DiCyc models, beyond the paper (0 there): weight of an adversarial term on the undeformed "
                         "outputs, the ones synthesis runs, which the paper's discriminators never see (docs/demo.md: "
                         "on MR -> CT they keep the MR's contrast without it)", cxxopts::value<double>()->default_value("0"))
    ("seed", "seed", cxxopts::value<unsigned long long>()->default_value("1"));
  o.add_options("output")
    ("out", "output folder", cxxopts::value<std::string>()->default_value("dicyc_run"))
    ("checkpoint-every", "iterations between checkpoints", cxxopts::value<long long>()->default_value("500"))
    ("sample-every", "iterations between sample grids (0: none)", cxxopts::value<long long>()->default_value("500"))
    ("log-every", "iterations between progress lines", cxxopts::value<long long>()->default_value("10"))
    ("resume", "continue from <out>/checkpoint.safetensors with its model, data and run settings (seed, batch, "
               "augmentation, --max-iters, ...); flags given with it override them")
    ("mpi-timeout", "under mpirun: seconds one collective may wait for the other ranks before this rank ends the "
                    "job (0: no limit)", cxxopts::value<double>()->default_value("900"))
    ("max-memory", "memory limit for the up-front check, in GiB; auto: what the machine (cgroup, MemAvailable) "
                   "leaves; off: no check", cxxopts::value<std::string>()->default_value("auto"))
    ("no-tanh", "unbounded generator output (for --zscore)")
    ("debug-nan-at", "testing hook: put a NaN into domain A's batch at this iteration", cxxopts::value<long long>()->default_value("0"))
    ("h,help", "this help");
  const auto r = parse(o, argc, argv);
  if (r.count("help")) {
    std::cout << o.help() << "\n";
    return kOk;
  }
  TrainConfig c;
  for (const char* f : {"seed", "batch", "min-foreground", "no-augment", "rotation", "scale", "shear", "translation", "flip",
                        "max-iters", "checkpoint-every", "sample-every", "precision",
                        // model and data flags: on --resume, the loss weights and the schedule
                        // replace the checkpoint's (with a note); the networks and the data
                        // preparation cannot change (a differing value is refused)
                        "model", "ngf", "ndf", "blocks", "d-layers", "pool-size", "control-points", "em", "no-tanh",
                        "lambda-cyc", "lambda-id", "lambda-dicyc", "align-weight", "lambda-gan-plain", "lr", "epochs", "decay-epochs",
                        "iters-per-epoch", "early-stop", "spacing", "zscore", "percentiles", "window-a", "window-b",
                        "no-reorient", "volume", "crop", "crop-z"})
    if (r.count(f)) c.given.insert(f);
  c.max_memory = parse_max_memory(r["max-memory"].as<std::string>());
  c.mpi_timeout = r["mpi-timeout"].as<double>();
  TOOL_REQUIRE(c.mpi_timeout >= 0, "--mpi-timeout must be >= 0 seconds");
  c.a = r.count("domain-a") ? r["domain-a"].as<std::string>() : "";
  c.b = r.count("domain-b") ? r["domain-b"].as<std::string>() : "";
  require_data("--domain-a (domain A data)", c.a);
  require_data("--domain-b (domain B data)", c.b);
  c.out = r["out"].as<std::string>();
  TOOL_REQUIRE(!c.out.empty(), "--out must name a folder");
  c.model = r["model"].as<std::string>();
  (void)dicyc::model::ModelOptions::preset(c.model);  // a typo fails here, with the list of names
  c.dim = r["dim"].as<int>();
  TOOL_REQUIRE(c.dim == 2 || c.dim == 3, "--dim must be 2 or 3, got " << c.dim);
  const std::string prec = r["precision"].as<std::string>();
  TOOL_REQUIRE(prec == "float" || prec == "half" || prec == "bf16",
               "--precision must be float, half or bf16, got '" << prec << "'");
  c.half = prec == "half";
  c.precision = prec;
  parse_device(r["device"].as<std::string>(), c.device, c.gpu);
  c.threads = r["threads"].as<int>();
  TOOL_REQUIRE(c.threads >= 1 && c.threads <= 256, "--threads must be in [1, 256], got " << c.threads);
  const int crop = r["crop"].as<int>(), cz = r["crop-z"].as<int>() > 0 ? r["crop-z"].as<int>() : crop;
  TOOL_REQUIRE(crop >= 8 && crop % 4 == 0 && crop <= 4096, "--crop must be a multiple of 4 in [8, 4096], got " << crop);
  TOOL_REQUIRE(cz >= 8 && cz % 4 == 0 && cz <= 4096, "--crop-z must be a multiple of 4 in [8, 4096], got " << cz);
  c.crop = {crop, crop, c.dim == 3 ? cz : 1};
  c.batch = r["batch"].as<int>();
  TOOL_REQUIRE(c.batch >= 1 && c.batch <= 1024, "--batch must be in [1, 1024], got " << c.batch);
  c.prep.spacing = parse_spacing(r["spacing"].as<std::string>());
  c.prep.zscore = r.count("zscore") > 0;
  c.prep.canonical = r.count("no-reorient") == 0;
  c.prep.volume = r["volume"].as<int>();
  {
    const std::string p = r["percentiles"].as<std::string>();
    char* end = nullptr;
    c.prep.p_lo = std::strtod(p.c_str(), &end);
    TOOL_REQUIRE(end && *end == ',', "--percentiles: expected 'low,high', got '" << p << "'");
    c.prep.p_hi = std::strtod(end + 1, &end);
    TOOL_REQUIRE(end && *end == '\0' && c.prep.p_lo >= 0 && c.prep.p_lo < c.prep.p_hi && c.prep.p_hi <= 100,
                 "--percentiles: expected 0 <= low < high <= 100, got '" << p << "'");
  }
  for (const char d : {'a', 'b'}) {
    const std::string flag = std::string("window-") + d;
    if (!r.count(flag)) continue;
    const std::string w = r[flag].as<std::string>();
    char* end = nullptr;
    auto& win = d == 'a' ? c.window_a : c.window_b;
    win[0] = std::strtod(w.c_str(), &end);
    TOOL_REQUIRE(end && end != w.c_str() && *end == ',', "--" << flag << ": expected 'lo,hi', got '" << w << "'");
    const char* second = end + 1;
    win[1] = std::strtod(second, &end);
    TOOL_REQUIRE(end && end != second && *end == '\0' && std::isfinite(win[0]) && std::isfinite(win[1]) && win[0] < win[1],
                 "--" << flag << ": expected finite lo < hi, got '" << w << "'");
    TOOL_REQUIRE(!r.count("zscore"), "--" << flag << " and --zscore exclude each other (a window maps to [-1, 1])");
  }
  c.min_foreground = r["min-foreground"].as<double>();
  TOOL_REQUIRE(c.min_foreground >= 0 && c.min_foreground < 1, "--min-foreground must be in [0, 1)");
  c.augment.enabled = r.count("no-augment") == 0;
  c.augment.rotation = r["rotation"].as<double>();
  c.augment.scale = r["scale"].as<double>();
  c.augment.shear = r["shear"].as<double>();
  c.augment.translation = r["translation"].as<double>();
  c.augment.flip = r["flip"].as<double>();
  TOOL_REQUIRE(c.augment.rotation >= 0 && c.augment.rotation <= 180 && c.augment.scale >= 0 && c.augment.scale < 1 &&
                   c.augment.shear >= 0 && c.augment.shear < 1 && c.augment.translation >= 0 &&
                   c.augment.translation <= 1 && c.augment.flip >= 0 && c.augment.flip <= 1,
               "augmentation: rotation in [0, 180], scale and shear in [0, 1), translation and flip in [0, 1]");
  c.ngf = r["ngf"].as<int>();
  c.ndf = r["ndf"].as<int>();
  c.blocks = r["blocks"].as<int>();
  c.n_layers = r["d-layers"].as<int>();
  c.pool_size = r["pool-size"].as<long long>();
  TOOL_REQUIRE(c.pool_size >= 0, "--pool-size must be >= 0");
  c.control_points = r["control-points"].as<int>();
  TOOL_REQUIRE(c.ngf >= 1 && c.ndf >= 1 && c.blocks >= 0 && c.n_layers >= 1 && c.control_points >= 2,
               "--ngf, --ndf, --d-layers must be >= 1, --blocks >= 0, --control-points >= 2");
  c.em = r["em"].as<std::string>();
  TOOL_REQUIRE(c.em == "single" || c.em == "sequential", "--em must be single or sequential");
  c.iterations_per_epoch = r["iters-per-epoch"].as<long long>();
  c.epochs = r["epochs"].as<long long>();
  c.decay_epochs = r["decay-epochs"].as<long long>();
  c.early_stop = r.count("early-stop") > 0;
  c.max_iters = r["max-iters"].as<long long>();
  TOOL_REQUIRE(c.iterations_per_epoch >= 1 && c.epochs >= 0 && c.decay_epochs >= 0 && c.epochs + c.decay_epochs >= 1 &&
                   c.max_iters >= 0,
               "--iters-per-epoch must be >= 1, --epochs and --decay-epochs >= 0 (not both 0), --max-iters >= 0");
  c.lr = r["lr"].as<double>();
  c.lambda_cyc = r["lambda-cyc"].as<double>();
  c.lambda_id = r["lambda-id"].as<double>();
  c.lambda_dicyc = r["lambda-dicyc"].as<double>();
  c.align_weight = r["align-weight"].as<double>();
  c.lambda_gan_plain = r["lambda-gan-plain"].as<double>();
  TOOL_REQUIRE(std::isfinite(c.lambda_gan_plain), "--lambda-gan-plain must be a finite number >= 0");
  TOOL_REQUIRE(c.lr > 0 && c.lr < 1 && c.lambda_cyc >= 0 && c.lambda_id >= 0 && c.lambda_dicyc >= 0 && c.lambda_gan_plain >= 0,
               "--lr must be in (0, 1) and the loss weights >= 0");
  c.seed = r["seed"].as<unsigned long long>();
  c.checkpoint_every = r["checkpoint-every"].as<long long>();
  c.sample_every = r["sample-every"].as<long long>();
  c.log_every = r["log-every"].as<long long>();
  TOOL_REQUIRE(c.checkpoint_every >= 0 && c.sample_every >= 0 && c.log_every >= 1,
               "--checkpoint-every and --sample-every must be >= 0, --log-every >= 1");
  c.resume = r.count("resume") > 0;
  c.debug_nan_at = r["debug-nan-at"].as<long long>();
  const bool tanh = r.count("no-tanh") == 0;
  TOOL_REQUIRE(!(c.prep.zscore && tanh), "--zscore gives unbounded intensities: add --no-tanh");
  c.tanh = tanh;
  if (c.resume) {  // --resume needs neither --dim nor --precision: the checkpoint has both
    const std::string ckpt = c.out + "/checkpoint.safetensors";
    TOOL_REQUIRE(std::filesystem::exists(ckpt), "--resume: no checkpoint at '" << ckpt << "'");
    // The one read of the checkpoint's metadata (the model reads its tensors when it loads).
    c.resumed = std::make_shared<const dicyc::train::RunInfo>(dicyc::train::RunInfo::read(ckpt));
    TOOL_REQUIRE(c.resumed->has_data_info, "--resume: '" << ckpt << "' is not a dicyc-train checkpoint");
    const int dim = c.resumed->data.dim;
    const bool half = c.resumed->scalar == "F16";
    if (!r.count("dim")) c.dim = dim;
    c.crop[2] = c.dim == 3 ? cz : 1;  // --crop-z (compared with the checkpoint's) now that the dimension is known
    if (!r.count("precision")) {
      c.half = half;
      c.precision = half ? "half" : "float";  // a bf16 run's checkpoint is F32; its stored precision says bf16
    }
    TOOL_REQUIRE(c.dim == dim && c.half == half, "--resume: the checkpoint holds a " << dim << "-D " << (half ? "half" : "float")
                                                     << " model; drop --dim / --precision or make them match");
  }
#ifdef DICYC_TOOLS_2D_FLOAT_ONLY
  TOOL_REQUIRE(c.dim == 2 && !c.half, "this build of the tools has 2-D float models only (DICYC_TOOLS_VARIANTS=2d-float)");
  return run_train<2, float>(c);
#else
  if (c.dim == 2) return c.half ? run_train<2, Eigen::half>(c) : run_train<2, float>(c);
  return c.half ? run_train<3, Eigen::half>(c) : run_train<3, float>(c);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  dicyc::core::limit_openmp_spin(argv);  // GOMP_SPINCOUNT=1000 unless the user set one (see the header)
  return run_tool("dicyc-train", [&] { return main_impl(argc, argv); });
}
