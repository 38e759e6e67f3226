"""The charge term of a kernel model: environment-dependent atomic charges (the monopole model).

    q_i = Σ_{k ∈ refs(s_i)} w_k (x̂_i · x̂_k)^ζ      (same species only; ζ a positive integer)
    Z_j ⊃ q'_j I + Σ_i (r_i − r_j) ⊗ ∂q_i/∂r_j + (neutrality / sum-rule term)

(:mod:`bornml.models.bec_assembly`). Linear in the weights w (one per reference, M = Σ_z M_z
columns). Regulariser ω_q·s_q·wᵀK_MM w (the Gaussian-process prior, ``"kernel"``) or
ω_q·s_q·|w|² (``"identity"``), s_q = tr(Φ_qᵀΦ_q)/M. Predictions use the adjoint route:
∂q_i/∂x_i is pulled back to the density coefficients and the pair vectors in one pass.
"""

import numpy as np
import scipy.linalg

from .. import keys
from .bec_assembly import assemble_bec
from .bec_assembly import dipole_derivative as charge_dipole_derivative
from .kernel import contracted_weights
from .scalar_kernel import (
    checked_settings,
    reference_pair_gradients,
    site_values_and_pair_gradients,
)


class ChargeTerm:
    """Charges q_i from a scalar kernel over the shared references (see module docstring)."""

    name = "charges"
    learnt = True

    def __init__(self, zeta=2, regulariser="kernel"):
        self.zeta, self.regulariser = checked_settings(zeta, regulariser)
        self.weights = None
        self._contracted = None
        self._regulariser = None

    def prepare(self, refs, frames, check_memory):
        self.refs = refs
        self.check_memory = check_memory
        self._regulariser = None
        return self

    def n_columns(self):
        return self.refs.n_references()

    n_raw_columns = n_columns  # no projection: the design is in weight coordinates

    def projection(self):
        """None: the design columns are the weights themselves."""
        return

    def is_fitted(self):
        return self.weights is not None

    def adopt(self, prepared):
        """Take the preparation (not the weights) of an equal term that built the equations."""
        if prepared.zeta != self.zeta:
            raise ValueError(f"the equations were accumulated with zeta {prepared.zeta}, this "
                             f"model has zeta {self.zeta}")
        self.refs, self.check_memory = prepared.refs, prepared.check_memory
        self._regulariser = None
        return self

    # -- fitting ----------------------------------------------------------------------------
    def design(self, ctx, frame):
        """(Φ (N·9, M), Φ_q (N, M), S (9, M)): Born-charge rows (atom, a, b) row-major,
        neutral-charge rows, and the unprojected sum Σ_j Z_j^local (a, b) that the sum-rule
        projection removes in a periodic frame; columns the references of all species in
        species order."""
        fe, xhat, _ = ctx
        refs = self.refs
        n_atoms = len(frame)
        periodic = fe.periodic_directions
        self_term = fe.norm_pair_gradients(xhat)  # x̂_i·∂x_i/∂d_p, every pair at once
        rows = refs.rows(self.check_memory)
        designs, charge_designs, sums = [], [], []
        for z in refs.species:
            m = len(refs.references[z])
            if not np.any(frame.numbers == z):  # species absent from this frame: zero columns
                designs.append(np.zeros((n_atoms * 9, m)))
                charge_designs.append(np.zeros((n_atoms, m)))
                sums.append(np.zeros((9, m)))
                continue
            # K_ik and ∂K_ik/∂d_p of the centres of species z against its references
            atoms, values, pair_ids, grads = reference_pair_gradients(
                refs, ctx, frame, z, self.zeta, rows, self_term)
            charges = np.zeros((n_atoms, m))
            charges[atoms] = values
            bec, neutral, residual = assemble_bec(
                charges, grads, fe.pairs.centers[pair_ids], fe.pairs.neighbors[pair_ids],
                fe.pairs.vectors[pair_ids], fe.positions, periodic)
            designs.append(bec.reshape(n_atoms * 9, m))
            charge_designs.append(neutral)
            sums.append(residual.reshape(9, m))
        return (np.concatenate(designs, axis=1), np.concatenate(charge_designs, axis=1),
                np.concatenate(sums, axis=1))

    def regulariser_matrix(self):
        """R_q (M, M): block-diagonal K_MM (plus 1e-10·I), or None for the identity (built
        once: the references do not change after preparation)."""
        if self.regulariser == "identity":
            return None
        if self._regulariser is None:
            self._regulariser = scipy.linalg.block_diag(*self.refs.kernel_blocks(self.zeta)) \
                + 1e-10 * np.eye(self.n_columns())
        return self._regulariser

    def set_weights(self, w):
        self.weights = {}
        start = 0
        for z in self.refs.species:
            m = len(self.refs.references[z])
            self.weights[z] = w[start:start + m]
            start += m
        self._contracted = None

    def design_weights(self):
        """The weights in design-column order (M,)."""
        return np.concatenate([self.weights[z] for z in self.refs.species])

    # -- prediction -------------------------------------------------------------------------
    def _contracted_weights(self):
        """Per species Σ_k w_k x̂_k (ζ=1: always, one D-vector) or Σ_k w_k x̂_k x̂_kᵀ (ζ=2:
        where that is cheaper than the sum over references, more references than D/2)."""
        if self._contracted is None:
            D = self.refs.n_features
            self._contracted = {
                z: contracted_weights(self.refs.references[z], self.weights[z], self.zeta)
                for z in self.refs.species
                if self.zeta == 1 or len(self.refs.references[z]) > D // 2}
        return self._contracted

    def charges_and_pair_gradients(self, ctx, frame):
        """Raw charges q (N,) e and g (P, 3), g_p = ∂q_{i_p}/∂d_p (e/Å): the adjoint route,
        block by block of atoms (:func:`.scalar_kernel.site_values_and_pair_gradients`)."""
        contracted = {z: c for z, c in self._contracted_weights().items() if c is not None}
        return site_values_and_pair_gradients(self.refs, ctx, frame, self.weights, self.zeta,
                                              contracted)

    def predict(self, ctx, frame):
        """{bec: Z (N, 3, 3), charges: neutral q' (N,), asr_residual (3, 3)} of the term."""
        q, g = self.charges_and_pair_gradients(ctx, frame)
        pairs = ctx.fe.pairs
        bec, neutral, residual = assemble_bec(q, g, pairs.centers, pairs.neighbors,
                                              pairs.vectors, ctx.fe.positions,
                                              ctx.fe.periodic_directions)
        return {keys.BEC: bec, keys.CHARGES: neutral, keys.ASR_RESIDUAL: residual}

    def dipole_derivative(self, ctx, frame, velocities):
        """Σ_j Z_j^(q) v_j (3,) without assembling Z."""
        q, g = self.charges_and_pair_gradients(ctx, frame)
        pairs = ctx.fe.pairs
        return charge_dipole_derivative(q, g, pairs.centers, pairs.neighbors, pairs.vectors,
                                        ctx.fe.positions, ctx.fe.periodic_directions, velocities)

    # -- files ------------------------------------------------------------------------------
    def arrays(self):
        return {f"weights_{z}": self.weights[z] for z in self.refs.species}

    def extra(self):
        return {}

    def load(self, refs, arrays, extra, path):
        self.refs = refs
        missing = [z for z in refs.species if z not in refs.references]
        if missing:  # load_model turns this into "model file is missing the array ..."
            raise KeyError(f"references_{missing[0]}")
        self.weights = {z: arrays[f"weights_{z}"] for z in refs.species}
        self._contracted = None
        return self
