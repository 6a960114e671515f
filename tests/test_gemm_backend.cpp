#define BOOST_TEST_MODULE gemm_backend
#include "support/test_util.hpp"

using namespace dicyc;

BOOST_AUTO_TEST_CASE(backend_selection_reports_what_is_built) {
  BOOST_CHECK(ops::gemm_backend_available(ops::GemmBackend::Eigen));
#if defined(DICYC_DNNL_GEMM)
  BOOST_CHECK(ops::gemm_backend() == ops::GemmBackend::Dnnl);
#else
  BOOST_CHECK(ops::gemm_backend() == ops::GemmBackend::Eigen);
  dt::expect_error<ConfigError>([] { ops::set_gemm_backend(ops::GemmBackend::Dnnl); },
                                "GEMM backend 'dnnl' is not available in this build");
#endif
}

// All four transpose combinations, with alpha/beta, on both CPU contexts and both backends,
// against a plain triple loop in double.
BOOST_AUTO_TEST_CASE(gemm_all_transposes) {
  core::Context<Eigen::DefaultDevice> cpu;
  core::Context<Eigen::ThreadPoolDevice> pool(2);
  const Index m = 37, n = 53, k = 29;
  for (auto be : {ops::GemmBackend::Eigen, ops::GemmBackend::Dnnl}) {
    if (!ops::gemm_backend_available(be)) continue;
    ops::set_gemm_backend(be);
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        BOOST_TEST_CONTEXT(ops::to_string(be) << " ta=" << ta << " tb=" << tb) {
          const auto a = dt::random_vec<float>(m * k, 1), b = dt::random_vec<float>(k * n, 2);
          const auto c0 = dt::random_vec<float>(m * n, 3);
          std::vector<double> ref(static_cast<std::size_t>(m * n));
          for (Index i = 0; i < m; ++i)
            for (Index j = 0; j < n; ++j) {
              double s = 0;
              for (Index l = 0; l < k; ++l)
                s += double(ta ? a[l + k * i] : a[i + m * l]) * double(tb ? b[j + n * l] : b[l + k * j]);
              ref[i + m * j] = 0.5 * s + 2.0 * c0[i + m * j];
            }
          auto c1 = c0, c2 = c0;
          ops::gemm<float>(cpu, ta, tb, m, n, k, a.data(), b.data(), c1.data(), 0.5f, 2.0f);
          ops::gemm<float>(pool, ta, tb, m, n, k, a.data(), b.data(), c2.data(), 0.5f, 2.0f);
          BOOST_CHECK_LT(dt::max_abs_diff_any(c1, ref), 1e-4);
          BOOST_CHECK_LT(dt::max_abs_diff_any(c2, ref), 1e-4);
        }
      }
  }
}
