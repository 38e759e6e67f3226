"""`bornml ir` on the inputs users bring (issue 10, items 3-6 and the plot polish of item 8):
positions-only trajectories (XDATCAR, LAMMPS dumps), time axes, degrees of freedom, the
Student-t band, quantum corrections and windows against closed forms, Born-charge layouts and
per-frame forms, quiet progress in logs, plot ranges.

Reference values come from scipy (constants, Student t, Bessel K₁), not from bornml.units.
"""

import contextlib
import io

import ase.io
import ase.units
import matplotlib
import numpy as np
import pytest
from ase import Atoms
from scipy import constants as sc
from scipy import special, stats
from test_ir import FixedCharges, _ou_trajectory, maxwell, oscillator_frames

import bornml
from bornml.cli import main
from bornml.errors import BornDataError
from bornml.spectra import IRSpectrum, ir_spectrum, plot_ir
from bornml.spectra.ir import WINDOWS, lineshape, qcf_factor
from bornml.spectra.trajectory import TrajectoryStats, iter_frames

pytestmark = pytest.mark.filterwarnings("ignore:one trajectory and no blocks")

RAD_PER_FS_PER_CM1 = 2 * np.pi * sc.c * 100 * sc.femto


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def band_integral(spec, lo, hi):
    """∫ nα dν̃ over lo < ν̃ < hi (cm⁻², trapezoid)."""
    m = (spec.wavenumber_cm1 > lo) & (spec.wavenumber_cm1 < hi)
    x, y = spec.wavenumber_cm1[m], spec.n_alpha_cm1[m]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def compare_bands(a, b, lo, hi):
    """(integral ratio, peak-height ratio) of b over a in the window lo..hi cm⁻¹."""
    m = (a.wavenumber_cm1 > lo) & (a.wavenumber_cm1 < hi)
    return (band_integral(b, lo, hi) / band_integral(a, lo, hi),
            b.n_alpha_cm1[m].max() / a.n_alpha_cm1[m].max())


# -- item 3: positions-only trajectories --------------------------------------------------

OSC = {"nu0": 3400.0, "dt": 2.0, "n": 3000, "lo": 3000.0, "hi": 3800.0}


@pytest.fixture(scope="module")
def stretch_reference():
    """An O-H oscillator at 3400 cm⁻¹ sampled every 2 fs, spectrum from its velocities."""
    frames = oscillator_frames(OSC["nu0"], OSC["n"], OSC["dt"])
    return ir_spectrum(frames, bec_provider=FixedCharges([-0.8, 0.8]), temperature_K=300.0,
                       max_lag_fs=1000.0, progress=False)


def test_positions_only_high_frequency_band_matches_velocities(stretch_reference):
    """Central differences lose 44 % of a 3400 cm⁻¹ band at 2 fs (sinc²(ωΔt) = 0.56); the
    half-step differences with their exact inverse filter must not lose anything."""
    frames = oscillator_frames(OSC["nu0"], OSC["n"], OSC["dt"], with_velocities=False)
    spec = ir_spectrum(frames, bec_provider=FixedCharges([-0.8, 0.8]), temperature_K=300.0,
                       max_lag_fs=1000.0, progress=False)
    integral, peak = compare_bands(stretch_reference, spec, OSC["lo"], OSC["hi"])
    print(f"positions / velocities at 3400 cm⁻¹, 2 fs: integral {integral:.4f}, peak {peak:.4f}")
    assert integral == pytest.approx(1.0, abs=0.02)
    assert peak == pytest.approx(1.0, abs=0.02)
    assert spec.velocity_source == "positions"


