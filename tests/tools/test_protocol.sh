#!/usr/bin/env bash
# The held-out experiment's quick mode end to end (examples/protocol.cpp --quick), where a user meets
# it: on the real scans (scripts/fetch_data.sh, Debian packages), writing results.csv, summary.md and
# a montage per model; and its refusals of bad configurations.
#   test_protocol.sh PROTOCOL_BINARY SOURCE_DIR WORK_DIR
set -euo pipefail
BIN=$1 SRC=$2 WORK=$3
DATA=${DICYC_DATA:-$SRC/data}
rm -rf "$WORK"
mkdir -p "$WORK"
fail() { echo "test_protocol: FAIL: $*" >&2; exit 1; }

DICYC_DATA="$DATA" bash "$SRC/scripts/fetch_data.sh" || fail "could not fetch the real scans (see above)"

"$BIN" --quick --data "$DATA" --out "$WORK/quick" > "$WORK/quick.log" 2>&1 || { cat "$WORK/quick.log"; fail "--quick exited $?"; }
for f in results.csv summary.md montage_cyclegan.png montage_nmi-cyclegan.png montage_nmi-dicyc.png; do
  [[ -s "$WORK/quick/$f" ]] || fail "$f was not written"
done
# results.csv: the header, then 3 models x 1 seed x (20 held-out slices + the real ITK slice)
head -1 "$WORK/quick/results.csv" | grep -qx 'model,seed,slice,mse,psnr,ssim,ssim_warped,alpha' || fail "results.csv header"
rows=$(($(wc -l < "$WORK/quick/results.csv") - 1))
[[ $rows == 63 ]] || fail "results.csv has $rows rows, expected 63"
for m in cyclegan nmi-cyclegan nmi-dicyc; do
  n=$(grep -c "^$m,1," "$WORK/quick/results.csv")
  [[ $n == 21 ]] || fail "$m has $n rows"
  grep -q "^$m,1,itk_pd," "$WORK/quick/results.csv" || fail "$m has no row for the real ITK slice"
done
# the held-out slab is 84..103 and every value is a finite number
awk -F, 'NR > 1 { if ($3 != "itk_pd" && ($3 < 84 || $3 > 103)) bad = 1;
                   for (i = 4; i <= 8; ++i) if ($i !~ /^-?[0-9]+(\.[0-9]+)?$/) bad = 1 }
         END { exit bad }' "$WORK/quick/results.csv" || fail "results.csv has a slice outside the test slab or a non-numeric value"
# the contrast map reproduces the real PD slice (r >= 0.95 at ch2 slice 94)
r=$(sed -n 's/.*predicts the real PD slice with r = \([0-9.]*\).*/\1/p' "$WORK/quick.log")
[[ -n "$r" ]] || fail "no contrast-map correlation printed"
awk -v r="$r" 'BEGIN { exit !(r >= 0.95) }' || fail "contrast map r = $r < 0.95"
grep -q "QUICK MODE" "$WORK/quick/summary.md" || fail "summary.md does not say it is the quick mode"
grep -q "Paired t-tests" "$WORK/quick/summary.md" || fail "summary.md has no t-tests"
# montage: 5 columns x 180, 3 rows x 216 (the PNG header's width and height)
dims=$(od -An -tu1 -j16 -N8 "$WORK/quick/montage_nmi-dicyc.png" | awk '{print $3*256+$4, $7*256+$8}')
[[ "$dims" == "900 648" ]] || fail "montage is $dims, expected 900 648"

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
expect_fail "fetch_data.sh" --quick --data "$WORK/nowhere" --out "$WORK/bad4"
for d in bad1 bad2 bad3; do [[ ! -e "$WORK/$d/results.csv" ]] || fail "$d wrote results"; done
echo "test_protocol: all checks passed"
