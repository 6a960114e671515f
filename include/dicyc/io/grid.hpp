// dicyc/io/grid.hpp -- sample grids: rows of grey panels written as one 8-bit PNG (training
// samples, checkerboards, experiment montages).
//
// A Panel is a w x h image in [-1, 1] (the networks' range), x fastest; [-1, 1] maps to [0, 255],
// values outside are clipped. GridOptions: the gap in pixels between panels and rows, and whether
// y is flipped so that anterior (RAS+ axis 1) is up, as a viewer shows an axial slice.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
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
  Index gap = 2;       // pixels after every panel and row
  bool flip_y = true;  // anterior up
};

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
  GrayImage g;
  g.width = std::max<Index>(1, w);
  g.height = std::max<Index>(1, h);
  g.pixels.assign(static_cast<std::size_t>(g.width * g.height), 0);
  Index oy = 0;
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
