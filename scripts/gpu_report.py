#!/usr/bin/env python3
"""The GPU check's report (scripts/gpu_check.sh run), from its step table, logs and runs.

    gpu_report.py compare DEVICE.nii.gz CPU.nii.gz OUT.json
        the device's synthesis against the CPU's from the same checkpoint: maximum and mean
        absolute difference, relative to the CPU output's range; exit 1 when the maximum passes
        1 % of the range or the mean 0.1 %.
    gpu_report.py report OUT COMMIT DRY
        OUT/gpu_report.md and OUT/results.json: the steps (status, seconds, note), each training
        run's checks (every loss finite; the cycle losses' mean over the last fifth of the logged
        iterations below their mean over the first fifth) and its seconds per iteration (from
        losses.csv, the first 10 iterations left out), the synthesis comparison, and dicyc-bench
        beside PyTorch on the same device (ratio; GFLOP/s where PyTorch counted the step's FLOPs,
        and the share of the H200's peak when the GPU is one). Exit 3 when a training check fails
        (in a dry run only for a non-finite loss: a dozen tiny iterations need not lower a loss).
Only numpy and the repository's own Python package (python/, imported from the tree) are needed.
"""
import csv
import glob
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))

# NVIDIA's H200 (SXM) datasheet: FP32 67 TFLOP/s; TF32 Tensor Core 494.7 TFLOP/s dense (989 with sparsity).
H200_FP32, H200_TF32 = 67e12, 494.7e12


def compare(dev, cpu, out):
    import numpy as np
    from dicyc.volume import read_nifti
    a, b = read_nifti(dev).data, read_nifti(cpu).data
    if a.shape != b.shape:
        print("shapes differ: %s vs %s" % (a.shape, b.shape))
        return 1
    d = np.abs(a.astype(np.float64) - b)
    rng = float(b.max() - b.min()) or 1.0
    res = {"max_abs": float(d.max()), "mean_abs": float(d.mean()), "cpu_range": rng,
           "max_rel": float(d.max()) / rng, "mean_rel": float(d.mean()) / rng}
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res))
    return 0 if res["max_rel"] <= 1e-2 and res["mean_rel"] <= 1e-3 else 1


