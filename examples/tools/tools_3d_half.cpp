// dicyc-train, dicyc-synth and dicyc-bench for 3-D half models (one instantiation per translation unit).
#include "impl.hpp"

namespace tools {
template <>
int run_train<3, Eigen::half>(const TrainConfig& c) {
  return Runner<3, Eigen::half>::train(c);
}
template <>
int run_synth<3, Eigen::half>(const SynthConfig& c, const std::string& config, const DataMeta& m) {
  return Runner<3, Eigen::half>::synth(c, config, m);
}
template <>
int run_bench<3, Eigen::half>(const BenchConfig& c) {
  return Runner<3, Eigen::half>::bench(c);
}
}  // namespace tools
