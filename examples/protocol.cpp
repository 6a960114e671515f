// The spec's simulated-deformation protocol (dicyc-spec section 6) on real anatomy: does DiCyc keep
// its output aligned where CycleGAN reproduces the domain's deformation?
//
//   protocol [--data data] [--iters 1500] [--size 96] [--ngf 16] [--blocks 4] [--tests 12]
//            [--threads 2] [--seed 1] [--out protocol_out]
//
// Domain A: the ITK PD slice. Domain B: the ITK T1 slice and axial ch2 slices (real T1 anatomy),
// all carrying ONE domain-specific warp (a seeded 4x4 TPS, up to 6 % of the field of view, 0.12
// in normalised units) plus a small jitter per image. Each image is scaled to [-1, 1] between its
// 0.5 and 99.5 percentiles. A CycleGAN and an NMI-DiCyc of the same reduced width train with the
// same seed, the same data stream and the same number of iterations on random crops. Test: T
// jittered copies of the PD slice (whole, 180x216), translated A -> B by the plain generators, and
// compared with the same jitter of the T1 slice (the aligned ground truth) and of the warped T1
// (what a generator that reproduces the deformation would output). MSE, PSNR and SSIM (range 2)
// per test image; paired t-tests DiCyc vs CycleGAN. A montage of test image 0 is written to --out.
#include <nifti1_io.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <iostream>

#include "dicyc/eval.hpp"
#include "dicyc/io/png.hpp"
#include "dicyc/model.hpp"
#include "dicyc/tps.hpp"

using namespace dicyc;
using Dev = Eigen::ThreadPoolDevice;
constexpr Index W = 180, H = 216;  // the 181x217 slices cropped to multiples of 4

using Img = std::vector<float>;  // W x H, x fastest

Img normalise(const std::vector<float>& v) {
  std::vector<float> s(v);
  std::sort(s.begin(), s.end());
  const float lo = s[static_cast<std::size_t>(0.005 * double(s.size() - 1))];
  const float hi = s[static_cast<std::size_t>(0.995 * double(s.size() - 1))];
  DICYC_CHECK(hi > lo, NumericError, "protocol: constant image");
  Img r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = std::clamp(2.0f * (v[i] - lo) / (hi - lo) - 1.0f, -1.0f, 1.0f);
  return r;
}

Img crop_slice(const std::vector<float>& full, Index fw) {
  Img r(static_cast<std::size_t>(W * H));
  for (Index y = 0; y < H; ++y)
    for (Index x = 0; x < W; ++x) r[x + W * y] = full[x + fw * y];
  return r;
}

Img load_png(const std::string& path) {
  const auto g = io::read_png_gray(path);
  DICYC_CHECK(g.width >= W && g.height >= H, ShapeError, "protocol: " << path << " is smaller than " << W << "x" << H);
  std::vector<float> f(g.pixels.begin(), g.pixels.end());
  return crop_slice(normalise(f), g.width);
}

/// Axial slices [z0, z1) of a NIfTI volume, normalised over the whole volume.
std::vector<Img> load_axial(const std::string& path, Index z0, Index z1) {
  nifti_image* im = nifti_image_read(path.c_str(), 1);
  DICYC_CHECK(im != nullptr, IoError, "protocol: cannot read NIfTI '" << path << "'");
  std::vector<float> v(im->nvox);
  const bool u8 = im->datatype == DT_UINT8, i16 = im->datatype == DT_INT16, f32 = im->datatype == DT_FLOAT32;
  for (std::size_t i = 0; i < im->nvox; ++i)
    v[i] = u8 ? float(static_cast<const std::uint8_t*>(im->data)[i])
              : i16 ? float(static_cast<const std::int16_t*>(im->data)[i])
                    : f32 ? static_cast<const float*>(im->data)[i] : 0.0f;
  const Index nx = im->nx, ny = im->ny, nz = im->nz;
  const bool ok = (u8 || i16 || f32) && nx >= W && ny >= H && nz >= z1;
  nifti_image_free(im);
  DICYC_CHECK(ok, IoError, "protocol: '" << path << "' is not a uint8/int16/float32 volume of at least " << W << "x" << H << "x" << z1);
  const Img n = normalise(v);
  std::vector<Img> out;
  for (Index z = z0; z < z1; ++z) out.push_back(crop_slice(std::vector<float>(n.begin() + z * nx * ny, n.begin() + (z + 1) * nx * ny), nx));
  return out;
}

