// dicyc/io/png.hpp -- 8-bit greyscale PNG in and out, through libpng's simplified API (link PNG::PNG).
//
// read_png_gray() converts whatever the file holds (grey, grey + alpha, palette, RGB, RGBA, 16-bit)
// to 8-bit grey: libpng maps palette entries through the palette and RGB through its luminance
// weights (equal channels stay exactly what they were). The image comes back with x (columns)
// fastest, row 0 first, as dicyc's (x, y) layout. write_png_gray() writes atomically (temporary
// file, fsync, rename). Errors are IoError (cannot open, not a PNG, corrupt) naming the file.
#pragma once

#include <png.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dicyc/core/error.hpp"
#include "dicyc/core/types.hpp"
#include "dicyc/io/atomic_file.hpp"

namespace dicyc::io {

struct GrayImage {
  Index width = 0, height = 0;
  std::vector<std::uint8_t> pixels;  // width * height, x fastest
};

inline GrayImage read_png_gray(const std::string& path) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  DICYC_CHECK(png_image_begin_read_from_file(&img, path.c_str()) != 0, IoError,
              "cannot read PNG '" << path << "': " << img.message);
  img.format = PNG_FORMAT_GRAY;
  GrayImage g;
  g.width = static_cast<Index>(img.width);
  g.height = static_cast<Index>(img.height);
  g.pixels.resize(PNG_IMAGE_SIZE(img));
  const int ok = png_image_finish_read(&img, nullptr, g.pixels.data(), 0, nullptr);
  const std::string msg = img.message;
  png_image_free(&img);
  DICYC_CHECK(ok != 0, IoError, "cannot read PNG '" << path << "': " << msg);
  return g;
}

/// Writes an 8-bit grey PNG (x fastest, row 0 first) atomically.
inline void write_png_gray(const std::string& path, const GrayImage& g) {
  DICYC_CHECK(g.width > 0 && g.height > 0 && static_cast<Index>(g.pixels.size()) == g.width * g.height, ShapeError,
              "write_png_gray '" << path << "': " << g.pixels.size() << " pixels for " << g.width << " x " << g.height);
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(g.width);
  img.height = static_cast<png_uint_32>(g.height);
  img.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  DICYC_CHECK(png_image_write_to_memory(&img, nullptr, &size, 0, g.pixels.data(), 0, nullptr) != 0, IoError,
              "cannot encode PNG '" << path << "': " << img.message);
  std::vector<unsigned char> bytes(size);
  const int ok = png_image_write_to_memory(&img, bytes.data(), &size, 0, g.pixels.data(), 0, nullptr);
  const std::string msg = img.message;
  png_image_free(&img);
  DICYC_CHECK(ok != 0, IoError, "cannot encode PNG '" << path << "': " << msg);
  bytes.resize(size);
  write_file_atomic(path, bytes);
}

}  // namespace dicyc::io
