// dicyc/optim.hpp -- Adam (PyTorch's semantics) and the learning-rate schedule with early stop.
#pragma once

#include "dicyc/optim/adam.hpp"
#include "dicyc/optim/schedule.hpp"
