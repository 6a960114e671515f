#!/usr/bin/python3
"""dicyc's network and CycleGAN benchmarks next to the PyTorch reference: time ratios and peak memory.

    /usr/bin/python3 benchmarks/compare_models.py [--build build/bench] [--threads 2] [--size 128] [--repeats 3]

Times (median of each side's runs; both sides 2 threads, batch 1, one channel, --size^2):
  G_fwd, G_fwd_bwd, D_fwd_bwd   torch_reference.py's Generator / patchgan70, timed here in-process
                                with its own timeit() (as its bench_models does, minus the volume)
  cyclegan_step                 torch_reference.bench_cyclegan
  dicyc_step                    torch_reference.bench_dicyc (em "single")
against bench_model's benchmarks of the same names. The comparison is repeated --repeats times,
alternating the two, and the median ratio (dicyc / PyTorch; below 1 means dicyc is faster) reported.

Peak memory: each side runs its CycleGAN, then its DiCyc, iterations alone in a child process (ours: bench_model
--benchmark_filter=cyclegan_step; PyTorch: torch_reference.py --only cyclegan) and the child's
maximum resident set size is read from wait4(), before this script imports torch (a child's
maximum RSS starts at its parent's size at fork). The baselines (bench_model running nothing; Python
after `import torch`) are measured the same way and reported, so the models' own footprints can be
compared too.
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
REF = os.path.join(ROOT, "..", "shared", "bench", "torch_reference.py")
NAMES = ["G_fwd", "G_fwd_bwd", "D_fwd_bwd", "cyclegan_step", "dicyc_step"]


def load_ref():
    spec = importlib.util.spec_from_file_location("torch_reference", REF)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    return ref


def torch_times(ref, size, runs):
    import torch
    out = {}
    x = torch.randn(1, 1, size, size)
    G = ref.Generator()
    G.apply(ref.init_normal)
    D = ref.patchgan70()
    D.apply(ref.init_normal)
    with torch.no_grad():
        out["G_fwd"] = ref.timeit(lambda: G(x), runs)["median_ms"]

    def gfb():
        G.zero_grad(set_to_none=True)
        G(x).mean().backward()
    out["G_fwd_bwd"] = ref.timeit(gfb, runs)["median_ms"]

    def dfb():
        D.zero_grad(set_to_none=True)
        D(x).mean().backward()
    out["D_fwd_bwd"] = ref.timeit(dfb, runs)["median_ms"]
    out["cyclegan_step"] = ref.bench_cyclegan(size, max(3, runs // 2))["median_ms"]
    out["dicyc_step"] = ref.bench_dicyc(size, 3)["median_ms"]
    return out


def ours_times(binary, env):
    res = subprocess.run([binary, "--benchmark_format=json", "--benchmark_min_time=1",
                          "--benchmark_filter=^(G_fwd|G_fwd_bwd|D_fwd_bwd|cyclegan_step|dicyc_step)/"], env=env,
                         capture_output=True, text=True, check=True)
    data = json.loads(res.stdout)
    return {b["name"].replace("/real_time", ""): b["real_time"] for b in data["benchmarks"]}


def peak_rss_mib(cmd, env):
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        raise RuntimeError("%s failed with status %d" % (cmd, status))
    return ru.ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    binary = os.path.join(a.build, "benchmarks", "bench_model")
    env = dict(os.environ, DICYC_BENCH_THREADS=str(a.threads), DICYC_BENCH_SIZE=str(a.size))
    # Memory first, while this process is small: a child's maximum RSS starts at its parent's RSS
    # at fork time (Linux keeps the high-water mark across exec).
    peaks = {}
    for model, filt in (("cyclegan", "cyclegan_step"), ("dicyc", "dicyc_step")):
        peaks[model] = (peak_rss_mib([binary, "--benchmark_filter=^%s/" % filt, "--benchmark_min_time=1"], env),
                        peak_rss_mib([sys.executable, REF, "--threads", str(a.threads), "--size", str(a.size), "--only",
                                      model, "--runs", "2"], env))
    ours_base = peak_rss_mib([binary, "--benchmark_filter=^$"], env)
    torch_base = peak_rss_mib([sys.executable, "-c", "import torch, torch.nn"], env)
    import torch
    torch.set_num_threads(a.threads)
    ref = load_ref()
    ratios = {k: [] for k in NAMES}
    last = {}
    for r in range(a.repeats):
        ours = ours_times(binary, env)
        theirs = torch_times(ref, a.size, a.runs)
        for k in NAMES:
            ratios[k].append(ours[k] / theirs[k])
        last = {k: (ours[k], theirs[k]) for k in NAMES}
        print("repeat %d: %s" % (r + 1, ", ".join("%s %.2f" % (k, ratios[k][-1]) for k in NAMES)), file=sys.stderr)
    print("| benchmark (%dx%d, %d threads) | dicyc ms | PyTorch ms | ratio (median of %d) |" % (
        a.size, a.size, a.threads, a.repeats))
    print("|---|---|---|---|")
    for k in NAMES:
        print("| %s | %.1f | %.1f | %.2f |" % (k, last[k][0], last[k][1], statistics.median(ratios[k])))
    print()
    print("DiCyc / CycleGAN iteration time: dicyc %.2f, PyTorch %.2f" % (
        last["dicyc_step"][0] / last["cyclegan_step"][0], last["dicyc_step"][1] / last["cyclegan_step"][1]))
    print()
    print("| peak resident memory of training | dicyc MiB | PyTorch MiB | ratio |")
    print("|---|---|---|---|")
    for model in ("cyclegan", "dicyc"):
        o, t = peaks[model]
        print("| %s, whole process | %.0f | %.0f | %.2f |" % (model, o, t, o / t))
        print("| %s, above the idle process (%.0f / %.0f MiB) | %.0f | %.0f | %.2f |" % (
            model, ours_base, torch_base, o - ours_base, t - torch_base, (o - ours_base) / (t - torch_base)))

if __name__ == "__main__":
    main()
