#!/usr/bin/python3
"""Moves dicyc weights to and from PyTorch, with nothing but json + numpy (+ torch for .pt files).

    checkpoint_torch.py export CKPT OUTDIR     dicyc checkpoint -> OUTDIR/<net>.pt state dicts
                                               (g_ab, g_ba, d_a, d_b), checked by loading them
                                               strictly into shared/bench/torch_reference.py's
                                               Generator / patchgan70 when that file is found
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
NETS = ("g_ab", "g_ba", "d_a", "d_b")
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


def export(ckpt, outdir):
    import torch
    meta, tensors = read_safetensors(ckpt)
    cfg = json.loads(meta.get("config", "{}"))
    os.makedirs(outdir, exist_ok=True)
    ref = None
    if os.path.exists(REF) and meta.get("dim") == "2":
        import importlib.util
        spec = importlib.util.spec_from_file_location("torch_reference", REF)
        ref = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ref)
    for net in NETS:
        sd = {k[len(net) + 1:]: torch.from_numpy(v.copy()) for k, v in tensors.items() if k.startswith(net + ".")}
        if not sd:
            continue
        if ref is not None:
            if net.startswith("g_"):
                cin, cout = cfg.get("in_channels", 1), cfg.get("out_channels", 1)
                if net == "g_ba":
                    cin, cout = cout, cin
                m = ref.Generator(cin, cout, cfg.get("ngf", 64), cfg.get("n_blocks", 6))
            else:
                m = ref.patchgan70(cfg.get("in_channels" if net == "d_a" else "out_channels", 1), cfg.get("ndf", 64))
            m.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
            print("%s: %d tensors load strictly into the reference network" % (net, len(sd)))
        torch.save(sd, os.path.join(outdir, net + ".pt"))
    print("wrote", ", ".join(n + ".pt" for n in NETS if any(k.startswith(n + ".") for k in tensors)), "to", outdir)


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
    if len(sys.argv) >= 4 and sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "import":
        import_(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "show":
        show(sys.argv[2])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
