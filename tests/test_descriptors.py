"""Tests of bornml.descriptors: neighbour images, radial spline, density expansion (against
featomic), power spectrum and the exact derivatives used by the models (against finite
differences and the materialising reference route)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.geometry import find_mic

import bornml
from bornml.demo import shipped_data_path
from bornml.descriptors.neighbors import neighbor_list
from bornml.descriptors.radial import shifted_cosine
from bornml.descriptors.soap import (
    FrameExpansion,
    SoapSettings,
    power_spectrum,
    power_spectrum_pair_gradients,
    power_spectrum_vjp,
)

# one small set of hyper-parameters for the whole module (the radial basis is built once)
SETTINGS = SoapSettings(cutoff=5.0, max_radial=4, max_angular=3, atomic_width=0.3,
                        cutoff_width=0.5)


# -- fixtures and helpers ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def radial_basis():
    return SETTINGS.radial_basis()


@pytest.fixture(scope="module")
def quartz_frame():
    return bornml.read_frames(shipped_data_path(), index="0")[0]


def quartz_cluster(frame, radius, centre=0):
    """Non-periodic cluster: the atoms within ``radius`` Å (minimum image) of atom ``centre``."""
    d, dist = find_mic(frame.positions - frame.positions[centre], frame.cell, pbc=True)
    keep = dist < radius
    return Atoms(numbers=frame.numbers[keep], positions=frame.positions[centre] + d[keep],
                 pbc=False)


def perturbed_molecule(name, seed, scale=0.1):
    atoms = molecule(name)
    atoms.positions += np.random.default_rng(seed).normal(scale=scale, size=atoms.positions.shape)
    atoms.pbc = False
    return atoms


def random_rotation(rng, proper=True):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    return q


def species_of(atoms):
    return tuple(sorted(set(int(z) for z in atoms.numbers)))


def expansion(atoms, radial_basis, species=None):
    return FrameExpansion(atoms, species or species_of(atoms), SETTINGS, radial_basis)


def cell_heights(cell):
    cell = np.asarray(cell)
    vol = abs(np.linalg.det(cell))
    return np.array([vol / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
                     for k in range(3)])


# -- density expansion against featomic ----------------------------------------------------------

def featomic_dense(atoms, species, radial_basis):
    """featomic's SphericalExpansion in bornml's layout (N, S, n, lm)."""
    import featomic

    calc = featomic.SphericalExpansion(**radial_basis.featomic_hypers(SETTINGS.cutoff_width))
    tensor = calc.compute(atoms)
    L, N = SETTINGS.max_angular, SETTINGS.max_radial + 1
    out = np.zeros((len(atoms), len(species), N, (L + 1) ** 2))
    seen = np.zeros(out.shape, dtype=bool)
    for key, block in tensor.items():
        lam, centre, neigh = int(key["o3_lambda"]), int(key["center_type"]), int(
            key["neighbor_type"])
        atom = np.asarray(block.samples.column("atom"))
        assert np.all(atoms.numbers[atom] == centre)
        mu = np.asarray(block.components[0].column("o3_mu"))
        n = np.asarray(block.properties.column("n"))
        s = species.index(neigh)
        values = np.asarray(block.values)  # (samples, mu, n)
        idx = np.ix_(atom, [s], n, lam * lam + lam + mu)
        out[idx] = values.transpose(0, 2, 1)[:, None]
        seen[idx] = True
    return out, seen


@pytest.mark.parametrize("system", ["quartz", "molecule"])
def test_expansion_matches_featomic(system, quartz_frame, radial_basis):
    if system == "quartz":
        atoms = quartz_frame
        assert atoms.pbc.all()
    else:
        atoms = perturbed_molecule("CH3CH2OH", seed=1)
    species = species_of(atoms)
    ours = expansion(atoms, radial_basis, species).coefficients
    theirs, seen = featomic_dense(atoms, species, radial_basis)
    assert ours.shape == theirs.shape
    assert seen.any() and np.abs(theirs).max() > 0.1  # a real comparison, not zeros vs zeros
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)


def test_expansion_species_order_is_respected(radial_basis):
    """The neighbour-species axis follows the ``species`` argument, whatever its order."""
    atoms = perturbed_molecule("CH3OH", seed=2)
    a = expansion(atoms, radial_basis, (1, 6, 8)).coefficients
    b = expansion(atoms, radial_basis, (8, 1, 6)).coefficients
    np.testing.assert_array_equal(a[:, [0, 1, 2]], b[:, [1, 2, 0]])
    # a species absent from the frame gets an all-zero channel
    c = expansion(atoms, radial_basis, (1, 6, 7, 8)).coefficients
    assert np.all(c[:, 2] == 0)
    np.testing.assert_allclose(c[:, [0, 1, 3]], a, rtol=0, atol=1e-14)


# -- derivatives of the expansion ------------------------------------------------------------------

def position_gradient(fe, pair_grad):
    """∂F/∂r_k = Σ_{p: j_p = k} g_p − Σ_{p: i_p = k} g_p (d_p = r_j + T − r_i)."""
    out = np.zeros((fe.n_atoms, 3))
    np.add.at(out, fe.pairs.neighbors, pair_grad)
    np.add.at(out, fe.pairs.centers, -pair_grad)
    return out


def finite_difference_gradient(atoms, scalar, atom_indices, h=1e-5):
    out = np.zeros((len(atom_indices), 3))
    for row, k in enumerate(atom_indices):
        for b in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[k, b] += h
            minus.positions[k, b] -= h
            out[row, b] = (scalar(plus) - scalar(minus)) / (2 * h)
    return out


@pytest.mark.parametrize("system", ["cluster", "periodic"])
def test_pair_vjp_matches_finite_differences(system, quartz_frame, radial_basis):
    if system == "cluster":
        # cluster of diameter 9 Å > cutoff 5 Å: pairs on both sides of the cut-off and inside
        # the smoothing shell
        atoms = quartz_cluster(quartz_frame, 4.5)
        assert not atoms.pbc.any() and 15 < len(atoms) < 60
        check = np.arange(len(atoms))
    else:
        atoms = quartz_frame
        check = np.array([0, 5, 40, 71])  # O and Si atoms; every image moves with its atom
    species = species_of(atoms)
    fe = expansion(atoms, radial_basis, species)
    assert np.any(fe.pairs.distances > SETTINGS.cutoff - SETTINGS.cutoff_width)
    adjoint = np.random.default_rng(3).normal(size=fe.coefficients.shape)

    def scalar(a):
        return float(np.sum(adjoint * expansion(a, radial_basis, species).coefficients))

    analytic = position_gradient(fe, fe.pair_vjp(adjoint))[check]
    numeric = finite_difference_gradient(atoms, scalar, check)
    scale = np.abs(numeric).max()
    assert scale > 1.0
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-7 * scale)


def test_pair_vjp_is_per_pair_jacobian_contraction(quartz_frame, radial_basis):
    """pair_vjp == Σ adjoint[i_p, s_p] · pair_jacobian_subset (the materialised Jacobian)."""
    fe = expansion(quartz_frame, radial_basis)
    adjoint = np.random.default_rng(4).normal(size=fe.coefficients.shape)
    pairs = np.arange(0, len(fe.pairs.centers), 7)
    jac = fe.pair_jacobian_subset(pairs)  # (n, N, LM, 3)
    spec = fe.species_index[fe.pairs.neighbors[pairs]]
    expected = np.einsum("pnl,pnlx->px", adjoint[fe.pairs.centers[pairs], spec], jac)
    np.testing.assert_allclose(fe.pair_vjp(adjoint)[pairs], expected, rtol=1e-10,
                               atol=1e-12 * np.abs(expected).max())


# -- power spectrum --------------------------------------------------------------------------------

def test_power_spectrum_vjp_matches_finite_differences():
    rng = np.random.default_rng(5)
    L = 3
    c = rng.normal(size=(3, 2, 5, (L + 1) ** 2))
    v = rng.normal(size=power_spectrum(c, L).shape)
    analytic = power_spectrum_vjp(c, v, L)
    numeric = np.zeros_like(c)
    h = 1e-4  # v·x is quadratic in c: central differences are exact up to rounding
    for idx in np.ndindex(c.shape):
        plus, minus = c.copy(), c.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (np.sum(v * power_spectrum(plus, L))
                        - np.sum(v * power_spectrum(minus, L))) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-8, atol=1e-9 * np.abs(numeric).max())


def test_power_spectrum_definition():
    """x_i · x_k = Σ_l <P_i^l, P_k^l>_F with P^l = C^l C^lᵀ / sqrt(2l+1)."""
    rng = np.random.default_rng(6)
    L = 2
    c = rng.normal(size=(2, 2, 3, (L + 1) ** 2))
    x = power_spectrum(c, L)
    expected = 0.0
    start = 0
    for l in range(L + 1):
        block = c.reshape(2, 6, -1)[:, :, start:start + 2 * l + 1]
        start += 2 * l + 1
        p = block @ block.transpose(0, 2, 1) / np.sqrt(2 * l + 1)
        expected += np.sum(p[0] * p[1])
    assert x.shape == (2, (L + 1) * 6 * 7 // 2)
    np.testing.assert_allclose(x[0] @ x[1], expected, rtol=1e-12)


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "improper-rotation"])
def test_power_spectrum_rotation_invariance(proper, radial_basis):
    atoms = perturbed_molecule("CH3CH2OH", seed=7)
    species = species_of(atoms)
    x = power_spectrum(expansion(atoms, radial_basis, species).coefficients,
                       SETTINGS.max_angular)
    rotated = atoms.copy()
    rot = random_rotation(np.random.default_rng(8), proper=proper)
    rotated.positions = (atoms.positions - atoms.positions.mean(0)) @ rot.T + [1.0, -2.0, 0.5]
    c_rot = expansion(rotated, radial_basis, species).coefficients
    x_rot = power_spectrum(c_rot, SETTINGS.max_angular)
    assert np.abs(x).max() > 0.1
    np.testing.assert_allclose(x_rot, x, rtol=0, atol=1e-10)
    # the coefficients themselves are not invariant (otherwise the test would be empty)
    assert np.abs(c_rot - expansion(atoms, radial_basis, species).coefficients).max() > 1e-3


def test_power_spectrum_permutation_equivariance(quartz_frame, radial_basis):
    perm = np.random.default_rng(9).permutation(len(quartz_frame))
    permuted = quartz_frame[perm]
    species = species_of(quartz_frame)
    x = power_spectrum(expansion(quartz_frame, radial_basis, species).coefficients,
                       SETTINGS.max_angular)
    x_perm = power_spectrum(expansion(permuted, radial_basis, species).coefficients,
                            SETTINGS.max_angular)
    np.testing.assert_allclose(x_perm, x[perm], rtol=0, atol=1e-12)


def test_pair_gradients_reference_route_matches_adjoint_route(quartz_frame, radial_basis):
    """Σ_D v[i_p]·∂x_{i_p}/∂d_p (materialised) == pair_vjp(power_spectrum_vjp(c, v))."""
    fe = expansion(quartz_frame, radial_basis)
    x = power_spectrum(fe.coefficients, SETTINGS.max_angular)
    v = np.random.default_rng(10).normal(size=x.shape)
    adjoint_route = fe.pair_vjp(power_spectrum_vjp(fe.coefficients, v, SETTINGS.max_angular))
    pairs = np.arange(len(fe.pairs.centers))
    grads = power_spectrum_pair_gradients(fe, pairs)  # (P, 3, D)
    assert grads.shape == (len(pairs), 3, x.shape[1])
    reference = np.einsum("pxd,pd->px", grads, v[fe.pairs.centers])
    np.testing.assert_allclose(adjoint_route, reference, rtol=1e-9,
                               atol=1e-11 * np.abs(reference).max())


def test_power_spectrum_pair_gradients_match_finite_differences(radial_basis):
    """The reference route itself: moving atom k changes x_i through every pair (i, k)."""
    atoms = perturbed_molecule("CH3OH", seed=11)
    species = species_of(atoms)
    fe = expansion(atoms, radial_basis, species)
    k = 1  # move atom k; x_i (i ≠ k) changes by Σ_{p: i_p = i, j_p = k} ∂x_i/∂d_p · δ
    pairs = np.flatnonzero(fe.pairs.neighbors == k)
    grads = power_spectrum_pair_gradients(fe, pairs)
    h = 1e-5
    for b in range(3):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[k, b] += h
        minus.positions[k, b] -= h
        dx = (power_spectrum(expansion(plus, radial_basis, species).coefficients, 3)
              - power_spectrum(expansion(minus, radial_basis, species).coefficients, 3)) / (2 * h)
        for row, p in enumerate(pairs):
            i = fe.pairs.centers[p]
            np.testing.assert_allclose(grads[row, b], dx[i], rtol=1e-6,
                                       atol=1e-7 * np.abs(dx).max())


# -- neighbour list ----------------------------------------------------------------------------------

def brute_force_pairs(atoms, cutoff):
    cell = np.asarray(atoms.cell[:])
    pbc = np.asarray(atoms.pbc)
    if pbc.any():
        reach = np.where(pbc, np.ceil(cutoff / cell_heights(cell)).astype(int) + 1, 0)
    else:
        reach = np.zeros(3, dtype=int)
    ranges = [range(-r, r + 1) for r in reach]
    out = {}
    pos = atoms.positions
    for i in range(len(atoms)):
        for j in range(len(atoms)):
            for t in np.array(np.meshgrid(*ranges, indexing="ij")).reshape(3, -1).T:
                if i == j and not t.any():
                    continue
                d = pos[j] + t @ cell - pos[i]
                if np.linalg.norm(d) < cutoff:
                    out[(i, j, tuple(int(s) for s in t))] = d
    return out


SMALL_CELLS = {
    "triclinic-3d": (np.array([[3.1, 0.0, 0.0], [0.7, 2.9, 0.0], [-0.4, 0.5, 3.3]]),
                     (True, True, True)),
    "slab": (np.array([[3.0, 0.0, 0.0], [0.5, 3.2, 0.0], [0.0, 0.0, 20.0]]),
             (True, True, False)),
}


@pytest.mark.parametrize("name", list(SMALL_CELLS))
def test_neighbor_list_resolves_images_in_small_cells(name):
    cell, pbc = SMALL_CELLS[name]
    rng = np.random.default_rng(12)
    atoms = Atoms("SiO2", scaled_positions=rng.uniform(size=(3, 3)) * [1, 1, 0.2], cell=cell,
                  pbc=pbc)
    cutoff = 5.0
    assert cutoff > 0.5 * cell_heights(cell)[np.array(pbc)].min()
    nl = neighbor_list(atoms, cutoff)
    expected = brute_force_pairs(atoms, cutoff)
    got = {(int(i), int(j), tuple(int(s) for s in t)): d
           for i, j, t, d in zip(nl.centers, nl.neighbors, nl.shifts, nl.vectors)}
    assert len(nl.centers) == len(expected) == len(got)  # no duplicates, none missing
    assert set(got) == set(expected)
    for key, d in expected.items():
        np.testing.assert_allclose(got[key], d, rtol=0, atol=1e-10)
    np.testing.assert_allclose(nl.distances, np.linalg.norm(nl.vectors, axis=1), rtol=1e-14)
    assert np.all(nl.distances < cutoff) and np.all(nl.distances > 0)
    # the same neighbour appears with several shifts (the point of image resolution)
    pairs, counts = np.unique(np.stack([nl.centers, nl.neighbors], 1), axis=0,
                              return_counts=True)
    assert counts.max() > 3
    # every atom is its own neighbour through its images, and pairs come in (i,j,T)/(j,i,−T)
    assert {(int(i), int(j)) for i, j in pairs if i == j} == {(0, 0), (1, 1), (2, 2)}
    for (i, j, t) in got:
        assert (j, i, tuple(-s for s in t)) in got
    assert np.all(np.diff(nl.centers) >= 0)  # sorted by centre


def test_neighbor_list_molecule_has_no_images():
    atoms = perturbed_molecule("CH3CH2OH", seed=13)
    nl = neighbor_list(atoms, 2.0)
    expected = brute_force_pairs(atoms, 2.0)
    assert len(nl.centers) == len(expected) > 0
    assert not nl.shifts.any()
    np.testing.assert_allclose(
        nl.vectors, atoms.positions[nl.neighbors] - atoms.positions[nl.centers], atol=1e-12)


# -- radial spline -----------------------------------------------------------------------------------

def test_radial_spline_derivative_matches_finite_differences(radial_basis):
    rng = np.random.default_rng(14)
    cut, width = SETTINGS.cutoff, SETTINGS.cutoff_width
    # random distances plus points in and around the smoothing shell [cut − width, cut]
    r = np.concatenate([rng.uniform(0.05, cut, 200),
                        np.linspace(cut - width - 0.05, cut - 1e-3, 40)])
    h = 1e-6
    val, der = radial_basis.evaluate_smoothed(r, width)
    plus, _ = radial_basis.evaluate_smoothed(r + h, width)
    minus, _ = radial_basis.evaluate_smoothed(r - h, width)
    numeric = (plus - minus) / (2 * h)
    assert val.shape == (len(r), SETTINGS.max_angular + 1, SETTINGS.max_radial + 1)
    np.testing.assert_allclose(der, numeric, rtol=1e-6, atol=1e-7 * np.abs(numeric).max())
    # smoothed = f_cut · R, and the product rule
    raw, raw_der = radial_basis.evaluate(r)
    f, df = shifted_cosine(r, cut, width)
    np.testing.assert_allclose(val, f[:, None, None] * raw, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(der, df[:, None, None] * raw + f[:, None, None] * raw_der,
                               rtol=1e-12, atol=1e-13)


def test_radial_spline_vanishes_beyond_cutoff(radial_basis):
    cut = SETTINGS.cutoff
    r = np.array([cut, cut + 1e-9, cut + 0.3, cut + 2.0])
    val, der = radial_basis.evaluate_smoothed(r, SETTINGS.cutoff_width)
    assert np.all(val == 0) and np.all(der == 0)
    # and it is not zero just inside, so the check above is not trivially true
    inside, _ = radial_basis.evaluate_smoothed(np.array([cut - 0.2]), SETTINGS.cutoff_width)
    assert np.abs(inside).max() > 1e-6
    # continuous approach to zero: value ∝ (cut − r)² near the cut-off
    near, _ = radial_basis.evaluate_smoothed(np.array([cut - 1e-4]), SETTINGS.cutoff_width)
    assert np.abs(near).max() < 1e-6


def test_radial_spline_interpolates_the_table(radial_basis):
    """At the grid points the spline returns the tabulated values and derivatives."""
    grid = radial_basis.grid[:-1:7]
    val, der = radial_basis.evaluate(grid)
    np.testing.assert_allclose(val, radial_basis.values[:-1:7], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(der, radial_basis.derivatives[:-1:7], rtol=1e-10, atol=1e-12)
    assert radial_basis.grid[0] == 0 and radial_basis.grid[-1] == pytest.approx(SETTINGS.cutoff)
