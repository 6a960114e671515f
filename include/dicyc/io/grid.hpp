// dicyc/io/grid.hpp -- sample grids: rows of grey panels written as one 8-bit PNG (training
// samples, checkerboards, experiment montages).
//
// A Panel is a w x h image in [-1, 1] (the networks' range), x fastest; [-1, 1] maps to [0, 255],
// values outside are clipped. GridOptions: the gap in pixels between panels and rows, whether y is
// flipped so that anterior (RAS+ axis 1) is up, as a viewer shows an axial slice, and column
// labels drawn above the first row (a 5x7 pixel font: letters, digits, space and - > < | ( ) . ,
// / + : _ = ; lower case is drawn upper case, anything else as '?'; a label longer than its column
// is cut).
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dicyc/core/error.hpp"
#include "dicyc/core/types.hpp"
#include "dicyc/io/png.hpp"

namespace dicyc::io {

struct Panel {
  Index w = 0, h = 0;
  std::vector<float> v;
};

inline Panel panel_of(const float* data, Index w, Index h) { return Panel{w, h, std::vector<float>(data, data + w * h)}; }

/// Alternating tiles of a and b (same size), `tiles` across each axis.
inline Panel checkerboard(const Panel& a, const Panel& b, Index tiles = 8) {
  DICYC_CHECK(a.w == b.w && a.h == b.h, ShapeError,
              "checkerboard: panels of " << a.w << " x " << a.h << " and " << b.w << " x " << b.h);
  Panel c = a;
  const Index tw = std::max<Index>(1, a.w / tiles), th = std::max<Index>(1, a.h / tiles);
  for (Index y = 0; y < a.h; ++y)
    for (Index x = 0; x < a.w; ++x)
      if (((x / tw) + (y / th)) % 2) c.v[x + a.w * y] = b.v[x + a.w * y];
  return c;
}

struct GridOptions {
  Index gap = 2;                    // pixels after every panel and row
  bool flip_y = true;               // anterior up
  std::vector<std::string> labels;  // column titles above the first row (none: no title strip)
};

namespace detail {

/// The 5x7 glyph of c (rows top to bottom, bit 4 the leftmost pixel).
inline const std::array<std::uint8_t, 7>& glyph(char c) {
  static const std::map<char, std::array<std::uint8_t, 7>> font{
      {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
      {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
      {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
      {'+', {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00}},
      {',', {0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08}},
      {'-', {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00}},
      {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c}},
      {'/', {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}},
      {'0', {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e}},
      {'1', {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e}},
      {'2', {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f}},
      {'3', {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e}},
      {'4', {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02}},
      {'5', {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e}},
      {'6', {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e}},
      {'7', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
      {'8', {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e}},
      {'9', {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c}},
      {':', {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00}},
      {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
      {'=', {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00}},
      {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
      {'?', {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}},
      {'A', {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}},
      {'B', {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e}},
      {'C', {0x0f, 0x10, 0x10, 0x10, 0x10, 0x10, 0x0f}},
      {'D', {0x1e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1e}},
      {'E', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}},
      {'F', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10}},
      {'G', {0x0f, 0x10, 0x10, 0x13, 0x11, 0x11, 0x0f}},
      {'H', {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}},
      {'I', {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}},
      {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c}},
      {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
      {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f}},
      {'M', {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11}},
      {'N', {0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11}},
      {'O', {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
      {'P', {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10}},
      {'Q', {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d}},
      {'R', {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11}},
      {'S', {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}},
      {'T', {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
      {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
      {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04}},
      {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x1b, 0x11}},
      {'X', {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11}},
      {'Y', {0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04}},
      {'Z', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f}},
      {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f}},
      {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}}
,
  };
  const auto it = font.find(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return it != font.end() ? it->second : font.at('?');
}

/// Draws `text` in white, left-aligned at (x0, y0), at most `max_w` pixels wide (6 per character).
inline void draw_text(GrayImage& g, const std::string& text, Index x0, Index y0, Index max_w) {
  const Index n = std::min<Index>(static_cast<Index>(text.size()), max_w / 6);
  for (Index k = 0; k < n; ++k) {
    const auto& gl = glyph(text[static_cast<std::size_t>(k)]);
    for (Index r = 0; r < 7; ++r)
      for (Index c = 0; c < 5; ++c) {
        const Index x = x0 + 6 * k + c, y = y0 + r;
        if ((gl[static_cast<std::size_t>(r)] >> (4 - c)) & 1 && x >= 0 && x < g.width && y >= 0 && y < g.height)
          g.pixels[static_cast<std::size_t>(x + g.width * y)] = 255;
      }
  }
}

}  // namespace detail

/// Rows of panels into one PNG, written atomically.
inline void write_grid(const std::string& path, const std::vector<std::vector<Panel>>& rows, GridOptions o = {}) {
  Index w = 0, h = 0;
  for (const auto& r : rows) {
    Index rw = 0, rh = 0;
    for (const auto& p : r) {
      DICYC_CHECK(static_cast<Index>(p.v.size()) == p.w * p.h, ShapeError,
                  "write_grid: a " << p.w << " x " << p.h << " panel with " << p.v.size() << " values");
      rw += p.w + o.gap;
      rh = std::max(rh, p.h);
    }
    w = std::max(w, rw);
    h += rh + o.gap;
  }
  const Index title = o.labels.empty() ? 0 : 11;  // 2 + 7 + 2 pixels
  h += title;
  GrayImage g;
  g.width = std::max<Index>(1, w);
  g.height = std::max<Index>(1, h);
  g.pixels.assign(static_cast<std::size_t>(g.width * g.height), 0);
  if (title && !rows.empty()) {  // each label centred over its column of the first row
    Index ox = 0;
    for (std::size_t c = 0; c < rows[0].size() && c < o.labels.size(); ++c) {
      const Index pw = rows[0][c].w, tw = std::min<Index>(pw, 6 * static_cast<Index>(o.labels[c].size()) - 1);
      detail::draw_text(g, o.labels[c], ox + std::max<Index>(0, (pw - tw) / 2), 2, pw);
      ox += pw + o.gap;
    }
  }
  Index oy = title;
  for (const auto& r : rows) {
    Index ox = 0, rh = 0;
    for (const auto& p : r) {
      for (Index y = 0; y < p.h; ++y)
        for (Index x = 0; x < p.w; ++x) {
          const float v = std::clamp(p.v[x + p.w * (o.flip_y ? p.h - 1 - y : y)], -1.0f, 1.0f);
          g.pixels[static_cast<std::size_t>((ox + x) + g.width * (oy + y))] =
              static_cast<std::uint8_t>(std::lround(127.5 * (v + 1.0)));
        }
      ox += p.w + o.gap;
      rh = std::max(rh, p.h);
    }
    oy += rh + o.gap;
  }
  write_png_gray(path, g);
}

}  // namespace dicyc::io
