// NIfTI-1 reading and writing: values and geometry against the reference C library
// (nifti_image_write / nifti_image_read), round trips, byte order, .hdr/.img pairs, 4-D volume
// selection, and hostile files (truncated, corrupt, wrong offsets, absurd dimensions).
#define BOOST_TEST_MODULE io_nifti
#include <boost/test/unit_test.hpp>


#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "support/tmp_dir.hpp"
#include "dicyc/io/grid.hpp"
#include "dicyc/io/nifti.hpp"

namespace fs = std::filesystem;
using namespace dicyc;

namespace {

using TmpDir = dt::TmpDir;

std::vector<unsigned char> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void spit(const std::string& path, const std::vector<unsigned char>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
template <typename T>
void patch(std::vector<unsigned char>& b, std::size_t offset, T value) {
  std::memcpy(b.data() + offset, &value, sizeof value);
}

template <class E, class F>
void expect_error(F&& fn, const std::string& needle) {
  try {
    fn();
  } catch (const E& e) {
    BOOST_TEST_INFO("message: " << e.what());
    BOOST_CHECK(std::string(e.what()).find(needle) != std::string::npos);
    return;
  } catch (const std::exception& e) {
    BOOST_ERROR("wrong exception type: " << e.what());
    return;
  }
  BOOST_ERROR("no exception; expected one containing '" << needle << "'");
}

/// Writes a volume with the reference library: dims, datatype, values v(i) = f(i), scaling and an
/// oblique qform plus a different sform.
template <typename T>
std::string write_reference(const std::string& path, std::array<int, 4> d, int datatype, float slope, float inter,
                            int qcode = NIFTI_XFORM_SCANNER_ANAT, int scode = NIFTI_XFORM_MNI_152) {
  int dims[8] = {d[3] > 1 ? 4 : 3, d[0], d[1], d[2], d[3], 1, 1, 1};
  nifti_image* nim = nifti_make_new_nim(dims, datatype, 1);
  BOOST_REQUIRE(nim != nullptr);
  T* p = static_cast<T*>(nim->data);
  for (std::size_t i = 0; i < nim->nvox; ++i) p[i] = static_cast<T>((i * 7919u) % 200u) - static_cast<T>(datatype == NIFTI_TYPE_UINT8 ? 0 : 50);
  nim->scl_slope = slope;
  nim->scl_inter = inter;
  nim->dx = nim->pixdim[1] = 1.5f;
  nim->dy = nim->pixdim[2] = 0.75f;
  nim->dz = nim->pixdim[3] = 2.0f;
  nim->qform_code = qcode;
  nim->quatern_b = 0.1f;
  nim->quatern_c = -0.2f;
  nim->quatern_d = 0.3f;
  nim->qoffset_x = -90.5f;
  nim->qoffset_y = 12.0f;
  nim->qoffset_z = 33.25f;
  nim->qfac = -1.0f;
  nim->pixdim[0] = -1.0f;
  nim->sform_code = scode;
  const float srow[3][4] = {{-1.5f, 0.1f, 0, 90}, {0, 0.75f, 0.2f, -126}, {0.05f, 0, 2.0f, -72}};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) nim->sto_xyz.m[r][c] = srow[r][c];
  nim->sto_xyz.m[3][0] = nim->sto_xyz.m[3][1] = nim->sto_xyz.m[3][2] = 0;
  nim->sto_xyz.m[3][3] = 1;
  std::string prefix = path;
  BOOST_REQUIRE(nifti_set_filenames(nim, prefix.c_str(), 0, 1) == 0);
  nifti_image_write(nim);
  std::string written = nim->fname;
  nifti_image_free(nim);
  return written;
}

/// The reference library's view of a file: values after scaling, qto_xyz and sto_xyz.
struct Reference {
  std::vector<double> values;
  Eigen::Matrix4d q, s;
  int qcode, scode;
  std::array<int, 3> dim;
};
Reference read_reference(const std::string& path, int volume = 0) {
  nifti_image* nim = nifti_image_read(path.c_str(), 1);
  BOOST_REQUIRE(nim != nullptr);
  Reference r;
  r.dim = {nim->nx, nim->ny, nim->nz};
  const std::size_t n = static_cast<std::size_t>(nim->nx) * nim->ny * nim->nz;
  const double slope = nim->scl_slope != 0 ? nim->scl_slope : 1.0, inter = nim->scl_slope != 0 ? nim->scl_inter : 0.0;
  auto get = [&](std::size_t i) -> double {
    const char* base = static_cast<const char*>(nim->data) + volume * n * nim->nbyper;
    switch (nim->datatype) {
      case NIFTI_TYPE_UINT8: return reinterpret_cast<const std::uint8_t*>(base)[i];
      case NIFTI_TYPE_INT16: return reinterpret_cast<const std::int16_t*>(base)[i];
      case NIFTI_TYPE_INT32: return reinterpret_cast<const std::int32_t*>(base)[i];
      case NIFTI_TYPE_FLOAT32: return reinterpret_cast<const float*>(base)[i];
      case NIFTI_TYPE_FLOAT64: return reinterpret_cast<const double*>(base)[i];
      default: BOOST_FAIL("unexpected datatype"); return 0;
    }
  };
  for (std::size_t i = 0; i < n; ++i) r.values.push_back(get(i) * slope + inter);
  r.q = io::detail::to_eigen(nim->qto_xyz);
  r.s = io::detail::to_eigen(nim->sto_xyz);
  r.qcode = nim->qform_code;
  r.scode = nim->sform_code;
  nifti_image_free(nim);
  return r;
}

void check_same(const io::Volume& v, const Reference& r, double tol) {
  BOOST_REQUIRE_EQUAL(v.dim()[0], r.dim[0]);
  BOOST_REQUIRE_EQUAL(v.dim()[1], r.dim[1]);
  BOOST_REQUIRE_EQUAL(v.dim()[2], r.dim[2]);
  double worst = 0;
  for (std::size_t i = 0; i < r.values.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(v.data.data()[i]) - r.values[i]));
  BOOST_TEST(worst <= tol);
  BOOST_TEST(v.qform_code == r.qcode);
  BOOST_TEST(v.sform_code == r.scode);
  if (r.qcode > 0) BOOST_TEST((v.qform - r.q).cwiseAbs().maxCoeff() <= 1e-5);
  if (r.scode > 0) BOOST_TEST((v.sform - r.s).cwiseAbs().maxCoeff() <= 1e-5);
}

}  // namespace

