"""Whole-volume synthesis as dicyc-synth runs it, in numpy and PyTorch:

  prepare   resample to the checkpoint's spacing, reorient to RAS+ (when training did), normalise
            with the volume's own percentiles (or z-score) as training did;
  translate 2-D models: every axial slice, whole, padded to a multiple of 4 with the background
            level (the prepared minimum); 3-D models: overlapping tiles (25 % overlap) blended with
            linear ramps;
  map back  the target domain's intensity map from the checkpoint (e.g. Hounsfield units), then
            resampled onto the input's own grid.
"""
import numpy as np

from .volume import IntensityMap, Volume, reorient_canonical, resample, resample_like

__all__ = ["prepare", "synthesize", "synthesize_normalised"]


def prepare(vol, data, domain="a"):
    """(prepared Volume in the networks' units, its IntensityMap, background level) as dicyc prepares a
    volume of `domain` ('a' or 'b': its fixed intensity window, if training used one)."""
    if any(s > 0 for s in data.spacing):
        vol = resample(vol, [data.spacing[a] if data.spacing[a] > 0 else vol.spacing[a] for a in range(3)])
    if data.canonical:
        vol = reorient_canonical(vol)
    window = data.window_a if domain == "a" else data.window_b
    if window is not None:
        m = IntensityMap("percentile", window[0], window[1])
    else:
        m = IntensityMap.fit(vol.data, data.normalisation, *data.percentiles)
    out = Volume(m.forward(vol.data), vol.affine, vol.spacing)
    return out, m, float(out.data.min())


def _up4(n):
    return max(8, (n + 3) // 4 * 4)


def synthesize_normalised(model, x, background, direction="ab", batch=4, tile=None):
    """A normalised (x, y, z) array through the model: 2-D slice by slice, 3-D in blended tiles."""
    nx, ny, nz = x.shape
    if model.dim == 2:
        px, py = _up4(nx), _up4(ny)
        out = np.empty_like(x, dtype=np.float32)
        for z0 in range(0, nz, batch):
            nb = min(batch, nz - z0)
            buf = np.full((px, py, nb), background, dtype=np.float32)
            buf[:nx, :ny, :] = x[:, :, z0:z0 + nb]
            out[:, :, z0:z0 + nb] = model.translate(buf, direction)[:nx, :ny, :]
        return out
    tile = tuple(tile or (model.data.crop if model.data else (64, 64, 64)))
    n = (nx, ny, nz)
    t = [min(tile[a], _up4(n[a])) for a in range(3)]
    p = [max(t[a], n[a]) for a in range(3)]
    for a in range(3):
        if tile[a] < 8 or tile[a] % 4:
            raise ValueError("synthesis: tiles must be multiples of 4, >= 8")

    def starts(length, tl):
        s, step, o = [], max(1, tl * 3 // 4), 0
        while True:
            if o + tl >= length:
                s.append(max(0, length - tl))
                return s
            s.append(o)
            o += step

    def ramp(tl):
        i = np.arange(tl)
        return np.minimum(i + 1, tl - i).astype(np.float64)
    w = ramp(t[0])[:, None, None] * ramp(t[1])[None, :, None] * ramp(t[2])[None, None, :]
    acc = np.zeros(n, dtype=np.float64)
    wsum = np.zeros(n, dtype=np.float64)
    for oz in starts(p[2], t[2]):
        for oy in starts(p[1], t[1]):
            for ox in starts(p[0], t[0]):
                buf = np.full(t, background, dtype=np.float32)
                ex, ey, ez = min(nx, ox + t[0]) - ox, min(ny, oy + t[1]) - oy, min(nz, oz + t[2]) - oz
                buf[:ex, :ey, :ez] = x[ox:ox + ex, oy:oy + ey, oz:oz + ez]
                y = model.translate(buf, direction)
                acc[ox:ox + ex, oy:oy + ey, oz:oz + ez] += (w * y)[:ex, :ey, :ez]
                wsum[ox:ox + ex, oy:oy + ey, oz:oz + ez] += w[:ex, :ey, :ez]
    return (acc / wsum).astype(np.float32)


def synthesize(model, volume, direction="ab", affine=None, spacing=None, batch=4, tile=None, same_grid=True):
    """Translates a whole volume as dicyc-synth does; numpy in, numpy out (in the target domain's units).

    volume: a dicyc.Volume (e.g. from dicyc.read_nifti) or an (x, y, z) array with `affine` and/or
    `spacing` (mm). Returns an array on the input's grid (same_grid=False: the resampled RAS+ grid
    the networks saw, as a Volume)."""
    if model.data is None:
        raise ValueError("'%s' has no data preparation entries (a weights-only file?): synthesize needs a "
                         "checkpoint written by dicyc-train; translate() runs normalised arrays" % model.path)
    if direction not in ("ab", "ba"):
        raise ValueError("direction must be 'ab' or 'ba', got %r" % (direction,))
    src = volume if isinstance(volume, Volume) else Volume(volume, affine, spacing)
    prepared, _, background = prepare(src, model.data, "a" if direction == "ab" else "b")
    y = synthesize_normalised(model, prepared.data, background, direction, batch, tile)
    target = model.map_b if direction == "ab" else model.map_a
    result = Volume(target.inverse(y), prepared.affine, prepared.spacing)
    if not same_grid:
        return result
    return resample_like(result, src).data
