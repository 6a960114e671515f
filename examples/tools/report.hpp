// A self-contained HTML report of a training run: loss curves drawn as inline SVG from
// losses.csv, and the latest sample grids embedded as base64 PNGs. One file; opens in any browser
// without a network or a server.
#pragma once

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "dicyc/io/safetensors.hpp"

namespace tools {

inline std::string base64(const std::vector<unsigned char>& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (in[i] << 16) | (in[i + 1] << 8) | in[i + 2];
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += t[v & 63];
  }
  if (i + 1 == in.size()) {
    const unsigned v = in[i] << 16;
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v = (in[i] << 16) | (in[i + 1] << 8);
    out += t[(v >> 18) & 63];
    out += t[(v >> 12) & 63];
    out += t[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

inline std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}

/// One SVG chart of the named CSV columns against the iteration (averaged in up to 400 bins).
inline std::string svg_chart(const std::vector<std::string>& header, const std::vector<std::vector<double>>& rows,
                             const std::vector<std::string>& cols, const std::string& title) {
  const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};
  const double W = 560, H = 220, L = 50, R = 10, T = 24, B = 28;
  std::vector<int> idx;
  for (const auto& c : cols) {
    const auto it = std::find(header.begin(), header.end(), c);
    if (it != header.end()) idx.push_back(static_cast<int>(it - header.begin()));
  }
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H << "' style='background:#fff'>";
  s << "<text x='" << L << "' y='16' font-size='13' font-family='sans-serif'>" << html_escape(title) << "</text>";
  if (rows.empty() || idx.empty()) return s.str() + "<text x='60' y='110'>no data yet</text></svg>";
  const std::size_t bins = std::min<std::size_t>(400, rows.size()), per = (rows.size() + bins - 1) / bins;
  std::vector<std::vector<std::pair<double, double>>> series(idx.size());
  double ymin = INFINITY, ymax = -INFINITY;
  const double xmin = rows.front()[0], xmax = std::max(rows.back()[0], xmin + 1);
  for (std::size_t k = 0; k < idx.size(); ++k)
    for (std::size_t b = 0; b * per < rows.size(); ++b) {
      double sx = 0, sy = 0, n = 0;
      for (std::size_t r = b * per; r < std::min(rows.size(), (b + 1) * per); ++r)
        if (std::isfinite(rows[r][idx[k]])) {
          sx += rows[r][0];
          sy += rows[r][idx[k]];
          n += 1;
        }
      if (n == 0) continue;
      series[k].push_back({sx / n, sy / n});
      ymin = std::min(ymin, sy / n);
      ymax = std::max(ymax, sy / n);
    }
  if (!(ymax > ymin)) {
    ymax = ymin + 1;
  }
  auto px = [&](double x) { return L + (x - xmin) / (xmax - xmin) * (W - L - R); };
  auto py = [&](double y) { return T + (ymax - y) / (ymax - ymin) * (H - T - B); };
  s << "<rect x='" << L << "' y='" << T << "' width='" << W - L - R << "' height='" << H - T - B
    << "' fill='none' stroke='#999'/>";
  char buf[64];
  for (double y : {ymin, 0.5 * (ymin + ymax), ymax}) {
    std::snprintf(buf, sizeof buf, "%.3g", y);
    s << "<text x='4' y='" << py(y) + 4 << "' font-size='10' font-family='sans-serif'>" << buf << "</text>";
  }
  s << "<text x='" << L << "' y='" << H - 8 << "' font-size='10' font-family='sans-serif'>" << xmin << "</text>";
  s << "<text x='" << W - R - 40 << "' y='" << H - 8 << "' font-size='10' font-family='sans-serif'>" << xmax
    << "</text>";
  for (std::size_t k = 0; k < idx.size(); ++k) {
    s << "<polyline fill='none' stroke-width='1.5' stroke='" << colours[k % 6] << "' points='";
    for (const auto& [x, y] : series[k]) s << px(x) << "," << py(y) << " ";
    s << "'/>";
    s << "<text x='" << L + 10 + 90 * static_cast<double>(k) << "' y='" << T + 14 << "' font-size='11' fill='"
      << colours[k % 6] << "' font-family='sans-serif'>" << header[idx[k]] << "</text>";
  }
  return s.str() + "</svg>";
}

/// Writes <out>/report.html from <out>/losses.csv and the newest <out>/samples/*.png (up to 6).
inline void write_report(const std::string& out, const std::string& model, const std::string& config) {
  namespace fs = std::filesystem;
  std::vector<std::string> header;
  std::vector<std::vector<double>> rows;
  {
    std::ifstream in(out + "/losses.csv");
    std::string line;
    if (std::getline(in, line)) {
      std::stringstream ss(line);
      std::string c;
      while (std::getline(ss, c, ',')) header.push_back(c);
    }
    while (std::getline(in, line)) {
      std::vector<double> r;
      std::stringstream ss(line);
      std::string c;
      while (std::getline(ss, c, ',')) r.push_back(std::strtod(c.c_str(), nullptr));
      if (r.size() == header.size()) rows.push_back(std::move(r));
    }
  }
  std::vector<std::string> samples;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out + "/samples", ec))
    if (e.path().extension() == ".png") samples.push_back(e.path().string());
  std::sort(samples.begin(), samples.end());
  if (samples.size() > 6) samples.erase(samples.begin(), samples.end() - 6);
  std::ostringstream h;
  h << "<!DOCTYPE html><html><head><meta charset='utf-8'><title>dicyc run: " << html_escape(model)
    << "</title><style>body{font-family:sans-serif;margin:20px;max-width:1200px}"
       "figure{display:inline-block;margin:8px}img{image-rendering:pixelated;border:1px solid #ccc}"
       "pre{background:#f4f4f4;padding:8px;white-space:pre-wrap}</style></head><body>";
  h << "<h1>dicyc training run: " << html_escape(model) << "</h1>";
  if (!rows.empty()) {
    const auto& last = rows.back();
    h << "<p>" << rows.size() << " iterations logged; last iteration " << static_cast<long long>(last[0]) << ", "
      << (header.back() == "seconds" ? std::to_string(last.back()) + " s of training in this session" : "")
      << ".</p>";
  }
  h << "<h2>Losses</h2><div>";
  h << svg_chart(header, rows, {"g_total"}, "generator total (weighted)");
  {
    // the undeformed outputs' GAN terms (--lambda-gan-plain) only when the run has them
    std::vector<std::string> gan = {"gan_ab", "gan_ba"};
    for (const char* c : {"gan_plain_ab", "gan_plain_ba"}) {
      const auto it = std::find(header.begin(), header.end(), c);
      const auto k = static_cast<std::size_t>(it - header.begin());
      if (it != header.end() && std::any_of(rows.begin(), rows.end(), [&](const auto& r) { return r[k] != 0; }))
        gan.push_back(c);
    }
    h << svg_chart(header, rows, gan, "generator GAN terms");
  }
  h << svg_chart(header, rows, {"cyc_a", "cyc_b", "dicyc_a", "dicyc_b"}, "cycle terms (plain and deformed)");
  h << svg_chart(header, rows, {"align_a", "align_b", "id_a", "id_b"}, "alignment and identity terms");
  h << svg_chart(header, rows, {"d_a", "d_b"}, "discriminators");
  h << svg_chart(header, rows, {"lr"}, "learning rate");
  h << "</div><h2>Samples</h2><p>Each grid: top row A &rarr; B, bottom row B &rarr; A; columns: source | "
       "translated (undeformed) | deformed toward the other image's pose (DiCyc only) | cycle | checkerboard of source "
       "and translation.</p>";
  for (auto it = samples.rbegin(); it != samples.rend(); ++it) {
    std::ifstream in(*it, std::ios::binary);
    const std::vector<unsigned char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    h << "<figure><img src='data:image/png;base64," << base64(bytes) << "'><figcaption>"
      << html_escape(fs::path(*it).filename().string()) << "</figcaption></figure>";
  }
  h << "<h2>Configuration</h2><pre>" << html_escape(config) << "</pre></body></html>\n";
  const std::string s = h.str();
  dicyc::io::write_file_atomic(out + "/report.html", std::vector<unsigned char>(s.begin(), s.end()));
}

}  // namespace tools
