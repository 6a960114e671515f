#!/usr/bin/env bash
# Soak test of exact resume (not in CI: hours): the demo's MR -> CT NMI-DiCyc configuration trained
# for ITERS iterations in one go, and again with KILLS SIGKILLs at random iterations, each followed
# by a plain --resume. The two runs must agree: losses.csv (all but the timing column) and the
# final checkpoint, byte for byte.
#   scripts/soak_resume.sh [ITERS=20000] [KILLS=5]       outputs in soak_out/ (SOAK_OUT), SOAK_THREADS, SOAK_BIN
# SOAK_PARALLEL=1 runs the two side by side (with SOAK_THREADS=1 on 2 cores: about half the wall
# time). Both use SOAK_THREADS: the weight gradients' partial sums are split by the thread count,
# so runs with different counts differ in the last bits.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-20000}; KILLS=${2:-5}
OUT=${SOAK_OUT:-soak_out}
THREADS=${SOAK_THREADS:-$(nproc)}
scripts/setup.sh --minimal
scripts/fetch_data.sh --all
BIN=${SOAK_BIN:-}  # a folder with dicyc-train and dicyc-raw2nii already built; default: build them
if [[ -z $BIN ]]; then
  cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release -DDICYC_BUILD_TESTS=OFF -DDICYC_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build build/release -j "$(nproc)" --target dicyc_train dicyc_raw2nii
  BIN=build/release/examples
fi
scripts/mrct_data.sh "$BIN" "$OUT"
RUN=(-a "$OUT/mr" -b "$OUT/ct" --spacing 1.8 --crop 96 --ngf 16 --blocks 4 --ndf 32 --threads "$THREADS"
     --model dicyc --max-iters "$ITERS" --iters-per-epoch 100000 --epochs 1 --decay-epochs 0
     --checkpoint-every 100 --sample-every 1000 --log-every 1000 --seed 1)
rm -rf "$OUT/full" "$OUT/killed"
start=$SECONDS
if [[ ${SOAK_PARALLEL:-0} == 1 ]]; then
  ( "$BIN/dicyc-train" "${RUN[@]}" --out "$OUT/full" > "$OUT/full.log"; echo "$? $((SECONDS - start))" > "$OUT/full.rc" ) &
  full_job=$!
else
  "$BIN/dicyc-train" "${RUN[@]}" --out "$OUT/full" > "$OUT/full.log"
  echo "soak: uninterrupted run: $ITERS iterations in $((SECONDS - start)) s"
fi

last_iter() { tail -1 "$OUT/killed/losses.csv" 2>/dev/null | cut -d, -f1 | grep -E '^[0-9]+$' || echo 0; }
# KILLS distinct random iterations in (100, ITERS), sorted.
mapfile -t targets < <(python3 -c "import random,sys; random.seed($RANDOM); print(*sorted(random.sample(range(101, $ITERS), $KILLS)), sep='\n')" 2>/dev/null ||
                      awk -v n="$ITERS" -v k="$KILLS" -v s="$RANDOM" 'BEGIN { srand(s); for (i = 0; i < k; i++) print int(101 + rand() * (n - 102)) }' | sort -n)
start=$SECONDS
"$BIN/dicyc-train" "${RUN[@]}" --out "$OUT/killed" > "$OUT/killed.log" 2>&1 &
pid=$!
for t in "${targets[@]}"; do
  while kill -0 $pid 2>/dev/null && (( $(last_iter) < t )); do sleep 0.2; done
  kill -KILL $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  echo "soak: SIGKILL at iteration $(last_iter) (target $t); resuming"
  n0=$(grep -c "^resuming from" "$OUT/killed.log" || true)
  "$BIN/dicyc-train" -a "$OUT/mr" -b "$OUT/ct" --threads "$THREADS" --out "$OUT/killed" --resume >> "$OUT/killed.log" 2>&1 &
  pid=$!
  # losses.csv still ends at the killed iteration until the resumed run has truncated it.
  while kill -0 $pid 2>/dev/null && ! grep -q "^domain A:" <(awk -v n="$n0" '/^resuming from/ {c++} c > n' "$OUT/killed.log"); do sleep 0.2; done
  sleep 2  # the checkpoint load and the truncation follow that line within milliseconds
done
wait $pid
killed_s=$((SECONDS - start))
echo "soak: killed run: $KILLS SIGKILLs, $killed_s s in all"
if [[ ${SOAK_PARALLEL:-0} == 1 ]]; then
  wait $full_job
  read -r full_rc full_s < "$OUT/full.rc"
  echo "soak: uninterrupted run (side by side): $ITERS iterations in $full_s s, exit $full_rc"
fi
ok=1
if cmp -s <(cut -d, -f1-17 "$OUT/full/losses.csv") <(cut -d, -f1-17 "$OUT/killed/losses.csv"); then
  echo "soak: losses.csv: identical ($(($(wc -l < "$OUT/full/losses.csv") - 1)) rows)"
else
  echo "soak: losses.csv DIFFERS:"; diff <(cut -d, -f1-17 "$OUT/full/losses.csv") <(cut -d, -f1-17 "$OUT/killed/losses.csv") | head -5; ok=0
fi
if cmp -s "$OUT/full/checkpoint.safetensors" "$OUT/killed/checkpoint.safetensors"; then
  echo "soak: checkpoint: byte-identical"
else
  echo "soak: checkpoint DIFFERS"; ok=0
fi
((ok)) && echo "soak: PASS" || { echo "soak: FAIL"; exit 1; }
