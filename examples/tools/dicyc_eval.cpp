// dicyc-eval: scores synthesized volumes.
//
//   With ground truth:  dicyc-eval --pred dicyc_out/ --truth t1/ [--mask masks/] [--pred2 cyclegan_out/]
//     per-volume MSE, PSNR, SSIM (windowed, 3-D) and global SSIM; a summary (mean +- sd) as
//     Markdown and CSV; with --pred2, the same for the second method and paired t-tests (second
//     minus first would be the sign of `mean difference` reversed: it is pred - pred2).
//   Without ground truth: dicyc-eval --pred pseudo_ct/ --source mr/ [--mask masks/]
//     the alignment metrics between each source and its output: NMI (scikit-image's, 100 bins)
//     and the Dice overlap of their foreground masks.
//   With --fields deformed/fields/ (dicyc-deform's output, --truth the undeformed truth_ab/):
//     alpha, the fraction of the domain deformation each output carries (the scale of the
//     domain warp that best explains the output against the aligned truth: 0 aligned, 1 the
//     deformation copied; eval::deformation_fraction, NMI). 2-D warps: per axial slice with
//     >= 10 % foreground (at most --alpha-slices of them, evenly spaced), the volume's value the
//     median; 3-D: one value per volume.
//   With --ct (the truth a CT in HU): the synthetic-CT scores as SynthRAD2023 computes them
//     (eval/ct_metrics.hpp): MAE in HU, PSNR and SSIM with both images clipped to --ct-range
//     (2023: [-1024, 3000]; 2025: [-1024, 3071]; or lo,hi), inside --mask or, without one, the
//     truth's body mask (voxels above -500 HU, the largest 6-connected component, enclosed holes
//     filled); written to ct_metrics.csv and added to the summary and the t-tests.
// Both write checkerboard PNGs of the middle axial slice. Volumes pair up by file name. The
// intensity range for PSNR/SSIM is --range, or each ground truth's max - min.
#include <cxxopts.hpp>

#include <iostream>
#include <sstream>

#include "common.hpp"
#include "dicyc/eval.hpp"
#include "dicyc/eval/ct_metrics.hpp"
#include "dicyc/eval/deformation_fraction.hpp"

using namespace tools;
namespace fs = std::filesystem;

