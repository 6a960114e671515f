// Data-parallel training on MPI (ctest label mpi, run under mpirun -np 2).
//
// - The communicator: all-reduce of every type and operation, broadcast, gather of byte strings
//   of different lengths (one empty), the half-precision average.
// - Equivalence: 2 ranks with batch 1 each against one process that takes both ranks' samples as
//   one batch of 2, 10 iterations, CycleGAN and NMI-DiCyc, 2-D and 3-D; the ranks' weights and
//   Adam state are bit-identical after every step; and a control (the single process on rank 0's
//   samples alone) is far outside the tolerance, so the comparison can fail.
// - A collective checkpoint: save after 4 iterations, 3 more, and a fresh pair of models resumed
//   from it reaches a byte-identical checkpoint (every rank's pools included); a 2-rank
//   checkpoint refused by one process and a 1-process checkpoint refused by 2 ranks.
// - Failures on one rank reach every rank: a NaN in rank 1's batch, a checkpoint only rank 0 can
//   read.
// The models are double throughout (one instantiation fewer to compile); float training on MPI
// is run end to end through the tools by tests/tools/test_mpi_tools.sh.
#define BOOST_TEST_MODULE dicyc_mpi
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "dicyc/dist/mpi.hpp"
#include "dicyc/model.hpp"
#include "support/test_util.hpp"
#include "support/tmp_dir.hpp"

using namespace dicyc;
using Dev = Eigen::DefaultDevice;
using dt::cpu;

namespace {

dist::Mpi* g_mpi = nullptr;

struct MpiFixture {
  MpiFixture() {
    mpi = std::make_unique<dist::Mpi>(&boost::unit_test::framework::master_test_suite().argc,
                                      &boost::unit_test::framework::master_test_suite().argv);
    mpi->set_timeout(120);  // a rank that left a collective behind ends the job instead of hanging
    g_mpi = mpi.get();
  }
  ~MpiFixture() { g_mpi = nullptr; }
  std::unique_ptr<dist::Mpi> mpi;
};
BOOST_TEST_GLOBAL_FIXTURE(MpiFixture);

dist::Mpi& comm() { return *g_mpi; }

model::ModelOptions small(const std::string& name, Index pool = 50) {
  return model::ModelOptions::preset(name)
      .generator(nn::GeneratorOptions().ngf(4).n_blocks(1))
      .ndf(4)
      .n_layers(1)
      .control_points(3)
      .offset_hidden(4)
      .stn_hidden(8, 4)
      .pool_size(pool)
      .seed(7)
      .schedule(optim::ScheduleOptions().lr(2e-4).iterations_per_epoch(100));
}

/// Sample `rank` of iteration `it` (the same numbers on any rank that asks).
std::vector<float> sample(Index n, int it, int rank, bool domain_b) {
  std::vector<float> v(static_cast<std::size_t>(n));
  const double ph = 0.37 * it + 1.9 * rank + (domain_b ? 0.5 : 0.0);
  for (Index i = 0; i < n; ++i) {
    const double a = std::sin(0.21 * double(i) + ph) * std::cos(0.043 * double(i) - 0.7 * ph);
    v[static_cast<std::size_t>(i)] = static_cast<float>(domain_b ? 0.8 * a * a - 0.4 : 0.9 * a);
  }
  return v;
}

template <int Dim, class S = double>
using Model = model::ModelBase<Dim, S, Dev>;

template <int Dim, class S = double>
model::StepLosses step_on(Model<Dim, S>& m, const Shape<Dim + 2>& one, int it, const std::vector<int>& ranks,
                          bool nan = false) {
  Shape<Dim + 2> s = one;
  s[Dim + 1] = static_cast<Index>(ranks.size());
  std::vector<S> x, y;
  for (int r : ranks) {  // (C, spatial..., N): the samples one after another
    const auto a = sample(num_elements(one), it, r, false), b = sample(num_elements(one), it, r, true);
    x.insert(x.end(), a.begin(), a.end());
    y.insert(y.end(), b.begin(), b.end());
  }
  if (nan) x[3] = S(std::nanf(""));
  return m.train_step(ConstTensorMap<S, Dim + 2>(x.data(), s), ConstTensorMap<S, Dim + 2>(y.data(), s));
}

template <int Dim, class S = double>
std::vector<std::vector<double>> weights(Model<Dim, S>& m) {
  std::vector<std::vector<double>> w;
  for (auto* g : m.groups()) w.emplace_back(g->values(), g->values() + g->size());
  return w;
}

double max_diff(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::size_t j = 0; j < a[i].size(); ++j) d = std::max(d, std::abs(double(a[i][j]) - double(b[i][j])));
  return d;
}

