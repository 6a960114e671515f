#!/usr/bin/env bash
# Installs the Debian packages dicyc needs, only those missing. Safe to run again.
#   scripts/setup.sh            everything: build, tests, benchmarks, and the Python reference
#   scripts/setup.sh --minimal  what building and testing need (the Python package's tests included)
set -euo pipefail

BUILD_PKGS=(build-essential cmake ninja-build pkg-config
  libeigen3-dev libboost-test-dev libboost-math-dev libcxxopts-dev libbenchmark-dev
  libdnnl-dev ocl-icd-opencl-dev libnifti2-dev xtensor-dev nlohmann-json3-dev libpng-dev zlib1g-dev clang
  libopenmpi-dev openmpi-bin xz-utils)
# xz-utils: scripts/gpu_check.sh packs its bundle with xz.
# libopenmpi-dev, openmpi-bin: dicyc::mpi (data-parallel training under mpirun) and its ctest label mpi.
# ocl-icd-opencl-dev: Debian's dnnl-config.cmake requires OpenCL (its GPU runtime); it is only a
# Recommends of libdnnl-dev, which --no-install-recommends skips.
# The Python package's tests (scripts/python_tests.sh): Debian's PyTorch, pytest and venv.
TEST_PY_PKGS=(python3 python3-numpy python3-torch python3-pytest python3-venv python3-setuptools python3-wheel
  libopenblas0-pthread)
PY_PKGS=(python3-scipy python3-skimage)
# libopenblas0-pthread: Debian's python3-torch runs its GEMMs (transposed convolutions, mm) on the
# libblas.so.3 alternative, the reference BLAS unless an optimised one is installed; the PyTorch
# anchor of every benchmark must be configured as users have it (torch_reference.py refuses it).

pkgs=("${BUILD_PKGS[@]}" "${TEST_PY_PKGS[@]}")
if [[ "${1:-}" != "--minimal" ]]; then pkgs+=("${PY_PKGS[@]}"); fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then missing+=("$p"); fi
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
