"""BornCalculator: field forces Zᵀ·E, the molecular field energy −μ·E as their exact potential
(energy conservation in NVE), time-dependent fields, and the refusal of a periodic energy."""

import numpy as np
import pytest
from _structures import SMALL, finite_difference_bec, perturbed_molecule
from ase import units as ase_units
from ase.calculators.calculator import Calculator, all_changes
from ase.md.verlet import VelocityVerlet

import bornml
from bornml import keys
from bornml.calculator import BornCalculator, FieldEnergyUndefined


class Tether(Calculator):
    """Harmonic base potential: every atom tied to its start position, E = ½k Σ|r − r₀|²."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, positions, k=1.0):
        super().__init__()
        self.r0, self.k = np.array(positions), k

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = self.atoms.positions - self.r0
        self.results = {"energy": 0.5 * self.k * float(np.sum(d * d)), "forces": -self.k * d}


@pytest.fixture(scope="module")
def water_model():
    """Monopole model of water molecules whose learnt charges depend on the geometry (targets:
    q·I plus noise), so Z has the position-dependent part that the energy test needs."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(8):
        at = perturbed_molecule("H2O", seed=k, scale=0.08)
        q = np.where(at.numbers == 8, -0.8, 0.4)
        keys.set_bec(at, q[:, None, None] * np.eye(3) + 0.1 * rng.normal(size=(3, 3, 3)))
        frames.append(at)
    return bornml.MonopoleModel(**SMALL, n_sparse=8, tikhonov=1e-3,
                                charge_regularisation=0.1).fit(frames)


@pytest.fixture(scope="module")
def quartz_model(quartz_frames):
    return bornml.MonopoleModel(**SMALL, n_sparse=10, tikhonov=1e-3,
                                charge_regularisation=0.1).fit(quartz_frames[:3])


def test_periodic_forces_are_z_transpose_e_and_energy_is_refused(quartz_model, quartz_frames):
    atoms = quartz_frames[5].copy()
    field = np.array([0.05, -0.02, 0.08])  # V/Å
    atoms.calc = BornCalculator(quartz_model, field=field)
    z = quartz_model.predict_frame(atoms)[keys.BEC]
    f = atoms.get_forces()
    expected = np.array([z[j].T @ field for j in range(len(atoms))])  # F_j = Z_jᵀ E
    np.testing.assert_allclose(f, expected, rtol=0, atol=1e-12)
    assert np.abs(np.array([z[j] @ field for j in range(len(atoms))]) - f).max() > 1e-3
    np.testing.assert_array_equal(atoms.calc.get_property(BornCalculator.implemented_properties[3]),
                                  z)
    with pytest.raises(FieldEnergyUndefined, match="periodic"):
        atoms.get_potential_energy()
    with pytest.raises(FieldEnergyUndefined):
        atoms.get_dipole_moment()


def test_molecule_energy_dipole_and_forces_are_consistent(water_model):
    atoms = perturbed_molecule("H2O", seed=42, scale=0.08)
    field = np.array([0.1, 0.3, -0.2])
    base = Tether(atoms.positions + 0.05, k=2.0)
    atoms.calc = BornCalculator(water_model, field=field, base=base)
    pred = water_model.predict_frame(atoms)
    mu = atoms.get_dipole_moment()
    np.testing.assert_allclose(mu, pred[keys.CHARGES] @ atoms.positions, atol=1e-12)
    np.testing.assert_allclose(atoms.get_charges(), pred[keys.CHARGES])
    e = atoms.get_potential_energy()
    assert e == pytest.approx(base.get_potential_energy(atoms) - mu @ field, abs=1e-12)
    # forces: base + Zᵀ E, and −∂E/∂r by central differences (Z is dμ/dr of the model)
    f = atoms.get_forces()
    z = pred[keys.BEC]
    np.testing.assert_allclose(f, base.get_forces(atoms) + np.einsum("jab,a->jb", z, field),
                               atol=1e-12)
    mu_fd = finite_difference_bec(lambda a: water_model.predict_frame(a)[keys.CHARGES]
                                  @ a.positions, atoms, h=1e-5)
    np.testing.assert_allclose(mu_fd, z, atol=1e-6)  # Z[j,a,b] = dμ_a/dr_jb
    assert np.abs(z - z.transpose(0, 2, 1)).max() > 1e-3  # the orientation matters


def test_static_field_nve_conserves_base_minus_mu_dot_e(water_model):
    atoms = perturbed_molecule("H2O", seed=7, scale=0.05)
    atoms.calc = BornCalculator(water_model, field=[0.0, 0.2, 0.1],
                                base=Tether(atoms.positions, k=1.0))
    rng = np.random.default_rng(1)
    atoms.set_momenta(rng.normal(scale=0.05, size=(3, 3)) * atoms.get_masses()[:, None]
                      / ase_units.fs * 1e-2)
    dyn = VelocityVerlet(atoms, timestep=1.0 * ase_units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_potential_energy()
                                       + atoms.get_kinetic_energy()), interval=20)
    dyn.run(2000)  # 2 ps
    energies = np.array(energies)
    moved = np.abs(atoms.positions - atoms.calc.base.r0).max()
    assert moved > 1e-3  # the field did something
    assert np.abs(energies - energies[0]).max() < 1e-4, np.abs(energies - energies[0]).max()


def test_gaussian_pulse_drives_the_dipole(water_model):
    atoms = perturbed_molecule("H2O", seed=3, scale=0.05)

    def pulse(t_fs):
        return np.array([0.0, 0.0, 0.5]) * np.exp(-0.5 * ((t_fs - 20.0) / 5.0) ** 2)

    calc = BornCalculator(water_model, field=pulse, base=Tether(atoms.positions, k=1.0))
    atoms.calc = calc
    dyn = VelocityVerlet(atoms, timestep=0.5 * ase_units.fs)
    calc.follow(dyn)
    times, dipoles = [], []
    dyn.attach(lambda: (times.append(calc.time_fs), dipoles.append(atoms.get_dipole_moment())))
    mu0 = atoms.get_dipole_moment()
    dyn.run(100)  # 50 fs
    dipoles = np.array(dipoles)
    assert times[-1] == pytest.approx(50.5)  # the time of the next force evaluation
    assert np.abs(dipoles[-1] - mu0).max() > 1e-3  # the pulse changed the dipole
    assert np.abs(dipoles[:10] - mu0).max() < 0.05 * np.abs(dipoles[-1] - mu0).max()  # before
    # a field of zero after the pulse: the momentum transferred is Σ_j Zᵀ∫E dt ≈ 0 overall
    assert calc.electric_field(100.0) == pytest.approx(np.zeros(3), abs=1e-12)


def test_field_validation(water_model):
    calc = BornCalculator(water_model, field=[1.0, 2.0])
    with pytest.raises(ValueError, match="3 numbers"):
        calc.electric_field()
    assert np.array_equal(BornCalculator(water_model).electric_field(), np.zeros(3))