std::string shared_dir(const dt::TmpDir& mine) {  // rank 0's scratch folder, named on every rank
  char buf[1024] = {};
  if (comm().rank() == 0) std::snprintf(buf, sizeof buf, "%s", mine.dir.string().c_str());
  comm().broadcast(buf, sizeof buf, 0);
  return buf;
}

std::vector<char> bytes_of(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

// Tolerance of the equivalence. Both runs start from the same weights and see the same samples;
// they differ in summation order only (a batch-of-2 gradient against the mean of two batch-1
// gradients). In float that is not a usable test: a parameter whose true gradient is zero (a
// bias before instance norm) gets rounding noise of 1e-9..1e-7, which Adam, dividing by
// sqrt(v) + 1e-8, turns into steps of nearly +-lr in either direction, so float weights of the two
// runs differ by up to lr per step and the GAN then amplifies it (measured: 2e-3 after 10 steps,
// as large as a wrong sample's). In double the same noise is far below eps, and the runs agree
// to about 1e-9 (measured 0.8e-9 .. 2.3e-9 over the five cases); bound 1e-7, while one wrong
// sample (the control) is 3e-3 away.
constexpr double kTol = 1e-7;

template <int Dim, class S>
void equivalence(const std::string& name, const Shape<Dim + 2>& one, bool sequential_em = false) {
  BOOST_TEST_CONTEXT(name << " " << Dim << "-D" << (sequential_em ? " (sequential EM)" : "")) {
    const int K = comm().size();
    BOOST_REQUIRE_EQUAL(K, 2);
    auto opts = [&] {
      auto o = small(name);
      if (sequential_em) o.em(model::EmMode::Sequential);
      return o;
    };
    auto dp = model::make_model<Dim, S, Dev>(cpu(), opts());
    dp->set_communicator(comm());
    model::StepLosses Ldp;
    std::vector<double> totals;
    for (int it = 0; it < 10; ++it) {
      Ldp = step_on<Dim, S>(*dp, one, it, {comm().rank()});
      totals.push_back(Ldp.g_total);
      BOOST_CHECK_MESSAGE(dp->ranks_consistent(), "the ranks' weights differ after iteration " << it + 1);
    }
    const auto wdp = weights<Dim, S>(*dp);
    // The same state on every rank, bit for bit: compare with rank 0's copy.
    for (auto* g : dp->groups()) {
      std::vector<S> r0(g->values(), g->values() + g->size());
      comm().broadcast(r0.data(), r0.size() * sizeof(S), 0);
      BOOST_CHECK(std::memcmp(r0.data(), g->values(), r0.size() * sizeof(S)) == 0);
    }
    if (comm().rank() == 0) {
      auto ref = model::make_model<Dim, S, Dev>(cpu(), opts());
      auto ctl = model::make_model<Dim, S, Dev>(cpu(), opts());
      const auto w0 = weights<Dim, S>(*ref);
      for (int it = 0; it < 10; ++it) {
        const auto L = step_on<Dim, S>(*ref, one, it, {0, 1});
        (void)step_on<Dim, S>(*ctl, one, it, {0});
        BOOST_CHECK_CLOSE(L.g_total, totals[static_cast<std::size_t>(it)], 1e-7);  // percent
      }
      const double d = max_diff(weights<Dim, S>(*ref), wdp), dc = max_diff(weights<Dim, S>(*ctl), wdp);
      const double moved = max_diff(w0, wdp);
      BOOST_TEST_MESSAGE(name << " " << Dim << "-D: max |w_2ranks - w_batch2| " << d << ", control " << dc
                              << ", moved " << moved);
      BOOST_CHECK_LE(d, kTol);
      BOOST_CHECK_GT(dc, 4 * kTol);  // the comparison can fail
      BOOST_CHECK_GT(moved, 4 * kTol);
    }
    comm().barrier();
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(communicator_primitives) {
  auto& c = comm();
  const int r = c.rank(), K = c.size();
  BOOST_REQUIRE_EQUAL(K, 2);
  BOOST_CHECK(c.name().find("MPI") != std::string::npos);
  float f[3] = {1.5f * float(r + 1), -2.0f, float(r)};
  c.all_reduce(f, 3, dist::DType::F32, dist::Op::Sum);
  BOOST_CHECK_EQUAL(f[0], 4.5f);
  BOOST_CHECK_EQUAL(f[1], -4.0f);
  BOOST_CHECK_EQUAL(f[2], 1.0f);
  double d[2] = {double(r), -double(r)};
  c.all_reduce(d, 2, dist::DType::F64, dist::Op::Max);
  BOOST_CHECK_EQUAL(d[0], 1.0);
  BOOST_CHECK_EQUAL(d[1], 0.0);
  std::int64_t i64 = 10 + r;
  c.all_reduce(&i64, 1, dist::DType::I64, dist::Op::Min);
  BOOST_CHECK_EQUAL(i64, 10);
  std::int32_t i32 = r == 1 ? 7 : 3;
  c.all_reduce(&i32, 1, dist::DType::I32, dist::Op::Max);
  BOOST_CHECK_EQUAL(i32, 7);
  std::uint8_t u8[2] = {std::uint8_t(r), 200};
  c.all_reduce(u8, 2, dist::DType::U8, dist::Op::Min);
  BOOST_CHECK_EQUAL(int(u8[0]), 0);
  BOOST_CHECK_EQUAL(int(u8[1]), 200);
  std::vector<int> big(100000, r == 1 ? 42 : -1);
  c.broadcast(big.data(), big.size() * sizeof(int), 1);
  BOOST_CHECK(std::all_of(big.begin(), big.end(), [](int v) { return v == 42; }));
  const std::vector<std::uint8_t> mine = r == 0 ? std::vector<std::uint8_t>{} : std::vector<std::uint8_t>{9, 8, 7};
  const auto all = c.gather(mine, 0);
  if (r == 0) {
    BOOST_REQUIRE_EQUAL(all.size(), 2u);
    BOOST_CHECK(all[0].empty());
    BOOST_CHECK((all[1] == std::vector<std::uint8_t>{9, 8, 7}));
  } else {
    BOOST_CHECK(all.empty());
  }
  // The average of gradients of either scalar.
  std::vector<float> g{float(r), 2.0f, -3.0f * float(r)};
  dist::average(cpu(), c, g.data(), 3);
  BOOST_CHECK_EQUAL(g[0], 0.5f);
  BOOST_CHECK_EQUAL(g[1], 2.0f);
  BOOST_CHECK_EQUAL(g[2], -1.5f);
  std::vector<half> h{half(float(r)), half(0.25f)};
  dist::average(cpu(), c, h.data(), 2);
  BOOST_CHECK_EQUAL(float(h[0]), 0.5f);
  BOOST_CHECK_EQUAL(float(h[1]), 0.25f);
  BOOST_CHECK(dist::all_ok(c, true));
  BOOST_CHECK(!dist::all_ok(c, r == 0));
  dt::expect_error<dist::CommError>([&] { c.broadcast(f, 4, 5); }, "root 5 out of range");
  BOOST_CHECK_GT(c.reduced_bytes(), 0u);
}

BOOST_AUTO_TEST_CASE(equivalence_cyclegan_2d) { equivalence<2, double>("cyclegan", Shape<4>(1, 16, 16, 1)); }
BOOST_AUTO_TEST_CASE(equivalence_nmi_dicyc_2d) { equivalence<2, double>("nmi-dicyc", Shape<4>(1, 16, 16, 1)); }
BOOST_AUTO_TEST_CASE(equivalence_nmi_dicyc_2d_sequential_em) {  // the E step's own pass and STN steps
  equivalence<2, double>("nmi-dicyc", Shape<4>(1, 16, 16, 1), true);
}
BOOST_AUTO_TEST_CASE(equivalence_cyclegan_3d) { equivalence<3, double>("cyclegan", Shape<5>(1, 8, 8, 8, 1)); }
BOOST_AUTO_TEST_CASE(equivalence_nmi_dicyc_3d) { equivalence<3, double>("nmi-dicyc", Shape<5>(1, 12, 8, 8, 1)); }

BOOST_AUTO_TEST_CASE(resume_is_exact_and_rank_count_checked) {
  dt::TmpDir tmp("mpi");
  const std::string dir = shared_dir(tmp);
  const Shape<4> one(1, 16, 16, 1);
  const auto o = small("nmi-dicyc", 2);  // pools of 2: full after two steps, their RNGs in use
  auto run = model::make_model<2, double, Dev>(cpu(), o);
  run->set_communicator(comm());
  for (int it = 0; it < 4; ++it) (void)step_on<2>(*run, one, it, {comm().rank()});
  run->save(dir + "/at4.safetensors");
  for (int it = 4; it < 7; ++it) (void)step_on<2>(*run, one, it, {comm().rank()});
  run->save(dir + "/straight.safetensors");

  auto resumed = model::make_model<2, double, Dev>(cpu(), o);
  resumed->set_communicator(comm());
  resumed->load(dir + "/at4.safetensors");
  BOOST_CHECK_EQUAL(resumed->iteration(), 4);
  for (int it = 4; it < 7; ++it) (void)step_on<2>(*resumed, one, it, {comm().rank()});
  resumed->save(dir + "/resumed.safetensors");
  if (comm().rank() == 0) {
    const auto a = bytes_of(dir + "/straight.safetensors"), b = bytes_of(dir + "/resumed.safetensors");
    BOOST_CHECK_GT(a.size(), 1000u);
    BOOST_CHECK_MESSAGE(a == b, "the resumed 2-rank run's checkpoint differs from the uninterrupted one's");
    const auto f = io::SafeTensorsFile::open(dir + "/straight.safetensors");
    BOOST_CHECK_EQUAL(f.metadata("ranks"), "2");
    BOOST_CHECK(f.has("rank.1.pool.a.0") && f.has("pool.a.1") && f.has("rank.1.pool.b.1"));
    // The pools are the ranks' own (different samples, different images).
    BOOST_CHECK(f.raw_bytes("pool.a.0") != f.raw_bytes("rank.1.pool.a.0"));
    // One process refuses the 2-rank checkpoint and leaves its model as it was.
    auto single = model::make_model<2, double, Dev>(cpu(), o);
    const auto before = weights<2>(*single);
    dt::expect_error<SerializationError>([&] { single->load(dir + "/straight.safetensors"); },
                                         "written by a run of 2 ranks, and this run has 1");
    BOOST_CHECK_EQUAL(max_diff(before, weights<2>(*single)), 0.0);
    (void)step_on<2>(*single, one, 0, {0});
    single->save(dir + "/single.safetensors");
    // ... and load_weights() still starts a new run from the 2-rank run's weights.
    BOOST_CHECK_EQUAL(single->load_weights(dir + "/straight.safetensors").size(), 8u);
  }
  comm().barrier();
  // Two ranks refuse a 1-process checkpoint, on both ranks.
  auto two = model::make_model<2, double, Dev>(cpu(), o);
  two->set_communicator(comm());
  dt::expect_error<SerializationError>([&] { two->load(dir + "/single.safetensors"); },
                                       "written by a run of 1 rank, and this run has 2");
  BOOST_CHECK_EQUAL(two->iteration(), 0);
  comm().barrier();
}

BOOST_AUTO_TEST_CASE(failures_reach_every_rank) {
  dt::TmpDir tmp("mpi_fail");
  const std::string dir = shared_dir(tmp);
  const Shape<4> one(1, 16, 16, 1);
  for (const char* name : {"cyclegan", "nmi-dicyc"}) {
    auto m = model::make_model<2, double, Dev>(cpu(), small(name));
    m->set_communicator(comm());
    (void)step_on<2>(*m, one, 0, {comm().rank()});
    // A NaN in rank 1's batch: a NumericError on both ranks (no rank waits for the other).
    // Rank 1's own error names what it found (a loss's input check or the loss term), rank 0's
    // the non-finite mean.
    if (comm().rank() == 0)
      dt::expect_error<NumericError>([&] { (void)step_on<2>(*m, one, 1, {0}); }, "non-finite loss term");
    else
      BOOST_CHECK_THROW((void)step_on<2>(*m, one, 1, {1}, true), NumericError);
    BOOST_CHECK(m->ranks_consistent());
    m->save(dir + "/ok.safetensors");
  }
  // A checkpoint only rank 0 finds: rank 1 fails to open it, rank 0 is told so, neither changes.
  auto m = model::make_model<2, double, Dev>(cpu(), small("nmi-dicyc"));
  m->set_communicator(comm());
  const auto before = weights<2>(*m);
  const std::string path = comm().rank() == 0 ? dir + "/ok.safetensors" : dir + "/missing.safetensors";
  if (comm().rank() == 0)
    dt::expect_error<dist::CommError>([&] { m->load(path); }, "another rank could not open it");
  else
    BOOST_CHECK_THROW(m->load(path), Error);
  BOOST_CHECK_EQUAL(m->iteration(), 0);
  BOOST_CHECK_EQUAL(max_diff(before, weights<2>(*m)), 0.0);
  // Models of different configurations on the ranks are refused on every rank.
  auto o = small("cyclegan");
  if (comm().rank() == 1) o.ndf(8);
  auto odd = model::make_model<2, double, Dev>(cpu(), o);
  dt::expect_error<ConfigError>([&] { odd->set_communicator(comm()); }, "differ in configuration");
  comm().barrier();
}
