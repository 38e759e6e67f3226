r"""Finite-temperature IR spectra from MD: Ṁ(t), its autocorrelation, lineshape, bands.

Physics (SI, DESIGN.md §1.6). The time derivative of the cell dipole is
``Ṁ(t) = Σ_j Z_j(t) v_j(t)``, i.e. ``Ṁ_a = Σ_j Σ_b Z[j,a,b] v[j,b]`` (e·Å/fs inside the code),
with no polarisation-branch problem and no numerical derivative of P. The absorption
lineshape with the harmonic quantum-correction factor (QCF) is

    n(ω) α(ω) = β / (6 c V ε₀) · ∫_{-∞}^{∞} dt e^{-iωt} ⟨Ṁ(0)·Ṁ(t)⟩_cl          (1)

with the classical (MD) correlation function, β = 1/(k_B T), V the volume, ω the angular
frequency. It is reported in cm⁻¹ against the wavenumber ν̃ = ω / (2πc) in cm⁻¹.

Estimator (what the code does, per trajectory or block of N samples, time step Δt):

* correlation ``C_l = 1/(N-l) Σ_{n=0}^{N-1-l} Ṁ_n·Ṁ_{n+l}`` (unbiased, by FFT, x+y+z summed,
  never normalised per direction), lags ``l = 0..L`` with ``L = round(max_lag / Δt)``;
* window ``w_l`` over the lags with ``w_0 = 1`` (see :data:`WINDOWS`);
* the transform of the even function, ``I(ω) = Δt [w_0 C_0 + 2 Σ_{l=1}^{L} w_l C_l cos(ω l Δt)]``,
  evaluated on ``ω_k = π k / (P Δt)``, ``k = 0..P``, ``P = zero_pad · (L+1)`` (zero padding
  only interpolates the spectrum; the resolution is set by ``max_lag`` and the window).

Because ``w_0 = 1`` and the trapezoidal sum of the cosines over [0, π/Δt] vanishes, the
integral of (1) over ω obeys the sum rule ``∫_0^∞ nα dω = π β ⟨|Ṁ|²⟩ / (6 c V ε₀)``, which
for constant Z and Maxwell velocities is ``π Σ_j tr(Z_j Z_jᵀ) / (6 c V ε₀ m_j)``.

Sampling filters, removed exactly (``sampling`` / ``correlation`` of :func:`lineshape`).
With velocities in the file, Ṁ_n = Ṁ(nΔt) is sampled as it is (no filter). From positions
only, the samples are half-step averages (see :mod:`.trajectory`)

    D_n = [P((n+1)Δt) − P(nΔt)] / Δt = (1/Δt) ∫_{nΔt}^{(n+1)Δt} Ṁ(t) dt,

a box-car of width Δt: D(ω) = e^{iωΔt/2} sinc(ωΔt/2) Ṁ(ω) with sinc(u) = sin(u)/u, so the
spectrum of D is ``sinc²(ωΔt/2)`` times that of Ṁ (plus aliases beyond the Nyquist frequency,
as for any sampling). The lineshape is divided by ``sinc²(ωΔt/2)``, which lies between 1 and
4/π² ≈ 0.405 on [0, π/Δt], so the inverse is well conditioned at every frequency. (The central
difference (r(t+Δt) − r(t−Δt))/(2Δt) used before multiplies by sinc²(ωΔt), which vanishes at
the Nyquist frequency: 0.56 at 3400 cm⁻¹ with 2 fs frames.) Likewise the running sum
``M_n = Δt Σ_{k<n} Ṁ_k`` used for Egelstaff's QCF has |M(ω)|² = Δt² |Ṁ(ω)|² / (4 sin²(ωΔt/2)),
i.e. ``ω² |M|² = |Ṁ|² / sinc²(ωΔt/2)``; for half-step samples the running sum is P itself and
the two filters cancel. In general the lineshape is divided by
``sinc²(ωΔt/2)^(h − d)``, h = 1 for half-step samples, d = 1 for the dipole correlation.

Quantum-correction factors. With x = βħω, the quantum lineshape is
``nα = ω (1 − e^{−x}) / (6 ħ c V ε₀) · I_MM^qm(ω)`` (Fourier transform of the quantum
⟨M(0)·M(t)⟩, the one with I(−ω) = e^{−x} I(ω)). Using I_ṀṀ = ω² I_MM,

    nα = β / (6 c V ε₀) · (1 − e^{−x}) / x · I_ṀṀ^qm(ω).

A QCF approximates ``I^qm(ω) ≈ Q(ω) I^cl(ω)``; the options, each given as the factor f(ω)
that multiplies the harmonic lineshape (1):

* ``"harmonic"``: Q = x / (1 − e^{−x}), f = 1 — formula (1). Exact for a harmonic system
  with a dipole linear in the coordinates. [Berens, Mackay, White & Wilson, J. Chem. Phys.
  79, 2375 (1983); Ramírez, López-Ciudad, Kumar & Marx, J. Chem. Phys. 121, 3973 (2004)]
* ``"standard"``: Q = 2 / (1 + e^{−x}) (the symmetrised quantum correlation function is
  replaced by the classical one), f = tanh(x/2) / (x/2). [Bader & Berne, J. Chem. Phys. 100,
  8359 (1994); Ramírez et al. 2004]
* ``"classical"``: Q = 1 (no correction factor; the classical correlation function used as the
  quantum one inside the quantum absorption formula with its (1 − e^{−x})), f = (1 − e^{−x}) / x.
  Reduces to (1) only as ħω ≪ k_BT; strongly underestimates high-frequency bands.
* ``"schofield"``: Q = e^{x/2} (the real, even function G(t) = C^qm(t − iβħ/2) approximated by
  C^cl(t)), f = sinh(x/2) / (x/2). Grows exponentially and overestimates high-frequency bands.
  [Schofield, Phys. Rev. Lett. 4, 239 (1960)]
* ``"egelstaff"``: G(t) ≈ C_MM^cl(√(t² + (βħ/2)²)) for the *dipole* correlation, i.e.
  ``nα = β/(6cVε₀) · sinh(x/2)/(x/2) · ω² ∫dt e^{−iωt} w(t) C_MM^cl(√(t² + (βħ/2)²))``.
  M is the running sum of Ṁ (its unknown constant is irrelevant) with its least-squares linear
  drift removed per block and component; the shifted correlation is a cubic spline of the
  even function C_MM (zero beyond the last lag). Egelstaff's form is defined on ⟨M·M⟩, and a
  time shift does not commute with d²/dt², so it is not applied to ⟨Ṁ·Ṁ⟩. [Egelstaff, Adv.
  Phys. 11, 203 (1962); Ramírez et al. 2004] The approximation is meant for correlations that
  decay within τ = βħ/2 (12.7 fs at 300 K); for an underdamped band with ωτ ≫ 1 it fails and
  can turn negative (measured: an undamped 3400 cm⁻¹ oscillator at 300 K gives −21 × the
  harmonic band integral). Use it for low-frequency, diffusive bands.

Confidence band: the spectrum of each trajectory (or each of ``n_blocks`` contiguous blocks
of every trajectory) is one sample; the result is their mean and the band the two-sided
Student-t confidence interval of the mean, ``mean ± t_{(1+c)/2, n−1} · s / √n`` (s: std with
ddof=1 over the n samples, c = ``confidence``, 95 % by default). With a single sample the band
is NaN (undefined). Blocks of one trajectory are correlated, so their band is optimistic (too
narrow); the result says so (:attr:`IRSpectrum.samples`).
"""

