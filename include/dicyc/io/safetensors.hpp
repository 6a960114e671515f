// dicyc/io/safetensors.hpp -- reading and writing the safetensors format
// (https://github.com/huggingface/safetensors), so Python reads our weights with the safetensors
// package or with plain json + numpy, and PyTorch state dicts move both ways.
//
// Layout: an 8-byte little-endian header length n, n bytes of JSON
//   {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "string value", ...}}
// then the data: each tensor row-major (C order), little-endian, at [begin, end) of the data block.
// The writer pads the header with spaces to a multiple of 8 bytes, as the reference does, and
// writes atomically: to a temporary file in the destination's directory, flushed and fsync'ed,
// then renamed over the destination, so a crash mid-write leaves the old file or the new one,
// never a broken one.
// The reader validates everything before anything is used: header length against the file size,
// JSON syntax, every entry's dtype, shape, and offsets (inside the data block, of exactly
// numel * itemsize bytes, not overlapping), and reports each problem as a SerializationError
// that names the file, the tensor, what was expected and what was found.
// Checksums: the writer stores a CRC-32 (zlib's polynomial) of every tensor's bytes in the
// metadata entry "checksums" (a JSON object, name -> 8 hex digits) and one over every other
// metadata entry in "metadata_checksum" (entries sorted by key, each as key NUL value NUL), so
// Python checks them with zlib.crc32. The reader verifies the metadata checksum when it parses
// the header and each tensor's checksum when the tensor is read (read(): all of them at once), and
// refuses a mismatch with a SerializationError naming the file and the tensor. Files written
// before checksums existed carry neither entry and load (has_checksums() is false).
// SafeTensorsFile::read() holds the whole file in memory; SafeTensorsFile::open() reads and
// validates only the header (8 + n bytes) and keeps the file open, so a tensor is read from disk
// when asked for: metadata lookups and loading a few tensors of a large checkpoint (the
// generators of a training checkpoint, without its Adam moments and pools) cost what they use.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dicyc/core/error.hpp"
#include "dicyc/core/types.hpp"
#include "dicyc/io/atomic_file.hpp"

namespace dicyc::io {

enum class DType { F16, F32, F64, I32, I64, U8 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F16: return "F16";
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    default: return "U8";
  }
}
inline std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::F16: return 2;
    case DType::F32: case DType::I32: return 4;
    case DType::F64: case DType::I64: return 8;
    default: return 1;
  }
}
inline bool parse_dtype(const std::string& s, DType& d) {
  for (DType c : {DType::F16, DType::F32, DType::F64, DType::I32, DType::I64, DType::U8})
    if (s == dtype_name(c)) {
      d = c;
      return true;
    }
  return false;
}

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<half>() { return DType::F16; }
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<std::int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<std::uint8_t>() { return DType::U8; }

