"""Many species: compressed species channels, the reference-span route of the dipole term,
memory checked before the work, and non-periodic frames end to end."""

import numpy as np
import pytest
from _structures import SMALL, finite_difference_bec, perturbed_molecule
from ase import Atoms

import bornml
from bornml.descriptors import lambda_soap
from bornml.descriptors.soap import FrameExpansion, SoapSettings, power_spectrum
from bornml.descriptors.species_channels import species_mixing
from bornml.errors import BornDataError, MemoryLimitError
from bornml.memory import parse_bytes
from bornml.models.kernel import normalise

SETTINGS = SoapSettings(cutoff=4.0, max_radial=3, max_angular=3)
SPECIES = (1, 6, 7, 8, 9, 16, 17)  # 7 elements


def halogenated_molecule(seed):
    """A small non-periodic molecule with H, C, N, O, F, S, Cl (random geometry noise)."""
    atoms = perturbed_molecule("CH3CH2OH", seed=seed, scale=0.08)
    numbers = atoms.numbers.copy()
    numbers[[3, 4]] = [9, 17]  # two H become F and Cl
    numbers[[5]] = [7]
    numbers[[6]] = [16]
    atoms.numbers = numbers
    return atoms


def many_species_frames(n, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        atoms = halogenated_molecule(seed + k)
        atoms.arrays["bec"] = rng.normal(size=(len(atoms), 3, 3))
        frames.append(atoms)
    return frames


def test_mixing_identity_up_to_four_species_and_compressed_above():
    assert np.array_equal(species_mixing((1, 8), "auto"), np.eye(2))
    u = species_mixing(SPECIES, "auto")
    assert u.shape == (4, len(SPECIES))
    np.testing.assert_allclose(np.linalg.norm(u, axis=0), 1.0)
    # an element has the same embedding whatever the other species
    np.testing.assert_array_equal(species_mixing((1, 8, 9, 16, 17), 3)[:, 1],
                                  species_mixing((6, 8, 35, 53), 3)[:, 1])
    assert np.array_equal(species_mixing(SPECIES, None), np.eye(len(SPECIES)))


def test_compressed_expansion_is_the_mixed_element_expansion():
    atoms = halogenated_molecule(1)
    basis = SETTINGS.radial_basis()
    u = species_mixing(SPECIES, 3)
    full = FrameExpansion(atoms, SPECIES, SETTINGS, basis)
    mixed = FrameExpansion(atoms, SPECIES, SETTINGS, basis, u)
    np.testing.assert_allclose(mixed.coefficients,
                               np.einsum("cs,isnl->icnl", u, full.coefficients), atol=1e-13)
    d_full = power_spectrum(full.coefficients, SETTINGS.max_angular).shape[1]
    d_mixed = power_spectrum(mixed.coefficients, SETTINGS.max_angular).shape[1]
    assert d_mixed < d_full / 4


def test_compressed_pair_vjp_and_atom_jacobian_match_finite_differences():
    atoms = halogenated_molecule(2)
    basis = SETTINGS.radial_basis()
    u = species_mixing(SPECIES, 3)
    fe = FrameExpansion(atoms, SPECIES, SETTINGS, basis, u)
    adjoint = np.random.default_rng(0).normal(size=fe.coefficients.shape)

    def scalar(a):
        return np.array(np.sum(adjoint * FrameExpansion(a, SPECIES, SETTINGS, basis,
                                                        u).coefficients))

    pair_g = fe.pair_vjp(adjoint)
    analytic = np.zeros((len(atoms), 3))
    np.add.at(analytic, fe.pairs.neighbors, pair_g)
    np.add.at(analytic, fe.pairs.centers, -pair_g)
    numeric = finite_difference_bec(scalar, atoms, 1e-5)  # (N, 3) for a scalar
    np.testing.assert_allclose(analytic, numeric, atol=1e-7 * np.abs(numeric).max())

    def features(a):
        e = FrameExpansion(a, SPECIES, SETTINGS, basis, u)
        xhat, norms = normalise(power_spectrum(e.coefficients, SETTINGS.max_angular))
        return e, xhat, norms, lambda_soap.vector_features(e.coefficients,
                                                           SETTINGS.max_angular) / norms[:, None, None]

    fe, xhat, norms, xvec = features(atoms)
    jac = lambda_soap.atom_jacobian(fe, xvec, 1 / norms, fe.norm_pair_gradients(xhat),
                                    SETTINGS.max_angular)
    species = fe.species_index

    def summed(a):
        x = features(a)[3]
        return np.stack([x[species == s].sum(axis=0) for s in range(len(SPECIES))], axis=1)

    check = [0, 3, 6]
    numeric = finite_difference_bec(summed, atoms, 1e-5, check)  # (n, 3, S, F, 3)
    np.testing.assert_allclose(jac[check].transpose(0, 1, 3, 4, 2), numeric, rtol=0,
                               atol=1e-8 * max(1.0, np.abs(numeric).max()))
    for k in range(len(SPECIES)):  # one species at a time gives the same block
        np.testing.assert_allclose(
            lambda_soap.atom_jacobian(fe, xvec, 1 / norms, fe.norm_pair_gradients(xhat),
                                      SETTINGS.max_angular, k), jac[:, :, :, k], atol=1e-14)


@pytest.mark.parametrize("model_type", ["q", "p", "q+p"])
def test_many_species_molecule_bec_is_derivative_of_dipole(model_type):
    """Seven species, compressed to four channels: Z is still the exact derivative of P."""
    cls = {"q": bornml.MonopoleModel, "p": bornml.DipoleModel,
           "q+p": bornml.CombinedModel}[model_type]
    model = cls(**SMALL, n_sparse=15).fit(many_species_frames(8))
    assert model.species_mixing_.shape == (4, 7)
    atoms = halogenated_molecule(50)

    def dipole(a):
        pred = model.predict_frame(a)
        p = pred["charges"] @ a.positions
        return p + pred["dipoles"].sum(axis=0) if "dipoles" in pred else p

    numeric = finite_difference_bec(dipole, atoms, 1e-5)
    np.testing.assert_allclose(model.predict_frame(atoms)["bec"], numeric, rtol=0, atol=1e-6)


def test_dipole_routes_give_the_same_model():
    """Accumulating in λ=1 feature space and projecting once, or projecting every frame onto
    the reference span, solve the same equations."""
    frames = many_species_frames(6)
    models = {}
    for route in ("features", "references"):
        model = bornml.CombinedModel(**SMALL, n_sparse=8, charge_regularisation=0.1,
                                     species_channels=3)
        model.dipole_route = route
        models[route] = model.fit(frames)
        assert model.dipole_route_ == route
    a, b = (models[r].predict_frame(halogenated_molecule(9)) for r in models)
    np.testing.assert_allclose(a["bec"], b["bec"], atol=1e-8 * np.abs(a["bec"]).max())
    auto = bornml.CombinedModel(**SMALL, n_sparse=8, species_channels=3).fit(frames)
    assert auto.dipole_route_ == "references"  # 7·F feature columns ≫ 3·Σ M_z


def test_saved_compressed_model_predicts_the_same(tmp_path):
    model = bornml.CombinedModel(**SMALL, n_sparse=10).fit(many_species_frames(5))
    model.save(tmp_path / "m.npz")
    loaded = bornml.load_model(tmp_path / "m.npz")
    atoms = halogenated_molecule(7)
    np.testing.assert_array_equal(loaded.predict_frame(atoms)["bec"],
                                  model.predict_frame(atoms)["bec"])


def test_memory_limit_stops_before_the_work():
    frames = many_species_frames(4)
    with pytest.raises(MemoryLimitError, match="n_sparse|species_channels|max_memory"):
        bornml.CombinedModel(**SMALL, n_sparse=10, max_memory="1MB").fit(frames)
    with pytest.raises(MemoryLimitError, match="max_memory"):
        bornml.MonopoleModel(**SMALL, n_sparse=10, max_memory=10_000).fit(frames)
    assert parse_bytes("2 GiB") == 2 ** 31 and parse_bytes("500MB") == 5e8
    with pytest.raises(ValueError):
        parse_bytes("lots")


def test_small_molecules_and_rare_species_end_to_end():
    """No cell, pbc False, 3-atom molecules, a species present in one frame only."""
    rng = np.random.default_rng(3)
    frames = []
    for k in range(6):
        water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        water.positions += rng.normal(scale=0.03, size=(3, 3))
        frames.append(water)
    hcl = Atoms("HCl", positions=[[0, 0, 0], [1.27, 0, 0]])
    frames.append(hcl)  # Cl only here
    for atoms in frames:
        assert not atoms.pbc.any() and atoms.cell.rank == 0
        atoms.arrays["bec"] = rng.normal(size=(len(atoms), 3, 3))
    for cls in (bornml.MonopoleModel, bornml.DipoleModel, bornml.CombinedModel):
        model = cls(**SMALL, n_sparse=5).fit(frames)
        pred = model.predict(frames)
        assert all(np.all(np.isfinite(p["bec"])) for p in pred)
        assert np.abs(pred[-1]["bec"].sum(axis=0)).max() < 1e-10
    nitrogen = Atoms("NH3", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]][:4])
    with pytest.raises(BornDataError, match=r"species \[7\] not in the model"):
        model.predict(nitrogen)