import itertools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import keys, units
from ..errors import BornDataError
from ..fileutils import atomic_path
from .trajectory import TrajectoryStats, iter_frames

DEFAULT_MAX_LAG_FS = 2000.0
"""Default correlation length (fs), capped at half the shortest trajectory / block."""

DEFAULT_ZERO_PAD = 4
"""Default zero-padding factor of the lag axis (4 points per independent frequency)."""

DEFAULT_CONFIDENCE = 0.95
"""Default confidence level of the band (two-sided Student-t interval of the mean)."""


def csv_columns(confidence=DEFAULT_CONFIDENCE):
    """Column names of the CSV: the band columns carry the confidence level, e.g.
    ``n_alpha_ci95_low_cm-1`` for the 95 % confidence interval."""
    pct = f"{100 * confidence:g}".replace(".", "p")
    return ("wavenumber_cm-1", "n_alpha_cm-1", f"n_alpha_ci{pct}_low_cm-1",
            f"n_alpha_ci{pct}_high_cm-1")


CSV_COLUMNS = csv_columns()
_OLD_CSV_COLUMNS = ("wavenumber_cm-1", "n_alpha_cm-1", "n_alpha_low_cm-1", "n_alpha_high_cm-1")


def _hann(l, L):
    return 0.5 * (1.0 + np.cos(np.pi * l / L))


def _hamming(l, L):
    return 0.54 + 0.46 * np.cos(np.pi * l / L)


def _blackman(l, L):
    return 0.42 + 0.5 * np.cos(np.pi * l / L) + 0.08 * np.cos(2.0 * np.pi * l / L)


