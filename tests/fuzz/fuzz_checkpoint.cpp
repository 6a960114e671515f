// libFuzzer target: the checkpoint reader. Arbitrary bytes are parsed as a safetensors file,
// their metadata as a model configuration and the tools' data metadata, and loaded into a tiny
// 2-D CycleGAN (weights, Adam state, schedule, image pools), which must either accept them or
// refuse with a dicyc::Error and stay unchanged.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "dicyc/model.hpp"

namespace {
using Dev = Eigen::DefaultDevice;

dicyc::model::ModelOptions tiny() {
  return dicyc::model::ModelOptions()
      .generator(dicyc::nn::GeneratorOptions().ngf(2).n_blocks(1))
      .ndf(2)
      .n_layers(1)
      .pool_size(2)
      .seed(1);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static dicyc::core::Context<Dev> ctx;
  static auto model = dicyc::model::make_model<2, float, Dev>(ctx, tiny());
  static const std::string path = "/tmp/dicyc_fuzz_ckpt_" + std::to_string(::getpid()) + ".safetensors";
  std::vector<unsigned char> bytes(data, data + size);
  try {
    const auto f = dicyc::io::SafeTensorsFile::parse(bytes, "fuzz");
    for (const auto& n : f.names()) {
      const auto& t = f.info(n);
      if (t.dtype == dicyc::io::DType::F32) (void)f.read_vector<float>(n);
    }
    if (f.has_metadata("config")) {
      try {
        (void)dicyc::model::ModelOptions::from_json(nlohmann::json::parse(f.metadata("config")));
      } catch (const nlohmann::json::exception&) {
      }
    }
  } catch (const dicyc::Error&) {
  }
  {
    std::FILE* fp = std::fopen(path.c_str(), "wb");
    if (!fp) return 0;
    std::fwrite(bytes.data(), 1, bytes.size(), fp);
    std::fclose(fp);
  }
  try {
    model->load(path);
  } catch (const dicyc::Error&) {
  }
  try {
    (void)model->load_weights(path);
  } catch (const dicyc::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
