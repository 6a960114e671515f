"""The Python package against dicyc's own tools: checkpoints load strictly, the PyTorch generators
reproduce dicyc-synth's volumes, export/import round-trips, and damaged files are refused."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

import dicyc
from dicyc import integrity, safetensors
from conftest import ROOT, run


def synth_cli(tools, ckpt, src_dir, out_dir, direction, extra=()):
    run([os.path.join(tools, "dicyc-synth"), "--checkpoint", ckpt, "--in", str(src_dir), "--out", str(out_dir),
         "--direction", direction, "--threads", "1"] + list(extra))


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("model", ["cyclegan", "nmi-dicyc"])
def test_checkpoint_loads_strictly(trained, dim, model):
    need(trained, dim, model)
    m = dicyc.load_checkpoint(trained[(dim, model)])
    assert m.dim == dim and m.iteration is not None
    assert m.g_ab is not None and m.g_ba is not None and m.d_a is not None and m.d_b is not None
    assert (m.s_ab is not None) == (model == "nmi-dicyc")
    assert (m.g_ab.off is not None) == (model == "nmi-dicyc")
    assert m.map_b.kind == "percentile" and m.map_b.a < -900  # the CT-like domain's units are HU
    meta, tensors = safetensors.read(trained[(dim, model)])
    assert integrity.verify(trained[(dim, model)], meta, tensors)  # dicyc's checksums, checked by Python's zlib CRC
    n = sum(1 for k in tensors if k.split(".")[0] in ("g_ab", "g_ba", "d_a", "d_b", "s_ab", "s_ba"))
    assert n == sum(len(getattr(m, k).state_dict()) for k in ("g_ab", "g_ba", "d_a", "d_b", "s_ab", "s_ba")
                    if getattr(m, k) is not None)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("model", ["cyclegan", "nmi-dicyc"])
@pytest.mark.parametrize("direction", ["ab", "ba"])
def test_synthesize_matches_dicyc_synth(trained, data, tmp_path, dim, model, direction):
    """dicyc.synthesize (prepare, translate, map back, resample onto the input grid) equals dicyc-synth's
    output within 1e-4 of the target range, on a held-out volume in another orientation and spacing."""
    ckpt = need(trained, dim, model)
    src_dir = data / ("a" if direction == "ab" else "b")
    synth_cli(tools_dir(), ckpt, src_dir, tmp_path, direction)
    m = dicyc.load_checkpoint(ckpt)
    target = m.map_b if direction == "ab" else m.map_a
    for name in ("subj0", "subj1"):
        vol = dicyc.read_nifti(str(src_dir / (name + ".nii.gz")))
        ours = dicyc.synthesize(m, vol, direction)
        theirs = dicyc.read_nifti(str(tmp_path / (name + ".nii.gz")))
        assert ours.shape == theirs.data.shape
        assert np.allclose(theirs.affine, vol.affine, atol=1e-4)
        err = np.abs(ours - theirs.data).max() / (target.b - target.a) * 2
        assert err < 1e-4, "%s %s: max difference %.3g of the normalised range" % (name, direction, err)


def need(trained, dim, model):
    if (dim, model) not in trained:
        pytest.skip("the tools were built with 2-D float models only (DICYC_TOOLS_VARIANTS=2d-float)")
    return trained[(dim, model)]


def tools_dir():
    from conftest import find_bin
    return find_bin()


def test_translate_shapes(trained):
    m = dicyc.load_checkpoint(trained[(2, "cyclegan")])
    x = np.random.default_rng(0).uniform(-1, 1, (24, 16)).astype(np.float32)
    y = m.translate(x, "ab")
    assert y.shape == x.shape and np.all(np.abs(y) <= 1)
    yb = m.translate(np.stack([x, x], -1), "ab")
    assert np.allclose(yb[..., 1], y, atol=1e-6)
    with pytest.raises(ValueError):
        m.translate(np.zeros((2, 3, 4, 5)), "ab")
    with pytest.raises(ValueError):
        m.translate(x, "sideways")


def test_export_import_roundtrip(trained, tmp_path):
    ckpt = trained[(2, "nmi-dicyc")]
    r = subprocess.run([sys.executable, "-m", "dicyc", "export", ckpt, str(tmp_path / "pt")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    nets = sorted(f[:-3] for f in os.listdir(tmp_path / "pt"))
    assert nets == ["d_a", "d_b", "g_ab", "g_ba", "s_ab", "s_ba"]
    out = str(tmp_path / "back.safetensors")
    r = subprocess.run([sys.executable, "-m", "dicyc", "import", out] +
                       ["%s=%s" % (n, tmp_path / "pt" / (n + ".pt")) for n in nets], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _, orig = safetensors.read(ckpt)
    meta, back = safetensors.read(out)
    assert integrity.verify(out, meta, back)
    want = {k: v for k, v in orig.items() if k.split(".")[0] in nets}
    assert sorted(want) == sorted(back)
    for k in want:
        assert want[k].dtype == back[k].dtype and np.array_equal(want[k], back[k]), k


def test_weights_only_file_translates(trained, tmp_path):
    """A file of generator weights alone (what load_weights reads) still gives the same translation."""
    ckpt = trained[(2, "cyclegan")]
    meta, tensors = safetensors.read(ckpt)
    keep = {k: v for k, v in tensors.items() if k.startswith(("g_ab.", "g_ba."))}
    small = {k: meta[k] for k in ("config", "dim", "scalar", "model")}
    p = str(tmp_path / "weights.safetensors")
    safetensors.write(p, keep, integrity.add_checksums(small, keep))
    a, b = dicyc.load_checkpoint(ckpt), dicyc.load_checkpoint(p)
    assert b.d_a is None and b.data is None
    x = np.random.default_rng(1).uniform(-1, 1, (16, 20)).astype(np.float32)
    assert np.array_equal(a.translate(x), b.translate(x))
    with pytest.raises(ValueError, match="data preparation"):
        dicyc.synthesize(b, np.zeros((8, 8, 8), np.float32))


def test_weights_command_keeps_what_synthesis_needs(trained, data, tmp_path):
    """python -m dicyc weights (how models/ reference files are made): generators only, the checkpoint's
    metadata kept, checksummed; dicyc-synth gives the same volumes with it as with the checkpoint, both
    directions; a damaged checkpoint or an unknown network is refused and nothing is written."""
    ckpt = trained[(2, "nmi-dicyc")]
    out = str(tmp_path / "g.safetensors")
    r = subprocess.run([sys.executable, "-m", "dicyc", "weights", ckpt, out, "g_ab", "g_ba", "--note", "a test"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    meta, tensors = safetensors.read(out)
    assert integrity.verify(out, meta, tensors)
    assert meta["format"] == "dicyc.weights" and meta["note"] == "a test"
    assert sorted({k.split(".")[0] for k in tensors}) == ["g_ab", "g_ba"]
    assert any(".off" in k or "off." in k for k in tensors)  # DiCyc's offset branches travel with the generators
    cmeta, ctensors = safetensors.read(ckpt)
    for k in ("config", "scalar", "dim", "user.intensity_a", "user.intensity_b", "user.spacing", "user.train"):
        assert meta[k] == cmeta[k], k
    for k, v in tensors.items():
        assert np.array_equal(v, ctensors[k]), k
    for direction in ("ab", "ba"):
        src = data / ("a" if direction == "ab" else "b")
        synth_cli(tools_dir(), ckpt, src, tmp_path / ("c" + direction), direction)
        synth_cli(tools_dir(), out, src, tmp_path / ("w" + direction), direction)
        for name in ("subj0", "subj1"):
            a = dicyc.read_nifti(str(tmp_path / ("c" + direction) / (name + ".nii.gz"))).data
            b = dicyc.read_nifti(str(tmp_path / ("w" + direction) / (name + ".nii.gz"))).data
            assert np.array_equal(a, b), (direction, name)
    # One direction only (what models/ ships): the other is refused by both sides, naming it.
    one = str(tmp_path / "ab.safetensors")
    r = subprocess.run([sys.executable, "-m", "dicyc", "weights", ckpt, one, "g_ab"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m1 = dicyc.load_checkpoint(one)
    assert m1.g_ba is None
    with pytest.raises(ValueError, match="B -> A generator"):
        m1.translate(np.zeros((16, 16), np.float32), "ba")
    p = subprocess.run([os.path.join(tools_dir(), "dicyc-synth"), "--checkpoint", one, "--in", str(data / "b"),
                        "--out", str(tmp_path / "oneba"), "--direction", "ba", "--threads", "1"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 1 and "no weights of the B -> A generator" in p.stdout, p.stdout
    synth_cli(tools_dir(), one, data / "a", tmp_path / "oneab", "ab")
    assert np.array_equal(dicyc.read_nifti(str(tmp_path / "oneab" / "subj0.nii.gz")).data,
                          dicyc.read_nifti(str(tmp_path / "cab" / "subj0.nii.gz")).data)
    bad = str(tmp_path / "bad.safetensors")
    raw = bytearray(open(ckpt, "rb").read())
    raw[-100] ^= 0xFF
    open(bad, "wb").write(bytes(raw))
    for args in ([bad, str(tmp_path / "x.safetensors"), "g_ab"], [ckpt, str(tmp_path / "y.safetensors"), "g_xy"]):
        r = subprocess.run([sys.executable, "-m", "dicyc", "weights"] + args, capture_output=True, text=True)
        assert r.returncode != 0 and not os.path.exists(args[1]), r.stderr
    assert "checksum" in subprocess.run([sys.executable, "-m", "dicyc", "weights", bad, str(tmp_path / "z"), "g_ab"],
                                        capture_output=True, text=True).stderr


def _checksummed_copy(ckpt, path):
    meta, tensors = safetensors.read(ckpt)
    meta = {k: v for k, v in meta.items() if k not in ("checksums", "metadata_checksum")}
    safetensors.write(path, tensors, integrity.add_checksums(meta, tensors))
    return path


def test_damage_is_refused(trained, tmp_path):
    good = _checksummed_copy(trained[(2, "nmi-dicyc")], str(tmp_path / "good.safetensors"))
    dicyc.load_checkpoint(good)
    raw = bytearray(open(good, "rb").read())
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    b0 = header["g_ab.res.0.block.1.weight"]["data_offsets"][0] + 8 + n
    flipped = bytearray(raw)
    flipped[b0 + 5] ^= 0x40
    p = str(tmp_path / "flip.safetensors")
    open(p, "wb").write(flipped)
    with pytest.raises(dicyc.IntegrityError, match="g_ab.res.0.block.1.weight"):
        dicyc.load_checkpoint(p)
    p = str(tmp_path / "trunc.safetensors")
    open(p, "wb").write(raw[:len(raw) - 100])
    with pytest.raises(ValueError, match="truncated"):
        dicyc.load_checkpoint(p)
    hdr = raw[8:8 + n].decode().replace('"scalar":"F32"', '"scalar":"Q99"')
    p = str(tmp_path / "meta.safetensors")
    open(p, "wb").write(raw[:8] + hdr.encode() + raw[8 + n:])
    with pytest.raises(dicyc.IntegrityError, match="metadata"):
        dicyc.load_checkpoint(p)


def test_files_without_checksums_still_load(trained, tmp_path):
    """dicyc writes checksums; a file from before them (none) loads, and its tensors are the same."""
    meta, tensors = safetensors.read(trained[(2, "cyclegan")])
    assert integrity.has_checksums(meta)
    old = {k: v for k, v in meta.items() if k not in ("checksums", "metadata_checksum")}
    p = str(tmp_path / "old.safetensors")
    safetensors.write(p, tensors, old)
    assert not integrity.has_checksums(safetensors.read(p)[0])
    a, b = dicyc.load_checkpoint(trained[(2, "cyclegan")]), dicyc.load_checkpoint(p)
    x = np.random.default_rng(2).uniform(-1, 1, (16, 16)).astype(np.float32)
    assert np.array_equal(a.translate(x), b.translate(x))


def test_wrong_config_is_named(trained, tmp_path):
    meta, tensors = safetensors.read(trained[(2, "cyclegan")])
    cfg = json.loads(meta["config"])
    cfg["ngf"] = 8
    meta = dict(meta, config=json.dumps(cfg))
    meta.pop("checksums", None)
    meta.pop("metadata_checksum", None)
    p = str(tmp_path / "bad.safetensors")
    safetensors.write(p, tensors, meta)
    with pytest.raises(dicyc.CheckpointError, match="g_a"):
        dicyc.load_checkpoint(p)


def test_nifti_roundtrip_and_geometry(tmp_path):
    from conftest import phantom
    v = phantom((10, 12, 8), 1.5, True, True, 3)
    p = str(tmp_path / "v.nii.gz")
    dicyc.write_nifti(p, v)
    w = dicyc.read_nifti(p)
    assert np.array_equal(v.data, w.data) and np.allclose(v.affine, w.affine)
    from dicyc.volume import reorient_canonical, resample, resample_like
    c = reorient_canonical(w)
    assert np.array_equal(c.data, w.data[::-1]) and c.affine[0, 0] > 0
    # a world point keeps its voxel value through reorientation
    assert np.allclose(c.affine @ [0, 0, 0, 1], w.affine @ [9, 0, 0, 1])
    r = resample(c, (3.0, 3.0, 3.0))
    assert r.data.shape == (5, 6, 4)
    back = resample_like(c, w)
    assert np.allclose(back.data, w.data, atol=1e-4)


def test_window_checkpoint_synthesizes_as_dicyc_synth(tools, data, tmp_path):
    """A run trained with --window-b: the package prepares B inputs with the window (not percentiles)
    and writes HU through it, as dicyc-synth does."""
    run([os.path.join(tools, "dicyc-train"), "-a", str(data / "a"), "-b", str(data / "b"), "--model", "cyclegan",
         "--crop", "16", "--spacing", "2", "--max-iters", "2", "--window-b", "-1024,3000", "--out", str(tmp_path / "w"),
         "--ngf", "4", "--blocks", "1", "--ndf", "8", "--d-layers", "2", "--threads", "1"])
    ckpt = str(tmp_path / "w" / "checkpoint.safetensors")
    m = dicyc.load_checkpoint(ckpt)
    assert m.data.window_b == (-1024.0, 3000.0) and m.data.window_a is None
    assert (m.map_b.a, m.map_b.b) == (-1024.0, 3000.0)
    for direction, src in (("ba", data / "b"), ("ab", data / "a")):
        out = tmp_path / ("out_" + direction)
        synth_cli(tools, ckpt, src, out, direction)
        target = m.map_b if direction == "ab" else m.map_a
        vol = dicyc.read_nifti(str(src / "subj0.nii.gz"))
        ours = dicyc.synthesize(m, vol, direction)
        theirs = dicyc.read_nifti(str(out / "subj0.nii.gz")).data
        assert np.abs(ours - theirs).max() / (target.b - target.a) * 2 < 1e-4
