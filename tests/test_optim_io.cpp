// Adam (against torch.optim.Adam), the learning-rate schedule and early stop, the image pool, and
// the safetensors reader/writer (round trips, PyTorch layouts, atomic writes, corrupt files).
#define BOOST_TEST_MODULE optim_io
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "dicyc/io/checkpoint.hpp"
#include "dicyc/train/checkpoint.hpp"
#include "dicyc/model/image_pool.hpp"
#include "dicyc/optim/adam.hpp"
#include "dicyc/optim/schedule.hpp"
#include "support/fixture.hpp"
#include "support/test_util.hpp"

using namespace dicyc;
using Dev = Eigen::DefaultDevice;
using dt::cpu;

namespace {
const dt::Fixture& fx() {
  static const dt::Fixture f("nn.txt");
  return f;
}

std::string tmp_path(const std::string& name) { return (std::string("/tmp/dicyc_test_") + name); }
}  // namespace

// ----------------------------------------------------------------------------- Adam
BOOST_AUTO_TEST_CASE(adam_matches_torch) {
  for (const std::string tag : {"adam", "adamw"}) {
    nn::ParameterGroup<float, Dev> g("p");
    const auto ref = g.declare("p", {24}, nn::Init::Zeros);
    core::Rng rng(0);
    g.allocate(cpu(), rng);
    const auto p0 = dt::convert<float>(fx()[tag + ".p0"]);
    std::copy(p0.begin(), p0.end(), g.value(ref));
    optim::Adam<float, Dev> adam(cpu(), g, optim::AdamOptions().lr(2e-4).weight_decay(tag == "adamw" ? 0.01 : 0.0));
    for (int t = 1; t <= 3; ++t) {
      const auto gr = dt::convert<float>(fx()[tag + ".g" + std::to_string(t)]);
      g.zero_grad();
      std::copy(gr.begin(), gr.end(), g.grads());
      const float before0 = g.value(ref)[0];
      adam.step(cpu());
      const auto& want = fx()[tag + ".p" + std::to_string(t)];
      double err = 0;
      for (int i = 0; i < 24; ++i) err = std::max(err, std::abs(double(g.value(ref)[i]) - want[i]));
      // One float rounding of a 0.05-sized weight is 4e-9; the update itself is 2e-4.
      BOOST_TEST_INFO(tag << " step " << t);
      BOOST_CHECK_LT(err, 2e-8);
      if (tag == "adam" && t == 1) BOOST_CHECK_EQUAL(g.value(ref)[0], before0);  // zero gradient, zero moment
    }
    BOOST_CHECK_EQUAL(adam.steps(), 3);
  }
}

BOOST_AUTO_TEST_CASE(adam_minimises_a_quadratic_and_refuses_frozen_groups) {
  nn::ParameterGroup<double, Dev> g("q");
  const auto r = g.declare("w", {3}, nn::Init::Ones);
  core::Rng rng(0);
  g.allocate(cpu(), rng);
  optim::Adam<double, Dev> adam(cpu(), g, optim::AdamOptions().lr(0.05).betas(0.9, 0.999));
  const double target[3] = {0.5, -2.0, 3.0};
  for (int it = 0; it < 2000; ++it) {
    g.zero_grad();
    for (int i = 0; i < 3; ++i) g.grads()[i] = 2 * (g.value(r)[i] - target[i]);
    adam.step(cpu());
  }
  for (int i = 0; i < 3; ++i) BOOST_CHECK_SMALL(g.value(r)[i] - target[i], 1e-3);
  g.requires_grad(false);
  dt::expect_error<ConfigError>([&] { adam.step(cpu()); }, "frozen");
  dt::expect_error<ConfigError>([&] { optim::Adam<double, Dev>(cpu(), g, optim::AdamOptions().betas(1.0, 0.9)); },
                                "invalid options");
  nn::ParameterGroup<double, Dev> un("unallocated");
  un.declare("w", {1}, nn::Init::Zeros);
  dt::expect_error<ConfigError>([&] { optim::Adam<double, Dev>(cpu(), un); }, "not allocated");
}

