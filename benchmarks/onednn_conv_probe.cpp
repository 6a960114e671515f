// onednn_conv_probe: oneDNN's own convolution primitives (forward, backward data, backward weights)
// on dicyc's memory layout, for the PatchGAN's 4^d layers, in f32 and bf16 (issue #35: would
// oneDNN's primitives beat our im2col/GEMM paths on the thin and strided layers, and what does
// AMX/AVX512-BF16 give through them?). dicyc's activations (C, x, y[, z], N), channels fastest,
// are oneDNN's plain nhwc / ndhwc (H = y, W = x, D = z) and its conv weights (Cout, Cin, k...) are
// hwio / dhwio, so no layout change is needed; the primitives pick their own layouts ("any") and
// the reorders of the user tensors are timed with each pass. The layers are bench_ops'
// conv_layer/{2d/patchgan, 2d/patchgan_ndf32, 3d/patchgan} (compare with
// `bench_ops --benchmark_filter=conv_layer/.d/patchgan`). Threads: oneDNN's OpenMP team
// (OMP_NUM_THREADS, 2 to match the other benchmarks). Prints the median of 15 runs per pass and
// the implementation oneDNN chose.
//   onednn_conv_probe [f32|bf16|both]
#include <dnnl.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>
using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static double med(std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; }

template <class F> double timeit(F f, int runs) {
  f(); f();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    auto a = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  return med(t);
}

void layer(engine& eng, stream& s, int dim, int n, int ci, int co, int k, int st, dt cdt, int runs) {
  const int o = (n + 2 - k) / st + 1;
  memory::dims src_d = dim == 3 ? memory::dims{1, ci, n, n, n} : memory::dims{1, ci, n, n};
  memory::dims dst_d = dim == 3 ? memory::dims{1, co, o, o, o} : memory::dims{1, co, o, o};
  memory::dims w_d = dim == 3 ? memory::dims{co, ci, k, k, k} : memory::dims{co, ci, k, k};
  memory::dims b_d = {co};
  memory::dims strides = dim == 3 ? memory::dims{st, st, st} : memory::dims{st, st};
  memory::dims pad = dim == 3 ? memory::dims{1, 1, 1} : memory::dims{1, 1};
  const tag act = dim == 3 ? tag::ndhwc : tag::nhwc, wt = dim == 3 ? tag::dhwio : tag::hwio;
  // User memories (f32, dicyc's layout).
  memory usrc({src_d, dt::f32, act}, eng), udst({dst_d, dt::f32, act}, eng), uw({w_d, dt::f32, wt}, eng),
      ub({b_d, dt::f32, tag::x}, eng), udsrc({src_d, dt::f32, act}, eng), uddst({dst_d, dt::f32, act}, eng),
      udw({w_d, dt::f32, wt}, eng), udb({b_d, dt::f32, tag::x}, eng);
  for (auto* m : {&usrc, &uw, &uddst}) {
    float* p = static_cast<float*>(m->get_data_handle());
    for (size_t i = 0; i < m->get_desc().get_size() / 4; ++i) p[i] = float((i * 2654435761u) % 1000) / 1000.f - 0.5f;
  }
  auto any = [&](const memory::dims& d, dt t) { return memory::desc(d, t, tag::any); };
  convolution_forward::desc fd(prop_kind::forward_training, algorithm::convolution_direct, any(src_d, cdt),
                               any(w_d, cdt), memory::desc(b_d, dt::f32, tag::any), any(dst_d, dt::f32), strides, pad, pad);
  convolution_forward::primitive_desc fpd(fd, eng);
  convolution_backward_data::desc bdd(algorithm::convolution_direct, any(src_d, dt::f32), any(w_d, cdt), any(dst_d, cdt),
                                      strides, pad, pad);
  convolution_backward_data::primitive_desc bdpd(bdd, eng, fpd);
  convolution_backward_weights::desc bwd(algorithm::convolution_direct, any(src_d, cdt), any(w_d, dt::f32),
                                         memory::desc(b_d, dt::f32, tag::any), any(dst_d, cdt), strides, pad, pad);
  convolution_backward_weights::primitive_desc bwpd(bwd, eng, fpd);
  auto in = [&](memory& u, const memory::desc& md) {
    if (md == u.get_desc()) return u;
    memory m(md, eng);
    reorder(u, m).execute(s, u, m);
    return m;
  };
  auto out_back = [&](memory& m, memory& u) { if (m.get_desc() != u.get_desc()) reorder(m, u).execute(s, m, u); };
  auto fwd = [&] {
    memory src = in(usrc, fpd.src_desc()), w = in(uw, fpd.weights_desc());
    memory dst = fpd.dst_desc() == udst.get_desc() ? udst : memory(fpd.dst_desc(), eng);
    convolution_forward(fpd).execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, ub}, {DNNL_ARG_DST, dst}});
    out_back(dst, udst);
    s.wait();
  };
  auto bdata = [&] {
    memory dd = in(uddst, bdpd.diff_dst_desc()), w = in(uw, bdpd.weights_desc());
    memory ds = bdpd.diff_src_desc() == udsrc.get_desc() ? udsrc : memory(bdpd.diff_src_desc(), eng);
    convolution_backward_data(bdpd).execute(s, {{DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DIFF_SRC, ds}});
    out_back(ds, udsrc);
    s.wait();
  };
  auto bw = [&] {
    memory dd = in(uddst, bwpd.diff_dst_desc()), src = in(usrc, bwpd.src_desc());
    memory dw = bwpd.diff_weights_desc() == udw.get_desc() ? udw : memory(bwpd.diff_weights_desc(), eng);
    convolution_backward_weights(bwpd).execute(s, {{DNNL_ARG_DIFF_DST, dd}, {DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_WEIGHTS, dw}, {DNNL_ARG_DIFF_BIAS, udb}});
    out_back(dw, udw);
    s.wait();
  };
  std::printf("%d-D %s %3d -> %3d at %3d^%d, k%d s%d: fwd %7.3f  bwd_data %7.3f  bwd_w %7.3f ms  [%s]\n", dim,
              cdt == dt::f32 ? "f32 " : "bf16", ci, co, n, dim, k, st, timeit(fwd, runs), timeit(bdata, runs), timeit(bw, runs),
              fpd.impl_info_str());
}

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "both";
  if (which != "f32" && which != "bf16" && which != "both") {
    std::fprintf(stderr, "usage: onednn_conv_probe [f32|bf16|both]\n");
    return 2;
  }
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  const int runs = 15;
  // {dim, input size, cin, cout, stride}: bench_ops' PatchGAN layers (kernel 4, padding 1).
  const int layers[][5] = {{2, 128, 1, 64, 2},  {2, 64, 64, 128, 2}, {2, 32, 128, 256, 2}, {2, 16, 256, 512, 1},
                           {2, 96, 1, 32, 2},   {2, 48, 32, 64, 2},  {2, 24, 64, 128, 2},  {2, 12, 128, 256, 1},
                           {3, 64, 1, 32, 2},   {3, 32, 32, 64, 2},  {3, 16, 64, 128, 2},  {3, 8, 128, 256, 1}};
  for (dt t : {dt::f32, dt::bf16}) {
    if ((t == dt::f32 && which == "bf16") || (t == dt::bf16 && which == "f32")) continue;
    for (const auto& l : layers) {
      try {
        layer(eng, s, l[0], l[1], l[2], l[3], 4, l[4], t, runs);
      } catch (const dnnl::error& e) {
        std::printf("%d-D %d -> %d at %d: oneDNN has no primitive here (%s)\n", l[0], l[2], l[3], l[1], e.what());
      }
    }
  }
}
