"""The fixed-charge term of the dipole (p) model: one charge q⁰_s per species, no weights.

    P ⊃ Σ_i q⁰'_i r_i,   Z_j ⊃ q⁰'_j I,   q⁰' = q⁰ − mean over the frame's atoms (neutral)

q⁰ given by element symbol or atomic number (e), otherwise the training-set mean of tr(Z_i)/3
per species (ASR-corrected targets). In a fit the term moves to the right-hand side:
Φᵀ(z − q⁰'⊗I); the equations keep Φᵀ(δ_s − n_s/N)⊗I per species s, so any q⁰ is applied at
solve time.
"""

import warnings

import numpy as np

from .. import keys
from ..errors import BornDataError


def parse_charges(charges):
    """{atomic number: charge} from a dict keyed by element symbol or atomic number."""
    from ase.data import atomic_numbers

    out = {}
    for key, value in (charges or {}).items():
        try:
            z = atomic_numbers[key] if isinstance(key, str) and not key.isdigit() else int(key)
            out[z] = float(value)
        except (KeyError, ValueError, TypeError):
            raise ValueError(f"charges: {key!r}: {value!r} is not 'element symbol or atomic "
                             "number': charge in e (e.g. {'Zr': 4, 'O': -2})") from None
    return out


class FixedChargeTerm:
    """Species charges q⁰ (see module docstring)."""

    name = "fixed_charges"
    learnt = False  # no weights, no design columns

    def __init__(self, charges=None):
        self.given = parse_charges(charges)
        self.charges = None  # {atomic number: q⁰} after fit

    def prepare(self, refs, frames, check_memory):
        """Check given charges against the training data: every species or none (a partial set
        would be shifted by the neutralisation, silently); no species the data lacks; a
        warning with the charges used when the given ones are not neutral in a frame."""
        if not self.given:
            return self
        from ase.data import chemical_symbols

        present = sorted({int(z) for f in frames for z in f.numbers})
        names = [chemical_symbols[z] for z in present]
        extra = sorted(set(self.given) - set(present))
        if extra:
            raise BornDataError(f"charges given for {', '.join(chemical_symbols[z] for z in extra)}"
                                f", which the training data does not contain (species: "
                                f"{', '.join(names)})", key="charges")
        missing = [chemical_symbols[z] for z in present if z not in self.given]
        if missing:
            raise BornDataError(f"charges given for some species but not for {', '.join(missing)}:"
                                " give every species (each frame is made neutral, which would "
                                "shift the charges you gave) or none (training means of "
                                "tr(Z)/3)", key="charges")
        for frame in frames:
            q = np.array([self.given[int(z)] for z in frame.numbers])
            if abs(q.sum()) > 1e-6 * len(q):
                shifted = {chemical_symbols[z]: round(self.given[z] - q.mean(), 4)
                           for z in sorted(set(frame.numbers.tolist()))}
                warnings.warn(f"the given charges sum to {q.sum():.4g} e in a "
                              f"{frame.get_chemical_formula()} frame; each frame is made "
                              f"neutral, so the charges used there are {shifted}", stacklevel=2)
                break
        return self

    def set_from_traces(self, trace_sums, counts):
        """q⁰ = given, else Σ tr(Z)/3 / count per species (from the equations; 0 for a species
        with no atoms in them, e.g. a cross-validation fold without it)."""
        self.charges = {int(z): self.given.get(int(z), float(trace_sums[z] / counts[z])
                                               if counts[z] else 0.0) for z in counts}

    def neutral_charges(self, frame):
        """q⁰' (N,) e, neutral over the frame."""
        q = np.array([self.charges[int(z)] for z in frame.numbers])
        return q - q.mean()

    def is_fitted(self):
        return self.charges is not None

    def predict(self, ctx, frame):
        """{bec: q⁰'_j I (N, 3, 3), charges: q⁰' (N,)}; ``ctx`` is not needed."""
        q = self.neutral_charges(frame)
        return {keys.BEC: q[:, None, None] * np.eye(3), keys.CHARGES: q}

    def dipole_derivative(self, ctx, frame, velocities):
        return self.neutral_charges(frame) @ velocities

    def arrays(self):
        return {}

    def extra(self):
        return {"fixed_charges": {str(z): q for z, q in self.charges.items()}}

    def load(self, refs, arrays, extra, path):
        self.charges = {int(z): float(q) for z, q in extra["fixed_charges"].items()}
        return self
