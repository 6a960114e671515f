// dicyc/model.hpp -- the trainable models: CycleGAN and its alignment-loss variants, DiCyc and its
// variants (ModelOptions::preset names all seven), make_model(), the image pool.
#pragma once

#include "dicyc/model/alignment.hpp"
#include "dicyc/model/base.hpp"
#include "dicyc/model/cyclegan.hpp"
#include "dicyc/model/dicyc.hpp"
#include "dicyc/model/image_pool.hpp"
#include "dicyc/model/options.hpp"
#include "dicyc/train/checkpoint.hpp"  // ModelBase::save/load/load_weights
