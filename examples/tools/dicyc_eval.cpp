// dicyc-eval: scores synthesized volumes.
//
//   With ground truth:  dicyc-eval --pred dicyc_out/ --truth t1/ [--mask masks/] [--pred2 cyclegan_out/]
//     per-volume MSE, PSNR, SSIM (windowed, 3-D) and global SSIM; a summary (mean +- sd) as
//     Markdown and CSV; with --pred2, the same for the second method and paired t-tests (second
//     minus first would be the sign of `mean difference` reversed: it is pred - pred2).
//   Without ground truth: dicyc-eval --pred pseudo_ct/ --source mr/ [--mask masks/]
//     the alignment metrics between each source and its output: NMI (scikit-image's, 100 bins)
//     and the Dice overlap of their foreground masks.
// Both write checkerboard PNGs of the middle axial slice. Volumes pair up by file name. The
// intensity range for PSNR/SSIM is --range, or each ground truth's max - min.
#include <cxxopts.hpp>

#include <iostream>

#include "common.hpp"
#include "dicyc/eval.hpp"

using namespace tools;
namespace fs = std::filesystem;

namespace {

struct Scores {
  std::vector<double> mse, psnr, ssim, gssim;
};

std::map<std::string, std::string> by_name(const std::string& spec) {
  std::map<std::string, std::string> m;
  for (const auto& p : dicyc::data::list_volumes(spec)) m[strip_nifti_ext(fs::path(p).filename().string())] = p;
  return m;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}
double sd(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

/// 0/1 foreground: above 10 % of the 0.5..99.5 percentile range.
std::vector<std::uint8_t> foreground_of(const dicyc::io::VolumeData& v) {
  const auto m = dicyc::data::IntensityMap::percentile(v);
  const float thr = static_cast<float>(m.a + 0.1 * (m.b - m.a));
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
      write_grid(out + "/checker_" + n + ".png", {{ps, pp, checkerboard(ps, pp)}});
    }
    std::printf("| mean +- sd | %.4f +- %.4f | %.4f +- %.4f |\n", mean(nmis), sd(nmis), mean(dices), sd(dices));
    dicyc::io::SafeTensorsWriter::write_file_atomic(out + "/alignment.csv", std::vector<unsigned char>(csv.begin(), csv.end()));
    std::printf("wrote %s/alignment.csv and checkerboards (source | output | checkerboard)\n", out.c_str());
    return kOk;
  }

  Scores s1, s2;
  std::string csv = "name,method,mse,psnr,ssim,global_ssim\n";
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
    std::snprintf(row, sizeof row, "%s,%s,%.8g,%.8g,%.8g,%.8g\n", name.c_str(), method.c_str(), s.mse.back(),
                  s.psnr.back(), s.ssim.back(), s.gssim.back());
    csv += row;
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
    write_grid(out + "/checker_" + n + ".png", {row});
  }
  std::string md = "| method | n | MSE | PSNR (dB) | SSIM | global SSIM |\n|---|---|---|---|---|---|\n";
  std::string sum = "method,n,mse_mean,mse_sd,psnr_mean,psnr_sd,ssim_mean,ssim_sd,global_ssim_mean,global_ssim_sd\n";
  auto add = [&](const std::string& name, const Scores& s) {
    char b[512];
    std::snprintf(b, sizeof b, "| %s | %zu | %.4g ± %.2g | %.2f ± %.2f | %.4f ± %.4f | %.4f ± %.4f |\n", name.c_str(),
                  s.mse.size(), mean(s.mse), sd(s.mse), mean(s.psnr), sd(s.psnr), mean(s.ssim), sd(s.ssim), mean(s.gssim),
                  sd(s.gssim));
    md += b;
    std::snprintf(b, sizeof b, "%s,%zu,%.8g,%.8g,%.8g,%.8g,%.8g,%.8g,%.8g,%.8g\n", name.c_str(), s.mse.size(), mean(s.mse),
                  sd(s.mse), mean(s.psnr), sd(s.psnr), mean(s.ssim), sd(s.ssim), mean(s.gssim), sd(s.gssim));
    sum += b;
  };
  add(n1, s1);
  if (!pred2.empty()) {
    add(n2, s2);
    if (names.size() >= 2) {
      md += "\nPaired t-tests, " + n1 + " - " + n2 + " (two-sided, SciPy's ttest_rel):\n\n| metric | mean difference | t | p |\n|---|---|---|---|\n";
      const std::pair<const char*, std::pair<const std::vector<double>*, const std::vector<double>*>> ms[] = {
          {"MSE", {&s1.mse, &s2.mse}}, {"PSNR", {&s1.psnr, &s2.psnr}}, {"SSIM", {&s1.ssim, &s2.ssim}},
          {"global SSIM", {&s1.gssim, &s2.gssim}}};
      for (const auto& [label, pr] : ms) {
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
    dicyc::io::SafeTensorsWriter::write_file_atomic(out + "/" + f, std::vector<unsigned char>(s.begin(), s.end()));
  };
  write("metrics.csv", csv);
  write("summary.md", md);
  write("summary.csv", sum);
  std::printf("wrote %s/metrics.csv, summary.md, summary.csv and checkerboards (truth | %s | checkerboard%s)\n",
              out.c_str(), n1.c_str(), pred2.empty() ? "" : (" | " + n2 + " | checkerboard").c_str());
  return kOk;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("dicyc-eval", [&] { return main_impl(argc, argv); }); }
