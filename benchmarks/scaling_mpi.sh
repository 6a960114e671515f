#!/usr/bin/env bash
# Data-parallel scaling of dicyc-train on this machine, and a projection to clusters.
#   benchmarks/scaling_mpi.sh [BUILD_DIR] [OUT_DIR]      (ITERS=6 by default)
# For each model (CycleGAN and NMI-DiCyc; 2-D 128^2 ngf 64 6 blocks, 3-D 64^3 ngf 16 3 blocks) it
# runs ITERS iterations on ch2 (scripts/fetch_data.sh) as
#   1 rank x 2 threads, batch 1   (the single-process run)
#   1 rank x 2 threads, batch 2   (the same samples per step as 2 ranks)
#   2 ranks x 1 thread, batch 1 each (mpirun)
# and takes the steady-state time per iteration from losses.csv (iterations 2..ITERS; the first
# carries the warm-up), the bytes all-reduced per iteration from dicyc-train's summary line, then
# projects the step time of K = 8 and 64 ranks on 10 and 100 Gbit/s links: compute (the 2-rank
# step, one rank per node) + a ring all-reduce of those bytes, 2 (K-1)/K * bytes / bandwidth plus
# 2 (K-1) latencies of 20 us per reduction call.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build/test}; OUT=${2:-runs/scaling_mpi}; ITERS=${ITERS:-6}
T="$BUILD/examples/dicyc-train"
[[ -x $T ]] || { echo "scaling_mpi: build dicyc-train first ($T)"; exit 2; }
[[ -s data/mricron/ch2.nii.gz ]] || scripts/fetch_data.sh
mkdir -p "$OUT"
MPI=(mpirun --oversubscribe --allow-run-as-root -np 2)
A=data/mricron/ch2.nii.gz; B=data/mricron/ch2bet.nii.gz
rows="$OUT/runs.csv"  # APPEND=1 adds to it (e.g. CONFIGS="2 1 1" to re-measure the 2-rank rows)
[[ "${APPEND:-0}" == 1 && -s $rows ]] || echo "case,model,dim,ranks,threads,batch,s_per_iter,mb_per_iter,calls_per_iter,reduce_s_per_iter" > "$rows"
steady() {  # steady LOSSES_CSV: mean seconds per iteration over iterations 2..N
  awk -F, 'NR == 2 { t1 = $NF } NR > 2 { tn = $NF; n++ } END { if (n > 0) printf "%.4f", (tn - t1) / n; else print "nan" }' "$1"
}
for conf in "cyclegan 2" "dicyc 2" "cyclegan 3" "dicyc 3"; do
  read -r model dim <<<"$conf"
  if [[ $dim == 2 ]]; then NET=(--dim 2 --crop 128 --ngf 64 --blocks 6 --ndf 64); else NET=(--dim 3 --crop 64 --crop-z 64 --ngf 16 --blocks 3 --ndf 32); fi
  RUN=(-a "$A" -b "$B" --model "$model" "${NET[@]}" --max-iters "$ITERS" --checkpoint-every 0 --sample-every 0 --min-foreground 0.05)
  IFS=, read -ra CONFS <<<"${CONFIGS:-1 2 1,1 2 2,2 1 1}"  # ranks threads batch
  for c in "${CONFS[@]}"; do
    read -r ranks threads batch <<<"$c"
    dir="$OUT/${model}_${dim}d_r${ranks}_t${threads}_b${batch}"
    rm -rf "$dir"
    if [[ $ranks == 1 ]]; then
      "$T" "${RUN[@]}" --threads "$threads" --batch "$batch" --out "$dir" > "$dir.log" 2>&1
    else
      "${MPI[@]}" "$T" "${RUN[@]}" --threads "$threads" --batch "$batch" --out "$dir" > "$dir.log" 2>&1
    fi
    s=$(steady "$dir/losses.csv")
    mb=$(grep -o "all-reduced [0-9.]* MB" "$dir.log" | grep -o "[0-9.]*" || echo 0)
    calls=$(grep -o "([0-9.]* calls per iteration" "$dir.log" | grep -o "[0-9.]*" || echo 0)
    insec=$(grep -o "[0-9.]* s per iteration in them" "$dir.log" | grep -o "^[0-9.]*" || echo 0)
    echo "$model $dim-D: $ranks rank(s) x $threads thread(s), batch $batch: $s s/iteration, $mb MB all-reduced"
    echo "${model}_${dim}d,$model,$dim,$ranks,$threads,$batch,$s,$mb,$calls,$insec" >> "$rows"
  done
done
/usr/bin/python3 benchmarks/scaling_report.py "$rows" "$OUT/scaling.md"
echo "scaling_mpi: $OUT/scaling.md"
