#!/usr/bin/env bash
# End-to-end tests of the command-line tools on synthetic phantoms (tests/tools/make_phantoms.cpp):
# bad flags exit 2 with a message; training, resume, Ctrl-C, SIGKILL at random moments, a
# non-finite loss; 2-D/3-D/half; synthesis on the input's grid; evaluation; deformation.
#   test_tools.sh BIN_DIR PHANTOM_TOOL WORK_DIR
set -uo pipefail
BIN=$1; MAKE=$2; WORK=$3
rm -rf "$WORK"; mkdir -p "$WORK"
"$MAKE" "$WORK/ph" >/dev/null || { echo "FAIL: make_phantoms"; exit 1; }
fails=0
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
T="$BIN/dicyc-train"; S="$BIN/dicyc-synth"; E="$BIN/dicyc-eval"; D="$BIN/dicyc-deform"
A="$WORK/ph/a"; B="$WORK/ph/b"
TINY=(--ngf 4 --blocks 1 --ndf 8 --d-layers 2 --crop 16 --threads 1 --log-every 1)

# ---------------------------------------------------------------- bad flags: exit 2
check "train: unknown flag" 2 "itres" -- "$T" -a "$A" -b "$B" --itres 5
check "train: negative crop" 2 "--crop must be a multiple of 4" -- "$T" -a "$A" -b "$B" --crop -8
check "train: odd crop" 2 "--crop must be a multiple of 4" -- "$T" -a "$A" -b "$B" --crop 30
check "train: missing data folder" 2 "does not exist" -- "$T" -a "$WORK/nope" -b "$B"
check "train: no domain B" 2 "--domain-b (domain B data) is required" -- "$T" -a "$A"
check "train: model typo" 2 "unknown model 'cyclegn'" -- "$T" -a "$A" -b "$B" --model cyclegn
check "train: bad device" 2 "--device must be cpu, gpu or gpu:<index>" -- "$T" -a "$A" -b "$B" --device gpu:x
check "synth: bad device" 2 "--device must be cpu, gpu or gpu:<index>" -- "$S" --checkpoint "$A/subj0.nii.gz" --in "$A" --device tpu
check "train: bad dim" 2 "--dim must be 2 or 3" -- "$T" -a "$A" -b "$B" --dim 4
check "train: not a number" 2 "" -- "$T" -a "$A" -b "$B" --lr fast
check "train: stray argument" 2 "unexpected argument" -- "$T" -a "$A" -b "$B" extra
check "train: bad spacing" 2 "--spacing" -- "$T" -a "$A" -b "$B" --spacing 1,2
check "train: resume without checkpoint" 2 "no checkpoint" -- "$T" -a "$A" -b "$B" --out "$WORK/empty" --resume
check "synth: missing checkpoint" 2 "does not exist" -- "$S" --checkpoint "$WORK/none.safetensors" --in "$A"
check "synth: bad direction" 2 "--direction must be ab or ba" -- "$S" --checkpoint "$A/subj0.nii.gz" --in "$A" --direction up
check "eval: neither truth nor source" 2 "neither" -- "$E" --pred "$A"
check "deform: bad dim" 2 "--dim must be 2 or 3" -- "$D" --in "$B" --dim 5
check "help exits 0" 0 "Usage" -- "$T" --help

# ---------------------------------------------------------------- corrupt input: exit 1, named
check "train: corrupt volume" 1 "corrupt.nii.gz" -- "$T" -a "$WORK/ph/bad" -b "$B" "${TINY[@]}" --max-iters 1 --out "$WORK/bad"
check "train: 4-D without --volume" 1 "name one" -- "$T" -a "$WORK/ph/four_d.nii" -b "$B" "${TINY[@]}" --max-iters 1 --out "$WORK/4d"
check "train: 4-D with --volume" 0 "done at iteration 1" -- "$T" -a "$WORK/ph/four_d.nii" -b "$B" --volume 1 "${TINY[@]}" --max-iters 1 --out "$WORK/4d"

# ---------------------------------------------------------------- 2-D training, resume, report
R="$WORK/run2d"
check "train 2-D dicyc" 0 "done at iteration 6" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --spacing 1.5 --max-iters 6 --checkpoint-every 3 --sample-every 3 --out "$R"
for f in checkpoint.safetensors losses.csv report.html samples/iter_0000003.png samples/iter_0000006.png; do
  [[ -s "$R/$f" ]] && echo "ok   run2d/$f" || { echo "FAIL missing $R/$f"; fails=$((fails+1)); }