BOOST_AUTO_TEST_CASE(reads_what_the_reference_library_writes) {
  TmpDir tmp("nifti");
  // Every datatype, plain and gzip, odd sizes, with scaling on the integer types.
  const std::string u8 = write_reference<std::uint8_t>(tmp("u8.nii"), {5, 4, 3, 1}, NIFTI_TYPE_UINT8, 0.5f, -3.0f);
  const std::string i16 = write_reference<std::int16_t>(tmp("i16.nii.gz"), {7, 3, 2, 1}, NIFTI_TYPE_INT16, 2.0f, 1000.0f);
  const std::string i32 = write_reference<std::int32_t>(tmp("i32.nii"), {3, 3, 3, 1}, NIFTI_TYPE_INT32, 0.0f, 5.0f);
  const std::string f32 = write_reference<float>(tmp("f32.nii.gz"), {6, 5, 4, 1}, NIFTI_TYPE_FLOAT32, 1.0f, 0.0f);
  const std::string f64 = write_reference<double>(tmp("f64.nii"), {2, 9, 1, 1}, NIFTI_TYPE_FLOAT64, 0.25f, 0.0f);
  for (const auto& f : {u8, i16, i32, f32, f64}) {
    BOOST_TEST_CONTEXT(f) { check_same(io::read_nifti(f), read_reference(f), 1e-4); }
  }
  const io::Volume v = io::read_nifti(u8);
  BOOST_TEST(v.spacing[0] == 1.5);
  BOOST_TEST(v.spacing[1] == 0.75);
  BOOST_TEST(v.spacing[2] == 2.0);
  BOOST_TEST(static_cast<int>(v.source_type) == NIFTI_TYPE_UINT8);
  BOOST_TEST(v.data(1, 0, 0) == (7919 % 200) * 0.5 - 3.0);  // x fastest; slope and intercept applied
  BOOST_TEST((v.affine() - v.sform).cwiseAbs().maxCoeff() == 0.0);  // sform wins when its code is set
}

