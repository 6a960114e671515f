#!/usr/bin/env python3
"""Tables of benchmarks/scaling_mpi.sh: the measured runs and the projection to K ranks.

    scaling_report.py RUNS_CSV OUT_MD

The last row of each (case, ranks, threads, batch) counts. Standard library only."""
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
p("| model | 1 rank x 2 threads, batch 1: s/it | 1 x 2, batch 2: s/it | 2 ranks x 1 thread, batch 1 each: s/it | samples/s 1x2 b1 / 1x2 b2 / 2x1 | MB all-reduced per it | s/it in all-reduce |")
p("|---|---|---|---|---|---|---|")
by = {}
for r in rows:
    by.setdefault(r["case"], {})[(r["ranks"], r["threads"], r["batch"])] = r  # later rows replace earlier ones
for case, d in by.items():
    a, b, c = d[("1", "2", "1")], d[("1", "2", "2")], d[("2", "1", "1")]
    sa, sb, sc = float(a["s_per_iter"]), float(b["s_per_iter"]), float(c["s_per_iter"])
    p(f"| {case} | {sa:.3f} | {sb:.3f} | {sc:.3f} | {1/sa:.3f} / {2/sb:.3f} / {2/sc:.3f} | {float(c['mb_per_iter']):.2f} | {float(c.get('reduce_s_per_iter') or 0):.3f} |")
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
