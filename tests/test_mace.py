"""MACE comparator: exactness and symmetries of Z, persistence, training. CPU, tiny models."""

import argparse
import json
import sys

import numpy as np
import pytest

pytest.importorskip("mace")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
torch = pytest.importorskip("torch")

from _structures import finite_difference_bec
from ase import Atoms

from bornml.errors import BornDataError, ModelFileError
from bornml.models.mace_model import (
    MaceBECModel,
    add_mace_cli_options,
    model_from_cli_args,
)
from bornml.models.serialization import load_model

torch.set_num_threads(1)
HEADS = ("q", "p", "q+p")
TINY = dict(r_max=3.2, num_channels=4, max_ell=1, correlation=2, num_bessel=4,
            radial_mlp=(8,), batch_size=2, patience=100, dtype="float64")


def _molecule(rng):
    """Two distorted water molecules (6 atoms, no PBC)."""
    base = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], float)
    pos = np.concatenate([base, base @ np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1.]])
                          + [2.6, 0.4, 0.3]])
    return Atoms("OH2OH2", positions=pos + rng.normal(scale=0.08, size=pos.shape))


def _crystal(rng):
    """A 6-atom oxide-like orthorhombic cell; r_max (3.2 Å) > half of the 4.0 Å axis, so
    several images of one neighbour fall in a sphere."""
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5],
                     [0.25, 0.25, 0.25], [0.75, 0.75, 0.25], [0.25, 0.75, 0.75]])
    cell = np.diag([4.0, 4.3, 4.6])
    atoms = Atoms("HHHOOO", scaled_positions=frac, cell=cell, pbc=True)
    atoms.positions += rng.normal(scale=0.1, size=(6, 3))
    return atoms


def _labelled(atoms, rng):
    """Synthetic Born charges: species charge + a geometry-dependent part + noise."""
    q = np.where(atoms.numbers == 8, -0.8, 0.4)
    z = q[:, None, None] * np.eye(3) + 0.1 * rng.normal(size=(len(atoms), 3, 3))
    z += 0.3 * np.einsum("ja,jb->jab", atoms.positions - atoms.positions.mean(0),
                         atoms.positions - atoms.positions.mean(0)) / 4.0
    atoms.arrays["bec"] = z
    atoms.info["bornml_source"] = "synthetic.extxyz"
    return atoms


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return [_labelled(_molecule(rng) if k % 2 else _crystal(rng), rng) for k in range(6)]


@pytest.fixture(scope="module")
def models(frames):
    return {h: MaceBECModel(head=h, max_epochs=2, **TINY).fit(frames) for h in HEADS}


def _dipole(model, atoms):
    """P = Σ q'_i r_i + Σ p_i of a molecule straight from the network (e·Å)."""
    graph = model._graph(atoms, 0)
    with torch.no_grad():
        q, p = model.network_(graph.species, graph.vectors, graph.edge_index)
    if q is None:
        q = torch.as_tensor(model.fixed_charges_, dtype=torch.float64)[graph.species]
    out = ((q - q.mean())[:, None] * graph.positions).sum(0)
    return (out if p is None else out + p.sum(0)).numpy()


def _finite_difference(model, atoms, h=1e-5):
    return finite_difference_bec(lambda a: _dipole(model, a), atoms, h)


@pytest.mark.parametrize("head", HEADS)
def test_finite_differences_molecule(models, head):
    atoms = _molecule(np.random.default_rng(1))
    model = models[head]
    z = model.predict_frame(atoms)["bec"]
    fd = _finite_difference(model, atoms)
    assert np.abs(z).max() > 0.1
    # measured agreement ~5e-11 (float64, h = 1e-5 Å)
    np.testing.assert_allclose(z, fd, atol=1e-7)


def test_finite_differences_two_layers_molecule(frames):
    molecules = [f for f in frames if not f.pbc.any()]
    model = MaceBECModel(head="q+p", num_interactions=2, max_epochs=1, **TINY).fit(molecules)
    atoms = _molecule(np.random.default_rng(2))
    np.testing.assert_allclose(model.predict_frame(atoms)["bec"],
                               _finite_difference(model, atoms), atol=1e-7)
    with pytest.raises(ValueError, match="num_interactions=1"):
        model.predict_frame(_crystal(np.random.default_rng(2)))