// ----------------------------------------------------------------------------- schedule
BOOST_AUTO_TEST_CASE(schedule_constant_then_linear_decay) {
  optim::Schedule s(optim::ScheduleOptions().lr(1.0).constant_epochs(3).decay_epochs(4).iterations_per_epoch(2).early_stop(false));
  std::vector<double> lrs;
  double loss = 10;
  while (!s.done()) {
    lrs.push_back(s.lr());
    s.record(loss -= 0.1);  // always improving
  }
  // 3 constant epochs, then 1, 3/4, 1/2, 1/4; two iterations each.
  const std::vector<double> want{1, 1, 1, 1, 1, 1, 1, 1, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25};
  BOOST_REQUIRE_EQUAL(lrs.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) BOOST_CHECK_CLOSE(lrs[i], want[i], 1e-12);
  BOOST_CHECK_EQUAL(s.epoch(), 7);
  BOOST_CHECK_EQUAL(s.lr(), 0.0);
  dt::expect_error<ConfigError>([&] { s.record(1.0); }, "already done");
}

BOOST_AUTO_TEST_CASE(schedule_early_stop) {
  // Plateau in the constant phase: 10 epochs without improvement jump to the decay.
  optim::Schedule s(optim::ScheduleOptions().constant_epochs(100).decay_epochs(100).iterations_per_epoch(1));
  s.record(5.0);  // epoch 1: best
  for (int e = 0; e < 9; ++e) s.record(5.0);
  BOOST_CHECK(s.phase() == optim::Phase::Constant);
  s.record(6.0);  // the 10th epoch without improvement
  BOOST_CHECK(s.phase() == optim::Phase::Decay);
  BOOST_CHECK_EQUAL(s.epoch(), 11);
  BOOST_CHECK_CLOSE(s.lr(), 2e-4, 1e-9);
  // In the decay, improvements reset the counter; 20 epochs without one stop.
  s.record(4.0);
  for (int e = 0; e < 19; ++e) s.record(4.5);
  BOOST_CHECK(s.phase() == optim::Phase::Decay);
  BOOST_CHECK_CLOSE(s.lr(), 2e-4 * (1 - 20.0 / 100), 1e-9);
  s.record(4.0);  // equal is no improvement
  BOOST_CHECK(s.done());
  BOOST_CHECK_EQUAL(s.best_loss(), 4.0);
  // The state round-trips.
  optim::Schedule a(optim::ScheduleOptions().iterations_per_epoch(3)), b(optim::ScheduleOptions().iterations_per_epoch(3));
  for (int i = 0; i < 7; ++i) a.record(1.0 / (i + 1));
  b.restore(a.state());
  for (int i = 0; i < 5; ++i) {
    BOOST_CHECK_EQUAL(a.record(0.3), b.record(0.3));
    BOOST_CHECK_EQUAL(a.lr(), b.lr());
  }
  BOOST_CHECK_EQUAL(a.epoch(), b.epoch());
  dt::expect_error<NumericError>([&] { a.record(std::nan("")); }, "non-finite generator loss");
  dt::expect_error<ConfigError>([&] { optim::Schedule(optim::ScheduleOptions().iterations_per_epoch(0)); }, "invalid options");
}