BOOST_AUTO_TEST_CASE(qform_only_and_no_transform) {
  TmpDir tmp("nifti");
  const std::string q = write_reference<float>(tmp("q.nii"), {4, 4, 4, 1}, NIFTI_TYPE_FLOAT32, 1, 0,
                                               NIFTI_XFORM_SCANNER_ANAT, 0);
  const io::Volume vq = io::read_nifti(q);
  check_same(vq, read_reference(q), 0);
  BOOST_TEST((vq.affine() - vq.qform).cwiseAbs().maxCoeff() == 0.0);
  const std::string none = write_reference<float>(tmp("none.nii"), {4, 4, 4, 1}, NIFTI_TYPE_FLOAT32, 1, 0, 0, 0);
  const io::Volume vn = io::read_nifti(none);
  Eigen::Matrix4d expect = Eigen::Matrix4d::Identity();
  expect.diagonal() << 1.5, 0.75, 2.0, 1;
  BOOST_TEST((vn.affine() - expect).cwiseAbs().maxCoeff() == 0.0);
}

BOOST_AUTO_TEST_CASE(writes_what_the_reference_library_reads) {
  TmpDir tmp("nifti");
  const std::string src = write_reference<std::int16_t>(tmp("src.nii.gz"), {9, 7, 5, 1}, NIFTI_TYPE_INT16, 1.0f, -1024.0f);
  io::Volume v = io::read_nifti(src);
  for (auto type : {io::NiftiType::float32, io::NiftiType::int16, io::NiftiType::float64}) {
    for (const char* ext : {".nii", ".nii.gz"}) {
      const std::string out = tmp(std::string("out") + std::to_string(static_cast<int>(type)) + ext);
      io::write_nifti(out, v, type);
      const Reference r = read_reference(out);
      check_same(v, r, 1e-3);  // geometry carried over: both transforms and codes
      const io::Volume back = io::read_nifti(out);
      BOOST_TEST((back.affine() - v.affine()).cwiseAbs().maxCoeff() <= 1e-5);
      BOOST_TEST(back.spacing == v.spacing);
    }
  }
  // uint8 output clamps and rounds.
  io::Volume c = v;
  c.data(0, 0, 0) = -7.0f;
  c.data(1, 0, 0) = 300.0f;
  c.data(2, 0, 0) = 41.6f;
  io::write_nifti(tmp("u8.nii"), c, io::NiftiType::uint8);
  const io::Volume cu = io::read_nifti(tmp("u8.nii"));
  BOOST_TEST(cu.data(0, 0, 0) == 0.0f);
  BOOST_TEST(cu.data(1, 0, 0) == 255.0f);
  BOOST_TEST(cu.data(2, 0, 0) == 42.0f);
}

BOOST_AUTO_TEST_CASE(big_endian_files) {
  TmpDir tmp("nifti");
  const std::string f = write_reference<std::int16_t>(tmp("le.nii"), {5, 4, 3, 1}, NIFTI_TYPE_INT16, 3.0f, 7.0f);
  std::vector<unsigned char> b = slurp(f);
  nifti_1_header h;
  std::memcpy(&h, b.data(), sizeof h);
  const std::size_t off = static_cast<std::size_t>(h.vox_offset);
  io::detail::swap_header(h);
  std::memcpy(b.data(), &h, sizeof h);
  for (std::size_t i = off; i + 1 < b.size(); i += 2) std::swap(b[i], b[i + 1]);
  spit(tmp("be.nii"), b);
  // The reference library swaps on its own; both must see the same values and geometry.
  check_same(io::read_nifti(tmp("be.nii")), read_reference(tmp("be.nii")), 0);
  check_same(io::read_nifti(tmp("be.nii")), read_reference(f), 0);
}

