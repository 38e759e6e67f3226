"""The dipole term of a kernel model: atomic dipoles from a linear λ=1 (vector) kernel.

    p_i = Σ_{k ∈ refs(s_i)} K¹(i, k) w_k,   K¹(i, k) = X̂_i X̂_kᵀ (3×3),   w_k ∈ R³

with the λ-SOAP features X̂_i = X_i/|x_i| (3, F) of :mod:`bornml.descriptors.lambda_soap`, so
``p_i = X̂_i u_z`` with u_z = Σ_k X̂_kᵀ w_k (F,). With the kernel prior ω_p·wᵀK¹_MM w = ω_p|u|²
the fit is ridge regression for u_z in the span of the reference features: u_z = Q_z y_z with
Q_z (F, r_z) an orthonormal basis of span{X̂_k[a]}, r_z ≤ min(F, 3·M_z). Columns: Σ_z r_z —
memory O(M²) whatever the number of species. The design is either accumulated in feature
space (S·F columns) and projected once, or projected frame by frame onto Q_z; whichever has
fewer columns is used ("features" / "references" route; the same equations, tested).
Regulariser ω_p·s_p·|y|², s_p = tr(Φ_yᵀΦ_y)/Σ r_z.

Z_j ⊃ Σ_i ∂p_i/∂r_j: every neighbour-image pair adds ∂p_i/∂d_p to its neighbour and subtracts
it from its centre, so the term is local, single valued in a crystal and obeys the acoustic sum
rule exactly. ζ_p = 1 only (a product with the scalar kernel is not implemented).
"""

import numpy as np

from .. import keys
from ..descriptors.lambda_soap import (
    atom_jacobian,
    dipoles_and_adjoints,
    n_vector_features,
    pair_vjp_vectors,
    vector_features,
)
from ..memory import FEWER_REFERENCES, FLOAT
from .bec_assembly import _pair_to_atom

BASIS_TOLERANCE = 1e-8  # singular values below this × the largest span no direction
ROUTES = ("auto", "features", "references")


def scatter_pairs(values, centers, neighbors, n_atoms):
    """Σ_{p: j_p = j} values_p − Σ_{p: i_p = j} values_p for every atom j: (n_atoms, ...)."""
    flat = values.reshape(len(values), -1)
    out = _pair_to_atom(neighbors, n_atoms) @ flat - _pair_to_atom(centers, n_atoms) @ flat
    return out.reshape((n_atoms,) + values.shape[1:])


