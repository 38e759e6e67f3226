"""The kernel estimator: scikit-learn habits, fit once / solve many, cross-validated
regularisation whose fold errors are the errors of real predictions."""

import numpy as np
import pytest
from _structures import SMALL

import bornml
from bornml import keys
from bornml.models.equations import asr_corrected

PRESETS = [bornml.MonopoleModel, bornml.DipoleModel, bornml.CombinedModel]


@pytest.mark.parametrize("cls", PRESETS)
def test_clone_set_params_get_params(cls):
    sklearn_base = pytest.importorskip("sklearn.base")
    model = cls(**SMALL, n_sparse=7, species_channels=3)
    copy = sklearn_base.clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    assert copy.set_params(cutoff=4.0) is copy and copy.cutoff == 4.0 and model.cutoff == 5.0
    with pytest.raises(ValueError, match="invalid parameter 'zeta_p'"):
        model.set_params(zeta_p=2)
    assert "n_sparse=7" in repr(model)


def test_clone_of_a_fitted_model_is_unfitted(quartz_frames):
    sklearn_base = pytest.importorskip("sklearn.base")
    model = bornml.MonopoleModel(**SMALL, n_sparse=10, tikhonov=1e-5,
                                 charge_regularisation=0.0).fit(quartz_frames[:2])
    copy = sklearn_base.clone(model)
    with pytest.raises(RuntimeError, match="not fitted"):
        copy.predict(quartz_frames[0])


@pytest.mark.parametrize("cls", PRESETS)
def test_solve_many_equals_a_fresh_fit(cls, quartz_frames):
    frames = quartz_frames[:3]
    extra = {} if cls is bornml.DipoleModel else {"charge_regularisation": 0.1}
    if cls is bornml.CombinedModel:
        extra["dipole_tikhonov"] = 1e-4
    model = cls(**SMALL, n_sparse=20, tikhonov=1e-6, **extra)
    eqs = model.prepare(frames).accumulate(frames)
    model.set_params(tikhonov=1e-3).solve(eqs)
    fresh = cls(**SMALL, n_sparse=20, tikhonov=1e-3, **extra).fit(frames)
    a, b = model.predict_frame(quartz_frames[5]), fresh.predict_frame(quartz_frames[5])
    np.testing.assert_allclose(a["bec"], b["bec"], rtol=0, atol=1e-9)
    assert model.cv_curve_ == [] and model.regularisation_["tikhonov"] == 1e-3


@pytest.mark.parametrize("cls", [bornml.MonopoleModel, bornml.DipoleModel])
def test_cv_fold_errors_are_prediction_errors(cls, quartz_frames):
    """The fold's squared error from its sums equals the error of a model fitted without
    that fold and predicting its frames (the p model includes its fixed charges)."""
    frames = quartz_frames[:6]
    model = cls(**SMALL, n_sparse=15, tikhonov=1e-5)
    eqs = model.prepare(frames).accumulate(frames, n_folds=3)
    values = model._given_regularisation()
    for fold in range(3):
        weights, fixed = model._solve_weights(eqs, values, exclude=fold)
        start = 0
        for term in model._learnt():
            term.set_weights(weights[start:start + term.n_columns()])
            start += term.n_columns()
        if fixed is not None:
            model.terms_["fixed_charges"].charges = fixed
        held = frames[fold::3]
        direct = sum(float(np.sum((p["bec"] - asr_corrected(keys.bec_of(f))) ** 2))
                     for p, f in zip(model.predict(held), held))
        from_sums, rows = eqs.validation_error([t.name for t in model._learnt()], weights,
                                               fold, fixed)
        assert rows == 9 * sum(len(f) for f in held)
        np.testing.assert_allclose(from_sums, direct, rtol=1e-7)


def test_cross_validation_is_the_default_and_explicit_values_switch_it_off(quartz_frames):
    frames = quartz_frames[:6]
    model = bornml.CombinedModel(**SMALL, n_sparse=15, cv_folds=3).fit(frames)
    assert set(model.regularisation_) == {"tikhonov", "dipole_tikhonov",
                                          "charge_regularisation"}
    best = min(c["cv_rmse"] for c in model.cv_curve_)
    chosen = [c for c in model.cv_curve_
              if all(c[k] == v for k, v in model.regularisation_.items())]
    assert chosen and chosen[0]["cv_rmse"] == pytest.approx(best)
    assert model.get_params()["tikhonov"] is None  # the setting is not overwritten
    fixed = bornml.CombinedModel(**SMALL, n_sparse=15, tikhonov=1e-5, dipole_tikhonov=1e-5,
                                 charge_regularisation=0.0).fit(frames)
    assert fixed.cv_curve_ == []


def test_fit_equations_refuses_other_settings(quartz_frames):
    frames = quartz_frames[:2]
    eqs = bornml.CombinedModel(**SMALL, n_sparse=10).prepare(frames).accumulate(
        frames, n_folds=2)
    with pytest.raises(ValueError, match="n_sparse"):
        bornml.MonopoleModel(**SMALL, n_sparse=11).fit_equations(eqs)
    q = bornml.MonopoleModel(**SMALL, n_sparse=10).fit_equations(eqs)
    assert np.all(np.isfinite(q.predict_frame(frames[0])["bec"]))


def test_one_version_source():
    import importlib.metadata

    from bornml._version import __version__

    assert bornml.__version__ == __version__ == importlib.metadata.version("bornml")


def test_mace_model_clones():
    sklearn_base = pytest.importorskip("sklearn.base")
    pytest.importorskip("mace")
    from bornml.models.mace_model import MaceBECModel

    model = MaceBECModel(head="p", num_channels=8, radial_mlp=(16,))
    copy = sklearn_base.clone(model)
    assert copy.get_params() == model.get_params() and copy.num_channels == 8
    with pytest.raises(ValueError, match="invalid parameter"):
        model.set_params(cutoff=4.0)
