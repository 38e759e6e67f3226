"""Predictive uncertainty of the kernel models (q, p, q+p): the Bayesian posterior of the weights.

The kernel models are linear in their weights w (n,): the final solve minimises
``|Φw − z|² + wᵀPw`` with P = ω_q s_q R_q ⊕ ω_p s_p R_p + λ_q Φ_cᵀΦ_c + μ SᵀS (the prior and the
pseudo-observations of :mod:`bornml.models.equations`). Read as Bayesian linear regression —
Gaussian noise of variance σ² on every ASR-corrected Born-charge component and the prior
w ~ N(0, σ² P⁻¹) — the posterior of the weights is

    w ~ N(w*, C),   C = σ² A_reg⁻¹,   A_reg = ΦᵀΦ + P  (the matrix the solve factorises)

**Noise level (choice).** σ² = SSE / (n_rows − γ): the training residual sum of squares over the
Born-charge rows divided by the rows minus the effective number of parameters
γ = tr(A_reg⁻¹ ΦᵀΦ) (the unbiased residual estimate of ridge regression). It is cheap (SSE
and ΦᵀΦ are in the normal equations), needs no second optimisation, and keeps the ω chosen by
cross-validation; the marginal-likelihood optimum of σ² at the same ω/σ² ratio would instead
count the prior term wᵀPw as residual. The residuals of a kernel model are model error, not
DFT noise, and the 9N components of a frame are correlated: calibration is measured, not
assumed (``benchmarks/uncertainty.py``).

**What prediction reports.** For a frame with design rows Φ_f (9N, n) (Born charges) and
Φ_q (N, n) (neutral charges), in the weights' coordinates:

- ``bec_std`` (N, 3, 3) e = sqrt(diag(Φ_f C Φ_fᵀ)): the std of the model's Z (epistemic);
  the std of a DFT label about the prediction is sqrt(bec_std² + σ²) (``noise_std``);
- ``charges_std`` (N,) e = sqrt(diag(Φ_q C Φ_qᵀ)) (zero for the fixed charges of p);
- ``uncertainty_score`` e = RMS of ``bec_std`` over the frame's 9N components.

**Routes (``predict(return_std=True, uncertainty=...)``).**

- ``"sampled"`` (default): K = :data:`~bornml.models.sampled_uncertainty.DEFAULT_SAMPLES`
  posterior weight draws pushed through the adjoint prediction together
  (:mod:`bornml.models.sampled_uncertainty`): each std has a relative sampling error
  ≈ 1/sqrt(2K) (18 % for K = 16), the score far less (it averages 9N components); the
  draws are the same for every frame (a fixed seed) and the cost is 3–5 plain predictions
  for q (measured in ``benchmarks/uncertainty.py``).
- ``"exact"``: the frame's design rows (the same code as the fit) and one triangular solve
  with the stored Cholesky factor L of A_reg (n², packed, in the model file); 16–26 plain
  predictions for q (``benchmarks/uncertainty.py``).

**Extrapolation threshold.** At fit time the scores of up to :data:`THRESHOLD_FRAMES` evenly
spaced training frames are computed *as if each frame had been left out* (leave-one-frame-out
by the rank-9N downdate: mean variance σ² Σ λ/(1 − λ)/9N with λ the eigenvalues of
Φ_f A_reg⁻¹ Φ_fᵀ, the charge-regularisation and sum-rule rows of the frame kept); the
threshold is their 99th percentile (:data:`THRESHOLD_PERCENTILE`). A frame above it is
flagged as an extrapolation. The threshold is computed exactly, once, at fit time; the sampled
score of a frame is compared with it as it is: its square is an unbiased estimate of the exact
score's square (the ratio of the two is measured in ``benchmarks/uncertainty.py``).
"""

import numpy as np
import scipy.linalg

from .. import keys

THRESHOLD_FRAMES = 20  #: training frames whose left-out scores set the threshold
THRESHOLD_PERCENTILE = 99.0  #: percentile of those scores used as the threshold
METHODS = ("sampled", "exact")  #: routes of ``predict(return_std=True, uncertainty=...)``
DEFAULT_METHOD = "sampled"


