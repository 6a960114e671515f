// dicyc/io/nifti.hpp -- NIfTI-1 volumes in and out (.nii, .nii.gz, .hdr/.img pairs), link dicyc::io.
//
// Reading validates the whole header before any voxel is allocated, then reads the voxel data
// through zlib (plain and gzip files alike) in bounded chunks, so a hostile header that claims
// gigabytes costs only what the file really holds. The header layout, the quaternion <-> matrix
// conversions and the datatype codes are the reference NIfTI C library's (nifti1.h, niftiio);
// tests/test_io_nifti.cpp cross-checks the values against nifti_image_read().
//
//   io::Volume v = io::read_nifti("ct.nii.gz");           // float voxels, scl_slope/inter applied
//   v.data(i, j, k)                                         // x fastest, as dicyc's layout
//   io::write_nifti("out.nii.gz", v);                       // same geometry, float32
//
// What is read
// - datatypes uint8, int8, int16, uint16, int32, uint32, float32, float64, either byte order;
// - scl_slope/scl_inter (a zero or non-finite slope means "no scaling", as in the reference);
// - qform and sform with their codes, pixdim, xyzt_units, descrip, intent, cal_min/max;
// - 4-D files only with ReadOptions::volume naming one volume (otherwise a clear error);
// - ANALYZE 7.5 .hdr/.img pairs (no magic): spacing only, both transform codes 0.
//
// What is refused, with IoError naming the file: a missing file, a truncated header or data, an
// unknown sizeof_hdr (NIfTI-2 included), dim[0] outside 1..7, a dimension < 1, an unsupported
// datatype (RGB, complex, 64-bit ints...), vox_offset < 352 in a .nii, a volume above
// ReadOptions::max_bytes, non-finite transforms, and (by default) non-finite voxels.
//
// Writing: write_nifti() takes the geometry from the Volume (both transforms and their codes, so
// an output overlays its source in any viewer), stores float32 (or int16/uint8/float64, rounded
// and clamped) with scl_slope 1, and writes atomically (temporary file, fsync, rename); a name
// ending in .gz is gzip-compressed.
#pragma once

#include <nifti1.h>
#include <nifti1_io.h>
#include <zlib.h>

#include <xtensor/xtensor.hpp>

#include <Eigen/Core>
#include <Eigen/LU>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "dicyc/core/error.hpp"
#include "dicyc/io/atomic_file.hpp"

namespace dicyc::io {

/// The voxel types dicyc reads; write_nifti() writes the first four.
enum class NiftiType : std::int16_t {
  float32 = NIFTI_TYPE_FLOAT32,
  int16 = NIFTI_TYPE_INT16,
  uint8 = NIFTI_TYPE_UINT8,
  float64 = NIFTI_TYPE_FLOAT64,
  int8 = NIFTI_TYPE_INT8,
  uint16 = NIFTI_TYPE_UINT16,
  int32 = NIFTI_TYPE_INT32,
  uint32 = NIFTI_TYPE_UINT32,
};

/// Voxels, x fastest (column-major), float in the file's units after scl_slope/scl_inter.
using VolumeData = xt::xtensor<float, 3, xt::layout_type::column_major>;

/// One 3-D volume and its geometry. `qform`/`sform` map a voxel index (i, j, k, 1) to scanner
/// millimetres; `affine()` is the one a viewer uses (sform if its code is set, else qform, else
/// the spacing alone).
struct Volume {
  VolumeData data;
  std::array<double, 3> spacing{1, 1, 1};
  Eigen::Matrix4d qform = Eigen::Matrix4d::Identity();
  Eigen::Matrix4d sform = Eigen::Matrix4d::Identity();
  int qform_code = 0, sform_code = 0;
  int xyzt_units = NIFTI_UNITS_MM;
  int intent_code = 0;
  std::string descrip;
  NiftiType source_type = NiftiType::float32;  // the datatype the file stored

  std::array<std::int64_t, 3> dim() const {
    return {static_cast<std::int64_t>(data.shape()[0]), static_cast<std::int64_t>(data.shape()[1]),
            static_cast<std::int64_t>(data.shape()[2])};
  }
  std::int64_t voxels() const { return static_cast<std::int64_t>(data.size()); }