def _rect(l, L):
    return np.ones_like(l, dtype=float)


WINDOWS = {"hann": _hann, "hamming": _hamming, "blackman": _blackman, "none": _rect}
"""Lag windows w(l; L) for l = 0..L, all with w(0) = 1; hann and blackman reach 0 at l = L.
"none" is the rectangular window (plain truncation at the maximum lag)."""

QCFS = ("harmonic", "standard", "classical", "schofield", "egelstaff")

CORRELATIONS = ("mdot", "dipole")
"""What :func:`lineshape` transforms: ⟨Ṁ·Ṁ⟩ ((e·Å/fs)²) or ⟨M·M⟩ of the running sum of Ṁ
((e·Å)²; multiplied by ω² after the transform)."""


@dataclass
class IRSpectrum:
    """An IR spectrum with its confidence band.

    All arrays have shape (n_points,). ``wavenumber_cm1``: ν̃ in cm⁻¹ (after frequency
    scaling); ``n_alpha_cm1``: n(ω)·α(ω) in cm⁻¹ (mean over samples); ``n_alpha_low_cm1`` /
    ``n_alpha_high_cm1``: the two-sided Student-t confidence interval of the mean at level
    ``confidence`` (NaN with a single sample). ``band``: what the band is, in words (e.g.
    "95 % CI (Student t, 3 degrees of freedom)"); ``samples``: what the samples are
    (independent trajectories, or blocks of one trajectory: correlated, optimistic band).
    ``temperature_K`` / ``volume_A3``: means over the samples; ``temperature_source``: where
    the temperature came from; ``dof``: degrees of freedom of the kinetic temperature (None when
    not used); ``velocity_source``: "file" or "positions" (half-step differences);
    ``n_samples``: spectra averaged (trajectories × blocks).
    """

    wavenumber_cm1: np.ndarray
    n_alpha_cm1: np.ndarray
    n_alpha_low_cm1: np.ndarray
    n_alpha_high_cm1: np.ndarray
    n_trajectories: int
    temperature_K: float
    volume_A3: float
    n_samples: int = 1
    qcf: str = "harmonic"
    window: str = "hann"
    timestep_fs: float = None
    max_lag_fs: float = None
    confidence: float = DEFAULT_CONFIDENCE
    band: str = ""
    samples: str = ""
    temperature_source: str = ""
    dof: int = None
    velocity_source: str = None
    chunks: dict = None  #: chunked runs: {"computed": n, "cached": n} chunks

    def to_csv(self, path):
        """Write the four columns of :func:`csv_columns` (``wavenumber_cm-1, n_alpha_cm-1,
        n_alpha_ci95_low_cm-1, n_alpha_ci95_high_cm-1`` at 95 %) to ``path`` atomically."""
        data = np.column_stack([self.wavenumber_cm1, self.n_alpha_cm1,
                                self.n_alpha_low_cm1, self.n_alpha_high_cm1])
        with atomic_path(path) as tmp:
            np.savetxt(tmp, data, delimiter=",", header=",".join(csv_columns(self.confidence)),
                       comments="", fmt="%.10g")
        return Path(path)

    @classmethod
    def read_csv(cls, path):
        """Read a file written by :meth:`to_csv` (metadata not stored there become NaN / 0);
        files of earlier versions (band columns ``n_alpha_low/high_cm-1``) are read too."""
        with open(path) as fh:
            header = fh.readline().strip().split(",")
        match = re.fullmatch(r"n_alpha_ci([0-9p]+)_low_cm-1", header[2]) \
            if len(header) == 4 else None
        confidence = float(match.group(1).replace("p", ".")) / 100 if match else None
        if tuple(header) == _OLD_CSV_COLUMNS:
            confidence = float("nan")
        elif confidence is None or tuple(header) != csv_columns(confidence):
            raise BornDataError(f"expected columns {','.join(CSV_COLUMNS)}, got {header}",
                                path=path)
        d = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        return cls(d[:, 0], d[:, 1], d[:, 2], d[:, 3], n_trajectories=0,
                   temperature_K=float("nan"), volume_A3=float("nan"), confidence=confidence)


# -- building blocks ------------------------------------------------------------------------

