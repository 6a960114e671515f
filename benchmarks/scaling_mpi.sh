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
rows="$OUT/runs.csv"
echo "case,model,dim,ranks,threads,batch,s_per_iter,mb_per_iter,calls_per_iter" > "$rows"
steady() {  # steady LOSSES_CSV: mean seconds per iteration over iterations 2..N
  awk -F, 'NR == 2 { t1 = $NF } NR > 2 { tn = $NF; n++ } END { if (n > 0) printf "%.4f", (tn - t1) / n; else print "nan" }' "$1"
}
for conf in "cyclegan 2" "dicyc 2" "cyclegan 3" "dicyc 3"; do
  read -r model dim <<<"$conf"
  if [[ $dim == 2 ]]; then NET=(--dim 2 --crop 128 --ngf 64 --blocks 6 --ndf 64); else NET=(--dim 3 --crop 64 --crop-z 64 --ngf 16 --blocks 3 --ndf 32); fi
  RUN=(-a "$A" -b "$B" --model "$model" "${NET[@]}" --max-iters "$ITERS" --checkpoint-every 0 --sample-every 0 --min-foreground 0.05)
  for c in "1 2 1" "1 2 2" "2 1 1"; do
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
    calls=$(grep -o "([0-9.]* calls per iteration)" "$dir.log" | grep -o "[0-9.]*" || echo 0)
    echo "$model $dim-D: $ranks rank(s) x $threads thread(s), batch $batch: $s s/iteration, $mb MB all-reduced"
    echo "${model}_${dim}d,$model,$dim,$ranks,$threads,$batch,$s,$mb,$calls" >> "$rows"
  done
done
/usr/bin/python3 - "$rows" "$OUT/scaling.md" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
out = open(sys.argv[2], "w")
def p(s=""):
    print(s); out.write(s + "\n")
import subprocess
cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
mpi = subprocess.run(["sh", "-c", "mpirun --version | head -1"], capture_output=True, text=True).stdout.strip()
p(f"Machine: {cpu}, 2 cores; {mpi}; float; step times are the mean of iterations 2..N of dicyc-train.")
p()
p("| model | 1 rank x 2 threads, batch 1: s/it | 1 x 2, batch 2: s/it | 2 ranks x 1 thread, batch 1 each: s/it | samples/s 1x2 b1 / 1x2 b2 / 2x1 | MB all-reduced per it |")
p("|---|---|---|---|---|---|")
by = {}
for r in rows:
    by.setdefault(r["case"], {})[(r["ranks"], r["threads"], r["batch"])] = r
for case, d in by.items():
    a, b, c = d[("1", "2", "1")], d[("1", "2", "2")], d[("2", "1", "1")]
    sa, sb, sc = float(a["s_per_iter"]), float(b["s_per_iter"]), float(c["s_per_iter"])
    p(f"| {case} | {sa:.3f} | {sb:.3f} | {sc:.3f} | {1/sa:.3f} / {2/sb:.3f} / {2/sc:.3f} | {float(c['mb_per_iter']):.2f} |")
p()
p("Projection: K ranks, one per node, each with this machine's 2-rank step as its compute; ring all-reduce "
  "2 (K-1)/K x bytes / link + 2 (K-1) x 20 us per call; no overlap.")
p()
p("| model | K | link | compute s | all-reduce s | step s | communication share | speed-up over 1 rank |")
p("|---|---|---|---|---|---|---|---|")
for case, d in by.items():
    c = d[("2", "1", "1")]
    comp = float(c["s_per_iter"]); mb = float(c["mb_per_iter"]); calls = float(c["calls_per_iter"])
    for K in (8, 64):
        for gbit in (10, 100):
            bw = gbit * 1e9 / 8
            comm = 2 * (K - 1) / K * mb * 1e6 / bw + 2 * (K - 1) * 20e-6 * calls
            step = comp + comm
            p(f"| {case} | {K} | {gbit} Gbit/s | {comp:.3f} | {comm:.3f} | {step:.3f} | {comm/step:.1%} | {K*comp/step:.1f}x |")
p()
for case, d in by.items():
    c = d[("2", "1", "1")]
    comp = float(c["s_per_iter"]); mb = float(c["mb_per_iter"])
    # communication equals compute when 2 (K-1)/K B / bw = comp: never for K -> inf if 2 B / bw < comp.
    for gbit in (10, 100):
        bw = gbit * 1e9 / 8
        p(f"{case}, {gbit} Gbit/s: the bandwidth term tends to {2*mb*1e6/bw:.3f} s per step for large K "
          f"({'below' if 2*mb*1e6/bw < comp else 'above'} the {comp:.3f} s compute: communication "
          f"{'never dominates' if 2*mb*1e6/bw < comp else 'dominates'}).")
EOF
echo "scaling_mpi: $OUT/scaling.md"