done
[[ $(wc -l < "$R/losses.csv") -eq 7 ]] && echo "ok   losses.csv has 6 rows" || { echo "FAIL losses.csv rows"; fails=$((fails+1)); }
grep -q "data:image/png;base64," "$R/report.html" && grep -q "<svg" "$R/report.html" && echo "ok   report is self-contained" || { echo "FAIL report"; fails=$((fails+1)); }
check "resume 2-D" 0 "done at iteration 9" -- "$T" -a "$A" -b "$B" --out "$R" --resume --max-iters 9 --threads 1
[[ $(cut -d, -f1 "$R/losses.csv" | tail -n +2 | tr '\n' ' ') == "1 2 3 4 5 6 7 8 9 " ]] && echo "ok   resumed log continues 1..9" || { echo "FAIL resumed log: $(cut -d, -f1 "$R/losses.csv" | tr '\n' ' ')"; fails=$((fails+1)); }

# --resume with other loss weights: they replace the checkpoint's (a note each; the new checkpoint
# carries them); a flag that would change the networks or the data preparation is refused.
U="$WORK/tune"; cp -r "$R" "$U"
check "resume: --align-weight and --lambda-cyc replace the checkpoint's" 0 "--align-weight 0.25 replaces the checkpoint's 0.9" -- \
  "$T" -a "$A" -b "$B" --out "$U" --resume --max-iters 10 --threads 1 --align-weight 0.25 --lambda-cyc 4 --spacing 1.5 --ngf 4
grep -aqF 'align_weight\":0.25' "$U/checkpoint.safetensors" && grep -aqF 'lambda_cyc\":4.0' "$U/checkpoint.safetensors" \
  && echo "ok   the resumed checkpoint carries the new weights" || { echo "FAIL the resumed checkpoint's configuration"; fails=$((fails+1)); }
# --lambda-gan-plain (beyond the paper): a DiCyc run takes it on resume, logs its terms, and the
# checkpoint carries it; a CycleGAN refuses it, as does a negative weight.
V="$WORK/ganplain"; cp -r "$R" "$V"
check "resume: --lambda-gan-plain adds the undeformed outputs' GAN terms" 0 "--lambda-gan-plain 0.5 replaces the checkpoint's 0" -- \
  "$T" -a "$A" -b "$B" --out "$V" --resume --max-iters 11 --threads 1 --lambda-gan-plain 0.5
grep -aqF 'lambda_gan_plain\":0.5' "$V/checkpoint.safetensors" && echo "ok   the checkpoint carries lambda_gan_plain" || { echo "FAIL lambda_gan_plain not in the checkpoint"; fails=$((fails+1)); }
gp=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "gan_plain_ab") c = i; next } { printf "%s:%s ", $1, ($c != 0) }' "$V/losses.csv")
[[ "$gp" == "1:0 2:0 3:0 4:0 5:0 6:0 7:0 8:0 9:0 10:1 11:1 " ]] && echo "ok   gan_plain_ab logged from the resumed iterations on" || { echo "FAIL gan_plain_ab column: $gp"; fails=$((fails+1)); }
check "train: --lambda-gan-plain on a CycleGAN" 2 "needs a DiCyc model" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --model cyclegan --lambda-gan-plain 1 --max-iters 1 --out "$WORK/gp_cg"
check "train: negative --lambda-gan-plain" 2 "the loss weights >= 0" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --lambda-gan-plain -1 --max-iters 1 --out "$WORK/gp_neg"
check "resume: --ngf differs" 2 "the checkpoint's networks have ngf 4, and --ngf says 8" -- "$T" -a "$A" -b "$B" --out "$U" --resume --max-iters 11 --ngf 8
check "resume: --spacing differs" 2 "--spacing differs from the checkpoint's data preparation" -- "$T" -a "$A" -b "$B" --out "$U" --resume --max-iters 11 --spacing 2
check "resume: --model differs" 2 "networks have model nmi-dicyc, and --model says cyclegan" -- "$T" -a "$A" -b "$B" --out "$U" --resume --max-iters 11 --model cyclegan

# ---------------------------------------------------------------- --device gpu
# Tools built without CUDA refuse it as a usage error; built with CUDA (libdicyc-tools-gpu) but
# without a GPU, they fail with a clear message; with a GPU, a few iterations and a synthesis run
# there.
if ldd "$T" | grep "dicyc-tools-gpu" >/dev/null; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep "GPU" >/dev/null; then
    check "train on the GPU" 0 "on cuda" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --model dicyc --control-points 3 --device gpu --max-iters 3 --checkpoint-every 0 --sample-every 3 --out "$WORK/gpu"
    check "synth on the GPU" 0 "subj2.nii.gz" -- "$S" --checkpoint "$WORK/gpu/checkpoint.safetensors" --in "$A" --out "$WORK/syngpu" --device gpu
  else
    check "train: gpu without a GPU" 1 "no CUDA GPU found" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --device gpu --max-iters 1 --out "$WORK/nogpu"
  fi
