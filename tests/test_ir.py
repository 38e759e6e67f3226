"""Tests of bornml.spectra: sum rule, peak position, SI units by hand, errors, velocities, I/O.

Reference values are computed here from scipy.constants, independently of bornml.units.
"""

import argparse
import re

import ase.io
import ase.units
import numpy as np
import pytest
from ase import Atoms
from scipy import constants as sc

from bornml.errors import BornDataError
from bornml.spectra import IRSpectrum, ir_cli, ir_spectrum, plot_ir, read_experiment_csv
from bornml.spectra.trajectory import TrajectoryStats, iter_frames

# 1 Å/fs in m/s and the angular frequency (rad/fs) of 1 cm⁻¹, from scipy.constants
A_PER_FS = sc.angstrom / sc.femto
RAD_PER_FS_PER_CM1 = 2 * np.pi * sc.c * 100 * sc.femto

# single-trajectory spectra warn that they have no band; that is expected here
pytestmark = pytest.mark.filterwarnings("ignore:one trajectory and no blocks")


def maxwell(rng, masses_amu, temperature, shape):
    """Maxwell-Boltzmann velocities (Å/fs) for masses in amu."""
    sigma = np.sqrt(sc.k * temperature / (masses_amu * sc.atomic_mass)) / A_PER_FS
    return rng.normal(size=shape) * sigma[:, None]


class FixedCharges:
    """A fake BEC provider: Z_j = q_j I, so Ṁ = Σ_j q_j v_j (e·Å/fs)."""

    def __init__(self, charges):
        self.q = np.asarray(charges, dtype=float)
        self.calls = 0

    def dipole_derivative(self, atoms, velocities):
        self.calls += 1
        return self.q @ velocities


def mutating_frames(atoms, velocity_stream):
    """Yield the same Atoms object with fresh 'velocities' (cheap: no Atoms per frame)."""
    for v in velocity_stream:
        atoms.arrays["velocities"] = v
        yield atoms


# -- (a) integral sum rule --------------------------------------------------------------------

def test_sum_rule_constant_z_maxwell_velocities():
    rng = np.random.default_rng(7)
    masses = np.array([1.008, 15.999, 12.011, 35.45])
    z = rng.normal(size=(4, 3, 3)) * 0.8  # non-symmetric, no sum rule imposed
    cell = 9.0
    atoms = Atoms("HOCCl", positions=rng.uniform(0, cell, (4, 3)), cell=[cell] * 3, pbc=True)
    atoms.set_masses(masses)
    atoms.new_array("bec", z.reshape(4, 9))
    atoms.new_array("velocities", np.zeros((4, 3)))
    temperature, n_frames = 300.0, 1 << 17
    stream = (maxwell(rng, masses, temperature, (4, 3)) for _ in range(n_frames))
    spec = ir_spectrum(mutating_frames(atoms, stream), timestep_fs=0.5,
                       temperature_K=temperature, max_lag_fs=100.0, progress=False)
    # ∫ nα dω with ω = 2π c ν̃: SI, ν̃ in m⁻¹ and nα in m⁻¹
    nu_m = spec.wavenumber_cm1 * 100.0
    y, omega = spec.n_alpha_cm1 * 100.0, 2 * np.pi * sc.c * nu_m
    integral = np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(omega))  # trapezoid, rad/s
    volume = cell**3 * sc.angstrom**3
    expected = np.pi * sum(
        np.trace(z[j] @ z[j].T) * sc.e**2 / (6 * sc.c * volume * sc.epsilon_0
                                             * masses[j] * sc.atomic_mass)
        for j in range(4))
    print(f"sum rule: integral / expected = {integral / expected:.5f}")
    assert integral == pytest.approx(expected, rel=0.01)


# -- (b) harmonic oscillator: peak position ---------------------------------------------------

def oscillator_frames(nu_cm1, n_frames, dt_fs, with_velocities=True, cell=12.0):
    """Two atoms, ±0.8 e, relative coordinate r(t) = r0 + A cos(ω t + φ) along x."""
    m1, m2 = 15.999, 1.008
    omega = nu_cm1 * RAD_PER_FS_PER_CM1
    t = np.arange(n_frames) * dt_fs
    r = 1.0 + 0.05 * np.cos(omega * t + 0.3)
    rdot = -0.05 * omega * np.sin(omega * t + 0.3)
    frames = []
    for i in range(n_frames):
        x1, x2 = -m2 / (m1 + m2) * r[i], m1 / (m1 + m2) * r[i]
        a = Atoms("OH", positions=[[x1 + 5, 5, 5], [x2 + 5, 5, 5]], cell=[cell] * 3, pbc=True)
        if with_velocities:
            v = np.zeros((2, 3))
            v[0, 0], v[1, 0] = -m2 / (m1 + m2) * rdot[i], m1 / (m1 + m2) * rdot[i]
            a.new_array("velocities", v)
        a.info["time_fs"] = t[i]
        frames.append(a)
    return frames


