#!/usr/bin/env bash
# Every comparison against PyTorch, once per anchor, into OUT/<anchor>_<case>.txt (the README's
# speed tables come from these files). Not part of CI: it takes about 45 minutes on 2 cores.
#   benchmarks/compare_all.sh [BUILD] [OUT]      default BUILD build/test, OUT runs/bench
# Anchors (each checked and named by benchmarks/anchor.py):
#   pt2:   the current PyTorch from PyPI, build/torch-venv (scripts/torch_venv.sh) -- primary
#   pt113: Debian's python3-torch 1.13 with OpenBLAS (/usr/bin/python3)
# DICYC_ANCHORS="pt2" limits the anchors; DICYC_CASES="models2d models3d" the cases
# (models2d models3d models3d32 ops extra pipeline). Run it on a quiet machine: both sides use
# 2 threads, and anything else running skews the ratios.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/test}
OUT=${2:-runs/bench}
mkdir -p "$OUT"
declare -A PY=([pt2]=build/torch-venv/bin/python [pt113]=/usr/bin/python3)
ANCHORS=${DICYC_ANCHORS:-pt2 pt113}
CASES=${DICYC_CASES:-models2d models3d ops extra pipeline models3d32}
for b in bench_model bench_model3d bench_ops bench_loss bench_tps bench_data; do
  [[ -x "$BUILD/benchmarks/$b" ]] || { echo "compare_all: $BUILD/benchmarks/$b missing: build the benchmarks first" >&2; exit 1; }
done
for c in $CASES; do
  for an in $ANCHORS; do
    py=${PY[$an]}
    [[ -x $py ]] || { echo "compare_all: no interpreter for $an ($py); for pt2 run scripts/torch_venv.sh" >&2; continue; }
    case $c in
      models2d) args=(benchmarks/compare_models.py --build "$BUILD" --repeats 3) ;;
      models3d) args=(benchmarks/compare_models.py --build "$BUILD" --dim 3 --size 64 --ngf 16 --blocks 3 --ndf 32 --repeats 2) ;;
      models3d32) args=(benchmarks/compare_models.py --build "$BUILD" --dim 3 --size 64 --ngf 32 --blocks 3 --ndf 32 --repeats 1 --runs3 2) ;;
      ops) args=(benchmarks/compare_torch.py --build "$BUILD" --repeats 3) ;;
      extra) args=(benchmarks/compare_torch_extra.py --build "$BUILD" --repeats 3) ;;
      pipeline) args=(benchmarks/compare_pipeline.py --build "$BUILD" --slices 16 --repeats 3) ;;
      *) echo "compare_all: unknown case $c" >&2; continue ;;
    esac
    echo "compare_all: $an $c ($(date +%H:%M:%S))"
    start=$(date +%s)
    "$py" "${args[@]}" > "$OUT/${an}_$c.txt" 2> "$OUT/${an}_$c.log"
    rc=$?
    echo "compare_all: $an $c exit $rc after $(( $(date +%s) - start )) s"
  done
done
