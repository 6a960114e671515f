"""PyTorch modules for every network dicyc trains, wired as dicyc's C++ layers are, so that a
checkpoint's "<net>.<key>" tensors load into them strictly (dicyc writes PyTorch's layout).

Layout: dicyc keeps images as (C, x, y[, z], N) with x fastest; PyTorch as (N, C, [D,] H, W) with W
fastest, so x is W, y is H and z is D. The displacement fields of the offset branches and the TPS
control points are (dx, dy[, dz]) in that order.

    Generator(dim, in_ch, out_ch, ngf, n_blocks, offsets, tanh, offset_hidden)
        reflect-pad 3, conv 7, IN, ReLU; two conv 3 s2 p1 (+IN, ReLU); n_blocks residual blocks
        (reflect-pad 1, conv 3, IN, ReLU, reflect-pad 1, conv 3, IN) at 4 ngf; two transposed
        conv 3 s2 p1 op1 (+IN, ReLU); reflect-pad 3, conv 7, tanh (optional). InstanceNorm without
        affine parameters. The DiCyc models add four offset branches (off.0-3), used on the
        deformed path only (encode(x, deformed=True)); translation uses the plain path.
    OffsetBranch(dim, ch, hidden)
        conv 3 p1 (ch -> hidden), LeakyReLU 0.2, conv 3 p1 (hidden -> dim), zero-initialised: one
        displacement field in pixels shared by all channels, (bi/tri)linear resampling, border.
    patchgan(dim, in_ch, ndf, n_layers)
        the PatchGAN of pix2pix/CycleGAN: conv 4 s2 p1 (-> ndf), LReLU 0.2; n_layers - 1 times
        conv 4 s2 p1 (doubling, at most 8 ndf), IN, LReLU; conv 4 s1 p1, IN, LReLU; conv 4 s1 p1
        (-> 1). n_layers = 3 is the 70x70 PatchGAN.
    STN(dim, ch, control, hidden1, hidden2)
        cat(f_src, f_tgt) -> conv 3 s2 p1 (-> hidden1), LReLU, conv 3 s2 p1 (-> hidden2), LReLU,
        global average pool, fc (-> control^dim * dim), zero-initialised: TPS displacements of a
        control^dim grid inset half a cell; kernel r^2 log r^2 in 2-D, r in 3-D (dicyc's tps.hpp).
Losses used by the training steps: gan_loss (LSGAN), nmi (soft NMI with Gaussian Parzen windows).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Generator", "ResnetBlock", "OffsetBranch", "patchgan", "STN", "TPSGrid", "TPSGrid3d", "init_normal",
           "zero_offsets", "gan_loss", "nmi", "set_requires_grad", "base_grid"]


def _layers(dim):
    if dim == 2:
        return nn.Conv2d, nn.ConvTranspose2d, nn.InstanceNorm2d, nn.ReflectionPad2d
    if dim == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.InstanceNorm3d, nn.ReflectionPad3d
    raise ValueError("dicyc networks are 2-D or 3-D, got dim=%r" % (dim,))


class ResnetBlock(nn.Module):
    def __init__(self, channels, dim=2):
        super().__init__()
        Conv, _, Norm, Pad = _layers(dim)
        self.block = nn.Sequential(Pad(1), Conv(channels, channels, 3), Norm(channels), nn.ReLU(True),
                                   Pad(1), Conv(channels, channels, 3), Norm(channels))

    def forward(self, x):
        return x + self.block(x)


def base_grid(shape, dtype=torch.float32, device=None):
    """Pixel-centre coordinates in [-1, 1] (align_corners=False) as (1, [D,] H, W, dim), ordered (x, y[, z])."""
    lin = [torch.linspace(-1 + 1 / n, 1 - 1 / n, n, dtype=dtype, device=device) for n in shape]
    mesh = torch.meshgrid(*lin, indexing="ij")  # (z,) y, x
    return torch.stack(tuple(reversed(mesh)), -1).unsqueeze(0)


class OffsetBranch(nn.Module):
    """Predicts one displacement field (pixels, (dx, dy[, dz])) shared by all channels and resamples its input."""

    def __init__(self, ch, hidden=32, dim=2):
        super().__init__()
        Conv = _layers(dim)[0]
        self.dim = dim
        self.c1 = Conv(ch, hidden, 3, padding=1)
        self.c2 = Conv(hidden, dim, 3, padding=1)
        nn.init.zeros_(self.c2.weight)
        nn.init.zeros_(self.c2.bias)

    def forward(self, x):
        u = self.c2(F.leaky_relu(self.c1(x), 0.2))  # (N, dim, [D,] H, W)
        shape = tuple(x.shape[2:])
        base = base_grid(shape, x.dtype, x.device)
        scale = torch.tensor([2.0 / n for n in reversed(shape)], dtype=x.dtype, device=x.device)
        grid = base + u.movedim(1, -1) * scale
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Generator(nn.Module):
    """The ResNet generator split into encoder and decoder (see the module's docstring)."""

    def __init__(self, in_ch=1, out_ch=1, ngf=64, n_blocks=6, offsets=False, dim=2, tanh=True, offset_hidden=32):
        super().__init__()
        Conv, ConvT, Norm, Pad = _layers(dim)
        self.dim = dim
        self.stem = nn.Sequential(Pad(3), Conv(in_ch, ngf, 7), Norm(ngf), nn.ReLU(True))
        self.down1 = nn.Sequential(Conv(ngf, ngf * 2, 3, 2, 1), Norm(ngf * 2), nn.ReLU(True))
        self.down2 = nn.Sequential(Conv(ngf * 2, ngf * 4, 3, 2, 1), Norm(ngf * 4), nn.ReLU(True))
        self.res = nn.Sequential(*[ResnetBlock(ngf * 4, dim) for _ in range(n_blocks)])
        tail = [ConvT(ngf * 4, ngf * 2, 3, 2, 1, output_padding=1), Norm(ngf * 2), nn.ReLU(True),
                ConvT(ngf * 2, ngf, 3, 2, 1, output_padding=1), Norm(ngf), nn.ReLU(True),
                Pad(3), Conv(ngf, out_ch, 7)]
        if tanh:
            tail.append(nn.Tanh())
        self.dec = nn.Sequential(*tail)
        self.off = (nn.ModuleList([OffsetBranch(c, offset_hidden, dim) for c in (in_ch, ngf, ngf * 2, ngf * 4)])
                    if offsets else None)

    def encode(self, x, deformed=False):
        if deformed and self.off is None:
            raise ValueError("this generator has no offset branches (a CycleGAN-family model)")
        for i, step in enumerate((self.stem, self.down1, self.down2, self.res)):
            if deformed:
                x = self.off[i](x)
            x = step(x)
        return x

    def decode(self, f):
        return self.dec(f)

    def forward(self, x):
        return self.decode(self.encode(x))


def patchgan(in_ch=1, ndf=64, n_layers=3, dim=2):
    Conv, _, Norm, _ = _layers(dim)
    layers = [Conv(in_ch, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
    mult = 1
    for n in range(1, n_layers):
        prev, mult = mult, min(2 ** n, 8)
        layers += [Conv(ndf * prev, ndf * mult, 4, 2, 1), Norm(ndf * mult), nn.LeakyReLU(0.2, True)]
    prev, mult = mult, min(2 ** n_layers, 8)
    layers += [Conv(ndf * prev, ndf * mult, 4, 1, 1), Norm(ndf * mult), nn.LeakyReLU(0.2, True),
               Conv(ndf * mult, 1, 4, 1, 1)]
    return nn.Sequential(*layers)


def init_normal(m):
    """CycleGAN's initialisation: conv weights N(0, 0.02), biases 0."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Conv3d, nn.ConvTranspose3d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)


def zero_offsets(g):
    """Keeps a generator's offset branches at the identity (their last layers zero), as dicyc starts them."""
    if g.off is not None:
        for br in g.off:
            nn.init.zeros_(br.c2.weight)
            nn.init.zeros_(br.c2.bias)


def _tps_kernel_2d(d2):
    return torch.where(d2 > 0, d2 * torch.log(d2.clamp_min(1e-30)), torch.zeros_like(d2))  # r^2 log r^2


def _control_points(g, dim, dtype):
    c = torch.linspace(-1 + 1 / g, 1 - 1 / g, g, dtype=dtype)
    mesh = torch.meshgrid(*([c] * dim), indexing="ij")
    return torch.stack(tuple(m.flatten() for m in reversed(mesh)), 1)  # (K, dim), x fastest


class TPSGrid(nn.Module):
    """2-D: a g x g control grid inset half a cell; control-point displacements (N, K, 2) -> a dense
    sampling grid (N, H, W, 2) by the thin-plate spline through the displaced points."""

    def __init__(self, g, h, w):
        super().__init__()
        ctrl = _control_points(g, 2, torch.float32)
        k = ctrl.shape[0]
        L = torch.zeros(k + 3, k + 3, dtype=torch.float64)
        L[:k, :k] = _tps_kernel_2d(torch.cdist(ctrl, ctrl).double() ** 2)
        L[:k, k] = 1
        L[:k, k + 1:] = ctrl.double()
        L[k, :k] = 1
        L[k + 1:, :k] = ctrl.double().t()
        pts = base_grid((h, w)).reshape(-1, 2)
        rep = torch.cat((_tps_kernel_2d(torch.cdist(pts, ctrl) ** 2), torch.ones(h * w, 1), pts), 1)  # (HW, K+3)
        self.register_buffer("Linv", torch.linalg.inv(L).float())
        self.register_buffer("rep", rep)
        self.register_buffer("ctrl", ctrl)
        self.h, self.w, self.k = h, w, k

    def forward(self, disp):
        target = self.ctrl.unsqueeze(0) + disp
        y = torch.cat((target, torch.zeros(disp.shape[0], 3, 2, dtype=disp.dtype, device=disp.device)), 1)
        coef = self.Linv.unsqueeze(0) @ y
        return (self.rep.unsqueeze(0) @ coef).view(-1, self.h, self.w, 2)


class TPSGrid3d(nn.Module):
    """3-D: g^3 control points inset half a cell, x fastest, kernel U(r) = r; grid = base + M disp."""

    def __init__(self, g, shape):
        super().__init__()
        ctrl = _control_points(g, 3, torch.float64)
        k = ctrl.shape[0]
        L = torch.zeros(k + 4, k + 4, dtype=torch.float64)
        L[:k, :k] = torch.cdist(ctrl, ctrl)
        L[:k, k] = 1
        L[:k, k + 1:] = ctrl
        L[k, :k] = 1
        L[k + 1:, :k] = ctrl.t()
        pts = base_grid(shape, torch.float64).reshape(-1, 3)
        rep = torch.cat((torch.cdist(pts, ctrl), torch.ones(pts.shape[0], 1, dtype=torch.float64), pts), 1)
        M = rep @ torch.linalg.inv(L)[:, :k]  # (P, K)
        self.register_buffer("Mt", M.t().float().contiguous())
        self.register_buffer("base", pts.float().view(1, *shape, 3))
        self.shape = tuple(shape)

    def forward(self, disp):
        n = disp.shape[0]
        return self.base + (disp.transpose(1, 2) @ self.Mt).transpose(1, 2).reshape(n, *self.shape, 3)


class STN(nn.Module):
    """The DiCyc spatial transformer on latent features: predicts TPS displacements that move f_src onto f_tgt."""

    def __init__(self, ch, control=6, hidden1=128, hidden2=64, dim=2):
        super().__init__()
        Conv = _layers(dim)[0]
        self.dim, self.g = dim, control
        pool = nn.AdaptiveAvgPool2d(1) if dim == 2 else nn.AdaptiveAvgPool3d(1)
        self.body = nn.Sequential(Conv(2 * ch, hidden1, 3, 2, 1), nn.LeakyReLU(0.2, True),
                                  Conv(hidden1, hidden2, 3, 2, 1), nn.LeakyReLU(0.2, True), pool, nn.Flatten())
        self.fc = nn.Linear(hidden2, control ** dim * dim)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        self.grids = {}

    def grid(self, shape):
        shape = tuple(shape)
        if shape not in self.grids:
            self.grids[shape] = TPSGrid(self.g, *shape) if self.dim == 2 else TPSGrid3d(self.g, shape)
        return self.grids[shape]

    def forward(self, f_src, f_tgt):
        disp = self.fc(self.body(torch.cat((f_src, f_tgt), 1))).view(-1, self.g ** self.dim, self.dim)
        tps = self.grid(f_src.shape[2:]).to(device=f_src.device, dtype=f_src.dtype)
        return F.grid_sample(f_src, tps(disp), mode="bilinear", padding_mode="border", align_corners=False)


def gan_loss(pred, real):
    """LSGAN: mean squared distance to 1 (real) or 0 (fake)."""
    return F.mse_loss(pred, torch.ones_like(pred) if real else torch.zeros_like(pred))


def nmi(a, b, bins=32):
    """2 I(A;B) / (H(A) + H(B)) with Gaussian Parzen windows; per-image min-max to [0, 1] (min/max detached)."""
    def unit(x):
        x = x.flatten(1)
        lo = x.min(1, keepdim=True)[0].detach()
        hi = x.max(1, keepdim=True)[0].detach()
        return (x - lo) / (hi - lo + 1e-8)
    a, b = unit(a), unit(b)
    centers = torch.linspace(0, 1, bins, dtype=a.dtype, device=a.device)
    sigma = 0.5 / (bins - 1)
    wa = torch.exp(-((a.unsqueeze(-1) - centers) ** 2) / (2 * sigma ** 2))
    wb = torch.exp(-((b.unsqueeze(-1) - centers) ** 2) / (2 * sigma ** 2))
    wa = wa / (wa.sum(-1, keepdim=True) + 1e-10)
    wb = wb / (wb.sum(-1, keepdim=True) + 1e-10)
    n = a.shape[1]
    pab = wa.transpose(1, 2) @ wb / n
    pa, pb = wa.mean(1), wb.mean(1)
    eps = 1e-10
    ha = -(pa * torch.log(pa + eps)).sum(1)
    hb = -(pb * torch.log(pb + eps)).sum(1)
    hab = -(pab * torch.log(pab + eps)).sum((1, 2))
    return (2 * (ha + hb - hab) / (ha + hb)).mean()


def set_requires_grad(nets, flag):
    for n in nets:
        for p in n.parameters():
            p.requires_grad_(flag)
