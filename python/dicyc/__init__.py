"""dicyc in Python: load dicyc checkpoints as PyTorch networks and synthesize volumes as dicyc-synth does.

    import dicyc
    m = dicyc.load_checkpoint("run1/checkpoint.safetensors")
    vol = dicyc.read_nifti("mr.nii.gz")
    pseudo_ct = dicyc.synthesize(m, vol, "ab")      # numpy (x, y, z) on the input's grid, in HU
    dicyc.write_nifti("pct.nii.gz", dicyc.Volume(pseudo_ct, vol.affine, vol.spacing))

Modules: dicyc.nn (the networks), dicyc.checkpoint, dicyc.synth, dicyc.volume (NIfTI, resampling,
intensity maps), dicyc.safetensors, dicyc.integrity (checksums); `python -m dicyc` exports and
imports PyTorch state dicts.
"""
from .checkpoint import CheckpointError, Model, load_checkpoint
from .integrity import IntegrityError
from .synth import prepare, synthesize
from .volume import IntensityMap, Volume, read_nifti, write_nifti

__version__ = "0.1.0"
__all__ = ["load_checkpoint", "synthesize", "prepare", "read_nifti", "write_nifti", "Volume", "IntensityMap", "Model",
           "CheckpointError", "IntegrityError"]
