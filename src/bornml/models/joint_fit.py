"""Fit monopole (q), dipole (p) and combined (q+p) kernel models in one pass over the data.

One estimator with both learnt terms (a combined model with the shared settings) accumulates
the normal equations once (:class:`~bornml.models.equations.KernelEquations`: the q block, the
dipole block, the cross terms, the charge rows and the fixed-charge offsets); each model then
solves them for its own terms and regularisation with
:meth:`~bornml.models.kernel_estimator.KernelBECModel.fit_equations`. Equal to fitting each
model on its own (tested), at the cost of one fit of the combined model.
"""

import time

from .dipole import CombinedModel
from .kernel_estimator import SHARED, KernelBECModel


def fit_together(models, frames, progress=False):
    """Fit every model of ``models`` (unfitted kernel models sharing :data:`SHARED` settings;
    the q and q+p models also share ζ, the p and q+p models ζ_p) on ``frames``. Returns the list of fitted models and
    sets ``shared_fit_seconds_`` on each (the time of the shared pass)."""
    models = list(models)
    frames = list(frames)
    for model in models:
        if not isinstance(model, KernelBECModel):
            raise TypeError(f"{type(model).__name__} is not a kernel model")
    ref = models[0].get_params()
    for model in models:
        params = model.get_params()
        differ = [k for k in SHARED if params.get(k) != ref.get(k)]
        if differ:
            raise ValueError(f"models differ in the shared settings {differ}")
    zetas = {m.zeta for m in models if m.model_type in ("q", "q+p")}
    if len(zetas) > 1:
        raise ValueError("the q and q+p models must share zeta")
    dipole_zetas = {m.dipole_zeta for m in models if m.model_type in ("p", "q+p")}
    if len(dipole_zetas) > 1:
        raise ValueError("the p and q+p models must share dipole_zeta")
    start = time.perf_counter()
    proto = CombinedModel(**{k: ref[k] for k in SHARED}, zeta=zetas.pop() if zetas else 2,
                          dipole_zeta=dipole_zetas.pop() if dipole_zetas else 1,
                          progress=progress)
    folds = max([min(int(m.cv_folds), len(frames)) for m in models if m._needs_cv()] or [1])
    eqs = proto.prepare(frames).accumulate(frames, n_folds=folds)
    shared = time.perf_counter() - start
    for model in models:
        model.fit_equations(eqs)
        model.shared_fit_seconds_ = shared
    return models


__all__ = ["fit_together"]