// ----------------------------------------------------------------------------- image pool
BOOST_AUTO_TEST_CASE(image_pool_semantics) {
  using P = model::ImagePool<float, 4, Dev>;
  const Shape<4> one(1, 2, 2, 1);
  auto img = [&](float v) { return core::Tensor<float, 4, Dev>::from_host(cpu(), one, std::vector<float>(4, v)); };
  P pool(3, 7);
  // Filling: returned as is.
  for (int i = 0; i < 3; ++i) BOOST_CHECK_EQUAL(pool.query(cpu(), img(float(i)).cmap()).to_host()[0], float(i));
  BOOST_CHECK_EQUAL(pool.size(), 3);
  // Full: about half the queries return an older image, which the new one replaces.
  int older = 0;
  for (int i = 3; i < 1003; ++i) {
    const float got = pool.query(cpu(), img(float(i)).cmap()).to_host()[0];
    BOOST_CHECK(got <= float(i));
    if (got != float(i)) ++older;
  }
  BOOST_CHECK(older > 430 && older < 570);
  // Seeded: a second pool with the same seed answers the same.
  P a(3, 11), b(3, 11);
  for (int i = 0; i < 50; ++i)
    BOOST_CHECK_EQUAL(a.query(cpu(), img(float(i)).cmap()).to_host()[0], b.query(cpu(), img(float(i)).cmap()).to_host()[0]);
  // A batch of 2 is handled per sample; capacity 0 passes through.
  P z(0, 1);
  const auto two = core::Tensor<float, 4, Dev>::from_host(cpu(), Shape<4>(1, 2, 2, 2), {1, 1, 1, 1, 2, 2, 2, 2});
  BOOST_CHECK(z.query(cpu(), two.cmap()).to_host() == two.to_host());
  P c(5, 1);
  BOOST_CHECK(c.query(cpu(), two.cmap()).to_host() == two.to_host());
  BOOST_CHECK_EQUAL(c.size(), 2);
  dt::expect_error<ShapeError>([&] { c.query(cpu(), core::Tensor<float, 4, Dev>::zeros(cpu(), Shape<4>(1, 3, 2, 1)).cmap()); },
                               "expected samples of shape [1, 2, 2, 1]");
}

// ----------------------------------------------------------------------------- safetensors
namespace {
/// A safetensors file's bytes with `from` replaced by `to` in its JSON header (padded back to its
/// length with spaces, so the header length stays valid).
std::vector<unsigned char> edit_header(const std::vector<unsigned char>& good, const std::string& from, const std::string& to) {
  std::uint64_t n;
  std::memcpy(&n, good.data(), 8);
  std::string h(reinterpret_cast<const char*>(good.data() + 8), n);
  const auto pos = h.find(from);
  BOOST_REQUIRE(pos != std::string::npos);
  h.replace(pos, from.size(), to);
  h.resize(n, ' ');
  std::vector<unsigned char> r(good);
  std::memcpy(r.data() + 8, h.data(), n);
  return r;
}
}  // namespace

BOOST_AUTO_TEST_CASE(safetensors_round_trip_and_layout) {
  io::SafeTensorsWriter w;
  const std::vector<float> a{1, 2, 3, 4, 5, 6};
  const std::vector<double> b{0.5};
  const std::vector<std::int64_t> c{-3, 7};
  w.add("a", {2, 3}, a.data());
  w.add("b", {}, b.data());
  w.add("c", {2}, c.data());
  w.metadata("note", "hello \"json\"");
  const auto bytes = w.serialize();
  std::uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  BOOST_CHECK_EQUAL(n % 8, 0u);
  BOOST_CHECK_EQUAL(bytes.size(), 8 + n + 24 + 8 + 16);
  const auto f = io::SafeTensorsFile::parse(bytes);
  BOOST_CHECK_EQUAL(f.metadata("note"), "hello \"json\"");
  std::vector<float> ra(6);
  f.read_into("a", {2, 3}, ra.data());
  BOOST_CHECK(ra == a);
  BOOST_CHECK(f.read_vector<std::int64_t>("c") == c);
  dt::expect_error<SerializationError>([&] { f.read_into("a", {3, 2}, ra.data()); },
                                       "tensor 'a': expected F32 [3, 2], but found F32 [2, 3]");
  std::vector<double> rd(6);
  dt::expect_error<SerializationError>([&] { f.read_into("a", {2, 3}, rd.data()); }, "expected F64 [2, 3], but found F32");
  dt::expect_error<SerializationError>([&] { f.info("zzz"); }, "missing tensor 'zzz'");
  dt::expect_error<ConfigError>([&] { w.add("a", {1}, a.data()); }, "added twice");

  // PyTorch layouts: a conv kernel (O, I, kx, ky) column-major is (O, I, ky, kx) row-major.
  const std::vector<Index> ks{2, 3, 4, 5};
  std::vector<float> ours(120);
  for (int i = 0; i < 120; ++i) ours[i] = float(i);
  const auto t = io::to_torch_layout(ours, ks);
  BOOST_CHECK(io::torch_shape(ks) == (std::vector<std::int64_t>{2, 3, 5, 4}));
  // Element (o=1, i=2, kx=3, ky=4): ours at 1 + 2*(2 + 3*(3 + 4*4)), torch at ((1*3 + 2)*5 + 4)*4 + 3.
  BOOST_CHECK_EQUAL(t[((1 * 3 + 2) * 5 + 4) * 4 + 3], ours[1 + 2 * (2 + 3 * (3 + 4 * 4))]);
  BOOST_CHECK(io::from_torch_layout(t, ks) == ours);
  // Linear (out, in): transposed in memory.
  const std::vector<float> lin{1, 2, 3, 4, 5, 6};  // (2, 3) column-major
  BOOST_CHECK(io::to_torch_layout(lin, {2, 3}) == (std::vector<float>{1, 3, 5, 2, 4, 6}));
}