@pytest.mark.parametrize("cls", [bornml.MonopoleModel, bornml.CombinedModel])
def test_molecule_in_a_periodic_box_is_a_molecule(cls):
    """A VASP/QE-style molecule in a 25 Å periodic box: no neighbour pair crosses the cell
    boundary, so Z is the exact derivative of P, equal to the pbc=False result."""
    frames = many_species_frames(6)
    model = cls(**SMALL, n_sparse=10, tikhonov=1e-5, dipole_tikhonov=1e-5,
                charge_regularisation=0.0) if cls is bornml.CombinedModel else cls(
        **SMALL, n_sparse=10, tikhonov=1e-5, charge_regularisation=0.0)
    model.fit(frames)
    free = halogenated_molecule(11)
    boxed = free.copy()
    boxed.set_cell([25.0, 25.0, 25.0])
    boxed.center()
    boxed.pbc = True
    free.positions = boxed.positions
    a, b = model.predict_frame(free), model.predict_frame(boxed)
    np.testing.assert_allclose(b["bec"], a["bec"], rtol=0, atol=1e-10)

    def dipole(atoms):
        pred = model.predict_frame(atoms)
        return pred["charges"] @ atoms.positions + pred.get("dipoles", np.zeros((1, 3))).sum(0)

    np.testing.assert_allclose(b["bec"], finite_difference_bec(dipole, boxed, 1e-5), atol=1e-6)
