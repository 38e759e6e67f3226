r"""Finite-temperature IR spectra from MD: Ṁ(t), its autocorrelation, lineshape, bands.

Physics (SI, DESIGN.md §1.6). The time derivative of the cell dipole is
``Ṁ(t) = Σ_j Z_j(t) v_j(t)``, i.e. ``Ṁ_a = Σ_j Σ_b Z[j,a,b] v[j,b]`` (e·Å/fs inside the code),
with no polarisation-branch problem and no numerical derivative of P. The absorption
lineshape with the harmonic quantum-correction factor (QCF) is

    n(ω) α(ω) = β / (6 c V ε₀) · ∫_{-∞}^{∞} dt e^{-iωt} ⟨Ṁ(0)·Ṁ(t)⟩_cl          (1)

with the classical (MD) correlation function, β = 1/(k_B T), V the volume, ω the angular
frequency. It is reported in cm⁻¹ against the wavenumber ν̃ = ω / (2πc) in cm⁻¹.

Estimator (what the code does, per trajectory or block of N frames, time step Δt):

* correlation ``C_l = 1/(N-l) Σ_{n=0}^{N-1-l} Ṁ_n·Ṁ_{n+l}`` (unbiased, by FFT, x+y+z summed,
  never normalised per direction), lags ``l = 0..L`` with ``L = round(max_lag / Δt)``;
* window ``w_l`` over the lags with ``w_0 = 1`` (see :data:`WINDOWS`);
* the transform of the even function, ``I(ω) = Δt [w_0 C_0 + 2 Σ_{l=1}^{L} w_l C_l cos(ω l Δt)]``,
  evaluated on ``ω_k = π k / (P Δt)``, ``k = 0..P``, ``P = zero_pad · (L+1)`` (zero padding
  only interpolates the spectrum; the resolution is set by ``max_lag`` and the window).

Because ``w_0 = 1`` and the trapezoidal sum of the cosines over [0, π/Δt] vanishes, the
integral of (1) over ω obeys the sum rule ``∫_0^∞ nα dω = π β ⟨|Ṁ|²⟩ / (6 c V ε₀)``, which
for constant Z and Maxwell velocities is ``π Σ_j tr(Z_j Z_jᵀ) / (6 c V ε₀ m_j)``.

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
* ``"egelstaff"``: G(t) ≈ C^cl(√(t² + (βħ/2)²)), i.e.
  ``nα = β/(6cVε₀) · sinh(x/2)/(x/2) · ∫dt e^{−iωt} w(t) C_ṀṀ^cl(√(t² + (βħ/2)²))``; the
  shifted correlation is obtained by cubic-spline interpolation of the ⟨Ṁ·Ṁ⟩ lags (zero beyond
  the last lag). Applied here to ⟨Ṁ·Ṁ⟩, not to ⟨M·M⟩ (the two are not equivalent for this
  QCF; M itself is not available without integrating Ṁ). [Egelstaff, Adv. Phys. 11, 203
  (1962); Ramírez et al. 2004]

Error bars: the spectrum of each trajectory (or each of ``n_blocks`` contiguous blocks of every
trajectory) is one sample; the result is their mean and the band mean ± 2 standard errors
(std with ddof=1 over √n_samples). With a single sample the band is NaN (undefined).
"""

import itertools
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

CSV_COLUMNS = ("wavenumber_cm-1", "n_alpha_cm-1", "n_alpha_low_cm-1", "n_alpha_high_cm-1")


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


