// The small model configuration shared by the GPU model test's CPU and GPU sides.
#pragma once

#include "dicyc/model/options.hpp"

namespace gpu_api {

inline dicyc::model::ModelOptions small_model_options(const char* name) {
  return dicyc::model::ModelOptions::preset(name)
      .generator(dicyc::nn::GeneratorOptions().ngf(4).n_blocks(1))
      .ndf(4)
      .n_layers(1)
      .control_points(3)
      .offset_hidden(4)
      .stn_hidden(8, 4)
      .seed(1);
}

}  // namespace gpu_api
