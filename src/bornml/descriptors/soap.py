"""SOAP density expansion, power spectrum, and their exact derivatives (numpy).

Density expansion of atom ``i`` (neighbour species ``s``, radial ``n``, angular ``(l, m)``):

    c[i, s, n, lm] = w0 δ(s, s_i) R_n0(0) Y_00  +  Σ_{p: i_p = i, s(j_p) = s} fR_nl(|d_p|) Y_lm(d̂_p)

with ``fR = f_cut · R`` the splined radial basis (:mod:`bornml.descriptors.radial`, cut-off
smoothing included), real spherical harmonics ``Y_lm`` (sphericart, orthonormal on the
sphere, ``lm = l² + l + m``) and pairs ``p`` from :mod:`bornml.descriptors.neighbors` (one per
neighbour image). This is what featomic's ``SphericalExpansion`` computes with the same
tabulated basis (checked in the tests).

Power spectrum (rotation invariant), for each l with ``C^l = c[i, :, :, l-block]`` as a matrix
(S·N, 2l+1): ``P^l = C^l C^lᵀ / sqrt(2l+1)``; the feature vector ``x_i`` (D,) holds the upper
triangles of all ``P^l`` with off-diagonal entries times sqrt(2), so that
``x_i · x_k = Σ_l <P_i^l, P_k^l>_F``.

Derivatives are never materialised for all features at prediction time: a vector ``v`` in
feature space is pulled back to coefficient space (:func:`power_spectrum_vjp`) and then to
pair vectors (:meth:`FrameExpansion.pair_vjp`) — one cheap pass, the adjoint.
"""

import math
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._kernels import accumulate_density, pull_back_many_to_pairs
from .neighbors import neighbor_list, periodic_directions
from .radial import RadialBasis


@dataclass(frozen=True)
class SoapSettings:
    """SOAP hyper-parameters. Lengths in Å."""

    cutoff: float = 5.0
    max_radial: int = 7
    max_angular: int = 6
    atomic_width: float = 0.3
    cutoff_width: float = 0.5
    center_atom_weight: float = 1.0

    def radial_basis(self):
        return _cached_radial_basis(self.cutoff, self.max_radial, self.max_angular,
                                    self.atomic_width, self.cutoff_width)


@lru_cache(maxsize=8)
def _cached_radial_basis(cutoff, max_radial, max_angular, atomic_width, cutoff_width):
    return RadialBasis.build(cutoff, max_radial, max_angular, atomic_width, cutoff_width)


@lru_cache(maxsize=16)
def _spherical_harmonics(max_angular):
    import sphericart

    return sphericart.SphericalHarmonics(max_angular)


def l_of_lm(max_angular):
    """Angular momentum l of each flattened (l, m) index, ((max_angular+1)²,)."""
    return np.repeat(np.arange(max_angular + 1), 2 * np.arange(max_angular + 1) + 1)


