"""Model files: one ``.npz`` holding arrays plus a JSON metadata string. Never a pickle.

Layout (format ``bornml-model``, version :data:`FORMAT_VERSION`):
- ``metadata``: JSON with ``format``, ``format_version``, ``bornml_version``, ``model_type``
  (``"q"``, ``"p"``, ``"q+p"``, ``"ff"``, ``"mace-q"``, ``"mace-p"``, ``"mace-q+p"``), ``params``
  (constructor settings), ``species`` (atomic numbers), ``training`` and, per model type,
  ``extra`` (small JSON-ready settings learnt in fit);
- kernel models: ``radial_grid`` (n_points,), ``radial_values`` / ``radial_derivatives``
  (n_points, L+1, N); models with charges (q, q+p) ``references_<Z>`` (M_Z, D) normalised
  reference power spectra and ``weights_<Z>`` (M_Z,) charge weights; models with dipoles
  (p, q+p) ``dipole_weights_<Z>`` (F,), the contracted λ=1 weights u_Z = Σ_k X̂_kᵀ w_k (ζ_p = 1),
  or, with ``dipole_zeta`` > 1, the per-reference weights w (M_Z, 3) and
  ``dipole_reference_features_<Z>`` (M_Z, 3, F) the references' λ=1 features X̂_k; the
  p model keeps its fixed charges in ``extra["fixed_charges"]``; the force field (ff)
  ``energy_weights_<Z>`` (M_Z,) eV and ``extra["energy_offsets"]`` {Z: ε_Z} eV;
- MACE models: ``state/<parameter name>`` arrays of the network's state dict.

Each model class writes its arrays with :func:`write_archive` and is rebuilt by its
``_from_archive(meta, arrays, path)`` class method.
"""

import json
import zipfile

import numpy as np

from .._version import __version__
from ..errors import ModelFileError
from ..fileutils import atomic_path

FORMAT = "bornml-model"
FORMAT_VERSION = 1


def write_archive(path, model, arrays, extra=None):
    """Write ``arrays`` (name → ndarray) and the metadata of ``model`` to ``path`` atomically."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bornml_version": __version__,
        "model_type": model.model_type,
        "params": model.get_params(deep=False),
        "species": [int(z) for z in model.species_],
        "training": getattr(model, "training_summary_", {}),
        "extra": extra or {},
    }
    arrays = dict(arrays)
    arrays["metadata"] = np.array(json.dumps(meta))
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def read_archive(path):
    """Checked (metadata dict, arrays dict) of a model file; clear errors for foreign,
    damaged or other-version files."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise ModelFileError(f"{path}: not a bornml model file (not a readable .npz archive)"
                             ) from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path}: not a bornml model file (a plain numpy array, not an "
                             ".npz archive)")
    try:
        with data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        raise ModelFileError(f"{path}: damaged bornml model file ({err})") from err
    if "metadata" not in arrays:
        raise ModelFileError(f"{path}: not a bornml model file (no metadata)")
    try:
        meta = json.loads(str(arrays.pop("metadata")))
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: corrupt metadata ({err})") from err
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a bornml model file (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {meta.get('format_version')} (written by "
            f"bornml {meta.get('bornml_version')}); this bornml {__version__} reads version "
            f"{FORMAT_VERSION}. Retrain the model or use the bornml version that wrote it.")
    return meta, arrays


def model_classes():
    """model_type → class of the kernel models (MACE types are resolved in :func:`load_model`,
    which imports torch only for them)."""
    from .dipole import CombinedModel, DipoleModel
    from .force_field import ForceFieldModel
    from .monopole import MonopoleModel

    return {"q": MonopoleModel, "p": DipoleModel, "q+p": CombinedModel, "ff": ForceFieldModel}


def load_model(path):
    """Read a model written by ``model.save(path)``."""
    meta, arrays = read_archive(path)
    model_type = meta.get("model_type")
    if isinstance(model_type, str) and model_type.startswith("mace-"):
        from .mace_model import (
            MaceBECModel,  # clear ImportError text when torch is missing
        )

        cls = MaceBECModel
    else:
        cls = model_classes().get(model_type)
    if cls is None:
        raise ModelFileError(f"{path}: unknown model type {model_type!r}")
    try:
        model = cls._from_archive(meta, arrays, path)
    except KeyError as err:
        raise ModelFileError(f"{path}: model file is missing the array {err}") from err
    model.training_summary_ = meta.get("training", {})
    return model
