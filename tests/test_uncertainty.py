"""Predictive uncertainty of the kernel models, extrapolation scores and batch selection
(:mod:`bornml.models.posterior`, :mod:`bornml.models.selection`)."""

import numpy as np
import pytest

import bornml
from bornml import keys
from bornml.models import sampled_uncertainty as su
from bornml.models.equations import asr_corrected
from bornml.models.posterior import sampled_uncertainty, weight_design
from bornml.models.selection import select_frames

SMALL = dict(n_sparse=30, max_radial=4, max_angular=3)


def _q(**kw):
    settings = dict(SMALL, zeta=2, tikhonov=1e-3, charge_regularisation=0.0)
    settings.update(kw)
    return bornml.MonopoleModel(**settings)


@pytest.fixture(scope="module")
def fitted(quartz_frames):
    return _q().fit(quartz_frames[:4])


def _design(model, frame):
    return weight_design(model, model.reference_set_.expand(frame), frame)[0]


def test_posterior_matches_brute_force_bayesian_regression(quartz_frames):
    """Independent Bayesian linear regression on the full design matrix: prior
    w ~ N(0, σ²/(ω s) I), noise σ² from the residuals with γ effective parameters."""
    train = quartz_frames[:3]
    # μ = 0: plain ridge regression (the sum-rule rows are one more block of A_reg, tested in
    # test_sum_rule.py)
    model = _q(n_sparse=8, regulariser="identity", tikhonov=1e-2, sum_rule_weight=0.0).fit(train)
    phi = np.concatenate([_design(model, f) for f in train])
    z = np.concatenate([asr_corrected(keys.bec_of(f)).reshape(-1) for f in train])
    ata = phi.T @ phi
    precision = ata + 1e-2 * np.trace(ata) / len(ata) * np.eye(len(ata))
    cov = np.linalg.inv(precision)
    mean = cov @ phi.T @ z
    weights = np.concatenate([model.weights_[z] for z in model.species_])
    np.testing.assert_allclose(weights, mean, rtol=1e-6, atol=1e-9)
    gamma = np.trace(cov @ ata)
    sigma2 = np.sum((phi @ mean - z) ** 2) / (len(z) - gamma)
    assert model.posterior_.noise_variance == pytest.approx(sigma2, rel=1e-6)
    test = quartz_frames[20]
    phi_t = _design(model, test)
    expected = np.sqrt(sigma2 * np.einsum("ij,jk,ik->i", phi_t, cov, phi_t))
    got = model.predict(test, return_std=True, uncertainty="exact")
    np.testing.assert_allclose(got[keys.BEC_STD].reshape(-1), expected, rtol=1e-6)
    # the mean prediction is Φ w (the design is the prediction's linearisation)
    np.testing.assert_allclose(got[keys.BEC].reshape(-1), phi_t @ mean, atol=1e-8)


def test_sampled_route_agrees_with_exact(fitted, quartz_frames):
    exact = fitted.predict(quartz_frames[25], return_std=True, uncertainty="exact")
    sampled = sampled_uncertainty(fitted, quartz_frames[25], n_samples=400)
    ratio = sampled[keys.BEC_STD] / exact[keys.BEC_STD]
    assert abs(np.median(ratio) - 1) < 0.05
    assert sampled[keys.UNCERTAINTY_SCORE] == pytest.approx(exact[keys.UNCERTAINTY_SCORE],
                                                            rel=0.08)


def _molecule_model(kind, **kw):
    from _structures import SMALL as MOLECULE_SOAP

    settings = dict(MOLECULE_SOAP, n_sparse=12, tikhonov=1e-3, **kw)
    if kind == "q":
        return bornml.MonopoleModel(**settings, charge_regularisation=0.0)
    if kind == "p":
        return bornml.DipoleModel(**settings)
    return bornml.CombinedModel(**settings, dipole_tikhonov=1e-3, charge_regularisation=0.1)


def _assert_batched_equals_loop(model, frame, n_samples=7):
    """Both routes are linear maps of the weight deviations: compared on unit-scale ones
    (posterior draws can be 1e5× larger than the Z they cause, and their rounding with it)."""
    n = len(model.posterior_.factor)
    dw = np.random.default_rng(3).standard_normal((n, n_samples))
    ctx = model.reference_set_.expand(frame)
    bec, charges = su.deviations(model, ctx, frame, dw)
    bec_loop, charges_loop = su.deviations(model, ctx, frame, dw, batched=False)
    assert bec.shape == (len(frame), 3, 3, n_samples) and np.abs(bec).max() > 0
    np.testing.assert_allclose(bec, bec_loop, rtol=0, atol=1e-12 * np.abs(bec_loop).max())
    np.testing.assert_allclose(charges, charges_loop, rtol=0,
                               atol=1e-12 * max(np.abs(charges_loop).max(), 1e-300))


