"""Volumes as dicyc-train and dicyc-synth prepare them, in numpy: NIfTI-1 reading and writing,
resampling to a spacing, reorientation to RAS+, resampling back onto a source grid, and the
intensity maps stored in a checkpoint. Arrays are indexed [i, j, k] (x, y, z), as nibabel gives
them; `affine` is the 4x4 voxel -> world (mm) matrix (the sform when set, else the qform).
"""
import gzip
import math
import struct

import numpy as np

__all__ = ["Volume", "read_nifti", "write_nifti", "resample", "reorient_canonical", "resample_like", "IntensityMap",
           "percentile"]


class Volume:
    """Voxels (float32, [i, j, k]), the voxel -> world affine and the voxel spacing in mm."""

    def __init__(self, data, affine=None, spacing=None):
        self.data = np.asarray(data, dtype=np.float32)
        if self.data.ndim != 3:
            raise ValueError("a volume is 3-D (a 2-D image is one axial slice: shape (x, y, 1)), got shape %s"
                             % (self.data.shape,))
        if spacing is None:
            spacing = (1.0, 1.0, 1.0) if affine is None else tuple(np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
        self.spacing = tuple(float(s) for s in spacing)
        self.affine = np.diag(list(self.spacing) + [1.0]) if affine is None else np.asarray(affine, dtype=np.float64)

    def regridded(self, data, index_map, spacing):
        """A volume on a new grid whose voxel index maps to this one's through index_map (homogeneous)."""
        return Volume(data, self.affine @ index_map, spacing)


# ----------------------------------------------------------------------------- NIfTI-1
_NIFTI_TYPES = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64, 256: np.int8, 512: np.uint16,
                768: np.uint32}


def _quatern_to_mat44(b, c, d, qx, qy, qz, dx, dy, dz, qfac):
    a = 1.0 - (b * b + c * c + d * d)
    if a < 1e-7:
        s = 1.0 / math.sqrt(b * b + c * c + d * d)
        a, b, c, d = 0.0, b * s, c * s, d * s
    else:
        a = math.sqrt(a)
    xd, yd, zd = (dx if dx > 0 else 1.0), (dy if dy > 0 else 1.0), (dz if dz > 0 else 1.0)
    if qfac < 0:
        zd = -zd
    r = np.array([[(a * a + b * b - c * c - d * d) * xd, 2 * (b * c - a * d) * yd, 2 * (b * d + a * c) * zd, qx],
                  [2 * (b * c + a * d) * xd, (a * a + c * c - b * b - d * d) * yd, 2 * (c * d - a * b) * zd, qy],
                  [2 * (b * d - a * c) * xd, 2 * (c * d + a * b) * yd, (a * a + d * d - c * c - b * b) * zd, qz],
                  [0, 0, 0, 1]], dtype=np.float64)
    return r.astype(np.float32).astype(np.float64)  # nifti1_io returns a float mat44


