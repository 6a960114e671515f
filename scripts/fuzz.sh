#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a bounded time on its
# committed seed corpus (tests/fuzz/corpus/<target>; new inputs go to a scratch copy, so the
# committed corpus stays as it is). A crash, a sanitizer report or a leak fails the run and leaves
# the reproducer in build/fuzz/.
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
OUT=build/fuzz
mkdir -p "$OUT"
CXX=${FUZZ_CXX:-clang++}
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (apt-get install clang)" >&2; exit 1; }
FLAGS=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Iinclude -I/usr/include/eigen3 -I/usr/include/nifti -Wno-deprecated-declarations)
LIBS=(-lniftiio -lznz -lz -lm -lpthread)
for t in nifti checkpoint; do
  if [[ ! -x "$OUT/fuzz_$t" || "tests/fuzz/fuzz_$t.cpp" -nt "$OUT/fuzz_$t" || -n "$(find include -newer "$OUT/fuzz_$t" -name '*.hpp' | head -1)" ]]; then
    echo "fuzz.sh: building fuzz_$t"
    "$CXX" "${FLAGS[@]}" "tests/fuzz/fuzz_$t.cpp" -o "$OUT/fuzz_$t" "${LIBS[@]}"
  fi
done
for t in nifti checkpoint; do
  work="$OUT/corpus_$t"
  rm -rf "$work"; mkdir -p "$work"
  cp tests/fuzz/corpus/$t/* "$work/"
  echo "fuzz.sh: fuzz_$t for ${SECS} s on $(ls "$work" | wc -l) seeds"
  (cd "$OUT" && ASAN_OPTIONS=allocator_may_return_null=0:detect_leaks=1 \
     "./fuzz_$t" -max_total_time="$SECS" -max_len=262144 -rss_limit_mb=2048 -timeout=20 \
     -print_final_stats=1 "corpus_$t" 2>&1 | grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units|ERROR|SUMMARY|Test unit written" || true)
  # libFuzzer writes crash-*/leak-*/timeout-* files on a finding.
  if ls "$OUT"/crash-* "$OUT"/leak-* "$OUT"/timeout-* "$OUT"/oom-* >/dev/null 2>&1; then
    echo "fuzz.sh: fuzz_$t found a problem: $(ls "$OUT"/crash-* "$OUT"/leak-* "$OUT"/timeout-* "$OUT"/oom-* 2>/dev/null)" >&2
    exit 1
  fi
done
echo "fuzz.sh: no findings"
