#!/usr/bin/env bash
# The tools' memory estimate against the measured peak resident memory (not in CI: minutes), for
# the three configurations of issue #15: 2-D training at 128^2 with ngf 64, 3-D training at 64^3
# with ngf 16, and synthesis of ch2 with the 2-D checkpoint. ch2 (domain A) against ch2bet (B),
# 1.8 mm, NMI-DiCyc, 2 threads.
#   scripts/memory_check.sh [BIN=build/release/examples] [OUT=memory_out]
# Prints, per configuration, the estimate (the tool's "needs about X on top of the Y in use"),
# the peak RSS (/usr/bin/time -v) and the relative error; the logs stay in OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/release/examples}
OUT=${2:-memory_out}
[[ -x /usr/bin/time ]] || { echo "memory_check: needs /usr/bin/time (Debian package 'time')" >&2; exit 1; }
for t in dicyc-train dicyc-synth; do
  [[ -x $BIN/$t ]] || { echo "memory_check: $BIN/$t not found; build the tools first (cmake --build build/release)" >&2; exit 1; }
done
scripts/fetch_data.sh --all >/dev/null
mkdir -p "$OUT"
COMMON=(-a data/mricron/ch2.nii.gz -b data/mricron/ch2bet.nii.gz --spacing 1.8 --model dicyc --threads 2
        --seed 1 --sample-every 0 --log-every 1)

run() {  # name, command...
  local name=$1; shift
  /usr/bin/time -v "$@" > "$OUT/$name.log" 2> "$OUT/$name.time" ||
    { echo "memory_check: $name failed; see $OUT/$name.log and $OUT/$name.time" >&2; tail -5 "$OUT/$name.time" >&2; exit 1; }
}
run train2d "$BIN/dicyc-train" "${COMMON[@]}" --crop 128 --ngf 64 --max-iters 3 --checkpoint-every 3 --out "$OUT/t2d"
run train3d "$BIN/dicyc-train" "${COMMON[@]}" --dim 3 --crop 64 --ngf 16 --blocks 3 --ndf 32 --pool-size 10 \
    --max-iters 12 --checkpoint-every 12 --out "$OUT/t3d"
run synth "$BIN/dicyc-synth" --checkpoint "$OUT/t2d/checkpoint.safetensors" --in data/mricron/ch2.nii.gz \
    --threads 2 --out "$OUT/synth"

mib() {  # "1.01 GiB" / "512.9 MiB" / "12 KiB" -> MiB
  awk -v v="$1" -v u="$2" 'BEGIN { f = (u == "GiB") ? 1024 : (u == "KiB") ? 1 / 1024 : (u == "B") ? 1 / 1048576 : 1; printf "%.1f", v * f }'
}
printf '| configuration | estimated MiB (needed + in use) | peak RSS MiB | error |\n|---|---|---|---|\n'
for name in train2d train3d synth; do
  line=$(grep -m1 "^memory: .* needs about" "$OUT/$name.log") ||
    { echo "memory_check: no estimate line in $OUT/$name.log" >&2; exit 1; }
  read -r nv nu uv uu < <(sed -E 's/.*needs about ([0-9.]+) ([KMG]?i?B) on top of the ([0-9.]+) ([KMG]?i?B) in use.*/\1 \2 \3 \4/' <<< "$line")
  est=$(awk -v a="$(mib "$nv" "$nu")" -v b="$(mib "$uv" "$uu")" 'BEGIN { printf "%.1f", a + b }')
  peak=$(awk '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }' "$OUT/$name.time")
  err=$(awk -v e="$est" -v p="$peak" 'BEGIN { printf "%+.1f %%", 100 * (e - p) / p }')
  printf '| %s | %s (%s %s + %s %s) | %s | %s |\n' "$name" "$est" "$nv" "$nu" "$uv" "$uu" "$peak" "$err"
done
