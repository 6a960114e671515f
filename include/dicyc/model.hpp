// dicyc/model.hpp -- the trainable models: CycleGAN and its alignment-loss variants, the image pool.
#pragma once

#include "dicyc/model/alignment.hpp"
#include "dicyc/model/cyclegan.hpp"
#include "dicyc/model/image_pool.hpp"
