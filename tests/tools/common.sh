# Helpers shared by the tool tests (sourced; the caller sets fails=0, and CD to checkpoint_diff
# for same_run).
check() {  # check NAME EXPECTED_RC NEEDLE -- command...: the exit code and a piece of the output
  local name=$1 want=$2 needle=$3; shift 4
  local out; out=$("$@" 2>&1); local rc=$?
  if [[ $rc -ne $want ]]; then echo "FAIL $name: exit $rc, expected $want"; echo "$out" | tail -8; fails=$((fails+1)); return; fi
  if [[ -n $needle && $out != *"$needle"* ]]; then echo "FAIL $name: output lacks '$needle'"; echo "$out" | tail -8; fails=$((fails+1)); return; fi
  echo "ok   $name"
}
same_run() {  # same_run NAME REFERENCE_DIR DIR: losses.csv (but the timing column) and every checkpoint tensor
  local name=$1 x=$2 y=$3
  if cmp -s <(cut -d, -f1-17 "$x/losses.csv") <(cut -d, -f1-17 "$y/losses.csv") &&
     "$CD" "$x/checkpoint.safetensors" "$y/checkpoint.safetensors" >/dev/null; then
    echo "ok   $name"
  else
    echo "FAIL $name"; diff <(cut -d, -f1-17 "$x/losses.csv") <(cut -d, -f1-17 "$y/losses.csv") | head -4
    "$CD" "$x/checkpoint.safetensors" "$y/checkpoint.safetensors" | tail -4; fails=$((fails+1))
  fi
}
