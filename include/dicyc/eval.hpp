// dicyc/eval.hpp -- evaluation: MSE, PSNR, SSIM, global SSIM, paired t-test, hard NMI, Dice.
#pragma once

#include "dicyc/eval/alignment.hpp"
#include "dicyc/eval/metrics.hpp"
#include "dicyc/eval/stats.hpp"
