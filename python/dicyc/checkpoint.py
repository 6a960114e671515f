"""dicyc checkpoints in PyTorch: the networks built from a checkpoint's own metadata, with its weights.

    m = dicyc.load_checkpoint("run1/checkpoint.safetensors")
    m.g_ab, m.g_ba            # torch.nn.Module generators (A -> B, B -> A)
    m.d_a, m.d_b              # PatchGAN discriminators (absent from weights-only files)
    m.s_ab, m.s_ba            # the DiCyc spatial transformers (DiCyc models only)
    m.map_a, m.map_b          # intensity maps (source units <-> the networks' [-1, 1])
    m.translate(x, "ab")      # normalised numpy image/volume in, normalised numpy out
"""
import json
import os

import numpy as np

from . import safetensors
from .volume import IntensityMap

NETS = ("g_ab", "g_ba", "d_a", "d_b", "s_ab", "s_ba")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is (its message names the file and what is wrong)."""


class DataInfo:
    """How dicyc-train prepared the data (the checkpoint's user.* entries)."""

    def __init__(self, meta, path):
        def get(k):
            if "user." + k not in meta:
                raise CheckpointError("'%s' has no 'user.%s' entry: was it written by dicyc-train or a "
                                      "train::Trainer?" % (path, k))
            return meta["user." + k]
        try:
            self.dim = int(get("dim"))
            self.crop = tuple(int(v) for v in get("crop").split())
            self.spacing = tuple(float(v) for v in get("spacing").split())
            self.canonical = get("canonical") == "1"
            self.normalisation = get("normalisation")
            self.percentiles = tuple(float(v) for v in get("percentiles").split())
            self.map_a = IntensityMap.parse(get("intensity_a"))
            self.map_b = IntensityMap.parse(get("intensity_b"))
            # fixed intensity windows (dicyc-train --window-a/-b): lo, hi in source units, or None
            self.window_a = tuple(float(v) for v in meta["user.window_a"].split()) if "user.window_a" in meta else None
            self.window_b = tuple(float(v) for v in meta["user.window_b"].split()) if "user.window_b" in meta else None
        except ValueError as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError("'%s': corrupt data preparation entries (%s)" % (path, e)) from None
        if (self.dim not in (2, 3) or len(self.crop) != 3 or len(self.spacing) != 3 or len(self.percentiles) != 2
                or any(w is not None and (len(w) != 2 or not w[0] < w[1]) for w in (self.window_a, self.window_b))):
            raise CheckpointError("'%s': corrupt data preparation entries" % path)


class Model:
    """The networks of one checkpoint, in eval mode, on the CPU (move them with .to())."""

    def __init__(self, path, meta, config, dim, nets, data):
        self.path, self.meta, self.config, self.dim, self.data = path, meta, config, dim, data
        self.scalar = meta.get("scalar", "F32")
        self.iteration = int(meta["iteration"]) if "iteration" in meta else None
        for n in NETS:
            setattr(self, n, nets.get(n))
        self.map_a = data.map_a if data else None
        self.map_b = data.map_b if data else None

    @property
    def deformation(self):
        return bool(self.config.get("deformation", False))

    def generator(self, direction):
        if direction not in ("ab", "ba"):
            raise ValueError("direction must be 'ab' or 'ba', got %r" % (direction,))
        g = self.g_ab if direction == "ab" else self.g_ba
        if g is None:
            raise ValueError("'%s' has no weights of the %s generator (g_%s): a weights file of the other direction"
                             % (self.path, "A -> B" if direction == "ab" else "B -> A", direction))
        return g

    def translate(self, x, direction="ab"):
        """Normalised image(s) through a generator's plain (undeformed) path, as dicyc-synth runs it.

        x: numpy, 2-D models (x, y) or (x, y, N) slices, 3-D models (x, y, z) or (x, y, z, N); the
        same shape comes back. Sizes must be multiples of 4 (synthesize pads for you)."""
        import torch
        x = np.asarray(x, dtype=np.float32)
        single = x.ndim == self.dim
        if single:
            x = x[..., None]
        if x.ndim != self.dim + 1:
            raise ValueError("a %d-D model translates arrays of %d or %d dimensions, got shape %s"
                             % (self.dim, self.dim, self.dim + 1, x.shape))
        t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0).transpose(0, *range(self.dim, 0, -1))))
        g = self.generator(direction)
        p = next(g.parameters())
        with torch.no_grad():
            y = g(t.unsqueeze(1).to(device=p.device, dtype=p.dtype))[:, 0].float().cpu().numpy()
        y = np.moveaxis(y.transpose(0, *range(self.dim, 0, -1)), 0, -1)
        return y[..., 0] if single else y


