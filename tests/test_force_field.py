"""ForceFieldModel: forces and stress are exact derivatives of the energy, invariances, supercell
extensivity, energy conservation under ASE velocity Verlet, save/load, clone, and the fit
reproduces a force field it can represent."""

import numpy as np
import pytest
from ase import units as ase_units
from ase.md.verlet import VelocityVerlet

import bornml
from bornml import keys
from bornml.models.force_field import ForceFieldModel

SMALL = {"cutoff": 3.5, "max_radial": 3, "max_angular": 2, "n_sparse": 20, "tikhonov": 1e-6}


@pytest.fixture(scope="module")
def model(quartz_frames):
    return ForceFieldModel(**SMALL).fit(quartz_frames[:8])


@pytest.fixture
def rattled(quartz_frames):
    atoms = quartz_frames[20].copy()
    atoms.rattle(0.03, seed=3)
    return atoms


def test_quartz_has_labels(quartz_frames):
    frame = quartz_frames[0]
    assert keys.forces_of(frame).shape == (len(frame), 3)
    assert keys.energy_of(frame) is not None  # info["total_energy"], eV


def test_forces_are_minus_energy_gradient(model, rattled):
    forces = model.predict(rattled)[keys.FORCES]
    h = 1e-5
    for j in (0, 7, 30, 71):
        for b in range(3):
            plus, minus = rattled.copy(), rattled.copy()
            plus.positions[j, b] += h
            minus.positions[j, b] -= h
            fd = -(model.predict(plus)[keys.ENERGY] - model.predict(minus)[keys.ENERGY]) / (2 * h)
            assert abs(fd - forces[j, b]) <= 1e-6 * np.abs(forces).max() + 1e-8


def test_stress_is_strain_derivative(model, rattled):
    stress = model.predict(rattled)[keys.STRESS]
    volume, eps = rattled.get_volume(), 1e-5
    for a, b in ((0, 0), (1, 2), (2, 2)):
        strain = np.zeros((3, 3))
        strain[a, b] += eps / 2
        strain[b, a] += eps / 2
        energies = []
        for sign in (1, -1):
            at = rattled.copy()
            at.set_cell(rattled.cell[:] @ (np.eye(3) + sign * strain).T, scale_atoms=True)
            energies.append(model.predict(at)[keys.ENERGY])
        fd = (energies[0] - energies[1]) / (2 * eps) / volume
        assert fd == pytest.approx(stress[a, b], rel=1e-5, abs=1e-9)


def test_rotation_translation_permutation(model, rattled):
    ref = model.predict(rattled)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = rattled.copy()
    rot.set_cell(rattled.cell[:] @ q.T)
    rot.positions = rattled.positions @ q.T
    out = model.predict(rot)
    assert out[keys.ENERGY] == pytest.approx(ref[keys.ENERGY], abs=1e-8)
    np.testing.assert_allclose(out[keys.FORCES], ref[keys.FORCES] @ q.T, atol=1e-8)
    moved = rattled.copy()
    moved.positions += [0.7, -1.3, 2.1]
    out = model.predict(moved)
    assert out[keys.ENERGY] == pytest.approx(ref[keys.ENERGY], abs=1e-8)
    np.testing.assert_allclose(out[keys.FORCES], ref[keys.FORCES], atol=1e-8)
    order = rng.permutation(len(rattled))
    out = model.predict(rattled[order])
    assert out[keys.ENERGY] == pytest.approx(ref[keys.ENERGY], abs=1e-8)
    np.testing.assert_allclose(out[keys.FORCES], ref[keys.FORCES][order], atol=1e-8)


def test_supercell_is_extensive(model, rattled):
    ref = model.predict(rattled)
    big = model.predict(rattled.repeat((2, 1, 1)))
    assert big[keys.ENERGY] == pytest.approx(2 * ref[keys.ENERGY], rel=1e-12)
    np.testing.assert_allclose(big[keys.FORCES], np.tile(ref[keys.FORCES], (2, 1)), atol=1e-8)
    np.testing.assert_allclose(big[keys.STRESS], ref[keys.STRESS], atol=1e-10)


