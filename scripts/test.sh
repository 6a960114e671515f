#!/usr/bin/env bash
# Builds dicyc and runs every test through ctest. The README's test command; .ci/run calls it.
# The CUDA translation units are compiled with nvcc (sm_90) when a CUDA toolkit is found; the GPU
# tests skip cleanly on a machine without a GPU. Then the sanitizer build (scripts/sanitize.sh)
# and the fuzz targets (scripts/fuzz.sh, 30 s each; DICYC_FUZZ_SECONDS=N runs longer).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --minimal

CUDA=OFF
NVCC="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
if [[ -x "$NVCC" ]]; then CUDA=ON; fi
if [[ "${DICYC_NO_CUDA:-0}" == 1 ]]; then CUDA=OFF; fi

BUILD=${BUILD_DIR:-build/test}
start=$(date +%s)
CUDA_ARGS=()
if [[ $CUDA == ON ]]; then CUDA_ARGS=(-DCMAKE_CUDA_COMPILER="$NVCC" -DCMAKE_CUDA_ARCHITECTURES=90); fi
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDICYC_CUDA=$CUDA "${CUDA_ARGS[@]}"
cmake --build "$BUILD" -j "$(nproc)"
echo "test.sh: build took $(( $(date +%s) - start )) s (CUDA=$CUDA)"
ctest --test-dir "$BUILD" --output-on-failure -j "$(nproc)"
echo "test.sh: main build and tests took $(( $(date +%s) - start )) s"
# The GPU check's bundle (scripts/gpu_check.sh build, from this build tree) and its run on the CPU
# (--dry-run), so the script a lent GPU runs is tested here.
if [[ $CUDA == ON ]]; then
  scripts/gpu_check.sh build --tree "$BUILD" --bundle "$BUILD/gpu"
  scripts/gpu_check.sh run "$BUILD/gpu_check_dry" --dry-run --bundle "$BUILD/gpu"
  echo "test.sh: GPU check bundle and dry run done at $(( $(date +%s) - start )) s"
else
  echo "test.sh: no CUDA toolkit: the GPU check's bundle is not built (scripts/gpu_check.sh build needs nvcc)"
fi
# The I/O, data, checkpoint and tool tests once more under ASan + UBSan, then a bounded fuzz run
# of the NIfTI and checkpoint readers (DICYC_QUICK=1 skips both).
if [[ "${DICYC_QUICK:-0}" != 1 ]]; then
  ASAN_BUILD_DIR="${BUILD}-asan" scripts/sanitize.sh
  echo "test.sh: sanitizer stage done at $(( $(date +%s) - start )) s"
  scripts/fuzz.sh "${DICYC_FUZZ_SECONDS:-30}"
fi
echo "test.sh: total $(( $(date +%s) - start )) s"
