#!/usr/bin/python3
"""Runs dicyc's op benchmarks and the PyTorch reference back to back; prints our/PyTorch time ratios.

    PY benchmarks/compare_torch.py [--build build/release] [--repeats 3]

PyTorch side: benchmarks/torch_reference.py --only convs (conv 3x3 256->256 at 32x32 and conv
3x3x3 32->32 at 32^3, forward and forward+backward), plus, timed here the same way, the transposed
conv 256->128 at 32x32 -> 64x64 and instance norm 256x32x32 that the reference does not cover.
A ratio below 1 means dicyc is faster. Both sides use 2 threads. The whole comparison is repeated
--repeats times, alternating the two programs, and the median ratio is reported.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REF = os.path.join(HERE, "torch_reference.py")
sys.path.insert(0, HERE)
import anchor  # noqa: E402  (the PyTorch anchor: checked, then named above the table)

PAIRS = [  # (our benchmark name, PyTorch key)
    ("conv_fwd/2d/c256/32x32/k3/1", "conv_3x3_256_32x32_fwd"),
    ("conv_fwd_bwd/2d/c256/32x32/k3/1", "conv_3x3_256_32x32_fwd_bwd"),
    ("conv_fwd/3d/c32/32^3/k3/1", "conv3d_3x3x3_32_32^3_fwd"),
    ("conv_fwd_bwd/3d/c32/32^3/k3/1", "conv3d_3x3x3_32_32^3_fwd_bwd"),
    ("convT_fwd/2d/c256-128/32x32-64x64/k3/1", "convT_256_128_32x32_fwd"),
    ("instance_norm/2d/c256/32x32/bwd:0", "instance_norm_256_32x32_fwd"),
    ("instance_norm/2d/c256/32x32/bwd:1", "instance_norm_256_32x32_fwd_bwd"),
]


def torch_extra(threads, runs):
    import torch
    import torch.nn as nn
    torch.set_num_threads(threads)
    out = {}

    def timeit(fn, n):
        for _ in range(3):
            fn()
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return {"median_ms": 1e3 * statistics.median(ts)}
    ct = nn.ConvTranspose2d(256, 128, 3, 2, 1, output_padding=1)
    x = torch.randn(1, 256, 32, 32)
    with torch.no_grad():
        out["convT_256_128_32x32_fwd"] = timeit(lambda: ct(x), runs)
    inorm = nn.InstanceNorm2d(256)
    xi = torch.randn(1, 256, 32, 32, requires_grad=True)
    with torch.no_grad():
        out["instance_norm_256_32x32_fwd"] = timeit(lambda: inorm(xi), runs)
    g = torch.randn(1, 256, 32, 32)

    def fb():
        xi.grad = None
        inorm(xi).backward(g)
    out["instance_norm_256_32x32_fwd_bwd"] = timeit(fb, runs)
    return out


def run_ours(binary, threads):
    env = dict(os.environ, DICYC_BENCH_THREADS=str(threads))
    res = subprocess.run([binary, "--benchmark_format=json", "--benchmark_min_time=0.5"], env=env,
                         capture_output=True, text=True, check=True)
    data = json.loads(res.stdout)
    return {b["name"].replace("/real_time", ""): b for b in data["benchmarks"]}


def to_ms(b):
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
    return b["real_time"] * scale


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    binary = os.path.join(a.build, "benchmarks", "bench_ops")
    if not os.path.exists(binary):
        sys.exit(f"compare_torch: {binary} not found: build the target bench_ops first "
                 f"(cmake --build {a.build} --target bench_ops)")
    anchor.check("compare_torch")
    ratios = {p[0]: [] for p in PAIRS}
    ours_ms = {p[0]: [] for p in PAIRS}
    torch_ms = {p[0]: [] for p in PAIRS}
    eigen_ms = {p[0]: [] for p in PAIRS}
    for _ in range(a.repeats):
        ours = run_ours(binary, a.threads)
        res = subprocess.run([sys.executable, REF, "--threads", str(a.threads), "--runs", str(a.runs),
                              "--only", "convs"], capture_output=True, text=True, check=True)
        torch_res = json.loads(res.stdout)
        torch_res.update(torch_extra(a.threads, a.runs * 5))
        for ours_name, tkey in PAIRS:
            if ours_name in ours and tkey in torch_res:
                ratios[ours_name].append(to_ms(ours[ours_name]) / torch_res[tkey]["median_ms"])
                ours_ms[ours_name].append(to_ms(ours[ours_name]))
                torch_ms[ours_name].append(torch_res[tkey]["median_ms"])
                eig = ours.get(ours_name[:-2] + "/0") if ours_name.endswith("/1") else None
                if eig:
                    eigen_ms[ours_name].append(to_ms(eig))
    med = lambda v: statistics.median(v) if v else float("nan")
    print("anchor: " + anchor.describe(a.threads))
    print(f"{'case':44s} {'dicyc ms':>9s} {'torch ms':>9s} {'dicyc/torch':>12s} {'eigen-only ms':>14s}")
    for ours_name, tkey in PAIRS:
        if not ratios[ours_name]:
            continue
        print(f"{ours_name:44s} {med(ours_ms[ours_name]):9.2f} {med(torch_ms[ours_name]):9.2f} "
              f"{med(ratios[ours_name]):12.2f} {med(eigen_ms[ours_name]):14.2f}")
    print("(time ratio: below 1 means dicyc is faster; median over", a.repeats, "alternating repeats)")


if __name__ == "__main__":
    main()