class DipoleTerm:
    """Atomic dipoles from the λ=1 kernel (see module docstring)."""

    name = "dipoles"
    learnt = True

    def __init__(self, route="auto"):
        if route not in ROUTES:
            raise ValueError(f"dipole route must be one of {ROUTES}")
        self.route = route
        self.weights = None  # u_z (F,) per species

    @property
    def n_features(self):
        """F = L·(C·N)² λ=1 features per Cartesian component."""
        return n_vector_features(self.refs.n_channels, self.refs.settings.max_radial,
                                 self.refs.settings.max_angular)

    def _vector_features(self, ctx):
        return vector_features(ctx.fe.coefficients, self.refs.settings.max_angular) / \
            ctx.norms[:, None, None]

    # -- preparation ----------------------------------------------------------------------
    def prepare(self, refs, frames, check_memory):
        """Orthonormal bases of the references' λ=1 feature spans, and the route."""
        self.refs = refs
        F = self.n_features
        m_total = refs.n_references()
        check_memory(FLOAT * 3 * m_total * F * 2,
                     f"λ=1 features of the {m_total} references (3 × {F} each)",
                     FEWER_REFERENCES)
        feats = {z: np.zeros((len(src), 3, F)) for z, src in refs.sources.items()}
        needed = sorted({int(f) for src in refs.sources.values() for f in src[:, 0]})
        for index in needed:
            xvec = self._vector_features(refs.expand(frames[index], index))
            for z, src in refs.sources.items():
                rows = np.flatnonzero(src[:, 0] == index)
                feats[z][rows] = xvec[src[rows, 1]]
        bases = {}
        for z in refs.species:
            ref = feats[z].reshape(-1, F)
            _, sing, vt = np.linalg.svd(ref, full_matrices=False)
            keep = sing > BASIS_TOLERANCE * sing.max() if len(sing) and sing.max() > 0 else []
            bases[z] = vt[keep].T  # (F, r_z)
        span = sum(b.shape[1] for b in bases.values())
        route = self.route
        if route == "auto":
            route = "features" if len(bases) * F <= span else "references"
        self.route_ = route
        self.bases = bases
        return self

    def adopt(self, prepared):
        """Take the preparation (span bases, route; not the weights) of the term that built
        the equations."""
        self.refs, self.bases, self.route_ = prepared.refs, prepared.bases, prepared.route_
        return self

    def n_columns(self):
        """Σ_z r_z (the design columns after projection)."""
        return sum(b.shape[1] for b in self.bases.values())

    def is_fitted(self):
        return self.weights is not None

    def n_raw_columns(self):
        """Columns of one frame's design before projection: S·F or Σ_z r_z."""
        if self.route_ == "features":
            return len(self.refs.species) * self.n_features
        return self.n_columns()

    # -- fitting --------------------------------------------------------------------------
    def design(self, ctx, frame):
        """(Born-charge rows (N·9, n_raw_columns), None, None): per contracted weight u_z[f]
        ("features"), or on the span coordinates y_z ("references"). No charge rows, and no
        sum-rule rows: Σ_j Z_j of a dipole term is zero by translation invariance."""
        return self._design(ctx), None, None

    def _design(self, ctx):
        fe, xhat, norms = ctx
        n_atoms = fe.n_atoms
        xvec = self._vector_features(ctx)
        self_term = fe.norm_pair_gradients(xhat)
        L = self.refs.settings.max_angular
        if self.route_ == "features":
            return atom_jacobian(fe, xvec, 1.0 / norms, self_term, L).reshape(n_atoms * 9, -1)
        blocks = []
        for k, z in enumerate(self.refs.species):
            basis = self.bases[z]
            if not np.any(fe.species_index == k):
                blocks.append(np.zeros((n_atoms * 9, basis.shape[1])))
                continue
            jac = atom_jacobian(fe, xvec, 1.0 / norms, self_term, L, k)
            blocks.append(jac.reshape(n_atoms * 9, -1) @ basis)
        return np.concatenate(blocks, axis=1)

    def projection(self):
        """Q (n_raw_columns, n_columns) mapping raw design columns to span coordinates, or
        None when the design is already in span coordinates."""
        if self.route_ == "references":
            return None
        import scipy.linalg

        return scipy.linalg.block_diag(*[self.bases[z] for z in self.refs.species])

    def regulariser_matrix(self):
        """None: the identity (ω_p|y|²), added to the diagonal without a matrix."""
        return

    def set_weights(self, y):
        self.weights = {}
        start = 0
        for z in self.refs.species:
            basis = self.bases[z]
            self.weights[z] = basis @ y[start:start + basis.shape[1]]
            start += basis.shape[1]

    def design_weights(self):
        """The weights in (projected) design-column order: y_z = Q_zᵀ u_z."""
        return np.concatenate([self.bases[z].T @ self.weights[z] for z in self.refs.species])

    # -- prediction -----------------------------------------------------------------------
    def dipoles_and_pair_gradients(self, ctx):
        """p (N, 3) e·Å and G (P, 3, 3), G_p[a, b] = ∂p_{i_p,a}/∂d_{p,b} (e).

        One compiled pass over atoms gives p and ∂p_i/∂c_i (normalisation included, no λ=1
        features formed), one pass over pairs pulls the three components back together."""
        fe = ctx.fe
        u = np.stack([self.weights[z] for z in self.refs.species])  # (S, F)
        dipoles, adjoints = dipoles_and_adjoints(fe.coefficients, u, fe.species_index,
                                                 self.refs.settings.max_angular)
        return dipoles, pair_vjp_vectors(fe, adjoints)

    def predict(self, ctx, frame):
        """{bec: Z^(p) (N, 3, 3), dipoles: p (N, 3) e·Å}."""
        dipoles, grads = self.dipoles_and_pair_gradients(ctx)
        pairs = ctx.fe.pairs
        return {keys.BEC: scatter_pairs(grads, pairs.centers, pairs.neighbors, len(frame)),
                keys.DIPOLES: dipoles}

    def dipole_derivative(self, ctx, frame, velocities):
        _, grads = self.dipoles_and_pair_gradients(ctx)
        pairs = ctx.fe.pairs
        return np.einsum("pab,pb->a", grads,
                         velocities[pairs.neighbors] - velocities[pairs.centers])

    # -- files ----------------------------------------------------------------------------
    def arrays(self):
        return {f"dipole_weights_{z}": self.weights[z] for z in self.refs.species}

    def extra(self):
        return {}

    def load(self, refs, arrays, extra, path):
        from ..errors import ModelFileError

        self.refs = refs
        self.weights = {z: arrays[f"dipole_weights_{z}"] for z in refs.species}
        for z, u in self.weights.items():
            if u.shape != (self.n_features,):
                raise ModelFileError(f"{path}: dipole_weights_{z} has shape {u.shape}, "
                                     f"expected ({self.n_features},) for these settings")
        return self
