#!/usr/bin/python3
"""PyTorch 3-D reference for dicyc's speed comparisons: ../shared/bench/torch_reference.py's networks
and training steps with their 3-D layers, mirroring dicyc's Dim = 3 models (bench_model3d).

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
import argparse
import importlib.util
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REF_PATH = os.environ.get("DICYC_TORCH_REFERENCE",
                          os.path.join(HERE, "..", "..", "shared", "bench", "torch_reference.py"))


def load_ref():
    """The 2-D reference (its BLAS check runs on import: the reference BLAS is refused)."""
    if not os.path.exists(REF_PATH):
        sys.exit("torch_reference3d: %s not found (set DICYC_TORCH_REFERENCE to torch_reference.py)" % REF_PATH)
    spec = importlib.util.spec_from_file_location("torch_reference", REF_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ref = load_ref()


class ResnetBlock3d(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad3d(1), nn.Conv3d(dim, dim, 3), nn.InstanceNorm3d(dim), nn.ReLU(True),
            nn.ReflectionPad3d(1), nn.Conv3d(dim, dim, 3), nn.InstanceNorm3d(dim))

    def forward(self, x):
        return x + self.block(x)


def base_grid(shape):
    """Voxel-centre coordinates in [-1, 1] (align_corners = False), (1, D, H, W, 3) as (x, y, z)."""
    d, h, w = shape
    lin = [torch.linspace(-1 + 1 / n, 1 - 1 / n, n) for n in (d, h, w)]
    zs, ys, xs = torch.meshgrid(*lin, indexing="ij")
    return torch.stack((xs, ys, zs), -1).unsqueeze(0)


class OffsetBranch3d(nn.Module):
    def __init__(self, ch, hidden=32):
        super().__init__()
        self.c1 = nn.Conv3d(ch, hidden, 3, padding=1)
        self.c2 = nn.Conv3d(hidden, 3, 3, padding=1)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)
        self.bases = {}

    def forward(self, x):
        u = self.c2(F.leaky_relu(self.c1(x), 0.2))  # (N, 3, D, H, W) voxels, (dx, dy, dz)
        d, h, w = x.shape[-3:]
        if (d, h, w) not in self.bases:
            self.bases[(d, h, w)] = base_grid((d, h, w))
        scale = torch.tensor([2.0 / w, 2.0 / h, 2.0 / d])
        grid = self.bases[(d, h, w)] + u.permute(0, 2, 3, 4, 1) * scale
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Generator3d(nn.Module):
    def __init__(self, in_ch=1, out_ch=1, ngf=16, n_blocks=3, offsets=False):
        super().__init__()
        self.stem = nn.Sequential(nn.ReflectionPad3d(3), nn.Conv3d(in_ch, ngf, 7), nn.InstanceNorm3d(ngf), nn.ReLU(True))
        self.down1 = nn.Sequential(nn.Conv3d(ngf, ngf * 2, 3, 2, 1), nn.InstanceNorm3d(ngf * 2), nn.ReLU(True))
        self.down2 = nn.Sequential(nn.Conv3d(ngf * 2, ngf * 4, 3, 2, 1), nn.InstanceNorm3d(ngf * 4), nn.ReLU(True))
        self.res = nn.Sequential(*[ResnetBlock3d(ngf * 4) for _ in range(n_blocks)])
        self.dec = nn.Sequential(
            nn.ConvTranspose3d(ngf * 4, ngf * 2, 3, 2, 1, output_padding=1), nn.InstanceNorm3d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose3d(ngf * 2, ngf, 3, 2, 1, output_padding=1), nn.InstanceNorm3d(ngf), nn.ReLU(True),
            nn.ReflectionPad3d(3), nn.Conv3d(ngf, out_ch, 7), nn.Tanh())
        self.off = (nn.ModuleList([OffsetBranch3d(in_ch), OffsetBranch3d(ngf), OffsetBranch3d(ngf * 2),
                                   OffsetBranch3d(ngf * 4)]) if offsets else None)

    def encode(self, x, deformed=False):
        for i, step in enumerate((self.stem, self.down1, self.down2, self.res)):
            if deformed:
                x = self.off[i](x)
            x = step(x)
        return x

    def decode(self, f):
        return self.dec(f)

    def forward(self, x):
        return self.decode(self.encode(x))


def patchgan3d(in_ch=1, ndf=32):
    return nn.Sequential(
        nn.Conv3d(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv3d(ndf, ndf * 2, 4, 2, 1), nn.InstanceNorm3d(ndf * 2), nn.LeakyReLU(0.2, True),
        nn.Conv3d(ndf * 2, ndf * 4, 4, 2, 1), nn.InstanceNorm3d(ndf * 4), nn.LeakyReLU(0.2, True),
        nn.Conv3d(ndf * 4, ndf * 8, 4, 1, 1), nn.InstanceNorm3d(ndf * 8), nn.LeakyReLU(0.2, True),
        nn.Conv3d(ndf * 8, 1, 4, 1, 1))


def init_normal(m):
    if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)


class TPSGrid3d(nn.Module):
    """g^3 control points inset half a cell, x fastest; kernel U(r) = r; dense grid = base + M disp."""

    def __init__(self, g, shape):
        super().__init__()
        c = torch.linspace(-1 + 1 / g, 1 - 1 / g, g, dtype=torch.float64)
        cz, cy, cx = torch.meshgrid(c, c, c, indexing="ij")
        ctrl = torch.stack((cx.flatten(), cy.flatten(), cz.flatten()), 1)  # (K, 3), x fastest
        k = ctrl.shape[0]
        L = torch.zeros(k + 4, k + 4, dtype=torch.float64)
        L[:k, :k] = torch.cdist(ctrl, ctrl)
        L[:k, k] = 1
        L[:k, k + 1:] = ctrl
        L[k, :k] = 1
        L[k + 1:, :k] = ctrl.t()
        pts = base_grid(shape).reshape(-1, 3).double()
        rep = torch.cat((torch.cdist(pts, ctrl), torch.ones(pts.shape[0], 1, dtype=torch.float64), pts), 1)
        M = rep @ torch.linalg.inv(L)[:, :k]  # (P, K)
        self.register_buffer("Mt", M.t().float().contiguous())
        self.register_buffer("base", pts.float().view(1, *shape, 3))
        self.shape = shape

    def forward(self, disp):  # disp (N, K, 3)
        n = disp.shape[0]
        return self.base + (disp.transpose(1, 2) @ self.Mt).transpose(1, 2).reshape(n, *self.shape, 3)


class STN3d(nn.Module):
    def __init__(self, ch, g=6):
        super().__init__()
        self.g = g
        self.body = nn.Sequential(nn.Conv3d(2 * ch, 128, 3, 2, 1), nn.LeakyReLU(0.2, True),
                                  nn.Conv3d(128, 64, 3, 2, 1), nn.LeakyReLU(0.2, True),
                                  nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.fc = nn.Linear(64, g ** 3 * 3)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        self.grids = {}

    def forward(self, f_src, f_tgt):
        disp = self.fc(self.body(torch.cat((f_src, f_tgt), 1))).view(-1, self.g ** 3, 3)
        shape = tuple(f_src.shape[-3:])
        if shape not in self.grids:
            self.grids[shape] = TPSGrid3d(self.g, shape)
        grid = self.grids[shape](disp)
        return F.grid_sample(f_src, grid, mode="bilinear", padding_mode="border", align_corners=False)


def make_nets(a, offsets):
    torch.manual_seed(0)
    G_ab = Generator3d(ngf=a.ngf, n_blocks=a.blocks, offsets=offsets)
    G_ba = Generator3d(ngf=a.ngf, n_blocks=a.blocks, offsets=offsets)
    D_a, D_b = patchgan3d(ndf=a.ndf), patchgan3d(ndf=a.ndf)
    for m in (G_ab, G_ba, D_a, D_b):
        m.apply(init_normal)
    if offsets:
        for g in (G_ab, G_ba):
            for br in g.off:
                nn.init.zeros_(br.c2.weight)
                nn.init.zeros_(br.c2.bias)
    return G_ab, G_ba, D_a, D_b


def adam(params):
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def bench_nets(a):
    out = {}
    x = torch.randn(1, 1, a.size, a.size, a.size)
    G = Generator3d(ngf=a.ngf, n_blocks=a.blocks)
    G.apply(init_normal)
    D = patchgan3d(ndf=a.ndf)
    D.apply(init_normal)
    with torch.no_grad():
        out["G3_fwd"] = ref.timeit(lambda: G(x), a.runs)

    def gfb():
        G.zero_grad(set_to_none=True)
        G(x).mean().backward()
    out["G3_fwd_bwd"] = ref.timeit(gfb, a.runs)

    def dfb():
        D.zero_grad(set_to_none=True)
        D(x).mean().backward()
    out["D3_fwd_bwd"] = ref.timeit(dfb, a.runs)
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
    x, y = torch.randn(1, 1, a.size, a.size, a.size), torch.randn(1, 1, a.size, a.size, a.size)
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
    return ref.timeit(step, a.runs, warmup=1)


def bench_dicyc(a):
    G_ab, G_ba, D_a, D_b = make_nets(a, True)
    S_ab, S_ba = STN3d(4 * a.ngf), STN3d(4 * a.ngf)
    opt_g = adam(list(G_ab.parameters()) + list(G_ba.parameters()))
    opt_s = adam(list(S_ab.parameters()) + list(S_ba.parameters()))
    opt_d = adam(list(D_a.parameters()) + list(D_b.parameters()))
    x, y = torch.randn(1, 1, a.size, a.size, a.size), torch.randn(1, 1, a.size, a.size, a.size)
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
    return ref.timeit(step, a.runs, warmup=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--ngf", type=int, default=16)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--ndf", type=int, default=32)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=["nets", "cyclegan", "dicyc"])
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    res = {"torch": torch.__version__, "threads": torch.get_num_threads(), "size": a.size, "ngf": a.ngf,
           "blocks": a.blocks, "ndf": a.ndf, "blas": ref.BLAS}
    if "nets" in a.only:
        res.update(bench_nets(a))
    if "cyclegan" in a.only:
        res["cyclegan3_step"] = bench_cyclegan(a)
    if "dicyc" in a.only:
        res["dicyc3_step"] = bench_dicyc(a)
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