def read_nifti(path, volume=None):
    """Reads a .nii or .nii.gz file (scl_slope/scl_inter applied) as a Volume; 4-D files need `volume`."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 348:
        raise ValueError("'%s': %d bytes, too short for a NIfTI-1 header" % (path, len(raw)))
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    if struct.unpack(endian + "i", raw[:4])[0] != 348:
        raise ValueError("'%s' is not a NIfTI-1 file (sizeof_hdr is not 348)" % path)
    dim = struct.unpack(endian + "8h", raw[40:56])
    datatype = struct.unpack(endian + "h", raw[70:72])[0]
    pixdim = struct.unpack(endian + "8f", raw[76:108])
    vox_offset = int(struct.unpack(endian + "f", raw[108:112])[0])
    slope, inter = struct.unpack(endian + "2f", raw[112:120])
    qform_code, sform_code = struct.unpack(endian + "2h", raw[252:256])
    quatern = struct.unpack(endian + "6f", raw[256:280])
    srows = struct.unpack(endian + "12f", raw[280:328])
    if datatype not in _NIFTI_TYPES:
        raise ValueError("'%s': NIfTI datatype %d is not supported" % (path, datatype))
    nd = dim[0]
    shape = [max(1, dim[i]) if i <= nd else 1 for i in range(1, 4)]
    nvol = int(np.prod([max(1, dim[i]) for i in range(4, nd + 1)])) if nd > 3 else 1
    if nvol > 1 and volume is None:
        raise ValueError("'%s' holds %d volumes; say which one (volume=)" % (path, nvol))
    dt = np.dtype(_NIFTI_TYPES[datatype]).newbyteorder(endian)
    count = int(np.prod(shape))
    start = max(vox_offset, 348) + (volume or 0) * count * dt.itemsize
    if len(raw) < start + count * dt.itemsize:
        raise ValueError("'%s': truncated (the header promises %d voxels)" % (path, count))
    v = np.frombuffer(raw, dtype=dt, count=count, offset=start).astype(np.float32)
    if math.isfinite(slope) and slope != 0:
        v = (v * np.float32(slope) + np.float32(inter if math.isfinite(inter) else 0)).astype(np.float32)
    data = v.reshape(shape[::-1]).transpose(2, 1, 0)  # file order is x fastest
    spacing = [abs(p) if math.isfinite(p) and p != 0 else 1.0 for p in pixdim[1:4]]
    if sform_code > 0:
        affine = np.vstack([np.array(srows, dtype=np.float64).reshape(3, 4), [0, 0, 0, 1]])
    elif qform_code > 0:
        qfac = -1.0 if pixdim[0] < 0 else 1.0
        affine = _quatern_to_mat44(*quatern, *[np.float32(s) for s in spacing], qfac)
    else:
        affine = np.diag(spacing + [1.0])
    return Volume(data, affine, spacing)


def write_nifti(path, vol):
    """Writes a Volume as float32 NIfTI-1 (.nii or .nii.gz) with its affine as sform and qform-free header."""
    d = vol.data.shape
    h = bytearray(352)
    struct.pack_into("<i", h, 0, 348)
    struct.pack_into("<8h", h, 40, 3, d[0], d[1], d[2], 1, 1, 1, 1)
    struct.pack_into("<hh", h, 70, 16, 32)
    struct.pack_into("<8f", h, 76, 1.0, *vol.spacing, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", h, 108, 352.0)
    struct.pack_into("<2f", h, 112, 1.0, 0.0)
    struct.pack_into("<B", h, 123, 2)  # xyzt_units: mm
    struct.pack_into("<2h", h, 252, 0, 2)  # qform_code 0, sform_code 2 (aligned)
    struct.pack_into("<12f", h, 280, *np.asarray(vol.affine[:3, :], dtype=np.float64).flatten())
    h[344:348] = b"n+1\0"
    body = bytes(h) + np.asarray(vol.data, dtype="<f4").transpose(2, 1, 0).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(body)


# ----------------------------------------------------------------------------- geometry
def resample(vol, spacing):
    """To `spacing` mm over the same field of view: round(n * old / new) voxels per axis, centre-aligned,
    trilinear with edge values held (dicyc's data::resample, in the same float32 order of operations)."""
    od = vol.data.shape
    nd, taps, index_map = [], [], np.eye(4)
    for a in range(3):
        scale = spacing[a] / vol.spacing[a]
        n = max(1, int(math.floor(od[a] / scale + 0.5)))  # std::round: halves away from zero
        nd.append(n)
        index_map[a, a] = scale
        index_map[a, 3] = 0.5 * scale - 0.5
        x = np.clip((np.arange(n) + 0.5) * scale - 0.5, 0.0, od[a] - 1)
        i0 = np.floor(x).astype(np.int64)
        i1 = np.minimum(i0 + 1, od[a] - 1)
        taps.append((i0, i1, (x - i0).astype(np.float32)))
    src = vol.data
    (x0, x1, wx), (y0, y1, wy), (z0, z1, wz) = taps
    wx, wy, wz = wx[:, None, None], wy[None, :, None], wz[None, None, :]
    one = np.float32(1)

    def at(i, j, k):
        return src[np.ix_(i, j, k)]
    c00 = at(x0, y0, z0) * (one - wx) + at(x1, y0, z0) * wx
    c10 = at(x0, y1, z0) * (one - wx) + at(x1, y1, z0) * wx
    c01 = at(x0, y0, z1) * (one - wx) + at(x1, y0, z1) * wx
    c11 = at(x0, y1, z1) * (one - wx) + at(x1, y1, z1) * wx
    c0 = c00 * (one - wy) + c10 * wy
    c1 = c01 * (one - wy) + c11 * wy
    out = (c0 * (one - wz) + c1 * wz).astype(np.float32)
    return vol.regridded(out, index_map, tuple(float(s) for s in spacing))


def orientation(affine):
    """(perm, flip): new axis i is old axis perm[i], flipped when flip[i] (closest RAS+ axes, as nibabel)."""
    r = np.asarray(affine, dtype=np.float64)[:3, :3].copy()
    r /= np.linalg.norm(r, axis=0)
    perm, flip = [0, 0, 0], [False, False, False]
    rows, cols = set(), set()
    for _ in range(3):
        best, bi, bj = -1.0, 0, 0
        for i in range(3):
            for j in range(3):
                if i not in rows and j not in cols and abs(r[i, j]) > best:
                    best, bi, bj = abs(r[i, j]), i, j
        rows.add(bi)
        cols.add(bj)
        perm[bi], flip[bi] = bj, bool(r[bi, bj] < 0)
    return perm, flip


def reorient_canonical(vol):
    """Voxel axes reordered and flipped so that axis 0 points Right, 1 Anterior, 2 Superior."""
    perm, flip = orientation(vol.affine)
    if perm == [0, 1, 2] and not any(flip):
        return vol
    od = vol.data.shape
    data = np.transpose(vol.data, perm)
    m = np.zeros((4, 4))
    m[3, 3] = 1
    for i in range(3):
        if flip[i]:
            data = np.flip(data, axis=i)
        m[perm[i], i] = -1 if flip[i] else 1
        m[perm[i], 3] = od[perm[i]] - 1 if flip[i] else 0
    return vol.regridded(np.ascontiguousarray(data), m, tuple(vol.spacing[p] for p in perm))


def resample_like(src, like):
    """`src` onto the voxel grid of `like` through both affines: trilinear, edges held (data::resample_like)."""
    m = np.linalg.inv(src.affine) @ like.affine
    sd, ld = src.data.shape, like.data.shape
    i, j, k = np.meshgrid(np.arange(ld[0]), np.arange(ld[1]), np.arange(ld[2]), indexing="ij")
    p = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)], 0).astype(np.float64)
    q = (m @ p)[:3]
    for a in range(3):
        q[a] = np.clip(q[a], 0.0, sd[a] - 1)
    f = np.floor(q).astype(np.int64)
    w = q - f
    acc = np.zeros(q.shape[1])
    s = src.data.astype(np.float64)
    for c in range(8):
        bits = [(c >> a) & 1 for a in range(3)]
        wt = np.prod([w[a] if bits[a] else 1 - w[a] for a in range(3)], axis=0)
        idx = [np.clip(f[a] + bits[a], 0, sd[a] - 1) for a in range(3)]
        acc += np.where(wt != 0, wt * s[idx[0], idx[1], idx[2]], 0.0)
    return Volume(acc.astype(np.float32).reshape(ld), like.affine, like.spacing)