  Eigen::Matrix4d affine() const {
    if (sform_code > 0) return sform;
    if (qform_code > 0) return qform;
    Eigen::Matrix4d a = Eigen::Matrix4d::Identity();
    for (int d = 0; d < 3; ++d) a(d, d) = spacing[d];
    return a;
  }

  /// Same geometry, new voxel grid of `dim` whose index maps to this one's through `index_map`
  /// (new index -> old index, homogeneous). Used by resampling, reorientation and cropping.
  Volume regridded(const std::array<std::int64_t, 3>& dim, const Eigen::Matrix4d& index_map,
                   const std::array<double, 3>& new_spacing) const {
    Volume v;
    v.data = VolumeData::from_shape({static_cast<std::size_t>(dim[0]), static_cast<std::size_t>(dim[1]),
                                     static_cast<std::size_t>(dim[2])});
    v.spacing = new_spacing;
    v.qform = qform * index_map;
    v.sform = sform * index_map;
    v.qform_code = qform_code;
    v.sform_code = sform_code;
    v.xyzt_units = xyzt_units;
    v.intent_code = intent_code;
    v.descrip = descrip;
    v.source_type = source_type;
    return v;
  }
};

struct NiftiReadOptions {
  int volume = -1;                                   // which volume of a 4-D file; -1: refuse 4-D
  std::int64_t max_bytes = std::int64_t{4} << 30;    // voxel bytes of one volume, as stored
  bool allow_nonfinite = false;                      // NaN/Inf voxels are an error by default
};

namespace detail {

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// A zlib reader (transparent for uncompressed files) that closes itself.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path) {
    f_ = ::gzopen(path.c_str(), "rb");
    DICYC_CHECK(f_ != nullptr, IoError, "cannot open '" << path << "': " << std::strerror(errno ? errno : EIO));
    ::gzbuffer(f_, 1 << 17);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;
  ~GzReader() {
    if (f_) ::gzclose_r(f_);
  }
  /// Reads up to n bytes; returns how many came (fewer only at the end of the data).
  std::size_t read(void* dst, std::size_t n) {
    std::size_t got = 0;
    auto* p = static_cast<unsigned char*>(dst);
    while (got < n) {
      const unsigned chunk = static_cast<unsigned>(std::min<std::size_t>(n - got, 1u << 30));
      const int r = ::gzread(f_, p + got, chunk);
      if (r < 0) {
        int errnum = 0;
        const char* msg = ::gzerror(f_, &errnum);
        DICYC_CHECK(false, IoError, "cannot read '" << path_ << "': corrupt compressed data (" << msg << ")");
      }
      if (r == 0) {
        // gzread returns 0 at the end and also for a truncated gzip stream; tell them apart.
        int errnum = 0;
        const char* msg = ::gzerror(f_, &errnum);
        DICYC_CHECK(errnum == Z_OK || errnum == Z_BUF_ERROR, IoError,
                    "cannot read '" << path_ << "': corrupt compressed data (" << msg << ")");
        DICYC_CHECK(errnum != Z_BUF_ERROR, IoError,
                    "cannot read '" << path_ << "': the compressed stream is truncated");
        break;
      }
      got += static_cast<std::size_t>(r);
    }
    return got;
  }
  /// Skips n bytes; returns how many were there.
  std::size_t skip(std::size_t n) {
    std::vector<unsigned char> tmp(std::min<std::size_t>(n, 1 << 16));
    std::size_t done = 0;
    while (done < n) {
      const std::size_t want = std::min(tmp.size(), n - done);
      const std::size_t got = read(tmp.data(), want);
      done += got;
      if (got < want) break;
    }
    return done;
  }
  /// Reads n bytes in bounded chunks, so the allocation follows what the file holds.
  std::vector<unsigned char> read_bounded(std::size_t n) {
    std::vector<unsigned char> out;
    const std::size_t chunk = std::size_t{16} << 20;
    while (out.size() < n) {
      const std::size_t want = std::min(chunk, n - out.size());
      const std::size_t at = out.size();
      out.resize(at + want);
      const std::size_t got = read(out.data() + at, want);
      out.resize(at + got);
      if (got < want) break;
    }
    return out;
  }

