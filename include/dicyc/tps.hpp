// dicyc/tps.hpp -- deformation: TPS grids, the grid sampler, the deformation simulator.
#pragma once

#include "dicyc/tps/deform.hpp"
#include "dicyc/tps/grid_sampler.hpp"
#include "dicyc/tps/tps.hpp"