class FrameExpansion:
    """Density expansion of one frame and the per-pair pieces needed for its derivatives.

    Attributes: ``species_index`` (N,) index of each atom's species in ``species``;
    ``pairs`` (NeighborList); ``coefficients`` (N, C, n_max+1, (l_max+1)²) with C = S
    element channels, or C pseudo-species channels when ``mixing`` U (C, S) is given
    (:mod:`bornml.descriptors.species_channels`); ``mixing`` is None for the identity.
    """

    def __init__(self, atoms, species, settings, radial_basis, mixing=None):
        self.settings = settings
        self.species = tuple(int(z) for z in species)
        lookup = {z: k for k, z in enumerate(self.species)}
        numbers = atoms.numbers
        self.species_index = np.array([lookup[int(z)] for z in numbers], dtype=np.int64)
        self.n_atoms = len(atoms)
        self.positions = np.asarray(atoms.positions, dtype=float)
        # pairs grouped by (centre, neighbour species): densities are contiguous segment sums
        self.pairs = neighbor_list(atoms, settings.cutoff, neighbor_key=self.species_index)
        L = settings.max_angular
        d = self.pairs.vectors
        self._fr, self._dfr = radial_basis.evaluate_smoothed(self.pairs.distances,
                                                             settings.cutoff_width)
        if len(d):
            self._y, self._dy = _spherical_harmonics(L).compute_with_gradients(d)
        else:
            self._y, self._dy = np.zeros((0, (L + 1) ** 2)), np.zeros((0, 3, (L + 1) ** 2))
        self._unit = d / self.pairs.distances[:, None] if len(d) else d
        self._pair_species = self.species_index[self.pairs.neighbors]
        S, N, LM = len(self.species), settings.max_radial + 1, (L + 1) ** 2
        self._segment = self.pairs.centers * S + self._pair_species
        bounds = np.searchsorted(self._segment, np.arange(self.n_atoms * S + 1))
        self._atom_bounds = bounds[::S]  # pairs of atom i: _atom_bounds[i]:_atom_bounds[i+1]
        coef = accumulate_density(self._fr, self._y, bounds)
        coef = coef.reshape(self.n_atoms, S, N, LM)
        r0, _ = radial_basis.evaluate(np.zeros(1))
        coef[np.arange(self.n_atoms), self.species_index, :, 0] += (
            settings.center_atom_weight * r0[0, 0, :] * _Y00)
        if mixing is not None and mixing.shape[0] == mixing.shape[1] and \
                np.array_equal(mixing, np.eye(len(mixing))):
            mixing = None
        self.mixing = None if mixing is None else np.ascontiguousarray(mixing, dtype=float)
        if self.mixing is not None:
            coef = np.einsum("cs,isnl->icnl", self.mixing, coef)
        self.coefficients = coef

    @property
    def periodic(self):
        """True when some neighbour pair crosses a cell boundary (a non-zero cell shift). A
        molecule in a periodic box with a vacuum gap wider than the cutoff has none: it is
        treated as the isolated molecule it is (Z the exact derivative of Σ q'_i r_i)."""
        return bool(np.any(self.pairs.shifts != 0))

    @property
    def periodic_directions(self):
        """(3,) bool: Cartesian directions a in which some pair's image shift T_p has a
        component (T_p = d_p − (r_j − r_i), Å). A slab with vacuum along z is periodic in x, y
        only: its z rows of Z are exact derivatives of P_z = Σ q'_i z_i."""
        return periodic_directions(self.pairs, self.positions)

    @property
    def n_channels(self):
        """Density channels C (= S without compression)."""
        return self.coefficients.shape[1]

    def channel_weights(self):
        """U (C, S): weight of neighbour species s in channel γ (the identity if unmixed)."""
        return np.eye(len(self.species)) if self.mixing is None else self.mixing

    def pair_jacobian_subset(self, pair_index):
        """∂c[i_p, s_p, n, lm]/∂d_p for the pairs ``pair_index``: (n, N, LM, 3)."""
        lofm = l_of_lm(self.settings.max_angular)
        fr = self._fr[pair_index][:, lofm, :].transpose(0, 2, 1)
        dfr = self._dfr[pair_index][:, lofm, :].transpose(0, 2, 1)
        y, dy, unit = self._y[pair_index], self._dy[pair_index], self._unit[pair_index]
        return (dfr[..., None] * (y[:, :, None] * unit[:, None, :])[:, None]
                + fr[..., None] * dy.transpose(0, 2, 1)[:, None])

    def norm_pair_gradients(self, xhat):
        """∂|x_i|/∂d_p = x̂_i·∂x_i/∂d_p (P, 3) for the power spectrum x of these coefficients
        (``xhat`` (N, D) its normalised rows). Computed once per expansion and kept: the
        charge and the dipole terms of a combined model both need it."""
        if getattr(self, "_norm_pair_gradients", None) is None:
            self._norm_pair_gradients = self.pair_vjp(power_spectrum_vjp(
                self.coefficients, xhat, self.settings.max_angular))
        return self._norm_pair_gradients

    def pair_range(self, start, stop):
        """The pairs centred on atoms ``start``..``stop``−1, a slice (pairs are sorted by
        centre)."""
        return slice(int(self._atom_bounds[start]), int(self._atom_bounds[stop]))

    def pair_vjp(self, adjoint, start=0):
        """Pull a coefficient-space adjoint back to pair vectors.

        ``adjoint`` (N, C, n, LM) is ∂F/∂c for a scalar (or per-centre) F; returns
        ``g[p] = Σ_{n,lm} adjoint[i_p, s_p, n, lm] ∂c[i_p, s_p, n, lm]/∂d_p``, shape (P, 3),
        with the channel adjoint mapped back to elements, Σ_γ U[γ, s] adjoint[i, γ], first.
        An adjoint of the atoms ``start``..``start``+n−1 only (n, C, n, LM) gives the rows of
        their pairs, :meth:`pair_range` (the same numbers: pair by pair either way).
        """
        if self.mixing is not None:
            adjoint = np.einsum("cs,icnl->isnl", self.mixing, adjoint)
        n_atoms, S = adjoint.shape[:2]
        flat = np.ascontiguousarray(adjoint.reshape((n_atoms * S,) + adjoint.shape[2:]))
        if start == 0 and n_atoms == self.n_atoms:
            return pull_back_many_to_pairs(flat[None], self._segment, self._fr, self._dfr,
                                           self._y, self._dy, self._unit)[0]
        pr = self.pair_range(start, start + n_atoms)
        return pull_back_many_to_pairs(flat[None], self._segment[pr] - start * S,
                                       self._fr[pr], self._dfr[pr], self._y[pr], self._dy[pr],
                                       self._unit[pr])[0]

    def pair_vjp_many(self, adjoints):
        """:meth:`pair_vjp` of K adjoints (K, N, C, n, LM) at once → (K, P, 3)."""
        if self.mixing is not None:
            adjoints = np.einsum("cs,kicnl->kisnl", self.mixing, adjoints)
        k, n_atoms, S = adjoints.shape[:3]
        flat = np.ascontiguousarray(adjoints.reshape((k, n_atoms * S) + adjoints.shape[3:]))
        return pull_back_many_to_pairs(flat, self._segment, self._fr, self._dfr, self._y,
                                       self._dy, self._unit)


