// Makes the committed seed corpora of the fuzz targets from the real scans (scripts/fetch_data.sh):
// crops of the mricron ch2 T1 as NIfTI in several datatypes, byte orders and compressions, and a
// checkpoint of the fuzz target's tiny CycleGAN after two training steps on ch2 crops.
// Each NIfTI seed starts with the fuzz target's selector byte (0: plain .nii, 1: gzip).
//   g++ -std=c++17 -O1 -Iinclude -I/usr/include/eigen3 -I/usr/include/nifti tests/fuzz/make_seeds.cpp \
//       -o /tmp/make_seeds -lniftiio -lznz -lz -lpthread && /tmp/make_seeds data/mricron/ch2.nii.gz tests/fuzz/corpus
#include <cstdio>
#include <fstream>
#include <iterator>

#include "dicyc/io/nifti.hpp"
#include "dicyc/model.hpp"

using namespace dicyc;

static std::vector<unsigned char> slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
static void seed(const std::string& path, unsigned char selector, const std::vector<unsigned char>& bytes) {
  std::ofstream o(path, std::ios::binary);
  o.put(static_cast<char>(selector));
  o.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const io::Volume ch2 = io::read_nifti(argv[1]);
  const std::string out = argv[2];
  io::Volume crop = ch2.regridded({20, 24, 12}, [] {
    Eigen::Matrix4d m = Eigen::Matrix4d::Identity();
    m.col(3) << 80, 100, 85, 1;
    return m;
  }(), ch2.spacing);
  for (std::size_t k = 0; k < 12; ++k)
    for (std::size_t j = 0; j < 24; ++j)
      for (std::size_t i = 0; i < 20; ++i) crop.data(i, j, k) = ch2.data(80 + i, 100 + j, 85 + k);
  const std::string tmp = "/tmp/dicyc_seed.nii";
  const std::pair<const char*, io::NiftiType> types[] = {{"u8", io::NiftiType::uint8}, {"i16", io::NiftiType::int16},
                                                        {"f32", io::NiftiType::float32}, {"f64", io::NiftiType::float64}};
  for (const auto& [name, type] : types) {
    io::write_nifti(tmp, crop, type);
    const auto b = slurp(tmp);
    seed(out + "/nifti/ch2_crop_" + name + ".nii", 0, b);
    if (std::string(name) == "i16") seed(out + "/nifti/ch2_crop_" + name + "_gz.nii", 1, b);
    if (std::string(name) == "f32") {  // big-endian copy
      std::vector<unsigned char> be = b;
      nifti_1_header h;
      std::memcpy(&h, be.data(), sizeof h);
      io::detail::swap_header(h);
      std::memcpy(be.data(), &h, sizeof h);
      for (std::size_t i = 352; i + 3 < be.size(); i += 4) {
        std::swap(be[i], be[i + 3]);
        std::swap(be[i + 1], be[i + 2]);
      }
      seed(out + "/nifti/ch2_crop_f32_be.nii", 0, be);
    }
  }
  // The fuzz target's tiny model, two steps on ch2 crops (so the image pools hold images).
  using Dev = Eigen::DefaultDevice;
  core::Context<Dev> ctx;
  auto m = model::make_model<2, float, Dev>(
      ctx, model::ModelOptions().generator(nn::GeneratorOptions().ngf(2).n_blocks(1)).ndf(2).n_layers(1).pool_size(2).seed(1));
  std::vector<float> x(16 * 16), y(16 * 16);
  for (int step = 0; step < 2; ++step) {
    for (int j = 0; j < 16; ++j)
      for (int i = 0; i < 16; ++i) {
        x[i + 16 * j] = ch2.data(70 + i + step, 90 + j, 90) / 64.0f - 1.0f;
        y[i + 16 * j] = ch2.data(90 + i, 110 + j + step, 70) / 64.0f - 1.0f;
      }
    ConstTensorMap<float, 4> xm(x.data(), 1, 16, 16, 1), ym(y.data(), 1, 16, 16, 1);
    m->train_step(xm, ym);
  }
  m->save(out + "/checkpoint/tiny_cyclegan.safetensors");
  std::printf("seeds written to %s\n", out.c_str());
  return 0;
}
