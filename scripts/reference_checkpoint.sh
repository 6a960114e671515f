#!/usr/bin/env bash
# Trains the demo's reference MR -> CT model and writes its generator weights to
# models/mrct_nmi_dicyc_2d.safetensors (committed; scripts/demo.sh synthesizes ch2 with it).
#
#   scripts/reference_checkpoint.sh [RUN_DIR] [ITERS] [PLAIN_ITERS]   defaults: build/reference, 20000, 4000
#
# Two stages in one run folder: ITERS iterations of the paper's NMI-DiCyc objective, then
# PLAIN_ITERS more with the undeformed outputs' GAN term (dicyc-train --lambda-gan-plain
# $GAN_PLAIN, default 1; beyond the paper: without it the pseudo-CT keeps the MR's contrast,
# docs/demo.md). PLAIN_ITERS 0 gives the paper's objective alone (the reference before 2026-12-06).
#
# Environment: ALIGN_WEIGHT (dicyc-train --align-weight; default: the preset's 0.9) for the
# experiments on the alignment weight, GAN_PLAIN (default 1), OUT (default
# models/mrct_nmi_dicyc_2d: the committed reference; give another stem for an experiment so the
# reference is not replaced).
#
# What it trains: NMI-DiCyc (dicyc-train --model dicyc), 2-D, with exactly the demo's settings
# (scripts/demo.sh): the mricron ch2 T1 head (A) against the InVesalius head CT (B), unpaired,
# resampled to 1.8 mm, 96x96 crops, ngf 16, 4 residual blocks, ndf 32, CT window -1024..3000 HU,
# seed 1, constant learning rate 2e-4, batch 1, the default augmentation; only the budget differs
# (ITERS instead of the demo's 300). About 0.22 s an iteration on 2 cores of a Xeon (AMX), so
# 20000 iterations take 75-115 minutes (the committed file: 6759 s on 2026-12-05, beside other work). Resumable: run it again after an interruption and it
# continues from RUN_DIR/checkpoint.safetensors (written every 500 iterations), exactly.
#
# The weights file keeps the checkpoint's metadata (model configuration, data preparation with
# the intensity maps, run settings) and only the MR -> CT generator g_ab (with DiCyc's offset
# branches; 1.5 MB): no CT -> MR generator, discriminators, STNs, Adam moments or image pools
# (dicyc-synth --direction ba refuses the file, naming what is missing; the full checkpoint stays
# in RUN_DIR/train). Its tensors and metadata carry CRC-32
# checksums (python -m dicyc weights). dicyc-synth reads it as it reads a checkpoint; the Python
# package's dicyc.load_checkpoint too. The training log (losses.csv, every 10th iteration) and the
# last sample grid are copied beside it as models/mrct_nmi_dicyc_2d.{csv,png}.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-build/reference}
ITERS=${2:-20000}
PLAIN_ITERS=${3:-4000}
GAN_PLAIN=${GAN_PLAIN:-1}
BIN=${BIN:-build/release/examples}
PY=${PYTHON:-python3}
if [[ ! -x "$BIN/dicyc-train" ]]; then
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DDICYC_BUILD_TESTS=OFF -DDICYC_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build build/release -j "$(nproc)" --target dicyc_train dicyc_synth dicyc_raw2nii
fi
scripts/fetch_data.sh --all
scripts/mrct_data.sh "$BIN" "$RUN/data"
ARGS=(-a "$RUN/data/mr" -b "$RUN/data/ct" --window-b -1024,3000 --spacing 1.8 --crop 96 --ngf 16 --blocks 4 --ndf 32
      --threads "$(nproc)" --max-iters "$ITERS" --iters-per-epoch 100000 --epochs 1 --decay-epochs 0
      --checkpoint-every 500 --sample-every 1000 --log-every 100 --seed 1 --model dicyc --out "$RUN/train")
[[ -n "${ALIGN_WEIGHT:-}" ]] && ARGS+=(--align-weight "$ALIGN_WEIGHT")
# The checkpoint's iteration (0 without one), from its metadata.
at() {
  "$PY" -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
print(json.loads(f.read(n))["__metadata__"]["iteration"])' "$1"
}
CK="$RUN/train/checkpoint.safetensors"
if [[ ! -f "$CK" ]]; then
  "$BIN/dicyc-train" "${ARGS[@]}"
elif (( $(at "$CK") < ITERS )); then
  "$BIN/dicyc-train" -a "$RUN/data/mr" -b "$RUN/data/ct" --resume --max-iters "$ITERS" --threads "$(nproc)" --out "$RUN/train"
fi
if (( PLAIN_ITERS > 0 )); then  # stage 2 (resumable as stage 1: the checkpoint carries the weight)
  "$BIN/dicyc-train" -a "$RUN/data/mr" -b "$RUN/data/ct" --resume --max-iters "$((ITERS + PLAIN_ITERS))" \
    --lambda-gan-plain "$GAN_PLAIN" --sample-every 500 --threads "$(nproc)" --out "$RUN/train"
fi
OUT=${OUT:-models/mrct_nmi_dicyc_2d}
PYTHONPATH=python "$PY" -m dicyc weights "$RUN/train/checkpoint.safetensors" "$OUT.safetensors" g_ab \
  --note "reference=${ALIGN_WEIGHT:+ALIGN_WEIGHT=$ALIGN_WEIGHT }GAN_PLAIN=$GAN_PLAIN scripts/reference_checkpoint.sh $ITERS $PLAIN_ITERS: NMI-DiCyc, ch2 T1 (A) vs InVesalius CT (B), the demo's settings; $ITERS iterations of the paper's objective, then $PLAIN_ITERS with --lambda-gan-plain $GAN_PLAIN"
awk -F, 'NR == 1 || $1 % 10 == 0' "$RUN/train/losses.csv" > "$OUT.csv"  # every 10th iteration's losses
last=$(ls "$RUN/train/samples/"*.png 2>/dev/null | sort | tail -1 || true)
[[ -n "$last" ]] && cp "$last" "$OUT.png"
echo "reference: $OUT.safetensors ($(du -h "$OUT.safetensors" | cut -f1)), log $OUT.csv${last:+, sample $OUT.png}"
