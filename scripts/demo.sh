#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, and runs the demo.
# (Until the trainer lands, the demo runs a 2-D and a 3-D convolution stack forward and backward
# on the CPU thread pool and reports its speed.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DDICYC_BUILD_TESTS=OFF
cmake --build build/release -j "$(nproc)" --target conv_stack_demo
./build/release/examples/conv_stack_demo "$@"