else
  check "train: gpu without CUDA" 2 "built without CUDA" -- "$T" -a "$A" -b "$B" --device gpu
fi

# ---------------------------------------------------------------- synthesis on the input's grid, evaluation
check "synth 2-D" 0 "subj2.nii.gz" -- "$S" --checkpoint "$R/checkpoint.safetensors" --in "$A" --out "$WORK/syn2d" --threads 1
check "eval alignment (same grid as the source)" 0 "mean +- sd" -- "$E" --pred "$WORK/syn2d" --source "$A" --out "$WORK/ev_align"
check "synth B->A" 0 "B -> A" -- "$S" --checkpoint "$R/checkpoint.safetensors" --in "$B/subj1.nii" --out "$WORK/syn2d_ba" --direction ba --threads 1
check "eval vs truth with t-test" 0 "Paired t-tests" -- "$E" --pred "$WORK/syn2d" --truth "$A" --pred2 "$A" --names dicyc,identity --out "$WORK/ev_truth"
[[ -s "$WORK/ev_truth/summary.csv" && -s "$WORK/ev_truth/summary.md" && -s "$WORK/ev_truth/checker_subj0.png" ]] && echo "ok   eval outputs" || { echo "FAIL eval outputs"; fails=$((fails+1)); }
mkdir -p "$WORK/mismatch"; cp "$B/subj0.nii" "$WORK/mismatch/subj0.nii"
check "eval grid mismatch" 1 "must share a grid" -- "$E" --pred "$WORK/mismatch" --truth "$A" --out "$WORK/ev_bad"
check "eval --ct (identical CTs: MAE 0)" 0 "MAE 0.0" -- "$E" --pred "$B" --truth "$B" --ct --out "$WORK/ev_ct"
[[ $(tail -n +2 "$WORK/ev_ct/ct_metrics.csv" | cut -d, -f3 | sort -u) == "0" ]] && echo "ok   ct_metrics.csv" || { echo "FAIL ct_metrics.csv"; fails=$((fails+1)); }
check "eval --ct-range typo" 2 "--ct-range" -- "$E" --pred "$B" --truth "$B" --ct --ct-range 2024x --out "$WORK/ev_ct"
check "eval --ct without truth" 2 "--ct needs --truth" -- "$E" --pred "$B" --source "$B" --ct --out "$WORK/ev_ct"

# ---------------------------------------------------------------- damaged checkpoints: refused, named (exit 1)
cp "$R/checkpoint.safetensors" "$WORK/flip.safetensors"
hl=$(od -An -t u8 -N8 "$WORK/flip.safetensors" | tr -d ' ')
printf '\xff\xff\xff\xff' | dd of="$WORK/flip.safetensors" bs=1 seek=$((8 + hl + 16)) conv=notrunc 2>/dev/null
check "synth: flipped bytes in a tensor" 1 "fails its checksum" -- "$S" --checkpoint "$WORK/flip.safetensors" --in "$A" --out "$WORK/syn_flip" --threads 1
check "resume: flipped bytes in a tensor" 1 "fails its checksum" -- bash -c "mkdir -p '$WORK/flipres' && cp '$WORK/flip.safetensors' '$WORK/flipres/checkpoint.safetensors' && '$T' -a '$A' -b '$B' --out '$WORK/flipres' --resume --max-iters 20 --threads 1"
cp "$R/checkpoint.safetensors" "$WORK/meta.safetensors"
perl -0777 -pi -e 's/"scalar":"F32"/"scalar":"Q99"/' "$WORK/meta.safetensors"
check "synth: changed metadata" 1 "metadata checksum does not match" -- "$S" --checkpoint "$WORK/meta.safetensors" --in "$A" --out "$WORK/syn_meta" --threads 1
head -c $(( $(stat -c %s "$R/checkpoint.safetensors") - 100 )) "$R/checkpoint.safetensors" > "$WORK/trunc.safetensors"
check "synth: truncated checkpoint" 1 "truncated" -- "$S" --checkpoint "$WORK/trunc.safetensors" --in "$A" --out "$WORK/syn_trunc" --threads 1

# ---------------------------------------------------------------- a fixed intensity window for CT (--window-b)
check "train --window-b" 0 "fixed intensity window [-1024, 3000]" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --model cyclegan --window-b -1024,3000 --max-iters 2 --out "$WORK/win"
head -c 20000 "$WORK/win/checkpoint.safetensors" | grep -aq '"user.intensity_b":"percentile -1024 3000"' && head -c 20000 "$WORK/win/checkpoint.safetensors" | grep -aq '"user.window_b":"-1024 3000"' \
  && echo "ok   the window is the checkpoint's B map" || { echo "FAIL window metadata"; fails=$((fails+1)); }