def dipole_derivative_series(source, *, bec_provider=None, bec_layout=keys.LAYOUT_AUTO,
                             timestep_fs=None, volume_A3=None, file_format=None, progress=True,
                             time_unit=None, dof=None, constraints=None, frame_range=None):
    """Stream one trajectory and return ``(mdot, stats)``.

    ``mdot``: (n_samples, 3) array, Ṁ in e·Å/fs — one sample per frame with velocities in
    the file, one per half step from positions (``stats.sampling``, see :mod:`.trajectory`);
    ``stats``: :class:`TrajectoryStats` (time step, kinetic temperature, volume, sources).
    ``bec_provider``: None or "file" — Z from the frame (any alias the readers accept, per
    atom or per frame, :func:`bornml.io.readers.bec_of_frame`, stored in ``bec_layout``;
    for a half step ½(Z_n + Z_n+1)); otherwise an object with
    ``dipole_derivative(atoms, velocities) -> (3,)`` (velocities in Å/fs, result e·Å/fs),
    called at the frame (or the half step's midpoint geometry).
    ``progress``: a tqdm bar on an interactive stderr (none when stderr is not a terminal).
    Other arguments (``frame_range``: one chunk of the file): see
    :func:`~bornml.spectra.trajectory.iter_frames`.
    """
    from tqdm.auto import tqdm

    from ..io.readers import bec_of_frame

    name = str(source) if isinstance(source, (str, Path)) else "<memory>"
    stats = TrajectoryStats(path=name)
    use_file = bec_provider is None or (isinstance(bec_provider, str) and bec_provider == "file")
    if not use_file and not hasattr(bec_provider, "dipole_derivative"):
        raise TypeError("bec_provider must be None, 'file' or an object with "
                        "dipole_derivative(atoms, velocities)")
    if bec_layout not in keys.LAYOUTS:
        raise BornDataError(f"unknown BEC layout {bec_layout!r}; use one of {keys.LAYOUTS}",
                            key="--layout")
    out = []
    frames = iter_frames(source, timestep_fs=timestep_fs, volume_A3=volume_A3,
                         file_format=file_format, stats=stats, time_unit=time_unit, dof=dof,
                         constraints=constraints, frame_range=frame_range)
    label = Path(name).name if name != "<memory>" else "MD frames"
    # disable=None: no bar when stderr is not a terminal (logs of batch jobs)
    bar = tqdm(frames, desc=label, unit=" frames", disable=None if progress else True,
               leave=False)
    cache = {}  # frame index -> Z, for the two ends of consecutive half steps

    def file_bec(atoms, index):
        if index not in cache:
            if len(cache) >= 2:
                cache.pop(min(cache))
            cache[index] = bec_of_frame(atoms, bec_layout, path=name, frame=index)
        return cache[index]

    for frame in bar:
        if use_file and frame.ends is None:
            z = file_bec(frame.atoms, frame.index)
            out.append(np.einsum("jab,jb->a", z, frame.velocities))
        elif use_file:
            z = 0.5 * (file_bec(frame.ends[0], frame.index)
                       + file_bec(frame.ends[1], frame.index + 1))
            out.append(np.einsum("jab,jb->a", z, frame.velocities))
        else:
            md = np.asarray(bec_provider.dipole_derivative(frame.atoms, frame.velocities),
                            dtype=float)
            if md.shape != (3,):
                raise ValueError(f"dipole_derivative returned shape {md.shape}, expected (3,)")
            out.append(md)
    return np.array(out).reshape(-1, 3), stats


def autocorrelation(mdot, max_lag):
    """⟨Ṁ(0)·Ṁ(lΔt)⟩ for l = 0..max_lag, summed over x, y, z; unbiased (divided by N − l).

    ``mdot``: (N, 3); returns (max_lag + 1,) in the squared units of ``mdot``.
    """
    mdot = np.asarray(mdot, dtype=float)
    n = len(mdot)
    if not 0 <= max_lag < n:
        raise ValueError(f"max_lag {max_lag} must be in [0, {n - 1}] for {n} frames")
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(mdot, n=nfft, axis=0)
    acf = np.fft.irfft(np.sum(f * f.conj(), axis=1).real, n=nfft)[: max_lag + 1]
    return acf / (n - np.arange(max_lag + 1))


def dipole_from_mdot(mdot, timestep_fs):
    """M_n = Δt Σ_{k<n} Ṁ_k (e·Å, (N+1, 3)) with its least-squares linear drift removed per
    component. For half-step samples Ṁ_{k+½} = [P_{k+1} − P_k]/Δt this is P_n − P_0 minus
    the drift; its filter is described in the module docstring."""
    mdot = np.asarray(mdot, dtype=float)
    m = np.concatenate([np.zeros((1, 3)), np.cumsum(mdot, axis=0) * timestep_fs])
    t = np.arange(len(m), dtype=float)
    design = np.column_stack([np.ones_like(t), t - t.mean()])
    coef, *_ = np.linalg.lstsq(design, m, rcond=None)
    return m - design @ coef