_Y00 = 0.5 / np.sqrt(np.pi)


#: atoms per block in the per-atom dense steps (power spectrum, normalisation, kernel, their
#: adjoints): a block's temporaries (≈ block × L·(SN)² floats) stay in cache, so the cost per
#: atom does not grow with the size of the frame
ATOM_BLOCK = 64


_scratch = threading.local()


def scratch(name, shape):
    """A float array of ``shape`` kept per thread under ``name`` and handed out again on the
    next call (its contents are what the last user left). The per-block steps take their
    temporaries from here: a fresh allocation of a few MB is page-faulted anew on every frame
    once the allocator has given the memory back to the system (≈2 µs per 4 KiB page
    measured), which for a 192-atom frame costs as much as the arithmetic of the block. Only
    for temporaries that do not leave the function that asked (one name, one user at a time)."""
    size = shape if isinstance(shape, int) else math.prod(shape)
    buf = getattr(_scratch, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size)
        setattr(_scratch, name, buf)
    return buf[:size].reshape(shape)


def atom_blocks(n_atoms, block=None):
    """(start, stop) of consecutive blocks of at most :data:`ATOM_BLOCK` atoms."""
    block = ATOM_BLOCK if block is None else block
    return [(i, min(i + block, n_atoms)) for i in range(0, n_atoms, block)] or [(0, 0)]


def _blocked(fn, out, *arrays):
    """``fn(*blocks, out=out_block)`` for blocks of :data:`ATOM_BLOCK` atoms (rows of every
    array) writing into the rows of ``out``: the same numbers, computed atom by atom either
    way, without a concatenated copy."""
    for a, b in atom_blocks(len(arrays[0])):
        fn(*(x[a:b] for x in arrays), out=out[a:b])
    return out


def n_power_spectrum_features(coefficients, max_angular):
    """D = (L+1)·SN(SN+1)/2 of coefficients (N, S, n, LM)."""
    sn = int(np.prod(coefficients.shape[1:-1]))
    return (max_angular + 1) * sn * (sn + 1) // 2


def power_spectrum(coefficients, max_angular, out=None):
    """Feature vectors x (N, D) from coefficients (N, S, n, LM); see module docstring.
    ``out``: an (N, D) array to write them into (returned)."""
    if out is None:
        out = np.empty((coefficients.shape[0],
                        n_power_spectrum_features(coefficients, max_angular)))
    return _blocked(lambda c, out: _power_spectrum(c, max_angular, out), out, coefficients)


@lru_cache(maxsize=16)
def _upper_triangle(sn):
    """Flat indices a·SN + b of the upper triangle (a ≤ b) and the weights 1 / sqrt(2)."""
    iu = np.triu_indices(sn)
    return iu[0] * sn + iu[1], np.where(iu[0] == iu[1], 1.0, np.sqrt(2.0))


def _power_spectrum(coefficients, max_angular, out):
    n_atoms = coefficients.shape[0]
    c = coefficients.reshape(n_atoms, -1, coefficients.shape[-1])  # (n, SN, LM)
    sn = c.shape[1]
    flat, scale = _upper_triangle(sn)
    t = len(flat)
    p = scratch("power_spectrum", (n_atoms, sn, sn))
    start = 0
    for l in range(max_angular + 1):
        block = c[:, :, start:start + 2 * l + 1]
        start += 2 * l + 1
        np.matmul(block, block.transpose(0, 2, 1), out=p)
        p /= np.sqrt(2 * l + 1)
        part = out[:, l * t:(l + 1) * t]
        np.take(p.reshape(n_atoms, -1), flat, axis=1, out=part, mode="clip")  # unbuffered
        part *= scale
    return out


