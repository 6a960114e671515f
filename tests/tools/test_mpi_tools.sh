#!/usr/bin/env bash
# dicyc-train and dicyc-synth under mpirun (ctest label mpi), on the phantoms of make_phantoms:
# - 2 ranks: rank 0 alone writes the log and the checkpoint (which holds every rank's pools);
# - a 2-rank run stopped and resumed with 2 ranks equals the uninterrupted 2-rank run (losses.csv
#   and every checkpoint tensor), 2-D DiCyc and 3-D CycleGAN, and so does one where only rank 1
#   got Ctrl-C (both ranks stop at the same iteration);
# - resuming a 2-rank checkpoint with one process is refused, naming both counts;
# - a rank killed mid-run ends the job non-zero within a bounded time and the last checkpoint is
#   intact (it resumes); a rank that hangs (SIGSTOP) is ended by the other's --mpi-timeout;
# - dicyc-synth over 2 ranks writes every volume once.
#   test_mpi_tools.sh BIN_DIR PHANTOM_TOOL WORK_DIR MPIEXEC
set -uo pipefail
BIN=$1; MAKE=$2; WORK=$3; MPIEXEC=$4
rm -rf "$WORK"; mkdir -p "$WORK"
"$MAKE" "$WORK/ph" >/dev/null || { echo "FAIL: make_phantoms"; exit 1; }
MPI=("$MPIEXEC" --oversubscribe --allow-run-as-root -np 2)
T="$BIN/dicyc-train"; S="$BIN/dicyc-synth"; CD="$(dirname "$MAKE")/checkpoint_diff"
A="$WORK/ph/a"; B="$WORK/ph/b"
TINY=(--ngf 4 --blocks 1 --ndf 8 --d-layers 2 --crop 16 --threads 1 --log-every 1 --control-points 3)
fails=0
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
rank_pid() {  # rank_pid OUT_DIR RANK: the process of that rank of the run writing OUT_DIR
  local p
  for p in $(pgrep -f -- "--out $1"); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -x "OMPI_COMM_WORLD_RANK=$2" >/dev/null && { echo "$p"; return; }
  done
}
wait_for_checkpoint() {  # wait_for_checkpoint OUT_DIR PID: up to 120 s
  local waited=0
  while [[ ! -s "$1/checkpoint.safetensors" ]] && kill -0 "$2" 2>/dev/null && (( waited < 1200 )); do sleep 0.1; waited=$((waited + 1)); done
}
ckpt_iteration() { head -c 65536 "$1" | grep -ao '"iteration":"[0-9]*"' | grep -o '[0-9]*'; }
meta_ranks() { head -c 65536 "$1" | grep -ao '"ranks":"[0-9]*"' | grep -o '[0-9]*'; }

# ---------------------------------------------------------------- 2 ranks: uninterrupted, stopped, resumed
for conf in "dicyc 2 8" "cyclegan 3 4"; do
  read -r model dim n <<<"$conf"
  [[ "${DICYC_TOOLS_VARIANTS:-all}" == "2d-float" && $dim == 3 ]] && continue
  RUN=(-a "$A" -b "$B" "${TINY[@]}" --model "$model" --dim "$dim" --checkpoint-every 2 --sample-every 4 --pool-size 2)
  [[ $dim == 3 ]] && RUN+=(--crop-z 16)
  P="$WORK/mpi_${model}_${dim}d"
  check "2 ranks: $model $dim-D" 0 "done at iteration $n" -- "${MPI[@]}" "$T" "${RUN[@]}" --max-iters "$n" --out "$P.full"
  out=$("${MPI[@]}" "$T" "${RUN[@]}" --max-iters "$n" --out "$P.quiet" 2>&1)
  [[ $(grep -c "^data parallel: MPI" <<<"$out") -eq 1 && $(grep -c "done at iteration" <<<"$out") -eq 1 ]] &&
    echo "ok   2 ranks: rank 0 alone prints" || { echo "FAIL 2 ranks print: $(grep -c 'done at' <<<"$out") 'done' lines"; fails=$((fails+1)); }
  [[ $(wc -l < "$P.full/losses.csv") -eq $((n + 1)) ]] && echo "ok   2 ranks: one log of $n rows" || { echo "FAIL losses.csv rows"; fails=$((fails+1)); }
  [[ $(meta_ranks "$P.full/checkpoint.safetensors") == 2 ]] && echo "ok   checkpoint says 2 ranks" || { echo "FAIL checkpoint ranks"; fails=$((fails+1)); }
  "${MPI[@]}" "$T" "${RUN[@]}" --max-iters $((n / 2)) --out "$P.clean" >/dev/null 2>&1
  check "2 ranks: resume $model $dim-D" 0 "done at iteration $n" -- "${MPI[@]}" "$T" -a "$A" -b "$B" --out "$P.clean" --resume --threads 1 --max-iters "$n"
  same_run "2 ranks: resumed $model $dim-D = uninterrupted" "$P.full" "$P.clean"
done

R2="$WORK/mpi_dicyc_2d"
check "1 process refuses a 2-rank checkpoint" 1 "written by a run of 2 ranks, and this run has 1" -- \
  "$T" -a "$A" -b "$B" --out "$R2.clean" --resume --threads 1 --max-iters 12
