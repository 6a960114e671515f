"""Shared fixtures: dicyc's command-line tools (DICYC_BIN, or the first build folder found) and
small synthetic head phantoms written by the package's own NIfTI writer."""
import glob
import os
import subprocess

import numpy as np
import pytest

import dicyc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_bin():
    env = os.environ.get("DICYC_BIN")
    if env:
        return env
    for cand in sorted(glob.glob(os.path.join(ROOT, "build", "*", "examples"))):
        if os.access(os.path.join(cand, "dicyc-train"), os.X_OK):
            return cand
    return None


@pytest.fixture(scope="session")
def tools():
    b = find_bin()
    if b is None or not os.access(os.path.join(b, "dicyc-train"), os.X_OK):
        pytest.skip("dicyc's tools are not built (set DICYC_BIN to the folder holding dicyc-train)")
    return b


def phantom(shape, spacing, ct, flip_x, seed):
    """An ellipsoidal head (skull, brain, ventricles) with texture; CT-like in HU or MR-like."""
    rng = np.random.default_rng(seed)
    idx = np.meshgrid(*[(np.arange(n) + 0.5) / n * 2 - 1 for n in shape], indexing="ij")
    x, y, z = idx
    r = np.sqrt(x * x / 0.7 + y * y / 0.85 + z * z / 0.9)
    vent = np.sqrt(x * x / 0.01 + y * y / 0.06 + z * z / 0.05)
    if ct:
        v = np.where(r > 1, -1000.0, np.where(r > 0.9, 1200 + 100 * np.sin(9 * y),
                                              np.where(vent < 1, 5.0, 35 + 5 * np.sin(7 * x + 3 * z))))
    else:
        v = np.where(r > 1, 0.0, np.where(r > 0.9, 30.0,
                                          np.where(vent < 1, 40.0, 150 + 40 * np.sin(5 * x) * np.cos(4 * y))))
    v = v + rng.normal(0, 2, shape)
    aff = np.diag([(-1 if flip_x else 1) * spacing, spacing, spacing, 1.0])
    aff[:3, 3] = [(1 if flip_x else -1) * 0.5 * spacing * shape[0], -0.5 * spacing * shape[1],
                  -0.5 * spacing * shape[2]]
    return dicyc.Volume(v.astype(np.float32), aff, (spacing,) * 3)


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("phantoms")
    for dom, ct, flip, sp in (("a", False, True, 1.5), ("b", True, False, 1.2)):
        os.makedirs(d / dom)
        for s in range(2):
            dicyc.write_nifti(str(d / dom / ("subj%d.nii.gz" % s)), phantom((40, 44, 30), sp, ct, flip, 10 * s + ct))
    return d


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.returncode == 0, "%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stdout[-2000:])
    return p.stdout


TINY = ["--ngf", "4", "--blocks", "1", "--ndf", "8", "--d-layers", "2", "--threads", "1"]


@pytest.fixture(scope="session")
def trained(tools, data, tmp_path_factory):
    """{(dim, model): checkpoint path} of short dicyc-train runs (2-D and 3-D, CycleGAN and NMI-DiCyc)."""
    out = {}
    only_2d = os.environ.get("DICYC_TOOLS_VARIANTS", "") == "2d-float"  # a build of the tools with 2-D float only
    for dim, crop, iters in ((2, 16, 3), (3, 16, 2)):
        if dim == 3 and only_2d:
            continue
        for model in ("cyclegan", "nmi-dicyc"):
            d = tmp_path_factory.mktemp("run%dd_%s" % (dim, model))
            run([os.path.join(tools, "dicyc-train"), "-a", str(data / "a"), "-b", str(data / "b"), "--model", model,
                 "--dim", str(dim), "--crop", str(crop), "--spacing", "2", "--max-iters", str(iters),
                 "--checkpoint-every", str(iters), "--sample-every", "1000", "--out", str(d)] + TINY)
            out[(dim, model)] = str(d / "checkpoint.safetensors")
    return out