Img warp(core::Context<Dev>& ctx, const tps::Deformation<2>& d, const Img& in) {
  Img out(in.size());
  ConstTensorMap<float, 4> im(in.data(), 1, W, H, 1);
  TensorMap<float, 4> om(out.data(), 1, W, H, 1);
  d.apply<float>(ctx, im, om);
  return out;
}

io::GrayImage to_gray(const std::vector<Img>& panels) {
  io::GrayImage g;
  g.width = W * static_cast<Index>(panels.size());
  g.height = H;
  g.pixels.resize(static_cast<std::size_t>(g.width * g.height));
  for (std::size_t p = 0; p < panels.size(); ++p)
    for (Index y = 0; y < H; ++y)
      for (Index x = 0; x < W; ++x)
        g.pixels[static_cast<std::size_t>(x + W * Index(p) + g.width * y)] =
            static_cast<std::uint8_t>(std::lround(127.5 * (std::clamp(panels[p][x + W * y], -1.0f, 1.0f) + 1.0f)));
  return g;
}

int main(int argc, char** argv) try {
  cxxopts::Options opts("protocol", "DiCyc vs CycleGAN on the simulated-deformation protocol (ITK PD/T1 + ch2)");
  opts.add_options()("data", "data folder (scripts/fetch_data.sh)", cxxopts::value<std::string>()->default_value("data"))(
      "iters", "training iterations per model", cxxopts::value<int>()->default_value("1500"))(
      "size", "training crop size", cxxopts::value<int>()->default_value("96"))(
      "ngf", "generator width", cxxopts::value<int>()->default_value("16"))(
      "blocks", "residual blocks", cxxopts::value<int>()->default_value("4"))(
      "tests", "test images", cxxopts::value<int>()->default_value("12"))(
      "threads", "CPU threads", cxxopts::value<int>()->default_value("2"))(
      "seed", "seed", cxxopts::value<std::uint64_t>()->default_value("1"))(
      "out", "output folder", cxxopts::value<std::string>()->default_value("protocol_out"))("h,help", "help");
  const auto a = opts.parse(argc, argv);
  if (a.count("help")) {
    std::cout << opts.help() << "\n";
    return 0;
  }
  const std::string data = a["data"].as<std::string>(), out = a["out"].as<std::string>();
  const int iters = a["iters"].as<int>(), size = a["size"].as<int>(), tests = a["tests"].as<int>();
  const std::uint64_t seed = a["seed"].as<std::uint64_t>();
  DICYC_CHECK(iters > 0 && tests >= 2 && size >= 16 && size % 4 == 0 && size <= std::min(W, H), ConfigError,
              "protocol: needs iters > 0, tests >= 2 and a crop size in [16, 180], a multiple of 4");
  core::Context<Dev> ctx(a["threads"].as<int>());

  const Img pd = load_png(data + "/itk/BrainProtonDensitySlice.png"), t1 = load_png(data + "/itk/BrainT1Slice.png");
  std::vector<Img> b_sources{t1};
  const std::string ch2 = data + "/mricron/ch2.nii.gz";
  if (std::filesystem::exists(ch2))
    for (auto& s : load_axial(ch2, 80, 110)) b_sources.push_back(std::move(s));
  std::printf("domain A: ITK PD; domain B: ITK T1 + %zu ch2 axial slices\n", b_sources.size() - 1);

  // The domain-specific warp, and per-image jitters.
  const auto domain = tps::simulate_deformation<2>(tps::DeformOptions().control(4).amplitude(0.06), seed * 7919 + 1);
  auto jitter = [&](std::uint64_t s) {
    return tps::simulate_deformation<2>(tps::DeformOptions().control(4).amplitude(0.01).rotation(3).translation(0.02), s);
  };
  const int K = 24;
  std::vector<Img> A, B;
  for (int k = 0; k < K; ++k) {
    A.push_back(warp(ctx, jitter(seed * 1000 + 100 + k), pd));
    B.push_back(warp(ctx, jitter(seed * 1000 + 500 + k), warp(ctx, domain, b_sources[k % b_sources.size()])));
  }

  auto options = [&](const std::string& name) {
    return model::ModelOptions::preset(name)
        .generator(nn::GeneratorOptions().ngf(a["ngf"].as<int>()).n_blocks(a["blocks"].as<int>()))
        .ndf(32)
        .seed(seed)
        .schedule(optim::ScheduleOptions().iterations_per_epoch(1000000));
  };
  std::filesystem::create_directories(out);
  struct Result {
    std::string name;
    std::vector<double> mse, psnr, ssim, ssim_warped;
    double seconds_per_iter = 0;
    Img sample;
  };
  std::vector<Result> results;
  for (const std::string name : {"cyclegan", "nmi-dicyc"}) {
    auto m = model::make_model<2, float, Dev>(ctx, options(name));
    core::Rng crops(seed * 31 + 5);  // the same data stream for both models
    std::vector<float> x(static_cast<std::size_t>(size * size)), y(x.size());
    ConstTensorMap<float, 4> xm(x.data(), 1, size, size, 1), ym(y.data(), 1, size, size, 1);
    auto crop = [&](const Img& src, std::vector<float>& dst) {
      const Index ox = Index(crops.uniform_int(W - size + 1)), oy = Index(crops.uniform_int(H - size + 1));
      for (Index j = 0; j < size; ++j)
        for (Index i = 0; i < size; ++i) dst[i + size * j] = src[(ox + i) + W * (oy + j)];
    };
    const auto t0 = std::chrono::steady_clock::now();
    model::StepLosses L;
    for (int it = 0; it < iters; ++it) {
      crop(A[crops.uniform_int(K)], x);
      crop(B[crops.uniform_int(K)], y);
      L = m->train_step(xm, ym);
      if ((it + 1) % 250 == 0 || it + 1 == iters)
        std::printf("%s %5d: G %.4f (GAN %.3f/%.3f, cyc %.4f/%.4f, dicyc %.4f/%.4f, align %.4f/%.4f) D %.4f/%.4f\n",
                    name.c_str(), it + 1, L.g_total, L.gan_ab, L.gan_ba, L.cyc_a, L.cyc_b, L.dicyc_a, L.dicyc_b,
                    L.align_a, L.align_b, L.d_a, L.d_b);
      std::fflush(stdout);
    }
    Result r;
    r.name = name;
    r.seconds_per_iter = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    m->save(out + "/" + name + ".safetensors");
    for (int t = 0; t < tests; ++t) {
      const auto j = jitter(seed * 1000 + 9000 + t);
      const Img xin = warp(ctx, j, pd), gt = warp(ctx, j, t1), gt_warped = warp(ctx, j, warp(ctx, domain, t1));
      Img syn(xin.size());
      ConstTensorMap<float, 4> im(xin.data(), 1, W, H, 1);
      TensorMap<float, 4> om(syn.data(), 1, W, H, 1);
      m->translate_ab(im, om);
      eval::Image<float, 2> s2(syn.data(), W, H), g2(gt.data(), W, H), w2(gt_warped.data(), W, H);
      r.mse.push_back(eval::mse(s2, g2));
      r.psnr.push_back(eval::psnr(s2, g2, 2.0));
      r.ssim.push_back(eval::ssim(s2, g2, eval::SsimOptions(2.0)));
      r.ssim_warped.push_back(eval::ssim(s2, w2, eval::SsimOptions(2.0)));
      if (t == 0) r.sample = syn;
    }
    results.push_back(std::move(r));
  }
  {
    const auto j = jitter(seed * 1000 + 9000);
    io::write_png_gray(out + "/test0_pd_cyclegan_dicyc_t1aligned_t1warped.png",
                       to_gray({warp(ctx, j, pd), results[0].sample, results[1].sample, warp(ctx, j, t1),
                                warp(ctx, j, warp(ctx, domain, t1))}));
  }
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double e : v) s += e;
    return s / double(v.size());
  };
  std::printf("\n%d test images (jittered whole PD slices, 180x216); A -> B against the aligned T1\n", tests);
  std::printf("| model | MSE | PSNR (dB) | SSIM | SSIM vs the warped T1 | s / iteration |\n|---|---|---|---|---|---|\n");
  for (const auto& r : results)
    std::printf("| %s | %.4f | %.2f | %.4f | %.4f | %.3f |\n", r.name.c_str(), mean(r.mse), mean(r.psnr), mean(r.ssim),
                mean(r.ssim_warped), r.seconds_per_iter);
  std::printf("\npaired t-tests, DiCyc - CycleGAN over the %d test images:\n", tests);
  const char* names[] = {"MSE", "PSNR", "SSIM"};
  const std::vector<double>* cols[2][3] = {{&results[1].mse, &results[1].psnr, &results[1].ssim},
                                           {&results[0].mse, &results[0].psnr, &results[0].ssim}};
  for (int k = 0; k < 3; ++k) {
    const auto tt = eval::ttest_rel(*cols[0][k], *cols[1][k]);
    std::printf("  %-4s mean difference %+.4f, t = %.3f, p = %.3g\n", names[k], tt.mean_difference, tt.t, tt.p);
  }
  std::printf("DiCyc / CycleGAN iteration time: %.2f\n", results[1].seconds_per_iter / results[0].seconds_per_iter);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "protocol: %s\n", e.what());
  return 1;
}
