"""Splined radial basis of the SOAP density expansion.

For every angular channel l the radial integral of a Gaussian atomic density (width
``atomic_width``, Å) against an orthonormalised GTO radial basis (``max_radial + 1``
functions) is tabulated once by featomic's :class:`featomic.splines.SoapSpliner` on a uniform
grid of ``n_points`` distances in [0, cutoff] Å, with values and first derivatives. The same
table drives featomic (through its ``Tabulated`` basis, see :meth:`RadialBasis.featomic_hypers`)
and bornml's own expansion, so both compute the same descriptor; the table is stored in model
files, so a saved model does not depend on the featomic version that built it.
"""

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass
class RadialBasis:
    """Cubic Hermite spline of R_nl(r) for l = 0..max_angular, n = 0..max_radial.

    ``values`` and ``derivatives`` have shape (n_points, max_angular + 1, max_radial + 1);
    ``grid`` (n_points,) is uniform from 0 to ``cutoff`` (Å).
    """

    cutoff: float
    grid: np.ndarray
    values: np.ndarray
    derivatives: np.ndarray

    @property
    def max_angular(self):
        return self.values.shape[1] - 1

    @property
    def max_radial(self):
        return self.values.shape[2] - 1

    @classmethod
    def build(cls, cutoff, max_radial, max_angular, atomic_width, cutoff_width, n_points=None):
        """Tabulate the GTO radial integral with featomic (only needed when fitting).
        ValueError naming the settings when the integrals do not converge."""
        if n_points is None:
            n_points = int(np.ceil(cutoff / 0.02)) + 1
        # featomic's numerical integrals overflow in intermediate steps for large
        # cutoff/atomic_width; the result is kept only when every tabulated value is finite
        try:
            with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                grid, values, derivs = cls._tabulate(cutoff, max_radial, max_angular,
                                                     atomic_width, cutoff_width, n_points)
        except ValueError as err:
            raise ValueError(_overflow_message(cutoff, atomic_width, max_radial, err)) from None
        if not (np.isfinite(values).all() and np.isfinite(derivs).all()):
            raise ValueError(_overflow_message(cutoff, atomic_width, max_radial, None))
        return cls(float(cutoff), grid, values, derivs)

    @staticmethod
    def _tabulate(cutoff, max_radial, max_angular, atomic_width, cutoff_width, n_points):
        import featomic
        from featomic.splines import SoapSpliner

        spliner = SoapSpliner(
            cutoff=featomic.cutoff.Cutoff(
                radius=cutoff, smoothing=featomic.cutoff.ShiftedCosine(width=cutoff_width)),
            density=featomic.density.Gaussian(width=atomic_width),
            basis=featomic.basis.TensorProduct(
                max_angular=max_angular,
                radial=featomic.basis.Gto(max_radial=max_radial, radius=cutoff)),
            n_spline_points=n_points,
        )
        by_angular = spliner.get_hypers()["basis"].by_angular
        grid = np.asarray(by_angular[0].spline.positions, dtype=float)
        values = np.stack([by_angular[l].spline.values for l in range(max_angular + 1)], axis=1)
        derivs = np.stack([by_angular[l].spline.derivatives for l in range(max_angular + 1)],
                          axis=1)
        return (grid, np.ascontiguousarray(values, dtype=float),
                np.ascontiguousarray(derivs, dtype=float))

    def _coefficients(self):
        """Per-interval cubic coefficients (n_points - 1, 4, L * N) in t = (r - r_k) / dx."""
        if getattr(self, "_coef", None) is None:
            dx = self.grid[1] - self.grid[0]
            n = self.values.shape[0]
            p0 = self.values[:-1].reshape(n - 1, -1)
            p1 = self.values[1:].reshape(n - 1, -1)
            m0 = self.derivatives[:-1].reshape(n - 1, -1) * dx
            m1 = self.derivatives[1:].reshape(n - 1, -1) * dx
            self._coef = np.ascontiguousarray(np.stack(
                [p0, m0, 3 * (p1 - p0) - 2 * m0 - m1, 2 * (p0 - p1) + m0 + m1], axis=1))
        return self._coef

    def evaluate(self, r):
        """Values and r-derivatives at distances ``r`` (n,) Å → two arrays (n, L, N)."""
        dx = self.grid[1] - self.grid[0]
        x = np.asarray(r, dtype=float) / dx
        k = np.minimum(x.astype(np.int64), len(self.grid) - 2)
        t = (x - k)[:, None]
        c = self._coefficients()[k]
        val = ((c[:, 3] * t + c[:, 2]) * t + c[:, 1]) * t + c[:, 0]
        der = ((3.0 * c[:, 3] * t + 2.0 * c[:, 2]) * t + c[:, 1]) / dx
        shape = (len(x),) + self.values.shape[1:]
        return val.reshape(shape), der.reshape(shape)

    def evaluate_smoothed(self, r, cutoff_width):
        """``f_cut(r)·R_nl(r)`` and its r-derivative, (n, L, N); shifted-cosine ``f_cut``."""
        from ._kernels import smoothed_radial

        dx = self.grid[1] - self.grid[0]
        return smoothed_radial(self._coefficients(), dx, np.ascontiguousarray(r, dtype=float),
                               self.cutoff, float(cutoff_width), self.values.shape[1],
                               self.values.shape[2])

    def featomic_hypers(self, cutoff_width):
        """Hyper-parameters for featomic calculators that reproduce this basis exactly."""
        by_angular = {}
        for l in range(self.max_angular + 1):
            by_angular[l] = {
                "type": "Tabulated",
                "points": [{"position": float(p), "values": v.tolist(), "derivatives": d.tolist()}
                           for p, v, d in zip(self.grid, self.values[:, l],
                                              self.derivatives[:, l])],
            }
        return {
            "cutoff": {"radius": self.cutoff,
                       "smoothing": {"type": "ShiftedCosine", "width": cutoff_width}},
            "density": {"type": "DiracDelta"},
            "basis": {"type": "Explicit", "by_angular": by_angular},
        }


def _overflow_message(cutoff, atomic_width, max_radial, err):
    ratio = cutoff / atomic_width
    return (f"cutoff {cutoff:g} Å with atomic_width {atomic_width:g} Å and max_radial "
            f"{max_radial}: the radial integrals of the density expansion do not converge "
            f"(cutoff/atomic_width = {ratio:.0f}{'; ' + str(err) if err else ''}). Use a wider "
            f"atomic density (atomic_width ≥ {cutoff / 24:.2f} Å, --atomic-width) or a smaller "
            "cutoff (--cutoff)")


def shifted_cosine(r, cutoff, width):
    """Cut-off smoothing (1 below cutoff − width, cosine to 0 at cutoff) and its derivative."""
    r = np.asarray(r, dtype=float)
    s = np.clip((r - cutoff + width) / width, 0.0, 1.0) if width > 0 else (r >= cutoff) * 1.0
    f = np.where(r < cutoff, 0.5 * (1.0 + np.cos(np.pi * s)), 0.0)
    inside = (s > 0) & (s < 1)
    df = np.where(inside, -0.5 * np.pi * np.sin(np.pi * s) / max(width, 1e-300), 0.0)
    return f, df
