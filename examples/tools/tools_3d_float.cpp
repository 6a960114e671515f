// dicyc-train, dicyc-synth and dicyc-bench for 3-D float models (one instantiation per translation unit).
#include "impl.hpp"

namespace tools {
template <>
int run_train<3, float>(const TrainConfig& c) {
  return Runner<3, float>::train(c);
}
template <>
int run_synth<3, float>(const SynthConfig& c, const std::string& config, const DataMeta& m) {
  return Runner<3, float>::synth(c, config, m);
}
template <>
int run_bench<3, float>(const BenchConfig& c) {
  return Runner<3, float>::bench(c);
}
}  // namespace tools
