#include <dnnl.hpp>
#include <chrono>
#include <cstdio>
#include <vector>
#include <algorithm>
using namespace dnnl;
using dt = memory::data_type;
int main(int argc,char**argv){
  int n = argc>1?atoi(argv[1]):24; int C = argc>2?atoi(argv[2]):64;
  long np=n+2; long Q = (long)(n-1)*np+(n-1)+1; long P=(long)np*np;
  engine eng(engine::kind::cpu,0); stream s(eng);
  std::vector<uint16_t> dyT((size_t)C*Q, 0x3f80), x((size_t)P*C, 0x3f80);
  std::vector<float> dw((size_t)9*C*C);
  memory::desc a({C,Q}, dt::bf16, memory::dims{Q,1});
  memory::desc b({Q,C}, dt::bf16, memory::dims{C,1});
  memory::desc c({C,C}, dt::f32, memory::dims{C,1});
  auto pd = matmul::primitive_desc(matmul::desc(a,b,c), eng);
  printf("impl %s Q=%ld\n", pd.impl_info_str(), Q);
  matmul mm(pd);
  memory ma(a,eng,dyT.data()); memory mb(b,eng,x.data()); memory mc(c,eng,dw.data());
  auto run=[&]{
    for(int dy=0;dy<3;dy++)for(int dx=0;dx<3;dx++){
      long off=(long)dy*np+dx; int t=dy*3+dx;
      mb.set_data_handle(x.data()+off*C); mc.set_data_handle(dw.data()+(size_t)t*C*C);
      mm.execute(s,{{DNNL_ARG_SRC,ma},{DNNL_ARG_WEIGHTS,mb},{DNNL_ARG_DST,mc}});
    }
    s.wait();
  };
  run();run();
  std::vector<double> ts;
  for(int i=0;i<50;i++){auto t0=std::chrono::steady_clock::now();run();ts.push_back(std::chrono::duration<double,std::milli>(std::chrono::steady_clock::now()-t0).count());}
  std::sort(ts.begin(),ts.end()); printf("median %.4f ms  min %.4f  (check %f expect %ld)\n", ts[25], ts[0], dw[5], Q);
}