namespace {

struct Scores {
  std::vector<double> mse, psnr, ssim, gssim, alpha;
  std::vector<double> ct_mae, ct_psnr, ct_ssim;  // --ct
};

std::vector<std::uint8_t> foreground_of(const dicyc::io::VolumeData& v);

/// The domain warp dicyc-deform stored in fields/<name>.safetensors, and its dimension (2 or 3).
struct DomainWarp {
  int dim = 0;
  std::array<Index, 3> control{};
  Eigen::MatrixXd disp;
  Eigen::MatrixXd affine;  // dim x (dim + 1)
};

DomainWarp read_domain_warp(const std::string& path) {
  const auto f = dicyc::io::SafeTensorsFile::read(path);
  DICYC_CHECK(f.has("domain.control_displacements") && f.has("domain.affine") && f.has_metadata("domain.control_grid"),
              dicyc::SerializationError, "'" << path << "' is not a dicyc-deform fields file (no domain warp in it)");
  DomainWarp w;
  std::istringstream g(f.metadata("domain.control_grid"));
  Index K = 1, c = 0;
  while (g >> c) {
    DICYC_CHECK(w.dim < 3 && c >= 2, dicyc::SerializationError, "'" << path << "': bad domain.control_grid");
    w.control[static_cast<std::size_t>(w.dim++)] = c;
    K *= c;
  }
  DICYC_CHECK(w.dim == 2 || w.dim == 3, dicyc::SerializationError, "'" << path << "': bad domain.control_grid");
  std::vector<double> d(static_cast<std::size_t>(K * w.dim)), a(static_cast<std::size_t>(w.dim * (w.dim + 1)));
  f.read_into<double>("domain.control_displacements", {K, w.dim}, d.data());
  f.read_into<double>("domain.affine", {w.dim, w.dim + 1}, a.data());
  w.disp = Eigen::Map<Eigen::MatrixXd>(d.data(), w.dim, K);  // stored (K, Dim) row-major = (Dim, K) column-major
  w.affine.resize(w.dim, w.dim + 1);
  for (int r = 0; r < w.dim; ++r)
    for (int col = 0; col <= w.dim; ++col) w.affine(r, col) = a[static_cast<std::size_t>(r * (w.dim + 1) + col)];
  return w;
}

template <int Dim>
dicyc::tps::Deformation<Dim> to_deformation(const DomainWarp& w) {
  std::array<Index, Dim> c;
  for (int k = 0; k < Dim; ++k) c[k] = w.control[static_cast<std::size_t>(k)];
  typename dicyc::tps::Deformation<Dim>::Affine A = w.affine;
  return dicyc::tps::Deformation<Dim>(c, w.disp, A);
}

/// Alpha of one output against its aligned truth, both in the fields' RAS+ voxel order.
double volume_alpha(const DomainWarp& w, const dicyc::io::Volume& pred, const dicyc::io::Volume& truth, int max_slices,
                    int threads) {
  using Dev = Eigen::ThreadPoolDevice;
  dicyc::core::Context<Dev> ctx(threads);
  const auto p = dicyc::data::reorient_canonical(pred), t = dicyc::data::reorient_canonical(truth);
  const auto d = t.dim();
  if (w.dim == 3) {
    const dicyc::eval::Image<float, 3> ti(t.data.data(), d[0], d[1], d[2]), pi(p.data.data(), d[0], d[1], d[2]);
    return dicyc::eval::deformation_fraction<3>(ctx, to_deformation<3>(w), ti, pi).alpha;
  }
  const auto warp = to_deformation<2>(w);
  const auto fg = foreground_of(t.data);
  const Index plane = d[0] * d[1];
  std::vector<Index> zs;
  for (Index z = 0; z < d[2]; ++z) {
    Index n = 0;
    for (Index i = 0; i < plane; ++i) n += fg[static_cast<std::size_t>(z * plane + i)];
    if (n * 10 >= plane) zs.push_back(z);
  }
  DICYC_CHECK(!zs.empty(), dicyc::NumericError, "no axial slice of the truth has 10 % foreground; alpha is undefined");
  std::vector<double> alphas;
  const std::size_t n = std::min(zs.size(), static_cast<std::size_t>(max_slices));
  for (std::size_t k = 0; k < n; ++k) {
    const Index z = zs[n == 1 ? zs.size() / 2 : k * (zs.size() - 1) / (n - 1)];
    const dicyc::eval::Image<float, 2> ti(t.data.data() + z * plane, d[0], d[1]), pi(p.data.data() + z * plane, d[0], d[1]);
    alphas.push_back(dicyc::eval::deformation_fraction<2>(ctx, warp, ti, pi).alpha);
  }
  std::sort(alphas.begin(), alphas.end());
  const std::size_t m = alphas.size();
  return m % 2 ? alphas[m / 2] : 0.5 * (alphas[m / 2 - 1] + alphas[m / 2]);
}

std::map<std::string, std::string> by_name(const std::string& spec) {
  std::map<std::string, std::string> m;
  for (const auto& p : dicyc::data::list_volumes(spec)) m[strip_nifti_ext(fs::path(p).filename().string())] = p;
  return m;
}

using dicyc::eval::mean;
double sd(const std::vector<double>& v) { return dicyc::eval::sample_sd(v); }

/// 0/1 foreground (data::foreground_threshold at 10 % of the 0.5..99.5 percentile range).
std::vector<std::uint8_t> foreground_of(const dicyc::io::VolumeData& v) {
  const float thr = dicyc::data::foreground_threshold(v.data(), v.size(), 0.1);
  std::vector<std::uint8_t> f(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) f[i] = v.data()[i] > thr;
  return f;
}

int main_impl(int argc, char** argv) {
  cxxopts::Options o("dicyc-eval", "Score synthesized NIfTI volumes against ground truth, or their alignment with the source");
  o.add_options()
    ("pred", "synthesized volumes (folder, list or file)", cxxopts::value<std::string>())
    ("truth", "ground-truth volumes, paired by file name", cxxopts::value<std::string>())
    ("pred2", "a second method's volumes, for the paired t-test", cxxopts::value<std::string>())
    ("source", "without ground truth: the source volumes, for NMI and mask Dice", cxxopts::value<std::string>())
    ("mask", "masks (non-zero = inside), paired by file name", cxxopts::value<std::string>())
    ("range", "data range for PSNR and SSIM (default: each truth's max - min)", cxxopts::value<double>()->default_value("0"))
    ("names", "method names for the tables: first,second", cxxopts::value<std::string>()->default_value("pred,pred2"))
    ("fields", "with --truth: dicyc-deform's fields/ folder; adds alpha, the fraction of the domain deformation each output carries", cxxopts::value<std::string>())
    ("alpha-slices", "2-D warps: at most this many axial slices per volume for alpha", cxxopts::value<int>()->default_value("24"))
    ("ct", "with --truth (a CT in HU): SynthRAD's MAE, PSNR and SSIM inside --mask, or inside the truth's body mask "
           "(> -500 HU, largest connected component, holes filled)")
    ("ct-range", "HU range for --ct: 2023 ([-1024, 3000]), 2025 ([-1024, 3071]) or lo,hi",
     cxxopts::value<std::string>()->default_value("2023"))
    ("threads", "CPU threads (alpha)", cxxopts::value<int>()->default_value("2"))
    ("out", "output folder", cxxopts::value<std::string>()->default_value("eval_out"))
    ("h,help", "this help");
  const auto r = parse(o, argc, argv);
  if (r.count("help")) {
    std::cout << o.help() << "\n";
    return kOk;
  }
  const std::string pred = r.count("pred") ? r["pred"].as<std::string>() : "";
  require_data("--pred", pred);
  const bool has_truth = r.count("truth") > 0, has_source = r.count("source") > 0;
  TOOL_REQUIRE(has_truth != has_source, "give either --truth (image quality) or --source (alignment), not "
                                            << (has_truth ? "both" : "neither"));
  const std::string ref = has_truth ? r["truth"].as<std::string>() : r["source"].as<std::string>();
  require_data(has_truth ? "--truth" : "--source", ref);
  const std::string pred2 = r.count("pred2") ? r["pred2"].as<std::string>() : "";
  if (!pred2.empty()) {
    require_data("--pred2", pred2);
    TOOL_REQUIRE(has_truth, "--pred2 needs --truth");
  }
  const std::string mask = r.count("mask") ? r["mask"].as<std::string>() : "";
  if (!mask.empty()) require_data("--mask", mask);
  const std::string fields = r.count("fields") ? r["fields"].as<std::string>() : "";
  TOOL_REQUIRE(fields.empty() || has_truth, "--fields needs --truth (the aligned, undeformed truth_ab/ of dicyc-deform)");
  TOOL_REQUIRE(fields.empty() || fs::is_directory(fields), "--fields '" << fields << "' is not a folder (dicyc-deform writes <out>/fields/)");
  const int alpha_slices = r["alpha-slices"].as<int>(), threads = r["threads"].as<int>();
  TOOL_REQUIRE(alpha_slices >= 1 && alpha_slices <= 100000, "--alpha-slices must be at least 1");
  TOOL_REQUIRE(threads >= 1 && threads <= 256, "--threads must be in [1, 256]");
  const bool ct = r.count("ct") > 0;
  TOOL_REQUIRE(!ct || has_truth, "--ct needs --truth (the real CT, in HU)");
  dicyc::eval::CtRange ct_range;
  {
    const std::string cr = r["ct-range"].as<std::string>();
    if (cr == "2023") {
      ct_range = dicyc::eval::CtRange::synthrad2023();
    } else if (cr == "2025") {
      ct_range = dicyc::eval::CtRange::synthrad2025();
    } else {
      char* end = nullptr;
      ct_range.lo = std::strtod(cr.c_str(), &end);
      const bool comma = end && end != cr.c_str() && *end == ',';
      const char* second = comma ? end + 1 : cr.c_str();
      ct_range.hi = comma ? std::strtod(second, &end) : 0;
      TOOL_REQUIRE(comma && end != second && *end == '\0' && std::isfinite(ct_range.lo) && std::isfinite(ct_range.hi) &&
                       ct_range.lo < ct_range.hi,
                   "--ct-range: expected 2023, 2025 or lo,hi with lo < hi, got '" << cr << "'");
    }
  }
  const double range = r["range"].as<double>();
  TOOL_REQUIRE(range >= 0 && std::isfinite(range), "--range must be positive (or 0 for each truth's range)");
  std::string n1 = "pred", n2 = "pred2";
  {
    const std::string names = r["names"].as<std::string>();
    const auto comma = names.find(',');
    TOOL_REQUIRE(comma != std::string::npos && comma > 0 && comma + 1 < names.size(), "--names: expected 'first,second'");
    n1 = names.substr(0, comma);
    n2 = names.substr(comma + 1);
  }
  const std::string out = r["out"].as<std::string>();
  fs::create_directories(out);

  const auto P = by_name(pred), R = by_name(ref);
  const auto P2 = pred2.empty() ? std::map<std::string, std::string>{} : by_name(pred2);
  const auto M = mask.empty() ? std::map<std::string, std::string>{} : by_name(mask);
  std::vector<std::string> names;
  for (const auto& [n, p] : P) {
    if (!R.count(n)) {
      std::fprintf(stderr, "dicyc-eval: note: no %s for '%s'; skipped\n", has_truth ? "ground truth" : "source", n.c_str());
      continue;
    }
    TOOL_REQUIRE(pred2.empty() || P2.count(n), "--pred2 has no volume named '" << n << "' to pair with --pred");
    TOOL_REQUIRE(mask.empty() || M.count(n), "--mask has no mask named '" << n << "'");
    TOOL_REQUIRE(fields.empty() || fs::exists(fields + "/" + n + ".safetensors"),
                 "--fields has no " << n << ".safetensors (dicyc-deform writes one per volume it deformed)");
    names.push_back(n);
  }
  TOOL_REQUIRE(!names.empty(), "no volume of --pred has a partner of the same name in " << (has_truth ? "--truth" : "--source"));

  using Img = dicyc::eval::Image<float, 3>;
  using MImg = dicyc::eval::Image<std::uint8_t, 3>;
  auto img = [](const dicyc::io::Volume& v) {
    const auto d = v.dim();
    return Img(v.data.data(), d[0], d[1], d[2]);
  };
  auto same_grid = [](const dicyc::io::Volume& a, const dicyc::io::Volume& b, const std::string& an, const std::string& bn) {
    DICYC_CHECK(a.dim() == b.dim(), dicyc::ShapeError,
                an << " is " << a.dim()[0] << "x" << a.dim()[1] << "x" << a.dim()[2] << " but " << bn << " is "
                   << b.dim()[0] << "x" << b.dim()[1] << "x" << b.dim()[2]
                   << "; they must share a grid (dicyc-synth writes on the input's grid)");
  };

  if (!has_truth) {
    std::string csv = "name,nmi,dice\n";
    std::vector<double> nmis, dices;
    std::printf("| volume | NMI (source, output) | foreground Dice |\n|---|---|---|\n");
    for (const auto& n : names) {
      const auto s = dicyc::io::read_nifti(R.at(n)), p = dicyc::io::read_nifti(P.at(n));
      same_grid(p, s, P.at(n), R.at(n));
      std::vector<std::uint8_t> mk;
      if (!mask.empty()) {
        const auto mv = dicyc::io::read_nifti(M.at(n));
        same_grid(mv, s, M.at(n), R.at(n));
        for (float x : mv.data) mk.push_back(x != 0);
      }
      const auto d = s.dim();
      const MImg mimg(mk.data(), d[0], d[1], d[2]);
      const double nmi = dicyc::eval::hard_nmi<float, 3>(img(s), img(p), 100, dicyc::loss::NmiForm::Studholme,
                                                         mask.empty() ? nullptr : &mimg);
      const auto fs_ = foreground_of(s.data), fp = foreground_of(p.data);
      const double dice = dicyc::eval::dice<std::uint8_t, 3>(MImg(fs_.data(), d[0], d[1], d[2]), MImg(fp.data(), d[0], d[1], d[2]));
      nmis.push_back(nmi);
      dices.push_back(dice);
      std::printf("| %s | %.4f | %.4f |\n", n.c_str(), nmi, dice);
      char row[256];
      std::snprintf(row, sizeof row, "%s,%.6f,%.6f\n", n.c_str(), nmi, dice);
      csv += row;
      const auto sm = dicyc::data::IntensityMap::percentile(s.data), pm = dicyc::data::IntensityMap::percentile(p.data);
      const Panel ps = middle_slice(s, float(sm.a), float(sm.b)), pp = middle_slice(p, float(pm.a), float(pm.b));
      dicyc::io::GridOptions go;
      go.labels = {"source", "output", "checkerboard"};
      write_grid(out + "/checker_" + n + ".png", {{ps, pp, checkerboard(ps, pp)}}, go);
    }
    std::printf("| mean +- sd | %.4f +- %.4f | %.4f +- %.4f |\n", mean(nmis), sd(nmis), mean(dices), sd(dices));
    dicyc::io::write_file_atomic(out + "/alignment.csv", std::vector<unsigned char>(csv.begin(), csv.end()));
    std::printf("wrote %s/alignment.csv and checkerboards (source | output | checkerboard)\n", out.c_str());
    return kOk;
  }

  Scores s1, s2;
  std::string csv = std::string("name,method,mse,psnr,ssim,global_ssim") + (fields.empty() ? "" : ",alpha") + "\n";
  char ct_head[160];
  std::snprintf(ct_head, sizeof ct_head, "name,method,mae_hu,psnr_db,ssim,mask_voxels,range_lo,range_hi\n");
  std::string ct_csv = ct_head;
  auto score = [&](const dicyc::io::Volume& p, const dicyc::io::Volume& t, const std::vector<std::uint8_t>& mk,
                   Scores& s, const std::string& name, const std::string& method) {
    const auto d = t.dim();
    const MImg mimg(mk.data(), d[0], d[1], d[2]);
    const MImg* mp = mk.empty() ? nullptr : &mimg;
    const float lo = *std::min_element(t.data.begin(), t.data.end()), hi = *std::max_element(t.data.begin(), t.data.end());
    const double R_ = range > 0 ? range : double(hi) - double(lo);
    DICYC_CHECK(R_ > 0, dicyc::NumericError, "'" << name << "': the ground truth is constant; give --range");
    s.mse.push_back(dicyc::eval::mse<float, 3>(img(p), img(t), mp));
    s.psnr.push_back(dicyc::eval::psnr<float, 3>(img(p), img(t), R_, mp));
    s.ssim.push_back(dicyc::eval::ssim<float, 3>(img(p), img(t), dicyc::eval::SsimOptions(R_), mp));
    s.gssim.push_back(dicyc::eval::global_ssim<float, 3>(img(p), img(t), R_, 0.01, 0.03, mp));
    char row[512];
    std::snprintf(row, sizeof row, "%s,%s,%.8g,%.8g,%.8g,%.8g", name.c_str(), method.c_str(), s.mse.back(),
                  s.psnr.back(), s.ssim.back(), s.gssim.back());
    csv += row;
    if (!fields.empty()) {
      s.alpha.push_back(volume_alpha(read_domain_warp(fields + "/" + name + ".safetensors"), p, t, alpha_slices, threads));
      std::snprintf(row, sizeof row, ",%.6g", s.alpha.back());
      csv += row;
    }
    csv += "\n";
    if (ct) {
      const std::vector<std::uint8_t> body = mk.empty() ? dicyc::eval::body_mask(t.data.data(), d) : mk;
      const auto c = dicyc::eval::ct_metrics(p.data.data(), t.data.data(), body.data(), d, ct_range);
      s.ct_mae.push_back(c.mae);
      s.ct_psnr.push_back(c.psnr);
      s.ct_ssim.push_back(c.ssim);
      std::snprintf(row, sizeof row, "%s,%s,%.8g,%.8g,%.8g,%lld,%g,%g\n", name.c_str(), method.c_str(), c.mae, c.psnr,
                    c.ssim, static_cast<long long>(c.voxels), ct_range.lo, ct_range.hi);
      ct_csv += row;
    }
  };
  for (const auto& n : names) {
    const auto t = dicyc::io::read_nifti(R.at(n)), p = dicyc::io::read_nifti(P.at(n));
    same_grid(p, t, P.at(n), R.at(n));
    std::vector<std::uint8_t> mk;
    if (!mask.empty()) {
      const auto mv = dicyc::io::read_nifti(M.at(n));
      same_grid(mv, t, M.at(n), R.at(n));
      for (float x : mv.data) mk.push_back(x != 0);
    }
    score(p, t, mk, s1, n, n1);
    const float lo = *std::min_element(t.data.begin(), t.data.end()), hi = *std::max_element(t.data.begin(), t.data.end());
    std::vector<Panel> row{middle_slice(t, lo, hi), middle_slice(p, lo, hi)};
    row.push_back(checkerboard(row[0], row[1]));
    if (!pred2.empty()) {
      const auto p2 = dicyc::io::read_nifti(P2.at(n));
      same_grid(p2, t, P2.at(n), R.at(n));
      score(p2, t, mk, s2, n, n2);
      row.push_back(middle_slice(p2, lo, hi));
      row.push_back(checkerboard(row[0], row.back()));
    }
    dicyc::io::GridOptions go;
    go.labels = {"truth", n1, "checkerboard"};
    if (!pred2.empty()) go.labels.insert(go.labels.end(), {n2, "checkerboard"});
    write_grid(out + "/checker_" + n + ".png", {row}, go);
  }
  const bool A_ = !fields.empty();
  std::string md = std::string("| method | n | MSE | PSNR (dB) | SSIM | global SSIM |") + (A_ ? " alpha |" : "") +
                   "\n|---|---|---|---|---|---|" + (A_ ? "---|" : "") + "\n";
  std::string sum = std::string("method,n,mse_mean,mse_sd,psnr_mean,psnr_sd,ssim_mean,ssim_sd,global_ssim_mean,global_ssim_sd") +
                    (A_ ? ",alpha_mean,alpha_sd" : "") + "\n";
  auto add = [&](const std::string& name, const Scores& s) {
    char b[512];
    std::snprintf(b, sizeof b, "| %s | %zu | %.4g ± %.2g | %.2f ± %.2f | %.4f ± %.4f | %.4f ± %.4f |", name.c_str(),
                  s.mse.size(), mean(s.mse), sd(s.mse), mean(s.psnr), sd(s.psnr), mean(s.ssim), sd(s.ssim), mean(s.gssim),
                  sd(s.gssim));
    md += b;
    if (A_) {
      std::snprintf(b, sizeof b, " %.3f ± %.3f |", mean(s.alpha), sd(s.alpha));
      md += b;
    }
    md += "\n";
    if (!s.ct_mae.empty()) {
      std::snprintf(b, sizeof b, "| %s, CT in HU [%g, %g] (SynthRAD) | %zu | MAE %.1f ± %.1f HU | %.2f ± %.2f | %.4f ± %.4f | |%s\n",
                    name.c_str(), ct_range.lo, ct_range.hi, s.ct_mae.size(), mean(s.ct_mae), sd(s.ct_mae),
                    mean(s.ct_psnr), sd(s.ct_psnr), mean(s.ct_ssim), sd(s.ct_ssim), A_ ? " |" : "");
      md += b;
    }
    std::snprintf(b, sizeof b, "%s,%zu,%.8g,%.8g,%.8g,%.8g,%.8g,%.8g,%.8g,%.8g", name.c_str(), s.mse.size(), mean(s.mse),
                  sd(s.mse), mean(s.psnr), sd(s.psnr), mean(s.ssim), sd(s.ssim), mean(s.gssim), sd(s.gssim));
    sum += b;
    if (A_) {
      std::snprintf(b, sizeof b, ",%.8g,%.8g", mean(s.alpha), sd(s.alpha));
      sum += b;
    }
    sum += "\n";
  };
  add(n1, s1);
  if (!pred2.empty()) {
    add(n2, s2);
    if (names.size() >= 2) {
      md += "\nPaired t-tests, " + n1 + " - " + n2 + " (two-sided, SciPy's ttest_rel):\n\n| metric | mean difference | t | p |\n|---|---|---|---|\n";
      const std::pair<const char*, std::pair<const std::vector<double>*, const std::vector<double>*>> ms[] = {
          {"MSE", {&s1.mse, &s2.mse}}, {"PSNR", {&s1.psnr, &s2.psnr}}, {"SSIM", {&s1.ssim, &s2.ssim}},
          {"global SSIM", {&s1.gssim, &s2.gssim}}, {"alpha", {&s1.alpha, &s2.alpha}},
          {"CT MAE (HU)", {&s1.ct_mae, &s2.ct_mae}}, {"CT PSNR", {&s1.ct_psnr, &s2.ct_psnr}},
          {"CT SSIM", {&s1.ct_ssim, &s2.ct_ssim}}};
      for (const auto& [label, pr] : ms) {
        if (pr.first->empty()) continue;  // alpha without --fields
        char b[256];
        try {
          const auto tt = dicyc::eval::ttest_rel(*pr.first, *pr.second);
          std::snprintf(b, sizeof b, "| %s | %+.4g | %.3f | %.3g |\n", label, tt.mean_difference, tt.t, tt.p);
        } catch (const dicyc::Error& e) {
          std::snprintf(b, sizeof b, "| %s | - | - | (%s) |\n", label, e.what());
        }
        md += b;
      }
    } else {
      md += "\n(one volume: no t-test)\n";
    }
  }
  std::printf("%s", md.c_str());
  auto write = [&](const std::string& f, const std::string& s) {
    dicyc::io::write_file_atomic(out + "/" + f, std::vector<unsigned char>(s.begin(), s.end()));
  };
  write("metrics.csv", csv);
  if (ct) write("ct_metrics.csv", ct_csv);
  write("summary.md", md);
  write("summary.csv", sum);
  std::printf("wrote %s/metrics.csv, summary.md, summary.csv and checkerboards (truth | %s | checkerboard%s)\n",
              out.c_str(), n1.c_str(), pred2.empty() ? "" : (" | " + n2 + " | checkerboard").c_str());
  return kOk;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("dicyc-eval", [&] { return main_impl(argc, argv); }); }
