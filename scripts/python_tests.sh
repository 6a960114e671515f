#!/usr/bin/env bash
# The Python package's tests (python/tests, pytest) against dicyc's own tools:
#   scripts/python_tests.sh BIN_DIR [VENV_DIR]
# Installs ./python into a virtual environment made with --system-site-packages (so it sees Debian's
# python3-torch, numpy and pytest; Debian's own Python refuses pip installs), without build
# isolation or downloads, then runs pytest with DICYC_BIN=BIN_DIR (the folder holding dicyc-train).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN=$(cd "${1:?usage: python_tests.sh BIN_DIR [VENV_DIR]}" && pwd)
VENV=${2:-$ROOT/build/python-venv}
PY=${DICYC_PYTHON:-/usr/bin/python3}
for mod in torch numpy pytest venv setuptools; do
  "$PY" -c "import $mod" 2>/dev/null || {
    echo "python_tests: $PY lacks the module '$mod'; run scripts/setup.sh --minimal (Debian: python3-torch" \
         "python3-numpy python3-pytest python3-venv python3-setuptools python3-wheel)" >&2
    exit 1
  }
done
if [[ ! -x "$VENV/bin/python" ]]; then "$PY" -m venv --system-site-packages "$VENV"; fi
"$VENV/bin/python" -m pip install --quiet --no-build-isolation --no-deps --no-index --force-reinstall "$ROOT/python" \
  >"$VENV/pip.log" 2>&1 || { cat "$VENV/pip.log" >&2; exit 1; }
cd "$VENV"
# The installed package is what is tested: run pytest from a folder that does not shadow it.
DICYC_BIN="$BIN" exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$ROOT/python/tests" \
  "$ROOT/python/tests"