check "synth with a window (B -> A, B prepared with it)" 0 "B -> A" -- "$S" --checkpoint "$WORK/win/checkpoint.safetensors" --in "$B/subj1.nii" --out "$WORK/syn_win" --direction ba --threads 1
check "train: bad window" 2 "--window-b: expected finite lo < hi" -- "$T" -a "$A" -b "$B" --window-b 3000,-1024
check "train: window with zscore" 2 "exclude each other" -- "$T" -a "$A" -b "$B" --window-a 0,100 --zscore --no-tanh

# ---------------------------------------------------------------- Ctrl-C saves; SIGKILL never corrupts
"$T" -a "$A" -b "$B" "${TINY[@]}" --max-iters 100000 --checkpoint-every 1000 --sample-every 0 --out "$WORK/int" >/dev/null 2>&1 &
pid=$!; sleep 3; kill -INT $pid; wait $pid; rc=$?
if [[ $rc -eq 130 && -s "$WORK/int/checkpoint.safetensors" ]]; then echo "ok   Ctrl-C saved (exit 130)"; else echo "FAIL Ctrl-C: exit $rc"; fails=$((fails+1)); fi
K="$WORK/kill"
"$T" -a "$A" -b "$B" "${TINY[@]}" --max-iters 2 --out "$K" >/dev/null 2>&1
for round in 1 2 3 4; do
  "$T" -a "$A" -b "$B" --out "$K" --resume --threads 1 --max-iters 100000 --checkpoint-every 1 --sample-every 1 >/dev/null 2>&1 &
  pid=$!; sleep "0.$((RANDOM % 9 + 1))$((round % 2))"; sleep 1; kill -KILL $pid; wait $pid 2>/dev/null
done
check "resume after SIGKILLs" 0 "done at iteration" -- bash -c "it=\$(tail -1 '$K/losses.csv' | cut -d, -f1); '$T' -a '$A' -b '$B' --out '$K' --resume --threads 1 --max-iters \$((it + 3)) --sample-every 0"
ls "$K" "$K/samples" | grep "\.tmp\." >/dev/null && { echo "FAIL a stale temporary file remains"; fails=$((fails+1)); }

# ---------------------------------------------------------------- non-finite loss: exit 3, checkpoint kept
N="$WORK/nan"
check "non-finite loss" 3 "non-finite loss term 'gan_ab' at iteration 4" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --model cyclegan --max-iters 10 --checkpoint-every 2 --debug-nan-at 5 --out "$N"
check "checkpoint before the NaN resumes" 0 "done at iteration 6" -- "$T" -a "$A" -b "$B" --out "$N" --resume --max-iters 6 --threads 1
check "z-score with an unbounded output" 0 "done at iteration 1" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --zscore --no-tanh --max-iters 1 --out "$WORK/z"
check "z-score needs --no-tanh" 2 "add --no-tanh" -- "$T" -a "$A" -b "$B" --zscore

# ---------------------------------------------------------------- 3-D, half, the other models
if [[ "${DICYC_TOOLS_VARIANTS:-all}" == "2d-float" ]]; then
  check "3-D refused in a 2-D float build" 2 "2-D float models only" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --dim 3 --max-iters 1 --out "$WORK/run3d"
else
  check "train 3-D" 0 "done at iteration 2" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --dim 3 --crop-z 16 --max-iters 2 --out "$WORK/run3d"
  check "synth 3-D tiles" 0 "subj0.nii" -- "$S" --checkpoint "$WORK/run3d/checkpoint.safetensors" --in "$B/subj0.nii" --direction ba --tile 16 --out "$WORK/syn3d" --threads 1
  check "eval 3-D output on the input grid" 0 "mean +- sd" -- "$E" --pred "$WORK/syn3d" --source "$B/subj0.nii" --out "$WORK/ev3d"
  check "train half" 0 "done at iteration 2" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --precision half --max-iters 2 --out "$WORK/half"
  check "synth half" 0 "subj0" -- "$S" --checkpoint "$WORK/half/checkpoint.safetensors" --in "$A/subj0.nii.gz" --out "$WORK/synhalf" --threads 1
fi
check "train mind-cyclegan" 0 "mind-cyclegan" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --model mind-cyclegan --max-iters 1 --out "$WORK/mind"
check "train gcc-dicyc sequential" 0 "gcc-dicyc" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --model gcc-dicyc --em sequential --max-iters 1 --out "$WORK/gcc"