def _cholesky(matrix):
    """Lower Cholesky factor of a symmetric positive (semi)definite matrix, with the same
    ridge ladder as :func:`bornml.models.fit.solve_in_place` when it is singular."""
    mean_diag = np.trace(matrix) / len(matrix)
    for jitter in (0.0, 1e-12, 1e-10, 1e-8, 1e-6):
        try:
            return np.linalg.cholesky(matrix + jitter * mean_diag * np.eye(len(matrix)))
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError("the regularised normal matrix is not positive definite")


def weight_design(model, ctx, frame):
    """(Φ (N·9, n), Φ_q (N, n) or None): the learnt terms' Born-charge rows and the charge
    term's neutral-charge rows of one frame in the weights' coordinates (after each term's
    projection), columns in the order of the fitted weights."""
    designs, charge_rows, start = [], None, 0
    for term in model._learnt():
        if not hasattr(term, "check_memory"):  # a loaded term
            term.check_memory = model._check_memory
        out, charges, _ = term.design(ctx, frame)
        basis = term.projection()
        if basis is not None:
            out = out @ basis
        if charges is not None:
            charge_rows = (start, charges)
        designs.append(out)
        start += out.shape[1]
    design = np.concatenate(designs, axis=1)
    if charge_rows is None:
        return design, None
    offset, rows = charge_rows
    full = np.zeros((len(frame), design.shape[1]))
    full[:, offset:offset + rows.shape[1]] = rows
    return design, full


def model_weights(model):
    """The fitted weights (n,) in design-column order."""
    return np.concatenate([t.design_weights() for t in model._learnt()])