# ----------------------------------------------------------------------------- intensities
def percentile(values, q):
    """numpy.percentile with linear interpolation (dicyc's percentile_inplace)."""
    return float(np.percentile(np.asarray(values, dtype=np.float32).ravel(), q))


class IntensityMap:
    """percentile: [a, b] (source units) -> [-1, 1], clipped; zscore: (v - a) / b. As a checkpoint stores it."""

    def __init__(self, kind="percentile", a=-1.0, b=1.0):
        if kind not in ("percentile", "zscore"):
            raise ValueError("intensity map kind must be percentile or zscore, got %r" % (kind,))
        if not (math.isfinite(a) and math.isfinite(b)) or (b <= 0 if kind == "zscore" else b <= a):
            raise ValueError("bad intensity map %s %r %r" % (kind, a, b))
        self.kind, self.a, self.b = kind, float(a), float(b)

    @staticmethod
    def parse(text):
        parts = str(text).split()
        if len(parts) != 3:
            raise ValueError("bad intensity map '%s'" % text)
        return IntensityMap(parts[0], float(parts[1]), float(parts[2]))

    @staticmethod
    def fit(data, kind="percentile", p_lo=0.5, p_hi=99.5):
        v = np.asarray(data, dtype=np.float32).ravel()
        if kind == "zscore":
            mean = float(np.mean(v, dtype=np.float64))
            return IntensityMap("zscore", mean, float(np.sqrt(np.mean((v.astype(np.float64) - mean) ** 2))))
        return IntensityMap("percentile", percentile(v, p_lo), percentile(v, p_hi))

    def forward(self, x):
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "zscore":
            return ((x - self.a) / self.b).astype(np.float32)
        return np.clip(2.0 * (x - self.a) / (self.b - self.a) - 1.0, -1.0, 1.0).astype(np.float32)

    def inverse(self, u):
        u = np.asarray(u, dtype=np.float64)
        if self.kind == "zscore":
            return (u * self.b + self.a).astype(np.float32)
        return ((np.clip(u, -1.0, 1.0) + 1.0) * 0.5 * (self.b - self.a) + self.a).astype(np.float32)

    def __repr__(self):
        return "IntensityMap(%s %r %r)" % (self.kind, self.a, self.b)
