"""bornml: Born effective charges from DFT with monopole kernel models, and IR spectra.

Quick tour::

    import bornml
    frames = bornml.read_frames("data.extxyz")          # Z[j,a,b] = dP_a/dr_jb in arrays["bec"]
    model = bornml.MonopoleModel(cutoff=5.0, n_sparse=500).fit(frames[:80])
    out = model.predict(frames[80:])                      # dicts: "charges" (N,), "bec" (N,3,3)
    model.save("water.bornml.npz")
    model = bornml.load_model("water.bornml.npz")
"""

from ._version import __version__
from .io import read_frames, write_frames
from .models.dipole import CombinedModel, DipoleModel
from .models.force_field import ForceFieldModel
from .models.monopole import MonopoleModel
from .models.serialization import load_model


def ir_spectrum(*args, **kwargs):
    """IR spectrum from MD trajectories; see :func:`bornml.spectra.ir.ir_spectrum`."""
    from .spectra.ir import ir_spectrum as _ir

    return _ir(*args, **kwargs)


__all__ = [
    "CombinedModel",
    "DipoleModel",
    "ForceFieldModel",
    "MonopoleModel",
    "__version__",
    "ir_spectrum",
    "load_model",
    "read_frames",
    "write_frames",
]