# ---------------------------------------------------------------- sample grids: the deformed column
png_width() { local b; b=($(od -An -tu1 -j16 -N4 "$1")); echo $(( (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3] )); }
# DiCyc: source | undeformed | deformed | cycle | checkerboard in both rows (5 panels of 16 + 2);
# CycleGAN has no deformed output, so no such column (4 panels).
[[ $(png_width "$R/samples/iter_0000003.png") -eq 90 ]] && echo "ok   dicyc sample grid has the deformed column" || { echo "FAIL dicyc grid width $(png_width "$R/samples/iter_0000003.png")"; fails=$((fails+1)); }
check "cyclegan samples" 0 "done at iteration 1" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --model cyclegan --max-iters 1 --sample-every 1 --out "$WORK/cg_grid"
[[ $(png_width "$WORK/cg_grid/samples/iter_0000001.png") -eq 72 ]] && echo "ok   cyclegan sample grid has no deformed column" || { echo "FAIL cyclegan grid width"; fails=$((fails+1)); }

# ---------------------------------------------------------------- crops that hold anatomy
# A small object in a large background: most 32 x 32 crops are background. Long runs of the
# alignment-loss models end normally; with --min-foreground 0 the all-background crops reach the
# losses, which count them instead of stopping the run.
SP="$WORK/ph/sparse"
SPARSE=(--ngf 4 --blocks 1 --ndf 8 --d-layers 2 --crop 32 --threads 1 --control-points 3 --checkpoint-every 0 --sample-every 0 --log-every 1000)
LONG=${DICYC_TOOLS_LONG_ITERS:-3000}  # the sanitizer stage shortens these
check "$LONG iterations nmi-dicyc on a small object" 0 "done at iteration $LONG" -- "$T" -a "$SP" -b "$SP" "${SPARSE[@]}" --model dicyc --seed 3 --max-iters "$LONG" --out "$WORK/sparse_nmi"
check "$LONG iterations mind-dicyc on a small object" 0 "done at iteration $LONG" -- "$T" -a "$SP" -b "$SP" "${SPARSE[@]}" --model mind-dicyc --seed 1 --max-iters "$LONG" --out "$WORK/sparse_mind"
check "background crops are counted, not fatal" 0 "had a constant image" -- "$T" -a "$SP" -b "$SP" "${SPARSE[@]}" --model nmi-cyclegan --min-foreground 0 --max-iters 40 --out "$WORK/sparse_any"
check "an impossible foreground minimum names the volume" 2 "small_object.nii.gz" -- "$T" -a "$SP" -b "$SP" "${SPARSE[@]}" --model cyclegan --min-foreground 0.9 --max-iters 5 --out "$WORK/sparse_bad"

# ---------------------------------------------------------------- memory checked before it is spent
t0=$SECONDS
check "crop 1000: refused for memory" 2 "more memory" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --crop 1000 --max-memory 2 --max-iters 1 --out "$WORK/mem"
(( SECONDS - t0 <= 30 )) && echo "ok   the memory refusal took $((SECONDS - t0)) s" || { echo "FAIL the memory refusal took $((SECONDS - t0)) s"; fails=$((fails+1)); }
check "crop far larger than every volume" 2 "more than twice the largest volume" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --crop 256 --max-memory off --max-iters 1 --out "$WORK/mem"
check "bad --max-memory" 2 "--max-memory must be" -- "$T" -a "$A" -b "$B" --max-memory lots
# Just under and just over a limit set from the estimate the tool prints.
est=$("$T" -a "$A" -b "$B" "${TINY[@]}" --crop 32 --max-iters 1 --out "$WORK/mem_est" 2>&1 | grep "^memory:")
need=$(sed -E 's/.*needs about ([0-9.]+) MiB on top of the ([0-9.]+) MiB in use.*/\1/' <<<"$est")
used=$(sed -E 's/.*needs about ([0-9.]+) MiB on top of the ([0-9.]+) MiB in use.*/\2/' <<<"$est")
if [[ $need =~ ^[0-9.]+$ && $used =~ ^[0-9.]+$ ]]; then
  over=$(awk -v n="$need" -v u="$used" 'BEGIN { printf "%.6f", (u + 1.15 * n + 8) / 1024 }')
  under=$(awk -v n="$need" -v u="$used" 'BEGIN { printf "%.6f", (u + 0.5 * n) / 1024 }')
  check "a limit just above the estimate runs" 0 "done at iteration 1" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --crop 32 --max-iters 1 --max-memory "$over" --out "$WORK/mem_ok"
  check "a limit below the estimate is refused" 2 "more memory" -- "$T" -a "$A" -b "$B" "${TINY[@]}" --crop 32 --max-iters 1 --max-memory "$under" --out "$WORK/mem_no"
