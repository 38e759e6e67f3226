"""Normal equations of a kernel force field, one block per kind of label, so the label weights
and the regularisation can change without another pass over the data.

Rows (unweighted) of one frame with N atoms and design columns Φ (see
:class:`~bornml.models.energy_term.EnergyTerm`):

    energy  φ_E/√N,  target (E − Σ_s n_s ε_s)/√N            (eV/√atom: per-atom energy, N times)
    forces  Φ_F (3N rows), target F                           (eV/Å)
    stress  Φ_W/√N (9 rows), target V·σ/√N                    (virial per atom, N times; eV)

Solved for label weights (w_E, w_F, w_S) and ω:

    (Σ_k w_k² A_k + ω s R) w = Σ_k w_k² b_k,   s = tr(Σ_k w_k² A_k)/M

(R the kernel prior K_MM or the identity; ω dimensionless as in the Born-charge estimator).
"""

import numpy as np

from .fit import solve_in_place

KINDS = ("energy", "forces", "stress")


class ForceFieldEquations:
    """Accumulated AᵀA, Aᵀb, bᵀb and row counts per kind of label (module docstring)."""

    def __init__(self, n_columns):
        self.n = int(n_columns)
        self.a = {k: np.zeros((self.n, self.n)) for k in KINDS}
        self.b = {k: np.zeros(self.n) for k in KINDS}
        self.c = {k: 0.0 for k in KINDS}
        self.rows = {k: 0 for k in KINDS}
        self.n_frames = 0

    def add(self, kind, design, target):
        """Add rows ``design`` (r, M) with ``target`` (r,) of one ``kind`` (:data:`KINDS`)."""
        design = np.atleast_2d(design)
        target = np.atleast_1d(np.asarray(target, dtype=float))
        self.a[kind] += design.T @ design
        self.b[kind] += design.T @ target
        self.c[kind] += float(target @ target)
        self.rows[kind] += len(target)

    def solve(self, label_weights, omega, regulariser=None):
        """Weights (M,) for ``label_weights`` {kind: w_k} and ω; ``regulariser`` (M, M) or
        None (identity)."""
        used = {k: float(w) ** 2 for k, w in label_weights.items() if w and self.rows[k]}
        if not used:
            raise ValueError("no labelled rows with a non-zero weight (energies, forces or "
                             "stresses)")
        rhs = sum(w * self.b[k] for k, w in used.items())

        def build(jitter):
            lhs = sum(w * self.a[k] for k, w in used.items())
            scale = np.trace(lhs) / self.n if np.trace(lhs) > 0 else 1.0
            if regulariser is None:
                lhs[np.diag_indices(self.n)] += omega * scale
            else:
                lhs += omega * scale * regulariser
            if jitter:
                lhs[np.diag_indices(self.n)] += jitter * np.trace(lhs) / self.n
            return lhs

        return solve_in_place(build, rhs)

    def rmse(self, kind, w):
        """RMSE of the rows of ``kind`` for weights w, from the sums alone (unweighted units of
        the rows: eV/atom for energies, eV/Å for forces)."""
        if not self.rows[kind]:
            return float("nan")
        sse = float(w @ self.a[kind] @ w - 2 * w @ self.b[kind] + self.c[kind])
        return float(np.sqrt(max(sse, 0.0) / self.rows[kind]))