BOOST_AUTO_TEST_CASE(header_image_pairs) {
  TmpDir tmp("nifti");
  const std::string hdr = write_reference<float>(tmp("pair.hdr"), {4, 3, 2, 1}, NIFTI_TYPE_FLOAT32, 1, 0);
  BOOST_REQUIRE(fs::exists(tmp("pair.img")));
  check_same(io::read_nifti(hdr), read_reference(hdr), 0);
  check_same(io::read_nifti(tmp("pair.img")), read_reference(hdr), 0);
  fs::remove(tmp("pair.img"));
  expect_error<IoError>([&] { io::read_nifti(hdr); }, "neither");
}

BOOST_AUTO_TEST_CASE(four_d_needs_a_volume) {
  TmpDir tmp("nifti");
  const std::string f = write_reference<float>(tmp("4d.nii.gz"), {3, 4, 5, 3}, NIFTI_TYPE_FLOAT32, 1, 0);
  expect_error<IoError>([&] { io::read_nifti(f); }, "3 volumes; dicyc works on 3-D volumes, so name one");
  BOOST_TEST(io::nifti_volumes(f) == 3);
  for (int vol = 0; vol < 3; ++vol) {
    io::NiftiReadOptions o;
    o.volume = vol;
    check_same(io::read_nifti(f, o), read_reference(f, vol), 0);
  }
  io::NiftiReadOptions o;
  o.volume = 3;
  expect_error<IoError>([&] { io::read_nifti(f, o); }, "volume 3 does not exist");
}

BOOST_AUTO_TEST_CASE(real_scan_when_fetched) {
  // The mricron ch2 template (uint8, 181x217x181), when scripts/fetch_data.sh has run.
  const std::string f = std::string(DICYC_SOURCE_DIR) + "/data/mricron/ch2.nii.gz";
  if (!fs::exists(f)) {
    BOOST_TEST_MESSAGE("skipped: " << f << " not fetched");
    return;
  }
  const io::Volume v = io::read_nifti(f);
  BOOST_TEST(v.dim()[0] == 181);
  BOOST_TEST(v.dim()[1] == 217);
  BOOST_TEST(v.dim()[2] == 181);
  check_same(v, read_reference(f), 0);
}