def qcf_factor(qcf, wavenumber_cm1, temperature_K):
    """Factor f(ν̃) that multiplies the harmonic lineshape (1) for the multiplicative QCFs.

    ``wavenumber_cm1``: unscaled ν̃ (cm⁻¹); x = βħω = h c ν̃ / (k_B T). Egelstaff uses the
    Schofield factor here plus the time shift applied to the dipole correlation function.
    """
    if qcf not in QCFS:
        raise ValueError(f"unknown qcf {qcf!r}; use one of {QCFS}")
    nu = np.asarray(wavenumber_cm1, dtype=float)
    if qcf == "harmonic":
        return np.ones_like(nu)
    x = (units.PLANCK_J_S * units.SPEED_OF_LIGHT_M_PER_S * nu / units.PER_M_TO_PER_CM
         / (units.BOLTZMANN_J_PER_K * temperature_K))
    h = np.where(x > 0, x / 2.0, 1.0)
    with np.errstate(over="ignore"):
        if qcf == "standard":
            f = np.tanh(h) / h
        elif qcf == "classical":
            f = -np.expm1(-2.0 * h) / (2.0 * h)
        else:  # schofield, egelstaff
            f = np.sinh(h) / h
    return np.where(x > 0, f, 1.0)


def sampling_response(omega_rad_fs, timestep_fs, sampling="instant", correlation="mdot"):
    """The factor ``sinc²(ωΔt/2)^(h − d)`` by which the sampling scheme multiplies the
    lineshape (h = 1 for half-step samples, d = 1 for the dipole correlation of the running
    sum); :func:`lineshape` divides it out. ``sinc(u) = sin(u)/u``; ω in rad/fs."""
    power = int(sampling == "half-step") - int(correlation == "dipole")
    u = 0.5 * np.asarray(omega_rad_fs, dtype=float) * timestep_fs
    return np.sinc(u / np.pi) ** (2 * power)  # numpy's sinc is sin(πx)/(πx)


def lineshape(corr, *, timestep_fs, temperature_K, volume_A3, window="hann", qcf="harmonic",
              zero_pad=DEFAULT_ZERO_PAD, correlation="mdot", sampling="instant"):
    """n·α (cm⁻¹) against ν̃ (cm⁻¹, unscaled) from the lags ``corr`` (L+1,).

    ``correlation="mdot"``: lags of ⟨Ṁ·Ṁ⟩ in (e·Å/fs)²; ``"dipole"``: lags of ⟨M·M⟩ in (e·Å)²
    (M the running sum of Ṁ, :func:`dipole_from_mdot`), transformed and multiplied by ω² — the
    form Egelstaff's QCF needs (``qcf="egelstaff"`` requires it). ``sampling``: how the
    samples relate to the true signal, "instant" (Ṁ(t_n) from velocities; for "dipole", M is
    their running sum) or "half-step" (Ṁ averaged over each step, from positions; their running
    sum is P at the frames, so "dipole" lags are then those of M sampled exactly); the filter
    of the scheme, :func:`sampling_response`, is divided out. Returns ``(wavenumber_cm1, n_alpha_cm1)``, each
    of shape (zero_pad·(L+1) + 1,), from 0 to the Nyquist wavenumber 1/(2 c Δt).
    """
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; use one of {tuple(WINDOWS)}")
    if int(zero_pad) < 1:
        raise ValueError(f"zero_pad must be an integer >= 1, got {zero_pad}")
    if correlation not in CORRELATIONS:
        raise ValueError(f"unknown correlation {correlation!r}; use one of {CORRELATIONS}")
    if qcf == "egelstaff" and correlation != "dipole":
        raise ValueError("the egelstaff QCF shifts the dipole correlation ⟨M·M⟩ in time; "
                         "give correlation='dipole' (lags of the running sum of Ṁ)")
    corr = np.asarray(corr, dtype=float)
    L = len(corr) - 1
    lags = np.arange(L + 1)
    w = WINDOWS[window](lags, max(L, 1))
    beta = 1.0 / (units.BOLTZMANN_J_PER_K * temperature_K)
    if qcf == "egelstaff":
        corr = _egelstaff_shift(corr, timestep_fs, 0.5 * beta * units.HBAR_J_S / units.FS_S)
    P = int(zero_pad) * (L + 1)
    sym = np.zeros(2 * P)
    sym[: L + 1] = w * corr
    sym[2 * P - L:] = (w * corr)[1:][::-1]
    spec = np.fft.rfft(sym).real * timestep_fs  # (e·Å/fs)² · fs, or (e·Å)² · fs; k = 0..P
    omega = np.pi * np.arange(P + 1) / (P * timestep_fs)  # rad/fs
    if correlation == "dipole":
        spec = spec * omega**2  # I_ṀṀ = ω² I_MM
    spec = spec / sampling_response(omega, timestep_fs, sampling, correlation)
    nu = omega / units.CM_INV_TO_RAD_PER_FS
    si = (units.E_ANGSTROM_PER_FS_TO_SI**2 * units.FS_S * beta
          / (6.0 * units.SPEED_OF_LIGHT_M_PER_S * volume_A3 * units.ANGSTROM3_M3
             * units.VACUUM_PERMITTIVITY_F_PER_M))
    n_alpha = spec * si * units.PER_M_TO_PER_CM * qcf_factor(qcf, nu, temperature_K)
    return nu, n_alpha


