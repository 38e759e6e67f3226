"""An ASE calculator that adds the force of an electric field through learnt Born charges.

    F_jb = F_jb^base + Σ_a Z[j, a, b] E_a          (eV/Å for Z in e and E in V/Å)
    E_mol = E^base − μ·E                            (molecules only; μ in e·Å)

Z is the model's prediction (project convention ``Z[j, a, b] = dP_a/dr_jb``). For a molecule the
models' Z is the exact derivative of their dipole μ = Σ_i q_i r_i + Σ_i p_i, so the field force
is exactly −∂(−μ·E)/∂r and E^base − μ·E is conserved in a static field. For a periodic system
the field energy (and the dipole) is not defined — the polarisation is multivalued — so only
forces are given and ``energy`` / ``dipole`` raise :class:`FieldEnergyUndefined`.
"""

import numpy as np
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)

from . import keys, units

BORN_CHARGES = "born_charges"  #: ASE property name of the Born charges, (n_atoms, 3, 3), e


class FieldEnergyUndefined(PropertyNotImplementedError):
    """Energy or dipole asked of a periodic system in a field."""


class BornCalculator(Calculator):
    """ASE calculator: ``base`` forces (and energy) plus the field force Zᵀ·E of ``model``.

    ``model``: a fitted bornml model (``predict_frame`` → ``charges`` (N,) e, ``bec`` (N, 3, 3)
    e, optionally ``dipoles`` (N, 3) e·Å). ``field``: None (zero), a constant (3,) in V/Å, or a
    callable ``t_fs → (3,)`` V/Å evaluated at :attr:`time_fs`. ``base``: an ASE calculator for
    the potential energy surface, or None (field terms only). Properties: ``energy`` (eV,
    molecules), ``forces`` (N, 3) eV/Å, ``charges`` (N,) e, ``born_charges`` (N, 3, 3) e,
    ``dipole`` (3,) e·Å (molecules). A system is a molecule when no direction is periodic.
    """

    implemented_properties = ["energy", "forces", "charges", BORN_CHARGES, "dipole"]

    def __init__(self, model, field=None, base=None, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.base = base
        self.field = field
        self.time_fs = 0.0  #: time (fs) at which a callable field is evaluated

    def electric_field(self, time_fs=None):
        """The field (3,) in V/Å at ``time_fs`` (default :attr:`time_fs`)."""
        if self.field is None:
            return np.zeros(3)
        t = self.time_fs if time_fs is None else time_fs
        value = self.field(t) if callable(self.field) else self.field
        value = np.asarray(value, dtype=float)
        if value.shape != (3,):
            raise ValueError(f"the field must be 3 numbers (V/Å), got shape {value.shape}")
        return value

    def set_time(self, time_fs):
        """Set the time (fs) of a callable field and drop cached results."""
        self.time_fs = float(time_fs)
        self.reset()

    def follow(self, dyn):
        """Let ASE molecular dynamics ``dyn`` advance the time of a callable field.

        After each step (and once before the first) the time is set to that of the *next* new
        force evaluation, t_{n+1}: in a velocity-Verlet step the forces at the new positions
        r_{n+1} are the only new ones (the forces at r_n are the cached ones), so every force
        sees the field at its own time. Cached results are kept on purpose.
        """
        dt_fs = dyn.dt * units.ASE_TIME_UNIT_FS

        def tick():
            self.time_fs = (dyn.nsteps + 1) * dt_fs

        dyn.attach(tick, interval=1)
        return self

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        molecule = not atoms.pbc.any()
        if not molecule and ("energy" in properties or "dipole" in properties):
            raise FieldEnergyUndefined(
                "a periodic system has no field energy or dipole (the polarisation is defined "
                "only up to a quantum); BornCalculator gives forces, charges and born_charges "
                "for it — run MD with forces only (no energy logger)")
        pred = self.model.predict_frame(atoms)
        z = np.asarray(pred[keys.BEC], dtype=float)
        e_field = self.electric_field()
        forces = np.einsum("jab,a->jb", z, e_field)  # F_jb = Σ_a Z[j,a,b] E_a, eV/Å
        self.results = {"charges": np.asarray(pred[keys.CHARGES], dtype=float),
                        BORN_CHARGES: z}
        base_energy = 0.0
        if self.base is not None:
            forces = forces + self.base.get_forces(atoms)
            if molecule and "energy" in properties:
                base_energy = self.base.get_potential_energy(atoms)
        self.results["forces"] = forces
        if molecule:
            mu = self.results["charges"] @ atoms.positions  # neutral charges: origin-free
            if keys.DIPOLES in pred:
                mu = mu + np.asarray(pred[keys.DIPOLES]).sum(axis=0)
            self.results["dipole"] = mu
            if "energy" in properties or self.base is None:  # never without the base part
                self.results["energy"] = base_energy - float(mu @ e_field)
                self.results["free_energy"] = self.results["energy"]
