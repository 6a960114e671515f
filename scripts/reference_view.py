#!/usr/bin/python3
"""One axial slice of pseudo-CTs beside a real CT, at a bone and a brain window (the figure
docs/results/mrct_reference_ch2.png):

    PYTHONPATH=python python3 scripts/reference_view.py OUT.png Z CT.nii.gz ZCT PSEUDO.nii.gz [PSEUDO ...]

Columns: each pseudo-CT's slice Z (voxel index along the third axis), then the real CT's slice ZCT
resampled to the same size; rows: window -1000..2000 HU and -100..200 HU.
"""
import sys

import numpy as np
from skimage import io
from skimage.transform import resize

import dicyc


def win(a, lo, hi):
    return (np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def main(argv):
    if len(argv) < 5:
        sys.exit(__doc__)
    out, z, ct_path, zc, pseudo = argv[0], int(argv[1]), argv[2], int(argv[3]), argv[4:]
    cols = [np.rot90(dicyc.read_nifti(p).data[:, :, z]) for p in pseudo]
    ct = np.rot90(dicyc.read_nifti(ct_path).data[:, :, zc])
    cols.append(resize(ct, cols[0].shape, preserve_range=True))
    rows = [np.concatenate([win(c, lo, hi) for c in cols], 1) for lo, hi in ((-1000, 2000), (-100, 200))]
    io.imsave(out, np.concatenate(rows, 0))
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1:])
