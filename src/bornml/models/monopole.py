"""The monopole (charge) kernel model: Born charges from environment-dependent charges.

    q_i = Σ_{k ∈ refs(s_i)} w_k (x̂_i · x̂_k)^ζ      (SOAP power spectrum x_i, same species)
    Z_j = q'_j I + Σ_i (r_i − r_j) ⊗ ∂q_i/∂r_j + (neutrality / sum-rule term)

A preset of :class:`~bornml.models.kernel_estimator.KernelBECModel` with one term, the
:class:`~bornml.models.charge_term.ChargeTerm`.
"""

from .charge_term import ChargeTerm
from .equations import asr_corrected
from .kernel_estimator import SUM_RULE_WEIGHT, KernelBECModel
from .scalar_kernel import REGULARISERS

SOAP_DOC = """
    cutoff : float
        Radius of the atomic environments (Å).
    max_radial, max_angular : int
        Radial basis functions minus one, and the largest l, of the SOAP density expansion.
    atomic_width : float
        Gaussian width of the atomic density (Å).
    cutoff_width : float
        Width of the shifted-cosine smoothing at the cutoff (Å).
    n_sparse : int
        Reference environments per species.
    sparse_method : {"fps", "cur", "random"}
        How reference environments are chosen from the training environments.
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
        Largest memory (bytes, or "4GB", "500MB") one step may allocate; None = 80 % of the
        memory available when the step starts. A step that would need more stops before
        allocating, with :class:`bornml.errors.MemoryLimitError` naming the setting to change.
    cv_folds : int
        Folds of the cross-validation that chooses regularisation settings left at None
        (frames dealt round-robin; the normal equations are accumulated once).
    progress : bool
        Show progress bars."""


class MonopoleModel(KernelBECModel):
    __doc__ = """Monopole kernel model of Born effective charges (charges only).

    Parameters
    ----------""" + SOAP_DOC + """
    zeta : int
        Kernel exponent ζ in (x̂_i · x̂_k)^ζ.
    tikhonov : float or None
        Regularisation ω_q, relative to tr(Φ_qᵀΦ_q)/M (dimensionless); None (default) =
        chosen by k-fold cross-validation on the training frames.
    regulariser : {"kernel", "identity"}
        ω·wᵀK_MM·w (the Gaussian-process prior of a sparse kernel model) or ω·|w|².
    charge_regularisation : float or None
        λ_q: weight of Σ_i (q'_i − tr(Z_i)/3)² relative to the Born-charge residual; None
        (default) = chosen by cross-validation.
    sum_rule_weight : float
        μ ≥ 0: weight of the acoustic-sum-rule residual in the fit. In a periodic frame the
        part of Z that the sum-rule projection removes (R/N per atom, R = Σ_j Z_j^local =
        −Σ_j r_j ⊗ ∂Q/∂r_j) enters the least-squares objective as μ·Σ_j |R/N|², so the model
        learns a conserved total charge instead of relying on the projection. 0 = the
        projection alone. See :data:`SUM_RULE_WEIGHT` for the default.
    """

    model_type = "q"

    def __init__(self, cutoff=5.0, max_radial=7, max_angular=6, atomic_width=0.3,
                 cutoff_width=0.5, zeta=2, n_sparse=500, sparse_method="fps", tikhonov=None,
                 regulariser="kernel", charge_regularisation=None,
                 sum_rule_weight=SUM_RULE_WEIGHT, max_pool=20000, seed=0,
                 species_channels="auto", max_memory=None, cv_folds=5, progress=False):
        self._store_params(locals())

    def _make_terms(self):
        return {"charges": ChargeTerm(self.zeta, self.regulariser)}

    def _omegas(self, values):
        return {"charges": float(values["tikhonov"])}


__all__ = ["REGULARISERS", "MonopoleModel", "asr_corrected"]