BOOST_AUTO_TEST_CASE(safetensors_corrupt_files_and_atomic_writes) {
  io::SafeTensorsWriter w;
  const std::vector<float> a(100, 1.5f);
  w.add("w", {10, 10}, a.data());
  const std::string path = tmp_path("st.safetensors");
  w.write(path);
  const auto good = dt::read_bytes(path);
  BOOST_CHECK(io::SafeTensorsFile::read(path).has("w"));
  std::uint64_t n;
  std::memcpy(&n, good.data(), 8);
  // Truncations: inside the length, inside the header, inside the data.
  for (std::size_t keep : {std::size_t(5), std::size_t(8 + n / 2), good.size() - 1}) {
    std::vector<unsigned char> b(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(keep));
    dt::expect_error<SerializationError>([&] { io::SafeTensorsFile::parse(b, "t"); },
                                         keep == 5 ? "truncated" : keep < good.size() - 1 ? "does not fit" : "outside the data block");
  }
  // A huge header length, corrupt JSON, a wrong byte count, an unknown dtype.
  auto b = good;
  const std::uint64_t huge = 1ull << 40;
  std::memcpy(b.data(), &huge, 8);
  dt::expect_error<SerializationError>([&] { io::SafeTensorsFile::parse(b, "t"); }, "header length");
  b = good;
  b[8] = 'x';
  dt::expect_error<SerializationError>([&] { io::SafeTensorsFile::parse(b, "t"); }, "corrupt JSON header");
  auto edit = [&](const std::string& from, const std::string& to) { return edit_header(good, from, to); };
  dt::expect_error<SerializationError>([&] { io::SafeTensorsFile::parse(edit("[10,10]", "[10,11]"), "t"); },
                                       "needs 440 bytes, but its data_offsets hold 400");
  dt::expect_error<SerializationError>([&] { io::SafeTensorsFile::parse(edit("\"F32\"", "\"Q32\""), "t"); },
                                       "unsupported dtype \"Q32\"");
  dt::expect_error<IoError>([&] { io::SafeTensorsFile::read(tmp_path("does_not_exist")); }, "cannot open");
  // A failed write leaves the old file intact and no temporary behind.
  dt::expect_error<IoError>([&] { w.write("/nonexistent_dir/x.safetensors"); }, "cannot write");
  dt::write_bytes(path, good);
  io::SafeTensorsWriter w2;
  w2.add("w", {10, 10}, a.data());
  w2.write(path);  // overwrite goes through a rename
  BOOST_CHECK(dt::read_bytes(path) == good);
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(safetensors_open_reads_the_header_only_and_tensors_on_demand) {
  // open() gives what read() gives, tensor by tensor, with the same validation of the header.
  io::SafeTensorsWriter w;
  std::vector<float> a(100);
  std::vector<double> d(7);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.25f * float(i) - 3;
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = 1e-3 * double(i * i);
  w.add("w", {10, 10}, a.data());
  w.add("v", {7}, d.data());
  w.metadata("k", "value");
  const std::string path = tmp_path("open.safetensors");
  w.write(path);
  const auto full = io::SafeTensorsFile::read(path);
  const auto lazy = io::SafeTensorsFile::open(path);
  BOOST_CHECK(lazy.names() == full.names());
  BOOST_CHECK_EQUAL(lazy.metadata("k"), "value");
  std::vector<float> wa(100), wb(100);
  full.read_into<float>("w", {10, 10}, wa.data());
  lazy.read_into<float>("w", {10, 10}, wb.data());
  BOOST_CHECK(wa == a && wb == a);
  BOOST_CHECK(lazy.read_vector<double>("v") == d);
  BOOST_CHECK(lazy.raw_bytes("w") == full.raw_bytes("w"));
  BOOST_CHECK(lazy.read_vector<double>("v") == d);  // a second read of the same tensor
  // The open file is pinned: an atomic overwrite of the path (a new checkpoint) does not change
  // what an already opened file reads.
  io::SafeTensorsWriter w2;
  const std::vector<float> z(100, 9.0f);
  w2.add("w", {10, 10}, z.data());
  w2.add("v", {7}, d.data());
  w2.write(path);
  lazy.read_into<float>("w", {10, 10}, wb.data());
  BOOST_CHECK(wb == a);
  // The header is validated as read() does: against the file's size.
  const auto good = dt::read_bytes(path);
  std::uint64_t n;
  std::memcpy(&n, good.data(), 8);
  for (std::size_t keep : {std::size_t(5), std::size_t(8 + n / 2), good.size() - 1}) {
    dt::write_bytes(path, std::vector<unsigned char>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(keep)));
    dt::expect_error<SerializationError>([&] { io::SafeTensorsFile::open(path); },
                                         keep == 5 ? "truncated" : keep < good.size() - 1 ? "does not fit" : "outside the data block");
  }
  dt::expect_error<IoError>([&] { io::SafeTensorsFile::open(tmp_path("does_not_exist")); }, "cannot open");
  std::remove(path.c_str());
}