inline std::string shape_string(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

namespace detail {
/// CRC-32 (the zlib/PNG polynomial 0xEDB88320, reflected), continued from `crc` (0 to start).
inline std::uint32_t crc32(const void* data, std::size_t n, std::uint32_t crc = 0) {
  static const auto table = [] {
    std::array<std::uint32_t, 8 * 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i)  // slicing by 8
      for (int s = 1; s < 8; ++s) t[s * 256 + i] = (t[(s - 1) * 256 + i] >> 8) ^ t[t[(s - 1) * 256 + i] & 0xFF];
    return t;
  }();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  while (n >= 8) {
    std::uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= crc;
    crc = table[7 * 256 + (lo & 0xFF)] ^ table[6 * 256 + ((lo >> 8) & 0xFF)] ^ table[5 * 256 + ((lo >> 16) & 0xFF)] ^
          table[4 * 256 + (lo >> 24)] ^ table[3 * 256 + (hi & 0xFF)] ^ table[2 * 256 + ((hi >> 8) & 0xFF)] ^
          table[1 * 256 + ((hi >> 16) & 0xFF)] ^ table[hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

inline std::string crc32_hex(std::uint32_t c) {
  char b[9];
  std::snprintf(b, sizeof b, "%08x", static_cast<unsigned>(c));
  return b;
}

inline constexpr const char* kChecksumsKey = "checksums";
inline constexpr const char* kMetadataChecksumKey = "metadata_checksum";

/// The CRC-32 over every metadata entry but the metadata checksum itself, sorted by key.
inline std::string metadata_crc(const std::map<std::string, std::string>& meta) {
  std::uint32_t c = 0;
  const char nul = 0;
  for (const auto& [k, v] : meta) {
    if (k == kMetadataChecksumKey) continue;
    c = crc32(k.data(), k.size(), c);
    c = crc32(&nul, 1, c);
    c = crc32(v.data(), v.size(), c);
    c = crc32(&nul, 1, c);
  }
  return crc32_hex(c);
}

inline bool little_endian() {
  const std::uint16_t one = 1;
  unsigned char c;
  std::memcpy(&c, &one, 1);
  return c == 1;
}
}  // namespace detail

/// Collects tensors and metadata, then writes one file atomically.
class SafeTensorsWriter {
 public:
  /// Adds a tensor from row-major data of numel(shape) elements of dtype d.
  void add(const std::string& name, DType d, std::vector<std::int64_t> shape, const void* data) {
    DICYC_CHECK(!name.empty() && name != "__metadata__", ConfigError, "safetensors: invalid tensor name '" << name << "'");
    DICYC_CHECK(index_.count(name) == 0, ConfigError, "safetensors: tensor '" << name << "' added twice");
    std::size_t n = 1;
    for (auto e : shape) {
      DICYC_CHECK(e >= 0, ShapeError, "safetensors: tensor '" << name << "' has a negative extent " << shape_string(shape));
      n *= static_cast<std::size_t>(e);
    }
    Entry e{name, d, std::move(shape), std::vector<unsigned char>(n * dtype_size(d))};
    if (n) std::memcpy(e.bytes.data(), data, e.bytes.size());
    index_[name] = entries_.size();
    entries_.push_back(std::move(e));
  }
  template <class T>
  void add(const std::string& name, std::vector<std::int64_t> shape, const T* data) {
    add(name, dtype_of<T>(), std::move(shape), data);
  }
  void metadata(const std::string& key, const std::string& value) { meta_[key] = value; }

  /// The whole file as bytes.
  std::vector<unsigned char> serialize() const {
    const std::string header = header_string();
    std::size_t off = 0;
    for (const auto& e : entries_) off += e.bytes.size();
    std::vector<unsigned char> out(8 + header.size() + off);
    const std::uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, header.data(), header.size());
    std::size_t p = 8 + header.size();
    for (const auto& e : entries_) {
      if (!e.bytes.empty()) std::memcpy(out.data() + p, e.bytes.data(), e.bytes.size());
      p += e.bytes.size();
    }
    return out;
  }

  /// Writes atomically (temporary file + fsync + rename); throws IoError, leaving `path` untouched.
  /// The tensors are written from where they are, without a second copy of the whole file.
  void write(const std::string& path) const {
    const std::string header = header_string();
    write_file_atomic_with(path, [&](std::FILE* f) {
      const std::uint64_t n = header.size();
      if (std::fwrite(&n, 1, 8, f) != 8 || std::fwrite(header.data(), 1, header.size(), f) != header.size()) return false;
      for (const auto& e : entries_)
        if (!e.bytes.empty() && std::fwrite(e.bytes.data(), 1, e.bytes.size(), f) != e.bytes.size()) return false;
      return true;
    });
  }

 private:
  std::string header_string() const {
    DICYC_CHECK(detail::little_endian(), IoError, "safetensors: big-endian hosts are not supported");
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    // Checksums of every tensor and of the metadata (values a caller set under these keys, e.g.
    // copied from another file, are replaced).
    std::map<std::string, std::string> meta = meta_;
    nlohmann::json sums = nlohmann::json::object();
    for (const auto& e : entries_) sums[e.name] = detail::crc32_hex(detail::crc32(e.bytes.data(), e.bytes.size()));
    meta[detail::kChecksumsKey] = sums.dump();
    meta.erase(detail::kMetadataChecksumKey);
    meta[detail::kMetadataChecksumKey] = detail::metadata_crc(meta);
    {
      nlohmann::ordered_json m = nlohmann::ordered_json::object();
      for (const auto& [k, v] : meta) m[k] = v;
      h["__metadata__"] = m;
    }
    std::size_t off = 0;
    for (const auto& e : entries_) {
      h[e.name] = {{"dtype", dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {off, off + e.bytes.size()}}};
      off += e.bytes.size();
    }
    std::string header = h.dump();
    while (header.size() % 8) header.push_back(' ');
    return header;
  }

  struct Entry {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::vector<unsigned char> bytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> meta_;
};

/// A safetensors file read and validated in full.
class SafeTensorsFile {
 public:
  struct Tensor {
    DType dtype;
    std::vector<std::int64_t> shape;
    std::size_t begin = 0, end = 0;
    std::size_t numel() const {
      std::size_t n = 1;
      for (auto e : shape) n *= static_cast<std::size_t>(e);
      return n;
    }
  };

  static SafeTensorsFile read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    DICYC_CHECK(in.good(), IoError, "cannot open '" << path << "': " << std::strerror(errno));
    // One buffer of the file's size (a stream iterator would grow it by doubling: twice the file).
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    DICYC_CHECK(size >= 0, IoError, "cannot read '" << path << "': cannot tell its size");
    in.seekg(0, std::ios::beg);
    std::vector<unsigned char> bytes(static_cast<std::size_t>(size));
    if (size > 0) in.read(reinterpret_cast<char*>(bytes.data()), size);
    DICYC_CHECK(!in.bad() && in.gcount() == size, IoError, "cannot read '" << path << "'");
    return parse(std::move(bytes), path);
  }

  static SafeTensorsFile parse(std::vector<unsigned char> bytes, const std::string& label = "<memory>") {
    const std::string L = "safetensors file '" + label + "'";
    DICYC_CHECK(bytes.size() >= 8, SerializationError,
                L << ": truncated: " << bytes.size() << " bytes, expected at least the 8-byte header length");
    std::uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    DICYC_CHECK(n >= 2 && n <= bytes.size() - 8, SerializationError,
                L << ": header length " << n << " does not fit in the file of " << bytes.size()
                  << " bytes (truncated or not a safetensors file)");
    const std::string header(reinterpret_cast<const char*>(bytes.data() + 8), static_cast<std::size_t>(n));
    SafeTensorsFile f = parse_header(header, bytes.size() - 8 - static_cast<std::size_t>(n), label);
    bytes.erase(bytes.begin(), bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));  // in place: no second copy
    f.data_ = std::move(bytes);
    if (f.has_checksums()) {
      for (const auto& [name, t] : f.tensors_) f.verify(name, f.data_.data() + t.begin, t.end - t.begin);
      f.verified_all_ = true;
    }
    return f;
  }

  /// Reads and validates the header only; tensors are read from the (kept open) file on demand.
  static SafeTensorsFile open(const std::string& path) {
    auto in = std::make_shared<std::ifstream>(path, std::ios::binary);
    DICYC_CHECK(in->good(), IoError, "cannot open '" << path << "': " << std::strerror(errno));
    const std::string L = "safetensors file '" + path + "'";
    in->seekg(0, std::ios::end);
    const std::streamoff size = in->tellg();
    DICYC_CHECK(size >= 0, IoError, "cannot read '" << path << "': cannot tell its size");
    in->seekg(0, std::ios::beg);
    DICYC_CHECK(size >= 8, SerializationError,
                L << ": truncated: " << size << " bytes, expected at least the 8-byte header length");
    unsigned char len[8];
    in->read(reinterpret_cast<char*>(len), 8);
    DICYC_CHECK(in->gcount() == 8, IoError, "cannot read '" << path << "'");
    std::uint64_t n = 0;
    std::memcpy(&n, len, 8);
    DICYC_CHECK(n >= 2 && n <= static_cast<std::uint64_t>(size) - 8, SerializationError,
                L << ": header length " << n << " does not fit in the file of " << size
                  << " bytes (truncated or not a safetensors file)");
    std::string header(static_cast<std::size_t>(n), '\0');
    in->read(header.data(), static_cast<std::streamsize>(n));
    DICYC_CHECK(!in->bad() && in->gcount() == static_cast<std::streamsize>(n), IoError, "cannot read '" << path << "'");
    SafeTensorsFile f = parse_header(header, static_cast<std::size_t>(size) - 8 - static_cast<std::size_t>(n), path);
    f.file_ = std::move(in);
    f.data_offset_ = 8 + n;
    return f;
  }

 private:
  static SafeTensorsFile parse_header(const std::string& header, std::size_t data_size, const std::string& label) {
    SafeTensorsFile f;
    f.label_ = label;
    f.header_ = header;
    f.data_size_ = data_size;
    const std::string L = "safetensors file '" + label + "'";
    nlohmann::json h;
    try {
      h = nlohmann::json::parse(header);
    } catch (const std::exception& e) {
      DICYC_CHECK(false, SerializationError, L << ": corrupt JSON header: " << e.what());
    }
    DICYC_CHECK(h.is_object(), SerializationError, L << ": the header is not a JSON object");
    std::vector<std::pair<std::size_t, std::size_t>> ranges;
    for (auto it = h.begin(); it != h.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        DICYC_CHECK(v.is_object(), SerializationError, L << ": __metadata__ is not an object");
        for (auto m = v.begin(); m != v.end(); ++m) {
          DICYC_CHECK(m.value().is_string(), SerializationError,
                      L << ": metadata '" << m.key() << "' is not a string");
          f.meta_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const std::string T = L + ": tensor '" + name + "'";
      DICYC_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
                  SerializationError, T << ": expected an object with dtype, shape and data_offsets");
      Tensor t;
      DICYC_CHECK(v["dtype"].is_string() && parse_dtype(v["dtype"].get<std::string>(), t.dtype), SerializationError,
                  T << ": unsupported dtype " << v["dtype"].dump());
      DICYC_CHECK(v["shape"].is_array(), SerializationError, T << ": shape is not an array");
      for (const auto& e : v["shape"]) {
        DICYC_CHECK(e.is_number_unsigned() || (e.is_number_integer() && e.get<std::int64_t>() >= 0), SerializationError,
                    T << ": invalid extent " << e.dump() << " in shape " << v["shape"].dump());
        t.shape.push_back(e.get<std::int64_t>());
      }
      const auto& o = v["data_offsets"];
      DICYC_CHECK(o.is_array() && o.size() == 2 && o[0].is_number_unsigned() && o[1].is_number_unsigned(),
                  SerializationError, T << ": data_offsets must be two non-negative integers, got " << o.dump());
      t.begin = o[0].get<std::size_t>();
      t.end = o[1].get<std::size_t>();
      DICYC_CHECK(t.begin <= t.end && t.end <= data_size, SerializationError,
                  T << ": data [" << t.begin << ", " << t.end << ") lies outside the data block of " << data_size
                    << " bytes (truncated file?)");
      DICYC_CHECK(t.end - t.begin == t.numel() * dtype_size(t.dtype), SerializationError,
                  T << ": " << dtype_name(t.dtype) << " " << shape_string(t.shape) << " needs "
                    << t.numel() * dtype_size(t.dtype) << " bytes, but its data_offsets hold " << t.end - t.begin);
      ranges.emplace_back(t.begin, t.end);
      f.tensors_[name] = std::move(t);
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i)
      DICYC_CHECK(ranges[i].first >= ranges[i - 1].second, SerializationError, L << ": tensor data ranges overlap");
    const bool has_sums = f.meta_.count(detail::kChecksumsKey) != 0, has_meta_sum = f.meta_.count(detail::kMetadataChecksumKey) != 0;
    if (has_sums || has_meta_sum) {
      DICYC_CHECK(has_sums && has_meta_sum, SerializationError,
                  L << ": carries only one of the checksum entries ('" << detail::kChecksumsKey << "', '"
                    << detail::kMetadataChecksumKey << "'): the metadata was changed after dicyc wrote it");
      const std::string want = f.meta_.at(detail::kMetadataChecksumKey), got = detail::metadata_crc(f.meta_);
      DICYC_CHECK(want == got, SerializationError,
                  L << ": the metadata checksum does not match (stored " << want << ", computed " << got
                    << "): the metadata was changed or damaged after dicyc wrote it; use an earlier copy");
      nlohmann::json sums;
      try {
        sums = nlohmann::json::parse(f.meta_.at(detail::kChecksumsKey));
      } catch (const std::exception&) {
        DICYC_CHECK(false, SerializationError, L << ": the checksum table is not JSON: the file is damaged");
      }
      DICYC_CHECK(sums.is_object(), SerializationError, L << ": the checksum table is not a JSON object");
      for (auto it = sums.begin(); it != sums.end(); ++it) {
        DICYC_CHECK(it.value().is_string() && it.value().get<std::string>().size() == 8, SerializationError,
                    L << ": the checksum of tensor '" << it.key() << "' is malformed");
        DICYC_CHECK(f.tensors_.count(it.key()), SerializationError,
                    L << ": tensor '" << it.key() << "' has a checksum but is missing from the file");
        f.sums_[it.key()] = it.value().get<std::string>();
      }
      for (const auto& [name, t] : f.tensors_)
        DICYC_CHECK(f.sums_.count(name), SerializationError,
                    L << ": tensor '" << name << "' has no checksum: the file was changed after dicyc wrote it");
    }
    return f;
  }

  /// Refuses bytes of tensor `name` that do not match its stored checksum (no-op without checksums).
  void verify(const std::string& name, const void* bytes, std::size_t n) const {
    if (sums_.empty() || verified_all_) return;
    const auto it = sums_.find(name);
    if (it == sums_.end()) return;
    const std::string got = detail::crc32_hex(detail::crc32(bytes, n));
    DICYC_CHECK(got == it->second, SerializationError,
                "safetensors file '" << label_ << "': tensor '" << name << "' fails its checksum (stored " << it->second
                                     << ", computed " << got << "): the file is damaged; use an earlier checkpoint");
  }

  /// Copies bytes [begin, end) of the data block into dst: from memory, or from the open file.
  void copy_data(std::size_t begin, std::size_t end, void* dst) const {
    if (end <= begin) return;
    if (!file_) {
      std::memcpy(dst, data_.data() + begin, end - begin);
      return;
    }
    file_->clear();
    file_->seekg(static_cast<std::streamoff>(data_offset_ + begin), std::ios::beg);
    file_->read(static_cast<char*>(dst), static_cast<std::streamsize>(end - begin));
    DICYC_CHECK(!file_->bad() && file_->gcount() == static_cast<std::streamsize>(end - begin), IoError,
                "cannot read " << end - begin << " bytes of tensor data from '" << label_ << "' (changed or truncated since it was opened?)");
  }

 public:
  const std::string& label() const { return label_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> r;
    for (const auto& [k, v] : tensors_) r.push_back(k);
    return r;
  }
  const Tensor& info(const std::string& name) const {
    auto it = tensors_.find(name);
    DICYC_CHECK(it != tensors_.end(), SerializationError,
                "safetensors file '" << label_ << "': missing tensor '" << name << "'");
    return it->second;
  }
  const std::map<std::string, std::string>& metadata() const { return meta_; }
  /// Whether the file carries checksums (written by this version of dicyc or later).
  bool has_checksums() const { return meta_.count(detail::kChecksumsKey) != 0; }
  bool has_metadata(const std::string& key) const { return meta_.count(key) != 0; }
  const std::string& metadata(const std::string& key) const {
    auto it = meta_.find(key);
    DICYC_CHECK(it != meta_.end(), SerializationError,
                "safetensors file '" << label_ << "': missing metadata '" << key << "'");
    return it->second;
  }

  /// The whole file as stored (header length, header, data block), read from memory or from the
  /// file opened once: how an opened checkpoint travels to a model that parses it on its own side
  /// (SafeTensorsFile::parse verifies every tensor of the copy).
  std::vector<unsigned char> image() const {
    std::vector<unsigned char> out(8 + header_.size() + data_size_);
    const std::uint64_t n = header_.size();
    std::memcpy(out.data(), &n, 8);
    std::memcpy(out.data() + 8, header_.data(), header_.size());
    copy_data(0, data_size_, out.data() + 8 + header_.size());
    return out;
  }

  /// The stored bytes of tensor `name` (little-endian, as in the file).
  std::vector<unsigned char> raw_bytes(const std::string& name) const {
    const Tensor& t = info(name);
    std::vector<unsigned char> b(t.end - t.begin);
    copy_data(t.begin, t.end, b.data());
    verify(name, b.data(), b.size());
    return b;
  }

  /// Copies tensor `name` into dst after checking dtype and shape against what the caller expects.
  template <class T>
  void read_into(const std::string& name, const std::vector<std::int64_t>& expect_shape, T* dst) const {
    const Tensor& t = info(name);
    DICYC_CHECK(t.dtype == dtype_of<T>() && t.shape == expect_shape, SerializationError,
                "safetensors file '" << label_ << "': tensor '" << name << "': expected " << dtype_name(dtype_of<T>())
                                     << " " << shape_string(expect_shape) << ", but found " << dtype_name(t.dtype)
                                     << " " << shape_string(t.shape));
    copy_data(t.begin, t.end, static_cast<void*>(dst));
    verify(name, dst, t.end - t.begin);
  }
  /// A 1-D tensor of any length, checked for dtype.
  template <class T>
  std::vector<T> read_vector(const std::string& name) const {
    const Tensor& t = info(name);
    DICYC_CHECK(t.dtype == dtype_of<T>() && t.shape.size() == 1, SerializationError,
                "safetensors file '" << label_ << "': tensor '" << name << "': expected a 1-D " << dtype_name(dtype_of<T>())
                                     << " tensor, but found " << dtype_name(t.dtype) << " " << shape_string(t.shape));
    std::vector<T> v(t.numel());
    if (!v.empty()) copy_data(t.begin, t.end, static_cast<void*>(v.data()));
    verify(name, v.data(), t.end - t.begin);
    return v;
  }

 private:
  std::string label_;
  std::string header_;          // the JSON header as stored
  std::size_t data_size_ = 0;   // bytes of the data block
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> meta_;
  std::map<std::string, std::string> sums_;      // tensor name -> CRC-32 (hex); empty: no checksums
  bool verified_all_ = false;                    // read(): every tensor verified at parse
  std::vector<unsigned char> data_;              // read(): the data block
  std::shared_ptr<std::ifstream> file_;          // open(): the file, read on demand
  std::uint64_t data_offset_ = 0;                // open(): where the data block starts
};

}  // namespace dicyc::io
