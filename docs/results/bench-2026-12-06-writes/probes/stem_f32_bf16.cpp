#include <dnnl.hpp>
#include <chrono>
#include <cstdio>
#include <vector>
#include <algorithm>
using namespace dnnl;
using tag = memory::format_tag; using dt = memory::data_type;
template <class F> double timeit(F f){ f(); f(); std::vector<double> t; for(int i=0;i<15;i++){auto a=std::chrono::steady_clock::now(); f(); t.push_back(std::chrono::duration<double,std::milli>(std::chrono::steady_clock::now()-a).count());} std::sort(t.begin(),t.end()); return t[7]; }
int main(int argc,char**argv){
  int dim = atoi(argv[1]); int n = atoi(argv[2]); int ci=atoi(argv[3]), co=atoi(argv[4]), k=atoi(argv[5]);
  engine eng(engine::kind::cpu,0); stream s(eng);
  int o = n-k+1;
  memory::dims xd = dim==3? memory::dims{1,ci,n,n,n}: memory::dims{1,ci,n,n};
  memory::dims yd = dim==3? memory::dims{1,co,o,o,o}: memory::dims{1,co,o,o};
  memory::dims wd = dim==3? memory::dims{co,ci,k,k,k}: memory::dims{co,ci,k,k};
  memory::dims st = dim==3? memory::dims{1,1,1}: memory::dims{1,1}, pd = dim==3? memory::dims{0,0,0}: memory::dims{0,0};
  tag act = dim==3? tag::ndhwc: tag::nhwc, wt = dim==3? tag::dhwio : tag::hwio;
  for (dt cdt : {dt::f32, dt::bf16}) {
    auto any=[&](memory::dims d, dt t){return memory::desc(d,t,tag::any);};
    convolution_forward::desc fd(prop_kind::forward_training, algorithm::convolution_direct, any(xd,cdt), any(wd,cdt), any(yd,dt::f32), st, pd, pd);
    convolution_forward::primitive_desc fpd(fd, eng);
    convolution_backward_weights::desc bw(algorithm::convolution_direct, any(xd,cdt), any(wd,dt::f32), any(yd,cdt), st, pd, pd);
    convolution_backward_weights::primitive_desc bpd(bw, eng, fpd);
    memory::desc xu(xd, dt::f32, act), yu(yd, dt::f32, act), wu(wd, dt::f32, wt);
    memory xm(xu,eng), ym(yu,eng), wm(wu,eng);
    memory xp(fpd.src_desc(),eng), wp(fpd.weights_desc(),eng), yp(fpd.dst_desc(),eng);
    memory xb(bpd.src_desc(),eng), dyb(bpd.diff_dst_desc(),eng), dwb(bpd.diff_weights_desc(),eng);
    convolution_forward f(fpd); convolution_backward_weights b(bpd);
    reorder rx(xm,xp), rw(wm,wp), rxb(xm,xb), rdy(ym,dyb);
    bool yre = fpd.dst_desc()!=yu; reorder ry; if(yre) ry=reorder(yp,ym);
    double tf = timeit([&]{ rx.execute(s,xm,xp); rw.execute(s,wm,wp); f.execute(s,{{DNNL_ARG_SRC,xp},{DNNL_ARG_WEIGHTS,wp},{DNNL_ARG_DST,yp}}); if(yre) ry.execute(s,yp,ym); s.wait();});
    double tb = timeit([&]{ rxb.execute(s,xm,xb); rdy.execute(s,ym,dyb); b.execute(s,{{DNNL_ARG_SRC,xb},{DNNL_ARG_DIFF_DST,dyb},{DNNL_ARG_DIFF_WEIGHTS,dwb}}); s.wait();});
    printf("%s fwd %.3f ms (%s)  wgrad %.3f ms (%s)\n", cdt==dt::f32?"f32 ":"bf16", tf, fpd.impl_info_str(), tb, bpd.impl_info_str());
  }
}
