#!/usr/bin/env python3
"""dicyc-train's per-iteration time under several environments, alternated, at the demo's widths.

    python3 benchmarks/train_env_ab.py --build build/dev --dim 2 --rounds 3 --iters 60 \
        --env default:GOMP_SPINCOUNT=300000 --env spin1000:GOMP_SPINCOUNT=1000

Each round runs CycleGAN and NMI-DiCyc, in float and with --precision bf16, once under every
environment (the order reversed on odd rounds, so a drift of the machine's speed does not favour
one); the time per iteration is the median difference of losses.csv's 'seconds' column after the
first 10 iterations (the loader, the sampler and the augmentation included), as in
compare_models.py --train. Prints every run and, per case, the median of the rounds and the rounds.
GOMP_SPINCOUNT and OMP_WAIT_POLICY are removed from the inherited environment first, so an
environment that names neither gets what the tool does by itself (core/openmp_env.hpp).
Widths: 2-D 96^2 at 1 mm, 3-D 48^3 at 2.5 mm, ngf 16, 4 blocks, ndf 32, 2 threads, on the demo's
ch2 (A) and ch2bet (B) volumes (scripts/fetch_data.sh).
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "dev"), help="build folder (examples/dicyc-train)")
    ap.add_argument("--dim", type=int, choices=(2, 3), default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=60, help="iterations per run (the first 10 are not timed)")
    ap.add_argument("--env", action="append", required=True, metavar="NAME:VAR=VALUE[,VAR=VALUE]",
                    help="an environment to time; NAME alone: the inherited one (less the two OpenMP variables)")
    ap.add_argument("--models", default="cyclegan,nmi-dicyc")
    ap.add_argument("--precisions", default="float,bf16")
    a = ap.parse_args()
    if a.iters < 13:
        sys.exit("train_env_ab: --iters must be at least 13 (the first 10 are not timed)")
    exe = os.path.join(a.build, "examples", "dicyc-train")
    if not os.access(exe, os.X_OK):
        sys.exit("train_env_ab: no dicyc-train in %s/examples: build it first" % a.build)
    data = [os.path.join(ROOT, "data", "mricron", f) for f in ("ch2.nii.gz", "ch2bet.nii.gz")]
    for f in data:
        if not os.path.exists(f):
            sys.exit("train_env_ab: %s is missing: run scripts/fetch_data.sh" % f)
    envs = []
    for spec in a.env:
        name, _, rest = spec.partition(":")
        extra = {}
        for kv in filter(None, rest.split(",")):
            k, eq, v = kv.partition("=")
            if not eq:
                sys.exit("train_env_ab: --env %s: expected VAR=VALUE, got '%s'" % (spec, kv))
            extra[k] = v
        envs.append((name, extra))
    res = {}
    for r in range(a.rounds):
        for model in a.models.split(","):
            for prec in a.precisions.split(","):
                for name, extra in (envs if r % 2 == 0 else envs[::-1]):
                    env = dict(os.environ)
                    env.pop("GOMP_SPINCOUNT", None)
                    env.pop("OMP_WAIT_POLICY", None)
                    env.update(extra)
                    with tempfile.TemporaryDirectory() as tmp:
                        cmd = [exe, "-a", data[0], "-b", data[1], "--model", model, "--dim", str(a.dim),
                               "--crop", "96" if a.dim == 2 else "48", "--spacing", "1" if a.dim == 2 else "2.5",
                               "--ngf", "16", "--blocks", "4", "--ndf", "32", "--threads", "2", "--max-iters",
                               str(a.iters), "--checkpoint-every", "1000000", "--sample-every", "0", "--log-every",
                               "1000000", "--out", tmp, "--seed", "1", "--precision", prec]
                        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                        with open(os.path.join(tmp, "losses.csv")) as f:
                            t = [float(x["seconds"]) for x in csv.DictReader(f)]
                    ms = 1e3 * statistics.median([y - x for x, y in zip(t[10:], t[11:])])
                    res.setdefault((model, prec, name), []).append(ms)
                    print(r, model, prec, name, "%.1f" % ms, flush=True)
    print("| %d-D case | environment | ms per iteration, median | rounds |" % a.dim)
    print("|---|---|---|---|")
    for (model, prec, name), v in sorted(res.items()):
        print("| %s %s | %s | %.1f | %s |" % (model, prec, name, statistics.median(v), ", ".join("%.0f" % x for x in v)))


if __name__ == "__main__":
    main()