def test_harmonic_oscillator_peak():
    nu0, dt, max_lag = 1234.5, 1.0, 1000.0
    frames = oscillator_frames(nu0, 3000, dt)
    provider = FixedCharges([-0.8, 0.8])
    spec = ir_spectrum(frames, bec_provider=provider, temperature_K=300.0, max_lag_fs=max_lag,
                       progress=False)
    assert provider.calls == 3000
    resolution = 1.0 / (2 * max_lag * sc.femto * sc.c * 100)  # cm⁻¹, ≈ 16.7
    peak = spec.wavenumber_cm1[np.argmax(spec.n_alpha_cm1)]
    assert abs(peak - nu0) < resolution / 2
    # frequency scaling moves the axis, nothing else
    scaled = ir_spectrum(frames, bec_provider=provider, temperature_K=300.0,
                         max_lag_fs=max_lag, frequency_scale=0.985, progress=False)
    np.testing.assert_allclose(scaled.wavenumber_cm1, 0.985 * spec.wavenumber_cm1)
    np.testing.assert_allclose(scaled.n_alpha_cm1, spec.n_alpha_cm1)
    # the QCFs keep the peak and compare as documented at high frequency (x = βħω ≈ 5.9)
    for qcf in ("standard", "classical", "schofield", "egelstaff"):
        other = ir_spectrum(frames, bec_provider=provider, temperature_K=300.0,
                            max_lag_fs=max_lag, qcf=qcf, progress=False)
        band = other.wavenumber_cm1 < 3000  # Schofield amplifies the far tail as e^{x/2}
        peak = other.wavenumber_cm1[band][np.argmax(other.n_alpha_cm1[band])]
        assert abs(peak - nu0) < resolution
        ratio = other.n_alpha_cm1[band].max() / spec.n_alpha_cm1.max()
        if qcf in ("standard", "classical"):
            assert ratio < 1
        else:
            assert ratio > 1


# -- (c) SI units by hand ---------------------------------------------------------------------

def test_one_point_by_hand_in_si(tmp_path):
    rng = np.random.default_rng(3)
    n, dt_fs, temperature, cell = 6, 1.0, 250.0, 7.0
    z = rng.normal(size=(2, 3, 3))
    vel = rng.normal(size=(n, 2, 3)) * 0.01  # Å/fs
    frames = []
    for i in range(n):
        a = Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]], cell=[cell] * 3, pbc=True)
        a.new_array("bec", z.reshape(2, 9))
        a.new_array("velocities", vel[i])
        a.info["time_fs"] = i * dt_fs
        frames.append(a)
    path = tmp_path / "two_atoms.extxyz"
    ase.io.write(path, frames, format="extxyz")
    spec = ir_spectrum(str(path), temperature_K=temperature, window="none",
                       max_lag_fs=(n - 1) * dt_fs, zero_pad=1, progress=False)

    # from scratch, SI: Ṁ in C·m/s, C(l) unbiased, I(ω) = Σ_{l=-L}^{L} C(|l|) e^{-iωlΔt} Δt
    mdot = np.array([sum(z[j] @ vel[i, j] for j in range(2)) for i in range(n)])
    mdot_si = mdot * sc.e * A_PER_FS
    corr = [np.mean([mdot_si[i] @ mdot_si[i + l] for i in range(n - l)]) for l in range(n)]
    dt = dt_fs * sc.femto
    k, P = 2, n  # grid ω_k = π k / (P Δt), P = zero_pad (L + 1)
    omega = np.pi * k / (P * dt)
    integral = sum(corr[abs(l)] * np.exp(-1j * omega * l * dt) * dt for l in range(-n + 1, n))
    n_alpha = (integral.real / (sc.k * temperature)
               / (6 * sc.c * cell**3 * sc.angstrom**3 * sc.epsilon_0)) / 100.0  # cm⁻¹
    wavenumber = omega / (2 * np.pi * sc.c) / 100.0
    assert spec.wavenumber_cm1[k] == pytest.approx(wavenumber, rel=1e-7)
    assert spec.n_alpha_cm1[k] == pytest.approx(n_alpha, rel=1e-6)
    assert spec.volume_A3 == pytest.approx(cell**3)


# -- (d) errors name file and frame -----------------------------------------------------------