@pytest.mark.parametrize("zeta", [1, 2, 3])
def test_batched_route_equals_per_sample_loop_crystal(zeta, quartz_frames, monkeypatch):
    """Same draws through the batched adjoint route and through one copied term per draw (ζ
    = 1: one shared feature vector per draw; ζ ≥ 2: per-atom ones, here in several blocks of
    atoms and several chunks of draws)."""
    monkeypatch.setattr(su, "BLOCK_BYTES", 50_000)  # blocks of a few atoms
    monkeypatch.setattr(su, "CHUNK_BYTES", 8 * 3 * 20_000)  # a few draws per chunk
    model = _q(zeta=zeta).fit(quartz_frames[:3])
    _assert_batched_equals_loop(model, quartz_frames[28])


@pytest.mark.parametrize("kind", ["q", "p", "q+p"])
def test_batched_route_equals_per_sample_loop_molecules(kind, monkeypatch):
    """Non-periodic frames (the exact-derivative rows of the assembly), three species, a frame
    without carbon (absent species), species channels mixed (C = 2 < S = 3), atom blocks of
    mixed species."""
    from _structures import perturbed_molecule, synthetic_molecule_frames

    monkeypatch.setattr(su, "BLOCK_BYTES", 20_000)

    for channels in (None, 2):
        model = _molecule_model(kind, species_channels=channels)
        model.fit(synthetic_molecule_frames())
        for frame in (perturbed_molecule("CH3CH2OH", seed=11), perturbed_molecule("H2O", 12)):
            _assert_batched_equals_loop(model, frame)


def test_compiled_dipole_adjoints_of_many_draws_equal_one_draw_at_a_time():
    """The sampled route's per-atom kernel (K weight vectors per species, draws innermost)
    against the prediction's kernel called once per draw: dipoles and normalised adjoints."""
    from bornml.descriptors._kernels import vector_dipole_adjoints_many
    from bornml.descriptors.lambda_soap import dipoles_and_adjoints, sparse_couplings

    rng = np.random.default_rng(5)
    n_atoms, n_ch, n_rad, max_angular, n_draws = 5, 2, 3, 3, 4
    lm, sn = (max_angular + 1) ** 2, n_ch * n_rad
    coef = rng.standard_normal((n_atoms, n_ch, n_rad, lm))
    species = np.array([0, 1, 0, 0, 1])
    u = rng.standard_normal((2, max_angular * sn * sn, n_draws))
    coef_t = np.ascontiguousarray(coef.reshape(n_atoms, sn, lm).transpose(0, 2, 1))
    blocks = u.reshape(2, max_angular, sn, sn, n_draws)  # U_l[α, β, k]
    swapped = np.ascontiguousarray(blocks.transpose(0, 1, 3, 2, 4))
    dipoles, adjoints = vector_dipole_adjoints_many(
        coef_t, blocks.reshape(2, max_angular, sn, -1), swapped.reshape(2, max_angular, sn, -1),
        species, *sparse_couplings(max_angular), n_rad)
    for k in range(n_draws):
        p, adj = dipoles_and_adjoints(coef, u[..., k], species, max_angular)  # (N, C, LM, 3, n)
        np.testing.assert_allclose(dipoles[..., k], p, rtol=0, atol=1e-12 * np.abs(p).max())
        got = adjoints[..., k].transpose(0, 1, 2, 4, 3)  # [i, γ, lm, a, n]
        np.testing.assert_allclose(got, adj, rtol=0, atol=1e-12 * np.abs(adj).max())


@pytest.mark.parametrize("kind", ["q", "q+p"])
def test_sampled_std_converges_to_exact(kind, quartz_frames):
    """K = 4000 draws: every std within 5 of its sampling errors 1/sqrt(2K) of the exact
    one (the variance is estimated about the known mean), the score within 1.5 %."""
    if kind == "q":
        model = _q(n_sparse=10).fit(quartz_frames[:2])
    else:
        model = bornml.CombinedModel(**dict(SMALL, n_sparse=10), tikhonov=1e-3,
                                     dipole_tikhonov=1e-3, charge_regularisation=0.1)
        model.fit(quartz_frames[:2])
    frame = quartz_frames[27]
    n_samples = 4000
    exact = model.predict(frame, return_std=True, uncertainty="exact")
    sampled = sampled_uncertainty(model, frame, n_samples=n_samples, seed=1)
    tolerance = 5 / np.sqrt(2 * n_samples)
    for key in (keys.BEC_STD, keys.CHARGES_STD):
        ratio = sampled[key] / exact[key]
        assert np.max(np.abs(ratio - 1)) < tolerance, key
    assert sampled[keys.UNCERTAINTY_SCORE] == pytest.approx(exact[keys.UNCERTAINTY_SCORE],
                                                            rel=0.015)


