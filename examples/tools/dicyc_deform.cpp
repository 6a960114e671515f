// dicyc-deform: the IXI-style simulated-deformation protocol (dicyc-spec section 6) on a dataset.
//
//   dicyc-deform --in t1/ [--paired pd/] --out deformed/ [--dim 2] [--amplitude 0.06] [--seed 1]
//
// Every volume of --in gets ONE domain-specific warp (a seeded random TPS on a --control grid,
// control displacements up to --amplitude of the field of view) composed with its own small
// random jitter (--jitter amplitude, plus --jitter-rotation degrees and --jitter-translation),
// in the volume's RAS+ voxel order: per axial slice in 2-D (the same 2-D warp on every slice), as
// one 3-D warp in 3-D. Written (on each input's own grid and geometry, in its own units):
//   <out>/deformed/<name>.nii.gz    the deformed volume: the training data of domain B
//   <out>/truth_ab/<name>.nii.gz    the undeformed volume: the ground truth of A -> B
//   <out>/truth_ba/<name>.nii.gz    with --paired: the paired A volume warped the same way, the
//                                   ground truth of B -> A from the deformed volume
//   <out>/fields/<name>.safetensors the warp's parameters (domain and jitter: control grid,
//                                   displacements, affine) and both dense displacement fields in
//                                   normalised [-1, 1] units, (Dim, x, y[, z]); enough to rebuild
//                                   every ground truth.
#include <cxxopts.hpp>

#include <iostream>

#include "common.hpp"
#include "dicyc/tps.hpp"

using namespace tools;
namespace fs = std::filesystem;