else
  echo "FAIL no memory estimate printed: $est"; fails=$((fails+1))
fi
# The committed reference model (models/, the demo's MR -> CT NMI-DiCyc; generators only, with
# checksums; its A -> B generator only): it verifies and synthesizes an MR phantom into HU, and
# refuses B -> A rather than use an untrained generator.
REF="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/models/mrct_nmi_dicyc_2d.safetensors"
check "synth: the reference model in models/" 0 "subj0.nii.gz" -- "$S" --checkpoint "$REF" --in "$A" --out "$WORK/syn_ref" --threads 1
[[ -s "$WORK/syn_ref/subj0.nii.gz" ]] && echo "ok   reference model output" || { echo "FAIL reference model output"; fails=$((fails+1)); }
check "synth: the reference holds A -> B only" 1 "no weights of the B -> A generator" -- "$S" --checkpoint "$REF" --in "$B" --out "$WORK/syn_ref_ba" --direction ba --threads 1
check "synth: refused for memory" 2 "more memory" -- "$S" --checkpoint "$R/checkpoint.safetensors" --in "$A" --out "$WORK/syn_mem" --max-memory 0.001

# ---------------------------------------------------------------- exact resume through the tools
# Uninterrupted against: stopped at N/2 and resumed with --max-iters N; Ctrl-C after the first
# checkpoint and SIGKILL at a random moment after it, each resumed with no run flags (the thread
# count aside). losses.csv (all but the timing column) and every checkpoint tensor must match.
CD="$(dirname "$MAKE")/checkpoint_diff"
interrupt_run() {  # interrupt_run SIGNAL OUT N RUN_ARGS...: start, signal after the first checkpoint, resume
  local sig=$1 out=$2 n=$3; shift 3
  "$T" "$@" --max-iters "$n" --out "$out" >/dev/null 2>&1 &
  local pid=$! waited=0
  while [[ ! -s "$out/checkpoint.safetensors" ]] && kill -0 $pid 2>/dev/null && (( waited < 600 )); do sleep 0.05; waited=$((waited + 1)); done
  sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
  kill -"$sig" $pid 2>/dev/null; wait $pid 2>/dev/null
  "$T" -a "$A" -b "$B" --out "$out" --resume --threads 1 >/dev/null 2>&1 || echo "FAIL resume of $out exited $?"
  local last; last=$(tail -1 "$out/losses.csv" | cut -d, -f1)
  [[ $last == "$n" ]] || { echo "FAIL $out: the resumed run ended at iteration $last, not $n"; fails=$((fails+1)); }
}
for conf in "cyclegan 2 40" "dicyc 2 40" "cyclegan 3 8" "dicyc 3 8"; do
  read -r model dim n <<<"$conf"
  [[ "${DICYC_TOOLS_VARIANTS:-all}" == "2d-float" && $dim == 3 ]] && continue
  RUN=(-a "$A" -b "$B" "${TINY[@]}" --model "$model" --dim "$dim" --control-points 3 --checkpoint-every 2 --sample-every 5)
  [[ $dim == 3 ]] && RUN+=(--crop-z 16)
  P="$WORK/resume_${model}_${dim}d"
  "$T" "${RUN[@]}" --max-iters "$n" --out "$P.full" >/dev/null 2>&1 || { echo "FAIL uninterrupted $model $dim-D"; fails=$((fails+1)); }
  "$T" "${RUN[@]}" --max-iters $((n / 2)) --out "$P.clean" >/dev/null 2>&1
  "$T" -a "$A" -b "$B" --out "$P.clean" --resume --threads 1 --max-iters "$n" >/dev/null 2>&1
  same_run "resume $model $dim-D after a clean stop = uninterrupted" "$P.full" "$P.clean"
  interrupt_run INT "$P.int" "$n" "${RUN[@]}"
  same_run "resume $model $dim-D after Ctrl-C = uninterrupted" "$P.full" "$P.int"
  interrupt_run KILL "$P.kill" "$n" "${RUN[@]}"
  same_run "resume $model $dim-D after SIGKILL = uninterrupted" "$P.full" "$P.kill"
