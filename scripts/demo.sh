#!/usr/bin/env bash
# The README's main job: installs what is missing, builds, fetches the real scans, and runs on the
# CPU, in minutes, a reduced-width demo of the whole pipeline on them:
#  1. MR <-> CT, real and unpaired: the mricron ch2 T1 head (A) against the InVesalius head CT (B),
#     2-D, CycleGAN and NMI-DiCyc trained with dicyc-train for the same budget, ch2 synthesized
#     into a pseudo-CT (in Hounsfield units, on ch2's own grid) with dicyc-synth, and the
#     alignment metrics (NMI, foreground Dice) plus checkerboards from dicyc-eval.
#  2. The held-out simulated-deformation experiment (examples/protocol.cpp, docs/experiment.md) in
#     its quick mode: CycleGAN, NMI-CycleGAN and NMI-DiCyc on ch2 at 1.8 mm (B, under one domain
#     warp) and a PD-like contrast of it (A), tested in both directions on a slab never seen in
#     training and on the real ITK PD slice: MSE/PSNR/SSIM, alpha with its interval, t-tests. The
#     quick mode is a smoke test of the pipeline (30 iterations); the full grid (PROTOCOL_FULL=1:
#     the seven models x 3 seeds and the sweeps, several hours; resumable) is
#     the one whose numbers the README reports.
# Outputs land in demo_out/. DEMO_ITERS (default 300) sets the training budget of every model.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${DEMO_ITERS:-300}
OUT=demo_out
scripts/setup.sh
scripts/fetch_data.sh --all
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DDICYC_BUILD_TESTS=OFF -DDICYC_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build/release -j "$(nproc)" --target protocol dicyc_train dicyc_synth dicyc_eval dicyc_raw2nii
BIN=build/release/examples
scripts/mrct_data.sh "$BIN" "$OUT"

echo; echo "=== 1. MR <-> CT (ch2 T1 vs InVesalius CT, unpaired), $ITERS iterations per model ==="
# --window-b: the CT's HU range -1024..3000 maps to [-1, 1] (percentiles would clip dense bone).
COMMON=(-a "$OUT/mr" -b "$OUT/ct" --window-b -1024,3000 --spacing 1.8 --crop 96 --ngf 16 --blocks 4 --ndf 32 --threads "$(nproc)"
        --max-iters "$ITERS" --iters-per-epoch 100000 --epochs 1 --decay-epochs 0
        --checkpoint-every 100 --sample-every 100 --log-every 50 --seed 1)
for model in cyclegan dicyc; do
  "$BIN/dicyc-train" "${COMMON[@]}" --model "$model" --out "$OUT/mrct_$model"
  "$BIN/dicyc-synth" --checkpoint "$OUT/mrct_$model/checkpoint.safetensors" --in "$OUT/mr" \
    --out "$OUT/mrct_$model/pseudo_ct" --threads "$(nproc)"
done
# The reference model: the same NMI-DiCyc trained for 20000 iterations, then 4000 with the undeformed
# outputs' GAN term (--lambda-gan-plain 1, beyond the paper; scripts/reference_checkpoint.sh made
# models/mrct_nmi_dicyc_2d.safetensors, the A -> B generator only): what the short runs above become.
REF=models/mrct_nmi_dicyc_2d.safetensors
RUNS=(mrct_cyclegan mrct_dicyc)
if [[ -f "$REF" ]]; then
  "$BIN/dicyc-synth" --checkpoint "$REF" --in "$OUT/mr" --out "$OUT/mrct_reference/pseudo_ct" --threads "$(nproc)"
  RUNS+=(mrct_reference)
fi
for run in "${RUNS[@]}"; do
  echo; echo "--- alignment of ch2 and its pseudo-CT, $run ---"
  "$BIN/dicyc-eval" --pred "$OUT/$run/pseudo_ct" --source "$OUT/mr" --out "$OUT/$run/eval"
done
# No paired CT exists for ch2, so SynthRAD's metrics do not apply; the HU content does.
echo; echo "--- HU content of the pseudo-CTs of ch2 beside the real CT (another head) ---"
PYTHONPATH=python python3 - "$OUT" "${RUNS[@]}" <<'PY' || echo "(the HU summary needs python3-numpy)"
import os, sys
import numpy as np
import dicyc
out, runs = sys.argv[1], sys.argv[2:]
rows = [(r, out + "/" + r + "/pseudo_ct/ch2.nii.gz") for r in runs]
rows.append(("real CT (another head)", out + "/ct/" + sorted(os.listdir(out + "/ct"))[0]))
print("%-24s %8s %8s %14s %14s %14s" % ("", "max HU", "p99.9", "bone >700 HU", "soft -100..100", "air <-500"))
for name, path in rows:
    v = dicyc.read_nifti(path).data
    head = v[v > -500]  # shares of the head's voxels; air as a share of the whole volume
    print("%-24s %8.0f %8.0f %13.1f%% %13.1f%% %13.1f%%" % (name, v.max(), np.percentile(v, 99.9),
          100 * (head > 700).mean(), 100 * ((head >= -100) & (head <= 100)).mean(), 100 * (v < -500).mean()))
PY

if [[ "${PROTOCOL_FULL:-0}" == 1 ]]; then
  echo; echo "=== 2. Held-out simulated-deformation experiment, the full grid (resumable; see docs/experiment.md) ==="
  "$BIN/protocol" --part all --out "$OUT/protocol" --threads "$(nproc)" "$@"
else
  echo; echo "=== 2. Held-out simulated-deformation experiment, quick mode (a smoke test) ==="
  "$BIN/protocol" --quick --out "$OUT/protocol" --threads "$(nproc)" "$@"
fi
echo
echo "demo: outputs in $OUT/: mrct_<model>/{report.html, samples/, pseudo_ct/ch2.nii.gz, eval/checker_ch2.png}, mrct_reference/{pseudo_ct, eval},"
echo "      protocol/{results.csv, summary.md, montage_<model>_<ab|ba>.png, alpha_vs_crop.svg, alpha_vs_iteration.svg, runs/}"
