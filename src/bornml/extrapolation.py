"""Extrapolation warnings of ``bornml predict`` and ``bornml ir --model``.

A frame is flagged when its uncertainty score (RMS posterior std of its Born-charge
components, e; :mod:`bornml.models.posterior`) exceeds the model's threshold: the 99th
percentile of the left-out scores of its training frames, stored in the model file at fit.
"""

import numpy as np


def has_posterior(model):
    """True for models that can score frames (kernel models fitted with this bornml)."""
    return getattr(model, "posterior_", None) is not None


def why_no_posterior(model):
    """The reason a model cannot give uncertainties (for the exit-2 message)."""
    kind = getattr(model, "model_type", type(model).__name__)
    if str(kind).startswith("mace"):
        return (f"the {kind} model has no posterior (uncertainties come from the kernel "
                "models q, p, q+p)")
    return ("the model file has no posterior (written by an older bornml): retrain it to get "
            "uncertainties")


def frame_score(model, atoms, index=0, method="sampled"):
    """Uncertainty score (e) of one frame by the route ``method`` ("sampled", the default,
    or "exact"; :mod:`bornml.models.posterior`)."""
    from . import keys

    return model.posterior_.uncertainty(model, atoms, index, method=method)[
        keys.UNCERTAINTY_SCORE]


def summary(scores, threshold, labels=None):
    """One line: how many of the scored frames exceed ``threshold`` and the worst (with its
    label: frame index by default); '' when nothing is flagged or there is no threshold."""
    scores = np.asarray(scores, dtype=float)
    finite = np.isfinite(scores)
    if threshold is None or not np.any(finite):
        return ""
    flagged = finite & (scores > threshold)
    if not np.any(flagged):
        return ""
    worst = int(np.nanargmax(np.where(finite, scores, -np.inf)))
    label = labels[worst] if labels is not None else f"frame {worst}"
    return (f"warning: {int(flagged.sum())} of {int(finite.sum())} scored frames lie outside "
            f"the training data (uncertainty score above the model's threshold "
            f"{threshold:.4g} e, the 99th percentile of its training frames); worst: {label}, "
            f"score {scores[worst]:.4g} e ({scores[worst] / threshold:.1f}× the threshold). "
            "Their Born charges are extrapolations: consider labelling such frames "
            "(bornml select)")


SIDE_SUFFIX = "_uncertainty.csv"  #: ``bornml ir`` side file: OUTPUT stem + this


class ScoredProvider:
    """The ``bec_provider`` of :func:`bornml.spectra.ir.ir_spectrum` for a kernel model: Ṁ as
    ``model.dipole_derivative``, plus the uncertainty score of every ``every``-th sample (the
    frame, or the half step's midpoint geometry), kept with Ṁ for :meth:`write`. Samples are
    numbered in the order read, trajectories one after the other."""

    def __init__(self, model, every=10):
        self.model = model
        self.every = max(1, int(every))
        self.rows = []  # [sample, Ṁx, Ṁy, Ṁz, score or nan]

    def dipole_derivative(self, atoms, velocities):
        mdot = self.model.dipole_derivative(atoms, velocities)
        k = len(self.rows)
        score = frame_score(self.model, atoms, k) if k % self.every == 0 else float("nan")
        self.rows.append([k, *np.asarray(mdot, dtype=float), score])
        return mdot

    @property
    def scores(self):
        return np.array([r[4] for r in self.rows])

    def write(self, path):
        """CSV: sample, Ṁ (e·Å/fs), uncertainty score (e; empty where not scored) and
        whether it is above the model's threshold; written atomically."""
        from .fileutils import atomic_path

        threshold = self.model.posterior_.threshold
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            fh.write("sample,mdot_x_eA_per_fs,mdot_y_eA_per_fs,mdot_z_eA_per_fs,"
                     "uncertainty_score_e,extrapolating\n")
            for k, x, y, z, score in self.rows:
                flag = "" if not np.isfinite(score) or threshold is None else \
                    str(int(score > threshold))
                text = "" if not np.isfinite(score) else f"{score:.6g}"
                fh.write(f"{int(k)},{x:.8g},{y:.8g},{z:.8g},{text},{flag}\n")

    def summary(self):
        labels = [f"sample {int(r[0])}" for r in self.rows]
        return summary(self.scores, self.model.posterior_.threshold, labels)