namespace {

template <int Dim>
void add_deformation(dicyc::io::SafeTensorsWriter& w, const std::string& tag, const dicyc::tps::Deformation<Dim>& d,
                     const std::array<Index, Dim>& ext) {
  std::vector<double> disp(d.control_displacements().data(), d.control_displacements().data() + d.control_displacements().size());
  w.add(tag + ".control_displacements", {d.control_displacements().cols(), Dim}, disp.data());
  std::vector<double> aff(Dim * (Dim + 1));
  for (int r = 0; r < Dim; ++r)
    for (int c = 0; c <= Dim; ++c) aff[r * (Dim + 1) + c] = d.affine()(r, c);
  w.add(tag + ".affine", {Dim, Dim + 1}, aff.data());
  std::string g;
  for (int k = 0; k < Dim; ++k) g += (k ? " " : "") + std::to_string(d.control()[k]);
  w.metadata(tag + ".control_grid", g);
  // Dense displacement (Dim, x, y[, z]) stored as torch-style row-major [Dim, z, y, x].
  const auto field = d.displacement(ext);
  std::vector<float> f(field.size());
  Index P = 1;
  for (Index e : ext) P *= e;
  for (Index p = 0; p < P; ++p)
    for (int c = 0; c < Dim; ++c) f[c * P + p] = static_cast<float>(field[p * Dim + c]);
  std::vector<std::int64_t> shape{Dim};
  for (int k = Dim - 1; k >= 0; --k) shape.push_back(ext[k]);
  w.add(tag + ".displacement", shape, f.data());
}

template <int Dim>
int run(const std::vector<std::string>& inputs, const std::map<std::string, std::string>& paired, const std::string& out,
        const dicyc::tps::DeformOptions& domain_opt, const dicyc::tps::DeformOptions& jitter_opt, std::uint64_t seed,
        int threads) {
  using namespace dicyc;
  using Dev = Eigen::ThreadPoolDevice;
  core::Context<Dev> ctx(threads);
  for (const char* d : {"deformed", "truth_ab", "truth_ba", "fields"}) fs::create_directories(out + "/" + d);
  const auto domain = tps::simulate_deformation<Dim>(domain_opt, seed * 7919 + 1);
  std::printf("domain warp: %dx%d%s control grid, amplitude %.3g of the field of view, seed %llu\n",
              static_cast<int>(domain_opt.control()), static_cast<int>(domain_opt.control()), Dim == 3 ? "x.." : "",
              domain_opt.amplitude(), static_cast<unsigned long long>(seed));
  std::size_t i = 0;
  for (const auto& path : inputs) {
    const std::string name = strip_nifti_ext(fs::path(path).filename().string());
    const io::Volume src = io::read_nifti(path);
    const auto jitter = tps::simulate_deformation<Dim>(jitter_opt, seed * 1000 + 500 + i++);
    auto warp = [&](const io::Volume& v) {
      const io::Volume c = data::reorient_canonical(v);
      const auto d = c.dim();
      io::Volume w1 = c, w2 = c;
      if constexpr (Dim == 2) {
        ConstTensorMap<float, 4> in(c.data.data(), 1, d[0], d[1], d[2]);
        TensorMap<float, 4> mid(w1.data.data(), 1, d[0], d[1], d[2]);
        domain.template apply<float>(ctx, in, mid);
        ConstTensorMap<float, 4> mc(w1.data.data(), 1, d[0], d[1], d[2]);
        TensorMap<float, 4> o(w2.data.data(), 1, d[0], d[1], d[2]);
        jitter.template apply<float>(ctx, mc, o);
      } else {
        ConstTensorMap<float, 5> in(c.data.data(), 1, d[0], d[1], d[2], 1);
        TensorMap<float, 5> mid(w1.data.data(), 1, d[0], d[1], d[2], 1);
        domain.template apply<float>(ctx, in, mid);
        ConstTensorMap<float, 5> mc(w1.data.data(), 1, d[0], d[1], d[2], 1);
        TensorMap<float, 5> o(w2.data.data(), 1, d[0], d[1], d[2], 1);
        jitter.template apply<float>(ctx, mc, o);
      }
      return data::resample_like(w2, v);  // a pure axis permutation back: exact
    };
    io::write_nifti(out + "/deformed/" + name + ".nii.gz", warp(src));
    io::write_nifti(out + "/truth_ab/" + name + ".nii.gz", src);
    if (paired.count(name)) {
      const io::Volume a = io::read_nifti(paired.at(name));
      DICYC_CHECK(a.dim() == src.dim(), ShapeError,
                  "--paired '" << paired.at(name) << "' does not share the grid of '" << path << "'");
      io::write_nifti(out + "/truth_ba/" + name + ".nii.gz", warp(a));
    }
    io::SafeTensorsWriter w;
    const auto cd = data::reorient_canonical(src).dim();
    std::array<Index, Dim> ext;
    for (int k = 0; k < Dim; ++k) ext[k] = cd[k];
    add_deformation<Dim>(w, "domain", domain, ext);
    add_deformation<Dim>(w, "jitter", jitter, ext);
    w.metadata("composition", "deformed(p) = volume(domain(jitter(p))), normalised coordinates, align_corners=false, "
                              "RAS+ voxel order" + std::string(Dim == 2 ? ", every axial slice" : ""));
    w.metadata("source", path);
    w.write(out + "/fields/" + name + ".safetensors");
    std::printf("  %s -> %s/deformed/%s.nii.gz%s\n", path.c_str(), out.c_str(), name.c_str(),
                paired.count(name) ? " (+ truth_ba)" : "");
    std::fflush(stdout);
  }
  return kOk;
}

int main_impl(int argc, char** argv) {
  cxxopts::Options o("dicyc-deform", "Apply the simulated domain-specific deformation to a dataset");
  o.add_options()
    ("in", "volumes to deform (domain B): folder, list or file", cxxopts::value<std::string>())
    ("paired", "registered domain-A volumes with the same names: their warped copies are the B -> A ground truth", cxxopts::value<std::string>())
    ("out", "output folder", cxxopts::value<std::string>()->default_value("deformed"))
    ("dim", "2: one 2-D warp per axial slice; 3: one 3-D warp", cxxopts::value<int>()->default_value("2"))
    ("control", "control points per axis", cxxopts::value<int>()->default_value("4"))
    ("amplitude", "domain warp amplitude (fraction of the field of view)", cxxopts::value<double>()->default_value("0.06"))
    ("jitter", "per-volume jitter amplitude", cxxopts::value<double>()->default_value("0.01"))
    ("jitter-rotation", "per-volume jitter rotation (degrees)", cxxopts::value<double>()->default_value("3"))
    ("jitter-translation", "per-volume jitter translation (fraction of the field of view)", cxxopts::value<double>()->default_value("0.02"))
    ("seed", "seed", cxxopts::value<unsigned long long>()->default_value("1"))
    ("threads", "CPU threads", cxxopts::value<int>()->default_value("2"))
    ("h,help", "this help");
  const auto r = parse(o, argc, argv);
  if (r.count("help")) {
    std::cout << o.help() << "\n";
    return kOk;
  }
  const std::string in = r.count("in") ? r["in"].as<std::string>() : "";
  require_data("--in", in);
  std::map<std::string, std::string> paired;
  if (r.count("paired")) {
    require_data("--paired", r["paired"].as<std::string>());
    for (const auto& p : dicyc::data::list_volumes(r["paired"].as<std::string>()))
      paired[strip_nifti_ext(fs::path(p).filename().string())] = p;
  }
  const int dim = r["dim"].as<int>();
  TOOL_REQUIRE(dim == 2 || dim == 3, "--dim must be 2 or 3, got " << dim);
  const int control = r["control"].as<int>(), threads = r["threads"].as<int>();
  TOOL_REQUIRE(control >= 2 && control <= 32, "--control must be in [2, 32]");
  TOOL_REQUIRE(threads >= 1 && threads <= 256, "--threads must be in [1, 256]");
  const double amp = r["amplitude"].as<double>(), jit = r["jitter"].as<double>(),
               jrot = r["jitter-rotation"].as<double>(), jtr = r["jitter-translation"].as<double>();
  TOOL_REQUIRE(amp >= 0 && amp <= 0.5 && jit >= 0 && jit <= 0.5 && jrot >= 0 && jrot <= 45 && jtr >= 0 && jtr <= 0.5,
               "--amplitude and --jitter must be in [0, 0.5], --jitter-rotation in [0, 45], --jitter-translation in [0, 0.5]");
  const auto domain = dicyc::tps::DeformOptions().control(control).amplitude(amp);
  const auto jitter = dicyc::tps::DeformOptions().control(control).amplitude(jit).rotation(jrot).translation(jtr);
  const auto inputs = dicyc::data::list_volumes(in);
  const std::string out = r["out"].as<std::string>();
  const auto seed = r["seed"].as<unsigned long long>();
  return dim == 2 ? run<2>(inputs, paired, out, domain, jitter, seed, threads)
                  : run<3>(inputs, paired, out, domain, jitter, seed, threads);
}

}  // namespace

int main(int argc, char** argv) { return run_tool("dicyc-deform", [&] { return main_impl(argc, argv); }); }