 private:
  gzFile f_ = nullptr;
  std::string path_;
};

template <typename T>
inline void byteswap_inplace(T& v) {
  unsigned char* b = reinterpret_cast<unsigned char*>(&v);
  std::reverse(b, b + sizeof(T));
}

inline void swap_header(nifti_1_header& h) {
  byteswap_inplace(h.sizeof_hdr);
  byteswap_inplace(h.extents);
  byteswap_inplace(h.session_error);
  for (auto& d : h.dim) byteswap_inplace(d);
  byteswap_inplace(h.intent_p1);
  byteswap_inplace(h.intent_p2);
  byteswap_inplace(h.intent_p3);
  byteswap_inplace(h.intent_code);
  byteswap_inplace(h.datatype);
  byteswap_inplace(h.bitpix);
  byteswap_inplace(h.slice_start);
  for (auto& p : h.pixdim) byteswap_inplace(p);
  byteswap_inplace(h.vox_offset);
  byteswap_inplace(h.scl_slope);
  byteswap_inplace(h.scl_inter);
  byteswap_inplace(h.slice_end);
  byteswap_inplace(h.cal_max);
  byteswap_inplace(h.cal_min);
  byteswap_inplace(h.slice_duration);
  byteswap_inplace(h.toffset);
  byteswap_inplace(h.glmax);
  byteswap_inplace(h.glmin);
  byteswap_inplace(h.qform_code);
  byteswap_inplace(h.sform_code);
  byteswap_inplace(h.quatern_b);
  byteswap_inplace(h.quatern_c);
  byteswap_inplace(h.quatern_d);
  byteswap_inplace(h.qoffset_x);
  byteswap_inplace(h.qoffset_y);
  byteswap_inplace(h.qoffset_z);
  for (auto& r : h.srow_x) byteswap_inplace(r);
  for (auto& r : h.srow_y) byteswap_inplace(r);
  for (auto& r : h.srow_z) byteswap_inplace(r);
}

inline int datatype_size(int datatype) {
  switch (datatype) {
    case NIFTI_TYPE_UINT8:
    case NIFTI_TYPE_INT8: return 1;
    case NIFTI_TYPE_INT16:
    case NIFTI_TYPE_UINT16: return 2;
    case NIFTI_TYPE_INT32:
    case NIFTI_TYPE_UINT32:
    case NIFTI_TYPE_FLOAT32: return 4;
    case NIFTI_TYPE_FLOAT64: return 8;
    default: return 0;
  }
}

inline const char* datatype_name(int datatype) {
  switch (datatype) {
    case NIFTI_TYPE_UINT8: return "uint8";
    case NIFTI_TYPE_INT8: return "int8";
    case NIFTI_TYPE_INT16: return "int16";
    case NIFTI_TYPE_UINT16: return "uint16";
    case NIFTI_TYPE_INT32: return "int32";
    case NIFTI_TYPE_UINT32: return "uint32";
    case NIFTI_TYPE_FLOAT32: return "float32";
    case NIFTI_TYPE_FLOAT64: return "float64";
    case NIFTI_TYPE_RGB24: return "rgb24";
    case NIFTI_TYPE_RGBA32: return "rgba32";
    case NIFTI_TYPE_COMPLEX64: return "complex64";
    case NIFTI_TYPE_COMPLEX128: return "complex128";
    case NIFTI_TYPE_INT64: return "int64";
    case NIFTI_TYPE_UINT64: return "uint64";
    case NIFTI_TYPE_FLOAT128: return "float128";
    default: return "unknown";
  }
}

template <typename T>
inline void convert_voxels(const unsigned char* src, std::size_t n, bool swap, float slope, float inter,
                           float* dst) {
  for (std::size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    if (swap) byteswap_inplace(v);
    dst[i] = static_cast<float>(static_cast<double>(v) * slope + inter);
  }
}

inline Eigen::Matrix4d to_eigen(const mat44& m) {
  Eigen::Matrix4d a;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) a(r, c) = m.m[r][c];
  return a;
}

inline mat44 to_mat44(const Eigen::Matrix4d& a) {
  mat44 m;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) m.m[r][c] = static_cast<float>(a(r, c));
  return m;
}

