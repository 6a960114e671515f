// dicyc/ops.hpp -- the ops layer: stateless forward/backward pairs.
#pragma once
#include "dicyc/core.hpp"
#include "dicyc/ops/gemm.hpp"
#include "dicyc/ops/im2col.hpp"
#include "dicyc/ops/conv.hpp"
#include "dicyc/ops/pad.hpp"
#include "dicyc/ops/instance_norm.hpp"
#include "dicyc/ops/activation.hpp"
#include "dicyc/ops/reduce.hpp"
