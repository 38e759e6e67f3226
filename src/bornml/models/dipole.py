"""Dipole (λ=1) and combined (q+p) kernel models of Born effective charges.

Atomic dipoles from a linear λ=1 (vector) kernel on the λ-SOAP features of
:mod:`bornml.descriptors.lambda_soap`, with references k of the same species:

    p_i = Σ_k K^(1)(i, k) w_k,   K^(1)(i, k) = X̂_i X̂_kᵀ  (3×3),   w_k ∈ R³

so ``p_i = X̂_i u_z`` with the contracted weights ``u_z = Σ_k X̂_kᵀ w_k`` (F,). Born charges:

- :class:`DipoleModel` ("p"):   Z_j = q⁰'_j I + Σ_i ∂p_i/∂r_j  with fixed species charges q⁰
  (given, or the training mean of tr(Z)/3 per species), made neutral per frame;
- :class:`CombinedModel` ("q+p"): the monopole model's Z (environment-dependent charges,
  :mod:`bornml.models.monopole`) plus Σ_i ∂p_i/∂r_j, fitted jointly.

The dipole term is local, single valued in periodic cells and obeys the acoustic sum rule by
construction (every pair adds ∂p_i/∂d_p to its neighbour and subtracts it from its centre).

Fitting. With the kernel prior ω·wᵀK_MM w the dipole part is exactly ridge regression for
``u`` restricted to the span of the reference features (ω|u|², u = Q y with Q an orthonormal
basis of span{X̂_k[a]}): cheaper than 3M kernel columns and well conditioned when 3M > F.
The normal equations are accumulated in the feature basis and projected once.
"""

import numpy as np

from .. import keys
from ..descriptors.lambda_soap import (atom_jacobian, n_vector_features, vector_features,
                                       vector_features_vjp)
from .bec_assembly import _pair_to_atom, assemble_bec
from .bec_assembly import dipole_derivative as charge_dipole_derivative
from ..memory import FLOAT
from .fit import NormalEquations, solve_regularised
from .kernel import kernel
from .monopole import (MonopoleModel, _block_diag, accumulate_equations,
                       asr_corrected, descriptor_arrays)

BASIS_TOLERANCE = 1e-8  # singular values below this × the largest span no direction


def _scatter_pairs(values, centers, neighbors, n_atoms):
    """Σ_{p: j_p = j} values_p − Σ_{p: i_p = j} values_p for every atom j: (n_atoms, ...)."""
    flat = values.reshape(len(values), -1)
    out = _pair_to_atom(neighbors, n_atoms) @ flat - _pair_to_atom(centers, n_atoms) @ flat
    return out.reshape((n_atoms,) + values.shape[1:])


