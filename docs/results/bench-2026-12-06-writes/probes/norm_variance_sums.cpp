#include <Eigen/Dense>
#include <chrono>
#include <cstdio>
#include <vector>
using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
using Vec = Eigen::Matrix<float, Eigen::Dynamic, 1>;
int main(){
  for (int C : {16, 32, 64, 256}) {
    int len = 2048;
    std::vector<float> x(C*len); for (size_t i=0;i<x.size();i++) x[i]=float(i%97)*0.01f;
    Eigen::Map<const Mat> X(x.data(), C, len);
    Vec mn = Vec::Constant(C, 0.3f);
    volatile float sink=0;
    auto t0=std::chrono::steady_clock::now();
    for(int r=0;r<2000;r++){ Vec s = (X.colwise() - mn).array().square().matrix().rowwise().sum(); sink = sink + s(0);} 
    auto t1=std::chrono::steady_clock::now();
    for(int r=0;r<2000;r++){ Vec acc = Vec::Zero(C); for(int j=0;j<len;j++) acc.array() += (X.col(j)-mn).array().square(); sink = sink + acc(0);} 
    auto t2=std::chrono::steady_clock::now();
    for(int r=0;r<2000;r++){ Vec s = X.rowwise().sum(); sink = sink + s(0);} 
    auto t3=std::chrono::steady_clock::now();
    auto us=[](auto a, auto b){return std::chrono::duration<double,std::micro>(b-a).count()/2000;};
    printf("C=%d expr %.2f us  colloop %.2f us  plain-sum %.2f us\n", C, us(t0,t1), us(t1,t2), us(t2,t3));
  }
}