def _write(path, times, pbc=True, time_key="time_fs"):
    frames = []
    for i, t in enumerate(times):
        a = Atoms("H2", positions=[[0, 0, 0.01 * i], [0, 0, 0.74]], cell=[6.0] * 3, pbc=pbc)
        a.new_array("velocities", np.full((2, 3), 0.01))
        a.new_array("bec", np.tile(np.eye(3).ravel(), (2, 1)))
        if t is not None:
            a.info[time_key] = t
        frames.append(a)
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def test_error_non_uniform_time_step(tmp_path):
    path = _write(tmp_path / "uneven.extxyz", [0.0, 1.0, 2.0, 3.5, 4.5])
    with pytest.raises(BornDataError, match=re.escape(path) + ".*frame 3.*non-uniform"):
        ir_spectrum(path, temperature_K=300, progress=False)
    path = _write(tmp_path / "uneven_dt.extxyz", [1.0, 1.0, 2.0], time_key="timestep_fs")
    with pytest.raises(BornDataError, match=re.escape(path) + ".*frame 2.*non-uniform"):
        ir_spectrum(path, temperature_K=300, progress=False)


def test_error_missing_time_step(tmp_path):
    path = _write(tmp_path / "notime.extxyz", [None] * 5)
    with pytest.raises(BornDataError, match=re.escape(path) + ".*frame 0.*missing time step"):
        ir_spectrum(path, temperature_K=300, progress=False)
    # the flag fixes it
    spec = ir_spectrum(path, temperature_K=300, timestep_fs=1.0, progress=False)
    assert spec.timestep_fs == 1.0


def test_error_non_periodic_needs_volume(tmp_path):
    path = _write(tmp_path / "molecule.extxyz", [0.0, 1.0, 2.0, 3.0], pbc=False)
    with pytest.raises(BornDataError, match=re.escape(path) + ".*frame 0.*volume"):
        ir_spectrum(path, temperature_K=300, progress=False)
    spec = ir_spectrum(path, temperature_K=300, volume_A3=1000.0, progress=False)
    assert spec.volume_A3 == 1000.0


def test_error_missing_bec_names_key(tmp_path):
    frames = oscillator_frames(1000.0, 4, 1.0)
    path = tmp_path / "nobec.extxyz"
    ase.io.write(path, frames, format="extxyz")
    with pytest.raises(BornDataError, match=re.escape(str(path)) + ".*frame 0.*key 'bec'"):
        ir_spectrum(str(path), temperature_K=300, progress=False)


# -- (e) velocities ---------------------------------------------------------------------------

def test_velocities_from_positions_match_given(tmp_path):
    """Smooth motion across the periodic boundary, stored wrapped and without velocities:
    one half-step sample per pair of frames, the mean velocity over the step."""
    cell, dt, n = 5.0, 0.5, 400
    rng = np.random.default_rng(1)
    x0 = rng.uniform(0, cell, (3, 3))
    u = rng.normal(size=(3, 3)) * 0.05  # Å/fs drift: crosses the box
    amp, omega = 0.2, 0.02  # Å, rad/fs
    t = np.arange(n) * dt
    pos = x0 + u * t[:, None, None] + amp * np.sin(omega * t)[:, None, None]
    frames = []
    for i in range(n):
        a = Atoms("H3", positions=pos[i], cell=[cell] * 3, pbc=True)
        a.wrap()
        a.info["time_fs"] = t[i]
        frames.append(a)
    path = tmp_path / "wrapped.extxyz"
    ase.io.write(path, frames, format="extxyz")
    stats = TrajectoryStats(path=str(path))
    got = list(iter_frames(str(path), stats=stats))
    assert stats.velocity_source == "positions" and stats.timestep_fs == pytest.approx(dt)
    assert [f.index for f in got] == list(range(n - 1))
    v = np.array([f.velocities for f in got])
    np.testing.assert_allclose(v, np.diff(pos, axis=0) / dt, atol=1e-6)  # extxyz precision


def test_velocities_from_ase_momenta_are_converted(tmp_path):
    rng = np.random.default_rng(2)
    v_true = rng.normal(size=(5, 2, 3)) * 0.01  # Å/fs
    path = tmp_path / "run.traj"
    with ase.io.Trajectory(path, "w") as traj:
        for i in range(5):
            a = Atoms("CO", positions=[[0, 0, 0], [1.1, 0, 0]], cell=[8.0] * 3, pbc=True)
            a.set_velocities(v_true[i] / ase.units.fs)  # ASE velocity units
            traj.write(a)
    got = list(iter_frames(str(path), timestep_fs=1.0))
    np.testing.assert_allclose([f.velocities for f in got], v_true, rtol=1e-7)