def _build(net, cfg, dim, tensors):
    from . import nn as dnn
    ngf = int(cfg.get("ngf", 64))
    cin, cout = int(cfg.get("in_channels", 1)), int(cfg.get("out_channels", 1))
    if net.startswith("g_"):
        if net == "g_ba":
            cin, cout = cout, cin
        return dnn.Generator(cin, cout, ngf, int(cfg.get("n_blocks", 6)),
                             offsets=any(k.startswith("off.") for k in tensors), dim=dim,
                             tanh=bool(cfg.get("tanh", True)), offset_hidden=int(cfg.get("offset_hidden", 32)))
    if net.startswith("s_"):
        hidden = cfg.get("stn_hidden", [128, 64])
        return dnn.STN(4 * ngf, int(cfg.get("control_points", 6)), int(hidden[0]), int(hidden[1]), dim=dim)
    return dnn.patchgan(cin if net == "d_a" else cout, int(cfg.get("ndf", 64)), int(cfg.get("n_layers", 3)), dim=dim)


def net_state_dicts(tensors):
    """{net: {key: array}} from a checkpoint's "<net>.<key>" tensors (Adam moments and pools left out)."""
    out = {}
    for name, a in tensors.items():
        net, _, key = name.partition(".")
        if net in NETS and key:
            out.setdefault(net, {})[key] = a
    return out


def load_checkpoint(path, nets=NETS, dtype=None):
    """A dicyc checkpoint (or a weights-only file with its metadata) as a Model with PyTorch networks.

    Each network present in the file is built from the checkpoint's configuration and loads its
    tensors strictly (a missing or unexpected tensor is an error naming it). dtype: the torch dtype
    of the networks (default float32; half checkpoints are widened)."""
    import torch
    if not os.path.isfile(path):
        raise CheckpointError("'%s': no such checkpoint" % path)
    try:
        meta, tensors = safetensors.read(path)
    except safetensors.FormatError as e:
        raise CheckpointError(str(e)) from None
    from .integrity import verify
    verify(path, meta, tensors)
    if "config" not in meta:
        raise CheckpointError("'%s' has no model configuration ('config' metadata): not a dicyc checkpoint" % path)
    try:
        cfg = json.loads(meta["config"])
    except ValueError as e:
        raise CheckpointError("'%s': the 'config' metadata is not JSON (%s)" % (path, e)) from None
    dim = int(meta.get("dim", meta.get("user.dim", "2")))
    if dim not in (2, 3):
        raise CheckpointError("'%s': dim is %r, expected 2 or 3" % (path, meta.get("dim")))
    data = DataInfo(meta, path) if "user.intensity_a" in meta else None
    built = {}
    for net, sd in net_state_dicts(tensors).items():
        if net not in nets:
            continue
        m = _build(net, cfg, dim, sd)
        try:
            m.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sd.items()}, strict=True)
        except RuntimeError as e:
            raise CheckpointError("'%s': the %s tensors do not match the configuration %s: %s"
                                  % (path, net, meta["config"], e)) from None
        m.eval()
        built[net] = m.to(dtype) if dtype is not None else m
    if "g_ab" not in built and "g_ba" not in built and any(n.startswith("g_") for n in nets):
        raise CheckpointError("'%s' holds no generator weights (names g_ab.*, g_ba.*)" % path)
    return Model(path, meta, cfg, dim, built, data)
