// dicyc-train, dicyc-synth and dicyc-bench for 2-D float models (one instantiation per translation unit).
#include "impl.hpp"

namespace tools {
template <>
int run_train<2, float>(const TrainConfig& c) {
  return Runner<2, float>::train(c);
}
template <>
int run_synth<2, float>(const SynthConfig& c, const std::string& config, const DataMeta& m) {
  return Runner<2, float>::synth(c, config, m);
}
template <>
int run_bench<2, float>(const BenchConfig& c) {
  return Runner<2, float>::bench(c);
}
}  // namespace tools
