"""The monopole (charge) kernel model: Born charges from environment-dependent charges.

    q_i = Σ_{k ∈ refs(s_i)} w_k (x̂_i · x̂_k)^ζ      (SOAP power spectrum x_i, same species)
    Z_j = q'_j I + Σ_i (r_i − r_j) ⊗ ∂q_i/∂r_j + (neutrality / sum-rule term)

(see :mod:`bornml.models.bec_assembly`). Both terms are linear in ``w``, so training on
DFT Born charges is a linear least-squares problem, accumulated frame by frame
(:mod:`bornml.models.fit`). Predictions use the adjoint route: ∂q_i/∂x_i is pulled back to
the density coefficients and then to the pair vectors in one pass, never materialising
descriptor gradients.
"""

import numpy as np
from tqdm.auto import tqdm

from .. import keys
from ..descriptors._kernels import pair_feature_jacobian
from ..descriptors.species_channels import species_mixing
from ..descriptors.soap import (FrameExpansion, SoapSettings, feature_to_matrices,
                                power_spectrum, power_spectrum_vjp)
from ..errors import BornDataError
from .bec_assembly import assemble_bec
from .bec_assembly import dipole_derivative as bec_dipole_derivative
from .fit import NormalEquations, solve_regularised
from .kernel import (contracted_weighted_gradient, contracted_weights, kernel,
                     kernel_weighted_gradient, normalise)
from ..memory import FLOAT, check_memory
from .sparsify import METHODS, select_sparse
from .training_data import source_of as _source
from .training_data import predict_frames, training_species

REGULARISERS = ("kernel", "identity")


def asr_corrected(bec):
    """Subtract the mean over atoms: the DFT targets obey the acoustic sum rule exactly."""
    return bec - bec.mean(axis=0)


def accumulate_equations(model, frames, fixed_charges=None):
    """One pass over ``frames`` with ``model.design_matrix`` (shared by every kernel model).

    Returns ``(eqs, offset)``: ``eqs["bec"]`` the normal equations of the ASR-corrected Born
    charges (all design columns), ``eqs["charge"]`` those of q'_i − tr(Z_i)/3 (the columns
    of the charge design), and, when ``fixed_charges(frame)`` gives neutral fixed charges
    (N,) e, ``offset = Σ_frames Φᵀ(q⁰' ⊗ I)`` (else None): the right-hand side for targets
    Z − q⁰'I is ``eqs["bec"].b − offset``.
    """
    n_cols = model.n_design_columns()
    n_max = max(len(f) for f in frames)
    model._check_memory(
        FLOAT * (3 * n_cols ** 2 + 4 * 9 * n_max * n_cols),
        f"normal equations ({n_cols} × {n_cols}) and the design matrix of a {n_max}-atom "
        f"frame ({9 * n_max} × {n_cols})",
        "lower n_sparse (--n-sparse)")
    eqs, offset = None, None
    for index, frame in enumerate(tqdm(frames, desc="fit: design", disable=not model.progress)):
        design, charge_design = model.design_matrix(frame, index)
        if eqs is None:
            eqs = {"bec": NormalEquations(design.shape[1]),
                   "charge": NormalEquations(charge_design.shape[1])}
            offset = None if fixed_charges is None else np.zeros(design.shape[1])
        target = asr_corrected(frame.arrays[keys.BEC])
        eqs["bec"].add(design, target.reshape(-1))
        eqs["charge"].add(charge_design, np.trace(target, axis1=1, axis2=2) / 3.0)
        if fixed_charges is not None:
            offset += design.T @ (fixed_charges(frame)[:, None, None] * np.eye(3)).reshape(-1)
    return eqs, offset


