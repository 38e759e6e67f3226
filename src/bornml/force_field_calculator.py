"""An ASE calculator of a bornml kernel force field (:class:`bornml.ForceFieldModel`), so any
ASE integrator can run it.

Properties: ``energy`` / ``free_energy`` (eV), ``energies`` (N,) eV, ``forces`` (N, 3) eV/Å,
and for a cell periodic in all directions ``stress`` (Voigt (6,), eV/Å³, ASE sign).
"""

import numpy as np
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)

from . import keys


class ForceFieldCalculator(Calculator):
    """ASE calculator of a fitted force-field ``model`` (one adjoint pass per step)."""

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, **kwargs):
        super().__init__(**kwargs)
        self.model = model

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pred = self.model.predict_frame(self.atoms)
        self.results = {"energy": pred[keys.ENERGY], "free_energy": pred[keys.ENERGY],
                        "energies": pred[keys.ATOMIC_ENERGIES], "forces": pred[keys.FORCES]}
        if keys.STRESS in pred:
            s = np.asarray(pred[keys.STRESS])
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2],
                                               s[1, 2], s[0, 2], s[0, 1]])
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress needs a cell periodic in all directions")
