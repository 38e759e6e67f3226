"""The descriptor and the reference environments that every term of a kernel model shares.

A :class:`ReferenceSet` holds the SOAP settings, the species (atomic numbers, sorted), the
species-channel mixing U (C, S) (:mod:`bornml.descriptors.species_channels`), the tabulated
radial basis, and per species z the normalised power spectra of M_z reference environments
(M_z, D) with their sources (frame index, atom index) (M_z, 2). It is built once in
``prepare`` and read (never changed) by the terms.
"""

import numpy as np
from tqdm.auto import tqdm

from ..descriptors.soap import FrameExpansion, feature_to_matrices, power_spectrum
from ..descriptors.species_channels import species_mixing
from ..errors import BornDataError
from ..memory import FEWER_REFERENCES, FLOAT
from .kernel import normalise
from .sparsify import select_sparse
from .training_data import source_of


class FrameContext:
    """One frame's expansion ``fe`` (FrameExpansion), its normalised power spectra ``xhat``
    x̂ (N, D) and their norms ``norms`` (N,); unpacks as ``fe, xhat, norms = ctx``.

    ``xhat`` and ``norms`` are computed on first use (in blocks, into one array each) unless
    given. :meth:`block` gives the rows of a block of atoms without forming the (N, D) array
    (the prediction route of the scalar kernels works block by block in cache); the numbers
    are the same either way.
    """

    __slots__ = ("_norms", "_xhat", "fe")

    def __init__(self, fe, xhat=None, norms=None):
        self.fe = fe
        self._xhat, self._norms = xhat, norms

    def _materialise(self):
        if self._xhat is None:
            x = power_spectrum(self.fe.coefficients, self.fe.settings.max_angular)
            self._xhat, self._norms = normalise(x, out=(x, np.empty(len(x))))  # in place

    @property
    def xhat(self):
        self._materialise()
        return self._xhat

    @property
    def norms(self):
        self._materialise()
        return self._norms

    @property
    def materialised(self):
        """Whether x̂ and the norms of every atom are held."""
        return self._xhat is not None

    def block(self, start, stop, out=None):
        """(x̂ (n, D), norms (n,)) of atoms ``start``..``stop``−1: rows of the held arrays, or
        computed for these atoms alone (into ``out`` = (x̂, norms) arrays when given)."""
        if self._xhat is not None:
            return self._xhat[start:stop], self._norms[start:stop]
        fe = self.fe
        x = power_spectrum(fe.coefficients[start:stop], fe.settings.max_angular,
                           None if out is None else out[0])
        return normalise(x, out=(x, np.empty(len(x)) if out is None else out[1]))

    def __iter__(self):
        return iter((self.fe, self.xhat, self.norms))

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return (self.fe, self.xhat, self.norms)[i]

    def __getstate__(self):
        return self.fe, self._xhat, self._norms

    def __setstate__(self, state):
        self.fe, self._xhat, self._norms = state