def test_positions_only_needs_a_temperature():
    """Finite-difference velocities never give the kinetic temperature silently."""
    frames = oscillator_frames(1000.0, 50, 1.0, with_velocities=False)
    with pytest.raises(BornDataError, match="no velocities.*--temperature"):
        ir_spectrum(frames, bec_provider=FixedCharges([-0.8, 0.8]), progress=False)
    spec = ir_spectrum(frames, bec_provider=FixedCharges([-0.8, 0.8]), temperature_K=310.0,
                       progress=False)
    assert spec.temperature_K == 310.0 and "given" in spec.temperature_source
    with_v = ir_spectrum(oscillator_frames(1000.0, 50, 1.0),
                         bec_provider=FixedCharges([-0.8, 0.8]), progress=False)
    assert "kinetic" in with_v.temperature_source and "file velocities" in \
        with_v.temperature_source


def test_half_steps_with_stored_born_charges(tmp_path):
    """Positions only and Born charges in the frames: Z at the half step is ½(Z_n + Z_n+1);
    same band as from the velocities."""
    z = np.array([[[-0.8, 0.1, 0], [0.05, -0.7, 0], [0, 0, -0.6]]])
    z = np.concatenate([z, -z])
    frames = oscillator_frames(OSC["nu0"], OSC["n"], OSC["dt"], with_velocities=False)
    for f in frames:
        f.arrays["bec"] = z.reshape(2, 9)
    spec = ir_spectrum(frames, temperature_K=300.0, max_lag_fs=1000.0, progress=False)
    ref = oscillator_frames(OSC["nu0"], OSC["n"], OSC["dt"])
    for f in ref:
        f.arrays["bec"] = z.reshape(2, 9)
    ref = ir_spectrum(ref, temperature_K=300.0, max_lag_fs=1000.0, progress=False)
    integral, peak = compare_bands(ref, spec, OSC["lo"], OSC["hi"])
    assert integral == pytest.approx(1.0, abs=0.02) and peak == pytest.approx(1.0, abs=0.02)


def test_half_step_samples_and_midpoints(tmp_path):
    """Wrapped positions across the boundary: the half-step velocity is the exact mean
    velocity over the step, the geometry the unwrapped midpoint."""
    cell, dt, n = 5.0, 0.5, 50
    rng = np.random.default_rng(1)
    x0 = rng.uniform(0, cell, (3, 3))
    u = rng.normal(size=(3, 3)) * 0.3  # Å/fs: crosses the box
    t = np.arange(n) * dt
    frames = []
    for i in range(n):
        a = Atoms("H3", positions=x0 + u * t[i], cell=[cell] * 3, pbc=True)
        a.wrap()
        a.info["time_fs"] = t[i]
        frames.append(a)
    path = tmp_path / "wrapped.extxyz"
    ase.io.write(path, frames, format="extxyz")
    st = TrajectoryStats(path=str(path))
    got = list(iter_frames(str(path), stats=st))
    assert st.velocity_source == "positions" and st.sampling == "half-step"
    assert st.timestep_fs == pytest.approx(dt) and st.temperature_K is None
    assert [f.index for f in got] == list(range(n - 1))
    np.testing.assert_allclose([f.velocities for f in got], np.broadcast_to(u, (n - 1, 3, 3)),
                               atol=1e-6)
    mid = got[7].atoms.positions - got[7].ends[0].positions
    np.testing.assert_allclose(mid, 0.5 * u * dt, atol=1e-6)