/// The file that holds the voxels of a header file: `x.nii[.gz]` itself, `x.img[.gz]` for a
/// `x.hdr[.gz]`.
inline std::string image_file_for(const std::string& header_path) {
  namespace fs = std::filesystem;
  std::string stem;
  if (ends_with(header_path, ".hdr.gz")) stem = header_path.substr(0, header_path.size() - 7);
  else if (ends_with(header_path, ".hdr")) stem = header_path.substr(0, header_path.size() - 4);
  else return header_path;
  for (const char* ext : {".img", ".img.gz"})
    if (fs::exists(stem + ext)) return stem + ext;
  DICYC_CHECK(false, IoError, "'" << header_path << "' is a header file, but neither '" << stem << ".img' nor '"
                                  << stem << ".img.gz' exists");
  return {};
}

}  // namespace detail

/// Reads a header and validates it. Exposed for tools that only need the geometry and for the
/// fuzz target.
struct NiftiHeaderInfo {
  nifti_1_header header{};
  bool swapped = false;
  bool single_file = true;  // n+1 (.nii) or ni1/ANALYZE pair
  std::array<std::int64_t, 3> dim{1, 1, 1};
  std::int64_t volumes = 1;
  int datatype = 0;
  std::int64_t voxel_offset = 0;
  std::int64_t volume_bytes = 0;
};

inline NiftiHeaderInfo parse_nifti_header(const unsigned char* bytes, std::size_t size, const std::string& path,
                                          const NiftiReadOptions& opt = {}) {
  NiftiHeaderInfo info;
  DICYC_CHECK(size >= sizeof(nifti_1_header), IoError,
              "cannot read NIfTI '" << path << "': the file has " << size << " bytes, a NIfTI-1 header needs 348");
  static_assert(sizeof(nifti_1_header) == 348, "nifti_1_header layout");
  nifti_1_header& h = info.header;
  std::memcpy(&h, bytes, sizeof h);
  if (h.sizeof_hdr != 348) {
    std::int32_t s = h.sizeof_hdr;
    detail::byteswap_inplace(s);
    if (s == 348) {
      info.swapped = true;
      detail::swap_header(h);
    } else {
      std::int32_t native = h.sizeof_hdr;
      DICYC_CHECK(!(native == 540 || s == 540), IoError,
                  "cannot read '" << path << "': it is a NIfTI-2 file; dicyc reads NIfTI-1 (convert it, e.g. with "
                                  << "nifti_tool -copy_image ... -convert2dtype)");
      DICYC_CHECK(false, IoError, "cannot read '" << path << "': not a NIfTI-1 file (sizeof_hdr is " << native
                                                  << ", expected 348)");
    }
  }
  const std::string magic(h.magic, h.magic + 3);
  if (magic == "n+1" && h.magic[3] == '\0') info.single_file = true;
  else if (magic == "ni1" && h.magic[3] == '\0') info.single_file = false;
  else {
    DICYC_CHECK(detail::ends_with(path, ".hdr") || detail::ends_with(path, ".hdr.gz"), IoError,
                "cannot read '" << path << "': no NIfTI magic ('n+1' or 'ni1') in the header");
    info.single_file = false;  // ANALYZE 7.5
    h.qform_code = 0;
    h.sform_code = 0;
  }
  const int nd = h.dim[0];
  DICYC_CHECK(nd >= 1 && nd <= 7, IoError,
              "cannot read '" << path << "': dim[0] (the number of dimensions) is " << nd << ", expected 1..7");
  for (int d = 1; d <= nd; ++d)
    DICYC_CHECK(h.dim[d] >= 1, IoError,
                "cannot read '" << path << "': dimension " << d << " has size " << h.dim[d] << ", expected >= 1");
  for (int d = 0; d < 3; ++d) info.dim[d] = d + 1 <= nd ? h.dim[d + 1] : 1;
  info.volumes = 1;
  for (int d = 4; d <= nd; ++d) info.volumes *= h.dim[d];
  info.datatype = h.datatype;
  const int bytes_per = detail::datatype_size(h.datatype);
  DICYC_CHECK(bytes_per > 0, IoError,
              "cannot read '" << path << "': datatype " << h.datatype << " (" << detail::datatype_name(h.datatype)
                              << ") is not supported; dicyc reads uint8, int8, int16, uint16, int32, uint32, "
                                 "float32 and float64 voxels");
  info.volume_bytes = info.dim[0] * info.dim[1] * info.dim[2] * bytes_per;  // < 2^45: no overflow
  DICYC_CHECK(info.volume_bytes <= opt.max_bytes, IoError,
              "cannot read '" << path << "': one volume of " << info.dim[0] << " x " << info.dim[1] << " x "
                              << info.dim[2] << " " << detail::datatype_name(h.datatype) << " voxels is "
                              << info.volume_bytes << " bytes, above the limit of " << opt.max_bytes);
  DICYC_CHECK(std::isfinite(h.vox_offset) && h.vox_offset >= 0 && h.vox_offset <= 1e9, IoError,
              "cannot read '" << path << "': vox_offset " << h.vox_offset << " is not a valid byte offset");
  DICYC_CHECK(h.vox_offset == std::floor(h.vox_offset), IoError,
              "cannot read '" << path << "': vox_offset " << h.vox_offset << " is not a whole number of bytes");
  info.voxel_offset = static_cast<std::int64_t>(h.vox_offset);
  if (info.single_file)
    DICYC_CHECK(info.voxel_offset >= 352, IoError,
                "cannot read '" << path << "': vox_offset " << info.voxel_offset
                                << " lies inside the header (a .nii file's data starts at byte 352 or later)");
  if (info.volumes > 1) {
    DICYC_CHECK(opt.volume >= 0, IoError,
                "'" << path << "' is " << nd << "-D with " << info.volumes
                    << " volumes; dicyc works on 3-D volumes, so name one (e.g. --volume 0)");
    DICYC_CHECK(opt.volume < info.volumes, IoError,
                "'" << path << "' has " << info.volumes << " volumes; volume " << opt.volume << " does not exist");
  } else {
    DICYC_CHECK(opt.volume <= 0, IoError,
                "'" << path << "' is a single 3-D volume; volume " << opt.volume << " does not exist");
  }
  return info;
}