"$T" -a "$A" -b "$B" "${TINY[@]}" --model dicyc --max-iters 2 --checkpoint-every 0 --sample-every 0 --out "$WORK/single" >/dev/null 2>&1
check "2 ranks refuse a 1-process checkpoint" 1 "written by a run of 1 rank, and this run has 2" -- \
  "${MPI[@]}" "$T" -a "$A" -b "$B" --out "$WORK/single" --resume --threads 1 --max-iters 4
check "2-rank checkpoint weights synthesise in one process" 0 "subj2.nii.gz" -- \
  "$S" --checkpoint "$R2.full/checkpoint.safetensors" --in "$A" --out "$WORK/syn1" --threads 1

# ---------------------------------------------------------------- Ctrl-C on rank 1 only
RUN=(-a "$A" -b "$B" "${TINY[@]}" --model dicyc --checkpoint-every 2 --sample-every 0 --pool-size 2)
P="$WORK/mpi_int"
"${MPI[@]}" "$T" "${RUN[@]}" --max-iters 40 --out "$P.full" >/dev/null 2>&1 || { echo "FAIL 40-iteration 2-rank run"; fails=$((fails+1)); }
"${MPI[@]}" "$T" "${RUN[@]}" --max-iters 40 --out "$P.int" > "$WORK/int.log" 2>&1 &
job=$!
wait_for_checkpoint "$P.int" $job
r1=$(rank_pid "$P.int" 1)
if [[ -n $r1 ]]; then
  kill -INT "$r1"; wait $job; rc=$?
  last=$(ckpt_iteration "$P.int/checkpoint.safetensors")
  if [[ $rc -eq 130 && -n $last && $last -lt 40 && $(grep -c "interrupted: saved at iteration $last" "$WORK/int.log") -eq 1 ]]; then
    echo "ok   Ctrl-C on rank 1 stops both at iteration $last (exit 130)"
  else
    echo "FAIL Ctrl-C on rank 1: exit $rc, checkpoint at ${last:-?}"; tail -5 "$WORK/int.log"; fails=$((fails+1))
  fi
  "${MPI[@]}" "$T" -a "$A" -b "$B" --out "$P.int" --resume --threads 1 >/dev/null 2>&1 || echo "FAIL resume after Ctrl-C exited $?"
  same_run "2 ranks: resumed after Ctrl-C on rank 1 = uninterrupted" "$P.full" "$P.int"
else
  echo "FAIL no rank 1 found"; fails=$((fails+1)); kill $job; wait $job
fi

# ---------------------------------------------------------------- a rank killed / hung
for how in KILL STOP; do
  P="$WORK/mpi_$how"
  extra=(); [[ $how == STOP ]] && extra=(--mpi-timeout 5)
  start=$(date +%s)
  "${MPI[@]}" "$T" "${RUN[@]}" "${extra[@]}" --max-iters 100000 --out "$P" > "$WORK/$how.log" 2>&1 &
  job=$!
  wait_for_checkpoint "$P" $job
  sleep 0.$((RANDOM % 10))
  r1=$(rank_pid "$P" 1)
  [[ -n $r1 ]] && kill -"$how" "$r1"
  killed=$(date +%s)
  ( sleep 120; kill -9 $job 2>/dev/null ) & guard=$!
  wait $job; rc=$?
  kill $guard 2>/dev/null; wait $guard 2>/dev/null
  [[ -n $r1 ]] && kill -9 "$r1" 2>/dev/null
  took=$(( $(date +%s) - killed ))
  if [[ $rc -ne 0 && $took -lt 60 ]]; then echo "ok   SIG$how of rank 1: the job ended with exit $rc after $took s"
  else echo "FAIL SIG$how of rank 1: exit $rc after $took s"; tail -5 "$WORK/$how.log"; fails=$((fails+1)); fi
  [[ $how == STOP ]] && { grep -q "has waited" "$WORK/$how.log" && echo "ok   the watchdog named the wait" || { echo "FAIL no watchdog message"; tail -5 "$WORK/$how.log"; fails=$((fails+1)); }; }
  it=$(ckpt_iteration "$P/checkpoint.safetensors")
  check "checkpoint intact after SIG$how (iteration ${it:-?}): a 2-rank resume continues" 0 "done at iteration $((it + 2))" -- \
    "${MPI[@]}" "$T" -a "$A" -b "$B" --out "$P" --resume --threads 1 --mpi-timeout 0 --max-iters $((it + 2))
done

# ---------------------------------------------------------------- synthesis over 2 ranks
out=$("${MPI[@]}" "$S" --checkpoint "$R2.full/checkpoint.safetensors" --in "$A" --out "$WORK/syn2" --threads 1 2>&1); rc=$?
nin=$(ls "$A" | grep -c "\.nii"); nout=$(ls "$WORK/syn2" 2>/dev/null | grep -c "\.nii.gz")
if [[ $rc -eq 0 && $nin -eq $nout && $out == *"[rank 0]"* && $out == *"[rank 1]"* ]]; then
  echo "ok   dicyc-synth over 2 ranks: $nout volumes, both ranks at work"
else
  echo "FAIL dicyc-synth over 2 ranks: exit $rc, $nout of $nin volumes"; echo "$out" | tail -5; fails=$((fails+1))
fi
for f in "$WORK/syn2"/*.nii.gz; do cmp -s "$f" "$WORK/syn1/$(basename "$f")" || { echo "FAIL $(basename "$f") differs from the 1-process synthesis"; fails=$((fails+1)); }; done

echo "$fails failure(s)"
[[ $fails -eq 0 ]]
