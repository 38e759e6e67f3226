"""The acoustic sum rule in a periodic cell: the residual the projection removes, and fitting it.

These tests look at the *unprojected* residual R = Σ_j Z_j^local (the predicted Z obeys the
sum rule by construction, so testing Σ_j Z_j of the prediction could never fail).
"""

import numpy as np
import pytest
from _structures import slab as make_slab

import bornml
from bornml import keys
from bornml.metrics import bec_errors, sum_rule_correction_rms
from bornml.models.equations import KernelEquations

SMALL = {"cutoff": 4.0, "max_radial": 4, "max_angular": 3, "n_sparse": 40, "tikhonov": 1e-4,
             "charge_regularisation": 0.0}


@pytest.fixture(scope="module")
def q_model(quartz_frames):
    """A charge model fitted without the sum-rule rows (μ = 0): its total charge is not
    conserved, so the residual R is large enough to test."""
    return bornml.MonopoleModel(**SMALL, sum_rule_weight=0.0).fit(quartz_frames[:6])


def test_default_fit_conserves_the_total_charge(quartz_frames):
    """With the default μ the removed part is a small fraction of the held-out error (it was
    several times the error with the projection alone, see the README table)."""
    train, test = quartz_frames[:8], quartz_frames[20:26]
    errors = bec_errors(test, bornml.MonopoleModel(**SMALL).fit(train).predict(test))
    assert errors["sum_rule_correction_rms"] < 0.3 * errors["rmse"]


def _raw_total_charge(model, atoms):
    ctx = model.reference_set_.expand(atoms, 0)
    q, _ = model.terms_["charges"].charges_and_pair_gradients(ctx, atoms)
    return q.sum()


def test_residual_is_minus_the_strain_derivative_of_the_total_charge(q_model, quartz_frames):
    """R[a, b] = −Σ_p d_p[a] ∂Q/∂d_p[b] = −∂Q/∂ε[b, a] for a homogeneous deformation
    r → (1 + ε) r of positions and cell: an independent route to the removed part."""
    atoms = quartz_frames[7].copy()
    residual = q_model.predict(atoms)[keys.ASR_RESIDUAL]
    assert np.abs(residual).max() > 1e-3  # a model that does not conserve Q: non-trivial R
    h = 1e-5
    strain_derivative = np.zeros((3, 3))
    for b in range(3):
        for a in range(3):
            values = []
            for sign in (1, -1):
                eps = np.eye(3)
                eps[b, a] += sign * h
                moved = atoms.copy()
                moved.set_cell(atoms.cell.array @ eps.T, scale_atoms=False)
                moved.positions = atoms.positions @ eps.T
                values.append(_raw_total_charge(q_model, moved))
            strain_derivative[b, a] = (values[0] - values[1]) / (2 * h)
    np.testing.assert_allclose(residual, -strain_derivative.T, atol=1e-6 * np.abs(residual).max() + 1e-8)


def test_sum_rule_rows_times_weights_give_the_predicted_residual(q_model, quartz_frames):
    atoms = quartz_frames[8]
    ctx = q_model.reference_set_.expand(atoms, 0)
    _, _, rows = q_model._frame_design(ctx, atoms)
    w = q_model.terms_["charges"].design_weights()
    np.testing.assert_allclose((rows @ w).reshape(3, 3),
                               q_model.predict(atoms)[keys.ASR_RESIDUAL], atol=1e-10)


def test_molecules_have_no_sum_rule_rows():
    from _structures import synthetic_molecule_frames

    frames = synthetic_molecule_frames()
    model = bornml.MonopoleModel(**dict(SMALL, n_sparse=10)).fit(frames)
    assert model._frame_design(model.reference_set_.expand(frames[0], 0), frames[0])[2] is None


def test_weighted_sum_rule_solve_equals_stacked_least_squares():
    """(A + μ SᵀS + ω s I) w = b is least squares on the design stacked with √μ·S."""
    rng = np.random.default_rng(3)
    n_atoms, n = 4, 5
    eqs = KernelEquations({"charges": slice(0, n)}, (8,), 0, n_folds=1)
    designs, sums, targets = [], [], []
    import ase

    for _ in range(3):
        frame = ase.Atoms("O4", positions=rng.normal(size=(4, 3)), cell=np.eye(3) * 5,
                          pbc=True)
        frame.arrays[keys.BEC] = rng.normal(size=(n_atoms, 3, 3))
        design = rng.normal(size=(n_atoms * 9, n))
        s = rng.normal(size=(9, n))
        eqs.add(design, None, frame, s)
        designs.append(design)
        sums.append(s / np.sqrt(n_atoms))
        targets.append((frame.arrays[keys.BEC] - frame.arrays[keys.BEC].mean(0)).ravel())
    mu, omega = 2.5, 1e-3
    w = eqs.solve(["charges"], {"charges": None}, {"charges": omega}, sum_rule_weight=mu)
    phi = np.concatenate(designs)
    scale = np.trace(phi.T @ phi) / n
    lhs = phi.T @ phi + mu * np.concatenate(sums).T @ np.concatenate(sums) + omega * scale * np.eye(n)
    np.testing.assert_allclose(w, np.linalg.solve(lhs, phi.T @ np.concatenate(targets)),
                               rtol=1e-8)