@dataclass
class IRSpectrum:
    """An IR spectrum with its confidence band.

    All arrays have shape (n_points,). ``wavenumber_cm1``: ν̃ in cm⁻¹ (after frequency
    scaling); ``n_alpha_cm1``: n(ω)·α(ω) in cm⁻¹ (mean over samples); ``n_alpha_low_cm1`` /
    ``n_alpha_high_cm1``: mean ∓ 2 standard errors (NaN with a single sample).
    ``temperature_K`` / ``volume_A3``: means over the trajectories; ``n_samples``: spectra
    averaged (trajectories × blocks).
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

    def to_csv(self, path):
        """Write the four columns ``wavenumber_cm-1,n_alpha_cm-1,n_alpha_low_cm-1,
        n_alpha_high_cm-1`` to ``path`` atomically."""
        data = np.column_stack([self.wavenumber_cm1, self.n_alpha_cm1,
                                self.n_alpha_low_cm1, self.n_alpha_high_cm1])
        with atomic_path(path) as tmp:
            np.savetxt(tmp, data, delimiter=",", header=",".join(CSV_COLUMNS), comments="",
                       fmt="%.10g")
        return Path(path)

    @classmethod
    def read_csv(cls, path):
        """Read a file written by :meth:`to_csv` (metadata not stored there become NaN / 0)."""
        with open(path) as fh:
            header = fh.readline().strip().split(",")
        if tuple(header) != CSV_COLUMNS:
            raise BornDataError(f"expected columns {','.join(CSV_COLUMNS)}, got {header}",
                                path=path)
        d = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
        return cls(d[:, 0], d[:, 1], d[:, 2], d[:, 3], n_trajectories=0,
                   temperature_K=float("nan"), volume_A3=float("nan"))


# -- building blocks ------------------------------------------------------------------------

def _bec_from_frame(atoms, path, index):
    for name in keys.BEC_ALIASES:
        if name in atoms.arrays:
            z = np.asarray(atoms.arrays[name], dtype=float)
            if z.size != 9 * len(atoms):
                raise BornDataError(f"expected 9 numbers per atom, got shape {z.shape}",
                                    path=path, frame=index, key=name)
            return keys.to_project_layout(z.reshape(len(atoms), 3, 3), keys.LAYOUT_P_R)
    raise BornDataError(
        "no Born effective charges in the frame (looked for "
        f"{', '.join(keys.BEC_ALIASES)}); use a model to predict them", path=path,
        frame=index, key=keys.BEC)


def dipole_derivative_series(source, *, bec_provider=None, timestep_fs=None, volume_A3=None,
                             file_format=None, progress=True):
    """Stream one trajectory and return ``(mdot, stats)``.

    ``mdot``: (n_frames, 3) array, Ṁ in e·Å/fs; ``stats``: :class:`TrajectoryStats`
    (time step, kinetic temperature, mean volume, velocity source).
    ``bec_provider``: None or "file" — Z from the frame (``bec`` or an alias, layout
    Z[j,a,b] = dP_a/dr_jb, e); otherwise an object with
    ``dipole_derivative(atoms, velocities) -> (3,)`` (velocities in Å/fs, result e·Å/fs).
    """
    from tqdm.auto import tqdm

    name = str(source) if isinstance(source, (str, Path)) else "<memory>"
    stats = TrajectoryStats(path=name)
    use_file = bec_provider is None or (isinstance(bec_provider, str) and bec_provider == "file")
    if not use_file and not hasattr(bec_provider, "dipole_derivative"):
        raise TypeError("bec_provider must be None, 'file' or an object with "
                        "dipole_derivative(atoms, velocities)")
    out = []
    frames = iter_frames(source, timestep_fs=timestep_fs, volume_A3=volume_A3,
                         file_format=file_format, stats=stats)
    label = Path(name).name if name != "<memory>" else "MD frames"
    bar = tqdm(frames, desc=label, unit=" frames", disable=not progress,
               leave=False)
    for frame in bar:
        if use_file:
            z = _bec_from_frame(frame.atoms, name, frame.index)
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


def qcf_factor(qcf, wavenumber_cm1, temperature_K):
    """Factor f(ν̃) that multiplies the harmonic lineshape (1) for the multiplicative QCFs.

    ``wavenumber_cm1``: unscaled ν̃ (cm⁻¹); x = βħω = h c ν̃ / (k_B T). Egelstaff uses the
    Schofield factor here plus the time shift applied to the correlation function.
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


def lineshape(corr, *, timestep_fs, temperature_K, volume_A3, window="hann", qcf="harmonic",
              zero_pad=DEFAULT_ZERO_PAD):
    """n·α (cm⁻¹) against ν̃ (cm⁻¹, unscaled) from lags ``corr`` (L+1,) of ⟨Ṁ·Ṁ⟩ in (e·Å/fs)².

    Returns ``(wavenumber_cm1, n_alpha_cm1)``, each of shape (zero_pad·(L+1) + 1,), from 0 to
    the Nyquist wavenumber 1/(2 c Δt).
    """
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; use one of {tuple(WINDOWS)}")
    if int(zero_pad) < 1:
        raise ValueError(f"zero_pad must be an integer >= 1, got {zero_pad}")
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
    spec = np.fft.rfft(sym).real * timestep_fs  # (e·Å/fs)² · fs, k = 0..P
    omega = np.pi * np.arange(P + 1) / (P * timestep_fs)  # rad/fs
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


