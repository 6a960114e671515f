#include <Eigen/Dense>
#include <chrono>
#include <cstdio>
#include <vector>
using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
using Vec = Eigen::Matrix<float, Eigen::Dynamic, 1>;
// per-channel sums of f(column j) over the columns, 4 independent accumulators
template <class F> Vec colsum4(Eigen::Index C, Eigen::Index len, F&& f) {
  Vec a0 = Vec::Zero(C), a1 = Vec::Zero(C), a2 = Vec::Zero(C), a3 = Vec::Zero(C);
  Eigen::Index j = 0;
  for (; j + 4 <= len; j += 4) { a0.array() += f(j); a1.array() += f(j+1); a2.array() += f(j+2); a3.array() += f(j+3); }
  for (; j < len; ++j) a0.array() += f(j);
  return (a0 + a1) + (a2 + a3);
}
int main(){
  for (int C : {16, 32, 64, 256}) {
    int len = 2048;
    std::vector<float> x(C*len), y(C*len); for (size_t i=0;i<x.size();i++) {x[i]=float(i%97)*0.01f; y[i]=float(i%13)*0.1f;}
    Eigen::Map<const Mat> X(x.data(), C, len), Y(y.data(), C, len);
    Vec mn = Vec::Constant(C, 0.3f);
    volatile float sink=0;
    const int R=2000;
    auto t0=std::chrono::steady_clock::now();
    for(int r=0;r<R;r++){ Vec s = colsum4(C, len, [&](Eigen::Index j){ return (X.col(j)-mn).array().square(); }); sink = sink + s(0);} 
    auto t1=std::chrono::steady_clock::now();
    for(int r=0;r<R;r++){ Vec s = (X.array()*Y.array()).matrix().rowwise().sum(); sink = sink + s(0);} 
    auto t2=std::chrono::steady_clock::now();
    for(int r=0;r<R;r++){ Vec s = colsum4(C, len, [&](Eigen::Index j){ return X.col(j).array()*Y.col(j).array(); }); sink = sink + s(0);} 
    auto t3=std::chrono::steady_clock::now();
    for(int r=0;r<R;r++){ Vec s = colsum4(C, len, [&](Eigen::Index j){ return X.col(j).array(); }); sink = sink + s(0);} 
    auto t4=std::chrono::steady_clock::now();
    auto us=[&](auto a, auto b){return std::chrono::duration<double,std::micro>(b-a).count()/R;};
    printf("C=%d var colsum4 %.2f | prod expr %.2f colsum4 %.2f | sum colsum4 %.2f us\n", C, us(t0,t1), us(t1,t2), us(t2,t3), us(t3,t4));
  }
}
