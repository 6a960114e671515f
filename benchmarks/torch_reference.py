#!/usr/bin/python3
"""PyTorch reference for dicyc's speed comparisons: the same networks (the Python package's dicyc.nn,
wired as dicyc's C++ layers) and training steps, on the CPU.

    /usr/bin/python3 benchmarks/torch_reference.py --threads 2 --size 128 --runs 10 --json out.json
    build/torch-venv/bin/python benchmarks/torch_reference.py ...     (PyTorch 2.x from PyPI, scripts/torch_venv.sh)

It times, batch 1, single-channel images (--ngf, --blocks, --ndf: the widths; default the paper's 64, 6, 64):
  conv_3x3_256_32x32      one 3x3 conv 256->256 at 32x32, forward and forward+backward
  conv3d_3x3x3_32_32^3    one 3x3x3 conv 32->32 at 32^3, forward and forward+backward
  G_fwd / G_fwd_bwd       the ResNet generator
  D_fwd_bwd               the 70x70 PatchGAN
  cyclegan_step           one CycleGAN iteration (G step, then D step)
  dicyc_step              one DiCyc iteration (dicyc-spec section 5, EM "single"): undeformed + deformed
                          pass, one backward, E (STN) and M (generator) updates, D step; TPS STN on the
                          latent map, four shared-offset branches, NMI alignment loss, deformed cycle
  dicyc_step_sequential   the same with a separate E step first (--only dicyc_sequential)
  G_infer_volume          inference of one generator over 181 slices of 181x217 (a ch2-sized volume)

Each figure is the median of --runs timed runs after warm-up, with the minimum and maximum. The
anchor is refused when PyTorch runs on the reference BLAS (benchmarks/anchor.py). --device cuda
runs the same on a GPU (cuDNN, synchronised around every timed run); --flops adds each step's
floating-point operations (torch.utils.flop_counter, PyTorch >= 2.1) and GFLOP/s.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    import dicyc.nn as dnn  # the installed package (pip install ./python)
except ImportError:
    sys.path.insert(0, os.path.join(HERE, "..", "python"))
    import dicyc.nn as dnn

sys.path.insert(0, HERE)
import anchor  # noqa: E402

Generator, OffsetBranch, STN, TPSGrid = dnn.Generator, dnn.OffsetBranch, dnn.STN, dnn.TPSGrid
init_normal, gan_loss, nmi, set_rg = dnn.init_normal, dnn.gan_loss, dnn.nmi, dnn.set_requires_grad


def patchgan70(in_ch=1, ndf=64):
    return dnn.patchgan(in_ch, ndf, 3, dim=2)


def blas():
    return anchor.blas_libraries()


DEVICE = torch.device("cpu")


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


# --precision bf16: every timed call runs under torch.autocast(device, torch.bfloat16), as a user who
# turns autocast on has it (weights and optimiser state stay float; convolutions and matmuls run in
# bf16, norms and losses in float, as PyTorch's autocast lists decide).
AUTOCAST = None


def _call(fn):
    if AUTOCAST is None:
        return fn()
    with torch.autocast(DEVICE.type, dtype=AUTOCAST):
        return fn()


def timeit(fn, runs, warmup=2):
    for _ in range(warmup):
        _call(fn)
    ts = []
    for _ in range(runs):
        sync()
        t0 = time.perf_counter()
        _call(fn)
        sync()
        ts.append(time.perf_counter() - t0)
    return {"median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts), "max_ms": 1e3 * max(ts), "runs": runs}


def _conv_case(conv, x, runs):
    with torch.no_grad():
        fwd = timeit(lambda: conv(x), runs)

    def fb():
        x.grad = None
        conv.zero_grad(set_to_none=True)
        conv(x).sum().backward()
    return fwd, timeit(fb, runs)


def bench_convs(runs):
    out = {}
    cases = (("conv_3x3_256_32x32", torch.nn.Conv2d(256, 256, 3, padding=1, bias=False),
              torch.randn(1, 256, 32, 32, requires_grad=True), 256 * 256 * 9 * 32 * 32, runs * 5),
             ("conv3d_3x3x3_32_32^3", torch.nn.Conv3d(32, 32, 3, padding=1, bias=False),
              torch.randn(1, 32, 32, 32, 32, requires_grad=True), 32 * 32 * 27 * 32 ** 3, runs * 2))
    for key, conv, x, macs, n in cases:
        out[key + "_fwd"], out[key + "_fwd_bwd"] = _conv_case(conv, x, n)
        out[key + "_fwd"]["gflops"] = 2 * macs / out[key + "_fwd"]["median_ms"] / 1e6
        out[key + "_fwd_bwd"]["gflops"] = 6 * macs / out[key + "_fwd_bwd"]["median_ms"] / 1e6
    return out


def make_nets(a, offsets, generator=None, discriminator=None):
    """Both generators and discriminators at a's widths, initialised as dicyc does, on DEVICE
    (generator/discriminator: the 3-D constructors of torch_reference3d.py; default 2-D)."""
    generator, discriminator = generator or Generator, discriminator or patchgan70
    torch.manual_seed(0)
    G_ab = generator(ngf=a.ngf, n_blocks=a.blocks, offsets=offsets)
    G_ba = generator(ngf=a.ngf, n_blocks=a.blocks, offsets=offsets)
    D_a, D_b = discriminator(ndf=a.ndf), discriminator(ndf=a.ndf)
    for m in (G_ab, G_ba, D_a, D_b):
        m.apply(init_normal)
    for g in (G_ab, G_ba):
        dnn.zero_offsets(g)
    return tuple(m.to(DEVICE) for m in (G_ab, G_ba, D_a, D_b))


def rand(*shape):
    return torch.randn(*shape, device=DEVICE)


def count_flops(step):
    """Floating-point operations of one call of step (None where PyTorch cannot count them)."""
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops()


def with_flops(res, step, flops):
    if flops:
        n = count_flops(step)
        if n:
            res["flops"] = n
            res["gflops_per_s"] = n / res["median_ms"] / 1e6
    return res


def adam(params):
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def time_nets(G, D, x, runs, prefix="G", dprefix="D"):
    """A generator's forward and forward+backward, a discriminator's forward+backward, on x."""
    G.apply(init_normal)
    D.apply(init_normal)
    G, D = G.to(DEVICE), D.to(DEVICE)
    out = {}
    with torch.no_grad():
        out[prefix + "_fwd"] = timeit(lambda: G(x), runs)

    def gfb():
        G.zero_grad(set_to_none=True)
        G(x).mean().backward()
    out[prefix + "_fwd_bwd"] = timeit(gfb, runs)

    def dfb():
        D.zero_grad(set_to_none=True)
        D(x).mean().backward()
    out[dprefix + "_fwd_bwd"] = timeit(dfb, runs)
    return out, G


def bench_models(a):
    out, G = time_nets(Generator(ngf=a.ngf, n_blocks=a.blocks), patchgan70(ndf=a.ndf), rand(1, 1, a.size, a.size), a.runs)
    vol = rand(181, 1, 181, 217)

    def infer():
        with torch.no_grad():
            for i in range(0, 181, 8):
                G(vol[i:i + 8])
    out["G_infer_volume"] = timeit(infer, max(2, a.runs // 5), warmup=1)
    return out


def d_step(opt_d, D_a, D_b, x, y, fake_a, fake_b):
    """The discriminators' LSGAN step on the real images and the detached fakes."""
    set_rg([D_a, D_b], True)
    opt_d.zero_grad(set_to_none=True)
    ld = 0.5 * (gan_loss(D_b(y), True) + gan_loss(D_b(fake_b.detach()), False)) \
        + 0.5 * (gan_loss(D_a(x), True) + gan_loss(D_a(fake_a.detach()), False))
    ld.backward()
    opt_d.step()