/// A file's header alone, validated (dimensions, volumes, pixdim in header.pixdim[1..3]).
inline NiftiHeaderInfo nifti_header_info(const std::string& path) {
  std::string header_path = path;
  if (detail::ends_with(path, ".img") || detail::ends_with(path, ".img.gz")) {
    const std::string stem = path.substr(0, path.size() - (detail::ends_with(path, ".gz") ? 7 : 4));
    header_path = std::filesystem::exists(stem + ".hdr") ? stem + ".hdr" : stem + ".hdr.gz";
  }
  detail::GzReader in(header_path);
  unsigned char hb[sizeof(nifti_1_header)];
  const std::size_t got = in.read(hb, sizeof hb);
  NiftiReadOptions o;
  o.volume = 0;
  o.max_bytes = std::numeric_limits<std::int64_t>::max();
  return parse_nifti_header(hb, got, header_path, o);
}

/// How many 3-D volumes a file holds (1 for a 3-D file), from its header alone.
inline std::int64_t nifti_volumes(const std::string& path) { return nifti_header_info(path).volumes; }

inline Volume read_nifti(const std::string& path, const NiftiReadOptions& opt = {}) {
  namespace fs = std::filesystem;
  std::error_code ec;
  DICYC_CHECK(fs::exists(path, ec), IoError, "cannot read NIfTI '" << path << "': no such file");
  DICYC_CHECK(fs::is_regular_file(path, ec), IoError, "cannot read NIfTI '" << path << "': not a regular file");
  std::string header_path = path;
  if (detail::ends_with(path, ".img") || detail::ends_with(path, ".img.gz")) {
    const std::string stem = path.substr(0, path.size() - (detail::ends_with(path, ".gz") ? 7 : 4));
    header_path = fs::exists(stem + ".hdr") ? stem + ".hdr" : stem + ".hdr.gz";
    DICYC_CHECK(fs::exists(header_path), IoError,
                "cannot read '" << path << "': an image file needs its header '" << stem << ".hdr'");
  }
  NiftiHeaderInfo info;
  std::vector<unsigned char> raw;
  {
    detail::GzReader in(header_path);
    unsigned char hb[sizeof(nifti_1_header)];
    const std::size_t got = in.read(hb, sizeof hb);
    info = parse_nifti_header(hb, got, header_path, opt);
    const std::string data_path = info.single_file ? header_path : detail::image_file_for(header_path);
    const std::int64_t skip_volumes = info.volumes > 1 ? opt.volume : 0;
    const std::int64_t start = info.voxel_offset + skip_volumes * info.volume_bytes;
    // Uncompressed files are checked against their size before anything is read.
    if (!detail::ends_with(data_path, ".gz")) {
      const auto fsize = static_cast<std::int64_t>(fs::file_size(data_path, ec));
      DICYC_CHECK(!ec && fsize >= start + info.volume_bytes, IoError,
                  "cannot read '" << data_path << "': truncated; the header promises " << info.volume_bytes
                                  << " bytes of voxels at offset " << start << ", but the file has " << fsize
                                  << " bytes");
    }
    if (info.single_file) {
      const std::size_t skipped = in.skip(static_cast<std::size_t>(start) - sizeof hb);
      DICYC_CHECK(skipped == static_cast<std::size_t>(start) - sizeof hb, IoError,
                  "cannot read '" << data_path << "': truncated before the voxel data (vox_offset " << start << ")");
      raw = in.read_bounded(static_cast<std::size_t>(info.volume_bytes));
    } else {
      detail::GzReader img(data_path);
      const std::size_t skipped = img.skip(static_cast<std::size_t>(start));
      DICYC_CHECK(skipped == static_cast<std::size_t>(start), IoError,
                  "cannot read '" << data_path << "': truncated before the voxel data (offset " << start << ")");
      raw = img.read_bounded(static_cast<std::size_t>(info.volume_bytes));
    }
    DICYC_CHECK(static_cast<std::int64_t>(raw.size()) == info.volume_bytes, IoError,
                "cannot read '" << data_path << "': truncated; the header promises " << info.volume_bytes
                                << " bytes of voxels, the file holds " << raw.size());
  }
  const nifti_1_header& h = info.header;
  Volume v;
  v.data = VolumeData::from_shape({static_cast<std::size_t>(info.dim[0]), static_cast<std::size_t>(info.dim[1]),
                                   static_cast<std::size_t>(info.dim[2])});
  float slope = h.scl_slope, inter = h.scl_inter;
  if (!(std::isfinite(slope) && slope != 0.0f)) {
    slope = 1.0f;
    inter = 0.0f;
  } else if (!std::isfinite(inter)) {
    inter = 0.0f;
  }
  const std::size_t n = v.data.size();
  float* dst = v.data.data();
  switch (info.datatype) {
    case NIFTI_TYPE_UINT8: detail::convert_voxels<std::uint8_t>(raw.data(), n, false, slope, inter, dst); break;
    case NIFTI_TYPE_INT8: detail::convert_voxels<std::int8_t>(raw.data(), n, false, slope, inter, dst); break;
    case NIFTI_TYPE_INT16: detail::convert_voxels<std::int16_t>(raw.data(), n, info.swapped, slope, inter, dst); break;
    case NIFTI_TYPE_UINT16: detail::convert_voxels<std::uint16_t>(raw.data(), n, info.swapped, slope, inter, dst); break;
    case NIFTI_TYPE_INT32: detail::convert_voxels<std::int32_t>(raw.data(), n, info.swapped, slope, inter, dst); break;
    case NIFTI_TYPE_UINT32: detail::convert_voxels<std::uint32_t>(raw.data(), n, info.swapped, slope, inter, dst); break;
    case NIFTI_TYPE_FLOAT32: detail::convert_voxels<float>(raw.data(), n, info.swapped, slope, inter, dst); break;
    case NIFTI_TYPE_FLOAT64: detail::convert_voxels<double>(raw.data(), n, info.swapped, slope, inter, dst); break;
    default: break;  // refused by parse_nifti_header
  }
  if (!opt.allow_nonfinite) {
    for (std::size_t i = 0; i < n; ++i) {
      if (!std::isfinite(dst[i])) {
        const auto x = i % info.dim[0], y = (i / info.dim[0]) % info.dim[1], z = i / (info.dim[0] * info.dim[1]);
        DICYC_CHECK(false, IoError, "'" << path << "': voxel (" << x << ", " << y << ", " << z << ") is "
                                        << dst[i] << " (after scl_slope " << slope << ", scl_inter " << inter
                                        << "); dicyc needs finite intensities");
      }
    }
  }
  v.source_type = static_cast<NiftiType>(info.datatype);
  v.xyzt_units = h.xyzt_units;
  v.intent_code = h.intent_code;
  v.descrip = std::string(h.descrip, strnlen(h.descrip, sizeof h.descrip));
  for (int d = 0; d < 3; ++d) {
    const float p = d + 1 <= 7 ? h.pixdim[d + 1] : 1.0f;
    v.spacing[d] = (std::isfinite(p) && p > 0) ? p : (std::isfinite(p) && p < 0 ? -p : 1.0);
  }
  v.qform_code = h.qform_code;
  v.sform_code = h.sform_code;
  if (h.qform_code > 0) {
    for (float q : {h.quatern_b, h.quatern_c, h.quatern_d, h.qoffset_x, h.qoffset_y, h.qoffset_z})
      DICYC_CHECK(std::isfinite(q), IoError, "cannot read '" << path << "': the qform holds a non-finite value");
    const float qfac = h.pixdim[0] < 0 ? -1.0f : 1.0f;
    v.qform = detail::to_eigen(nifti_quatern_to_mat44(h.quatern_b, h.quatern_c, h.quatern_d, h.qoffset_x,
                                                      h.qoffset_y, h.qoffset_z, static_cast<float>(v.spacing[0]),
                                                      static_cast<float>(v.spacing[1]),
                                                      static_cast<float>(v.spacing[2]), qfac));
  } else {
    v.qform = Eigen::Matrix4d::Identity();
    for (int d = 0; d < 3; ++d) v.qform(d, d) = v.spacing[d];
  }
  if (h.sform_code > 0) {
    for (int c = 0; c < 4; ++c) {
      v.sform(0, c) = h.srow_x[c];
      v.sform(1, c) = h.srow_y[c];
      v.sform(2, c) = h.srow_z[c];
    }
    v.sform.row(3) << 0, 0, 0, 1;
    DICYC_CHECK(v.sform.allFinite(), IoError, "cannot read '" << path << "': the sform holds a non-finite value");
    DICYC_CHECK(std::abs(v.sform.topLeftCorner<3, 3>().determinant()) > 0, IoError,
                "cannot read '" << path << "': the sform is singular");
  } else {
    v.sform = v.qform;
  }
  return v;
}