class _DipolePart:
    """The λ=1 dipole term shared by :class:`DipoleModel` and :class:`CombinedModel`."""

    learns_charges = True

    # -- features -------------------------------------------------------------------------
    def _vector_features(self, fe, norms):
        return vector_features(fe.coefficients, self.max_angular) / norms[:, None, None]

    def _n_features(self):
        return n_vector_features(len(self.species_mixing_), self.max_radial, self.max_angular)

    # -- preparation ----------------------------------------------------------------------
    def prepare(self, frames):
        """Species, radial basis, reference environments (FPS/CUR/random on the scalar power
        spectrum), the span of their λ=1 features, and fixed charges (p model)."""
        frames = list(frames)
        MonopoleModel.prepare(self, frames)
        self._dipole_basis_from_references(frames)
        if not self.learns_charges:
            self.fixed_charges_ = self._fixed_charges(frames)
        return self

    def _dipole_basis_from_references(self, frames):
        F = self._n_features()
        m_total = sum(len(src) for src in self.reference_sources_.values())
        self._check_memory(FLOAT * 3 * m_total * F * 2,
                           f"λ=1 features of the {m_total} references (3 × {F} each)",
                           "lower n_sparse (--n-sparse) or compress the species channels "
                           "(species_channels / --species-channels)")
        refs = {z: np.zeros((len(src), 3, F)) for z, src in self.reference_sources_.items()}
        needed = sorted({int(f) for src in self.reference_sources_.values() for f in src[:, 0]})
        for index in needed:
            fe, _, norms = self._expand(frames[index], index)
            xvec = self._vector_features(fe, norms)
            for z, src in self.reference_sources_.items():
                rows = np.flatnonzero(src[:, 0] == index)
                refs[z][rows] = xvec[src[rows, 1]]
        bases = {}
        for z, ref in refs.items():
            _, sing, vt = np.linalg.svd(ref.reshape(-1, ref.shape[2]), full_matrices=False)
            keep = sing > BASIS_TOLERANCE * sing.max() if len(sing) and sing.max() > 0 else []
            bases[z] = vt[keep].T  # (F, r_z) orthonormal
        # route: accumulate in the λ=1 feature space (S·F columns, projected once at the end)
        # or project every frame's design onto the reference span first (Σ r_z ≤ 3·Σ M_z
        # columns) — the same equations either way; the smaller side wins
        span = sum(b.shape[1] for b in bases.values())
        route = getattr(self, "dipole_route", "auto")  # tests force either route
        if route == "auto":
            route = "features" if len(bases) * F <= span else "references"
        self.dipole_route_ = route
        self.dipole_basis_ = {z: None if (self.dipole_route_ == "features"
                                          and b.shape[1] == F) else b
                              for z, b in bases.items()}

    def _fixed_charges(self, frames):
        from ase.data import atomic_numbers

        given = self.charges or {}
        out = {}
        for key, value in given.items():
            try:
                z = atomic_numbers[key] if isinstance(key, str) and not key.isdigit() \
                    else int(key)
                out[z] = float(value)
            except (KeyError, ValueError, TypeError):
                raise ValueError(f"charges: {key!r}: {value!r} is not 'element symbol or atomic "
                                 "number': charge in e (e.g. {'Zr': 4, 'O': -2})") from None
        traces = {z: [] for z in self.species_}
        for frame in frames:
            t = np.trace(asr_corrected(frame.arrays[keys.BEC]), axis1=1, axis2=2) / 3.0
            for z in self.species_:
                traces[z].append(t[frame.numbers == z])
        for z in self.species_:
            if z not in out:
                out[z] = float(np.mean(np.concatenate(traces[z])))
        return out

    # -- the dipole term ------------------------------------------------------------------
    def _dipole_design(self, fe, xhat, norms):
        """Born-charge rows (atom, a, b) of the dipole term: Φ_u (N·9, S·F), one column per
        contracted weight u_z[f] ("features" route), or Φ_u,z Q_z (N·9, Σ r_z) on the
        orthonormal bases Q_z of the reference spans ("references" route)."""
        n_atoms = fe.n_atoms
        xvec = self._vector_features(fe, norms)
        self_term = fe.norm_pair_gradients(xhat)
        if self.dipole_route_ == "features":
            jac = atom_jacobian(fe, xvec, 1.0 / norms, self_term, self.max_angular)
            return jac.reshape(n_atoms * 9, -1)
        blocks = []
        for k, z in enumerate(self.species_):
            basis = self.dipole_basis_[z]
            if not np.any(fe.species_index == k):
                blocks.append(np.zeros((n_atoms * 9, basis.shape[1])))
                continue
            jac = atom_jacobian(fe, xvec, 1.0 / norms, self_term, self.max_angular, k)
            blocks.append(jac.reshape(n_atoms * 9, -1) @ basis)
        return np.concatenate(blocks, axis=1)

    def _dipoles_and_pair_gradients(self, fe, xhat, norms):
        """p (N, 3) e·Å and G (P, 3, 3) with G_p[a, b] = ∂p_{i_p,a}/∂d_{p,b} (e)."""
        index = fe.species_index
        u = np.stack([self.dipole_weights_[z] for z in self.species_])[index]  # (N, F)
        xvec = self._vector_features(fe, norms)
        dipoles = np.einsum("iaf,if->ia", xvec, u)
        adj = vector_features_vjp(fe.coefficients, u, self.max_angular) / norms[None, :, None,
                                                                                None, None]
        self_term = fe.norm_pair_gradients(xhat)
        centers = fe.pairs.centers
        grads = np.empty((len(centers), 3, 3))
        for a in range(3):
            grads[:, a] = fe.pair_vjp(adj[a]) - (dipoles[centers, a] / norms[centers])[:, None] \
                * self_term
        return dipoles, grads

    def _fixed_charge_vector(self, frame):
        q = np.array([self.fixed_charges_[int(z)] for z in frame.numbers])
        return q - q.mean()

    # -- fitting --------------------------------------------------------------------------
    def _n_charge_columns(self):
        return sum(len(r) for r in self.references_.values()) if self.learns_charges else 0

    def design_matrix(self, frame, index=0, expanded=None):
        """Φ (N·9, M_q + S·F) and Φ_q (N, M_q): Born-charge and neutral-charge rows for the
        charge weights (q+p only) followed by the contracted dipole weights u_z (S·F)."""
        expanded = expanded or self._expand(frame, index)
        fe, xhat, norms = expanded
        phi_u = self._dipole_design(fe, xhat, norms)
        if not self.learns_charges:
            return phi_u, np.zeros((len(frame), 0))
        phi_q, phi_c = MonopoleModel.design_matrix(self, frame, index, expanded)
        return np.concatenate([phi_q, phi_u], axis=1), phi_c

    def accumulate(self, frames):
        """Normal equations (projected onto the reference span) of ``frames``; see
        :meth:`MonopoleModel.accumulate`."""
        fixed = None if self.learns_charges else self._fixed_charge_vector
        eqs, offset = accumulate_equations(self, frames, fixed)
        if offset is not None:  # the p model fits Z − q⁰'I
            eqs["bec"].b -= offset
        return self._project(eqs)

    def n_design_columns(self):
        """Charge columns (q+p) plus S·F ("features" route) or Σ r_z ("references")."""
        if self.dipole_route_ == "features":
            dipole = len(self.species_) * self._n_features()
        else:
            dipole = sum(b.shape[1] for b in self.dipole_basis_.values())
        return self._n_charge_columns() + dipole

    def _project(self, eqs):
        """Normal equations in the coordinates [w_q, y_z] with u_z = Q_z y_z."""
        if self.dipole_route_ == "references":  # the design was projected frame by frame
            return eqs
        m_q = self._n_charge_columns()
        F = self._n_features()
        blocks = [slice(0, m_q)] + [slice(m_q + k * F, m_q + (k + 1) * F)
                                    for k in range(len(self.species_))]
        bases = [None] + [self.dipole_basis_[z] for z in self.species_]
        if all(b is None for b in bases):
            return eqs
        a, b = eqs["bec"].a, eqs["bec"].b
        sizes = [s.stop - s.start if q is None else q.shape[1] for s, q in zip(blocks, bases)]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        new_a = np.zeros((offsets[-1], offsets[-1]))
        new_b = np.zeros(offsets[-1])
        for r, (sr, qr) in enumerate(zip(blocks, bases)):
            rows = slice(offsets[r], offsets[r + 1])
            new_b[rows] = b[sr] if qr is None else qr.T @ b[sr]
            for c, (sc, qc) in enumerate(zip(blocks, bases)):
                block = a[sr, sc]
                if qr is not None:
                    block = qr.T @ block
                if qc is not None:
                    block = block @ qc
                new_a[rows, offsets[c]:offsets[c + 1]] = block
        projected = NormalEquations(offsets[-1])
        projected.a, projected.b, projected.n_rows = new_a, new_b, eqs["bec"].n_rows
        return {"bec": projected, "charge": eqs["charge"]}

    def solve(self, eqs):
        """Set charge weights (q+p) and dipole weights u_z from projected normal equations
        with the current ω (``tikhonov``) and λ_q (``charge_regularisation``)."""
        m_q = self._n_charge_columns()
        a = eqs["bec"].a.copy()
        b = eqs["bec"].b.copy()
        n_total = len(b)
        reg = np.eye(n_total)
        if m_q:
            lam = float(self.charge_regularisation)
            a[:m_q, :m_q] += lam * eqs["charge"].a
            b[:m_q] += lam * eqs["charge"].b
            if self.regulariser == "kernel":
                blocks = [kernel(r, r, self.zeta) for r in self.references_.values()]
                reg[:m_q, :m_q] = _block_diag(blocks) + 1e-10 * np.eye(m_q)
        scale = np.trace(eqs["bec"].a) / n_total if np.trace(eqs["bec"].a) > 0 else 1.0
        w = solve_regularised(a, b, float(self.tikhonov), reg, scale=scale)
        self._contracted = None
        self.weights_ = {}
        start = 0
        if m_q:
            for z, ref in self.references_.items():
                self.weights_[z] = w[start:start + len(ref)]
                start += len(ref)
        self.dipole_weights_ = {}
        F = self._n_features()
        for z in self.species_:
            basis = self.dipole_basis_[z]
            size = F if basis is None else basis.shape[1]
            y = w[start:start + size]
            start += size
            self.dipole_weights_[z] = y if basis is None else basis @ y
        return self

    # -- prediction -----------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "dipole_weights_"):
            raise RuntimeError("model is not fitted; call fit(frames) or load_model(path)")

    def _terms(self, frame, index=0):
        """Charge part (q', pair gradients or None), dipoles and their pair gradients."""
        expanded = self._expand(frame, index)
        fe, xhat, norms = expanded
        dipoles, dgrads = self._dipoles_and_pair_gradients(fe, xhat, norms)
        if self.learns_charges:
            _, q, g = self._charges_and_pair_gradients(frame, index, expanded)
        else:
            q, g = self._fixed_charge_vector(frame), None
        return fe, q, g, dipoles, dgrads

    def predict_frame(self, frame, index=0):
        """Prediction for one ``ase.Atoms``: dict with ``charges`` (N,) e (neutral),
        ``dipoles`` (N, 3) e·Å, ``bec`` (N, 3, 3) e and ``asr_residual`` (3, 3) e."""
        self._check_fitted()
        fe, q, g, dipoles, dgrads = self._terms(frame, index)
        n_atoms = len(frame)
        pairs = fe.pairs
        if g is not None:
            bec, neutral, residual = assemble_bec(q, g, pairs.centers, pairs.neighbors,
                                                  pairs.vectors, fe.positions,
                                                  bool(np.any(frame.pbc)))
        else:
            neutral = q
            bec = q[:, None, None] * np.eye(3)
            residual = np.zeros((3, 3))
        bec = bec + _scatter_pairs(dgrads, pairs.centers, pairs.neighbors, n_atoms)
        return {"charges": neutral, "dipoles": dipoles, "bec": bec, "asr_residual": residual}

    def dipole_derivative(self, atoms, velocities):
        """Ṁ = Σ_j Z_j v_j (e·Å/fs) for velocities (N, 3) Å/fs, shape (3,), without
        assembling Z (pair-wise contraction)."""
        self._check_fitted()
        v = np.asarray(velocities, dtype=float)
        fe, q, g, _, dgrads = self._terms(atoms)
        pairs = fe.pairs
        if g is not None:
            mdot = charge_dipole_derivative(q, g, pairs.centers, pairs.neighbors, pairs.vectors,
                                            fe.positions, bool(np.any(atoms.pbc)), v)
        else:
            mdot = q @ v
        return mdot + np.einsum("pab,pb->a", dgrads, v[pairs.neighbors] - v[pairs.centers])

    # -- persistence ----------------------------------------------------------------------
    def _archive_arrays(self):
        if self.learns_charges:
            arrays = MonopoleModel._archive_arrays(self)
        else:  # no charge weights; the references only defined the dipole span
            arrays = descriptor_arrays(self)
        for z in self.species_:
            arrays[f"dipole_weights_{z}"] = self.dipole_weights_[z]
        return arrays

    def _archive_extra(self):
        if self.learns_charges:
            return {}
        return {"fixed_charges": {str(z): q for z, q in self.fixed_charges_.items()}}

    def _load_arrays(self, meta, arrays, path):
        if self.learns_charges:
            MonopoleModel._load_arrays(self, meta, arrays, path)
        else:
            self._load_descriptor(meta, arrays)
            self.fixed_charges_ = {int(z): float(q) for z, q in
                                   meta["extra"]["fixed_charges"].items()}
        self.dipole_weights_ = {z: arrays[f"dipole_weights_{z}"] for z in self.species_}
        expected = self._n_features()
        for z, u in self.dipole_weights_.items():
            if u.shape != (expected,):
                from ..errors import ModelFileError

                raise ModelFileError(f"{path}: dipole_weights_{z} has shape {u.shape}, "
                                     f"expected ({expected},) for these settings")


