#!/usr/bin/python3
"""PyTorch 3-D reference for dicyc's speed comparisons: torch_reference.py's training steps with the
3-D networks of the Python package (dicyc.nn, dim=3), mirroring dicyc's Dim = 3 models (bench_model3d).

    python benchmarks/torch_reference3d.py --threads 2 --size 64 --ngf 16 --blocks 3 --ndf 32 --runs 3

Networks (batch 1, one channel, a cube of --size voxels; layout N, C, D, H, W with x = W fastest,
as dicyc's (C, x, y, z, N)):
  Generator3d    reflect-pad 3, conv 7^3, IN, ReLU; two conv 3^3 s2 downsamplings; --blocks residual
                 blocks (reflect-pad 1, conv 3^3, IN, ReLU, reflect-pad 1, conv 3^3, IN) at 4 ngf;
                 two ConvTranspose3d 3^3 s2 p1 op1; reflect-pad 3, conv 7^3, tanh. InstanceNorm3d
                 without affine parameters, as in 2-D.
  patchgan3d     the 70x70 PatchGAN with Conv3d (kernel 4, --ndf).
  OffsetBranch3d conv 3^3 (C -> 32), LeakyReLU 0.2, conv 3^3 (32 -> 3) zero-initialised: one
                 displacement field in voxels (dx, dy, dz) shared by all channels, trilinear
                 resampling, border padding (F.grid_sample on a 5-D input).
  STN3d          cat(f_src, f_tgt) -> conv 3^3 s2 (-> 128), LReLU, conv 3^3 s2 (-> 64), LReLU, global
                 average pool, fc (64 -> 6^3 x 3), zero-initialised; TPS with the 3-D kernel U(r) = r
                 on a 6x6x6 control grid inset half a cell (dicyc's tps.hpp), trilinear resampling.
Steps: the CycleGAN iteration and the DiCyc iteration (EM "single": undeformed + deformed pass, one
backward, E and M updates, D step) of torch_reference.py, with the NMI of its nmi() (it flattens,
so it serves 3-D as it is).

Prints JSON: the torch version, threads, BLAS libraries mapped, and for each of G3_fwd, G3_fwd_bwd,
D3_fwd_bwd, cyclegan3_step, dicyc3_step the median, minimum and maximum in ms.
"""
import os
import sys

import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_reference as ref  # noqa: E402  (its import finds dicyc.nn: installed, or ../python)

dnn = ref.dnn


def Generator3d(in_ch=1, out_ch=1, ngf=16, n_blocks=3, offsets=False):
    return dnn.Generator(in_ch, out_ch, ngf, n_blocks, offsets=offsets, dim=3)


def patchgan3d(in_ch=1, ndf=32):
    return dnn.patchgan(in_ch, ndf, 3, dim=3)


def STN3d(ch, g=6):
    return dnn.STN(ch, g, dim=3)




def make_nets(a, offsets):
    return ref.make_nets(a, offsets, Generator3d, patchgan3d)


adam = ref.adam


def bench_nets(a):
    out, _ = ref.time_nets(Generator3d(ngf=a.ngf, n_blocks=a.blocks), patchgan3d(ndf=a.ndf),
                           ref.rand(1, 1, a.size, a.size, a.size), a.runs, "G3", "D3")
    return out


def d_step(opt_d, D_a, D_b, x, y, fake_a, fake_b):
    """The discriminators' LSGAN step on the real images and the detached fakes."""
    gl = ref.gan_loss
    ref.set_rg([D_a, D_b], True)
    opt_d.zero_grad(set_to_none=True)
    ld = 0.5 * (gl(D_b(y), True) + gl(D_b(fake_b.detach()), False)) \
        + 0.5 * (gl(D_a(x), True) + gl(D_a(fake_a.detach()), False))
    ld.backward()
    opt_d.step()


def bench_cyclegan(a):
    G_ab, G_ba, D_a, D_b = make_nets(a, False)
    opt_g = adam(list(G_ab.parameters()) + list(G_ba.parameters()))
    opt_d = adam(list(D_a.parameters()) + list(D_b.parameters()))
    x, y = ref.rand(1, 1, a.size, a.size, a.size), ref.rand(1, 1, a.size, a.size, a.size)
    gl = ref.gan_loss

    def step():
        fake_b, fake_a = G_ab(x), G_ba(y)
        rec_a, rec_b = G_ba(fake_b), G_ab(fake_a)
        ref.set_rg([D_a, D_b], False)
        opt_g.zero_grad(set_to_none=True)
        loss = (gl(D_b(fake_b), True) + gl(D_a(fake_a), True) + 10 * F.l1_loss(rec_a, x) + 10 * F.l1_loss(rec_b, y))
        loss.backward()
        opt_g.step()
        d_step(opt_d, D_a, D_b, x, y, fake_a, fake_b)
    return ref.with_flops(ref.timeit(step, a.runs, warmup=1), step, a.flops)


def bench_dicyc(a):
    G_ab, G_ba, D_a, D_b = make_nets(a, True)
    S_ab, S_ba = STN3d(4 * a.ngf).to(ref.DEVICE), STN3d(4 * a.ngf).to(ref.DEVICE)
    opt_g = adam(list(G_ab.parameters()) + list(G_ba.parameters()))
    opt_s = adam(list(S_ab.parameters()) + list(S_ba.parameters()))
    opt_d = adam(list(D_a.parameters()) + list(D_b.parameters()))
    x, y = ref.rand(1, 1, a.size, a.size, a.size), ref.rand(1, 1, a.size, a.size, a.size)
    gl = ref.gan_loss

    def step():
        ref.set_rg([D_a, D_b], False)
        opt_g.zero_grad(set_to_none=True)
        opt_s.zero_grad(set_to_none=True)
        f_x, f_y = G_ab.encode(x), G_ba.encode(y)
        y_til, x_til = G_ab.decode(f_x), G_ba.decode(f_y)
        cyc = F.l1_loss(G_ba(y_til), x) + F.l1_loss(G_ab(x_til), y)
        align = (1 - ref.nmi(x, y_til)) + (1 - ref.nmi(y, x_til))
        y_hat = G_ab.decode(S_ab(G_ab.encode(x, deformed=True), f_y))
        x_hat = G_ba.decode(S_ba(G_ba.encode(y, deformed=True), f_x))
        back_x = G_ba.decode(S_ba(G_ba.encode(y_hat, deformed=True), f_x))
        back_y = G_ab.decode(S_ab(G_ab.encode(x_hat, deformed=True), f_y))
        gan = gl(D_b(y_hat), True) + gl(D_a(x_hat), True)
        dicyc = F.l1_loss(back_x, x) + F.l1_loss(back_y, y)
        (gan + 10 * cyc + 10 * dicyc + 0.9 * align).backward()
        opt_s.step()
        opt_g.step()
        d_step(opt_d, D_a, D_b, x, y, x_hat, y_hat)
    return ref.with_flops(ref.timeit(step, a.runs, warmup=1), step, a.flops)


def main():
    a = ref.parser(__doc__, size=64, ngf=16, blocks=3, ndf=32, runs=3, only=("nets", "cyclegan", "dicyc")).parse_args()
    res = ref.start(a, "torch_reference3d")
    if "nets" in a.only:
        res.update(bench_nets(a))
    if "cyclegan" in a.only:
        res["cyclegan3_step"] = bench_cyclegan(a)
    if "dicyc" in a.only:
        res["dicyc3_step"] = bench_dicyc(a)
    ref.finish(a, res)


if __name__ == "__main__":
    main()