def _write_dump(path, frames, step_every, velocities):
    """A LAMMPS text dump (metal units: Å, Å/ps) of ``frames`` (ASE cannot write dumps)."""
    lines = []
    for k, a in enumerate(frames):
        cols = "id type element x y z" + (" vx vy vz" if velocities else "")
        lines += ["ITEM: TIMESTEP", str(k * step_every), "ITEM: NUMBER OF ATOMS", str(len(a)),
                  "ITEM: BOX BOUNDS pp pp pp"]
        lines += [f"0.0 {a.cell[i, i]:.10f}" for i in range(3)]
        lines.append(f"ITEM: ATOMS {cols}")
        for j, (s, p) in enumerate(zip(a.get_chemical_symbols(), a.positions)):
            row = f"{j + 1} {1 + (s == 'H')} {s} {p[0]:.10f} {p[1]:.10f} {p[2]:.10f}"
            if velocities:
                v = a.arrays["velocities"][j] * 1000.0  # Å/fs -> Å/ps
                row += f" {v[0]:.10e} {v[1]:.10e} {v[2]:.10e}"
            lines.append(row)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_xdatcar_and_lammps_dump_end_to_end(stretch_reference, tmp_path, monkeypatch):
    provider = FixedCharges([-0.8, 0.8])
    frames = oscillator_frames(OSC["nu0"], OSC["n"], OSC["dt"])
    xdatcar = tmp_path / "XDATCAR"
    ase.io.write(xdatcar, [Atoms(f.symbols, f.positions, cell=f.cell, pbc=True)
                           for f in frames], format="vasp-xdatcar")
    dump_x = _write_dump(tmp_path / "md.lammpstrj", frames, 4, velocities=False)
    dump_v = _write_dump(tmp_path / "md_v.lammpstrj", frames, 4, velocities=True)
    kw = {"bec_provider": provider, "timestep_fs": 2.0, "max_lag_fs": 1000.0, "progress": False}
    for path, fmt, temperature in ((str(xdatcar), None, 300.0),
                                   (dump_x, "lammps-dump-text", 300.0),
                                   (dump_v, "lammps-dump-text", None)):
        spec = ir_spectrum(path, temperature_K=temperature, file_format=fmt, **kw)
        if temperature is None:  # kinetic temperature of the dump's velocities, 3N-3 = 3 dof
            m1, m2 = 15.999, 1.008
            v = np.array([f.arrays["velocities"] for f in frames])
            ekin = 0.5 * np.sum(np.array([m1, m2])[None, :, None] * v**2, axis=(1, 2)).mean()
            expected = 2 * ekin * sc.atomic_mass * (sc.angstrom / sc.femto)**2 / (3 * sc.k)
            assert spec.temperature_K == pytest.approx(expected, rel=1e-6)
            spec = ir_spectrum(path, temperature_K=300.0, file_format=fmt, **kw)
        integral, peak = compare_bands(stretch_reference, spec, OSC["lo"], OSC["hi"])
        assert integral == pytest.approx(1.0, abs=0.02), path
        assert peak == pytest.approx(1.0, abs=0.02), path
    # the LAMMPS step counter is not a time: the spacing must be given
    with pytest.raises(BornDataError, match="step counter"):
        ir_spectrum(dump_x, bec_provider=provider, temperature_K=300.0,
                    file_format="lammps-dump-text", progress=False)
    # the command line, with a model standing in for the trained one
    model = tmp_path / "model.npz"
    model.write_bytes(b"stand-in")
    monkeypatch.setattr(bornml, "load_model", lambda path: provider)
    argv = ["ir", xdatcar, "--model", model, "--timestep", "2", "--max-lag", "1000",
            "-o", tmp_path / "ir.csv", "--no-progress"]
    code, out, err = run_cli(argv)
    assert code == 2 and "--temperature" in err
    code, out, err = run_cli(argv + ["--temperature", "300"])
    assert code == 0, err
    assert '"velocity_source": "positions"' in out and '"temperature_source": "given' in out
    back = IRSpectrum.read_csv(tmp_path / "ir.csv")
    np.testing.assert_allclose(back.n_alpha_cm1, ir_spectrum(str(xdatcar), temperature_K=300.0,
                                                             **kw).n_alpha_cm1, rtol=1e-8)


# -- item 4: time axis, degrees of freedom -----------------------------------------------

def _frames(n, info):
    out = []
    for i in range(n):
        a = Atoms("H2", positions=[[0, 0, 0.01 * i], [0, 0, 0.74]], cell=[6.0] * 3, pbc=True)
        a.new_array("velocities", np.full((2, 3), 0.01))
        a.new_array("bec", np.tile(np.eye(3).ravel(), (2, 1)))
        a.info.update({k: v(i) for k, v in info.items()})
        out.append(a)
    return out


