#!/usr/bin/python3
"""Moves dicyc weights to and from PyTorch: a front end to the Python package's `python -m dicyc`
(python/dicyc/__main__.py), usable without installing it.

    checkpoint_torch.py export CKPT OUTDIR          checkpoint -> OUTDIR/<net>.pt state dicts, each loaded
                                                    strictly into the package's network (dicyc.nn)
    checkpoint_torch.py import OUT.safetensors NET=FILE.pt [NET=FILE.pt ...]
                                                    state dicts -> a weights-only file for load_weights
    checkpoint_torch.py show CKPT                   metadata, checksum status and tensor list
"""
import os
import sys

try:
    import dicyc  # noqa: F401  (installed: pip install ./python)
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from dicyc.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
