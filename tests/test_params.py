"""scikit-learn habits without scikit-learn: :class:`bornml.models.params.ParamsMixin` on a small
dummy estimator, on the MACE model and on the kernel models (``sklearn.base.clone``)."""

import json

import pytest

import bornml
from bornml.models.params import ParamsMixin


class Inner(ParamsMixin):
    def __init__(self, alpha=1.0, kind="a"):
        self.alpha = alpha
        self.kind = kind


class Dummy(ParamsMixin):
    def __init__(self, width=3, label="x", weights=None, inner=None, *args, **kwargs):
        self.width = width
        self.label = label
        self.weights = weights
        self.inner = inner

    def fit(self, data):
        self.mean_ = sum(data) / len(data)
        return self


def test_param_names_come_from_the_signature():
    assert Dummy._get_param_names() == ["inner", "label", "weights", "width"]  # no *args/**kw
    assert Inner._get_param_names() == ["alpha", "kind"]


def test_get_params_returns_exactly_the_constructor_settings():
    model = Dummy(width=5, inner=Inner(alpha=2.0)).fit([1.0, 3.0])
    shallow = model.get_params(deep=False)
    assert set(shallow) == {"width", "label", "weights", "inner"}  # fitted mean_ is not one
    assert shallow["width"] == 5 and shallow["inner"] is model.inner
    deep = model.get_params()  # deep=True is the default, as in scikit-learn
    assert deep == {**shallow, "inner__alpha": 2.0, "inner__kind": "a"}


def test_get_params_round_trip():
    model = Dummy(width=7, label="y", weights=[1, 2], inner=Inner(kind="b"))
    copy = Dummy(**model.get_params(deep=False))
    assert copy.get_params() == model.get_params()
    other = Dummy(inner=Inner()).set_params(**model.get_params(deep=True))
    assert other.get_params(deep=False) == model.get_params(deep=False)
    assert other.inner.kind == "b"


def test_set_params_sets_nested_and_returns_self():
    model = Dummy(inner=Inner())
    assert model.set_params(width=9, inner__alpha=0.5) is model
    assert model.width == 9 and model.inner.alpha == 0.5
    replacement = Inner(alpha=4.0)
    model.set_params(inner=replacement, inner__kind="c")  # the object first, then its params
    assert model.inner is replacement and replacement.kind == "c"


def test_set_params_refuses_unknown_names():
    model = Dummy()
    with pytest.raises(ValueError) as err:
        model.set_params(widht=4)
    message = str(err.value)
    assert "'widht'" in message and "Dummy" in message
    assert all(name in message for name in ("inner", "label", "weights", "width"))
    assert model.width == 3  # nothing was set
    with pytest.raises(ValueError, match="'beta'"):
        Dummy(inner=Inner()).set_params(inner__beta=1.0)


def test_repr_shows_only_settings_that_differ_from_the_defaults():
    assert repr(Dummy()) == "Dummy()"
    assert repr(Dummy(width=4, label="x")) == "Dummy(width=4)"
    assert repr(Dummy(inner=Inner(alpha=2.0))) == "Dummy(inner=Inner(alpha=2.0))"


def test_sklearn_clone_of_the_dummy():
    clone = pytest.importorskip("sklearn.base").clone
    model = Dummy(width=4, weights=[0.1], inner=Inner(alpha=3.0)).fit([2.0])
    copy = clone(model)
    assert copy is not model and not hasattr(copy, "mean_")
    assert copy.get_params(deep=False).keys() == model.get_params(deep=False).keys()
    assert copy.width == 4 and copy.weights == [0.1] and copy.inner.alpha == 3.0
    assert copy.inner is not model.inner  # estimators among the params are cloned too


# -- the MACE model ---------------------------------------------------------------------------

#: TorchScript deprecation notes from e3nn / mace constructors
_QUIET_TORCH = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture
def mace_model():
    pytest.importorskip("mace")
    pytest.importorskip("torch")
    from bornml.models.mace_model import MaceBECModel

    return MaceBECModel(head="p", r_max=4.0, num_channels=8, radial_mlp=(16,), seed=3)


@_QUIET_TORCH
def test_mace_model_params(mace_model):
    from bornml.models.mace_model import MaceBECModel

    params = mace_model.get_params()
    assert set(params) == set(MaceBECModel._get_param_names())
    assert params == mace_model.get_params(deep=False)  # no nested estimators
    assert (params["head"], params["r_max"], params["num_channels"]) == ("p", 4.0, 8)
    assert MaceBECModel(**params).get_params() == params
    json.dumps(mace_model.get_params(deep=False))  # the model file stores them as JSON
    assert mace_model.set_params(num_channels=4, max_epochs=3) is mace_model
    assert (mace_model.num_channels, mace_model.max_epochs) == (4, 3)
    with pytest.raises(ValueError, match="invalid parameter 'cutoff'.*r_max"):
        mace_model.set_params(cutoff=4.0)  # MACE's cutoff is r_max
    assert "r_max=4.0" in repr(mace_model) and "dtype" not in repr(mace_model)


@_QUIET_TORCH
def test_mace_model_clone(mace_model):
    clone = pytest.importorskip("sklearn.base").clone
    mace_model.species_ = (1, 8)  # a fitted attribute must not travel
    copy = clone(mace_model)
    assert copy is not mace_model and copy.get_params() == mace_model.get_params()
    assert not hasattr(copy, "species_")
    with pytest.raises(RuntimeError, match="not fitted"):
        copy.predict_frame(None)


@_QUIET_TORCH
def test_mace_model_file_stores_the_shallow_params(mace_model, tmp_path):
    """serialization writes get_params(deep=False); a tuple setting comes back as a tuple."""
    from bornml.models.serialization import read_archive, write_archive

    mace_model.species_ = (1, 8)
    write_archive(tmp_path / "m.npz", mace_model, {})
    meta, _ = read_archive(tmp_path / "m.npz")
    assert meta["params"] == json.loads(json.dumps(mace_model.get_params(deep=False)))
    assert meta["bornml_version"] == bornml.__version__


# -- the kernel models --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["MonopoleModel", "DipoleModel", "CombinedModel"])
def test_kernel_models_clone_and_set_params(name):
    clone = pytest.importorskip("sklearn.base").clone
    model = getattr(bornml, name)(n_sparse=7)
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    assert copy.set_params(cutoff=4.0) is copy
    assert copy.cutoff == 4.0 and copy.get_params()["cutoff"] == 4.0 and model.cutoff == 5.0
    assert clone(copy).get_params() == copy.get_params()
