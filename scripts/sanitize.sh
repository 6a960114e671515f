#!/usr/bin/env bash
# Builds the I/O, data, checkpoint, train-layer and tool tests with AddressSanitizer + UndefinedBehaviorSanitizer
# and runs them (part of scripts/test.sh). Any report fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${ASAN_BUILD_DIR:-build/asan}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" \
  -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_EXE_LINKER_FLAGS="$SAN" -DDICYC_GEMM=eigen -DDICYC_CUDA=OFF \
  -DDICYC_BUILD_BENCHMARKS=OFF -DDICYC_TOOLS_VARIANTS=2d-float -DCMAKE_DISABLE_FIND_PACKAGE_MPI=ON >/dev/null
# (MPI off: the single-process tools under ASan; Open MPI's own allocations are not ours to check)
TARGETS=(test_io_nifti test_data_volume test_data_dataset test_optim_io test_train make_phantoms checkpoint_diff
         dicyc_train dicyc_synth dicyc_eval dicyc_deform)
cmake --build "$BUILD" -j "$(nproc)" --target "${TARGETS[@]}"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The tool test's long runs (3000 iterations on a small object) check training logic, which the
# main stage covers; here 200 iterations exercise the same code under the sanitizers.
export DICYC_TOOLS_LONG_ITERS=200
ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)" \
  -R '^(test_io_nifti|test_data_volume|test_data_dataset|test_optim_io|test_train|tools_end_to_end)$'