def test_fit_recovers_a_representable_force_field(quartz_frames):
    """Forces made by a model of the same form (same frames, so the same references) are
    fitted back."""
    teacher = ForceFieldModel(**SMALL).fit(quartz_frames[:8])
    frames = []
    for frame in quartz_frames[:8]:
        frame = frame.copy()
        pred = teacher.predict(frame)
        frame.info[keys.ENERGY] = pred[keys.ENERGY]
        frame.arrays[keys.FORCES] = pred[keys.FORCES]
        frames.append(frame)
    student = ForceFieldModel(**{**SMALL, "tikhonov": 1e-12, "energy_weight": 0.0})
    student.fit(frames)
    test = quartz_frames[25]
    f_t, f_s = teacher.predict(test)[keys.FORCES], student.predict(test)[keys.FORCES]
    assert np.sqrt(np.mean((f_t - f_s) ** 2)) < 1e-4 * np.std(f_t)


def test_nve_conserves_energy(model, quartz_frames):
    atoms = quartz_frames[3].copy()
    atoms.calc = model.calculator()
    kt = 300 * ase_units.kB  # Maxwell momenta at 300 K (any ASE version)
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(np.random.default_rng(1).normal(size=(len(atoms), 3)) * np.sqrt(masses * kt))
    dyn = VelocityVerlet(atoms, timestep=0.5 * ase_units.fs)
    totals, kinetic = [], []
    for _ in range(40):
        dyn.run(1)
        totals.append(atoms.get_total_energy())
        kinetic.append(atoms.get_kinetic_energy())
    assert np.ptp(totals) < 0.02 * np.ptp(kinetic)
    assert abs(totals[-1] - totals[0]) < 1e-3 * len(atoms)


def test_calculator_stress_and_energies(model, rattled):
    atoms = rattled.copy()
    atoms.calc = model.calculator()
    pred = model.predict(rattled)
    assert atoms.get_potential_energy() == pytest.approx(pred[keys.ENERGY])
    assert atoms.get_potential_energies().sum() == pytest.approx(pred[keys.ENERGY])
    assert atoms.get_stress().shape == (6,)


def test_save_load_round_trip(model, rattled, tmp_path):
    path = tmp_path / "ff.npz"
    model.save(path)
    loaded = bornml.load_model(path)
    assert isinstance(loaded, ForceFieldModel)
    a, b = model.predict(rattled), loaded.predict(rattled)
    assert a[keys.ENERGY] == b[keys.ENERGY]
    np.testing.assert_array_equal(a[keys.FORCES], b[keys.FORCES])


def test_clone_and_params(model):
    params = model.get_params()
    assert params["energy_weight"] == 1.0 and params["n_sparse"] == 20
    copy = type(model)(**params)
    assert copy.get_params() == params and not hasattr(copy, "term_")
    assert copy.set_params(force_weight=2.0).force_weight == 2.0
    sklearn = pytest.importorskip("sklearn")
    assert sklearn.base.clone(model).get_params() == params


def test_refuses_unlabelled_frames(quartz_frames):
    frame = quartz_frames[0].copy()
    del frame.arrays[keys.FORCES]
    frame.info.pop("total_energy")
    with pytest.raises(bornml.errors.BornDataError, match="neither forces nor an energy"):
        ForceFieldModel(**SMALL).fit([frame])
    with pytest.raises(ValueError, match="all 0"):
        ForceFieldModel(energy_weight=0, force_weight=0).fit(quartz_frames[:1])


