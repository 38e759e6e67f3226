"""Plots of IR spectra, and reading experimental reference spectra.

Both axes in cm⁻¹: wavenumber ν̃ (x) and n(ν̃)·α(ν̃) (y), α being the Napierian intensity
absorption coefficient and n the real refractive index.
"""

import math
from pathlib import Path

import numpy as np

from ..errors import BornDataError
from ..fileutils import atomic_path

BERTIE_LAN_ALPHA_N_SCALE = 1000.0
"""The Bertie & Lan 1996 ``spectrum.csv`` column ``alpha-n`` holds α·n / 1000 (α in cm⁻¹).

Determined by comparing with ``absorption.csv`` (α in cm⁻¹, itself equal to 4π ν̃ k within
0.3 % against ``imaginary-refractive-index.csv``) and ``real-refractive-index.csv`` (n) of the
same data set, on the same 904-point wavenumber grid: α·n / alpha-n = 1000.000 at every point
(min 999.99999, max 1000.00000). So n·α [cm⁻¹] = 1000 × alpha-n; the OH-stretch maximum is
then ≈ 1.74e4 cm⁻¹ at 3391 cm⁻¹."""


def read_experiment_csv(path):
    """Read a two-column experimental spectrum; return ``(wavenumber_cm1, n_alpha_cm1)``.

    The first line may be a header. A header ``cm-1,alpha-n`` marks the Bertie & Lan table
    (values α·n/1000), which is multiplied by :data:`BERTIE_LAN_ALPHA_N_SCALE` to give n·α in
    cm⁻¹; any other file is taken to hold wavenumber (cm⁻¹) and n·α (cm⁻¹) already.
    """
    path = Path(path)
    try:
        with open(path) as fh:
            first = fh.readline().strip()
    except OSError as exc:
        raise BornDataError(f"cannot read experimental spectrum: {exc}", path=path) from exc
    header = None
    try:
        [float(x) for x in first.replace(";", ",").split(",")]
    except ValueError:
        header = [h.strip().lower() for h in first.split(",")]
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=1 if header else 0, ndmin=2)
    except ValueError as exc:
        raise BornDataError(f"not a two-column numeric CSV: {exc}", path=path) from exc
    if data.shape[1] < 2 or len(data) == 0:
        raise BornDataError("expected two columns: wavenumber (cm⁻¹), n·α (cm⁻¹)", path=path)
    nu, y = data[:, 0], data[:, 1]
    if header and len(header) >= 2 and header[1] in ("alpha-n", "alpha*n/1000"):
        y = y * BERTIE_LAN_ALPHA_N_SCALE
    return nu, y


PLOT_RANGE_FRACTION = 0.01
"""The x axis ends past the highest wavenumber where the mean reaches this fraction of its
maximum (plus 15 % and rounded up to 100 cm⁻¹), never past the data."""


def plot_range_cm1(spectrum):
    """``(0, upper)``: the wavenumber range of the plot, fitted to where the spectrum has
    intensity (see :data:`PLOT_RANGE_FRACTION`); the whole axis when it has none."""
    nu = np.asarray(spectrum.wavenumber_cm1, dtype=float)
    y = np.asarray(spectrum.n_alpha_cm1, dtype=float)
    top = float(np.nanmax(nu))
    finite = np.isfinite(y)
    if not finite.any() or not np.nanmax(y) > 0:
        return 0.0, top
    above = nu[finite & (y >= PLOT_RANGE_FRACTION * np.nanmax(y))]
    upper = np.ceil((1.15 * above.max() + 1.0) / 100.0) * 100.0
    return 0.0, float(min(upper, top))


def plot_ir(spectrum, path, experiment=None, *, label="MD", experiment_label="experiment",
            title=None):
    """Plot ``spectrum`` (an :class:`~bornml.spectra.ir.IRSpectrum`) to ``path`` atomically.

    The mean is drawn as a line with its confidence band shaded (when defined; labelled as
    the spectrum's ``band``, e.g. "95 % CI", and flagged when the samples are blocks of one
    trajectory). n·α is non-negative, so the band is clipped at zero in the plot only (the
    spectrum and its CSV keep their values). ``experiment``: optional path of a CSV for
    :func:`read_experiment_csv`, or a pair of arrays (wavenumber_cm1, n_alpha_cm1), drawn on
    the same axes. The x range is fitted to the MD spectrum (:func:`plot_range_cm1`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    nu = np.asarray(spectrum.wavenumber_cm1)
    ax.plot(nu, spectrum.n_alpha_cm1, color="C0", lw=1.2, label=label)
    low, high = np.asarray(spectrum.n_alpha_low_cm1), np.asarray(spectrum.n_alpha_high_cm1)
    if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
        level = getattr(spectrum, "confidence", 0.95)
        what = "band" if math.isnan(level) else f"{100 * level:g} % CI"
        note = ", blocks of one trajectory" if "one trajectory" in \
            (getattr(spectrum, "samples", "") or "") else ""
        ax.fill_between(nu, np.clip(low, 0.0, None), np.clip(high, 0.0, None), color="C0",
                        alpha=0.3, lw=0,
                        label=f"{what} ({spectrum.n_samples} samples{note})")
    if experiment is not None:
        ex_nu, ex_y = (read_experiment_csv(experiment) if isinstance(experiment, (str, Path))
                       else experiment)
        ax.plot(ex_nu, ex_y, color="k", lw=1.0, ls="--", label=experiment_label)
    ax.set_xlim(*plot_range_cm1(spectrum))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel(r"$n(\tilde\nu)\,\alpha(\tilde\nu)$ (cm$^{-1}$)")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150)
    plt.close(fig)
    return Path(path)
