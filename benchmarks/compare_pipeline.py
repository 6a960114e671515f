#!/usr/bin/python3
"""Whole-volume synthesis and the data loader, next to the PyTorch reference.

    PY benchmarks/compare_pipeline.py [--build build/bench] [--threads 2] [--repeats 2]

G_infer_volume: one generator (ngf 64, 6 blocks) over 181 axial slices of a ch2-sized volume, 8 slices per
call; torch_reference.py's definition, timed in this process with its timeit(), against bench_model's
G_infer_volume (which pads each slice to 184x220, as dicyc-synth does). Alternated --repeats times;
the median ratio is reported (dicyc / PyTorch; below 1 means dicyc is faster).

Loader: bench_data's per-batch sampling times against bench_model's training-step times: the loader
runs on its own thread, so it keeps up when sampling a batch takes less than a step.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REF = os.path.join(HERE, "torch_reference.py")
sys.path.insert(0, HERE)
import anchor  # noqa: E402  (the PyTorch anchor: checked, then named above the table)


def bench(binary, filt, env):
    res = subprocess.run([binary, "--benchmark_format=json", "--benchmark_filter=" + filt], env=env,
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return {b["name"].split("/")[0]: b["real_time"] for b in json.loads(res.stdout)["benchmarks"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--slices", type=int, default=181,
                    help="slices per volume on both sides (181 is ch2; PyTorch needs minutes per volume at 2 threads)")
    a = ap.parse_args()
    env = dict(os.environ, DICYC_BENCH_THREADS=str(a.threads), DICYC_BENCH_SLICES=str(a.slices))
    model_bin = os.path.join(a.build, "benchmarks", "bench_model")
    data_bin = os.path.join(a.build, "benchmarks", "bench_data")
    anchor.check("compare_pipeline")
    import torch
    torch.set_num_threads(a.threads)
    spec = importlib.util.spec_from_file_location("torch_reference", REF)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    G = ref.Generator()
    G.apply(ref.init_normal)
    vol = torch.randn(a.slices, 1, 181, 217)

    def infer():
        with torch.no_grad():
            for i in range(0, a.slices, 8):
                G(vol[i:i + 8])
    ratios, last = [], None
    for r in range(a.repeats):
        ours = bench(model_bin, "^G_infer_volume", env)["G_infer_volume"]
        theirs = ref.timeit(infer, 2, warmup=1)["median_ms"]
        ratios.append(ours / theirs)
        last = (ours, theirs)
        print("repeat %d: G_infer_volume %.0f ms vs %.0f ms (%.2f)" % (r + 1, ours, theirs, ratios[-1]), file=sys.stderr,
              flush=True)
    print("anchor: " + anchor.describe(a.threads))
    print()
    print("| benchmark (%d threads) | dicyc ms | PyTorch ms | ratio (median of %d) |" % (a.threads, a.repeats))
    print("|---|---|---|---|")
    print("| G_infer_volume (%d x 181x217) | %.0f | %.0f | %.2f |" % (a.slices, last[0], last[1], statistics.median(ratios)))
    d = bench(data_bin, ".", env)
    m = bench(model_bin, "^(cyclegan_step|dicyc_step)/", env)
    print()
    print("| loader: one batch | ms | | trainer: one step | ms | loader time / step time |")
    print("|---|---|---|---|---|---|")
    for s in ("sample_2d_128",):
        for k in ("cyclegan_step", "dicyc_step"):
            print("| %s | %.2f | | %s (128x128) | %.0f | %.3f |" % (s, d[s], k, m[k], d[s] / m[k]))
    print("| sample_3d_64 | %.2f | | | | |" % d["sample_3d_64"])
    if "prepare_ch2" in d:
        print("| prepare_ch2 (read, 1.8 mm, RAS+, normalise; once per volume) | %.0f | | | | |" % d["prepare_ch2"])


if __name__ == "__main__":
    main()
