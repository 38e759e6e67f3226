"""Reference selection never forms a D×D matrix, and selects what the D×D route selected."""

import numpy as np
import pytest

from bornml.descriptors.soap import FrameExpansion, SoapSettings, power_spectrum
from bornml.models import sparsify
from bornml.models.kernel import normalise
from bornml.models.sparsify import select_sparse


def _principal_coordinates_dxd(x, variance=0.9999, max_dim=256):
    """The previous implementation (eigh of the D×D covariance), kept as the reference."""
    centred = x - x.mean(axis=0)
    vals, vecs = np.linalg.eigh(centred.T @ centred)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    keep = int(np.searchsorted(np.cumsum(vals), variance * vals.sum()) + 1)
    keep = min(max(keep, 1), max_dim, x.shape[1])
    return np.ascontiguousarray((centred @ vecs[:, :keep]).astype(np.float32))


def _fps_dxd(x, n_sparse):
    x = _principal_coordinates_dxd(x)
    sq = np.einsum("ij,ij->i", x, x)
    first = int(np.argmax(sq - 2 * x @ x.mean(axis=0)))
    chosen, dist = [first], sq + sq[first] - 2 * x @ x[first]
    for _ in range(n_sparse - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, sq + sq[nxt] - 2 * x @ x[nxt])
    return np.sort(np.array(chosen))


def _silicon_environments(quartz_frames, n_frames):
    settings = SoapSettings(cutoff=5.0, max_radial=5, max_angular=4)
    species = (8, 14)
    rows = []
    for frame in quartz_frames[:n_frames]:
        fe = FrameExpansion(frame, species, settings, settings.radial_basis())
        xhat, _ = normalise(power_spectrum(fe.coefficients, settings.max_angular))
        rows.append(xhat[frame.numbers == 14])
    return np.concatenate(rows)


@pytest.mark.parametrize("n_frames", [3, 30])  # fewer environments than features, and more
def test_fps_selects_the_same_references_as_the_dxd_route(quartz_frames, n_frames):
    x = _silicon_environments(quartz_frames, n_frames)
    assert (x.shape[0] < x.shape[1]) == (n_frames == 3)
    for n_sparse in (10, 50):
        np.testing.assert_array_equal(select_sparse(x, n_sparse, "fps"), _fps_dxd(x, n_sparse))


def test_principal_coordinates_preserve_distances(quartz_frames):
    x = _silicon_environments(quartz_frames, 3)
    ref = _principal_coordinates_dxd(x)
    new = sparsify._principal_coordinates(x)
    assert new.shape == ref.shape
    d_ref = np.linalg.norm(ref[:, None] - ref[None], axis=-1)
    d_new = np.linalg.norm(new[:, None] - new[None], axis=-1)
    np.testing.assert_allclose(d_new, d_ref, atol=1e-5)


def test_randomised_route_matches_exact_coordinates(monkeypatch):
    """Above EXACT_SIDE on both sides the axes come from a randomised range finder: with a
    low-rank matrix it reproduces the exact distances."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 400))
    exact = sparsify._principal_coordinates(x)
    exact_choice = select_sparse(x, 20, "fps")
    monkeypatch.setattr(sparsify, "EXACT_SIDE", 100)
    approx = sparsify._principal_coordinates(x)
    d_exact = np.linalg.norm(exact[:, None] - exact[None], axis=-1)
    d_approx = np.linalg.norm(approx[:, None] - approx[None], axis=-1)
    np.testing.assert_allclose(d_approx, d_exact, rtol=1e-4, atol=1e-4 * d_exact.max())
    np.testing.assert_array_equal(select_sparse(x, 20, "fps"), exact_choice)


def test_no_dxd_matrix_for_wide_features(monkeypatch):
    """Few environments, very many features (many species): eigh sees only n_env × n_env."""
    import scipy.linalg

    seen = []
    real = scipy.linalg.eigh

    def spy(a, *args, **kw):
        seen.append(a.shape)
        return real(a, *args, **kw)

    monkeypatch.setattr(scipy.linalg, "eigh", spy)
    x = np.random.default_rng(1).normal(size=(60, 30000))
    select_sparse(x, 20, "fps")
    assert seen and all(max(shape) <= 60 for shape in seen)