def _rotation(seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("make", [_molecule, _crystal])
def test_rotation_covariance(models, head, make):
    atoms = make(np.random.default_rng(3))
    rot = _rotation(4)
    turned = atoms.copy()
    turned.positions = atoms.positions @ rot.T
    if atoms.pbc.any():
        turned.cell = atoms.cell[:] @ rot.T
    before, after = models[head].predict_frame(atoms), models[head].predict_frame(turned)
    np.testing.assert_allclose(after["bec"], rot @ before["bec"] @ rot.T, atol=1e-9)
    np.testing.assert_allclose(after["charges"], before["charges"], atol=1e-10)
    if "p" in head:
        np.testing.assert_allclose(after["dipoles"], before["dipoles"] @ rot.T, atol=1e-10)
        assert np.abs(before["dipoles"]).max() > 1e-4


@pytest.mark.parametrize("make", [_molecule, _crystal])
def test_translation_and_permutation(models, make):
    atoms = make(np.random.default_rng(5))
    model = models["q+p"]
    ref = model.predict_frame(atoms)
    moved = atoms.copy()
    moved.positions += [1.3, -2.1, 0.7]
    np.testing.assert_allclose(model.predict_frame(moved)["bec"], ref["bec"], atol=1e-10)
    perm = np.random.default_rng(6).permutation(len(atoms))
    out = model.predict_frame(atoms[perm])
    np.testing.assert_allclose(out["bec"], ref["bec"][perm], atol=1e-10)
    np.testing.assert_allclose(out["dipoles"], ref["dipoles"][perm], atol=1e-10)


@pytest.mark.parametrize("head", HEADS)
def test_supercell_invariance(models, head):
    atoms = _crystal(np.random.default_rng(7))
    model = models[head]
    cell = model.predict_frame(atoms)
    big = model.predict_frame(atoms.repeat((2, 1, 1)))
    np.testing.assert_allclose(big["bec"], np.concatenate([cell["bec"]] * 2), atol=1e-9)
    np.testing.assert_allclose(big["charges"], np.concatenate([cell["charges"]] * 2),
                               atol=1e-10)
    # the image-resolved pair terms matter here: Z is not just the local charge
    assert np.abs(cell["bec"] - cell["charges"][:, None, None] * np.eye(3)).max() > 1e-3


@pytest.mark.parametrize("head", HEADS)
def test_sum_rule_and_neutrality(models, head):
    rng = np.random.default_rng(8)
    for atoms in (_molecule(rng), _crystal(rng)):
        out = models[head].predict_frame(atoms)
        np.testing.assert_allclose(out["bec"].sum(axis=0), 0.0, atol=1e-10)
        assert abs(out["charges"].sum()) < 1e-10
        if not atoms.pbc.any():  # exact derivative of a neutral P: nothing to project
            np.testing.assert_allclose(out["asr_residual"], 0.0, atol=1e-10)


def test_dipole_derivative_matches_bec(models):
    atoms = _crystal(np.random.default_rng(9))
    v = np.random.default_rng(10).normal(size=(len(atoms), 3))
    model = models["q+p"]
    expect = np.einsum("jab,jb->a", model.predict_frame(atoms)["bec"], v)
    np.testing.assert_allclose(model.dipole_derivative(atoms, v), expect, atol=1e-12)


@pytest.mark.parametrize("head", HEADS)
def test_save_load_round_trip(models, frames, head, tmp_path):
    path = tmp_path / f"mace-{head}.npz"
    models[head].save(path)
    loaded = load_model(path)
    assert loaded.model_type == f"mace-{head}"
    assert loaded.species_ == models[head].species_
    for frame in frames[:2]:
        a, b = models[head].predict_frame(frame), loaded.predict_frame(frame)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def _rewrite_metadata(src, dst, change):
    data = dict(np.load(src))
    meta = json.loads(str(data["metadata"]))
    change(meta)
    data["metadata"] = np.array(json.dumps(meta))
    np.savez(dst, **data)


def test_foreign_files_rejected(models, tmp_path):
    good = tmp_path / "good.npz"
    models["q"].save(good)
    old = tmp_path / "old.npz"
    _rewrite_metadata(good, old, lambda m: m.update(format_version=99))
    with pytest.raises(ModelFileError, match="version"):
        load_model(old)
    wrong = tmp_path / "wrong.npz"
    _rewrite_metadata(good, wrong, lambda m: m.update(model_type="mace-p"))
    with pytest.raises(ModelFileError, match="does not match"):
        load_model(wrong)
    shape = tmp_path / "shape.npz"
    _rewrite_metadata(good, shape, lambda m: m["params"].update(num_channels=5))
    with pytest.raises(ModelFileError):
        load_model(shape)


def test_unknown_species(models):
    atoms = _molecule(np.random.default_rng(11))
    atoms.numbers[0] = 9
    atoms.info["bornml_source"] = "elsewhere.xyz"
    with pytest.raises(BornDataError, match="elsewhere.xyz") as err:
        models["q"].predict_frame(atoms)
    assert err.value.key == "numbers"


def test_training_reduces_error_and_is_deterministic(frames):
    # learnable labels: Born charges of another (teacher) network with a strong geometry term
    teacher = MaceBECModel(head="q+p", max_epochs=1, **dict(TINY, seed=9)).fit(frames)
    with torch.no_grad():
        teacher.network_.q_scale.mul_(5.0)
        teacher.network_.p_scale.mul_(5.0)
    labelled = []
    for frame in frames:
        frame = frame.copy()
        frame.arrays["bec"] = teacher.predict_frame(frame)["bec"]
        labelled.append(frame)
    settings = dict(TINY, head="q+p", max_epochs=8, learning_rate=2e-2, seed=3)
    first = MaceBECModel(**settings).fit(labelled)
    history = first.training_summary_["history"]
    assert history[-1]["train_rmse"] < 0.7 * history[0]["train_rmse"]
    assert first.training_summary_["n_validation_frames"] == 1
    again = MaceBECModel(**settings).fit(labelled)
    other = MaceBECModel(**dict(settings, seed=4)).fit(labelled)
    a, b, c = (m.predict_frame(frames[0])["bec"] for m in (first, again, other))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-6


def test_cli_hooks():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    add_mace_cli_options(parser.add_argument_group("MACE"))
    args = parser.parse_args(["--r-max", "4.5", "--max-epochs", "7", "--seed", "2",
                              "--float32", "--no-progress", "--mace-channels", "8"])
    model = model_from_cli_args("mace-q+p", args)
    assert model.model_type == "mace-q+p"
    assert (model.r_max, model.max_epochs, model.seed, model.dtype, model.num_channels,
            model.progress) == (4.5, 7, 2, "float32", 8, False)
    assert model_from_cli_args("p", args).model_type == "mace-p"


def test_missing_torch_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "mace", None)
    monkeypatch.delitem(sys.modules, "bornml.models.mace_model")
    with pytest.raises(ImportError, match="pip install .*bornml\\[mace\\]"):
        import bornml.models.mace_model  # noqa: F401
