"""Model files: one ``.npz`` holding arrays plus a JSON metadata string. Never a pickle.

Layout (format ``bornml-model``, version :data:`FORMAT_VERSION`):
- ``metadata``: JSON with ``format``, ``format_version``, ``bornml_version``, ``model_type``
  (``"q"``), ``params`` (constructor settings), ``species`` (atomic numbers) and ``training``;
- ``radial_grid`` (n_points,), ``radial_values`` / ``radial_derivatives`` (n_points, L+1, N);
- ``references_<Z>`` (M_Z, D) normalised reference features and ``weights_<Z>`` (M_Z,).
"""

import json
import zipfile

import numpy as np

from .. import __version__
from ..errors import ModelFileError
from ..fileutils import atomic_path

FORMAT = "bornml-model"
FORMAT_VERSION = 1


def save_model(model, path):
    """Write ``model`` (fitted) to ``path`` atomically."""
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bornml_version": __version__,
        "model_type": model.model_type,
        "params": model.get_params(),
        "species": list(model.species_),
        "training": getattr(model, "training_summary_", {}),
    }
    arrays = {
        "metadata": np.array(json.dumps(meta)),
        "radial_grid": model.radial_basis_.grid,
        "radial_values": model.radial_basis_.values,
        "radial_derivatives": model.radial_basis_.derivatives,
    }
    for z in model.species_:
        arrays[f"references_{z}"] = model.references_[z]
        arrays[f"weights_{z}"] = model.weights_[z]
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def load_model(path):
    """Read a model written by :meth:`save`; clear errors for foreign or damaged files."""
    from ..descriptors.radial import RadialBasis
    from .monopole import MonopoleModel

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
        meta = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{path}: corrupt metadata ({err})") from err
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a bornml model file (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {meta.get('format_version')} (written by "
            f"bornml {meta.get('bornml_version')}); this bornml {__version__} reads version "
            f"{FORMAT_VERSION}. Retrain the model or use the bornml version that wrote it.")
    types = {"q": MonopoleModel}
    if meta.get("model_type") not in types:
        raise ModelFileError(f"{path}: unknown model type {meta.get('model_type')!r}")
    model = types[meta["model_type"]](**meta["params"])
    try:
        model.species_ = tuple(int(z) for z in meta["species"])
        model.radial_basis_ = RadialBasis(float(meta["params"]["cutoff"]), arrays["radial_grid"],
                                          arrays["radial_values"], arrays["radial_derivatives"])
        model.references_ = {z: arrays[f"references_{z}"] for z in model.species_}
        model.weights_ = {z: arrays[f"weights_{z}"] for z in model.species_}
    except KeyError as err:
        raise ModelFileError(f"{path}: model file is missing the array {err}") from err
    model.training_summary_ = meta.get("training", {})
    return model