class MonopoleModel:
    """Monopole kernel model of Born effective charges.

    Parameters
    ----------
    cutoff : float
        Radius of the atomic environments (Å).
    max_radial, max_angular : int
        Radial basis functions minus one, and the largest l, of the SOAP density expansion.
    atomic_width : float
        Gaussian width of the atomic density (Å).
    cutoff_width : float
        Width of the shifted-cosine smoothing at the cutoff (Å).
    zeta : int
        Kernel exponent ζ in (x̂_i · x̂_k)^ζ.
    n_sparse : int
        Reference environments per species.
    sparse_method : {"fps", "cur", "random"}
        How reference environments are chosen from the training environments.
    tikhonov : float
        Regularisation ω, relative to tr(ΦᵀΦ)/M (dimensionless).
    regulariser : {"kernel", "identity"}
        ω·wᵀK_MM·w (the Gaussian-process prior of a sparse kernel model) or ω·|w|².
    charge_regularisation : float
        λ_q: weight of Σ_i (q'_i − tr(Z_i)/3)² relative to the Born-charge residual.
    max_pool : int
        Most environments per species the sparse selection looks at (a random subset when
        there are more).
    seed : int
        Seeds the random choices (random sparse points, pool subsets).
    species_channels : "auto", int or None
        Density channels: None = one per element (exact); an int C < S mixes the S element
        channels into C fixed pseudo-species (:mod:`bornml.descriptors.species_channels`), so
        the descriptor size grows with C², not S²; "auto" (default) keeps one channel per
        element up to 4 species and uses 4 pseudo-species above.
    max_memory : float, str or None
        Largest memory (bytes, or "4GB", "500MB") any one step may allocate; None = 80 % of
        the memory available when the step starts. A step that would need more stops with
        :class:`bornml.errors.MemoryLimitError` naming the setting to change.
    progress : bool
        Show progress bars.
    """

    model_type = "q"

    def __init__(self, cutoff=5.0, max_radial=7, max_angular=6, atomic_width=0.3,
                 cutoff_width=0.5, zeta=2, n_sparse=500, sparse_method="fps", tikhonov=1e-5,
                 regulariser="kernel", charge_regularisation=0.0, max_pool=20000, seed=0,
                 species_channels="auto", max_memory=None, progress=False):
        self.cutoff = cutoff
        self.max_radial = max_radial
        self.max_angular = max_angular
        self.atomic_width = atomic_width
        self.cutoff_width = cutoff_width
        self.zeta = zeta
        self.n_sparse = n_sparse
        self.sparse_method = sparse_method
        self.tikhonov = tikhonov
        self.regulariser = regulariser
        self.charge_regularisation = charge_regularisation
        self.max_pool = max_pool
        self.seed = seed
        self.species_channels = species_channels
        self.max_memory = max_memory
        self.progress = progress

    # -- settings ---------------------------------------------------------------------------
    def get_params(self):
        """Constructor settings as a dict (scikit-learn habit)."""
        return {k: getattr(self, k) for k in (
            "cutoff", "max_radial", "max_angular", "atomic_width", "cutoff_width", "zeta",
            "n_sparse", "sparse_method", "tikhonov", "regulariser", "charge_regularisation",
            "max_pool", "seed", "species_channels", "max_memory")}

    @property
    def soap_settings(self):
        return SoapSettings(cutoff=float(self.cutoff), max_radial=int(self.max_radial),
                            max_angular=int(self.max_angular),
                            atomic_width=float(self.atomic_width),
                            cutoff_width=float(self.cutoff_width))

    def _check_settings(self):
        if self.sparse_method not in METHODS:
            raise ValueError(f"sparse_method must be one of {METHODS}, got {self.sparse_method!r}")
        if self.regulariser not in REGULARISERS:
            raise ValueError(f"regulariser must be one of {REGULARISERS}")
        if int(self.zeta) != self.zeta or self.zeta < 1:
            raise ValueError("zeta must be a positive integer")
        if self.cutoff_width >= self.cutoff:
            raise ValueError("cutoff_width must be smaller than cutoff")

    # -- descriptors ------------------------------------------------------------------------
    def _expand(self, frame, index):
        unknown = sorted(set(int(z) for z in frame.numbers) - set(self.species_))
        if unknown:
            raise BornDataError(
                f"species {unknown} not in the model (trained on {list(self.species_)})",
                path=_source(frame, index), key="numbers")
        fe = FrameExpansion(frame, self.species_, self.soap_settings, self.radial_basis_,
                            self.species_mixing_)
        x = power_spectrum(fe.coefficients, self.max_angular)
        xhat, norms = normalise(x)
        return fe, xhat, norms

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, frames):
        """Fit the weights to the Born charges ``frame.arrays["bec"]`` of ``frames``."""
        frames = list(frames)
        self.prepare(frames)
        self.solve(self.accumulate(frames))
        self.n_train_frames_ = len(frames)
        return self

    def prepare(self, frames):
        """Species, radial basis and reference environments from ``frames`` (step 1 of fit)."""
        self._check_settings()
        frames = list(frames)
        self.species_ = training_species(frames)
        st = self.soap_settings
        self.radial_basis_ = st.radial_basis()
        self.species_mixing_ = species_mixing(self.species_, self.species_channels)
        self._select_references(frames)
        return self

    def accumulate(self, frames):
        """Normal equations of ``frames`` for the current references (see :meth:`solve`):
        a dict with ``"bec"`` (Born-charge rows) and ``"charge"`` (q'_i − tr(Z_i)/3 rows).

        Separate from :meth:`fit` so that regularisation can be scanned without recomputing
        the design matrices: ``model.tikhonov = ω; model.solve(eqs)``.
        """
        return accumulate_equations(self, frames)[0]

    def solve(self, eqs):
        """Set the weights from accumulated normal equations with the current ω and λ_q."""
        lam = float(self.charge_regularisation)
        bec, charge = eqs["bec"], eqs["charge"]
        m_total = len(bec.b)
        reg = None
        if self.regulariser == "kernel":
            blocks = [kernel(r, r, self.zeta) for r in self.references_.values()]
            reg = _block_diag(blocks) + 1e-10 * np.eye(m_total)
        scale = np.trace(bec.a) / m_total if np.trace(bec.a) > 0 else 1.0
        w = solve_regularised(bec.a + lam * charge.a, bec.b + lam * charge.b,
                              float(self.tikhonov), reg, scale=scale)
        self._contracted = None
        self.weights_ = {}
        start = 0
        for z, ref in self.references_.items():
            self.weights_[z] = w[start:start + len(ref)]
            start += len(ref)
        return self

    def n_features(self):
        """Power-spectrum length D = (L+1)·CN(CN+1)/2 (C density channels, N radial)."""
        cn = len(self.species_mixing_) * (self.max_radial + 1)
        return (self.max_angular + 1) * cn * (cn + 1) // 2

    def _check_memory(self, n_bytes, what, hint):
        """Stop before a step that needs more than ``max_memory`` (see :mod:`bornml.memory`)."""
        return check_memory(n_bytes, what, hint, self.max_memory)

    def _select_references(self, frames):
        rng = np.random.default_rng(self.seed)
        D = self.n_features()
        n_env = sum(len(f) for f in frames)
        largest = max(min(sum(int(np.sum(f.numbers == z)) for f in frames), self.max_pool)
                      for z in self.species_)
        self._check_memory(
            FLOAT * (n_env * D + largest * D + min(largest, D) ** 2),
            f"reference selection ({n_env} environments × D = {D} power-spectrum features)",
            "use fewer frames for the selection, lower max_pool, or compress the species "
            "channels (species_channels / --species-channels)")
        pool = {z: [] for z in self.species_}
        where = {z: [] for z in self.species_}
        for index, frame in enumerate(tqdm(frames, desc="fit: features",
                                           disable=not self.progress)):
            _, xhat, _ = self._expand(frame, index)
            for z in self.species_:
                atoms = np.flatnonzero(frame.numbers == z)
                pool[z].append(xhat[atoms])
                where[z].append(np.stack([np.full(len(atoms), index), atoms], axis=1))
        self.references_ = {}
        self.reference_sources_ = {}  # (frame index, atom index) of each reference, (M, 2)
        for z in self.species_:
            x = np.concatenate(pool[z])
            src = np.concatenate(where[z])
            if len(x) > self.max_pool:
                keep = np.sort(rng.choice(len(x), self.max_pool, replace=False))
                x, src = x[keep], src[keep]
            idx = select_sparse(x, int(self.n_sparse), self.sparse_method, seed=self.seed)
            self.references_[z] = np.ascontiguousarray(x[idx])
            self.reference_sources_[z] = src[idx]
        self._rows = None

    def n_design_columns(self):
        """Columns of the design matrix: one per reference environment."""
        return sum(len(r) for r in self.references_.values())

    def _reference_rows(self):
        """Reference power-spectrum matrices restricted to one neighbour species' rows:
        ``{(z, s): (M_z, (L+1)·N·S·N)}`` with entry [k, (l, n, a)] = V_k^l[(s, n), a]."""
        if getattr(self, "_rows", None) is None:
            mixing = self.species_mixing_  # (C, S): a neighbour of species s feeds rows Σ_γ U[γ,s]
            C, N = mixing.shape[0], self.max_radial + 1
            m_total = sum(len(r) for r in self.references_.values())
            self._check_memory(
                FLOAT * m_total * (mixing.shape[1] + 2) * (self.max_angular + 1) * N * C * N,
                f"reference matrices of the charge design ({m_total} references)",
                "lower n_sparse (--n-sparse) or compress the species channels "
                "(species_channels / --species-channels)")
            self._rows = {}
            for z, r in self.references_.items():
                mats = feature_to_matrices(r, C * N, self.max_angular)  # (M, L+1, CN, CN)
                mats = mats.reshape(len(r), self.max_angular + 1, C, N, C * N)
                for s in range(mixing.shape[1]):
                    block = np.einsum("c,mlcna->mlna", mixing[:, s], mats)
                    self._rows[z, s] = np.ascontiguousarray(block.reshape(len(r), -1))
        return self._rows

    def design_matrix(self, frame, index=0, expanded=None):
        """Linear maps from the weights to this frame's Born charges and neutral charges.

        Returns ``(Φ (N·9, M), Φ_q (N, M))`` with rows ordered (atom, a, b) row-major and
        columns the reference environments of all species in ``species_`` order.
        ``expanded``: the result of ``_expand(frame)`` when the caller already has it.
        """
        fe, xhat, norms = expanded or self._expand(frame, index)
        S = len(self.species_)
        n_atoms = len(frame)
        coef = fe.coefficients.reshape(n_atoms, fe.n_channels * (self.max_radial + 1), -1)
        factors = 2.0 / np.sqrt(2 * np.arange(self.max_angular + 1) + 1.0)
        periodic = bool(np.any(frame.pbc))
        # S_i·J_p = ∂(x̂_i·x_i)/∂d_p with x̂_i held fixed, every pair at once (adjoint pull-back)
        self_term = fe.norm_pair_gradients(xhat)
        designs, charge_designs = [], []
        for z in self.species_:
            ref = self.references_[z]
            m = len(ref)
            atoms = np.flatnonzero(frame.numbers == z)
            if len(atoms) == 0:  # species absent from this frame: its columns are zero
                designs.append(np.zeros((n_atoms * 9, m)))
                charge_designs.append(np.zeros((n_atoms, m)))
                continue
            k_atoms = xhat[atoms] @ ref.T  # (n_z, M)
            charges = np.zeros((n_atoms, m))
            charges[atoms] = k_atoms ** self.zeta
            # f_ik = ζ k^(ζ-1)/|x_i| and k_ik for every atom (rows of other species unused)
            f_all = np.zeros((n_atoms, m))
            k_all = np.zeros((n_atoms, m))
            f_all[atoms] = self.zeta * k_atoms ** (self.zeta - 1) / norms[atoms, None]
            k_all[atoms] = k_atoms
            # ∂K_ik/∂d_p = f_ik (V_k · W_p − k_ik S_i · J_p): W from the pair Jacobian, V from
            # the references (one GEMM per neighbour species); S_i·J_p (self_term) below
            pair_ids = np.flatnonzero(np.isin(fe.pairs.centers, atoms))
            grads = np.empty((len(pair_ids), 3, m))
            centers = fe.pairs.centers[pair_ids]
            for s in range(S):
                sub = np.flatnonzero(fe._pair_species[pair_ids] == s)
                if len(sub) == 0:
                    continue
                w = pair_feature_jacobian(fe.pair_jacobian_subset(pair_ids[sub]), coef,
                                          centers[sub], factors)
                g = self._reference_rows()[z, s] @ w.reshape(len(sub) * 3, -1).T  # (M, 3n)
                g = g.reshape(m, len(sub), 3).transpose(1, 2, 0)  # (n, 3, M)
                g -= k_all[centers[sub], None, :] * self_term[pair_ids[sub], :, None]
                g *= f_all[centers[sub], None, :]
                grads[sub] = g
            bec, neutral, _ = assemble_bec(charges, grads, fe.pairs.centers[pair_ids],
                                           fe.pairs.neighbors[pair_ids],
                                           fe.pairs.vectors[pair_ids], fe.positions, periodic)
            designs.append(bec.reshape(n_atoms * 9, m))
            charge_designs.append(neutral)
        return np.concatenate(designs, axis=1), np.concatenate(charge_designs, axis=1)

    # -- prediction -------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "weights_"):
            raise RuntimeError("model is not fitted; call fit(frames) or load_model(path)")

    def _charges_and_pair_gradients(self, frame, index=0, expanded=None):
        fe, xhat, norms = expanded or self._expand(frame, index)
        v = np.zeros_like(xhat)
        q = np.zeros(len(frame))
        for z in self.species_:
            atoms = frame.numbers == z
            if not np.any(atoms):
                continue
            contracted = self._contracted_weights().get(z)
            if contracted is not None and len(self.references_[z]) > xhat.shape[1] // 2:
                v[atoms], q[atoms] = contracted_weighted_gradient(
                    xhat[atoms], norms[atoms], contracted, self.zeta)
            else:
                v[atoms], q[atoms] = kernel_weighted_gradient(
                    xhat[atoms], norms[atoms], self.references_[z], self.weights_[z], self.zeta)
        adjoint = power_spectrum_vjp(fe.coefficients, v, self.max_angular)
        return fe, q, fe.pair_vjp(adjoint)

    def _contracted_weights(self):
        """Per species Σ_k w_k x̂_k (ζ=1) or Σ_k w_k x̂_k x̂_kᵀ (ζ=2); reset by :meth:`solve`."""
        if getattr(self, "_contracted", None) is None:
            self._contracted = {
                z: contracted_weights(self.references_[z], self.weights_[z], self.zeta)
                for z in self.species_}
        return self._contracted

    def predict_frame(self, frame, index=0):
        """Prediction for one ``ase.Atoms``: dict with ``charges`` (N,) e, ``bec`` (N, 3, 3)
        e, ``asr_residual`` (3, 3) e (what the sum-rule projection removed; 0 for molecules)."""
        self._check_fitted()
        fe, q, g = self._charges_and_pair_gradients(frame, index)
        bec, neutral, residual = assemble_bec(q, g, fe.pairs.centers, fe.pairs.neighbors,
                                              fe.pairs.vectors, fe.positions,
                                              bool(np.any(frame.pbc)))
        return {"charges": neutral, "bec": bec, "asr_residual": residual}

    def predict(self, frames):
        """Predictions for a frame (one dict) or a list of frames (one dict per frame)."""
        return predict_frames(self, frames)

    def dipole_derivative(self, atoms, velocities):
        """Ṁ = Σ_j Z_j v_j (e·Å/fs) for velocities (N, 3) Å/fs, shape (3,).

        One adjoint pass for the pair gradients of the charges, then a contraction with the
        velocities pair by pair; the (N, 3, 3) Born charges are never assembled.
        """
        self._check_fitted()
        fe, q, g = self._charges_and_pair_gradients(atoms)
        return bec_dipole_derivative(q, g, fe.pairs.centers, fe.pairs.neighbors,
                                     fe.pairs.vectors, fe.positions, bool(np.any(atoms.pbc)),
                                     np.asarray(velocities, dtype=float))

    # -- persistence ------------------------------------------------------------------------
    def _archive_arrays(self):
        arrays = descriptor_arrays(self)
        for z in self.species_:
            arrays[f"references_{z}"] = self.references_[z]
            arrays[f"weights_{z}"] = self.weights_[z]
        return arrays

    def save(self, path):
        """Write the fitted model to ``path`` (npz + JSON metadata, never a pickle; see
        :mod:`bornml.models.serialization`)."""
        from .serialization import write_archive

        self._check_fitted()
        write_archive(path, self, self._archive_arrays(), self._archive_extra())

    def _archive_extra(self):
        return {}

    @classmethod
    def _from_archive(cls, meta, arrays, path):
        model = cls(**meta["params"])
        model._load_arrays(meta, arrays, path)
        return model

    def _load_descriptor(self, meta, arrays):
        """Species and the radial-basis table from a model file."""
        from ..descriptors.radial import RadialBasis

        self.species_ = tuple(int(z) for z in meta["species"])
        self.radial_basis_ = RadialBasis(float(meta["params"]["cutoff"]), arrays["radial_grid"],
                                         arrays["radial_values"], arrays["radial_derivatives"])
        self.species_mixing_ = arrays.get("species_mixing", np.eye(len(self.species_)))

    def _load_arrays(self, meta, arrays, path):
        self._load_descriptor(meta, arrays)
        self.references_ = {z: arrays[f"references_{z}"] for z in self.species_}
        self.weights_ = {z: arrays[f"weights_{z}"] for z in self.species_}


def descriptor_arrays(model):
    """Arrays every kernel model file holds: the radial-basis table and the species mixing
    U (C, S) of the density channels."""
    return {"radial_grid": model.radial_basis_.grid,
            "radial_values": model.radial_basis_.values,
            "radial_derivatives": model.radial_basis_.derivatives,
            "species_mixing": model.species_mixing_}


def _block_diag(blocks):
    import scipy.linalg

    return scipy.linalg.block_diag(*blocks)


__all__ = ["MonopoleModel", "asr_corrected"]