def _egelstaff_shift(corr, timestep_fs, tau_fs):
    """C(√(t² + τ²)) on the lag grid, by cubic spline of the even function C(t)."""
    from scipy.interpolate import CubicSpline

    L = len(corr) - 1
    t = np.arange(L + 1) * timestep_fs
    if L < 2:
        return corr.copy()
    t_full = np.concatenate([-t[:0:-1], t])
    spline = CubicSpline(t_full, np.concatenate([corr[:0:-1], corr]))
    ts = np.sqrt(t**2 + tau_fs**2)
    return np.where(ts <= t[-1], spline(np.minimum(ts, t[-1])), 0.0)


def confidence_band(spectra, confidence=DEFAULT_CONFIDENCE):
    """``(mean, low, high, half_width_factor)`` over the rows of ``spectra`` (n_samples, n):
    the two-sided Student-t interval of the mean, ``mean ± t_{(1+c)/2, n−1} s/√n`` (s with
    ddof=1); NaN bands for a single sample."""
    from scipy.stats import t as student_t

    spectra = np.asarray(spectra, dtype=float)
    n = len(spectra)
    mean = spectra.mean(axis=0)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan.copy(), float("nan")
    factor = float(student_t.ppf(0.5 * (1.0 + confidence), n - 1))
    half = factor * spectra.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half, factor


# -- the API --------------------------------------------------------------------------------

def _as_sources(trajectories):
    """A path, a list of paths, a list or iterator of Atoms (one trajectory), or a list of
    such lists. Iterators are not materialised (frames may be generated on the fly)."""
    if isinstance(trajectories, (str, Path)):
        return [trajectories]
    if hasattr(trajectories, "__next__"):  # an iterator / generator of frames: one trajectory
        it = iter(trajectories)
        try:
            first = next(it)
        except StopIteration:
            return []
        if hasattr(first, "positions"):
            return [itertools.chain([first], it)]
        return [first, *it]
    items = list(trajectories)
    if items and hasattr(items[0], "positions"):  # one in-memory trajectory
        return [items]
    return items


def _describe_samples(n_traj, nb):
    if n_traj * nb == 1:
        return "one sample: no band"
    if nb == 1:
        return f"{n_traj} independent trajectories"
    what = "one trajectory" if n_traj == 1 else f"each of {n_traj} trajectories"
    return (f"{nb} contiguous blocks of {what} (correlated samples: the band is optimistic, "
            "too narrow)")