BOOST_AUTO_TEST_CASE(parameter_groups_through_a_file) {
  nn::ParameterGroup<float, Dev> g("g");
  g.declare("g.conv.weight", {4, 3, 2, 5}, nn::Init::Normal002);
  g.declare("g.conv.bias", {4}, nn::Init::Normal002);
  core::Rng rng(9);
  g.allocate(cpu(), rng);
  io::SafeTensorsWriter w;
  train::add_parameters(w, cpu(), g);
  const auto f = io::SafeTensorsFile::parse(w.serialize(), "mem");
  BOOST_CHECK(io::shape_string(f.info("g.conv.weight").shape) == "[4, 3, 5, 2]");
  nn::ParameterGroup<float, Dev> h("g");
  h.declare("g.conv.weight", {4, 3, 2, 5}, nn::Init::Zeros);
  h.declare("g.conv.bias", {4}, nn::Init::Zeros);
  core::Rng r2(1);
  h.allocate(cpu(), r2);
  train::load_parameters(f, cpu(), h);
  BOOST_CHECK(std::equal(g.values(), g.values() + g.size(), h.values()));
  // A group expecting another shape or an extra tensor: clear errors, nothing changed.
  nn::ParameterGroup<float, Dev> k("g");
  k.declare("g.conv.bias", {4}, nn::Init::Zeros);
  k.declare("g.conv.weight", {4, 3, 5, 2}, nn::Init::Zeros);
  core::Rng r3(1);
  k.allocate(cpu(), r3);
  dt::expect_error<SerializationError>([&] { train::load_parameters(f, cpu(), k); },
                                       "tensor 'g.conv.weight': expected F32 [4, 3, 2, 5], but found F32 [4, 3, 5, 2]");
  BOOST_CHECK_EQUAL(k.values()[0], 0.0f);  // the bias, staged first, was not committed
  nn::ParameterGroup<float, Dev> m("g");
  m.declare("g.other.weight", {1}, nn::Init::Zeros);
  core::Rng r4(1);
  m.allocate(cpu(), r4);
  dt::expect_error<SerializationError>([&] { train::load_parameters(f, cpu(), m); },
                                       "missing tensor 'g.other.weight' (expected F32 [1])");
}