@lru_cache(maxsize=16)
def _triangle_maps(sn):
    """Index of each full-matrix entry (a, b) in the upper triangle, and its weight."""
    iu = np.triu_indices(sn)
    position = np.empty((sn, sn), dtype=np.int64)
    position[iu] = np.arange(len(iu[0]))
    position[iu[1], iu[0]] = np.arange(len(iu[0]))
    weight = np.where(np.eye(sn, dtype=bool), 1.0, 1.0 / np.sqrt(2.0))
    return position.ravel(), weight.ravel()


def feature_to_matrices(v, sn, max_angular, out=None):
    """Symmetric matrices V^l (..., L+1, SN, SN) with ``v·x = Σ_l <V^l, P^l>_F`` (written
    into ``out`` when given)."""
    position, weight = _triangle_maps(sn)
    lead = v.shape[:-1]
    v = v.reshape(lead + (max_angular + 1, -1))
    if out is None:
        return (v[..., position] * weight).reshape(lead + (max_angular + 1, sn, sn))
    flat = out.reshape(lead + (max_angular + 1, sn * sn))
    np.take(v, position, axis=-1, out=flat, mode="clip")  # mode: unbuffered
    flat *= weight
    return out


def power_spectrum_vjp(coefficients, v, max_angular, out=None):
    """∂(v_i · x_i)/∂c_i for every atom: v (N, D) → adjoint (N, S, n, LM) (written into
    ``out`` when given)."""
    if out is None:
        out = np.empty_like(coefficients)
    return _blocked(lambda c, w, out: _power_spectrum_vjp(c, w, max_angular, out), out,
                    coefficients, v)


def _power_spectrum_vjp(coefficients, v, max_angular, out):
    n_atoms = coefficients.shape[0]
    c = coefficients.reshape(n_atoms, -1, coefficients.shape[-1])
    o = out.reshape(c.shape)
    sn = c.shape[1]
    mats = feature_to_matrices(v, sn, max_angular,
                               scratch("vjp_matrices", (n_atoms, max_angular + 1, sn, sn)))
    start = 0
    for l in range(max_angular + 1):
        sl = slice(start, start + 2 * l + 1)
        part = np.matmul(mats[:, l], c[:, :, sl], out=scratch("vjp_part", (n_atoms, sn, 2 * l + 1)))
        np.multiply(2.0 / np.sqrt(2 * l + 1), part, out=o[:, :, sl])
        start += 2 * l + 1
    return out


def power_spectrum_pair_gradients(expansion, pair_index):
    """Full feature gradients ∂x_{i_p}/∂d_p for the pairs ``pair_index``: (n, 3, D).

    The materialising route (memory ∝ pairs × D); bornml's predictions never use it — it is
    the reference the adjoint route is checked and timed against.
    """
    pairs = expansion.pairs
    L = expansion.settings.max_angular
    S = expansion.n_channels
    N = expansion.settings.max_radial + 1
    sn = S * N
    jac = expansion.pair_jacobian_subset(pair_index)  # (n, N, LM, 3)
    centers = pairs.centers[pair_index]
    spec = expansion._pair_species[pair_index]
    coef = expansion.coefficients.reshape(expansion.n_atoms, sn, -1)[centers]  # (n, SN, LM)
    n = len(pair_index)
    dc = np.zeros((n, sn, jac.shape[2], 3))
    weights = expansion.channel_weights()  # (C, S)
    for c in range(S):
        rows = c * N + np.arange(N)[None, :]
        dc[np.arange(n)[:, None], rows] = weights[c, spec][:, None, None, None] * jac
    iu = np.triu_indices(sn)
    scale = np.where(iu[0] == iu[1], 1.0, np.sqrt(2.0))
    out = []
    start = 0
    for l in range(L + 1):
        sl = slice(start, start + 2 * l + 1)
        start += 2 * l + 1
        c = coef[:, :, sl]
        d = dc[:, :, sl, :]
        dp = np.einsum("namx,nbm->nxab", d, c) / np.sqrt(2 * l + 1)
        dp = dp + dp.transpose(0, 1, 3, 2)
        out.append(dp[:, :, iu[0], iu[1]] * scale)
    return np.concatenate(out, axis=2)