def test_every_time_source_is_cross_checked(tmp_path):
    """A file storing the integration step (0.5 fs) while frames are 2 fs apart is an error,
    as is a --timestep that contradicts the file."""
    path = tmp_path / "md.extxyz"
    ase.io.write(path, _frames(6, {"timestep_fs": lambda i: 0.5, "time_fs": lambda i: 2.0 * i}),
                 format="extxyz")
    with pytest.raises(BornDataError, match=rf"{path}.*frame 1.*'time_fs'.*disagree"):
        ir_spectrum(str(path), temperature_K=300, progress=False)
    path = tmp_path / "md2.extxyz"
    ase.io.write(path, _frames(6, {"time_fs": lambda i: 2.0 * i}), format="extxyz")
    with pytest.raises(BornDataError, match=rf"{path}.*frame 1.*disagree.*--timestep"):
        ir_spectrum(str(path), temperature_K=300, timestep_fs=1.0, progress=False)
    spec = ir_spectrum(str(path), temperature_K=300, timestep_fs=2.0, progress=False)
    assert spec.timestep_fs == 2.0


def test_bare_time_key_needs_a_unit(tmp_path):
    path = tmp_path / "md.extxyz"
    ase.io.write(path, _frames(6, {"time": lambda i: 0.002 * i}), format="extxyz")
    with pytest.raises(BornDataError, match=rf"{path}.*frame 0.*'time'.*--time-unit"):
        ir_spectrum(str(path), temperature_K=300, progress=False)
    spec = ir_spectrum(str(path), temperature_K=300, time_unit="ps", progress=False)
    assert spec.timestep_fs == pytest.approx(2.0)
    spec = ir_spectrum(str(path), temperature_K=300, time_unit="ase", progress=False)
    assert spec.timestep_fs == pytest.approx(0.002 * ase.units.fs**-1, rel=1e-6)


def test_ase_md_trajectory_header_gives_the_frame_spacing(tmp_path):
    from ase.calculators.emt import EMT
    from ase.md.verlet import VelocityVerlet

    atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.4, 0, 0]], cell=[9.0] * 3, pbc=True)
    atoms.calc = EMT()
    path = tmp_path / "md.traj"
    dyn = VelocityVerlet(atoms, timestep=0.5 * ase.units.fs, trajectory=str(path),
                         loginterval=4)
    dyn.run(40)
    provider = FixedCharges([1.0, -1.0])
    spec = ir_spectrum(str(path), bec_provider=provider, temperature_K=300, progress=False)
    assert spec.timestep_fs == pytest.approx(2.0)
    with pytest.raises(BornDataError, match=rf"{path}.*frame 0.*disagree"):
        ir_spectrum(str(path), bec_provider=provider, temperature_K=300, timestep_fs=0.5,
                    progress=False)


def test_degrees_of_freedom(tmp_path):
    rng = np.random.default_rng(4)
    atoms = Atoms("H6O3", positions=rng.uniform(0, 8, (9, 3)), cell=[8.0] * 3, pbc=True)
    m = atoms.get_masses()
    frames = []
    for i in range(40):
        a = atoms.copy()
        a.new_array("velocities", maxwell(rng, m, 300.0, (9, 3)))
        a.new_array("bec", np.tile(np.eye(3).ravel(), (9, 1)))
        a.info["time_fs"] = float(i)
        frames.append(a)
    ekin = np.mean([0.5 * np.sum(m[:, None] * f.arrays["velocities"]**2) for f in frames])
    ekin_j = ekin * sc.atomic_mass * (sc.angstrom / sc.femto)**2
    for kw, dof in (({}, 24), ({"constraints": 9}, 15), ({"dof": 18}, 18)):
        spec = ir_spectrum(frames, progress=False, **kw)
        assert spec.dof == dof
        assert spec.temperature_K == pytest.approx(2 * ekin_j / (dof * sc.k), rel=1e-6)
    path = tmp_path / "water.extxyz"
    ase.io.write(path, frames, format="extxyz")
    code, out, err = run_cli(["ir", path, "--bec-from-file", "--constraints", "9",
                              "-o", tmp_path / "ir.csv", "--no-progress"])
    assert code == 0, err
    assert '"dof": 15' in out
    with pytest.raises(SystemExit) as exit_:  # one or the other
        run_cli(["ir", path, "--bec-from-file", "--constraints", "9", "--dof", "3",
                 "-o", tmp_path / "ir.csv", "--no-progress"])
    assert exit_.value.code == 2