done
# --precision bf16 (float weights, bf16 convolutions on oneDNN): the checkpoint keeps F32 weights
# and says bf16, a stopped run resumed in bf16 (no flag) equals the uninterrupted one, and the
# losses differ from float's (the bf16 passes are reached: ngf/ndf 16, the rule's smallest width).
# Without oneDNN or AVX-512 it is refused with a message.
BF=(-a "$A" -b "$B" --ngf 16 --blocks 1 --ndf 16 --d-layers 2 --crop 16 --threads 1 --control-points 3 --checkpoint-every 2 --sample-every 0)
if "$T" "${BF[@]}" --precision bf16 --max-iters 6 --out "$WORK/bf16.full" > "$WORK/bf16.log" 2>&1; then
  grep -q "bf16 (float weights" "$WORK/bf16.log" && grep -aqF '"scalar":"F32"' "$WORK/bf16.full/checkpoint.safetensors" &&
    grep -aqF 'precision\":\"bf16' "$WORK/bf16.full/checkpoint.safetensors" &&
    echo "ok   bf16: float weights in the checkpoint, precision bf16 stored" || { echo "FAIL bf16 checkpoint"; tail -3 "$WORK/bf16.log"; fails=$((fails+1)); }
  "$T" "${BF[@]}" --precision bf16 --max-iters 3 --out "$WORK/bf16.clean" >/dev/null 2>&1
  check "bf16: resume keeps bf16" 0 "bf16 (float weights" -- "$T" -a "$A" -b "$B" --out "$WORK/bf16.clean" --resume --threads 1 --max-iters 6
  same_run "bf16: resumed after a stop = uninterrupted" "$WORK/bf16.full" "$WORK/bf16.clean"
  "$T" "${BF[@]}" --max-iters 6 --out "$WORK/f32.full" >/dev/null 2>&1
  cmp -s <(cut -d, -f2-10 "$WORK/f32.full/losses.csv") <(cut -d, -f2-10 "$WORK/bf16.full/losses.csv") &&
    { echo "FAIL bf16 losses equal float's: the bf16 convolutions were not reached"; fails=$((fails+1)); } || echo "ok   bf16 losses differ from float's"
else
  grep -q "no bf16 convolutions" "$WORK/bf16.log" && echo "ok   bf16 refused here: $(grep -o 'this build.*' "$WORK/bf16.log")" ||
    { echo "FAIL bf16 run"; tail -5 "$WORK/bf16.log"; fails=$((fails+1)); }
fi
check "bf16 on a GPU is refused" 2 "--precision bf16 runs on the CPU" -- "$T" "${BF[@]}" --precision bf16 --device gpu --max-iters 1 --out "$WORK/bf16gpu"
check "bad precision" 2 "--precision must be float, half or bf16" -- "$T" "${BF[@]}" --precision fp8 --out "$WORK/fp8"

check "a resumed run keeps the original end" 0 "done at iteration 40" -- "$T" -a "$A" -b "$B" --out "$WORK/resume_cyclegan_2d.int" --resume --threads 1

# ---------------------------------------------------------------- deformation protocol
check "deform 2-D with paired truth" 0 "truth_ba" -- "$D" --in "$A" --paired "$A" --out "$WORK/def" --threads 1
for f in deformed/subj0.nii.gz truth_ab/subj0.nii.gz truth_ba/subj0.nii.gz fields/subj0.safetensors; do
  [[ -s "$WORK/def/$f" ]] && echo "ok   def/$f" || { echo "FAIL missing def/$f"; fails=$((fails+1)); }
done
check "deformed vs truth differ" 0 "| pred | 3 |" -- "$E" --pred "$WORK/def/deformed" --truth "$WORK/def/truth_ab" --out "$WORK/ev_def"
check "deform 3-D" 0 "deformed" -- "$D" --in "$B/subj0.nii" --dim 3 --out "$WORK/def3" --threads 1
# alpha (dicyc-eval --fields): the aligned truth carries none of the domain warp, the deformed
# volumes (domain warp + a small jitter) all of it
alpha_in() {  # alpha_in NAME CSV LO HI: every alpha in metrics.csv lies in [LO, HI]
  if awk -F, -v lo="$3" -v hi="$4" 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == "alpha") c = i; if (!c) bad = 1 }
       NR > 1 && c { n++; if ($c < lo || $c > hi) bad = 1 } END { exit bad || !(n > 0) }' "$2"; then echo "ok   $1"
  else echo "FAIL $1: $(cut -d, -f1,7 "$2" | tr '\n' ' ')"; fails=$((fails+1)); fi
}
check "eval alpha: truth vs itself" 0 "alpha" -- "$E" --pred "$WORK/def/truth_ab" --truth "$WORK/def/truth_ab" --fields "$WORK/def/fields" --out "$WORK/ev_a0" --threads 1
alpha_in "alpha of the aligned truth is 0" "$WORK/ev_a0/metrics.csv" -0.05 0.05
check "eval alpha: deformed vs truth" 0 "alpha" -- "$E" --pred "$WORK/def/deformed" --truth "$WORK/def/truth_ab" --fields "$WORK/def/fields" --out "$WORK/ev_a1" --threads 1
alpha_in "alpha of the deformed volumes is about 1" "$WORK/ev_a1/metrics.csv" 0.75 1.25
check "eval alpha 3-D: deformed vs truth" 0 "alpha" -- "$E" --pred "$WORK/def3/deformed" --truth "$WORK/def3/truth_ab" --fields "$WORK/def3/fields" --out "$WORK/ev_a3" --threads 1
alpha_in "alpha of a 3-D deformed volume is about 1" "$WORK/ev_a3/metrics.csv" 0.75 1.25
check "eval: --fields needs --truth" 2 "--fields needs --truth" -- "$E" --pred "$WORK/def/deformed" --source "$A" --fields "$WORK/def/fields"
check "eval: --fields without the volume's file" 2 "has no subj1.safetensors" -- "$E" --pred "$WORK/def/deformed" --truth "$WORK/def/truth_ab" --fields "$WORK/def3/fields"

