#!/usr/bin/env bash
# The held-out experiment's quick mode end to end (examples/protocol.cpp --quick), where a user meets
# it: on the real scans (scripts/fetch_data.sh, Debian packages), both directions, writing every
# output (results.csv, summary.md, the sweeps' tables and plots, a montage per model and direction,
# each run's folder); the alpha check, the crop check against data::Sampler, skipping and resuming
# jobs; and its refusals of bad configurations.
#   test_protocol.sh PROTOCOL_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
BIN=$1 SRC=$2 WORK=$3
DATA=${DICYC_DATA:-$SRC/data}
rm -rf "$WORK"
mkdir -p "$WORK"
fail() { echo "test_protocol: FAIL: $*" >&2; exit 1; }

DICYC_DATA="$DATA" bash "$SRC/scripts/fetch_data.sh" || fail "could not fetch the real scans (see above)"

"$BIN" --quick --data "$DATA" --out "$WORK/quick" > "$WORK/quick.log" 2>&1 || { cat "$WORK/quick.log"; fail "--quick exited $?"; }
for f in results.csv summary.md crops.csv curves.csv alpha_vs_crop.svg alpha_vs_iteration.svg; do
  [[ -s "$WORK/quick/$f" ]] || fail "$f was not written"
done
for m in cyclegan nmi-cyclegan nmi-dicyc; do
  for d in ab ba; do [[ -s "$WORK/quick/montage_${m}_$d.png" ]] || fail "montage_${m}_$d.png was not written"; done
  for f in checkpoint.safetensors losses.csv eval_30.csv job.txt; do
    [[ -s "$WORK/quick/runs/main/${m}_seed1/$f" ]] || fail "runs/main/${m}_seed1/$f was not written"
  done
done
# results.csv: the header, then 3 models x 1 seed x (20 held-out slices A -> B + the real ITK slice + 20 B -> A)
head -1 "$WORK/quick/results.csv" | grep -qx 'setting,model,seed,iteration,direction,slice,mse,psnr,ssim,alpha,alpha_ssim,alpha_lo,alpha_hi,drift' \
  || fail "results.csv header"
rows=$(($(wc -l < "$WORK/quick/results.csv") - 1))
[[ $rows == 123 ]] || fail "results.csv has $rows rows, expected 123"
for m in cyclegan nmi-cyclegan nmi-dicyc; do
  n=$(grep -c "^main,$m,1,30,ab," "$WORK/quick/results.csv"); [[ $n == 21 ]] || fail "$m has $n A -> B rows"
  n=$(grep -c "^main,$m,1,30,ba," "$WORK/quick/results.csv"); [[ $n == 20 ]] || fail "$m has $n B -> A rows"
  grep -q "^main,$m,1,30,ab,itk_pd," "$WORK/quick/results.csv" || fail "$m has no row for the real ITK slice"
done
# the held-out slab is 84..103, every value a finite number, alpha inside its interval, drift as defined
awk -F, 'NR > 1 { if ($6 != "itk_pd" && ($6 < 84 || $6 > 103)) bad = 1;
                   for (i = 7; i <= 14; ++i) if ($i !~ /^-?[0-9]+(\.[0-9]+)?$/) bad = 1;
                   if ($10 < $12 - 1e-9 || $10 > $13 + 1e-9) bad = 1;
                   d = ($5 == "ab") ? $10 : 1 - $10; if (d - $14 > 2e-4 || $14 - d > 2e-4) bad = 1 }
         END { exit bad }' "$WORK/quick/results.csv" || fail "results.csv: a slice outside the test slab, a non-numeric value, alpha outside its interval or a wrong drift"
