"""python -m dicyc: move dicyc weights to and from PyTorch, inspect checkpoints, synthesize.

    python -m dicyc export CKPT OUTDIR     checkpoint -> OUTDIR/<net>.pt state dicts (g_ab, g_ba with the
                                           offset branches "off.*" of DiCyc models, d_a, d_b, s_ab, s_ba),
                                           each checked by loading it strictly into dicyc.nn's network
    python -m dicyc import OUT.safetensors NET=FILE.pt [NET=FILE.pt ...]
                                           PyTorch state dicts -> a weights-only file for load_weights
                                           (names "<NET>.<key>", with checksums)
    python -m dicyc weights CKPT OUT.safetensors NET [NET ...] [--note TEXT]
                                           a checkpoint -> a weights-only file of the named networks
                                           (g_ab g_ba for synthesis) with the checkpoint's metadata
                                           (model, data preparation, run settings), checksummed;
                                           dicyc-synth and dicyc.load_checkpoint read it
    python -m dicyc show CKPT              metadata, checksum status and tensor list
    python -m dicyc synth CKPT IN.nii[.gz] OUT.nii[.gz] [ab|ba]
                                           dicyc-synth's translation of one volume, in PyTorch

dicyc writes parameters in PyTorch's layout under "<net>.<state dict key>", so export is a rename;
the Adam moments ("adam.*") and pooled images ("pool.*") are not exported.
"""
import os
import sys

from . import checkpoint, integrity, safetensors


def export(ckpt, outdir):
    import torch
    m = checkpoint.load_checkpoint(ckpt)
    os.makedirs(outdir, exist_ok=True)
    written = []
    for net in checkpoint.NETS:
        mod = getattr(m, net)
        if mod is None:
            continue
        sd = {k: v.detach().clone() for k, v in mod.state_dict().items()}
        torch.save(sd, os.path.join(outdir, net + ".pt"))
        written.append("%s.pt (%d tensors, loaded strictly)" % (net, len(sd)))
    print("wrote", ", ".join(written), "to", outdir)


def import_(out, pairs):
    import torch
    tensors = {}
    for p in pairs:
        net, sep, f = p.partition("=")
        if not sep or net not in checkpoint.NETS:
            sys.exit("import: expected NET=FILE.pt with NET one of %s, got '%s'" % (", ".join(checkpoint.NETS), p))
        for k, v in torch.load(f, map_location="cpu").items():
            tensors[net + "." + k] = v.detach().float().numpy()
    meta = integrity.add_checksums({"format": "dicyc.weights", "source": "pytorch"}, tensors)
    safetensors.write(out, tensors, meta)
    print("wrote %d tensors to %s" % (len(tensors), out))


def weights(ckpt, out, args):
    note = None
    nets = []
    it = iter(args)
    for a in it:
        if a == "--note":
            note = next(it, None)
            if note is None:
                sys.exit("weights: --note needs a text")
        elif a in checkpoint.NETS:
            nets.append(a)
        else:
            sys.exit("weights: expected network names (%s) or --note TEXT, got '%s'" % (", ".join(checkpoint.NETS), a))
    if not nets:
        sys.exit("weights: name the networks to keep (g_ab g_ba for synthesis)")
    meta, tensors = safetensors.read(ckpt)
    integrity.verify(ckpt, meta, tensors)  # never pass damage on under fresh checksums
    if "config" not in meta:
        sys.exit("weights: '%s' has no model configuration: not a dicyc checkpoint" % ckpt)
    keep = {k: v for k, v in tensors.items() if k.split(".")[0] in nets}
    missing = [n for n in nets if not any(k.startswith(n + ".") for k in keep)]
    if missing:
        sys.exit("weights: '%s' has no tensors of %s" % (ckpt, ", ".join(missing)))
    meta = {k: v for k, v in meta.items() if k not in ("checksums", "metadata_checksum")}
    meta["format"] = "dicyc.weights"
    meta["source"] = "dicyc checkpoint (networks %s)" % " ".join(nets)
    if note:
        meta["note"] = note
    tmp = out + ".tmp"
    safetensors.write(tmp, keep, integrity.add_checksums(meta, keep))
    os.replace(tmp, out)
    print("wrote %d tensors of %s to %s" % (len(keep), ", ".join(nets), out))


def show(ckpt):
    meta, tensors = safetensors.read(ckpt)
    ok = integrity.verify(ckpt, meta, tensors)
    for k, v in sorted(meta.items()):
        if k not in ("checksums",):
            print("%s: %s" % (k, v))
    print("checksums: %s" % ("verified" if ok else "none (written before dicyc stored checksums)"))
    for k, v in tensors.items():
        print("%-40s %-8s %s" % (k, v.dtype, list(v.shape)))


def synth(ckpt, src, dst, direction="ab"):
    from . import synth as s, volume
    m = checkpoint.load_checkpoint(ckpt)
    vol = volume.read_nifti(src)
    out = s.synthesize(m, vol, direction)
    volume.write_nifti(dst, volume.Volume(out, vol.affine, vol.spacing))
    print("%s -> %s (%s)" % (src, dst, "A -> B" if direction == "ab" else "B -> A"))


def main(argv):
    try:
        if len(argv) == 3 and argv[0] == "export":
            export(argv[1], argv[2])
        elif len(argv) >= 3 and argv[0] == "import":
            import_(argv[1], argv[2:])
        elif len(argv) >= 4 and argv[0] == "weights":
            weights(argv[1], argv[2], argv[3:])
        elif len(argv) == 2 and argv[0] == "show":
            show(argv[1])
        elif len(argv) in (4, 5) and argv[0] == "synth":
            synth(*argv[1:])
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except (ValueError, OSError) as e:
        print("dicyc: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
