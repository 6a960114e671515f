"""Reads and writes safetensors files (dicyc's checkpoint format) with numpy alone.

The format: an 8-byte little-endian header length, a JSON header (tensor name -> dtype, shape,
data_offsets; "__metadata__" -> string pairs), then the raw little-endian tensor bytes.
"""
import json
import os
import struct

import numpy as np

DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8, "I16": np.int16,
          "I32": np.int32, "I64": np.int64, "U8": np.uint8, "U16": np.uint16, "U32": np.uint32, "U64": np.uint64,
          "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}


class FormatError(ValueError):
    """A file that is not a well-formed safetensors file (its message names the file and the fault)."""


def bf16_to_f32(raw):
    """bfloat16 bit patterns (uint16) -> float32."""
    return (np.asarray(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def read(path):
    """(metadata dict, {name: numpy array}) of a safetensors file; BF16 tensors come back as float32."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise FormatError("'%s': %d bytes, too short for a safetensors file" % (path, len(data)))
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > 100 << 20:
        raise FormatError("'%s': header length %d does not fit the file (%d bytes)" % (path, n, len(data)))
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as e:
        raise FormatError("'%s': the header is not JSON (%s)" % (path, e)) from None
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, e in header.items():
        try:
            dtype, shape, (b, end) = e["dtype"], [int(s) for s in e["shape"]], e["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise FormatError("'%s': tensor '%s' has a malformed header entry" % (path, name)) from None
        if dtype != "BF16" and dtype not in DTYPES:
            raise FormatError("'%s': tensor '%s' has dtype %s, which dicyc does not write" % (path, name, dtype))
        item = 2 if dtype == "BF16" else np.dtype(DTYPES[dtype]).itemsize
        count = int(np.prod(shape, dtype=np.int64))
        if not (0 <= b <= end <= len(data) - base) or end - b != count * item:
            raise FormatError("'%s': tensor '%s' (%s %s) has data offsets [%d, %d) that do not fit its shape or the "
                              "file (truncated?)" % (path, name, dtype, shape, b, end))
        raw = data[base + b:base + end]
        if dtype == "BF16":
            tensors[name] = bf16_to_f32(np.frombuffer(raw, dtype="<u2")).reshape(shape)
        else:
            tensors[name] = np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<")).reshape(shape)
    return meta, tensors


def write(path, tensors, meta=None):
    """Writes {name: array} (and string metadata) atomically: a temporary file renamed over `path`."""
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = {str(k): str(v) for k, v in meta.items()}
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        if a.dtype not in _NAMES:
            raise ValueError("tensor '%s': dtype %s cannot be written" % (name, a.dtype))
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)
