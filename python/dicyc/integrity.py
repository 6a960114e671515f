"""Checkpoint checksums, as dicyc writes them (train/checkpoint.hpp):

  metadata "checksums"         JSON object: tensor name -> CRC-32 (zlib's polynomial, 8 hex digits)
                               of the tensor's stored bytes
  metadata "metadata_checksum" CRC-32 of every other metadata entry ("checksums" included),
                               sorted by key, each as key NUL value NUL

verify() refuses a file whose checksums do not match, naming the tensor or the metadata; a file
written before checksums existed has neither entry and loads (has_checksums() says so).
"""
import json
import zlib

import numpy as np


class IntegrityError(ValueError):
    """A checksum mismatch: the file was changed or damaged after dicyc wrote it."""


def crc32(data):
    return "%08x" % (zlib.crc32(data) & 0xFFFFFFFF)


def metadata_crc(meta):
    body = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in sorted(meta.items())
                    if k != "metadata_checksum")
    return crc32(body)


def tensor_bytes(a):
    a = np.ascontiguousarray(a)
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def has_checksums(meta):
    return "checksums" in meta


def verify(path, meta, tensors, raw=None):
    """Raises IntegrityError on a mismatch. raw: {name: stored bytes} where tensors were widened (BF16)."""
    if "checksums" not in meta and "metadata_checksum" not in meta:
        return False
    try:
        sums = json.loads(meta.get("checksums", "{}"))
    except ValueError:
        raise IntegrityError("'%s': the 'checksums' metadata is not JSON: the file is damaged" % path) from None
    if meta.get("metadata_checksum") != metadata_crc(meta):
        raise IntegrityError("'%s': the metadata checksum does not match (stored %s, computed %s): the metadata "
                             "was changed or damaged after dicyc wrote it" % (path, meta.get("metadata_checksum"),
                                                                             metadata_crc(meta)))
    for name in tensors:
        if name not in sums:
            raise IntegrityError("'%s': tensor '%s' has no checksum: the file was changed after dicyc wrote it"
                                 % (path, name))
    for name, want in sums.items():
        if name not in tensors:
            raise IntegrityError("'%s': tensor '%s' is listed in the checksums but missing" % (path, name))
        got = crc32(raw[name] if raw and name in raw else tensor_bytes(tensors[name]))
        if got != want:
            raise IntegrityError("'%s': tensor '%s' fails its checksum (stored %s, computed %s): the file is damaged"
                                 % (path, name, want, got))
    return True


def add_checksums(meta, tensors):
    """The metadata with both checksum entries set (for files written from Python)."""
    out = {k: v for k, v in meta.items() if k not in ("checksums", "metadata_checksum")}
    out["checksums"] = json.dumps({n: crc32(tensor_bytes(a)) for n, a in tensors.items()}, separators=(",", ":"),
                                  sort_keys=True)
    out["metadata_checksum"] = metadata_crc(out)
    return out