class DipoleModel(_DipolePart, MonopoleModel):
    """Dipole kernel model: fixed species charges plus λ=1 atomic dipoles.

    Parameters as :class:`~bornml.models.monopole.MonopoleModel` (SOAP settings, ``n_sparse``,
    ``sparse_method``, ``tikhonov`` ω relative to tr(ΦᵀΦ)/dim), plus

    charges : dict or None
        Fixed charges q⁰ by element symbol or atomic number (e), e.g. ``{"O": -2, "H": 1}``;
        species not given get the training-set mean of tr(Z_i)/3. Made neutral per frame.
    """

    model_type = "p"
    learns_charges = False

    def __init__(self, cutoff=5.0, max_radial=7, max_angular=6, atomic_width=0.3,
                 cutoff_width=0.5, n_sparse=500, sparse_method="fps", tikhonov=1e-5,
                 charges=None, max_pool=20000, seed=0, species_channels="auto",
                 max_memory=None, progress=False):
        super().__init__(cutoff=cutoff, max_radial=max_radial, max_angular=max_angular,
                         atomic_width=atomic_width, cutoff_width=cutoff_width, zeta=1,
                         n_sparse=n_sparse, sparse_method=sparse_method, tikhonov=tikhonov,
                         max_pool=max_pool, seed=seed, species_channels=species_channels,
                         max_memory=max_memory, progress=progress)
        self.charges = charges

    def get_params(self):
        params = {k: getattr(self, k) for k in (
            "cutoff", "max_radial", "max_angular", "atomic_width", "cutoff_width", "n_sparse",
            "sparse_method", "tikhonov", "max_pool", "seed", "species_channels", "max_memory")}
        params["charges"] = None if self.charges is None else {
            str(k): float(v) for k, v in self.charges.items()}
        return params


class CombinedModel(_DipolePart, MonopoleModel):
    """Combined kernel model: environment-dependent charges (the monopole model) and λ=1
    atomic dipoles, fitted jointly.

    Parameters as :class:`~bornml.models.monopole.MonopoleModel`; ``zeta`` and
    ``regulariser`` apply to the charge part, ``tikhonov`` ω to both parts, and
    ``charge_regularisation`` λ_q pulls the charges towards tr(Z_i)/3 of the training data,
    which fixes how the response is split between charges and dipoles (a gauge choice of the
    model, not an observable).
    """

    model_type = "q+p"
    learns_charges = True


__all__ = ["DipoleModel", "CombinedModel"]
