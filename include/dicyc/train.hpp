// dicyc/train.hpp -- the training layer: Trainer (the loop, exact resume, loss log, stop
// agreement, memory check), its batch sources, the run metadata of checkpoints, and the adapter
// that makes a library model Trainable.
#pragma once

#include "dicyc/train/memory.hpp"
#include "dicyc/train/model_trainable.hpp"
#include "dicyc/train/run_info.hpp"
#include "dicyc/train/source.hpp"
#include "dicyc/train/trainer.hpp"
