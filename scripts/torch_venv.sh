#!/usr/bin/env bash
# Makes the benchmarks' primary anchor: a virtual environment with the current PyTorch (2.x) from
# PyPI, CPU use only. Not needed by the build, ctest or CI.
#   scripts/torch_venv.sh [DIR]        default DIR: build/torch-venv (git-ignored)
# Then:  DIR/bin/python benchmarks/compare_models.py --python DIR/bin/python ...
#
# PyPI's Linux x86_64 torch wheel depends on the CUDA runtime wheels (nvidia-*, a few GB on disk);
# its CPU kernels are the same as the CPU-only wheel's (MKL and oneDNN linked into libtorch_cpu),
# so the anchor is what a user who runs `pip install torch` has. download.pytorch.org's CPU-only
# index is used instead when it is reachable and DICYC_TORCH_CPU_INDEX=1.
# The environment gets numpy too (the comparison scripts' fixtures). Safe to run again: an existing
# environment with torch >= 2 is kept. Prints the version, BLAS and oneDNN lines at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-build/torch-venv}
PY=${DICYC_VENV_PYTHON:-/usr/bin/python3}

if [[ -x "$DIR/bin/python" ]] && "$DIR/bin/python" -c 'import sys, torch; sys.exit(0 if int(torch.__version__.split(".")[0]) >= 2 else 1)' 2>/dev/null; then
  echo "torch_venv: $DIR already has torch $("$DIR/bin/python" -c 'import torch; print(torch.__version__)')"
else
  if ! "$PY" -m venv --help >/dev/null 2>&1; then
    echo "torch_venv: $PY has no venv module; on Debian: apt-get install python3-venv" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$DIR")"
  "$PY" -m venv "$DIR"
  "$DIR/bin/python" -m pip install -q --upgrade pip
  args=(torch numpy)
  if [[ "${DICYC_TORCH_CPU_INDEX:-0}" == 1 ]]; then
    args+=(--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple)
  fi
  if ! "$DIR/bin/python" -m pip install "${args[@]}"; then
    echo "torch_venv: pip could not install torch from PyPI into $DIR (see pip's message above:" \
         "no network, no wheel for this Python/platform, or the disk is full; the wheel with its CUDA" \
         "runtime dependencies needs about 5 GB)" >&2
    exit 1
  fi
fi
"$DIR/bin/python" - <<'EOF'
import torch
print("torch_venv: torch", torch.__version__, "| oneDNN", torch.backends.mkldnn.is_available(),
      "| MKL", torch.backends.mkl.is_available())
cfg = torch.__config__.show()
for line in cfg.splitlines():
    if "Build settings" not in line and any(k in line for k in ("Math Kernel", "MKL-DNN", "oneDNN", "OpenMP", "CPU capability")):
        print("  " + line.strip())
EOF