def test_kinetic_temperature():
    rng = np.random.default_rng(4)
    atoms = Atoms("H64O32", positions=rng.uniform(0, 10, (96, 3)), cell=[10.0] * 3, pbc=True)
    masses = atoms.get_masses()
    stream = [maxwell(rng, masses, 350.0, (96, 3)) for _ in range(200)]
    for v in stream:
        v -= (masses[:, None] * v).sum(0) / masses.sum()  # zero total momentum: 3N-3 dof
    stats = TrajectoryStats(path="<memory>")
    list(iter_frames(mutating_frames(atoms, stream), timestep_fs=1.0, stats=stats))
    assert stats.temperature_K == pytest.approx(350.0, rel=0.02)


# -- (f) several trajectories, blocks, CSV, plot, CLI -----------------------------------------

def _ou_trajectory(path, seed, n=600, dt=1.0):
    """Two atoms with BECs and Ornstein-Uhlenbeck velocities (a damped band near 0)."""
    rng = np.random.default_rng(seed)
    z = np.array([np.diag([1.0, 1.2, 0.9]), -np.diag([1.0, 1.2, 0.9])]).reshape(2, 9)
    v = np.zeros((2, 3))
    frames = []
    for i in range(n):
        v = 0.95 * v + np.sqrt(1 - 0.95**2) * rng.normal(size=(2, 3)) * 0.005
        a = Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]], cell=[6.0] * 3, pbc=True)
        a.new_array("bec", z)
        a.new_array("velocities", v.copy())
        a.info["time_fs"] = i * dt
        frames.append(a)
    ase.io.write(path, frames, format="extxyz")
    return str(path)


def test_band_csv_round_trip_and_plot(tmp_path):
    paths = [_ou_trajectory(tmp_path / f"run{i}.extxyz", seed=i) for i in range(3)]
    spec = ir_spectrum(paths, temperature_K=300.0, max_lag_fs=100.0, progress=False)
    assert spec.n_trajectories == 3 and spec.n_samples == 3
    assert np.all(spec.n_alpha_low_cm1 <= spec.n_alpha_cm1)
    assert np.all(spec.n_alpha_cm1 <= spec.n_alpha_high_cm1)
    assert np.any(spec.n_alpha_high_cm1 > spec.n_alpha_low_cm1)
    out = spec.to_csv(tmp_path / "out" / "ir.csv")
    assert out.read_text().splitlines()[0] == \
        "wavenumber_cm-1,n_alpha_cm-1,n_alpha_ci95_low_cm-1,n_alpha_ci95_high_cm-1"
    back = IRSpectrum.read_csv(out)
    for name in ("wavenumber_cm1", "n_alpha_cm1", "n_alpha_low_cm1", "n_alpha_high_cm1"):
        np.testing.assert_allclose(getattr(back, name), getattr(spec, name), rtol=1e-9)
    png = plot_ir(spec, tmp_path / "ir.png",
                  experiment=(np.array([0.0, 3000.0]), np.array([1.0, 2.0])))
    assert png.stat().st_size > 1000
    # blocks of one trajectory also give a band; a single sample gives none
    blocks = ir_spectrum(paths[0], temperature_K=300.0, n_blocks=4, progress=False)
    assert blocks.n_samples == 4 and np.all(np.isfinite(blocks.n_alpha_low_cm1))
    with pytest.warns(UserWarning, match="no confidence band"):
        single = ir_spectrum(paths[0], temperature_K=300.0, progress=False)
    assert np.all(np.isnan(single.n_alpha_low_cm1))


def test_cli_bec_from_file(tmp_path, capsys):
    paths = [_ou_trajectory(tmp_path / f"run{i}.extxyz", seed=10 + i, n=200) for i in range(2)]
    parser = ir_cli.add_arguments(argparse.ArgumentParser(prog="bornml ir"))
    args = parser.parse_args(paths + ["--bec-from-file", "--max-lag", "50", "--qcf", "standard",
                                      "--output", str(tmp_path / "ir.csv"), "--plot",
                                      str(tmp_path / "ir.png"), "--no-progress"])
    assert ir_cli.run(args) == 0
    assert (tmp_path / "ir.csv").exists() and (tmp_path / "ir.png").exists()
    assert '"n_trajectories": 2' in capsys.readouterr().out
    with pytest.raises(SystemExit):  # --model or --bec-from-file is required
        parser.parse_args(paths + ["--output", "x.csv"])


def test_bertie_lan_conversion(shared_data):
    experiment = shared_data / "water-ir-experiment"
    nu, n_alpha = read_experiment_csv(experiment / "spectrum.csv")
    absorption = np.loadtxt(experiment / "absorption.csv", delimiter=",", skiprows=1)
    n = np.loadtxt(experiment / "real-refractive-index.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(n_alpha, absorption[:, 1] * n[:, 1], rtol=1e-6)
    stretch = nu > 2500
    assert 3300 < nu[stretch][np.argmax(n_alpha[stretch])] < 3500
