"""Fit monopole (q), dipole (p) and combined (q+p) kernel models in one pass over the data.

The three share their reference environments (the same selection from the same settings) and
their design matrices: the combined model's normal equations hold the q block, the p block
and the cross terms, and the p model's right-hand side differs only by its fixed-charge term
Φ_uᵀ(q⁰'⊗I), accumulated alongside. The result equals fitting each model on its own (to
round-off; tested), at the cost of one fit of the combined model.
"""

import time

from .dipole import CombinedModel, DipoleModel
from .fit import NormalEquations
from .monopole import MonopoleModel, accumulate_equations

SHARED = ("cutoff", "max_radial", "max_angular", "atomic_width", "cutoff_width", "n_sparse",
          "sparse_method", "max_pool", "seed")


def fit_together(models, frames, progress=False):
    """Fit every model of ``models`` (a list of unfitted MonopoleModel / DipoleModel /
    CombinedModel sharing the SOAP and reference settings :data:`SHARED`) on ``frames``.

    Returns the list of fitted models and sets ``shared_fit_seconds_`` on each (the time of
    the shared pass).
    """
    models = list(models)
    frames = list(frames)
    ref = models[0].get_params()
    for model in models:
        if not isinstance(model, (MonopoleModel, DipoleModel, CombinedModel)):
            raise TypeError(f"{type(model).__name__} is not a kernel model")
        params = model.get_params()
        differ = [k for k in SHARED if params[k] != ref[k]]
        if differ:
            raise ValueError(f"models differ in the shared settings {differ}")
    start = time.perf_counter()
    proto = CombinedModel(**{k: ref[k] for k in SHARED}, progress=progress)
    charge_model = next((m for m in models if m.model_type in ("q", "q+p")), None)
    if charge_model is not None:  # ζ of the charge part shapes the q design columns
        proto.zeta = charge_model.zeta
        if any(m.model_type in ("q", "q+p") and m.zeta != proto.zeta for m in models):
            raise ValueError("the q and q+p models must share zeta")
    proto.prepare(frames)
    m_q = proto._n_charge_columns()
    dipole = next((m for m in models if m.model_type == "p"), None)
    if dipole is not None:
        dipole.species_ = proto.species_
        dipole.fixed_charges_ = dipole._fixed_charges(frames)
    eqs, offset = accumulate_equations(
        proto, frames, None if dipole is None else dipole._fixed_charge_vector)
    full, charge = eqs["bec"], eqs["charge"]
    shared = time.perf_counter() - start
    for model in models:
        for attr in ("species_", "radial_basis_", "species_mixing_", "references_",
                     "reference_sources_"):
            setattr(model, attr, getattr(proto, attr))
        model._rows = None
        if model.model_type == "q":
            eqs = {"bec": _equations(full.a[:m_q, :m_q], full.b[:m_q]), "charge": charge}
        elif model.model_type == "p":
            model.dipole_basis_ = proto.dipole_basis_
            model.dipole_route_ = proto.dipole_route_
            eqs = model._project({"bec": _equations(full.a[m_q:, m_q:],
                                                    full.b[m_q:] - offset[m_q:]),
                                  "charge": NormalEquations(0)})
        else:
            model.dipole_basis_ = proto.dipole_basis_
            model.dipole_route_ = proto.dipole_route_
            eqs = model._project({"bec": full, "charge": charge})
        model.solve(eqs)
        model.n_train_frames_ = len(frames)
        model.shared_fit_seconds_ = shared
    return models


def _equations(a, b):
    eqs = NormalEquations(0)
    eqs.a, eqs.b = a, b
    return eqs


__all__ = ["fit_together"]
