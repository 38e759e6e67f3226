"""The energy term of a kernel force field: site energies from the same scalar kernel as the
charges, over the shared references.

    E = Σ_s n_s ε_s + Σ_i e_i,   e_i = Σ_{k ∈ refs(s_i)} w_k (x̂_i · x̂_k)^ζ        (eV)
    F_j = −∂E/∂r_j = −(Σ_{p: j_p = j} g_p − Σ_{p: i_p = j} g_p),   g_p = ∂E/∂d_p (eV/Å)
    σ = (1/V) Σ_p g_p ⊗ d_p     (eV/Å³, ASE's sign: σ = (1/V) ∂E/∂ε)

Linear in w (one column per reference, M = Σ_z M_z). The offsets ε_s are not columns: they are
fitted to the energies before the weights (:mod:`bornml.models.force_field`). Predictions use
the adjoint route (:func:`~bornml.models.scalar_kernel.site_values_and_pair_gradients`), one
pass for energy, forces and stress.
"""

import numpy as np
import scipy.linalg
import scipy.sparse

from .scalar_kernel import (
    checked_settings,
    contract,
    reference_pair_gradients,
    site_values_and_pair_gradients,
)


def pairs_to_atoms(centers, neighbors, n_atoms):
    """B (N, P) sparse with +1 at (j_p, p) and −1 at (i_p, p): ∂E/∂r = B g for pair gradients
    g = ∂E/∂d (P, ...); F = −B g."""
    n = len(centers)
    data = np.concatenate([np.ones(n), -np.ones(n)])
    rows = np.concatenate([neighbors, centers])
    cols = np.concatenate([np.arange(n), np.arange(n)])
    return scipy.sparse.csr_matrix((data, (rows, cols)), shape=(n_atoms, n))


def forces_and_virial(g, pairs, n_atoms):
    """Forces (N, 3) eV/Å and virial Σ_p g_p ⊗ d_p (3, 3) eV from pair gradients
    g_p = ∂E/∂d_p (P, 3): F_j = −(Σ_{p: j_p=j} g_p − Σ_{p: i_p=j} g_p)."""
    grad = np.zeros((n_atoms, 3))
    for a in range(3):
        grad[:, a] = (np.bincount(pairs.neighbors, g[:, a], minlength=n_atoms)
                      - np.bincount(pairs.centers, g[:, a], minlength=n_atoms))
    return -grad, g.T @ pairs.vectors


class EnergyTerm:
    """Site energies e_i from a scalar kernel over the shared references (module docstring)."""

    name = "energies"

    def __init__(self, zeta=2, regulariser="kernel"):
        self.zeta, self.regulariser = checked_settings(zeta, regulariser)
        self.weights = None
        self._contracted = None

    def prepare(self, refs, check_memory):
        self.refs = refs
        self.check_memory = check_memory
        return self

    def n_columns(self):
        return self.refs.n_references()

    def is_fitted(self):
        return self.weights is not None

    # -- fitting ----------------------------------------------------------------------------
    def design(self, ctx, frame):
        """Columns of one frame, references of all species in species order:
        (energy (M,) eV per unit weight, forces (N·3, M) rows atom-major, virial (9, M) =
        Σ_p g_p ⊗ d_p row-major (divide by the volume for the stress))."""
        fe = ctx.fe
        pairs = fe.pairs
        rows = self.refs.rows(self.check_memory)
        n_atoms, m_all = len(frame), self.n_columns()
        energy = np.zeros(m_all)
        forces = np.zeros((n_atoms, 3, m_all))
        virial = np.zeros((3, 3, m_all))
        self_term = ctx.fe.norm_pair_gradients(ctx.xhat)  # shared by every species
        start = 0
        for z in self.refs.species:
            m = len(self.refs.references[z])
            cols = slice(start, start + m)
            start += m
            if not np.any(frame.numbers == z):
                continue
            _, values, ids, grads = reference_pair_gradients(self.refs, ctx, frame, z,
                                                             self.zeta, rows, self_term)
            energy[cols] = values.sum(axis=0)
            b = pairs_to_atoms(pairs.centers[ids], pairs.neighbors[ids], n_atoms)
            forces[:, :, cols] = -(b @ grads.reshape(len(ids), 3 * m)).reshape(n_atoms, 3, m)
            virial[:, :, cols] = np.einsum("pam,pb->abm", grads, pairs.vectors[ids])
        return energy, forces.reshape(n_atoms * 3, m_all), virial.reshape(9, m_all)

    def regulariser_matrix(self):
        """Block-diagonal K_MM (+1e-10·I), or None for the identity."""
        if self.regulariser == "identity":
            return None
        return scipy.linalg.block_diag(*self.refs.kernel_blocks(self.zeta)) \
            + 1e-10 * np.eye(self.n_columns())

    def set_weights(self, w):
        self.weights, start = {}, 0
        for z in self.refs.species:
            m = len(self.refs.references[z])
            self.weights[z] = np.asarray(w[start:start + m], dtype=float)
            start += m
        self._contracted = None

    # -- prediction -------------------------------------------------------------------------
    def predict(self, ctx, frame):
        """(site energies e (N,) eV without offsets, forces (N, 3) eV/Å, virial (3, 3) eV)."""
        if self._contracted is None:
            self._contracted = contract(self.refs, self.weights, self.zeta)
        e, g = site_values_and_pair_gradients(self.refs, ctx, frame, self.weights, self.zeta,
                                              self._contracted)
        return (e, *forces_and_virial(g, ctx.fe.pairs, len(frame)))

    # -- files ------------------------------------------------------------------------------
    def arrays(self):
        return {f"energy_weights_{z}": self.weights[z] for z in self.refs.species}

    def load(self, refs, arrays):
        self.refs = refs
        self.weights = {z: np.asarray(arrays[f"energy_weights_{z}"], dtype=float)
                        for z in refs.species}
        self._contracted = None
        return self
