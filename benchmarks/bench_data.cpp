// The data pipeline's throughput: how fast the Sampler (the loader thread's work) produces
// training batches, to set against how fast the trainer consumes them (bench_model's
// cyclegan_step and dicyc_step; benchmarks/compare_pipeline.py prints both).
//   sample_2d_128   one 128x128 crop per domain, random axial slice, full affine augmentation
//   sample_3d_64    one 64^3 patch per domain, full augmentation
//   prepare_ch2     reading, resampling to 1.8 mm, RAS+ and percentile normalisation of one volume
// Volumes: data/mricron/ch2.nii.gz for both domains when fetched (DICYC_DATA overrides data/),
// else 181x217x181 phantoms.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "dicyc/data/dataset.hpp"

using namespace dicyc;

namespace {
std::string ch2_path() {
  const char* d = std::getenv("DICYC_DATA");
  return std::string(d ? d : "data") + "/mricron/ch2.nii.gz";
}
std::shared_ptr<data::Domain> domain() {
  static std::shared_ptr<data::Domain> dom = [] {
    auto d = std::make_shared<data::Domain>();
    if (std::filesystem::exists(ch2_path())) {
      d->add(data::prepare(ch2_path(), data::PrepareOptions{}));
    } else {
      data::Prepared p;
      p.path = "phantom";
      p.volume.data = io::VolumeData::from_shape({181, 217, 181});
      for (std::size_t i = 0; i < p.volume.data.size(); ++i) p.volume.data.data()[i] = float((i * 2654435761u) % 1000) / 500.0f - 1.0f;
      p.background = -1;
      d->add(std::move(p), 0.0);
    }
    return d;
  }();
  return dom;
}
}  // namespace

static void sample_2d_128(benchmark::State& st) {
  data::SamplerOptions o;
  o.crop = {128, 128, 1};
  data::Sampler s(domain(), domain(), o);
  for (auto _ : st) benchmark::DoNotOptimize(s.next().a.data());
}
static void sample_3d_64(benchmark::State& st) {
  data::SamplerOptions o;
  o.dim = 3;
  o.crop = {64, 64, 64};
  data::Sampler s(domain(), domain(), o);
  for (auto _ : st) benchmark::DoNotOptimize(s.next().a.data());
}
static void prepare_ch2(benchmark::State& st) {
  if (!std::filesystem::exists(ch2_path())) {
    st.SkipWithError("ch2 not fetched (scripts/fetch_data.sh)");
    return;
  }
  data::PrepareOptions o;
  o.spacing = {1.8, 1.8, 1.8};
  for (auto _ : st) benchmark::DoNotOptimize(data::prepare(ch2_path(), o).volume.data.data());
}
BENCHMARK(sample_2d_128)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(sample_3d_64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(prepare_ch2)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);
BENCHMARK_MAIN();