# -- item 5: confidence band and quantum corrections --------------------------------------

def test_band_is_the_student_t_interval(tmp_path):
    paths = [_ou_trajectory(tmp_path / f"run{i}.extxyz", seed=20 + i, n=300) for i in range(4)]
    kw = {"temperature_K": 300.0, "max_lag_fs": 60.0, "progress": False}
    spec = ir_spectrum(paths, **kw)
    each = np.array([ir_spectrum(p, **kw).n_alpha_cm1 for p in paths])
    half = stats.t.ppf(0.975, 3) * each.std(axis=0, ddof=1) / np.sqrt(4)
    np.testing.assert_allclose(spec.n_alpha_cm1, each.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(spec.n_alpha_high_cm1 - spec.n_alpha_cm1, half, rtol=1e-9,
                               atol=1e-12 * half.max())
    np.testing.assert_allclose(spec.n_alpha_cm1 - spec.n_alpha_low_cm1, half, rtol=1e-9,
                               atol=1e-12 * half.max())
    assert "95 % CI" in spec.band and "independent" in spec.samples
    header = spec.to_csv(tmp_path / "ir.csv").read_text().splitlines()[0]
    assert "95" in header
    back = IRSpectrum.read_csv(tmp_path / "ir.csv")
    np.testing.assert_allclose(back.n_alpha_low_cm1, spec.n_alpha_low_cm1, rtol=1e-9)


def test_blocks_of_one_trajectory_are_flagged(tmp_path, capsys):
    path = _ou_trajectory(tmp_path / "run.extxyz", seed=3, n=400)
    spec = ir_spectrum(path, temperature_K=300.0, n_blocks=4, progress=False)
    assert spec.n_samples == 4 and "blocks of one trajectory" in spec.samples
    assert "optimistic" in spec.samples
    code, out, err = run_cli(["ir", path, "--bec-from-file", "--blocks", "4", "--temperature",
                              "300", "-o", tmp_path / "ir.csv", "--no-progress"])
    assert code == 0, err
    assert "blocks of one trajectory" in out and "95 % CI" in out


def _x(nu_cm1, temperature):
    return sc.h * sc.c * 100 * nu_cm1 / (sc.k * temperature)


def test_qcf_factors_against_closed_forms():
    nu, temperature = np.array([200.0, 1600.0, 3400.0]), 300.0
    x = _x(nu, temperature)
    closed = {"harmonic": np.ones(3), "standard": np.tanh(x / 2) / (x / 2),
              "classical": (1 - np.exp(-x)) / x, "schofield": np.sinh(x / 2) / (x / 2),
              "egelstaff": np.sinh(x / 2) / (x / 2)}
    for qcf, expected in closed.items():
        np.testing.assert_allclose(qcf_factor(qcf, nu, temperature), expected, rtol=1e-12)


def test_window_values_against_closed_forms():
    L = 40
    lag = np.array([0, 10, 20, 30, 40])
    c = np.cos(np.pi * lag / L)
    closed = {"hann": 0.5 * (1 + c), "hamming": 0.54 + 0.46 * c,
              "blackman": 0.42 + 0.5 * c + 0.08 * np.cos(2 * np.pi * lag / L),
              "none": np.ones(5)}
    assert set(closed) == set(WINDOWS)
    for name, expected in closed.items():
        np.testing.assert_allclose(WINDOWS[name](lag, L), expected, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(WINDOWS["hann"](lag, L), [1, 0.5 + 0.5 / 2**0.5, 0.5,
                                                           0.5 - 0.5 / 2**0.5, 0], atol=1e-15)


def test_egelstaff_on_the_dipole_correlation_closed_form():
    """Egelstaff on ⟨M·M⟩: C(t) = e^{−γ|t|} → G(t) = e^{−γ√(t²+τ²)}, τ = βħ/2, whose transform
    is 2γτ K₁(τ√(γ²+ω²)) / √(γ²+ω²); nα = β/(6cVε₀) · sinh(x/2)/(x/2) · ω² Ĝ(ω)."""
    gamma, dt, L, temperature, volume = 0.01, 1.0, 4000, 300.0, 1000.0  # 1/fs, fs, lags, K, Å³
    corr = np.exp(-gamma * np.arange(L + 1) * dt)  # (e·Å)²
    nu, na = lineshape(corr, timestep_fs=dt, temperature_K=temperature, volume_A3=volume,
                       window="none", qcf="egelstaff", correlation="dipole", zero_pad=1,
                       sampling="half-step")  # M sampled exactly (as P is from half steps)
    tau = 0.5 * sc.hbar / (sc.k * temperature) / sc.femto  # fs
    for target in (500.0, 1600.0, 3000.0):
        k = int(np.argmin(abs(nu - target)))
        omega = nu[k] * RAD_PER_FS_PER_CM1  # rad/fs
        s = np.sqrt(gamma**2 + omega**2)
        g_hat = 2 * gamma * tau * special.k1(tau * s) / s  # (e·Å)² fs
        x = _x(nu[k], temperature)
        si = (sc.e * sc.angstrom / sc.femto)**2 * sc.femto / (sc.k * temperature) \
            / (6 * sc.c * volume * sc.angstrom**3 * sc.epsilon_0) / 100.0
        expected = si * np.sinh(x / 2) / (x / 2) * omega**2 * g_hat
        assert na[k] == pytest.approx(expected, rel=1e-4), target


def test_egelstaff_needs_the_dipole_correlation():
    with pytest.raises(ValueError, match="egelstaff.*dipole"):
        lineshape(np.ones(10), timestep_fs=1.0, temperature_K=300.0, volume_A3=100.0,
                  qcf="egelstaff")


def test_egelstaff_end_to_end_reduces_to_harmonic_when_hot():
    """Integrating Ṁ to M (with its filter) and back: at 1e5 K (βħ/2 = 0.04 fs) Egelstaff is
    the harmonic lineshape, from velocities and from positions alike."""
    kw = {"bec_provider": FixedCharges([-0.8, 0.8]), "temperature_K": 1e5, "max_lag_fs": 800.0,
          "progress": False}
    with_v = oscillator_frames(1700.0, 2000, 2.0)
    ref = ir_spectrum(with_v, **kw)
    for frames in (with_v, oscillator_frames(1700.0, 2000, 2.0, with_velocities=False)):
        spec = ir_spectrum(frames, qcf="egelstaff", **kw)
        integral, peak = compare_bands(ref, spec, 1400.0, 2000.0)
        assert integral == pytest.approx(1.0, abs=0.02) and peak == pytest.approx(1.0, abs=0.02)


# -- item 6: Born charges from the file: layout and per-frame forms ----------------------

def _layout_copies(tmp_path):
    """The same OU trajectory with non-symmetric Z, stored P-r, r-P and as a frame key."""
    src = ase.io.read(_ou_trajectory(tmp_path / "src.extxyz", seed=5, n=300), ":")
    z = np.array([[[1.0, 0.6, 0.0], [-0.3, 1.2, 0.2], [0.1, 0.0, 0.9]]])
    z = np.concatenate([z, -z])
    pr, rp, info = [], [], []
    for a in src:
        a.arrays["velocities"] *= [3.0, 0.3, 1.0]  # anisotropic, or Z and Zᵀ give one spectrum
        b = a.copy()
        b.arrays["bec"] = z.reshape(2, 9)
        pr.append(b)
        c = a.copy()
        c.arrays["bec"] = z.transpose(0, 2, 1).reshape(2, 9)
        rp.append(c)
        d = a.copy()
        del d.arrays["bec"]
        d.info["born_effective_charges"] = z.ravel()
        info.append(d)
    paths = []
    for name, frames in (("pr", pr), ("rp", rp), ("info", info)):
        paths.append(str(tmp_path / f"{name}.extxyz"))
        ase.io.write(paths[-1], frames, format="extxyz")
    return paths


def test_r_p_copy_gives_the_p_r_spectrum(tmp_path):
    pr, rp, info = _layout_copies(tmp_path)
    kw = {"temperature_K": 300.0, "max_lag_fs": 60.0, "progress": False}
    ref = ir_spectrum(pr, **kw)
    np.testing.assert_allclose(ir_spectrum(rp, bec_layout="r-P", **kw).n_alpha_cm1,
                               ref.n_alpha_cm1, rtol=1e-12)
    wrong = ir_spectrum(rp, **kw)  # the default reads it as P-r: a different spectrum
    assert np.max(abs(wrong.n_alpha_cm1 - ref.n_alpha_cm1)) > 0.05 * ref.n_alpha_cm1.max()
    # the per-frame form the readers accept (9·N numbers as frame info)
    np.testing.assert_allclose(ir_spectrum(info, **kw).n_alpha_cm1, ref.n_alpha_cm1,
                               rtol=1e-12)
    out = tmp_path / "rp.csv"
    code, _, err = run_cli(["ir", rp, "--bec-from-file", "--layout", "r-P", "--temperature",
                            "300", "--max-lag", "60", "-o", out, "--no-progress"])
    assert code == 0, err
    np.testing.assert_allclose(IRSpectrum.read_csv(out).n_alpha_cm1, ref.n_alpha_cm1,
                               rtol=1e-8)
    code, _, err = run_cli(["ir", rp, "--model", rp, "--layout", "r-P", "-o", out])
    assert code == 2 and "--layout" in err


# -- item 8 (polish): progress in logs, plot ranges --------------------------------------

def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, capsys):
    path = _ou_trajectory(tmp_path / "run.extxyz", seed=1, n=200)
    ir_spectrum(path, temperature_K=300.0, max_lag_fs=50.0, progress=True)
    assert capsys.readouterr().err == ""


def test_plot_fits_the_data_and_clips_the_band_at_zero(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    nu = np.linspace(0, 8000, 801)
    y = np.exp(-0.5 * ((nu - 1000) / 60) ** 2) * 100
    spec = IRSpectrum(nu, y, y - 20.0, y + 20.0, n_trajectories=3, temperature_K=300.0,
                      volume_A3=1000.0, n_samples=3)
    seen = {}
    fill, xlim = Axes.fill_between, Axes.set_xlim

    def record_fill(self, x, y1, y2=0, **kw):
        seen["band"] = (np.asarray(y1), np.asarray(y2), kw.get("label"))
        return fill(self, x, y1, y2, **kw)

    def record_xlim(self, *args, **kw):
        if len(args) == 2:  # matplotlib itself calls it with one tuple
            seen["xlim"] = args
        return xlim(self, *args, **kw)

    monkeypatch.setattr(Axes, "fill_between", record_fill)
    monkeypatch.setattr(Axes, "set_xlim", record_xlim)
    plot_ir(spec, tmp_path / "ir.png")
    low, high, label = seen["band"]
    assert low.min() >= 0 and np.allclose(high, y + 20)
    assert "95 % CI" in label
    left, right = seen["xlim"]
    assert left == 0 and 1200 < right < 2000
    assert spec.n_alpha_low_cm1.min() < 0  # the data keep their values