def bench_cyclegan(a, shape=None, flops=False):
    G_ab, G_ba, D_a, D_b = make_nets(a, False)
    opt_g = adam(list(G_ab.parameters()) + list(G_ba.parameters()))
    opt_d = adam(list(D_a.parameters()) + list(D_b.parameters()))
    shape = shape or (1, 1, a.size, a.size)
    x, y = rand(*shape), rand(*shape)

    def step():
        fake_b, fake_a = G_ab(x), G_ba(y)
        rec_a, rec_b = G_ba(fake_b), G_ab(fake_a)
        set_rg([D_a, D_b], False)
        opt_g.zero_grad(set_to_none=True)
        loss = (gan_loss(D_b(fake_b), True) + gan_loss(D_a(fake_a), True)
                + 10 * F.l1_loss(rec_a, x) + 10 * F.l1_loss(rec_b, y))
        loss.backward()
        opt_g.step()
        d_step(opt_d, D_a, D_b, x, y, fake_a, fake_b)
    return with_flops(timeit(step, a.runs), step, flops)


def bench_dicyc(a, em="single", flops=False):
    """One DiCyc iteration. em="single": undeformed + deformed pass, one backward of the total loss, then
    the STN (E) and generator (M) optimisers step, then the D step; em="sequential": a separate E step first."""
    G_ab, G_ba, D_a, D_b = make_nets(a, True)
    S_ab, S_ba = STN(4 * a.ngf).to(DEVICE), STN(4 * a.ngf).to(DEVICE)
    opt_g = adam(list(G_ab.parameters()) + list(G_ba.parameters()))
    opt_s = adam(list(S_ab.parameters()) + list(S_ba.parameters()))
    opt_d = adam(list(D_a.parameters()) + list(D_b.parameters()))
    x, y = rand(1, 1, a.size, a.size), rand(1, 1, a.size, a.size)

    def deformed_terms(f_x, f_y):
        y_hat = G_ab.decode(S_ab(G_ab.encode(x, deformed=True), f_y))
        x_hat = G_ba.decode(S_ba(G_ba.encode(y, deformed=True), f_x))
        back_x = G_ba.decode(S_ba(G_ba.encode(y_hat, deformed=True), f_x))
        back_y = G_ab.decode(S_ab(G_ab.encode(x_hat, deformed=True), f_y))
        gan = gan_loss(D_b(y_hat), True) + gan_loss(D_a(x_hat), True)
        return gan, F.l1_loss(back_x, x) + F.l1_loss(back_y, y), y_hat, x_hat

    def step():
        set_rg([D_a, D_b], False)
        if em == "sequential":  # E step on its own passes: STNs only
            set_rg([G_ab, G_ba], False)
            opt_s.zero_grad(set_to_none=True)
            gan, dicyc, _, _ = deformed_terms(G_ab.encode(x), G_ba.encode(y))
            (gan + 10 * dicyc).backward()
            opt_s.step()
            set_rg([G_ab, G_ba], True)
            set_rg([S_ab, S_ba], False)
        opt_g.zero_grad(set_to_none=True)
        opt_s.zero_grad(set_to_none=True)
        f_x, f_y = G_ab.encode(x), G_ba.encode(y)
        y_til, x_til = G_ab.decode(f_x), G_ba.decode(f_y)
        cyc = F.l1_loss(G_ba(y_til), x) + F.l1_loss(G_ab(x_til), y)
        align = (1 - nmi(x, y_til)) + (1 - nmi(y, x_til))
        gan, dicyc, y_hat, x_hat = deformed_terms(f_x, f_y)
        (gan + 10 * cyc + 10 * dicyc + 0.9 * align).backward()
        if em == "sequential":
            set_rg([S_ab, S_ba], True)
        else:
            opt_s.step()
        opt_g.step()
        d_step(opt_d, D_a, D_b, x, y, x_hat, y_hat)
    return with_flops(timeit(step, a.runs), step, flops)


