// dicyc/io.hpp -- safetensors files and training checkpoints.
#pragma once

#include "dicyc/io/checkpoint.hpp"
#include "dicyc/io/safetensors.hpp"