BOOST_AUTO_TEST_CASE(safetensors_checksums_catch_damage) {
  // The CRC-32 itself: the standard check value of "123456789" and zlib's crc32 of an empty input.
  BOOST_CHECK_EQUAL(io::detail::crc32("123456789", 9), 0xCBF43926u);
  BOOST_CHECK_EQUAL(io::detail::crc32("", 0), 0u);
  BOOST_CHECK_EQUAL(io::detail::crc32("6789", 4, io::detail::crc32("12345", 5)), 0xCBF43926u);  // continued
  io::SafeTensorsWriter w;
  std::vector<float> a(100);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = 0.5f * float(i);
  const std::vector<double> v{1, 2, 3};
  w.add("w", {10, 10}, a.data());
  w.add("v", {3}, v.data());
  w.metadata("key", "value");
  w.metadata("checksums", "a caller's value is replaced");
  const std::string path = tmp_path("sum.safetensors");
  w.write(path);
  const auto good = dt::read_bytes(path);
  const auto f = io::SafeTensorsFile::parse(good, "t");
  BOOST_CHECK(f.has_checksums());
  BOOST_CHECK(f.metadata("checksums").find("\"w\":\"" + io::detail::crc32_hex(io::detail::crc32(a.data(), 400)) + "\"") !=
              std::string::npos);
  std::uint64_t n;
  std::memcpy(&n, good.data(), 8);
  // A flipped bit in w's data: read() refuses the file, open() the tensor (v still reads).
  auto bad = good;
  bad[8 + n + 40] ^= 0x10;
  dt::expect_error<SerializationError>([&] { io::SafeTensorsFile::parse(bad, "t"); }, "tensor 'w' fails its checksum");
  dt::write_bytes(path, bad);
  const auto lazy = io::SafeTensorsFile::open(path);
  std::vector<float> got(100);
  dt::expect_error<SerializationError>([&] { lazy.read_into<float>("w", {10, 10}, got.data()); }, "tensor 'w' fails its checksum");
  dt::expect_error<SerializationError>([&] { lazy.raw_bytes("w"); }, "fails its checksum");
  BOOST_CHECK(lazy.read_vector<double>("v") == v);
  // A changed metadata value (same length, so the header still parses) or a removed checksum entry.
  auto edit = [&](const std::string& from, const std::string& to) { return edit_header(good, from, to); };
  dt::expect_error<SerializationError>([&] { io::SafeTensorsFile::parse(edit("\"value\"", "\"valuf\""), "t"); },
                                       "the metadata checksum does not match");
  dt::expect_error<SerializationError>([&] { io::SafeTensorsFile::parse(edit("\"metadata_checksum\"", "\"metadata_checksuX\""), "t"); },
                                       "only one of the checksum entries");
  // A file without checksums (written before they existed) loads.
  const std::string legacy = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  std::vector<unsigned char> old(8 + legacy.size() + 8, 0);
  const std::uint64_t ln = legacy.size();
  std::memcpy(old.data(), &ln, 8);
  std::memcpy(old.data() + 8, legacy.data(), legacy.size());
  const auto of = io::SafeTensorsFile::parse(old, "old");
  BOOST_CHECK(!of.has_checksums());
  BOOST_CHECK(of.read_vector<float>("x") == (std::vector<float>{0, 0}));
  std::remove(path.c_str());
}