class ReferenceSet:
    """Descriptor + reference environments (see module docstring)."""

    def __init__(self, settings, species, mixing, radial_basis, references=None, sources=None):
        self.settings = settings
        self.species = tuple(int(z) for z in species)
        self.mixing = np.asarray(mixing, dtype=float)
        self.radial_basis = radial_basis
        self.references = references or {}
        self.sources = sources or {}
        self._rows = None

    # -- sizes ------------------------------------------------------------------------------
    @property
    def n_channels(self):
        return self.mixing.shape[0]

    @property
    def n_features(self):
        """Power-spectrum length D = (L+1)·CN(CN+1)/2."""
        cn = self.n_channels * (self.settings.max_radial + 1)
        return (self.settings.max_angular + 1) * cn * (cn + 1) // 2

    def n_references(self):
        return sum(len(r) for r in self.references.values())

    # -- descriptors ------------------------------------------------------------------------
    def expand(self, frame, index=0):
        """:class:`FrameContext` of one frame; unknown species are a clear error."""
        unknown = sorted({int(z) for z in frame.numbers} - set(self.species))
        if unknown:
            raise BornDataError(
                f"species {unknown} not in the model (trained on {list(self.species)}); "
                "add frames with these elements to the training data",
                path=source_of(frame, index), key="numbers")
        fe = FrameExpansion(frame, self.species, self.settings, self.radial_basis, self.mixing)
        return FrameContext(fe)  # x̂ and the norms when first asked for

    # -- selection --------------------------------------------------------------------------
    @classmethod
    def select(cls, frames, settings, species, species_channels, n_sparse, method, max_pool,
               seed, check_memory, progress=False, runner=None):
        """Choose ≤ ``n_sparse`` references per species among the environments of ``frames``
        (at most ``max_pool`` per species looked at, a seeded random subset). ``runner``: a
        :mod:`bornml.parallel` runner that computes the features of chunks of frames (the
        same pool, gathered in frame order)."""
        refs = cls(settings, species, species_mixing(species, species_channels),
                   settings.radial_basis())
        D = refs.n_features
        n_env = sum(len(f) for f in frames)
        largest = max(min(sum(int(np.sum(f.numbers == z)) for f in frames), max_pool)
                      for z in species)
        check_memory(FLOAT * (n_env * D + largest * D + min(largest, D) ** 2),
                     f"reference selection ({n_env} environments × D = {D} features)",
                     "use fewer frames, lower max_pool, or compress the species channels "
                     "(species_channels / --species-channels)")  # not n_sparse: the pool
        rng = np.random.default_rng(seed)
        if runner is None:  # one task in this process, as a worker would run it
            from ..parallel import one_thread

            pool, where = one_thread(refs.environment_pool, frames, 0, progress)
        else:
            from ..parallel import frame_chunks

            shared = runner.share(refs)
            parts = runner.ordered(_environment_pool, [
                (shared, frames[a:b], a) for a, b in frame_chunks(len(frames),
                                                                  4 * runner.n_workers)])
            pool = {z: [x for p, _ in parts for x in p[z]] for z in species}
            where = {z: [x for _, w in parts for x in w[z]] for z in species}
        for z in species:
            x = np.concatenate(pool[z])
            src = np.concatenate(where[z])
            if len(x) > max_pool:
                keep = np.sort(rng.choice(len(x), max_pool, replace=False))
                x, src = x[keep], src[keep]
            idx = select_sparse(x, int(n_sparse), method, seed=seed)
            refs.references[z] = np.ascontiguousarray(x[idx])
            refs.sources[z] = src[idx]
        return refs

    def environment_pool(self, frames, start=0, progress=False):
        """Normalised power spectra of every environment of ``frames`` (numbered from
        ``start``): ``({z: [(n_z, D) per frame]}, {z: [(n_z, 2) (frame, atom) per frame]})``."""
        pool = {z: [] for z in self.species}
        where = {z: [] for z in self.species}
        bar = tqdm(frames, desc="fit: features", disable=None if progress else True)
        for index, frame in enumerate(bar, start):
            xhat = self.expand(frame, index).xhat
            for z in self.species:
                atoms = np.flatnonzero(frame.numbers == z)
                pool[z].append(xhat[atoms])
                where[z].append(np.stack([np.full(len(atoms), index), atoms], axis=1))
        return pool, where

    # -- pieces used by the charge term -------------------------------------------------------
    def kernel_blocks(self, zeta):
        """Per species K_MM = (X̂ X̂ᵀ)^ζ (M_z, M_z), in species order."""
        return [(r @ r.T) ** zeta for r in (self.references[z] for z in self.species)]

    def rows(self, check_memory):
        """Reference power-spectrum matrices restricted to one neighbour species' rows:
        ``{(z, s): (M_z, (L+1)·N·C·N)}`` with entry [k, (l, n, a)] = Σ_γ U[γ,s] V_k^l[(γ,n), a]
        (cached)."""
        if self._rows is None:
            C, N = self.n_channels, self.settings.max_radial + 1
            L1 = self.settings.max_angular + 1
            check_memory(FLOAT * self.n_references() * (len(self.species) + 2) * L1 * N * C * N,
                         f"reference matrices of the charge design ({self.n_references()} "
                         "references)", FEWER_REFERENCES)
            self._rows = {}
            for z, r in self.references.items():
                mats = feature_to_matrices(r, C * N, self.settings.max_angular)
                mats = mats.reshape(len(r), L1, C, N, C * N)
                for s in range(len(self.species)):
                    block = np.einsum("c,mlcna->mlna", self.mixing[:, s], mats)
                    self._rows[z, s] = np.ascontiguousarray(block.reshape(len(r), -1))
        return self._rows

    def release_design_cache(self):
        """Drop the cached reference rows of :meth:`rows` (rebuilt when next needed)."""
        self._rows = None

    # -- files ----------------------------------------------------------------------------
    def arrays(self):
        out = {"radial_grid": self.radial_basis.grid,
               "radial_values": self.radial_basis.values,
               "radial_derivatives": self.radial_basis.derivatives,
               "species_mixing": self.mixing}
        for z in self.species:
            out[f"references_{z}"] = self.references[z]
        return out

    @classmethod
    def from_arrays(cls, settings, species, arrays):
        from ..descriptors.radial import RadialBasis

        basis = RadialBasis(settings.cutoff, arrays["radial_grid"], arrays["radial_values"],
                            arrays["radial_derivatives"])
        mixing = arrays.get("species_mixing", np.eye(len(species)))
        refs = {int(z): arrays[f"references_{z}"] for z in species
                if f"references_{z}" in arrays}
        return cls(settings, species, mixing, basis, refs)


def _environment_pool(refs, frames, start):
    """:meth:`ReferenceSet.environment_pool` of one chunk of frames (runs on a worker)."""
    return refs.environment_pool(frames, start)