def losses_check(path):
    rows = list(csv.DictReader(open(path)))
    if not rows:
        return {"ok": False, "why": "no rows"}
    finite = all(math.isfinite(float(v)) for r in rows for k, v in r.items() if k not in ("seconds",))
    k = max(1, len(rows) // 5)
    cyc = [float(r["cyc_a"]) + float(r["cyc_b"]) for r in rows]
    first, last = sum(cyc[:k]) / k, sum(cyc[-k:]) / k
    n0 = min(10, len(rows) - 1)
    it0, it1 = int(rows[n0]["iteration"]), int(rows[-1]["iteration"])
    s0, s1 = float(rows[n0]["seconds"]), float(rows[-1]["seconds"])
    per = (s1 - s0) / (it1 - it0) if it1 > it0 else float("nan")
    ok = finite and last < first
    return {"ok": ok, "iterations": int(rows[-1]["iteration"]), "finite": finite, "cycle_first": first,
            "cycle_last": last, "seconds_per_iteration": per,
            "why": "" if ok else ("a non-finite loss" if not finite else "the cycle losses did not fall")}


def last_json(path):
    try:
        for line in reversed(open(path).read().splitlines()):
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                return json.loads(line)
    except (OSError, ValueError):
        pass
    return None


def report(out, commit, dry):
    dry = dry == "1"
    steps = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "steps.tsv")) if l.strip()]
    res = {"commit": commit, "dry_run": dry, "steps": [], "training": {}, "bench": {}, "torch": {}, "synth": None}
    md = ["# GPU check%s" % (" (dry run on the CPU: tiny sizes, the script's own test)" if dry else ""), "",
          "Commit `%s`; produced by `scripts/gpu_check.sh run`." % commit, ""]
    smi = os.path.join(out, "logs", "nvidia-smi.log")
    gpu_name = ""
    if os.path.exists(smi):
        text = open(smi).read()
        for line in text.splitlines():
            if "H200" in line or "H100" in line or "NVIDIA" in line and "|" in line and "MiB" not in line:
                gpu_name = gpu_name or line.strip(" |")
        md += ["```", "\n".join(text.splitlines()[:12]), "```", ""]
    md += ["## Steps", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    for s in steps:
        name, st, secs, note = (s + ["", "", "", ""])[:4]
        res["steps"].append({"name": name, "status": st, "seconds": float(secs or 0), "note": note})
        md.append("| %s | %s | %s | %s |" % (name, st, secs, note.replace("|", "/")))
    md += ["", "## Training on the device", "",
           "| run | iterations | losses finite | cycle loss, first fifth -> last fifth | s / iteration | check |",
           "|---|---|---|---|---|---|"]
    failed = 0
    for path in sorted(glob.glob(os.path.join(out, "runs", "*", "losses.csv"))):
        run = os.path.basename(os.path.dirname(path))
        c = losses_check(path)
        res["training"][run] = c
        # A dry run's dozen tiny iterations need not lower the cycle loss; finite losses they must have.
        failed += 0 if c["ok"] or (dry and c.get("finite")) else 1
        md.append("| %s | %s | %s | %.4f -> %.4f | %.4f | %s |" % (
            run, c.get("iterations", 0), c.get("finite"), c.get("cycle_first", float("nan")),
            c.get("cycle_last", float("nan")), c.get("seconds_per_iteration", float("nan")),
            "ok" if c["ok"] else "FAIL: " + c["why"]))
    sc = os.path.join(out, "synth_compare.json")
    if os.path.exists(sc):
        res["synth"] = json.load(open(sc))
        s = res["synth"]
        md += ["", "## Synthesis of ch2, device against CPU (same checkpoint)", "",
               "max |difference| %.4g (%.2e of the CPU output's range), mean %.4g (%.2e)." % (
                   s["max_abs"], s["max_rel"], s["mean_abs"], s["mean_rel"])]
    md += ["", "## Per-iteration time: dicyc against PyTorch on the same device", "",
           "dicyc: `dicyc-bench` (median of its timed iterations; a step includes the return of its losses). "
           "PyTorch: `benchmarks/torch_reference*.py --device %s` (the same networks from the Python package%s)."
           % ("cpu" if dry else "cuda", "" if dry else ", cuDNN with its defaults, TF32 convolutions included, as users "
              "run it"), "",
           "| case | dicyc ms | PyTorch ms | dicyc / PyTorch | step GFLOP (PyTorch's count) | dicyc GFLOP/s | PyTorch GFLOP/s |",
           "|---|---|---|---|---|---|---|"]
    for dim in (2, 3):
        tj = os.path.join(out, "torch_%dd.json" % dim)
        torch = json.load(open(tj)) if os.path.exists(tj) else {}
        res["torch"]["%dd" % dim] = torch
        for model, key in (("cyclegan", "cyclegan"), ("nmi-dicyc", "dicyc")):
            b = last_json(os.path.join(out, "logs", "bench_%dd_%s.log" % (dim, model)))
            res["bench"]["%dd_%s" % (dim, model)] = b
            t = torch.get("%s%s_step" % (key, "3" if dim == 3 else ""))
            ours = b["train_step"]["median_ms"] if b else float("nan")
            theirs = t["median_ms"] if t else float("nan")
            flops = t.get("flops") if t else None
            g_ours = flops / ours / 1e6 if flops and ours == ours else float("nan")
            g_theirs = flops / theirs / 1e6 if flops and theirs == theirs else float("nan")
            label = "%d-D %s" % (dim, model) + ((" (%s^%d, ngf %s)" % (b["size"], dim, b["ngf"])) if b else "")
            md.append("| %s | %.2f | %.2f | %.2f | %s | %.0f | %.0f |" % (
                label, ours, theirs, ours / theirs if theirs == theirs and theirs else float("nan"),
                "%.1f" % (flops / 1e9) if flops else "-", g_ours, g_theirs))
    if not dry:
        md += ["", "Peak of an H200 (SXM, NVIDIA's datasheet): FP32 %.0f TFLOP/s, TF32 tensor cores %.1f TFLOP/s "
                   "dense. GPU: %s." % (H200_FP32 / 1e12, H200_TF32 / 1e12, gpu_name or "see nvidia-smi above")]
    md += ["", "Raw logs and losses: `logs.tar.gz` beside this report; every number above: `results.json`.", ""]
    with open(os.path.join(out, "gpu_report.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    print("\n".join(md))
    return 3 if failed else 0


def main(argv):
    if len(argv) == 4 and argv[0] == "compare":
        return compare(*argv[1:])
    if len(argv) == 4 and argv[0] == "report":
        return report(*argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