# ---------------------------------------------------------------- OpenMP spinning (core/openmp_env.hpp)
# Where the tools load GNU OpenMP (oneDNN's runtime) they start again once with GOMP_SPINCOUNT=1000,
# unless the user set GOMP_SPINCOUNT or OMP_WAIT_POLICY: libgomp prints what it read at each start
# under OMP_DISPLAY_ENV=verbose, so the first start shows its default and the second 1000.
if ldd "$T" 2>/dev/null | grep -q libgomp; then
  spins() { "$@" 2>&1 | grep -o "GOMP_SPINCOUNT = '[0-9]*'" | tr -dc "0-9\n" | tr '\n' ' '; }
  for tool in "$T" "$S"; do
    n=$(basename "$tool")
    got=$(spins env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY OMP_DISPLAY_ENV=verbose "$tool" --help)
    [[ $got =~ ^[0-9]+\ 1000\ $ && $got != "1000 1000 " ]] && echo "ok   $n starts again with GOMP_SPINCOUNT=1000" \
      || { echo "FAIL $n: libgomp read '$got', expected its default then 1000"; fails=$((fails+1)); }
    got=$(spins env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=77 OMP_DISPLAY_ENV=verbose "$tool" --help)
    [[ $got == "77 " ]] && echo "ok   $n keeps the user's GOMP_SPINCOUNT" \
      || { echo "FAIL $n with GOMP_SPINCOUNT=77: libgomp read '$got'"; fails=$((fails+1)); }
    got=$(spins env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive OMP_DISPLAY_ENV=verbose "$tool" --help)
    [[ $got == "0 " ]] && echo "ok   $n keeps the user's OMP_WAIT_POLICY" \
      || { echo "FAIL $n with OMP_WAIT_POLICY=passive: libgomp read '$got'"; fails=$((fails+1)); }
  done
  check "train with the spin set runs" 0 "done at iteration 2" -- env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY \
    "$T" -a "$A" -b "$B" "${TINY[@]}" --max-iters 2 --out "$WORK/spin"
  # Started through the dynamic loader (the GPU check's bundle runs the tools so, with its own
  # libraries): /proc/self/exe is then the loader, and the tool must start again through it with the
  # loader's own arguments (--library-path, --argv0), not fail or run the loader bare.
  loader=$(ldd "$T" | awk '/ld-linux/ {print $1}' | head -n 1)
  if [[ -n $loader && -x $loader ]]; then
    libdir=$(dirname "$(ldd "$T" | awk '/libgomp/ {print $3}')")
    got=$(spins env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY OMP_DISPLAY_ENV=verbose "$loader" --library-path "$libdir" "$T" --help)
    [[ $got =~ ^[0-9]+\ 1000\ $ && $got != "1000 1000 " ]] && echo "ok   dicyc-train through $(basename "$loader") starts again with GOMP_SPINCOUNT=1000" \
      || { echo "FAIL dicyc-train through the loader: libgomp read '$got', expected its default then 1000"; fails=$((fails+1)); }
    check "train through the dynamic loader (--library-path, --argv0) runs" 0 "done at iteration 2" -- \
      env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY "$loader" --library-path "$libdir" --argv0 dicyc-train \
      "$T" -a "$A" -b "$B" "${TINY[@]}" --max-iters 2 --out "$WORK/spin_loader"
  else
    echo "skip loader start check: no dynamic loader found in ldd's output"
  fi
else
  echo "skip OpenMP spin checks: $(basename "$T") does not load GNU OpenMP"
fi

if [[ $fails -ne 0 ]]; then echo "$fails check(s) failed"; exit 1; fi
echo "all tool checks passed"