/// Writes a volume with its geometry. The datatype is float32 unless `type` says otherwise;
/// integer types are rounded and clamped to their range.
inline void write_nifti(const std::string& path, const Volume& v, NiftiType type = NiftiType::float32) {
  const auto dim = v.dim();
  DICYC_CHECK(v.voxels() > 0, ShapeError, "write_nifti '" << path << "': the volume is empty");
  for (auto d : dim)
    DICYC_CHECK(d <= 32767, ShapeError, "write_nifti '" << path << "': dimension " << d << " exceeds NIfTI-1's 32767");
  DICYC_CHECK(type == NiftiType::float32 || type == NiftiType::int16 || type == NiftiType::uint8 ||
                  type == NiftiType::float64,
              ConfigError, "write_nifti '" << path << "': dicyc writes float32, float64, int16 or uint8");
  const bool gz = detail::ends_with(path, ".gz");
  DICYC_CHECK(detail::ends_with(path, ".nii") || detail::ends_with(path, ".nii.gz"), ConfigError,
              "write_nifti '" << path << "': the name must end in .nii or .nii.gz");
  nifti_1_header h{};
  h.sizeof_hdr = 348;
  h.dim[0] = 3;
  for (int d = 0; d < 3; ++d) h.dim[d + 1] = static_cast<short>(dim[d]);
  for (int d = 4; d < 8; ++d) h.dim[d] = 1;
  h.datatype = static_cast<short>(type);
  h.bitpix = static_cast<short>(8 * detail::datatype_size(h.datatype));
  h.vox_offset = 352;
  h.scl_slope = 1.0f;
  h.scl_inter = 0.0f;
  h.xyzt_units = static_cast<char>(v.xyzt_units);
  h.intent_code = static_cast<short>(v.intent_code);
  std::strncpy(h.descrip, v.descrip.c_str(), sizeof h.descrip - 1);
  std::memcpy(h.magic, "n+1\0", 4);
  // The qform: rotation + spacing + qfac from the matrix (the reference library's conversion).
  float qb = 0, qc = 0, qd = 0, qx = 0, qy = 0, qz = 0, dx = 1, dy = 1, dz = 1, qfac = 1;
  const Eigen::Matrix4d q = v.qform_code > 0 ? v.qform : v.affine();
  nifti_mat44_to_quatern(detail::to_mat44(q), &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
  h.qform_code = static_cast<short>(v.qform_code);
  h.quatern_b = qb;
  h.quatern_c = qc;
  h.quatern_d = qd;
  h.qoffset_x = qx;
  h.qoffset_y = qy;
  h.qoffset_z = qz;
  h.pixdim[0] = qfac;
  h.pixdim[1] = static_cast<float>(v.spacing[0]);
  h.pixdim[2] = static_cast<float>(v.spacing[1]);
  h.pixdim[3] = static_cast<float>(v.spacing[2]);
  h.sform_code = static_cast<short>(v.sform_code);
  const Eigen::Matrix4d s = v.sform_code > 0 ? v.sform : v.affine();
  for (int c = 0; c < 4; ++c) {
    h.srow_x[c] = static_cast<float>(s(0, c));
    h.srow_y[c] = static_cast<float>(s(1, c));
    h.srow_z[c] = static_cast<float>(s(2, c));
  }
  const std::size_t n = v.data.size();
  const float* src = v.data.data();
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  for (std::size_t i = 0; i < n; ++i) {
    DICYC_CHECK(std::isfinite(src[i]), NumericError,
                "write_nifti '" << path << "': voxel " << i << " is " << src[i] << "; refusing to write it");
    lo = std::min(lo, src[i]);
    hi = std::max(hi, src[i]);
  }
  const int bytes_per = detail::datatype_size(h.datatype);
  DICYC_CHECK(n * static_cast<std::size_t>(bytes_per) < (std::size_t{1} << 32) - 4096, ShapeError,
              "write_nifti '" << path << "': volumes of 4 GiB or more are not supported");
  std::vector<unsigned char> bytes(352 + n * static_cast<std::size_t>(bytes_per), 0);
  auto put = [&](std::size_t i, auto value) { std::memcpy(bytes.data() + 352 + i * sizeof(value), &value, sizeof value); };
  for (std::size_t i = 0; i < n; ++i) {
    const double x = src[i];
    switch (type) {
      case NiftiType::float32: put(i, static_cast<float>(x)); break;
      case NiftiType::float64: put(i, x); break;
      case NiftiType::int16: put(i, static_cast<std::int16_t>(std::clamp(std::nearbyint(x), -32768.0, 32767.0))); break;
      case NiftiType::uint8: put(i, static_cast<std::uint8_t>(std::clamp(std::nearbyint(x), 0.0, 255.0))); break;
      default: break;
    }
  }
  h.cal_min = type == NiftiType::uint8 ? std::clamp(lo, 0.0f, 255.0f) : lo;
  h.cal_max = type == NiftiType::uint8 ? std::clamp(hi, 0.0f, 255.0f) : hi;
  std::memcpy(bytes.data(), &h, sizeof h);  // bytes 348..351: the empty extension flag, zero
  if (!gz) {
    write_file_atomic(path, bytes);
    return;
  }
  z_stream zs{};
  DICYC_CHECK(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK, IoError,
              "write_nifti '" << path << "': cannot start gzip compression");
  std::vector<unsigned char> out(deflateBound(&zs, static_cast<uLong>(bytes.size())) + 64);
  zs.next_in = bytes.data();
  zs.avail_in = static_cast<uInt>(bytes.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  const std::size_t written = out.size() - zs.avail_out;
  deflateEnd(&zs);
  DICYC_CHECK(rc == Z_STREAM_END, IoError, "write_nifti '" << path << "': gzip compression failed (" << rc << ")");
  out.resize(written);
  write_file_atomic(path, out);
}

}  // namespace dicyc::io