def test_fitting_the_sum_rule_shrinks_the_correction(quartz_frames):
    """The default projection-only fit leaves a correction comparable to the error; μ = 10
    makes it several times smaller at nearly the same held-out error."""
    train, test = quartz_frames[:8], quartz_frames[20:26]
    out = {}
    for mu in (0.0, 10.0):
        model = bornml.MonopoleModel(**SMALL, sum_rule_weight=mu).fit(train)
        out[mu] = bec_errors(test, model.predict(test))
    assert out[10.0]["sum_rule_correction_rms"] < 0.3 * out[0.0]["sum_rule_correction_rms"]
    assert out[10.0]["rmse"] < 1.1 * out[0.0]["rmse"]


def test_correction_rms_by_hand():
    import ase

    frame = ase.Atoms("O2", positions=[[0, 0, 0], [1, 0, 0]], cell=np.eye(3) * 4, pbc=True)
    residual = np.arange(9.0).reshape(3, 3)
    # R/N on both atoms: RMS over 2 atoms × 9 components = |R| / N / 3
    expected = np.linalg.norm(residual) / 2 / 3
    assert sum_rule_correction_rms([frame], [{keys.ASR_RESIDUAL: residual}]) == pytest.approx(expected)


def test_sum_rule_weight_must_be_non_negative(quartz_frames):
    with pytest.raises(ValueError, match="sum_rule_weight"):
        bornml.MonopoleModel(**SMALL, sum_rule_weight=-1).fit(quartz_frames[:2])


def test_slab_normal_rows_are_the_derivative_of_the_polarisation(q_model, quartz_frames):
    """Along the vacuum normal P_z = Σ q'_i z_i is defined: Z[j, z, :] is its derivative
    (finite differences), while the in-plane rows keep the sum-rule projection."""
    slab = make_slab(quartz_frames[3])
    ctx = q_model.reference_set_.expand(slab, 0)
    np.testing.assert_array_equal(ctx.fe.periodic_directions, [True, True, False])
    pred = q_model.predict(slab)
    z = pred[keys.BEC]
    h = 1e-5
    for j in (0, 5, 40):
        for b in range(3):
            values = []
            for sign in (1, -1):
                moved = slab.copy()
                moved.positions[j, b] += sign * h
                q = q_model.predict(moved)[keys.CHARGES]
                values.append(q @ moved.positions[:, 2])
            np.testing.assert_allclose(z[j, 2, b], (values[0] - values[1]) / (2 * h), atol=2e-6)
    np.testing.assert_allclose(pred[keys.ASR_RESIDUAL][2], 0.0, atol=1e-12)  # nothing removed
    assert np.abs(z.sum(axis=0)).max() < 1e-8  # and the sum rule holds in every row


def test_slab_dipole_derivative_matches_its_born_charges(q_model, quartz_frames):
    slab = make_slab(quartz_frames[4])
    v = np.random.default_rng(0).normal(size=(len(slab), 3))
    z = q_model.predict(slab)[keys.BEC]
    np.testing.assert_allclose(q_model.dipole_derivative(slab, v),
                               np.einsum("jab,jb->a", z, v), atol=1e-10)


def test_weighted_sum_rule_solve_leaving_out_a_fold_equals_stacked_least_squares():
    """Cross-validation's training system (every fold but one) with the sum-rule rows: the
    same as least squares on the other folds' frames stacked with √μ·S."""
    import ase

    rng = np.random.default_rng(5)
    n_atoms, n = 4, 6
    eqs = KernelEquations({"charges": slice(0, n)}, (8,), 0, n_folds=3)
    kept = []
    for k in range(6):  # frame k goes to fold k mod 3
        frame = ase.Atoms("O4", positions=rng.normal(size=(4, 3)), cell=np.eye(3) * 5,
                          pbc=True)
        frame.arrays[keys.BEC] = rng.normal(size=(n_atoms, 3, 3))
        design = rng.normal(size=(n_atoms * 9, n))
        s = rng.normal(size=(9, n))
        s[:, -1] = 0.0  # a column no sum-rule row touches (a dipole column)
        eqs.add(design, None, frame, s)
        if k % 3 != 1:
            z = frame.arrays[keys.BEC]
            kept.append((design, s / np.sqrt(n_atoms), (z - z.mean(0)).ravel()))
    mu, omega = 3.0, 1e-3
    for _ in range(2):  # the second solve reuses the cached all-fold product
        w = eqs.solve(["charges"], {"charges": None}, {"charges": omega}, exclude=1,
                      sum_rule_weight=mu)
    phi = np.concatenate([d for d, _, _ in kept])
    rows = np.concatenate([r for _, r, _ in kept])
    lhs = phi.T @ phi + mu * rows.T @ rows + omega * np.trace(phi.T @ phi) / n * np.eye(n)
    expected = np.linalg.solve(lhs, phi.T @ np.concatenate([t for _, _, t in kept]))
    np.testing.assert_allclose(w, expected, rtol=1e-8)
