#!/usr/bin/python3
"""Moves dicyc weights to and from PyTorch, with nothing but json + numpy (+ torch for .pt files).

    checkpoint_torch.py export CKPT OUTDIR [--check REF.py | --no-check]
                                               dicyc checkpoint -> OUTDIR/<net>.pt state dicts:
                                               g_ab, g_ba (with the offset branches "off.*" of the
                                               DiCyc models), d_a, d_b, and the DiCyc STNs s_ab,
                                               s_ba. A 2-D export is checked by loading each state
                                               dict strictly into the PyTorch reference networks
                                               (Generator, patchgan70, STN of torch_reference.py)
                                               when that file is given or found beside the
                                               project (shared/bench/); without it the export
                                               still works and says the check was skipped
    checkpoint_torch.py import OUT.safetensors NET=FILE.pt [NET=FILE.pt ...]
                                               PyTorch state dicts -> a weights-only safetensors
                                               file for CycleGan::load_weights (names "<NET>.<key>")
    checkpoint_torch.py show CKPT              metadata and tensor list

dicyc writes parameters in PyTorch's layout and shape under "<net>.<state dict key>", so export is a
rename; the Adam moments ("adam.*") and pooled images ("pool.*") stay in dicyc's own order and are
not exported.
"""
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}
NETS = ("g_ab", "g_ba", "d_a", "d_b", "s_ab", "s_ba")
REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench", "torch_reference.py")


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        tensors[name] = np.frombuffer(data[base + b:base + end], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
    return meta, tensors


def write_safetensors(path, tensors, meta=None):
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    inv = {v: k for k, v in DTYPES.items()}
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        raw = a.tobytes()
        header[name] = {"dtype": inv[a.dtype.type], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


def load_reference(path):
    import importlib.util
    # Only state dicts are loaded into it, so its refusal to time on the reference BLAS is moot.
    os.environ.setdefault("DICYC_ALLOW_REFERENCE_BLAS", "1")
    spec = importlib.util.spec_from_file_location("torch_reference", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    return ref


def reference_net(ref, net, cfg, sd):
    """The reference network a state dict of `net` must load into."""
    gen = cfg.get("generator", {})
    ngf = gen.get("ngf", cfg.get("ngf", 64))
    cin, cout = cfg.get("in_channels", 1), cfg.get("out_channels", 1)
    if net.startswith("g_"):
        if net == "g_ba":
            cin, cout = cout, cin
        blocks = gen.get("n_blocks", cfg.get("n_blocks", 6))
        return ref.Generator(cin, cout, ngf, blocks, offsets=any(k.startswith("off.") for k in sd))
    if net.startswith("s_"):
        return ref.STN(4 * ngf, cfg.get("control_points", 6))
    if cfg.get("n_layers", 3) != 3:
        return None  # the reference PatchGAN has 3 layers
    return ref.patchgan70(cin if net == "d_a" else cout, cfg.get("ndf", 64))


def export(ckpt, outdir, check=None):
    """check: a path to torch_reference.py, False to skip, None to use shared/bench's if present."""
    import torch
    meta, tensors = read_safetensors(ckpt)
    cfg = json.loads(meta.get("config", "{}"))
    os.makedirs(outdir, exist_ok=True)
    dim = meta.get("user.dim", meta.get("dim", "2"))
    ref = None
    if check is None and os.path.exists(REF):
        check = REF
    if check and dim == "2":
        ref = load_reference(check)
    elif check:
        print("reference check skipped: the PyTorch reference is 2-D and this checkpoint is %s-D" % dim)
    else:
        print("reference check skipped (no torch_reference.py given or found)")
    written = []
    for net in NETS:
        sd = {k[len(net) + 1:]: torch.from_numpy(v.copy()) for k, v in tensors.items() if k.startswith(net + ".")}
        if not sd:
            continue
        if ref is not None:
            m = reference_net(ref, net, cfg, sd)
            if m is None:
                print("%s: no reference network for this configuration; not checked" % net)
            else:
                m.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
                print("%s: %d tensors load strictly into the reference network" % (net, len(sd)))
        torch.save(sd, os.path.join(outdir, net + ".pt"))
        written.append(net + ".pt")
    if not written:
        sys.exit("export: '%s' holds no network weights (names g_ab.*, g_ba.*, d_a.*, d_b.*, s_ab.*, s_ba.*)" % ckpt)
    print("wrote", ", ".join(written), "to", outdir)


def import_(out, pairs):
    import torch
    tensors = {}
    for p in pairs:
        net, f = p.split("=", 1)
        for k, v in torch.load(f, map_location="cpu").items():
            tensors[net + "." + k] = v.detach().numpy()
    write_safetensors(out, tensors, {"format": "dicyc.weights", "source": "pytorch"})
    print("wrote %d tensors to %s" % (len(tensors), out))


def show(ckpt):
    meta, tensors = read_safetensors(ckpt)
    for k, v in sorted(meta.items()):
        print("%s: %s" % (k, v))
    for k, v in tensors.items():
        print("%-40s %-8s %s" % (k, v.dtype, list(v.shape)))


def main():
    if len(sys.argv) in (4, 5, 6) and sys.argv[1] == "export":
        extra = sys.argv[4:]
        check = None
        if extra == ["--no-check"]:
            check = False
        elif len(extra) == 2 and extra[0] == "--check":
            check = extra[1]
        elif extra:
            print(__doc__, file=sys.stderr)
            sys.exit(2)
        export(sys.argv[2], sys.argv[3], check)
    elif len(sys.argv) >= 4 and sys.argv[1] == "import":
        import_(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "show":
        show(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
