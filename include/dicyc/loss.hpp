// dicyc/loss.hpp -- every loss: least-squares GAN, L1, soft NMI, gradient correlation, MIND.
#pragma once

#include "dicyc/loss/common.hpp"
#include "dicyc/loss/gan.hpp"
#include "dicyc/loss/gcc.hpp"
#include "dicyc/loss/mind.hpp"
#include "dicyc/loss/nmi.hpp"
