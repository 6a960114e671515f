#!/usr/bin/python3
"""dicyc's network and CycleGAN benchmarks next to the PyTorch reference: time ratios and peak memory.

    PY benchmarks/compare_models.py [--build build/bench] [--threads 2] [--size 128] [--repeats 3]
    PY benchmarks/compare_models.py --dim 3 [--size 64] [--ngf 16] [--blocks 3] [--ndf 32]
    the demo's widths:  --size 96 --ngf 16 --blocks 4 --ndf 32   (3-D: --dim 3 --size 48 --ngf 16 --blocks 4 --ndf 32)
    --bf16-anchor       a second PyTorch column under torch.autocast("cpu", torch.bfloat16)
    --dicyc-bf16        dicyc with bf16 convolutions as well (DICYC_CONV_BF16=1, what dicyc-train
                        --precision bf16 runs), against PyTorch under autocast and in float
                        (implies --bf16-anchor)
    --train BIN_DIR     dicyc-train's per-iteration time (losses.csv) at the same widths, beside the step's

PY is the anchor's interpreter: build/torch-venv/bin/python (scripts/torch_venv.sh, the current
PyTorch from PyPI) or /usr/bin/python3 (Debian's 1.13 with OpenBLAS). The anchor is checked first
(benchmarks/anchor.py: the reference BLAS is refused) and named above the tables.

2-D (the spec's ResNet-6 generator, ngf 64, 70x70 PatchGAN):

Times (median of each side's runs; both sides 2 threads, batch 1, one channel, --size^2):
  G_fwd, G_fwd_bwd, D_fwd_bwd   torch_reference.py's Generator / patchgan70, timed here in-process
                                with its own timeit() (as its bench_models does, minus the volume)
  cyclegan_step                 torch_reference.bench_cyclegan
  dicyc_step                    torch_reference.bench_dicyc (em "single")
against bench_model's benchmarks of the same names.
3-D (--dim 3): benchmarks/torch_reference3d.py's G3_fwd, G3_fwd_bwd, D3_fwd_bwd, cyclegan3_step and
dicyc3_step (a cube of --size, --ngf, --blocks, --ndf) against bench_model3d's. The comparison is repeated --repeats times,
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
REF = os.path.join(HERE, "torch_reference.py")
REF3 = os.path.join(HERE, "torch_reference3d.py")
NAMES = ["G_fwd", "G_fwd_bwd", "D_fwd_bwd", "cyclegan_step", "dicyc_step"]
NAMES3 = ["G3_fwd", "G3_fwd_bwd", "D3_fwd_bwd", "cyclegan3_step", "dicyc3_step"]
sys.path.insert(0, HERE)
import anchor  # noqa: E402


def load_ref():
    spec = importlib.util.spec_from_file_location("torch_reference", REF)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    return ref


def torch_times(ref, a, precision="float"):
    import torch
    ref.set_precision(precision)
    out = {}
    x = torch.randn(1, 1, a.size, a.size)
    G = ref.Generator(ngf=a.ngf, n_blocks=a.blocks)
    G.apply(ref.init_normal)
    D = ref.patchgan70(ndf=a.ndf)
    D.apply(ref.init_normal)
    with torch.no_grad():
        out["G_fwd"] = ref.timeit(lambda: G(x), a.runs)["median_ms"]

    def gfb():
        G.zero_grad(set_to_none=True)
        G(x).mean().backward()
    out["G_fwd_bwd"] = ref.timeit(gfb, a.runs)["median_ms"]

    def dfb():
        D.zero_grad(set_to_none=True)
        D(x).mean().backward()
    out["D_fwd_bwd"] = ref.timeit(dfb, a.runs)["median_ms"]
    widths = dict(size=a.size, ngf=a.ngf, blocks=a.blocks, ndf=a.ndf)
    out["cyclegan_step"] = ref.bench_cyclegan(argparse.Namespace(runs=max(3, a.runs // 2), **widths))["median_ms"]
    out["dicyc_step"] = ref.bench_dicyc(argparse.Namespace(runs=3, **widths))["median_ms"]
    ref.set_precision("float")
    return out


def torch_times3(a, precision="float"):
    res = subprocess.run([sys.executable, REF3, "--threads", str(a.threads), "--size", str(a.size), "--ngf", str(a.ngf),
                          "--blocks", str(a.blocks), "--ndf", str(a.ndf), "--runs", str(a.runs3),
                          "--precision", precision], capture_output=True, text=True, check=True)
    data = json.loads(res.stdout)
    return {k: data[k]["median_ms"] for k in NAMES3}


def train_times(a, three, precision="float"):
    """dicyc-train's own per-iteration time at the benchmark's widths (from its losses.csv, whose 'seconds'
    column counts from the start of the loop: the median difference between rows after the first 10
    iterations; the loader, the sampler and the augmentation included), CycleGAN and NMI-DiCyc, on ch2
    (A) and ch2bet (B), with --precision `precision`."""
    import csv
    import tempfile
    out = {}
    exe = os.path.join(a.train, "dicyc-train")
    if not os.access(exe, os.X_OK):
        sys.exit("compare_models: --train %s: no dicyc-train there" % a.train)
    da, db = a.train_data.split(",")
    for model, key in (("cyclegan", 3), ("nmi-dicyc", 4)):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [exe, "-a", da, "-b", db, "--model", model, "--dim", "3" if three else "2", "--crop", str(a.size),
                   "--spacing", "2.5" if three else "1", "--ngf", str(a.ngf), "--blocks", str(a.blocks), "--ndf",
                   str(a.ndf), "--threads", str(a.threads), "--max-iters", str(a.train_iters), "--checkpoint-every",
                   str(10 ** 6), "--sample-every", "0", "--log-every", str(10 ** 6), "--out", tmp, "--seed", "1",
                   "--precision", precision]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            with open(os.path.join(tmp, "losses.csv")) as f:
                t = [float(r["seconds"]) for r in csv.DictReader(f)]  # since the loop began, per row
        per = [b - a for a, b in zip(t[10:], t[11:])]
        out[(NAMES3 if three else NAMES)[key]] = 1e3 * statistics.median(per)
    return out


def ours_times(binary, env, names, min_time):
    # An untimed warm-up first, as the PyTorch side has (timeit(..., warmup=1)): without it a
    # 3-D case at --benchmark_min_time=0.1 times a single iteration, the first, which pays for
    # creating and JIT-compiling the oneDNN primitives and filling the caching allocator.
    res = subprocess.run([binary, "--benchmark_format=json", "--benchmark_min_time=%g" % min_time,
                          "--benchmark_min_warmup_time=%g" % min(min_time, 0.5),
                          "--benchmark_filter=^(%s)/" % "|".join(names)], env=env,
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
    ap.add_argument("--dim", type=int, choices=(2, 3), default=2)
    ap.add_argument("--ngf", type=int, default=None, help="generator width (2-D: the spec's 64; 3-D: 16; the demo: 16)")
    ap.add_argument("--blocks", type=int, default=None, help="residual blocks (2-D: 6; 3-D: 3; the demo: 4)")
    ap.add_argument("--ndf", type=int, default=None, help="PatchGAN width (2-D: 64; 3-D: 32; the demo: 32)")
    ap.add_argument("--runs3", type=int, default=3, help="3-D: timed runs per PyTorch case")
    ap.add_argument("--bf16-anchor", action="store_true",
                    help="also time PyTorch under torch.autocast('cpu', torch.bfloat16), a second anchor column")
    ap.add_argument("--dicyc-bf16", action="store_true",
                    help="also time dicyc with bf16 convolutions (DICYC_CONV_BF16=1); implies --bf16-anchor")
    ap.add_argument("--train", default=None, metavar="BIN_DIR",
                    help="also run dicyc-train (from BIN_DIR) at these widths and report its per-iteration time")
    ap.add_argument("--train-data", default=os.path.join(ROOT, "data", "mricron", "ch2.nii.gz") + "," +
                    os.path.join(ROOT, "data", "mricron", "ch2bet.nii.gz"), help="A,B volumes for --train")
    ap.add_argument("--train-iters", type=int, default=60)
    a = ap.parse_args()
    if a.dicyc_bf16:
        a.bf16_anchor = True
    if a.dim == 3 and a.size == 128:
        a.size = 64
    for k, two, three_d in (("ngf", 64, 16), ("blocks", 6, 3), ("ndf", 64, 32)):
        if getattr(a, k) is None:
            setattr(a, k, three_d if a.dim == 3 else two)
    anchor.check_in_child("compare_models")
    three = a.dim == 3
    names = NAMES3 if three else NAMES
    binary = os.path.join(a.build, "benchmarks", "bench_model3d" if three else "bench_model")
    if not os.path.exists(binary):
        sys.exit("compare_models: %s not found: build it first (cmake --build %s --target %s)"
                 % (binary, a.build, os.path.basename(binary)))
    env = dict(os.environ, DICYC_BENCH_THREADS=str(a.threads), DICYC_BENCH_SIZE=str(a.size))
    env.update(DICYC_BENCH_NGF=str(a.ngf), DICYC_BENCH_BLOCKS=str(a.blocks), DICYC_BENCH_NDF=str(a.ndf))
    shape = ("3-D %d^3" % a.size if three else "2-D %dx%d" % (a.size, a.size)) + \
        ", ngf %d, %d blocks, ndf %d" % (a.ngf, a.blocks, a.ndf)
    # Memory first, while this process is small: a child's maximum RSS starts at its parent's RSS
    # at fork time (Linux keeps the high-water mark across exec).
    peaks = {}
    for model, filt in (("cyclegan", names[3]), ("dicyc", names[4])):
        if three:
            theirs_cmd = [sys.executable, REF3, "--threads", str(a.threads), "--size", str(a.size), "--ngf", str(a.ngf),
                          "--blocks", str(a.blocks), "--ndf", str(a.ndf), "--only", model, "--runs", "1"]
        else:
            theirs_cmd = [sys.executable, REF, "--threads", str(a.threads), "--size", str(a.size), "--ngf", str(a.ngf),
                          "--blocks", str(a.blocks), "--ndf", str(a.ndf), "--only", model, "--runs", "2"]
        peaks[model] = (peak_rss_mib([binary, "--benchmark_filter=^%s/" % filt, "--benchmark_min_time=1"], env),
                        peak_rss_mib(theirs_cmd, env))
    ours_base = peak_rss_mib([binary, "--benchmark_filter=^$"], env)
    torch_base = peak_rss_mib([sys.executable, "-c", "import torch, torch.nn"], env)
    import torch
    torch.set_num_threads(a.threads)
    ref = None if three else load_ref()
    ratios = {k: [] for k in names}
    ours_all = {k: [] for k in names}
    theirs_all = {k: [] for k in names}
    bf16_all = {k: [] for k in names}
    bf16_ratios = {k: [] for k in names}
    ob16_all = {k: [] for k in names}
    ob16_vs_bf16 = {k: [] for k in names}
    ob16_vs_float = {k: [] for k in names}
    env_b16 = dict(env, DICYC_CONV_BF16="1")
    train_all = {}
    for r in range(a.repeats):
        ours = ours_times(binary, env, names, 0.1 if three else 1)
        theirs = torch_times3(a) if three else torch_times(ref, a)
        for k in names:
            ratios[k].append(ours[k] / theirs[k])
            ours_all[k].append(ours[k])
            theirs_all[k].append(theirs[k])
        if a.bf16_anchor:
            tb = torch_times3(a, "bf16") if three else torch_times(ref, a, "bf16")
            for k in names:
                bf16_all[k].append(tb[k])
                bf16_ratios[k].append(ours[k] / tb[k])
            if a.dicyc_bf16:
                ob = ours_times(binary, env_b16, names, 0.1 if three else 1)
                for k in names:
                    ob16_all[k].append(ob[k])
                    ob16_vs_bf16[k].append(ob[k] / tb[k])
                    ob16_vs_float[k].append(ob[k] / theirs[k])
        if a.train:
            for prec in ("float", "bf16") if a.dicyc_bf16 else ("float",):
                for k, v in train_times(a, three, prec).items():
                    train_all.setdefault((k, prec), []).append(v)
        print("repeat %d: %s" % (r + 1, ", ".join("%s %.2f" % (k, ratios[k][-1]) for k in names)), file=sys.stderr)
    med = statistics.median

    def spread(v):
        return "%.2f-%.2f" % (min(v), max(v))
    print("anchor: " + anchor.describe(a.threads))
    print("cpu: " + anchor.cpu_model())
    print()
    head = "| benchmark (%s, batch 1, %d threads) | dicyc float ms | PyTorch float ms | dicyc/PyTorch (median of %d; range) |" % (
        shape, a.threads, a.repeats)
    line = "|---|---|---|---|"
    if a.bf16_anchor:
        head += " PyTorch bf16 autocast ms | dicyc float / PyTorch bf16 (range) |"
        line += "---|---|"
    if a.dicyc_bf16:
        head += " dicyc bf16 ms | dicyc bf16 / PyTorch bf16 (range) | dicyc bf16 / PyTorch float (range) |"
        line += "---|---|---|"
    print(head)
    print(line)
    for k in names:
        row = "| %s | %.1f | %.1f | %.2f (%s) |" % (k, med(ours_all[k]), med(theirs_all[k]), med(ratios[k]), spread(ratios[k]))
        if a.bf16_anchor:
            row += " %.1f | %.2f (%s) |" % (med(bf16_all[k]), med(bf16_ratios[k]), spread(bf16_ratios[k]))
        if a.dicyc_bf16:
            row += " %.1f | %.2f (%s) | %.2f (%s) |" % (med(ob16_all[k]), med(ob16_vs_bf16[k]), spread(ob16_vs_bf16[k]),
                                                      med(ob16_vs_float[k]), spread(ob16_vs_float[k]))
        print(row)
    for (k, prec), v in sorted(train_all.items()):
        what = "| dicyc-train %s%s, per iteration from losses.csv (median over %d iterations; range of repeats) |" % (
            k.replace("_step", "").replace("3", ""), " --precision bf16" if prec == "bf16" else "", a.train_iters - 11)
        if prec == "float":
            print(what + " %.1f (%.1f-%.1f) | %.1f | %.2f |" % (med(v), min(v), max(v), med(theirs_all[k]),
                                                              med(v) / med(theirs_all[k]))
                  + (" | |" if a.bf16_anchor else "") + (" | | |" if a.dicyc_bf16 else ""))
        else:  # in the dicyc bf16 columns
            print(what + " | %.1f | | %.1f | | %.1f (%.1f-%.1f) | %.2f | %.2f |" % (
                med(theirs_all[k]), med(bf16_all[k]), med(v), min(v), max(v), med(v) / med(bf16_all[k]),
                med(v) / med(theirs_all[k])))
    print()
    print("DiCyc / CycleGAN iteration time: dicyc %.2f, PyTorch %.2f" % (
        med(ours_all[names[4]]) / med(ours_all[names[3]]), med(theirs_all[names[4]]) / med(theirs_all[names[3]])))
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