# the contrast map reproduces the real PD slice (r >= 0.95 at ch2 slice 94)
r=$(sed -n 's/.*predicts the real PD slice with r = \([0-9.]*\).*/\1/p' "$WORK/quick.log")
[[ -n "$r" ]] || fail "no contrast-map correlation printed"
awk -v r="$r" 'BEGIN { exit !(r >= 0.95) }' || fail "contrast map r = $r < 0.95"
# The B -> A truth and alpha: the T1 under the domain warp, as an output, carries alpha 1 against the
# PD-like anatomy; the aligned T1 alpha 0 (within 0.05).
read -r aw aa < <(sed -n 's/.*alpha check on slice [0-9]* .*: warped \([-0-9.]*\), aligned \([-0-9.]*\).*/\1 \2/p' "$WORK/quick.log")
[[ -n "$aw" ]] || fail "no alpha check printed"
awk -v w="$aw" -v a="$aa" 'BEGIN { exit !(w >= 0.95 && w <= 1.05 && a >= -0.05 && a <= 0.05) }' || fail "alpha check: warped $aw, aligned $aa"
# the crops the models trained on are the library sampler's (checked bit for bit by the run)
n=$(grep -c "training batches equal data::Sampler's.*: yes" "$WORK/quick.log")
[[ $n == 3 ]] || fail "the crop check passed for $n of 3 runs"
grep -q "QUICK MODE" "$WORK/quick/summary.md" || fail "summary.md does not say it is the quick mode"
grep -q "Paired t-tests" "$WORK/quick/summary.md" || fail "summary.md has no t-tests"
grep -q "B -> A" "$WORK/quick/summary.md" || fail "summary.md has no B -> A table"
# montage: 5 columns x 181, 3 rows x 217 under an 11-pixel strip of column titles (the PNG header's width and height)
dims=$(od -An -tu1 -j16 -N8 "$WORK/quick/montage_nmi-dicyc_ba.png" | awk '{print $3*256+$4, $7*256+$8}')
[[ "$dims" == "905 662" ]] || fail "montage is $dims, expected 905 662"
# resumable: a second run skips the finished jobs; a longer budget resumes from the checkpoint
"$BIN" --quick --data "$DATA" --out "$WORK/quick" > "$WORK/again.log" 2>&1 || fail "the second run exited $?"
[[ $(grep -c ": done (" "$WORK/again.log") == 3 ]] || { cat "$WORK/again.log"; fail "the second run did not skip the 3 finished jobs"; }
"$BIN" --quick --data "$DATA" --models cyclegan --iters 36 --out "$WORK/quick" > "$WORK/longer.log" 2>&1 || fail "the longer run exited $?"
grep -q "iterations 30 -> 36" "$WORK/longer.log" || { cat "$WORK/longer.log"; fail "the longer run did not resume at iteration 30"; }

# refusals: a clear message and a non-zero exit, nothing written
expect_fail() {  # expect_fail NEEDLE ARGS...
  local needle=$1
  shift
  if "$BIN" "$@" > "$WORK/err.log" 2>&1; then fail "'$*' succeeded"; fi
  grep -q -- "$needle" "$WORK/err.log" || { cat "$WORK/err.log"; fail "'$*' did not say '$needle'"; }
}
expect_fail "no training slice is left" --quick --data "$DATA" --lo 80 --hi 110 --gap 10 --out "$WORK/bad1"
expect_fail "must lie inside" --quick --data "$DATA" --test-first 140 --test-count 20 --out "$WORK/bad2"
expect_fail "unknown model 'dicycle'" --quick --data "$DATA" --models cyclegan,dicycle --out "$WORK/bad3"
expect_fail "--part takes" --quick --data "$DATA" --part mian --out "$WORK/bad5"
expect_fail "fetch_data.sh" --quick --data "$WORK/nowhere" --out "$WORK/bad4"
# --lambda-gan-plain: the DiCyc runs carry it (checkpoint, report); a folder holds runs of one value
# (jobs are skipped or resumed by name)
"$BIN" --quick --data "$DATA" --models nmi-dicyc --lambda-gan-plain 1 --out "$WORK/gp" > "$WORK/gp.log" 2>&1 || { cat "$WORK/gp.log"; fail "--lambda-gan-plain 1 exited $?"; }
grep -aqF 'lambda_gan_plain\":1.0' "$WORK/gp/runs/main/nmi-dicyc_seed1/checkpoint.safetensors" || fail "the run's checkpoint has no lambda_gan_plain 1"
grep -q "lambda-gan-plain 1" "$WORK/gp/summary.md" || fail "summary.md does not say --lambda-gan-plain 1"
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "gan_plain_ab") c = i } NR > 1 && $c == 0 { bad = 1 } END { exit !(c && !bad) }' \
  "$WORK/gp/runs/main/nmi-dicyc_seed1/losses.csv" || fail "losses.csv lacks the gan_plain_ab terms"
expect_fail "holds runs trained with --lambda-gan-plain 0, not 1" --quick --data "$DATA" --lambda-gan-plain 1 --out "$WORK/quick"
expect_fail "--lambda-gan-plain must be >= 0" --quick --data "$DATA" --lambda-gan-plain -1 --out "$WORK/bad6"
for d in bad1 bad2 bad3; do [[ ! -e "$WORK/$d/results.csv" ]] || fail "$d wrote results"; done
echo "test_protocol: all checks passed"
