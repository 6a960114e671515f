// dicyc/io.hpp -- safetensors files and training checkpoints. NIfTI (io/nifti.hpp) and PNG
// (io/png.hpp) need the dicyc::io target and are included on their own.
#pragma once

#include "dicyc/io/checkpoint.hpp"
#include "dicyc/io/safetensors.hpp"
