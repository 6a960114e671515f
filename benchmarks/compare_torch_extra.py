#!/usr/bin/python3
"""Times dicyc's losses and deformation modules against PyTorch, side by side (bench_loss, bench_tps).

    PY benchmarks/compare_torch_extra.py [--build build/bench] [--repeats 3]

PyTorch side: nmi() of the Python package (dicyc.nn, via benchmarks/torch_reference.py) (soft NMI, 32 bins) at 128x128 and 64^3,
benchmarks/torch_losses.py's MIND and gradient correlation at 128x128 (each a forward and a
backward to both inputs); F.grid_sample (bilinear, border, align_corners=False) forward and
backward to input and grid on a 256x32x32 map and a 1x128x128 image; the reference TPSGrid (6x6
points, 32x32) forward and backward. Both sides use 2 threads, float. A ratio below 1 means dicyc
is faster.
"""
import argparse
import importlib.util
import json
import re
import os
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REF = os.path.join(HERE, "torch_reference.py")
sys.path.insert(0, HERE)
import anchor  # noqa: E402  (the PyTorch anchor: checked, then named above the table)
sys.path.insert(0, HERE)
import torch_losses  # noqa: E402


def load_ref():
    spec = importlib.util.spec_from_file_location("torch_reference", REF)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timeit(fn, runs):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def torch_times(runs, pattern="."):
    ref = load_ref()
    out = {}

    def want(k):
        return re.search(pattern, k) is not None

    def case(fn, shape):
        a = torch.rand(*shape) * 2 - 1
        b = a * a + 0.3 * (torch.rand(*shape) * 2 - 1)
        a.requires_grad_(True)
        b.requires_grad_(True)

        def step():
            a.grad = None
            b.grad = None
            fn(a, b).backward()
        return timeit(step, runs)
    if want("nmi/2d/128x128"):
        out["nmi/2d/128x128"] = case(lambda a, b: 1 - ref.nmi(a, b), (1, 1, 128, 128))
    if want("nmi/3d/64^3"):
        out["nmi/3d/64^3"] = case(lambda a, b: 1 - ref.nmi(a, b), (1, 1, 64, 64, 64))
    if want("mind/2d/128x128"):
        out["mind/2d/128x128"] = case(torch_losses.mind_loss, (1, 1, 128, 128))
    if want("gcc/2d/128x128"):
        out["gcc/2d/128x128"] = case(torch_losses.gcc_loss, (1, 1, 128, 128))

    import torch.nn.functional as F

    def sampler(c, size):
        x = (torch.rand(1, c, size, size) * 2 - 1).requires_grad_(True)
        g = (torch.rand(1, size, size, 2) * 2.1 - 1.05).requires_grad_(True)
        dy = torch.rand(1, c, size, size) * 2 - 1

        def step():
            x.grad = None
            g.grad = None
            F.grid_sample(x, g, mode="bilinear", padding_mode="border", align_corners=False).backward(dy)
        return timeit(step, runs)
    if want("sampler_fwd_bwd/2d/c256/32x32"):
        out["sampler_fwd_bwd/2d/c256/32x32"] = sampler(256, 32)
    if want("sampler_fwd_bwd/2d/c1/128x128"):
        out["sampler_fwd_bwd/2d/c1/128x128"] = sampler(1, 128)
    tg = ref.TPSGrid(6, 32, 32)
    d = ((torch.rand(1, 36, 2) * 2 - 1) * 0.1).requires_grad_(True)
    dg = torch.rand(1, 32, 32, 2)

    def tps_step():
        d.grad = None
        tg(d).backward(dg)
    if want("tps_grid_fwd_bwd/2d/6x6/32x32"):
        out["tps_grid_fwd_bwd/2d/6x6/32x32"] = timeit(tps_step, runs)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--filter", default=".",
                    help="regex on the case names (the reference NMI at 64^3 alone takes about 10 min)")
    a = ap.parse_args()
    binaries = [os.path.join(a.build, "benchmarks", b) for b in ("bench_loss", "bench_tps")]
    for binary in binaries:
        if not os.path.exists(binary):
            sys.exit(f"compare_torch_extra: {binary} not found: configure with -DDICYC_BUILD_BENCHMARKS=ON "
                     f"and build the targets bench_loss and bench_tps")
    anchor.check("compare_torch_extra")
    torch.set_num_threads(a.threads)
    ours_ms, torch_ms = {}, {}
    for _ in range(a.repeats):
        env = dict(os.environ, DICYC_BENCH_THREADS=str(a.threads))
        for binary in binaries:
            res = subprocess.run([binary, "--benchmark_format=json", "--benchmark_min_time=0.5",
                                  "--benchmark_filter=" + a.filter], env=env,
                                 capture_output=True, text=True, check=True)
            if not res.stdout.lstrip().startswith("{"):
                continue  # the filter matched none of this binary's benchmarks
            for b in json.loads(res.stdout)["benchmarks"]:
                name = b["name"].replace("loss_bench/", "").replace("sampler/", "").replace("/real_time", "")
                scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
                ours_ms.setdefault(name, []).append(b["real_time"] * scale)
        for k, v in torch_times(a.runs, a.filter).items():
            torch_ms.setdefault(k, []).append(v)
    print("anchor: " + anchor.describe(a.threads))
    print(f"{'case':32s} {'dicyc ms':>9s} {'torch ms':>9s} {'dicyc/torch':>12s}")
    for k in torch_ms:
        if k not in ours_ms:
            continue
        ratios = [o / t for o, t in zip(ours_ms[k], torch_ms[k])]
        print(f"{k:32s} {statistics.median(ours_ms[k]):9.3f} {statistics.median(torch_ms[k]):9.3f} "
              f"{statistics.median(ratios):12.2f}")
    print("(time ratio: below 1 means dicyc is faster; median over", a.repeats, "alternating repeats,",
          a.threads, "threads)")


if __name__ == "__main__":
    main()
