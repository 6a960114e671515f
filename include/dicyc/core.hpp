// dicyc/core.hpp -- the core layer: config, layout, errors, contexts, buffers, RNG.
#pragma once
#include "dicyc/core/config.hpp"
#include "dicyc/core/types.hpp"
#include "dicyc/core/error.hpp"
#include "dicyc/core/context.hpp"
#include "dicyc/core/buffer.hpp"
#include "dicyc/core/rng.hpp"
