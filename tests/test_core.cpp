#define BOOST_TEST_MODULE core
#include "support/test_util.hpp"

#include <mutex>
#include <set>

using namespace dicyc;
using dt::expect_error;

BOOST_AUTO_TEST_CASE(shapes_format_and_convert) {
  BOOST_CHECK_EQUAL(shape_str(Shape<4>(128, 64, 64, 1)), "[128, 64, 64, 1]");
  BOOST_CHECK_EQUAL(extent_str(std::array<Index, 3>{3, 4, 5}), "3 x 4 x 5");
  BOOST_CHECK_EQUAL(num_elements(Shape<3>(2, 3, 4)), 24);
  const auto s = to_shape<3>({2, 3, 4});
  BOOST_CHECK_EQUAL(s[2], 4);
  expect_error<ShapeError>([] { to_shape<5>({1, 2, 3, 4}, "volume"); },
                           "volume: expected a tensor of rank 5, but got rank 4 (shape [1, 2, 3, 4]) instead");
  expect_error<ShapeError>([] { to_shape<2>({1, -2}, "image"); }, "image: negative extent in shape [1, -2]");
}

BOOST_AUTO_TEST_CASE(buffers_round_trip_on_both_cpu_devices) {
  core::Context<Eigen::DefaultDevice> cpu;
  core::Context<Eigen::ThreadPoolDevice> pool(2);
  BOOST_CHECK_EQUAL(pool.num_threads(), 2);
  const std::vector<float> v{1, 2, 3, 4, 5, 6};
  auto a = core::Tensor<float, 2, Eigen::DefaultDevice>::from_host(cpu, Shape<2>(2, 3), v);
  auto b = core::Tensor<float, 2, Eigen::ThreadPoolDevice>::from_host(pool, Shape<2>(2, 3), v);
  BOOST_CHECK(a.to_host() == v);
  BOOST_CHECK(b.to_host() == v);
  BOOST_CHECK_EQUAL(a.map()(1, 2), 6.0f);  // ColMajor: (1, 2) -> 1 + 2 * 2
  auto z = core::Tensor<double, 3, Eigen::DefaultDevice>::zeros(cpu, Shape<3>(2, 2, 2));
  for (double e : z.to_host()) BOOST_CHECK_EQUAL(e, 0.0);
  expect_error<ShapeError>([&] { a.copy_from_host(std::vector<float>(5)); }, "copy of 5 elements into a buffer of 6");
  expect_error<ConfigError>([] { core::Context<Eigen::ThreadPoolDevice> bad(-1); }, "thread count must be >= 0");
}

// set_pool_spinning re-creates the pool: the same thread count, the context's buffers kept, and
// the same results from parallel_for and from Eigen expressions on the device.
BOOST_AUTO_TEST_CASE(pool_spinning_switch_keeps_the_context_working) {
  core::Context<Eigen::ThreadPoolDevice> pool(2);
  BOOST_CHECK(pool.pool_spinning());
  const std::vector<float> v{1, 2, 3, 4, 5, 6};
  auto a = core::Tensor<float, 2, Eigen::ThreadPoolDevice>::from_host(pool, Shape<2>(2, 3), v);
  auto run = [&] {
    double total = 0;
    std::mutex m;
    pool.parallel_for(1 << 16, 1e3, [&](Index b, Index e) {
      double s = 0;
      for (Index i = b; i < e; ++i) s += static_cast<double>(i);
      std::lock_guard<std::mutex> g(m);
      total += s;
    });
    return total;
  };
  const double want = double(1 << 16) * double((1 << 16) - 1) / 2;
  for (bool on : {false, false, true, false}) {
    pool.set_pool_spinning(on);
    BOOST_CHECK_EQUAL(pool.pool_spinning(), on);
    BOOST_CHECK_EQUAL(pool.num_threads(), 2);
    BOOST_CHECK_EQUAL(run(), want);  // integers below 2^53: exact in any order
    auto b = core::Tensor<float, 2, Eigen::ThreadPoolDevice>::from_host(pool, Shape<2>(2, 3), v);
    b.map().device(pool.device()) = b.map() * 2.0f + a.map();
    const auto h = b.to_host();
    for (std::size_t i = 0; i < v.size(); ++i) BOOST_CHECK_EQUAL(h[i], 3 * v[i]);
    BOOST_CHECK(a.to_host() == v);  // made before the switch, still there
  }
}

BOOST_AUTO_TEST_CASE(allocator_reuses_blocks) {
  core::Context<Eigen::DefaultDevice> cpu;
  const float* first;
  {
    core::Buffer<float, Eigen::DefaultDevice> b(cpu, 1000);
    first = b.data();
  }
  BOOST_CHECK_GT(cpu.allocator().cached_bytes(), 0u);
  core::Buffer<float, Eigen::DefaultDevice> c(cpu, 990);  // within the reuse window
  BOOST_CHECK_EQUAL(c.data(), first);
  cpu.allocator().release_all();
  expect_error<ConfigError>([&] { cpu.set_workspace_limit(10); }, "workspace limit must be at least 4096 bytes");
}

BOOST_AUTO_TEST_CASE(rng_is_deterministic_and_sane) {
  core::Rng a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) BOOST_CHECK_EQUAL(a.next(), b.next());
  BOOST_CHECK_NE(a.next(), c.next());
  // The first outputs of seed 0 are fixed by the algorithm (SplitMix64 -> xoshiro256**); they
  // must never change between versions, or checkpoints would not resume identically.
  core::Rng z(0);
  const std::uint64_t first = z.next();
  core::Rng z2(0);
  BOOST_CHECK_EQUAL(first, z2.next());
  // Moments of uniform and normal over 200k draws.
  core::Rng r(7);
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < n; ++i) {
    su += r.uniform();
    const double g = r.normal();
    sn += g;
    sn2 += g * g;
  }
  BOOST_CHECK_SMALL(su / n - 0.5, 0.005);
  BOOST_CHECK_SMALL(sn / n, 0.01);
  BOOST_CHECK_SMALL(sn2 / n - 1.0, 0.02);
  // uniform_int covers its range without bias at the ends.
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(r.uniform_int(7));
  BOOST_CHECK_EQUAL(seen.size(), 7u);
  BOOST_CHECK(*seen.rbegin() == 6u);
  // Snapshot and restore continue the same stream, including a pending Box-Muller spare.
  r.normal();
  const auto snap = r.snapshot();
  const double x1 = r.normal(), x2 = r.normal();
  r.restore(snap);
  BOOST_CHECK_EQUAL(r.normal(), x1);
  BOOST_CHECK_EQUAL(r.normal(), x2);
}

BOOST_AUTO_TEST_CASE(eigen_asserts_throw_in_test_builds) {
  Eigen::Tensor<float, 2> a(2, 3), b(3, 2);
  a.setZero();
  b.setZero();
  Eigen::Tensor<float, 2> c(2, 3);
  BOOST_CHECK_THROW(c = a + b, std::logic_error);
}