// ------------------------------------------------------------------------------- hostile files
BOOST_AUTO_TEST_CASE(hostile_headers_give_clear_errors) {
  TmpDir tmp("nifti");
  const std::string good = write_reference<float>(tmp("good.nii"), {6, 5, 4, 1}, NIFTI_TYPE_FLOAT32, 1, 0);
  const std::vector<unsigned char> base = slurp(good);
  auto variant = [&](const std::string& name, auto&& edit) {
    std::vector<unsigned char> b = base;
    edit(b);
    spit(tmp(name), b);
    return tmp(name);
  };
  using H = nifti_1_header;
  expect_error<IoError>([&] { io::read_nifti(tmp("missing.nii")); }, "no such file");
  expect_error<IoError>([&] { io::read_nifti(tmp("")); }, "not a regular file");
  auto f = variant("short.nii", [](auto& b) { b.resize(100); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "a NIfTI-1 header needs 348");
  f = variant("empty.nii", [](auto& b) { b.clear(); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "header needs 348");
  f = variant("garbage.nii", [](auto& b) { for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<unsigned char>(i * 31); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "not a NIfTI-1 file");
  f = variant("nifti2.nii", [](auto& b) { patch<std::int32_t>(b, offsetof(H, sizeof_hdr), 540); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "NIfTI-2");
  f = variant("magic.nii", [](auto& b) { b[offsetof(H, magic)] = 'x'; });
  expect_error<IoError>([&] { io::read_nifti(f); }, "no NIfTI magic");
  f = variant("dim0.nii", [](auto& b) { patch<short>(b, offsetof(H, dim), 0); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "dim[0]");
  f = variant("dim8.nii", [](auto& b) { patch<short>(b, offsetof(H, dim), 8); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "dim[0]");
  f = variant("negdim.nii", [](auto& b) { patch<short>(b, offsetof(H, dim) + 4, -5); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "dimension 2 has size -5");
  f = variant("rgb.nii", [](auto& b) { patch<short>(b, offsetof(H, datatype), NIFTI_TYPE_RGB24); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "rgb24) is not supported");
  f = variant("int64.nii", [](auto& b) { patch<short>(b, offsetof(H, datatype), NIFTI_TYPE_INT64); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "not supported");
  f = variant("offset_low.nii", [](auto& b) { patch<float>(b, offsetof(H, vox_offset), 100.0f); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "lies inside the header");
  f = variant("offset_frac.nii", [](auto& b) { patch<float>(b, offsetof(H, vox_offset), 352.5f); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "not a whole number");
  f = variant("offset_nan.nii", [](auto& b) { patch<float>(b, offsetof(H, vox_offset), std::nanf("")); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "not a valid byte offset");
  f = variant("offset_far.nii", [](auto& b) { patch<float>(b, offsetof(H, vox_offset), 4096.0f); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "truncated");
  f = variant("offset_huge.nii", [](auto& b) { patch<float>(b, offsetof(H, vox_offset), 3e38f); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "not a valid byte offset");
  f = variant("sform_nan.nii", [](auto& b) { patch<float>(b, offsetof(H, srow_x), std::nanf("")); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "sform holds a non-finite");
  f = variant("sform_singular.nii", [](auto& b) {
    for (int k = 0; k < 4; ++k) patch<float>(b, offsetof(H, srow_y) + 4 * k, 0.0f);
  });
  expect_error<IoError>([&] { io::read_nifti(f); }, "sform is singular");
  f = variant("nan_voxel.nii", [](auto& b) { patch<float>(b, 352 + 4 * 7, std::nanf("")); });
  expect_error<IoError>([&] { io::read_nifti(f); }, "voxel (1, 1, 0) is nan");
  io::NiftiReadOptions lenient;
  lenient.allow_nonfinite = true;
  BOOST_TEST(std::isnan(io::read_nifti(f, lenient).data(1, 1, 0)));
}

BOOST_AUTO_TEST_CASE(sizes_that_do_not_match_the_data) {
  TmpDir tmp("nifti");
  const std::string good = write_reference<float>(tmp("good.nii"), {6, 5, 4, 1}, NIFTI_TYPE_FLOAT32, 1, 0);
  const std::vector<unsigned char> base = slurp(good);
  using H = nifti_1_header;
  // Truncated voxel data, plain and gzip.
  std::vector<unsigned char> b(base.begin(), base.end() - 10);
  spit(tmp("trunc.nii"), b);
  expect_error<IoError>([&] { io::read_nifti(tmp("trunc.nii")); }, "truncated");
  {
    gzFile g = gzopen(tmp("trunc.nii.gz").c_str(), "wb");
    gzwrite(g, b.data(), static_cast<unsigned>(b.size()));
    gzclose(g);
  }
  expect_error<IoError>([&] { io::read_nifti(tmp("trunc.nii.gz")); }, "truncated");
  // A gzip file cut in the middle of the compressed stream.
  io::Volume v = io::read_nifti(good);
  io::write_nifti(tmp("whole.nii.gz"), v);
  std::vector<unsigned char> gz = slurp(tmp("whole.nii.gz"));
  spit(tmp("cut.nii.gz"), std::vector<unsigned char>(gz.begin(), gz.begin() + gz.size() / 2));
  expect_error<IoError>([&] { io::read_nifti(tmp("cut.nii.gz")); }, "truncated");
  // Corrupt compressed bytes: an error, never garbage voxels.
  std::vector<unsigned char> bad = gz;
  for (std::size_t i = 20; i < bad.size() - 8; i += 3) bad[i] ^= 0x5a;
  spit(tmp("corrupt.nii.gz"), bad);
  expect_error<IoError>([&] { io::read_nifti(tmp("corrupt.nii.gz")); }, "cannot read");
  // Huge dimensions: over the byte limit before anything is allocated...
  b = base;
  for (int d = 1; d <= 3; ++d) patch<short>(b, offsetof(H, dim) + 2 * d, 32767);
  spit(tmp("huge.nii"), b);
  expect_error<IoError>([&] { io::read_nifti(tmp("huge.nii")); }, "above the limit");
  // ...and under the limit but far beyond the file: refused by size (plain) or by a bounded read (gzip).
  b = base;
  for (int d = 1; d <= 3; ++d) patch<short>(b, offsetof(H, dim) + 2 * d, 1000);
  patch<short>(b, offsetof(H, datatype), NIFTI_TYPE_UINT8);
  patch<short>(b, offsetof(H, bitpix), 8);
  spit(tmp("big.nii"), b);
  expect_error<IoError>([&] { io::read_nifti(tmp("big.nii")); }, "promises 1000000000 bytes");
  {
    gzFile g = gzopen(tmp("big.nii.gz").c_str(), "wb");
    gzwrite(g, b.data(), static_cast<unsigned>(b.size()));
    gzclose(g);
  }
  expect_error<IoError>([&] { io::read_nifti(tmp("big.nii.gz")); }, "truncated");
}

BOOST_AUTO_TEST_CASE(writer_refuses_bad_requests_and_keeps_old_files) {
  TmpDir tmp("nifti");
  const std::string good = write_reference<float>(tmp("good.nii"), {3, 3, 3, 1}, NIFTI_TYPE_FLOAT32, 1, 0);
  io::Volume v = io::read_nifti(good);
  expect_error<ConfigError>([&] { io::write_nifti(tmp("x.png"), v); }, "must end in .nii");
  v.data(0, 0, 0) = std::numeric_limits<float>::infinity();
  const auto before = slurp(good);
  expect_error<NumericError>([&] { io::write_nifti(good, v); }, "refusing to write");
  BOOST_TEST((slurp(good) == before));  // the existing file is untouched
  expect_error<IoError>([&] { io::write_nifti(tmp("no/such/dir.nii"), io::read_nifti(good)); }, "cannot write");
}

BOOST_AUTO_TEST_CASE(grid_labels_title_each_column) {
  // Two 20x10 panels (grey 0 -> 128) under the labels "A" and "TOOLONGLABEL": an 11-pixel title
  // strip on top, each label centred over its column in white, cut to what fits (3 characters of
  // 6 pixels in 20), the panels below it unchanged.
  TmpDir tmp("grid");
  const io::Panel p{20, 10, std::vector<float>(200, 0.0f)};
  io::GridOptions o;
  o.gap = 2;
  o.labels = {"A", "TOOLONGLABEL"};
  io::write_grid(tmp("g.png"), {{p, p}}, o);
  const auto g = io::read_png_gray(tmp("g.png"));
  BOOST_TEST(g.width == 44);
  BOOST_TEST(g.height == 11 + 10 + 2);
  auto at = [&](Index x, Index y) { return static_cast<int>(g.pixels[static_cast<std::size_t>(x + g.width * y)]); };
  // "A" is 5 pixels wide, centred in 20: columns 7..11; its top row " ### ", its fourth "#####".
  BOOST_TEST(at(7, 2) == 0);
  BOOST_TEST(at(8, 2) == 255);
  BOOST_TEST(at(10, 2) == 255);
  BOOST_TEST(at(11, 2) == 0);
  for (Index x = 7; x <= 11; ++x) BOOST_TEST(at(x, 5) == 255);
  // The long label starts at the column's left edge (x 22) and stops after 3 characters.
  int lit_inside = 0, lit_beyond = 0;
  for (Index y = 0; y < 11; ++y)
    for (Index x = 22; x < 44; ++x) (x < 22 + 18 ? lit_inside : lit_beyond) += at(x, y) == 255;
  BOOST_TEST(lit_inside > 0);
  BOOST_TEST(lit_beyond == 0);
  BOOST_TEST(at(5, 11) == 128);  // the first panel, below the strip
}
