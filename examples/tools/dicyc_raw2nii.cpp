// dicyc-raw2nii: wraps a raw voxel file (no header) as NIfTI-1 with the given grid, spacing and
// orientation, e.g. the InVesalius CT of the demo (matrix.dat: int16 little-endian, x fastest):
//   dicyc-raw2nii --in matrix.dat --dims 256,256,108 --spacing 0.957,0.957,1.5 --type int16
//                 --orientation LAS --out ct.nii.gz
// --orientation names where each voxel axis points (R/L, A/P, S/I), as in "RAS" or "LPS"; the
// affine places the volume's centre at the scanner origin.
#include <cxxopts.hpp>

#include <fstream>
#include <iostream>

#include "common.hpp"

using namespace tools;

namespace {

std::vector<double> numbers(const std::string& flag, const std::string& s, std::size_t n) {
  std::vector<double> v;
  std::stringstream ss(s);
  std::string c;
  while (std::getline(ss, c, ',')) {
    char* end = nullptr;
    const double x = std::strtod(c.c_str(), &end);
    TOOL_REQUIRE(!c.empty() && end && *end == '\0' && std::isfinite(x) && x > 0, flag << " '" << s << "': '" << c << "' is not a positive number");
    v.push_back(x);
  }
  TOOL_REQUIRE(v.size() == n, flag << " '" << s << "': expected " << n << " values separated by commas");
  return v;
}

int main_impl(int argc, char** argv) {
  cxxopts::Options o("dicyc-raw2nii", "Wrap a raw voxel file as NIfTI-1");
  o.add_options()
    ("in", "raw voxel file (x fastest)", cxxopts::value<std::string>())
    ("dims", "x,y,z", cxxopts::value<std::string>())
    ("spacing", "x,y,z in mm", cxxopts::value<std::string>()->default_value("1,1,1"))
    ("type", "uint8, int16, uint16, int32 or float32", cxxopts::value<std::string>()->default_value("int16"))
    ("big-endian", "the file is big-endian")
    ("offset", "bytes to skip at the start", cxxopts::value<long long>()->default_value("0"))
    ("orientation", "where voxel axes point, e.g. RAS, LPS, LAS", cxxopts::value<std::string>()->default_value("RAS"))
    ("out", "output .nii or .nii.gz", cxxopts::value<std::string>())
    ("h,help", "this help");
  const auto r = parse(o, argc, argv);
  if (r.count("help")) {
    std::cout << o.help() << "\n";
    return kOk;
  }
  const std::string in = r.count("in") ? r["in"].as<std::string>() : "";
  require_data("--in", in);
  TOOL_REQUIRE(r.count("dims"), "--dims is required");
  TOOL_REQUIRE(r.count("out"), "--out is required");
  const auto dv = numbers("--dims", r["dims"].as<std::string>(), 3), sv = numbers("--spacing", r["spacing"].as<std::string>(), 3);
  std::array<std::size_t, 3> dims;
  for (int d = 0; d < 3; ++d) {
    TOOL_REQUIRE(dv[d] == std::floor(dv[d]) && dv[d] <= 32767, "--dims must be whole numbers <= 32767");
    dims[d] = static_cast<std::size_t>(dv[d]);
  }
  const std::string type = r["type"].as<std::string>();
  const std::map<std::string, int> sizes{{"uint8", 1}, {"int16", 2}, {"uint16", 2}, {"int32", 4}, {"float32", 4}};
  TOOL_REQUIRE(sizes.count(type), "--type must be uint8, int16, uint16, int32 or float32, got '" << type << "'");
  const std::string orient = r["orientation"].as<std::string>();
  TOOL_REQUIRE(orient.size() == 3, "--orientation: three letters such as RAS or LPS");
  Eigen::Matrix4d a = Eigen::Matrix4d::Zero();
  a(3, 3) = 1;
  std::array<bool, 3> used{};
  for (int d = 0; d < 3; ++d) {
    const char c = static_cast<char>(std::toupper(orient[d]));
    const int axis = (c == 'R' || c == 'L') ? 0 : (c == 'A' || c == 'P') ? 1 : (c == 'S' || c == 'I') ? 2 : -1;
    TOOL_REQUIRE(axis >= 0 && !used[axis], "--orientation '" << orient << "': each of R/L, A/P, S/I exactly once");
    used[axis] = true;
    a(axis, d) = (c == 'R' || c == 'A' || c == 'S' ? 1.0 : -1.0) * sv[d];
  }
  for (int r2 = 0; r2 < 3; ++r2) {
    double c = 0;
    for (int d = 0; d < 3; ++d) c += a(r2, d) * 0.5 * static_cast<double>(dims[d] - 1);
    a(r2, 3) = -c;
  }
  const int bytes = sizes.at(type);
  const std::size_t n = dims[0] * dims[1] * dims[2];
  const long long offset = r["offset"].as<long long>();
  TOOL_REQUIRE(offset >= 0, "--offset must be >= 0");
  std::error_code ec;
  const auto fsize = std::filesystem::file_size(in, ec);
  DICYC_CHECK(!ec && fsize == static_cast<std::uintmax_t>(offset) + n * bytes, dicyc::IoError,
              "'" << in << "' has " << fsize << " bytes; " << dims[0] << "x" << dims[1] << "x" << dims[2] << " " << type
                  << " voxels after offset " << offset << " need " << offset + static_cast<long long>(n * bytes));
  std::ifstream f(in, std::ios::binary);
  f.seekg(offset);
  std::vector<unsigned char> raw(n * bytes);
  f.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
  DICYC_CHECK(f.good(), dicyc::IoError, "cannot read '" << in << "'");
  if (r.count("big-endian"))
    for (std::size_t i = 0; i < n; ++i) std::reverse(raw.begin() + i * bytes, raw.begin() + (i + 1) * bytes);
  dicyc::io::Volume v;
  v.data = dicyc::io::VolumeData::from_shape(dims);
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char* p = raw.data() + i * bytes;
    float x = 0;
    if (type == "uint8") x = p[0];
    else if (type == "int16") { std::int16_t t; std::memcpy(&t, p, 2); x = t; }
    else if (type == "uint16") { std::uint16_t t; std::memcpy(&t, p, 2); x = t; }
    else if (type == "int32") { std::int32_t t; std::memcpy(&t, p, 4); x = static_cast<float>(t); }
    else { std::memcpy(&x, p, 4); }
    v.data.data()[i] = x;
  }
  v.spacing = {sv[0], sv[1], sv[2]};
  v.qform = v.sform = a;
  v.qform_code = v.sform_code = NIFTI_XFORM_SCANNER_ANAT;
  v.descrip = "dicyc-raw2nii " + std::filesystem::path(in).filename().string();
  const auto out_type = type == "uint8" ? dicyc::io::NiftiType::uint8
                        : type == "int16" ? dicyc::io::NiftiType::int16 : dicyc::io::NiftiType::float32;
  dicyc::io::write_nifti(r["out"].as<std::string>(), v, out_type);
  std::printf("%s: %zux%zux%zu %s, %s, written to %s\n", in.c_str(), dims[0], dims[1], dims[2], type.c_str(),
              orient.c_str(), r["out"].as<std::string>().c_str());
  return kOk;
}

}  // namespace

int main(int argc, char** argv) { return run_tool("dicyc-raw2nii", [&] { return main_impl(argc, argv); }); }
