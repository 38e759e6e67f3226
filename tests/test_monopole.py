"""Tests of the monopole (charge) kernel model: exactness of Z for molecules, symmetries,
image resolution (supercells), sum rule, the linear fit, charge regularisation, model files,
error messages, sparse selection, and accuracy on real DFT data."""

import json

import numpy as np
import pytest
import scipy.linalg
from _structures import (
    SMALL,
    finite_difference_along,
    finite_difference_bec,
    perturbed_molecule,
    rotated,
    synthetic_molecule_frames,
)
from ase import Atoms
from ase.geometry import find_mic

import bornml
from bornml import keys
from bornml.errors import BornDataError, ModelFileError
from bornml.metrics import bec_errors
from bornml.models.kernel import kernel
from bornml.models.monopole import asr_corrected
from bornml.models.sparsify import select_sparse

# -- fixtures and helpers ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def quartz_model(quartz_frames):
    return bornml.MonopoleModel(**SMALL, n_sparse=30, tikhonov=1e-6,
                                charge_regularisation=0.0).fit(quartz_frames[:4])


@pytest.fixture(scope="module")
def molecule_model():
    """Fitted on H/C/O molecules with random (synthetic) Born charges."""
    return bornml.MonopoleModel(**SMALL, n_sparse=20).fit(synthetic_molecule_frames())


def quartz_cluster(frame, radius, centre=0):
    """Non-periodic cluster of the atoms within ``radius`` Å (minimum image) of ``centre``."""
    d, dist = find_mic(frame.positions - frame.positions[centre], frame.cell, pbc=True)
    keep = dist < radius
    return Atoms(numbers=frame.numbers[keep], positions=frame.positions[centre] + d[keep],
                 pbc=False)


@pytest.fixture(scope="module")
def molecules(quartz_frames):
    """(model fixture name, structure) pairs of non-periodic test systems."""
    return {"ethanol": ("molecule_model", perturbed_molecule("CH3CH2OH", seed=99)),
            "quartz-cluster": ("quartz_model", quartz_cluster(quartz_frames[5], 4.0))}


def random_rotation(seed, proper=True):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    return q


def cell_heights(cell):
    cell = np.asarray(cell)
    vol = abs(np.linalg.det(cell))
    return np.array([vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
                     for k in range(3)])


def weights(model):
    return np.concatenate([model.weights_[z] for z in model.species_])


def dipole(model, atoms):
    """P = Σ_i q_i r_i with the model's (neutral) charges, e·Å."""
    return model.predict_frame(atoms)["charges"] @ atoms.positions


# -- molecules: Z is the exact derivative of the dipole --------------------------------------------

@pytest.mark.parametrize("system", ["ethanol", "quartz-cluster"])
def test_molecule_bec_is_derivative_of_dipole(system, molecules, request):
    model_name, atoms = molecules[system]
    model = request.getfixturevalue(model_name)
    pred = model.predict_frame(atoms)
    h = 1e-5
    numeric = finite_difference_bec(lambda a: dipole(model, a), atoms, h)
    assert np.abs(numeric).max() > 0.1  # a non-trivial Z
    # the charge-transfer term matters: Z is far from q_j I
    assert np.abs(pred["bec"] - pred["charges"][:, None, None] * np.eye(3)).max() > 1e-2
    np.testing.assert_allclose(pred["bec"], numeric, rtol=0, atol=1e-6)
    assert np.abs(pred["bec"].sum(axis=0)).max() <= 1e-10
    assert abs(pred["charges"].sum()) <= 1e-10
    assert np.abs(pred["asr_residual"]).max() <= 1e-10  # nothing removed for a molecule
    # Ṁ = Σ_j Z_j v_j is the time derivative of P along a velocity field
    v = np.random.default_rng(1).normal(size=atoms.positions.shape)
    np.testing.assert_allclose(model.dipole_derivative(atoms, v),
                               finite_difference_along(lambda a: dipole(model, a), atoms, v, h),
                               rtol=0, atol=1e-6)


# -- symmetries -------------------------------------------------------------------------------------

