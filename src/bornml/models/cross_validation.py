"""Regularisation chosen from the data: k-fold cross-validation on the training frames.

The normal equations are sums over frames, so with the frames dealt into k folds (frame i to
fold i mod k) the training equations of fold f are the total minus fold f, and fold f's sum
of squared Born-charge errors follows from its own sums (wᵀA_f w − 2wᵀb_f + c_f): one pass
over the data serves every fold and every grid point (:mod:`bornml.models.equations`).

Searched (a setting given explicitly is held fixed):
- ω_q, ω_p ∈ 10^-9 … 10^0 (one decade apart), λ_q ∈ {0, 0.01, 0.1, 1};
- q: the full ω_q × λ_q grid; p: ω_p; q+p: first a common ω (ω_q = ω_p, λ_q = 0 or its
  given value), then ω_p and ω_q each over two decades either side of it, then λ_q — a
  coordinate search of ~20 solves per fold instead of the 10·10·4 grid.
The choice minimises the CV RMSE; ties go to the larger regularisation.
"""

import numpy as np

OMEGAS = tuple(10.0 ** k for k in range(-9, 1))
LAMBDAS = (0.0, 0.01, 0.1, 1.0)
FALLBACK = {"tikhonov": 1e-5, "dipole_tikhonov": 1e-5, "charge_regularisation": 0.0}


def cv_rmse(model, eqs, values):
    """CV RMSE (e) of ``model``'s terms with the regularisation ``values``."""
    sse, rows = 0.0, 0
    for fold in range(len(eqs.parts)):
        weights, fixed = model._solve_weights(eqs, values, exclude=fold)
        err, n = eqs.validation_error([t.name for t in model._learnt()], weights, fold, fixed)
        sse += err
        rows += n
    return float(np.sqrt(sse / max(rows, 1)))


def choose_regularisation(model, eqs, given):
    """Values for the names in ``given`` (name → value or None = choose). Returns
    (chosen dict, curve: list of {values…, "cv_rmse"})."""
    free = [k for k, v in given.items() if v is None]
    values = {k: (FALLBACK[k] if v is None else v) for k, v in given.items()}
    curve = []
    if not free:
        return values, curve
    cache = {}

    def score(candidate):
        key = tuple(sorted(candidate.items()))
        if key not in cache:
            cache[key] = cv_rmse(model, eqs, candidate)
            curve.append(dict(candidate, cv_rmse=cache[key]))
        return cache[key]

    def best_over(name, grid, current):
        # ties (within 1e-9 relative) go to the larger regularisation: reverse scan
        results = [(score(dict(current, **{name: g})), -i, g) for i, g in
                   enumerate(reversed(grid))]
        return min(results)[2]

    has_q, has_p = "tikhonov" in given, "dipole_tikhonov" in given
    if model.model_type == "q+p":
        # a common ω first (the full grid), then each ω around it, two decades either side
        # in steps of one, then λ_q (the q+p systems are the largest: solves are counted)
        if "tikhonov" in free and "dipole_tikhonov" in free:
            common = min((score(dict(values, tikhonov=w, dipole_tikhonov=w)), -w, w)
                          for w in OMEGAS)[2]
            values.update(tikhonov=common, dipole_tikhonov=common)
        for name in ("dipole_tikhonov", "tikhonov"):
            if name in free:
                centre = values[name]
                values[name] = best_over(name, [float(f"{centre * 10.0 ** k:.3g}")
                                                for k in (-2, -1, 0, 1, 2)],
                                         values)
        if "charge_regularisation" in free:
            values["charge_regularisation"] = best_over("charge_regularisation", LAMBDAS,
                                                        values)
        return values, curve
    if has_p and "dipole_tikhonov" in free:
        values["dipole_tikhonov"] = best_over("dipole_tikhonov", OMEGAS, values)
    if has_q and "tikhonov" in free and "charge_regularisation" in free:
        grid = [(score(dict(values, tikhonov=w, charge_regularisation=lam)), -w, -lam, w, lam)
                for w in OMEGAS for lam in LAMBDAS]
        _, _, _, w, lam = min(grid)
        values.update(tikhonov=w, charge_regularisation=lam)
    elif has_q and "tikhonov" in free:
        values["tikhonov"] = best_over("tikhonov", OMEGAS, values)
    elif "charge_regularisation" in free:
        values["charge_regularisation"] = best_over("charge_regularisation", LAMBDAS, values)
    return values, curve
