// Writes small synthetic head phantoms for the tool tests: two "contrasts" of ellipsoidal heads
// (skull, brain, ventricles) on slightly different grids and orientations, plus a 4-D file and a
// corrupt one.
//   make_phantoms OUT_DIR
// OUT_DIR/a/*.nii.gz (uint8, LAS, 1.5 mm), OUT_DIR/b/*.nii (int16 in "HU", RAS, 1.2 mm),
// OUT_DIR/four_d.nii.gz (3 volumes), OUT_DIR/bad/corrupt.nii.gz (truncated).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "dicyc/io/nifti.hpp"

using namespace dicyc;

static io::Volume phantom(std::size_t nx, std::size_t ny, std::size_t nz, double sp, bool ct, bool flip_x, double shift) {
  io::Volume v;
  v.data = io::VolumeData::from_shape({nx, ny, nz});
  v.spacing = {sp, sp, sp};
  v.qform = Eigen::Matrix4d::Identity();
  for (int d = 0; d < 3; ++d) v.qform(d, d) = sp;
  if (flip_x) v.qform(0, 0) = -sp;
  v.qform.col(3) << (flip_x ? 1 : -1) * 0.5 * sp * double(nx), -0.5 * sp * double(ny), -0.5 * sp * double(nz), 1;
  v.sform = v.qform;
  v.qform_code = v.sform_code = NIFTI_XFORM_SCANNER_ANAT;
  for (std::size_t k = 0; k < nz; ++k)
    for (std::size_t j = 0; j < ny; ++j)
      for (std::size_t i = 0; i < nx; ++i) {
        const double x = (double(i) + 0.5) / double(nx) * 2 - 1 - shift, y = (double(j) + 0.5) / double(ny) * 2 - 1,
                     z = (double(k) + 0.5) / double(nz) * 2 - 1;
        const double r = std::sqrt(x * x / 0.7 + y * y / 0.85 + z * z / 0.9);
        const double vent = std::sqrt((x * x) / 0.01 + (y * y) / 0.06 + z * z / 0.05);
        double val;
        if (r > 1.0) val = ct ? -1000 : 0;                        // air
        else if (r > 0.9) val = ct ? 1200 + 100 * std::sin(9 * y) : 30;  // skull
        else if (vent < 1.0) val = ct ? 5 : 40;                   // ventricles (CSF)
        else val = ct ? 35 + 5 * std::sin(7 * x + 3 * z) : 150 + 40 * std::sin(5 * x) * std::cos(4 * y);  // brain
        v.data(i, j, k) = static_cast<float>(val);
      }
  return v;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_phantoms OUT_DIR\n");
    return 2;
  }
  const std::string out = argv[1];
  namespace fs = std::filesystem;
  for (const char* d : {"a", "b", "bad"}) fs::create_directories(out + "/" + d);
  for (int s = 0; s < 3; ++s) {
    io::write_nifti(out + "/a/subj" + std::to_string(s) + ".nii.gz", phantom(28, 32, 20, 1.5, false, true, 0.05 * s),
                    io::NiftiType::uint8);
    io::write_nifti(out + "/b/subj" + std::to_string(s) + ".nii", phantom(34, 40, 24, 1.2, true, false, -0.04 * s),
                    io::NiftiType::int16);
  }
  // A small object in a large background (most 32 x 32 crops are background): 96 x 96 x 12 voxels
  // at 1 mm, a bright disc-shaped "head" of radius 9 voxels with a darker core.
  {
    fs::create_directories(out + "/sparse");
    io::Volume v = phantom(8, 8, 8, 1.0, false, false, 0);
    v.data = io::VolumeData::from_shape({96, 96, 12});
    for (std::size_t k = 0; k < 12; ++k)
      for (std::size_t j = 0; j < 96; ++j)
        for (std::size_t i = 0; i < 96; ++i) {
          const double x = double(i) - 60.5, y = double(j) - 35.5, z = double(k) - 5.5;
          const double r = std::sqrt(x * x + y * y + 4 * z * z);
          v.data(i, j, k) = static_cast<float>(r < 4 ? 120 : r < 9 ? 200 + 5 * std::sin(double(i + j)) : 0);
        }
    for (int d = 0; d < 3; ++d) v.qform(d, d) = 1.0;
    v.qform.col(3) << -48, -48, -6, 1;
    v.sform = v.qform;
    v.spacing = {1, 1, 1};
    io::write_nifti(out + "/sparse/small_object.nii.gz", v, io::NiftiType::uint8);
  }
  // A 4-D file: write one volume, then widen dim[0]/dim[4] and append two more copies.
  io::write_nifti(out + "/four_d.nii", phantom(16, 16, 12, 2.0, false, false, 0), io::NiftiType::uint8);
  {
    std::ifstream in(out + "/four_d.nii", std::ios::binary);
    std::vector<char> b{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    in.close();
    const std::vector<char> data(b.begin() + 352, b.end());
    short dim0 = 4, dim4 = 3;
    std::memcpy(b.data() + 40, &dim0, 2);
    std::memcpy(b.data() + 48, &dim4, 2);
    b.insert(b.end(), data.begin(), data.end());
    b.insert(b.end(), data.begin(), data.end());
    std::ofstream o(out + "/four_d.nii", std::ios::binary);
    o.write(b.data(), static_cast<std::streamsize>(b.size()));
  }
  {
    std::ifstream in(out + "/a/subj0.nii.gz", std::ios::binary);
    std::vector<char> b{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::ofstream o(out + "/bad/corrupt.nii.gz", std::ios::binary);
    o.write(b.data(), static_cast<std::streamsize>(b.size() / 2));
  }
  std::printf("phantoms in %s\n", out.c_str());
  return 0;
}
