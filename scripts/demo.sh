#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, fetches the real scans, and runs a demo
# training and synthesis on them: the simulated-deformation protocol (CycleGAN vs NMI-DiCyc on the
# ITK PD/T1 slices and ch2 axial slices; examples/protocol.cpp) at a short budget. Arguments go to
# the protocol program (for example --iters 1500 --tests 12 for the README's figures).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch_data.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DDICYC_BUILD_TESTS=OFF -DDICYC_BUILD_BENCHMARKS=OFF
cmake --build build/release -j "$(nproc)" --target protocol
./build/release/examples/protocol --iters 300 --tests 6 --out demo_out "$@"