def parser(doc=__doc__, size=128, ngf=64, blocks=6, ndf=64, runs=10, only=("convs", "models", "cyclegan", "dicyc")):
    """The command line of this script and of torch_reference3d.py (with its defaults)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=size)
    ap.add_argument("--ngf", type=int, default=ngf)
    ap.add_argument("--blocks", type=int, default=blocks)
    ap.add_argument("--ndf", type=int, default=ndf)
    ap.add_argument("--runs", type=int, default=runs)
    ap.add_argument("--only", nargs="*", default=list(only))
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--flops", action="store_true", help="count each step's FLOPs (PyTorch >= 2.1)")
    ap.add_argument("--precision", default="float", choices=("float", "bf16"),
                    help="bf16: time under torch.autocast(device, torch.bfloat16)")
    return ap


def set_precision(precision):
    """float, or bf16: the timed calls under autocast (see AUTOCAST)."""
    global AUTOCAST
    AUTOCAST = torch.bfloat16 if precision == "bf16" else None


def start(a, who):
    """Sets the device (the anchor checked on the CPU) and the threads; the result's header fields."""
    global DEVICE
    DEVICE = torch.device(a.device)
    if DEVICE.type == "cpu":
        anchor.check(who)
    elif not torch.cuda.is_available():
        sys.exit("%s: --device cuda, but this PyTorch sees no GPU" % who)
    set_precision(a.precision)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    res = {"torch": torch.__version__, "threads": torch.get_num_threads(), "size": a.size, "ngf": a.ngf,
           "blocks": a.blocks, "ndf": a.ndf, "device": str(DEVICE), "precision": a.precision}
    if DEVICE.type == "cpu":
        res.update({"onednn": torch.backends.mkldnn.is_available(), "blas": blas()})
    else:
        res.update({"gpu": torch.cuda.get_device_name(DEVICE), "cudnn": torch.backends.cudnn.version()})
    return res


def finish(a, res):
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


def main():
    a = parser().parse_args()
    res = start(a, "torch_reference")
    if "convs" in a.only:
        res.update(bench_convs(a.runs))
    if "models" in a.only:
        res.update(bench_models(a))
    if "cyclegan" in a.only:
        res["cyclegan_step"] = bench_cyclegan(a, flops=a.flops)
    if "dicyc" in a.only:
        res["dicyc_step"] = bench_dicyc(a, flops=a.flops)
    if "dicyc_sequential" in a.only:
        res["dicyc_step_sequential"] = bench_dicyc(a, em="sequential", flops=a.flops)
    finish(a, res)


if __name__ == "__main__":
    main()