def test_default_route_is_sampled_and_exact_is_selectable(fitted, quartz_frames):
    frame = quartz_frames[25]
    default = fitted.predict(frame, return_std=True)
    sampled = sampled_uncertainty(fitted, frame, n_samples=su.DEFAULT_SAMPLES,
                                  seed=su.DEFAULT_SEED)
    exact = fitted.predict(frame, return_std=True, uncertainty="exact")
    np.testing.assert_array_equal(default[keys.BEC_STD], sampled[keys.BEC_STD])
    assert not np.allclose(default[keys.BEC_STD], exact[keys.BEC_STD], rtol=1e-3)
    np.testing.assert_array_equal(default[keys.BEC], fitted.predict(frame)[keys.BEC])
    # the same draws for every frame: a list gives what one frame at a time gives
    both = fitted.predict([quartz_frames[25], quartz_frames[26]], return_std=True)
    np.testing.assert_array_equal(both[0][keys.BEC_STD], default[keys.BEC_STD])
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        fitted.predict(frame, return_std=True, uncertainty="fast")


def test_std_vanishes_on_training_frames_without_noise(quartz_frames):
    """Labels the model can represent exactly (another fit's predictions on the same frames,
    so the same references) with ω → 0: σ and the std on the training frames → 0."""
    train = [f.copy() for f in quartz_frames[:3]]
    noisy = _q(tikhonov=1e-3, sum_rule_weight=0.0).fit(train)
    noisy_std = max(np.max(p[keys.BEC_STD]) for p in noisy.predict(train, return_std=True))
    for frame, pred in zip(train, noisy.predict(train)):
        keys.set_bec(frame, pred[keys.BEC])
    exact = _q(tikhonov=1e-12, sum_rule_weight=0.0).fit(train)  # labels need not conserve Q
    assert exact.posterior_.noise_std < 1e-5 * noisy.posterior_.noise_std
    exact_std = max(np.max(p[keys.BEC_STD]) for p in exact.predict(train, return_std=True))
    assert exact_std < 1e-5 * noisy_std


def test_far_frame_scores_above_training(fitted, quartz_frames):
    far = quartz_frames[5].copy()
    far.set_cell(far.cell * 0.85, scale_atoms=True)
    far.rattle(0.15, seed=1)
    train_scores = [p[keys.UNCERTAINTY_SCORE] for p in
                    fitted.predict(quartz_frames[:4], return_std=True)]
    score = fitted.predict(far, return_std=True)[keys.UNCERTAINTY_SCORE]
    assert score > 2 * max(train_scores)
    assert score > fitted.posterior_.threshold
    assert fitted.posterior_.threshold > max(train_scores)  # left-out scores exceed in-sample


def test_batch_selection_picks_a_duplicate_once(fitted, quartz_frames):
    """The most uncertain frame three times in the pool: a batch of two takes it once (the
    posterior is conditioned on the first pick before the second)."""
    pool = []
    for k, (scale, rattle) in enumerate([(1.0, 0), (0.97, 0), (1.03, 0), (1.0, 0.08)]):
        frame = quartz_frames[8 + 4 * k].copy()
        frame.set_cell(frame.cell * scale, scale_atoms=True)
        if rattle:
            frame.rattle(rattle, seed=k)
        pool.append(frame)
    top = int(np.argmax(select_frames(fitted, pool, 1)[2]))
    pool += [pool[top].copy(), pool[top].copy()]
    picked, scores, initial = select_frames(fitted, pool, 2)
    copies = {top, len(pool) - 2, len(pool) - 1}
    assert picked[0] in copies
    assert picked[1] not in copies
    assert scores[0] == pytest.approx(initial.max(), rel=1e-9)
    assert scores[1] < scores[0]


def test_posterior_save_load_round_trip(fitted, quartz_frames, tmp_path):
    path = tmp_path / "q.npz"
    fitted.save(path)
    loaded = bornml.load_model(path)
    a = fitted.predict(quartz_frames[10], return_std=True)
    b = loaded.predict(quartz_frames[10], return_std=True)
    for key in (keys.BEC_STD, keys.CHARGES_STD, keys.BEC):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-12, atol=1e-14)
    assert loaded.posterior_.threshold == fitted.posterior_.threshold
    assert loaded.posterior_.noise_variance == fitted.posterior_.noise_variance


