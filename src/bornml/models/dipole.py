"""The dipole (p) and combined (q+p) kernel models: presets of
:class:`~bornml.models.kernel_estimator.KernelBECModel`.

- :class:`DipoleModel` ("p"): fixed species charges (:mod:`~bornml.models.fixed_charge_term`)
  plus λ=1 atomic dipoles (:mod:`~bornml.models.dipole_term`):
  Z_j = q⁰'_j I + Σ_i ∂p_i/∂r_j;
- :class:`CombinedModel` ("q+p"): environment-dependent charges
  (:mod:`~bornml.models.charge_term`) and the dipoles, fitted jointly with their own ω_q, ω_p
  and the charge regularisation λ_q (which fixes the gauge: how the response is split between
  charges and dipoles — a choice of the model, not an observable).
"""

from .charge_term import ChargeTerm
from .dipole_term import DipoleTerm
from .fixed_charge_term import FixedChargeTerm
from .kernel_estimator import SUM_RULE_WEIGHT, KernelBECModel
from .monopole import SOAP_DOC


class DipoleModel(KernelBECModel):
    __doc__ = """Dipole kernel model: fixed species charges plus λ=1 atomic dipoles.

    Parameters
    ----------""" + SOAP_DOC + """
    tikhonov : float or None
        Regularisation ω_p of the dipole weights, relative to tr(Φ_pᵀΦ_p)/n_p; None
        (default) = chosen by k-fold cross-validation on the training frames.
    charges : dict or None
        Fixed charges q⁰ by element symbol or atomic number (e), e.g. ``{"O": -2, "H": 1}``;
        species not given get the training-set mean of tr(Z_i)/3. Made neutral per frame.
    dipole_zeta : int
        ζ_p ≥ 1 of the dipole kernel K¹(i, k) = X̂_i X̂_kᵀ·(x̂_i·x̂_k)^(ζ_p−1): 1 (default) =
        the linear λ-SOAP kernel (fitted in the span of the reference features); > 1 = the
        λ-SOAP kernel times the scalar kernel (3 weights per reference, slower to fit;
        :mod:`bornml.models.dipole_term`).
    """

    model_type = "p"

    def __init__(self, cutoff=5.0, max_radial=7, max_angular=6, atomic_width=0.3,
                 cutoff_width=0.5, n_sparse=500, sparse_method="fps", tikhonov=None,
                 charges=None, dipole_zeta=1, max_pool=20000, seed=0,
                 species_channels="auto", max_memory=None, cv_folds=5, progress=False):
        self._store_params(locals())

    def _make_terms(self):
        return {"fixed_charges": FixedChargeTerm(self.charges),
                "dipoles": DipoleTerm(getattr(self, "dipole_route", "auto"),
                                      getattr(self, "dipole_zeta", 1))}

    def _omegas(self, values):
        return {"dipoles": float(values["tikhonov"])}


class CombinedModel(KernelBECModel):
    __doc__ = """Combined kernel model: environment-dependent charges and λ=1 atomic dipoles,
    fitted jointly.

    Parameters
    ----------""" + SOAP_DOC + """
    zeta : int
        Exponent ζ of the charge kernel.
    dipole_zeta : int
        ζ_p ≥ 1 of the dipole kernel K¹(i, k) = X̂_i X̂_kᵀ·(x̂_i·x̂_k)^(ζ_p−1) (1, the default:
        linear; see :class:`DipoleModel`).
    tikhonov : float or None
        Regularisation ω_q of the charge weights, relative to tr(Φ_qᵀΦ_q)/M.
    dipole_tikhonov : float or None
        Regularisation ω_p of the dipole weights, relative to tr(Φ_pᵀΦ_p)/n_p.
    regulariser : {"kernel", "identity"}
        Prior of the charge weights: ω_q·wᵀK_MM·w or ω_q·|w|².
    charge_regularisation : float or None
        λ_q: pulls the charges towards tr(Z_i)/3 of the training data.
    sum_rule_weight : float
        μ ≥ 0: weight of the acoustic-sum-rule residual of the charge term in the fit (see
        :class:`~bornml.models.monopole.MonopoleModel`).

    Notes
    -----
    Regularisation settings left at None (the default) are chosen by k-fold cross-validation
    on the training frames (:mod:`bornml.models.cross_validation`).
    """

    model_type = "q+p"

    def __init__(self, cutoff=5.0, max_radial=7, max_angular=6, atomic_width=0.3,
                 cutoff_width=0.5, zeta=2, n_sparse=500, sparse_method="fps", tikhonov=None,
                 dipole_tikhonov=None, regulariser="kernel", charge_regularisation=None,
                 sum_rule_weight=SUM_RULE_WEIGHT, dipole_zeta=1, max_pool=20000, seed=0,
                 species_channels="auto", max_memory=None, cv_folds=5, progress=False):
        self._store_params(locals())

    def _make_terms(self):
        return {"charges": ChargeTerm(self.zeta, self.regulariser),
                "dipoles": DipoleTerm(getattr(self, "dipole_route", "auto"),
                                      getattr(self, "dipole_zeta", 1))}

    def _omegas(self, values):
        return {"charges": float(values["tikhonov"]),
                "dipoles": float(values["dipole_tikhonov"])}


__all__ = ["CombinedModel", "DipoleModel"]