def ir_spectrum(trajectories, *, bec_provider=None, bec_layout=keys.LAYOUT_AUTO,
                timestep_fs=None, time_unit=None, temperature_K=None, dof=None,
                constraints=None, volume_A3=None, window="hann", max_lag_fs=None,
                qcf="harmonic", frequency_scale=1.0, n_blocks=None,
                confidence=DEFAULT_CONFIDENCE, zero_pad=DEFAULT_ZERO_PAD, progress=True,
                file_format=None, runner=None, cache_dir=None, chunk_frames=None):
    """IR spectrum n·α(ν̃) with a confidence band from one or more MD trajectories.

    ``trajectories``: a path or a list of paths (any format ``ase.io.iread`` reads; or lists
    of ``ase.Atoms``), streamed frame by frame. Frames need velocities (Å/fs or ASE momenta)
    or positions every Δt (then Ṁ at half steps from position differences, with the exact
    inverse filter: see the module docstring).
    ``bec_provider``: None / "file" (Born charges stored in the frames under any key and form
    the readers accept, storage order ``bec_layout``: "auto"/"P-r" or "r-P") or an object with
    ``dipole_derivative(atoms, velocities) -> (3,)`` (Å/fs in, e·Å/fs out).
    ``timestep_fs``: time between stored frames (fs), checked against every time source of the
    file; ``time_unit``: unit of a bare ``time`` info key ("fs", "ps", "ase").
    ``temperature_K``: default the kinetic temperature of each trajectory (mean over frames),
    only from velocities stored in the file — a positions-only trajectory needs it given;
    ``dof`` / ``constraints``: its degrees of freedom (default 3N − 3; or 3N − 3 − constraints).
    ``volume_A3``: default the mean cell volume (Å³); required for systems that are not
    periodic in 3-D. ``window``: one of :data:`WINDOWS`. ``max_lag_fs``: correlation length
    (fs); default min(2000 fs, half the shortest trajectory or block). ``qcf``: one of
    :data:`QCFS` (see the module docstring). ``frequency_scale``: multiplies the wavenumber
    axis (e.g. 0.985 for a 1.5 % redshift). ``n_blocks``: split every trajectory into this many
    contiguous blocks, each one sample. ``confidence``: level of the Student-t band (0.95).
    ``zero_pad``: integer zero-padding factor of the lag axis. ``progress``: tqdm bar (only on
    a terminal). ``file_format``: ``ase.io`` format name when the file name does not tell.
    ``runner``: a :mod:`bornml.parallel` runner (e.g. ``open_runner(workers=4)``); with it, or
    with ``cache_dir`` (finished chunks kept there, an interrupted run resumes), trajectory
    files are processed in chunks of ``chunk_frames`` frames (:mod:`.chunks`) — the same
    result; ``bec_provider`` may then be a :class:`~bornml.model_file.ModelFile`, which
    each worker loads once.
    Raises :class:`BornDataError` for bad or inconsistent data (file, frame and key named).
    """
    if qcf not in QCFS:
        raise ValueError(f"unknown qcf {qcf!r}; use one of {QCFS}")
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; use one of {tuple(WINDOWS)}")
    if not frequency_scale > 0:
        raise ValueError(f"frequency_scale must be positive, got {frequency_scale}")
    if n_blocks is not None and int(n_blocks) < 1:
        raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    if temperature_K is not None and not temperature_K > 0:
        raise ValueError(f"temperature_K must be positive, got {temperature_K}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    sources = _as_sources(trajectories)
    if not sources:
        raise ValueError("no trajectories given")
    series = []
    chunked = runner is not None or cache_dir is not None
    counts = {"computed": 0, "cached": 0} if chunked else None
    for source in sources:
        if chunked and isinstance(source, (str, Path)):
            mdot, stats = _chunked(source, counts, bec_provider=bec_provider,
                                   bec_layout=bec_layout, timestep_fs=timestep_fs,
                                   volume_A3=volume_A3, file_format=file_format,
                                   time_unit=time_unit, dof=dof, constraints=constraints,
                                   progress=progress, runner=runner, cache_dir=cache_dir,
                                   chunk_frames=chunk_frames)
        else:
            if hasattr(bec_provider, "load") and not hasattr(bec_provider,
                                                            "dipole_derivative"):
                bec_provider = bec_provider.load()  # a ModelFile, for frames in memory
            mdot, stats = dipole_derivative_series(
                source, bec_provider=bec_provider, bec_layout=bec_layout,
                timestep_fs=timestep_fs, volume_A3=volume_A3, file_format=file_format,
                progress=progress, time_unit=time_unit, dof=dof, constraints=constraints)
        if temperature_K is None and stats.velocity_source == "positions":
            raise BornDataError(
                "the trajectory stores no velocities, so it has no kinetic temperature "
                "(velocities from position differences are not used for it); give the "
                "temperature (--temperature K)", path=stats.path)
        if temperature_K is None and stats.temperature_K is None:
            raise BornDataError("cannot get a kinetic temperature (no degrees of freedom "
                                "left); give the temperature (--temperature K)",
                                path=stats.path)
        series.append((mdot, stats))
    dt = series[0][1].timestep_fs
    for _, stats in series[1:]:
        if not np.isclose(stats.timestep_fs, dt, rtol=1e-4):
            raise BornDataError(f"time step {stats.timestep_fs} fs differs from the first "
                                f"trajectory's {dt} fs", path=stats.path)
    nb = int(n_blocks) if n_blocks else 1
    segments = []  # (mdot block, temperature, volume, sampling)
    for mdot, stats in series:
        length = len(mdot) // nb
        if length < 2:
            raise BornDataError(f"{len(mdot)} samples cannot be split into {nb} blocks of at "
                                "least 2", path=stats.path, key="--blocks")
        temp = temperature_K if temperature_K is not None else stats.temperature_K
        for b in range(nb):
            segments.append((mdot[b * length:(b + 1) * length], temp, stats.volume_A3,
                             stats.sampling))
    shortest = min(len(s[0]) for s in segments)
    if max_lag_fs is None:
        max_lag = min(round(DEFAULT_MAX_LAG_FS / dt), shortest // 2)
    else:
        max_lag = round(max_lag_fs / dt)
        if not max_lag_fs > 0 or max_lag >= shortest:
            raise BornDataError(f"the correlation length {max_lag_fs} fs must be positive and "
                                "shorter than the shortest trajectory or block "
                                f"({(shortest - 1) * dt:g} fs)", key="--max-lag")
    max_lag = max(max_lag, 1)
    correlation = "dipole" if qcf == "egelstaff" else "mdot"
    spectra = []
    for mdot, temp, vol, sampling in segments:
        if correlation == "dipole":
            corr = autocorrelation(dipole_from_mdot(mdot, dt), max_lag)
        else:
            corr = autocorrelation(mdot, max_lag)
        nu, na = lineshape(corr, timestep_fs=dt, temperature_K=temp, volume_A3=vol,
                           window=window, qcf=qcf, zero_pad=zero_pad, correlation=correlation,
                           sampling=sampling)
        spectra.append(na)
    mean, low, high, factor = confidence_band(spectra, confidence)
    n = len(spectra)
    if n == 1:
        warnings.warn("one trajectory and no blocks: no confidence band (give several "
                      "trajectories or n_blocks)", stacklevel=2)
        band = "none (a single sample)"
    else:
        band = (f"{100 * confidence:g} % CI (Student t, {n - 1} degrees of freedom, "
                f"t = {factor:.3f})")
    if temperature_K is not None:
        t_source = "given (--temperature)"
    else:
        t_source = ("kinetic, from the file velocities with "
                    f"{', '.join(sorted({str(s.dof) for _, s in series}))} degrees of freedom")
    dofs = {s.dof for _, s in series}
    return IRSpectrum(
        wavenumber_cm1=nu * frequency_scale, n_alpha_cm1=mean, n_alpha_low_cm1=low,
        n_alpha_high_cm1=high, n_trajectories=len(series),
        temperature_K=float(np.mean([s[1] for s in segments])),
        volume_A3=float(np.mean([s[2] for s in segments])), n_samples=n, qcf=qcf,
        window=window, timestep_fs=dt, max_lag_fs=max_lag * dt, confidence=confidence,
        band=band, samples=_describe_samples(len(series), nb), temperature_source=t_source,
        dof=(dofs.pop() if len(dofs) == 1 else None) if temperature_K is None else None,
        velocity_source="/".join(sorted({s.velocity_source for _, s in series})),
        chunks=counts)


def _chunked(path, counts, *, bec_provider, bec_layout, progress, runner, cache_dir,
             chunk_frames, **options):
    """(mdot, stats) of one file in chunks (:func:`.chunks.chunked_series`); adds the chunks
    computed / taken from the cache to ``counts``."""
    from ..parallel import SerialRunner
    from ..progress import ChunkProgress
    from .chunks import ChunkCache, chunked_series

    if bec_provider is None or (isinstance(bec_provider, str) and bec_provider == "file"):
        bec_provider = "file"
    elif not hasattr(bec_provider, "dipole_derivative") and not hasattr(bec_provider, "load"):
        raise TypeError("bec_provider must be None, 'file', a ModelFile or an object with "
                        "dipole_derivative(atoms, velocities)")
    if bec_layout not in keys.LAYOUTS:
        raise BornDataError(f"unknown BEC layout {bec_layout!r}; use one of {keys.LAYOUTS}",
                            key="--layout")
    runner = runner or SerialRunner()
    if cache_dir and bec_provider != "file" and not hasattr(bec_provider, "load"):
        raise ValueError("a chunk cache needs Born charges from the file or the model as a "
                         "file (bornml.model_file.ModelFile), to know what it holds")
    if bec_provider != "file" and not hasattr(bec_provider, "load"):
        bec_provider = runner.share(bec_provider)  # a model object: sent once per worker
    bar = ChunkProgress("ir", enabled=progress)
    mdot, stats, done = chunked_series(
        path, provider=bec_provider, runner=runner, options=dict(bec_layout=bec_layout,
                                                                 **options),
        chunk_frames=chunk_frames, cache=ChunkCache(cache_dir) if cache_dir else None,
        progress=bar)
    bar.close()
    for k in counts:
        counts[k] += done[k]
    return mdot, stats