class Posterior:
    """Posterior of a kernel model's weights (see module docstring).

    ``factor``: lower Cholesky factor L (n, n) of A_reg; ``noise_variance``: σ² (e²);
    ``effective_parameters``: γ; ``n_rows``: training Born-charge rows; ``training_scores``:
    left-out scores (e) of training frames; ``threshold``: their 99th percentile (e) or None.
    """

    def __init__(self, factor, noise_variance, effective_parameters=float("nan"),
                 n_rows=0, training_scores=None):
        self.factor = np.asarray(factor, dtype=float)
        self.noise_variance = float(noise_variance)
        self.effective_parameters = float(effective_parameters)
        self.n_rows = int(n_rows)
        self.training_scores = (np.zeros(0) if training_scores is None
                                else np.asarray(training_scores, dtype=float))

    @property
    def noise_std(self):
        """σ (e): the std of a DFT label about the best model of this form."""
        return float(np.sqrt(self.noise_variance))

    @property
    def threshold(self):
        if len(self.training_scores) == 0:
            return None
        return float(np.percentile(self.training_scores, THRESHOLD_PERCENTILE))

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def from_equations(cls, model, eqs):
        """Posterior of ``model`` just solved from ``eqs`` (same regularisation values)."""
        terms = [t.name for t in model._learnt()]
        values = model.regularisation_
        lhs = eqs.regularised_matrix(
            terms, model._regularisers(), model._omegas(values),
            float(values.get("charge_regularisation") or 0.0), None,
            float(getattr(model, "sum_rule_weight", 0.0)))
        factor = _cholesky(lhs)
        del lhs
        w = model_weights(model)
        fixed = model.terms_.get("fixed_charges")
        charges = dict(fixed.charges) if fixed is not None else None
        sse, rows = 0.0, 0
        for fold in range(len(eqs.parts)):
            s, r = eqs.validation_error(terms, w, fold, charges)
            sse, rows = sse + s, rows + r
        data = eqs._matrix(eqs.columns(terms), None)  # ΦᵀΦ
        gamma = float(np.trace(scipy.linalg.cho_solve((factor, True), data,
                                                      check_finite=False)))
        del data
        noise = sse / max(rows - gamma, 1.0)
        return cls(factor, noise, gamma, rows)

    def whiten(self, design):
        """B = Φ L⁻ᵀ (rows, n): rows in the coordinates where C = σ² I."""
        return scipy.linalg.solve_triangular(self.factor, design.T, lower=True,
                                             check_finite=False).T

    def left_out_score(self, design):
        """Score (e) of a training frame with design rows ``design`` as if it had been left
        out of the fit (rank-9N downdate, see module docstring)."""
        b = self.whiten(design)
        gram = b @ b.T if b.shape[0] <= b.shape[1] else b.T @ b
        lam = np.clip(np.linalg.eigvalsh(gram), 0.0, 1.0 - 1e-9)
        return float(np.sqrt(self.noise_variance * np.sum(lam / (1.0 - lam)) / len(design)))

    def set_training_scores(self, model, frames):
        """Left-out scores of up to :data:`THRESHOLD_FRAMES` evenly spaced ``frames`` (the
        training frames of the fit)."""
        picks = np.unique(np.round(np.linspace(0, len(frames) - 1,
                                               min(THRESHOLD_FRAMES, len(frames)))).astype(int))
        scores = []
        for i in picks:
            design, _ = weight_design(model, model.reference_set_.expand(frames[i], int(i)),
                                      frames[i])
            scores.append(self.left_out_score(design))
        self.training_scores = np.array(scores)
        return self

    # -- prediction -------------------------------------------------------------------------
    def frame_uncertainty(self, model, frame, index=0, ctx=None):
        """{bec_std (N, 3, 3), charges_std (N,), uncertainty_score} of one frame, e (exact
        route); ``ctx``: the frame's expansion when the caller has it."""
        if ctx is None:
            ctx = model.reference_set_.expand(frame, index)
        design, charge_rows = weight_design(model, ctx, frame)
        var = self.noise_variance * np.sum(self.whiten(design) ** 2, axis=1)
        n_atoms = len(frame)
        if charge_rows is None:
            charges_std = np.zeros(n_atoms)
        else:
            charges_std = np.sqrt(self.noise_variance
                                  * np.sum(self.whiten(charge_rows) ** 2, axis=1))
        return {keys.BEC_STD: np.sqrt(var).reshape(n_atoms, 3, 3),
                keys.CHARGES_STD: charges_std,
                keys.UNCERTAINTY_SCORE: float(np.sqrt(var.mean()))}

    def weight_deviations(self, n_samples=None, seed=None):
        """δw (n, K) = σ L⁻ᵀ ε: posterior weight draws minus the fitted weights
        (:func:`bornml.models.sampled_uncertainty.weight_deviations`), kept per (K, seed)."""
        return self._sampling(None, n_samples, seed)[0]

    def _sampling(self, model, n_samples, seed):
        """(δw, the terms' frame-independent operators for δw or None without ``model``),
        kept for the last (K, seed)."""
        from . import sampled_uncertainty as su

        key = (su.DEFAULT_SAMPLES if n_samples is None else int(n_samples),
               su.DEFAULT_SEED if seed is None else int(seed))
        cache = self.__dict__.setdefault("_sampling_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = [su.weight_deviations(self, *key), None]
        if model is not None and cache[key][1] is None:
            cache[key][1] = su.prepare(model, cache[key][0])
        return cache[key]

    def sampled_frame_uncertainty(self, model, frame, index=0, ctx=None, n_samples=None,
                                  seed=None):
        """{bec_std (N, 3, 3), charges_std (N,), uncertainty_score} of one frame, e (sampled
        route, :mod:`bornml.models.sampled_uncertainty`)."""
        from .sampled_uncertainty import sampled_frame_uncertainty

        if ctx is None:
            ctx = model.reference_set_.expand(frame, index)
        dw, prepared = self._sampling(model, n_samples, seed)
        return sampled_frame_uncertainty(model, ctx, frame, dw, prepared)

    def uncertainty(self, model, frame, index=0, ctx=None, method=DEFAULT_METHOD):
        """The std of one frame by route ``method`` (:data:`METHODS`)."""
        check_method(method)
        route = self.frame_uncertainty if method == "exact" else self.sampled_frame_uncertainty
        return route(model, frame, index, ctx)

    # -- files ------------------------------------------------------------------------------
    def arrays(self, model):
        """Packed lower triangle of L (n(n+1)/2,), the training scores and, with a dipole
        term on a span route, its bases ``posterior_dipole_basis_<Z>`` (F, r_Z) (the posterior
        lives in those coordinates; the "kernel" route's coordinates are its weights)."""
        rows, cols = np.tril_indices(len(self.factor))
        out = {"posterior_factor": self.factor[rows, cols],
               "posterior_training_scores": self.training_scores}
        dipoles = model.terms_.get("dipoles")
        if dipoles is not None:
            out.update({f"posterior_dipole_basis_{z}": b for z, b in dipoles.bases.items()})
        return out

    def extra(self, model):
        info = {"n": len(self.factor), "noise_variance": self.noise_variance,
                "effective_parameters": self.effective_parameters, "n_rows": self.n_rows}
        dipoles = model.terms_.get("dipoles")
        if dipoles is not None:
            info["dipole_route"] = dipoles.route_
        return {"posterior": info}

    @classmethod
    def from_arrays(cls, arrays, extra, model):
        """The posterior stored by :meth:`arrays` / :meth:`extra` (the dipole term's bases
        restored), or None when the file has none."""
        info = extra.get("posterior")
        if info is None or "posterior_factor" not in arrays:
            return None
        n = int(info["n"])
        factor = np.zeros((n, n))
        factor[np.tril_indices(n)] = arrays["posterior_factor"]
        dipoles = model.terms_.get("dipoles")
        if dipoles is not None and info["dipole_route"] != "kernel":  # "kernel": no bases
            dipoles.bases = {z: arrays[f"posterior_dipole_basis_{z}"]
                             for z in model.reference_set_.species}
            dipoles.route_ = info["dipole_route"]
        return cls(factor, info["noise_variance"], info.get("effective_parameters", np.nan),
                   info.get("n_rows", 0), arrays.get("posterior_training_scores"))


def require_posterior(model):
    """The model's posterior, or a clear error for models without one."""
    posterior = getattr(model, "posterior_", None)
    if posterior is None:
        raise RuntimeError(f"{type(model).__name__} has no posterior for uncertainties: "
                           "refit it with this bornml (kernel models q, p, q+p keep one)")
    return posterior


def check_method(method):
    """ValueError naming the routes for an unknown ``uncertainty`` method."""
    if method not in METHODS:
        raise ValueError(f"uncertainty must be one of {METHODS}, got {method!r}")


def predict_with_std(model, frames, method=DEFAULT_METHOD):
    """``model.predict(frames)`` plus the std of every frame by route ``method``
    (:data:`METHODS`), the descriptor of each frame expanded once; one dict for one
    ``ase.Atoms``, a list for a list."""
    from ase import Atoms
    from tqdm.auto import tqdm

    check_method(method)
    posterior = require_posterior(model)
    single = isinstance(frames, Atoms)
    out = []
    for i, frame in enumerate(tqdm([frames] if single else list(frames), desc="predict ± σ",
                                   disable=None if model.progress else True)):
        ctx = model.reference_set_.expand(frame, i)
        pred = model.predict_frame(frame, i, ctx=ctx)
        pred.update(posterior.uncertainty(model, frame, i, ctx, method))
        out.append(pred)
    return out[0] if single else out


def sampled_uncertainty(model, frame, n_samples=16, seed=0):
    """{bec_std, charges_std, uncertainty_score} of one frame from ``n_samples`` posterior
    weight draws (seed ``seed``) through the batched adjoint route
    (:mod:`bornml.models.sampled_uncertainty`): an estimate of
    :meth:`Posterior.frame_uncertainty` with relative error ≈ 1/sqrt(2K) per std."""
    return require_posterior(model).sampled_frame_uncertainty(model, frame, 0, None,
                                                              n_samples, seed)