rotate = rotated


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "improper"])
@pytest.mark.parametrize("system", ["periodic-quartz", "ethanol"])
def test_rotation_covariance(system, proper, quartz_frames, quartz_model, molecule_model):
    if system == "ethanol":
        model, atoms = molecule_model, perturbed_molecule("CH3CH2OH", seed=5)
    else:
        model, atoms = quartz_model, quartz_frames[7]
    rot = random_rotation(3, proper)
    ref = model.predict_frame(atoms)
    got = model.predict_frame(rotate(atoms, rot))
    expected = np.einsum("ac,jcd,bd->jab", rot, ref["bec"], rot)
    assert np.abs(got["bec"] - ref["bec"]).max() > 1e-2  # the rotation does change Z
    np.testing.assert_allclose(got["bec"], expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["charges"], ref["charges"], rtol=0, atol=1e-9)


def _model_and_structure(system, seed, frame, quartz_frames, quartz_model, molecule_model):
    """A perturbed ethanol molecule with the molecule model, or a quartz frame."""
    if system == "ethanol":
        return molecule_model, perturbed_molecule("CH3CH2OH", seed=seed)
    return quartz_model, quartz_frames[frame]


@pytest.mark.parametrize("system", ["periodic-quartz", "ethanol"])
def test_translation_invariance(system, quartz_frames, quartz_model, molecule_model):
    model, atoms = _model_and_structure(system, 6, 8, quartz_frames, quartz_model,
                                        molecule_model)
    ref = model.predict_frame(atoms)
    moved = atoms.copy()
    moved.positions += [3.3, -7.1, 12.4]
    variants = [moved]
    if atoms.pbc.all():
        wrapped = moved.copy()
        wrapped.wrap()  # atoms folded back into the cell: same crystal
        assert np.abs(wrapped.positions - moved.positions).max() > 1.0
        variants.append(wrapped)
    for v in variants:
        got = model.predict_frame(v)
        np.testing.assert_allclose(got["bec"], ref["bec"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(got["charges"], ref["charges"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("system", ["periodic-quartz", "ethanol"])
def test_permutation_equivariance(system, quartz_frames, quartz_model, molecule_model):
    model, atoms = _model_and_structure(system, 7, 9, quartz_frames, quartz_model,
                                        molecule_model)
    perm = np.random.default_rng(4).permutation(len(atoms))
    ref = model.predict_frame(atoms)
    got = model.predict_frame(atoms[perm])
    np.testing.assert_allclose(got["bec"], ref["bec"][perm], rtol=0, atol=1e-9)
    np.testing.assert_allclose(got["charges"], ref["charges"][perm], rtol=0, atol=1e-9)


# -- periodic frames: image resolution and the sum rule -----------------------------------------------

def assert_supercell_invariant(model, frame, repeat, atol=1e-8):
    heights = cell_heights(frame.cell)
    assert model.cutoff > 0.5 * heights.min(), "test needs several images of one neighbour"
    ref = model.predict_frame(frame)
    big = model.predict_frame(frame.repeat(repeat))
    n_copies = int(np.prod(repeat))
    # ase's repeat lists the copies one after the other, each in the original atom order
    np.testing.assert_allclose(big["bec"], np.tile(ref["bec"], (n_copies, 1, 1)),
                               rtol=0, atol=atol)
    np.testing.assert_allclose(big["charges"], np.tile(ref["charges"], n_copies),
                               rtol=0, atol=atol)


@pytest.mark.parametrize("repeat", [(2, 2, 2), (3, 1, 2)])
def test_supercell_invariance_quartz(repeat, quartz_frames, quartz_model):
    assert_supercell_invariant(quartz_model, quartz_frames[10], repeat)


def test_asr_holds_for_periodic_predictions(quartz_frames, quartz_model):
    for pred in quartz_model.predict(quartz_frames[10:14]):
        assert np.abs(pred["bec"].sum(axis=0)).max() <= 1e-10
        assert abs(pred["charges"].sum()) <= 1e-10
        assert pred["asr_residual"].shape == (3, 3)
        assert np.all(np.isfinite(pred["asr_residual"]))


def test_predict_accepts_single_frame_and_lists(quartz_frames, quartz_model):
    single = quartz_model.predict(quartz_frames[11])
    listed = quartz_model.predict([quartz_frames[11]])
    assert isinstance(single, dict) and len(listed) == 1
    np.testing.assert_array_equal(single["bec"], listed[0]["bec"])
    assert single["bec"].shape == (72, 3, 3) and single["charges"].shape == (72,)


# -- the linear model ------------------------------------------------------------------------------

@pytest.mark.parametrize("system", ["periodic-quartz", "ethanol"])
def test_design_matrix_reproduces_predictions(system, quartz_frames, quartz_model,
                                              molecule_model):
    if system == "ethanol":
        model, atoms = molecule_model, perturbed_molecule("CH3CH2OH", seed=8)
    else:
        model, atoms = quartz_model, quartz_frames[12]
    phi, phi_q = model.design_matrix(atoms)
    w = weights(model)
    pred = model.predict_frame(atoms)
    assert phi.shape == (9 * len(atoms), len(w)) and phi_q.shape == (len(atoms), len(w))
    scale = np.abs(pred["bec"]).max()
    np.testing.assert_allclose(phi @ w, pred["bec"].ravel(), rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(phi_q @ w, pred["charges"], rtol=0, atol=1e-10 * scale)


def normal_equations(model, frames):
    a, b = 0.0, 0.0
    for f in frames:
        phi, _ = model.design_matrix(f)
        z = asr_corrected(keys.bec_of(f)).ravel()
        a = a + phi.T @ phi
        b = b + phi.T @ z
    return a, b


def test_fit_solves_regularised_least_squares(quartz_frames, quartz_model):
    """Stationarity of ||Φw − z||² + μ Σ_frames |Sw|²/N + ω s wᵀ(K_MM + 1e-10 I)w with
    s = tr(ΦᵀΦ)/M and S the unprojected sum-rule rows of a frame."""
    model = quartz_model
    a, b = normal_equations(model, quartz_frames[:4])
    w = weights(model)
    reg = scipy.linalg.block_diag(*[kernel(r, r, model.zeta)
                                    for r in model.references_.values()])
    reg += 1e-10 * np.eye(len(w))
    s = np.trace(a) / len(w)
    sum_rule = sum(rows.T @ rows / len(f) for f in quartz_frames[:4]
                   for rows in [model._frame_design(model.reference_set_.expand(f, 0), f)[2]])
    assert model.sum_rule_weight > 0  # the default fit has the sum-rule rows
    gradient = a @ w - b + model.sum_rule_weight * sum_rule @ w + model.tikhonov * s * reg @ w
    # measured 2e-14
    assert np.linalg.norm(gradient) <= 1e-9 * np.linalg.norm(b)
    # and the regulariser does something at ω = 1e-6 (the test above is not vacuous)
    assert np.linalg.norm(a @ w - b) > 1e3 * np.linalg.norm(gradient)


@pytest.fixture(scope="module")
def tiny_tikhonov_model(quartz_frames):
    """Plain least squares (no sum-rule rows, μ = 0), so Φᵀ(Φw − z) = −ω s w exactly."""
    return bornml.MonopoleModel(**SMALL, n_sparse=25, tikhonov=1e-12, regulariser="identity",
                                sum_rule_weight=0.0).fit(quartz_frames[14:17])


def test_fit_residual_orthogonal_to_design(quartz_frames, tiny_tikhonov_model):
    model = tiny_tikhonov_model
    frames = quartz_frames[14:17]
    a, b = normal_equations(model, frames)
    w = weights(model)
    assert 9 * 72 * len(frames) > 10 * len(w)  # many more rows than parameters
    # Φᵀ(Φw − z) = −ω s w exactly; with ω = 1e-12 that is ~0 relative to Φᵀz
    residual = a @ w - b
    assert np.linalg.norm(residual) <= 1e-6 * np.linalg.norm(b)
    s = np.trace(a) / len(w)
    np.testing.assert_allclose(residual, -1e-12 * s * w, rtol=0, atol=1e-9 * np.linalg.norm(b))


def test_fit_recovers_known_weights(quartz_frames, tiny_tikhonov_model):
    """Targets z = Φ w_true built from the model's own design matrices are fitted exactly."""
    model = tiny_tikhonov_model
    frames = quartz_frames[14:17]
    w_true = np.random.default_rng(11).normal(size=len(weights(model)))
    synthetic = []
    for f in frames:
        phi, _ = model.design_matrix(f)
        g = f.copy()
        g.arrays["bec"] = (phi @ w_true).reshape(len(f), 3, 3)
        synthetic.append(g)
    refit = bornml.MonopoleModel(**model.get_params()).fit(synthetic)
    for z in model.species_:  # same environments → same reference points
        np.testing.assert_array_equal(refit.references_[z], model.references_[z])
    for g, pred in zip(synthetic, refit.predict(synthetic)):
        target = keys.bec_of(g)
        assert np.abs(pred["bec"] - target).max() <= 1e-6 * np.abs(target).max()
    # and on a frame it was not trained on
    phi, _ = model.design_matrix(quartz_frames[20])
    target = phi @ w_true
    got = refit.predict_frame(quartz_frames[20])["bec"].ravel()
    assert np.abs(got - target).max() <= 1e-6 * np.abs(target).max()


def test_charge_regularisation_pulls_charges_to_trace(quartz_frames, quartz_model):
    frames = quartz_frames[:4]
    strong = bornml.MonopoleModel(**SMALL, n_sparse=30,
                                  charge_regularisation=1e4).fit(frames)

    def gaps(model):
        preds = model.predict(frames)
        out = {}
        for z in (8, 14):
            q = np.concatenate([p["charges"][f.numbers == z] for p, f in zip(preds, frames)])
            t = np.concatenate([np.trace(asr_corrected(keys.bec_of(f)), axis1=1, axis2=2)
                                [f.numbers == z] / 3 for f in frames])
            out[z] = abs(q.mean() - t.mean())
        return out

    free, pulled = gaps(quartz_model), gaps(strong)
    # measured: λ_q = 0 → O 1.28 e, Si 2.56 e; λ_q = 1e4 → ~1e-5 e
    for z in (8, 14):
        assert free[z] > 0.1
        assert pulled[z] < 1e-3
        assert pulled[z] < 1e-2 * free[z]


# -- model files -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_model(quartz_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "quartz.npz"
    quartz_model.save(path)
    return path


def test_save_load_round_trip_is_exact(saved_model, quartz_model, quartz_frames, molecules):
    loaded = bornml.load_model(saved_model)
    assert loaded.get_params() == quartz_model.get_params()
    assert loaded.species_ == quartz_model.species_
    cluster = molecules["quartz-cluster"][1]
    for atoms in (quartz_frames[21], cluster):
        a, b = quartz_model.predict_frame(atoms), loaded.predict_frame(atoms)
        for key in ("charges", "bec", "asr_residual"):
            np.testing.assert_array_equal(a[key], b[key])


def rewrite_npz(src, dst, drop=(), meta_update=None):
    with np.load(src, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k not in drop}
    if meta_update is not None:
        meta = json.loads(str(arrays["metadata"]))
        meta.update(meta_update)
        arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)
    return dst


def test_load_rejects_other_format_version(saved_model, tmp_path):
    path = rewrite_npz(saved_model, tmp_path / "future.npz", meta_update={"format_version": 99})
    with pytest.raises(ModelFileError, match="version 99") as err:
        bornml.load_model(path)
    assert str(path) in str(err.value)


def test_load_rejects_foreign_npz(saved_model, tmp_path):
    path = rewrite_npz(saved_model, tmp_path / "other.npz", meta_update={"format": "acme"})
    with pytest.raises(ModelFileError, match="not a bornml model file") as err:
        bornml.load_model(path)
    assert str(path) in str(err.value)
    np.savez(tmp_path / "plain.npz", x=np.arange(3))
    with pytest.raises(ModelFileError, match="metadata"):
        bornml.load_model(tmp_path / "plain.npz")


@pytest.mark.parametrize("fraction", [0.5, 0.98])
def test_load_rejects_truncated_file(saved_model, tmp_path, fraction):
    data = saved_model.read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ModelFileError) as err:
        bornml.load_model(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("kind", ["text", "empty", "npy"])
def test_load_rejects_non_npz_file(kind, tmp_path):
    path = tmp_path / f"model-{kind}.npz"
    if kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        with open(path, "wb") as handle:
            np.save(handle, np.arange(4.0))
    with pytest.raises(ModelFileError) as err:
        bornml.load_model(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("missing", ["weights_14", "references_8", "radial_values"])
def test_load_rejects_missing_arrays(missing, saved_model, tmp_path):
    path = rewrite_npz(saved_model, tmp_path / "partial.npz", drop=(missing,))
    with pytest.raises(ModelFileError, match=missing) as err:
        bornml.load_model(path)
    assert str(path) in str(err.value)


def test_load_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        bornml.load_model(tmp_path / "nope.npz")


def test_save_unfitted_model_leaves_existing_file_untouched(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"previous content")
    with pytest.raises(RuntimeError, match="not fitted"):
        bornml.MonopoleModel(**SMALL).save(path)
    assert path.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_save_is_atomic_when_writing_fails(quartz_model, saved_model, tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    original = saved_model.read_bytes()
    path.write_bytes(original)

    def failing_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        quartz_model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == original  # old model intact, no partial file in its place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temp files left
    bornml.load_model(path)


# -- errors ------------------------------------------------------------------------------------------

def test_unknown_species_names_species_and_source(quartz_frames, quartz_model):
    frame = quartz_frames[22].copy()
    frame.numbers[3] = 13  # Al
    frame.info["bornml_source"] = "alumina-doped.extxyz:7"
    with pytest.raises(BornDataError) as err:
        quartz_model.predict([frame])
    message = str(err.value)
    assert "13" in message and "alumina-doped.extxyz:7" in message
    # without a recorded source the frame's position in the list is named
    frame.info.pop("bornml_source")
    with pytest.raises(BornDataError, match="frame 1"):
        quartz_model.predict([quartz_frames[0], frame])


def test_unfitted_and_misconfigured_models_raise(quartz_frames):
    with pytest.raises(RuntimeError, match="not fitted"):
        bornml.MonopoleModel(**SMALL).predict(quartz_frames[0])
    with pytest.raises(ValueError, match="sparse_method"):
        bornml.MonopoleModel(**SMALL, sparse_method="bogus").fit(quartz_frames[:1])
    unlabelled = quartz_frames[0].copy()
    del unlabelled.arrays["bec"]
    with pytest.raises(BornDataError, match="bec"):
        bornml.MonopoleModel(**SMALL).fit([unlabelled])


def test_design_matrix_for_frame_missing_a_species(quartz_frames, quartz_model):
    oxygen_only = quartz_cluster(quartz_frames[0], 4.0)
    oxygen_only = oxygen_only[oxygen_only.numbers == 8]
    pred = quartz_model.predict_frame(oxygen_only)  # prediction already works
    phi, phi_q = quartz_model.design_matrix(oxygen_only)
    np.testing.assert_allclose(phi @ weights(quartz_model), pred["bec"].ravel(), atol=1e-10)
    np.testing.assert_allclose(phi_q @ weights(quartz_model), pred["charges"], atol=1e-10)


# -- sparse selection --------------------------------------------------------------------------------

def normalised_rows(n, d, seed):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1)[:, None]


def test_fps_picks_distinct_points_deterministically():
    x = normalised_rows(200, 12, seed=1)
    idx = select_sparse(x, 40, "fps")
    assert len(idx) == 40 == len(np.unique(idx))
    assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < 200
    first = int(np.argmax(np.linalg.norm(x - x.mean(0), axis=1)))  # farthest from the mean
    assert first in idx
    np.testing.assert_array_equal(select_sparse(x, 40, "fps"), idx)
    np.testing.assert_array_equal(select_sparse(x, 1, "fps"), [first])


def test_fps_covers_separated_clusters():
    rng = np.random.default_rng(2)
    centres = np.eye(6)[:4] * 10
    x = np.concatenate([c + 0.01 * rng.normal(size=(50, 6)) for c in centres])
    idx = select_sparse(x, 4, "fps")
    assert sorted(set(idx // 50)) == [0, 1, 2, 3]  # one point from each cluster


@pytest.mark.parametrize("method", ["cur", "random"])
def test_cur_and_random_return_requested_count(method):
    x = normalised_rows(150, 20, seed=3)
    idx = select_sparse(x, 30, method, seed=5)
    assert len(idx) == 30 == len(np.unique(idx))
    assert idx.min() >= 0 and idx.max() < 150
    np.testing.assert_array_equal(select_sparse(x, 30, method, seed=5), idx)


def test_random_selection_depends_on_seed():
    x = normalised_rows(150, 20, seed=3)
    assert not np.array_equal(select_sparse(x, 30, "random", seed=1),
                              select_sparse(x, 30, "random", seed=2))


@pytest.mark.parametrize("method", ["fps", "cur", "random"])
def test_sparse_selection_takes_all_when_asking_for_more(method):
    x = normalised_rows(10, 5, seed=4)
    np.testing.assert_array_equal(select_sparse(x, 25, method), np.arange(10))


def test_unknown_sparse_method_raises():
    with pytest.raises(ValueError, match="bogus"):
        select_sparse(normalised_rows(20, 4, seed=0), 5, "bogus")


# -- real data: ZrO2 (cell ≈ 10.3 Å, cutoff 6 Å > half the cell) ----------------------------------------

@pytest.fixture(scope="module")
def zro2(shared_data):
    frames = bornml.read_frames(shared_data / "zro2-pbesol" / "ZrO2_BEC.extxyz")
    train_idx = np.linspace(0, len(frames) - 1, 10).round().astype(int)
    rest = np.setdiff1d(np.arange(len(frames)), train_idx)
    test_idx = rest[::10]
    model = bornml.MonopoleModel(cutoff=6.0, max_radial=4, max_angular=3, n_sparse=50)
    model.fit([frames[i] for i in train_idx])
    return model, [frames[i] for i in train_idx], [frames[i] for i in test_idx]


def test_supercell_invariance_zro2(zro2):
    model, _, test = zro2
    assert len(test[0]) == 96
    assert_supercell_invariant(model, test[0], (2, 2, 2))


def test_zro2_held_out_accuracy(zro2):
    model, train, test = zro2
    errors = bec_errors(test, model.predict(test))
    train_errors = bec_errors(train, model.predict(train))
    # measured (10 training frames, 11 held-out frames, n_sparse 50, cutoff 6 Å):
    # held-out nRMSE 0.0796 (RMSE 0.177 e), training nRMSE 0.0707
    assert errors["nrmse"] < 0.12
    assert train_errors["nrmse"] < 0.11
    assert errors["n_frames"] == len(test) == 11
    for pred in model.predict(test[:2]):
        assert np.abs(pred["bec"].sum(axis=0)).max() <= 1e-10



@pytest.mark.parametrize("zeta", [1, 2])
def test_contracted_kernel_route_equals_explicit_sum(zeta):
    """For ζ = 1, 2 predictions contract the weights over references first; same numbers."""
    from bornml.models.kernel import (
        contracted_weighted_gradient,
        contracted_weights,
        kernel_weighted_gradient,
        normalise,
    )

    rng = np.random.default_rng(3)
    xhat, norms = normalise(rng.normal(size=(7, 12)))
    ref, _ = normalise(rng.normal(size=(20, 12)))
    w = rng.normal(size=20)
    v1, q1 = kernel_weighted_gradient(xhat, norms, ref, w, zeta)
    v2, q2 = contracted_weighted_gradient(xhat, norms, contracted_weights(ref, w, zeta), zeta)
    np.testing.assert_allclose(q2, q1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(v2, v1, rtol=1e-12, atol=1e-12)
    # and the gradient is the derivative of q with respect to the raw features x = x̂·|x|
    x = xhat * norms[:, None]
    h = 1e-6
    for d in range(3):
        xp, xm = x.copy(), x.copy()
        xp[0, d] += h
        xm[0, d] -= h
        qp = kernel_weighted_gradient(*normalise(xp), ref, w, zeta)[1][0]
        qm = kernel_weighted_gradient(*normalise(xm), ref, w, zeta)[1][0]
        assert abs((qp - qm) / (2 * h) - v1[0, d]) < 1e-7


@pytest.mark.parametrize("periodic", [True, False])
def test_dipole_derivative_equals_bec_times_velocities(quartz_model, quartz_frames, periodic):
    """The pair-wise Ṁ contraction gives Σ_j Z_j v_j without forming Z."""
    frame = quartz_frames[1].copy()
    if not periodic:
        keep = np.linalg.norm(frame.positions - frame.positions[0], axis=1) < 4.5
        frame = frame[keep]
        frame.pbc = False
        frame.cell = None
    v = np.random.default_rng(7).normal(size=(len(frame), 3)) * 0.01
    bec = quartz_model.predict_frame(frame)["bec"]
    expected = np.einsum("jab,jb->a", bec, v)
    got = quartz_model.dipole_derivative(frame, v)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


# -- prediction in blocks of atoms (cost per atom flat with the size of the frame) ------------------

def _blocked_prediction(model, frame, block, monkeypatch, velocities):
    from bornml.descriptors import soap

    monkeypatch.setattr(soap, "ATOM_BLOCK", block)
    return model.predict_frame(frame), model.dipole_derivative(frame, velocities)


def _relative(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize(("zeta", "route"), [(1, "contracted"), (2, "contracted"),
                                             (2, "explicit"), (3, "explicit")])
def test_blocked_prediction_equals_whole_frame(zeta, route, quartz_model, quartz_frames,
                                               monkeypatch):
    """A 576-atom supercell predicted in blocks of 7 atoms (species mixed within a block, block
    boundaries inside pair ranges) and of 64 atoms equals the one-block computation (whole-frame
    arrays) to 1e-12; so does the route that holds x̂ of every atom (``ctx.xhat`` first)."""
    import copy

    model = copy.deepcopy(quartz_model)
    term = model.terms_["charges"]
    term.zeta = zeta
    # weights of one sign and size: the fitted ones (|w| up to ~200, q ~ 1) cancel, which
    # scales every rounding difference by ~1e3 whatever the order of the sums
    term.set_weights(np.random.default_rng(2).uniform(0.5, 1.5, term.n_columns()) / 30)
    if route == "contracted":  # ζ = 2 contracts only with many references: force it
        from bornml.models.kernel import contracted_weights

        term._contracted = {z: contracted_weights(model.references_[z], term.weights[z], zeta)
                            for z in model.species_}
    else:
        term._contracted = {}
    frame = quartz_frames[10].repeat((2, 2, 2))
    v = np.random.default_rng(5).normal(size=(len(frame), 3)) * 0.01
    whole, whole_mdot = _blocked_prediction(model, frame, 10**9, monkeypatch, v)
    for block in (7, 64):
        got, mdot = _blocked_prediction(model, frame, block, monkeypatch, v)
        for key in ("bec", "charges", "asr_residual"):
            assert _relative(got[key], whole[key]) <= 1e-12, (block, key)
        assert _relative(mdot, whole_mdot) <= 1e-12, block
    ctx = model.reference_set_.expand(frame)
    assert not ctx.materialised
    lazy_q, lazy_g = term.charges_and_pair_gradients(ctx, frame)
    ctx.xhat  # noqa: B018 - every atom's x̂ held: the blocks are its rows
    assert ctx.materialised
    q, g = term.charges_and_pair_gradients(ctx, frame)
    assert _relative(lazy_q, q) <= 1e-12
    assert _relative(lazy_g, g) <= 1e-12


def test_frame_context_blocks_are_rows_of_the_whole(quartz_model, quartz_frames, monkeypatch):
    """``ctx.block`` computes the rows of x̂ and the norms that ``ctx.xhat``/``ctx.norms`` hold;
    the context unpacks as (fe, x̂, norms) and can be built from given arrays."""
    from bornml.descriptors import soap
    from bornml.models.kernel import normalise
    from bornml.models.reference_set import FrameContext

    monkeypatch.setattr(soap, "ATOM_BLOCK", 16)
    frame = quartz_frames[3]
    refs = quartz_model.reference_set_
    lazy = refs.expand(frame)
    part = lazy.block(20, 41)
    fe, xhat, norms = lazy
    assert fe is lazy.fe and xhat.shape == (len(frame), refs.n_features)
    np.testing.assert_allclose(part[0], xhat[20:41], rtol=0, atol=1e-15)
    np.testing.assert_allclose(part[1], norms[20:41], rtol=1e-15, atol=0)
    ref_xhat, ref_norms = normalise(soap.power_spectrum(fe.coefficients, refs.settings.max_angular))
    np.testing.assert_array_equal(xhat, ref_xhat)
    np.testing.assert_array_equal(norms, ref_norms)
    given = FrameContext(fe, ref_xhat, ref_norms)
    assert given.materialised and given.xhat is ref_xhat and given[2] is ref_norms


def test_supercell_equals_tiled_cell_in_blocks(quartz_model, quartz_frames, monkeypatch):
    """2×2×2 supercell (576 atoms, 45 blocks of 13) against the tiled cell: Z to 1e-10."""
    from bornml.descriptors import soap

    monkeypatch.setattr(soap, "ATOM_BLOCK", 13)
    assert_supercell_invariant(quartz_model, quartz_frames[10], (2, 2, 2), atol=1e-10)
