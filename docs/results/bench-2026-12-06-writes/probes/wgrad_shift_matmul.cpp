// A stride-1 3^d conv's weight gradient (padded input (N+2)^d, C channels both ways) as 3^d bf16
// matmuls dW_t = dY^T X_t on oneDNN: dY^T transposed once onto the padded grid (Q columns), X_t
// the padded input shifted by tap t. Usage: wgrad_shift_matmul DIM N C (OMP_NUM_THREADS=2).
#include <dnnl.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>
using namespace dnnl;
using dt = memory::data_type;
int main(int argc, char** argv) {
  const int dim = argc > 1 ? atoi(argv[1]) : 3, n = argc > 2 ? atoi(argv[2]) : 12, C = argc > 3 ? atoi(argv[3]) : 64;
  const long np = n + 2, plane = dim == 3 ? np * np : 1;
  const long Q = dim == 3 ? (n - 1) * np * np + (n - 1) * np + (n - 1) + 1 : (n - 1) * np + (n - 1) + 1;
  const long P = dim == 3 ? np * np * np : np * np;
  const int taps = dim == 3 ? 27 : 9;
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  std::vector<uint16_t> dyT(size_t(C) * Q, 0x3f80), x(size_t(P) * C, 0x3f80);  // bf16 1.0
  std::vector<float> dw(size_t(taps) * C * C);
  // Dense rows: oneDNN 2.6 takes brg:avx512_core_amx_bf16 only then (gemm:jit with a row stride > K).
  memory::desc a({C, Q}, dt::bf16, memory::dims{Q, 1}), b({Q, C}, dt::bf16, memory::dims{C, 1}),
      c({C, C}, dt::f32, memory::dims{C, 1});
  auto pd = matmul::primitive_desc(matmul::desc(a, b, c), eng);
  printf("impl %s Q=%ld\n", pd.impl_info_str(), Q);
  matmul mm(pd);
  memory ma(a, eng, dyT.data()), mb(b, eng, x.data()), mc(c, eng, dw.data());
  auto run = [&] {
    for (int t = 0; t < taps; ++t) {
      const long dz = dim == 3 ? t / 9 : 0, dy = (t / 3) % 3, dx = t % 3;
      mb.set_data_handle(x.data() + (dz * plane + dy * np + dx) * C);
      mc.set_data_handle(dw.data() + size_t(t) * C * C);
      mm.execute(s, {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}});
    }
    s.wait();
  };
  run();
  run();
  std::vector<double> ts;
  for (int i = 0; i < 50; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    run();
    ts.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ts.begin(), ts.end());
  printf("%d matmuls: median %.4f ms, min %.4f (check %g = %ld)\n", taps, ts[25], ts[0], dw[5], Q);
}