def test_cli_train_and_evaluate_ff(tmp_path, capsys):
    import json

    from bornml.cli import main
    from bornml.demo import shipped_data_path

    data, out = str(shipped_data_path()), str(tmp_path / "ff.npz")
    flags = ["--cutoff", "3.5", "--max-radial", "3", "--max-angular", "2", "--n-sparse", "20",
             "--index", "0:12"]
    assert main(["train", data, "--model", "ff", "-o", out, "--no-progress", "--json",
                 "--energy-weight", "2", *flags]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["test"]["rmse"] < 0.5 * summary["test"]["std"]  # forces, eV/Å
    assert "energy_rmse_per_atom" in summary["test"]
    model = bornml.load_model(out)
    assert model.model_type == "ff" and model.energy_weight == 2.0 and model.tikhonov == 1e-6
    assert main(["evaluate", out, data, "--json", "--no-progress", "--index", "20:"]) == 0
    errors = json.loads(capsys.readouterr().out)
    assert errors["n_frames"] == 10 and errors["rmse"] < errors["std"]


@pytest.mark.parametrize("model, flag, reason", [
    ("ff", ["--charge-regularisation", "1"], "Born-charge model setting"),
    ("ff", ["--sum-rule-weight", "1"], "Born-charge model setting"),
    ("ff", ["--cv-folds", "3"], "takes ω as given"),
    ("q", ["--energy-weight", "1"], "force field's labels"),
    ("q+p", ["--force-weight", "1"], "force field's labels"),
])
def test_cli_refuses_inapplicable_flags(tmp_path, capsys, model, flag, reason):
    from bornml.cli import main
    from bornml.demo import shipped_data_path

    with pytest.raises(SystemExit) as info:
        main(["train", str(shipped_data_path()), "--model", model, "-o",
              str(tmp_path / "m.npz"), *flag])
    assert info.value.code == 2
    assert reason in capsys.readouterr().err


def test_core_wall_is_zero_on_training_data_and_repels_below_it(model, quartz_frames):
    from ase.data import chemical_symbols

    assert model.core_radii_.shape == (2, 2) and np.all(model.core_radii_ > 0)
    wall, free = model.predict(quartz_frames[2]), None
    model.set_params(core_stiffness=0.0)
    try:
        free = model.predict(quartz_frames[2])
        squeezed = quartz_frames[2].copy()
        si = int(np.flatnonzero(squeezed.numbers == 14)[0])
        o = int(np.argsort(squeezed.get_distances(si, range(len(squeezed)), mic=True))[1])
        assert chemical_symbols[squeezed.numbers[o]] == "O"
        r_min = model.core_radii_[0, 1] / model.core_margin  # O is species 0, Si species 1
        d = squeezed.get_distance(si, o, mic=True, vector=True)
        squeezed.positions[o] -= d * (1 - 0.6 * r_min / np.linalg.norm(d))
        soft = model.predict(squeezed)
    finally:
        model.set_params(core_stiffness=100.0)
    assert wall[keys.ENERGY] == free[keys.ENERGY]  # nothing on the training frames
    hard = model.predict(squeezed)
    assert hard[keys.ENERGY] > soft[keys.ENERGY] + 0.5
    along = d / np.linalg.norm(d)  # from Si to O: the wall pushes O outwards
    assert (hard[keys.FORCES] - soft[keys.FORCES])[o] @ along > 1.0
    h = 1e-5
    plus, minus = squeezed.copy(), squeezed.copy()
    plus.positions[o] += h * along
    minus.positions[o] -= h * along
    fd = -(model.predict(plus)[keys.ENERGY] - model.predict(minus)[keys.ENERGY]) / (2 * h)
    assert fd == pytest.approx(hard[keys.FORCES][o] @ along, rel=1e-6)


@pytest.mark.parametrize("zeta", [1, 3])
def test_other_zeta_forces_are_gradients(quartz_frames, zeta):
    """ζ = 1 (contracted vector) and ζ = 3 (explicit sum) prediction routes, with more
    references than half the features so the contracted form is tried."""
    model = ForceFieldModel(**{**SMALL, "zeta": zeta, "n_sparse": 60, "tikhonov": 1e-3})
    model.fit(quartz_frames[:3])  # ω large enough that the weights stay O(1): clean FD
    assert min(len(r) for r in model.reference_set_.references.values()) \
        > model.reference_set_.n_features // 2
    atoms = quartz_frames[20]
    forces = model.predict(atoms)[keys.FORCES]
    h, j = 1e-5, 11
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[j, 2] += h
    minus.positions[j, 2] -= h
    fd = -(model.predict(plus)[keys.ENERGY] - model.predict(minus)[keys.ENERGY]) / (2 * h)
    assert fd == pytest.approx(forces[j, 2], abs=1e-6 * np.abs(forces).max())
