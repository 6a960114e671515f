// dicyc/nn.hpp -- modules with named parameters (parameter groups, Conv, ConvTranspose, Linear, ResnetBlock, ResnetGenerator, PatchDiscriminator,
// and the deformation modules OffsetBranch and Stn).
#pragma once

#include "dicyc/nn/conv.hpp"
#include "dicyc/nn/generator.hpp"
#include "dicyc/nn/offset.hpp"
#include "dicyc/nn/parameter.hpp"
#include "dicyc/nn/patch_discriminator.hpp"
#include "dicyc/nn/resnet_block.hpp"
#include "dicyc/nn/stn.hpp"
