"""PyTorch (autograd) formulations of dicyc's MIND and gradient-correlation losses, written from
the definitions in include/dicyc/loss/mind.hpp and gcc.hpp. They serve as independent references:
tests/fixtures/make_loss_eval_fixtures.py stores their values and autograd gradients, and
benchmarks/compare_torch_losses.py times them against dicyc. Tensors are (N, C, [D,] H, W); dicyc's
x axis is the last one. The soft NMI reference is nmi() in python/dicyc/nn.py.
"""
import torch
import torch.nn.functional as F


def mind_descriptors(x, radius=1, sigma=0.5, clamp=1000.0):
    """(N, C, *sp) -> (N, C, 2*dim, *sp), neighbours ordered +x, -x, +y, -y[, +z, -z]."""
    dim = x.dim() - 2
    n_, c_ = x.shape[:2]
    sp = x.shape[2:]
    j = torch.arange(-radius, radius + 1, dtype=x.dtype)
    taps = torch.exp(-0.5 * j * j / (sigma * sigma))
    taps = taps / taps.sum()
    conv = F.conv2d if dim == 2 else F.conv3d
    ds = []
    for d in range(dim):
        ax = x.dim() - 1 - d
        n = x.shape[ax]
        s = (x.narrow(ax, 0, n - 1) - x.narrow(ax, 1, n - 1)) ** 2  # (I(p) - I(p + e))^2
        z = torch.zeros_like(x.narrow(ax, 0, 1))
        ds += [torch.cat([s, z], ax), torch.cat([z, s], ax)]  # S_{+e}(p), S_{-e}(p) = S_{+e}(p - e)
    out = []
    for s in ds:
        v = s.reshape(n_ * c_, 1, *sp)
        for d in range(dim):
            ksh = [1] * dim
            ksh[dim - 1 - d] = 2 * radius + 1
            pad = [0] * dim
            pad[dim - 1 - d] = radius
            v = conv(v, taps.reshape(1, 1, *ksh), padding=pad)
        out.append(v.reshape(n_, c_, *sp))
    D = torch.stack(out, 2)
    V = D.mean(2)
    m = V.flatten(2).mean(2).reshape(n_, c_, *([1] * dim))
    V = torch.where(m > 0, torch.minimum(torch.maximum(V, m / clamp), m * clamp), torch.ones_like(V))
    dmin = D.min(2, keepdim=True)[0]
    return torch.exp(-(D - dmin) / V.unsqueeze(2))


def mind_loss(a, b, radius=1, sigma=0.5):
    return (mind_descriptors(a, radius, sigma) - mind_descriptors(b, radius, sigma)).abs().mean()


def gradient_correlation(a, b):
    dim = a.dim() - 2
    n_ = a.shape[0]
    tot = 0
    for d in range(dim):
        ax = a.dim() - 1 - d
        n = a.shape[ax]
        da = (a.narrow(ax, 1, n - 1) - a.narrow(ax, 0, n - 1)).reshape(n_, -1)
        db = (b.narrow(ax, 1, n - 1) - b.narrow(ax, 0, n - 1)).reshape(n_, -1)
        da = da - da.mean(1, keepdim=True)
        db = db - db.mean(1, keepdim=True)
        tot = tot + (da * db).sum(1) / torch.sqrt((da * da).sum(1) * (db * db).sum(1))
    return (tot / dim).mean()


def gcc_loss(a, b):
    return 1 - gradient_correlation(a, b)