@pytest.mark.parametrize("kind", ["p", "q+p"])
def test_dipole_models_have_uncertainties(kind, quartz_frames, tmp_path):
    if kind == "p":
        model = bornml.DipoleModel(**SMALL, tikhonov=1e-3)
    else:
        model = bornml.CombinedModel(**SMALL, tikhonov=1e-3, dipole_tikhonov=1e-3,
                                     charge_regularisation=0.1)
    model.fit(quartz_frames[:3])
    pred = model.predict(quartz_frames[20], return_std=True, uncertainty="exact")
    assert pred[keys.BEC_STD].shape == (72, 3, 3) and np.all(pred[keys.BEC_STD] > 0)
    assert (np.all(pred[keys.CHARGES_STD] == 0) if kind == "p"
            else np.all(pred[keys.CHARGES_STD] > 0))
    sampled = sampled_uncertainty(model, quartz_frames[20], n_samples=300)
    assert abs(np.median(sampled[keys.BEC_STD] / pred[keys.BEC_STD]) - 1) < 0.06
    model.save(tmp_path / "m.npz")
    loaded = bornml.load_model(tmp_path / "m.npz")
    again = loaded.predict(quartz_frames[20], return_std=True, uncertainty="exact")
    np.testing.assert_allclose(again[keys.BEC_STD], pred[keys.BEC_STD], rtol=1e-10)


def test_cli_predict_uncertainty_and_select(fitted, quartz_frames, tmp_path, capsys):
    from bornml.cli import main

    model = tmp_path / "q.npz"
    fitted.save(model)
    far = quartz_frames[5].copy()
    far.set_cell(far.cell * 0.85, scale_atoms=True)
    pool = tmp_path / "pool.extxyz"
    bornml.write_frames(pool, quartz_frames[10:14] + [far, far.copy()])
    out = tmp_path / "pred.extxyz"
    assert main(["predict", str(model), str(pool), "-o", str(out), "--uncertainty",
                 "--no-progress"]) == 0
    assert "lie outside the training data" in capsys.readouterr().err  # the far frames
    frames = bornml.read_frames(out, require_bec=False)
    assert frames[4].arrays[keys.BEC_STD].shape == (72, 9)
    assert frames[4].info[keys.EXTRAPOLATING] and frames[4].info[keys.UNCERTAINTY_SCORE] > 0
    picked = tmp_path / "pick.extxyz"
    assert main(["select", str(pool), "--model", str(model), "--n", "2", "-o", str(picked),
                 "--no-progress"]) == 0
    chosen = [f.info[keys.POOL_INDEX] for f in bornml.read_frames(picked, require_bec=False)]
    assert chosen[0] in (4, 5) and chosen[1] not in (4, 5)  # the far frame once
    assert keys.BEC not in bornml.read_frames(picked, require_bec=False)[0].arrays
    indices = np.loadtxt(tmp_path / "pick_indices.txt")
    assert indices[:, 0].astype(int).tolist() == chosen


def test_cli_predict_scores_every_nth_frame_by_default(fitted, quartz_frames, tmp_path, capsys):
    """Without --uncertainty, predict checks every --score-every-th frame and names the flagged
    frame by its index in the file."""
    from bornml.cli import main

    model = tmp_path / "q.npz"
    fitted.save(model)
    far = quartz_frames[5].copy()
    far.set_cell(far.cell * 0.85, scale_atoms=True)
    pool = tmp_path / "pool.extxyz"
    bornml.write_frames(pool, quartz_frames[10:14] + [far])  # the far frame is frame 4
    out = tmp_path / "pred.extxyz"
    assert main(["predict", str(model), str(pool), "-o", str(out), "--score-every", "2",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "1 of 3 scored frames" in err and "frame 4" in err
    assert keys.BEC_STD not in bornml.read_frames(out, require_bec=False)[0].arrays
    assert main(["predict", str(model), str(pool), "-o", str(out), "--score-every", "3",
                 "--no-progress"]) == 0  # frames 0 and 3: the far frame is not checked
    assert "outside" not in capsys.readouterr().err


def test_cli_predict_uncertainty_method(fitted, quartz_frames, tmp_path):
    """--uncertainty writes the sampled std by default and the exact one with
    --uncertainty-method exact; the ir scorer uses the sampled score."""
    from bornml.cli import main
    from bornml.extrapolation import frame_score

    model = tmp_path / "q.npz"
    fitted.save(model)
    pool = tmp_path / "pool.extxyz"
    bornml.write_frames(pool, quartz_frames[10:12])
    for method in ("sampled", "exact"):
        out = tmp_path / f"{method}.extxyz"
        extra = [] if method == "sampled" else ["--uncertainty-method", "exact"]
        assert main(["predict", str(model), str(pool), "-o", str(out), "--uncertainty",
                     "--no-progress", *extra]) == 0
        written = bornml.read_frames(out, require_bec=False)[1]
        expected = fitted.predict(quartz_frames[11], return_std=True, uncertainty=method)
        np.testing.assert_allclose(written.arrays[keys.BEC_STD],
                                   expected[keys.BEC_STD].reshape(-1, 9), rtol=1e-6)
        assert frame_score(fitted, quartz_frames[11], method=method) == pytest.approx(
            expected[keys.UNCERTAINTY_SCORE], rel=1e-12)