def ir_spectrum(trajectories, *, bec_provider=None, timestep_fs=None, temperature_K=None,
                volume_A3=None, window="hann", max_lag_fs=None, qcf="harmonic",
                frequency_scale=1.0, n_blocks=None, zero_pad=DEFAULT_ZERO_PAD, progress=True,
                file_format=None):
    """IR spectrum n·α(ν̃) with a confidence band from one or more MD trajectories.

    ``trajectories``: a path or a list of paths (any format ``ase.io.iread`` reads; or lists
    of ``ase.Atoms``), streamed frame by frame. Frames need velocities (Å/fs or ASE momenta)
    or positions every Δt (velocities by central differences).
    ``bec_provider``: None / "file" (BECs stored per frame, key ``bec`` or an alias, e) or an
    object with ``dipole_derivative(atoms, velocities) -> (3,)`` (Å/fs in, e·Å/fs out).
    ``timestep_fs``: time between stored frames (fs); default from the file's info.
    ``temperature_K``: default the kinetic temperature (3N − 3 degrees of freedom, mean over
    frames) of each trajectory. ``volume_A3``: default the mean cell volume (Å³); required for
    systems that are not periodic in 3-D. ``window``: one of :data:`WINDOWS`.
    ``max_lag_fs``: correlation length (fs); default min(2000 fs, half the shortest
    trajectory or block). ``qcf``: one of :data:`QCFS` (see the module docstring).
    ``frequency_scale``: multiplies the wavenumber axis (e.g. 0.985 for a 1.5 % redshift).
    ``n_blocks``: split every trajectory into this many contiguous blocks, each one sample.
    ``zero_pad``: integer zero-padding factor of the lag axis. ``progress``: tqdm bar.
    ``file_format``: ``ase.io`` format name when it cannot be guessed from the file name.
    """
    if qcf not in QCFS:
        raise ValueError(f"unknown qcf {qcf!r}; use one of {QCFS}")
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}; use one of {tuple(WINDOWS)}")
    if not frequency_scale > 0:
        raise ValueError(f"frequency_scale must be positive, got {frequency_scale}")
    if n_blocks is not None and int(n_blocks) < 1:
        raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    sources = _as_sources(trajectories)
    if not sources:
        raise ValueError("no trajectories given")
    series = []
    for source in sources:
        mdot, stats = dipole_derivative_series(source, bec_provider=bec_provider,
                                               timestep_fs=timestep_fs, volume_A3=volume_A3,
                                               file_format=file_format, progress=progress)
        if temperature_K is None and stats.temperature_K is None:
            raise BornDataError("cannot get a kinetic temperature (a single atom?); give "
                                "the temperature (--temperature K)", path=stats.path)
        series.append((mdot, stats))
    dt = series[0][1].timestep_fs
    for _, stats in series[1:]:
        if not np.isclose(stats.timestep_fs, dt, rtol=1e-4):
            raise BornDataError(f"time step {stats.timestep_fs} fs differs from the first "
                                f"trajectory's {dt} fs", path=stats.path)
    nb = int(n_blocks) if n_blocks else 1
    segments = []  # (mdot block, temperature, volume)
    for mdot, stats in series:
        length = len(mdot) // nb
        if length < 2:
            raise BornDataError(f"{len(mdot)} frames cannot be split into {nb} blocks of at "
                                "least 2 frames", path=stats.path)
        temp = temperature_K if temperature_K is not None else stats.temperature_K
        for b in range(nb):
            segments.append((mdot[b * length:(b + 1) * length], temp, stats.volume_A3))
    shortest = min(len(s[0]) for s in segments)
    if max_lag_fs is None:
        max_lag = min(int(round(DEFAULT_MAX_LAG_FS / dt)), shortest // 2)
    else:
        max_lag = int(round(max_lag_fs / dt))
        if max_lag >= shortest:
            raise ValueError(f"max_lag_fs = {max_lag_fs} fs exceeds the shortest trajectory "
                             f"or block ({(shortest - 1) * dt} fs)")
    max_lag = max(max_lag, 1)
    spectra = []
    for mdot, temp, vol in segments:
        corr = autocorrelation(mdot, max_lag)
        nu, na = lineshape(corr, timestep_fs=dt, temperature_K=temp, volume_A3=vol,
                           window=window, qcf=qcf, zero_pad=zero_pad)
        spectra.append(na)
    spectra = np.array(spectra)
    mean = spectra.mean(axis=0)
    if len(spectra) > 1:
        se = spectra.std(axis=0, ddof=1) / np.sqrt(len(spectra))
        low, high = mean - 2.0 * se, mean + 2.0 * se
    else:
        warnings.warn("one trajectory and no blocks: no confidence band (give several "
                      "trajectories or n_blocks)", stacklevel=2)
        low = high = np.full_like(mean, np.nan)
    return IRSpectrum(
        wavenumber_cm1=nu * frequency_scale, n_alpha_cm1=mean, n_alpha_low_cm1=low,
        n_alpha_high_cm1=high, n_trajectories=len(series),
        temperature_K=float(np.mean([s[1] for s in segments])),
        volume_A3=float(np.mean([s[2] for s in segments])), n_samples=len(spectra), qcf=qcf,
        window=window, timestep_fs=dt, max_lag_fs=max_lag * dt)
