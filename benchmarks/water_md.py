"""Generate flexible-water MD trajectories (q-SPC/Fw, OpenMM) for ``bornml ir`` benchmarks.

Not part of the package. 64 H2O in a cubic box of 12.429 Å (the cell of the RPBE-D3 water
data set in ../shared/data/water-rpbe, density ≈ 0.997 g/cm³), PME electrostatics, then:

1. energy minimisation and NVT equilibration at 300 K (Langevin, 1/ps friction, 0.5 fs);
2. for every run: fresh Maxwell-Boltzmann velocities (seed + run), NVT decorrelation, centre-of-
   mass velocity removed, then NVE with a velocity-Verlet integrator (0.5 fs) — positions and
   velocities at the same instant — saving every 2 fs to ``OUT/water_nve_RUN.extxyz``:
   positions (Å, unwrapped so molecules stay whole), per-atom ``velocities`` (Å/fs, read by
   bornml.spectra as is), frame info ``time_fs`` and ``timestep_fs`` (fs), ``energy``
   (potential, eV) and ``total_energy`` (eV).

Force field q-SPC/Fw: F. Paesani, W. Zhang, D. A. Case, T. E. Cheatham III & G. A. Voth,
J. Chem. Phys. 125, 184507 (2006), Table I; intramolecular non-bonded pairs excluded as in
SPC/Fw (Wu, Tepper & Voth, J. Chem. Phys. 124, 024503 (2006)).

Usage (production, as the lead will run it)::

    python benchmarks/water_md.py --runs 4 --length-ps 20 --out runs/water --seed 1

Progress goes to stderr; one JSON line per stage (with wall-clock timings) to stdout.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    from bornml import units
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from bornml import units

# -- q-SPC/Fw parameters (Paesani et al. 2006, Table I; energy of their Eqs. 2-3:
#    V = Σ k_b/2 (r_OH − r_eq)² + Σ k_θ/2 (θ − θ_eq)² + Σ_{i<j, other molecules} q_i q_j / r_ij
#        + Σ_{O–O pairs} 4ε[(σ/r)¹² − (σ/r)⁶]) -------------------------------------------------
Q_O_E = -0.84  #: oxygen partial charge, e
Q_H_E = +0.42  #: hydrogen partial charge, e
SIGMA_OO_A = 3.165492  #: Lennard-Jones σ between oxygens, Å (no LJ on H; as SPC/Fw)
EPSILON_OO_KCAL = 0.1554252  #: Lennard-Jones ε between oxygens, kcal/mol (as SPC/Fw)
R_OH_EQ_A = 1.0  #: O–H equilibrium bond length, Å
K_BOND_KCAL_A2 = 1059.162  #: O–H force constant k_b, kcal/(mol Å²), V = k_b/2 (r − r_eq)²
THETA_HOH_EQ_DEG = 112.0  #: H–O–H equilibrium angle, degrees
K_ANGLE_KCAL_RAD2 = 75.90  #: H–O–H force constant k_θ, kcal/(mol rad²), V = k_θ/2 (θ − θ_eq)²

# -- simulation set-up (choices of this benchmark, not of the force field) -------------------
BOX_A = 12.429  #: cubic box edge, Å (cell of ../shared/data/water-rpbe/H2O_BEC.extxyz)
N_MOLECULES = 64
CUTOFF_A = 6.0  #: real-space cutoff (< half the box), Å; PME + LJ long-range correction
FRICTION_PER_PS = 1.0  #: Langevin friction for NVT
EWALD_TOLERANCE = 5e-4  #: OpenMM's default; 1e-5 is 6x slower on CPU for no visible gain here


def build_system(box_a, n_side, rng):
    """OpenMM System, topology-free, and initial positions (Å) of n_side³ water molecules."""
    import openmm as mm
    from ase.data import atomic_masses, atomic_numbers
    from openmm import unit as u

    m_o, m_h = atomic_masses[atomic_numbers["O"]], atomic_masses[atomic_numbers["H"]]
    system = mm.System()
    a = box_a * u.angstrom
    system.setDefaultPeriodicBoxVectors(mm.Vec3(a, 0 * a, 0 * a), mm.Vec3(0 * a, a, 0 * a),
                                        mm.Vec3(0 * a, 0 * a, a))
    nb = mm.NonbondedForce()
    nb.setNonbondedMethod(mm.NonbondedForce.PME)
    nb.setCutoffDistance(CUTOFF_A * u.angstrom)
    nb.setUseDispersionCorrection(True)
    nb.setEwaldErrorTolerance(EWALD_TOLERANCE)
    bonds = mm.HarmonicBondForce()
    angles = mm.HarmonicAngleForce()
    kcal = u.kilocalorie_per_mole
    k_b = K_BOND_KCAL_A2 * kcal / u.angstrom**2
    k_t = K_ANGLE_KCAL_RAD2 * kcal / u.radian**2
    theta = np.deg2rad(THETA_HOH_EQ_DEG)
    # molecule in its own frame: O at the origin, H in the xy plane
    local = np.array([[0.0, 0.0, 0.0],
                      [R_OH_EQ_A * np.sin(theta / 2), R_OH_EQ_A * np.cos(theta / 2), 0.0],
                      [-R_OH_EQ_A * np.sin(theta / 2), R_OH_EQ_A * np.cos(theta / 2), 0.0]])
    spacing = box_a / n_side
    positions, symbols = [], []
    for ix in range(n_side):
        for iy in range(n_side):
            for iz in range(n_side):
                q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # random orientation
                centre = (np.array([ix, iy, iz]) + 0.5) * spacing
                o, h1, h2 = (system.addParticle(m) for m in (m_o, m_h, m_h))
                nb.addParticle(Q_O_E, SIGMA_OO_A * u.angstrom, EPSILON_OO_KCAL * kcal)
                nb.addParticle(Q_H_E, 1.0 * u.angstrom, 0.0 * kcal)
                nb.addParticle(Q_H_E, 1.0 * u.angstrom, 0.0 * kcal)
                for h in (h1, h2):
                    bonds.addBond(o, h, R_OH_EQ_A * u.angstrom, k_b)
                    nb.addException(o, h, 0.0, 1.0, 0.0)  # no intramolecular non-bonded
                nb.addException(h1, h2, 0.0, 1.0, 0.0)
                angles.addAngle(h1, o, h2, theta * u.radian, k_t)
                positions.extend(centre + local @ q.T)
                symbols.extend("OHH")
    for force in (nb, bonds, angles):
        system.addForce(force)
    return system, np.array(positions), symbols


def velocity_verlet(dt_fs):
    """NVE velocity-Verlet CustomIntegrator: x and v reported at the same time."""
    import openmm as mm
    from openmm import unit as u

    vv = mm.CustomIntegrator(dt_fs * u.femtosecond)
    vv.addUpdateContextState()
    vv.addComputePerDof("v", "v + 0.5*dt*f/m")
    vv.addComputePerDof("x", "x + dt*v")
    vv.addComputePerDof("v", "v + 0.5*dt*f/m")
    return vv


def make_context(system, integrator, platform):
    import openmm as mm

    if platform:
        return mm.Context(system, integrator, mm.Platform.getPlatformByName(platform))
    return mm.Context(system, integrator)


def snapshot(context):
    """(positions Å, velocities Å/fs, potential eV, kinetic eV) of the context's state."""
    from openmm import unit as u

    st = context.getState(getPositions=True, getVelocities=True, getEnergy=True)
    x = st.getPositions(asNumpy=True).value_in_unit(u.angstrom)
    v = st.getVelocities(asNumpy=True).value_in_unit(u.angstrom / u.femtosecond)
    per_mol = u.kilojoule_per_mole
    ev = (1.0 * u.elementary_charge * u.volt * u.AVOGADRO_CONSTANT_NA).value_in_unit(per_mol)
    return (np.asarray(x), np.asarray(v), st.getPotentialEnergy().value_in_unit(per_mol) / ev,
            st.getKineticEnergy().value_in_unit(per_mol) / ev)


def remove_com_velocity(context, masses):
    from openmm import unit as u

    v = context.getState(getVelocities=True).getVelocities(asNumpy=True).value_in_unit(
        u.nanometer / u.picosecond)
    v = np.asarray(v) - (masses[:, None] * v).sum(0) / masses.sum()
    context.setVelocities(v * u.nanometer / u.picosecond)


def emit(**record):
    print(json.dumps(record), flush=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_nve(context, masses, symbols, box_a, n_steps, stride, dt_fs, path):
    """Integrate n_steps, writing every ``stride`` steps to ``path`` (extxyz, atomically)."""
    import ase.io
    from ase import Atoms

    kb_ev = units.BOLTZMANN_EV_PER_K
    dof = 3 * len(masses) - 3
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".extxyz", dir=path.parent)
    temps, etot = [], []
    try:
        with os.fdopen(fd, "w") as fh:
            n_frames = n_steps // stride + 1
            for frame in range(n_frames):
                if frame:
                    context.getIntegrator().step(stride)
                x, v, epot, ekin = snapshot(context)
                atoms = Atoms(symbols, positions=x, cell=[box_a] * 3, pbc=True,
                              masses=masses)
                atoms.new_array("velocities", v)
                atoms.info.update(time_fs=frame * stride * dt_fs, timestep_fs=stride * dt_fs,
                                  energy=epot, total_energy=epot + ekin)
                ase.io.write(fh, atoms, format="extxyz")
                temps.append(2 * ekin / (dof * kb_ev))
                etot.append(epot + ekin)
                if frame % max(1, n_frames // 10) == 0:
                    log(f"  frame {frame}/{n_frames - 1}  T = {temps[-1]:.1f} K  "
                        f"E_tot = {etot[-1]:.4f} eV")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return n_frames, float(np.mean(temps)), float(etot[-1] - etot[0])


def main(argv=None):
    import openmm as mm
    from openmm import unit as u

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=4, help="independent NVE runs (default 4)")
    p.add_argument("--length-ps", type=float, default=20.0, help="NVE length per run, ps")
    p.add_argument("--equil-ps", type=float, default=20.0, help="initial NVT equilibration, ps")
    p.add_argument("--decorrelate-ps", type=float, default=5.0,
                   help="NVT between runs after redrawing velocities, ps")
    p.add_argument("--dt-fs", type=float, default=0.5, help="integration time step, fs")
    p.add_argument("--save-fs", type=float, default=2.0, help="time between saved frames, fs")
    p.add_argument("--temperature", type=float, default=300.0, help="NVT temperature, K")
    p.add_argument("--out", default="water_md", help="output folder")
    p.add_argument("--seed", type=int, default=1, help="random seed")
    p.add_argument("--platform", default=None, help="OpenMM platform (default: fastest)")
    args = p.parse_args(argv)
    stride = int(round(args.save_fs / args.dt_fs))
    if not np.isclose(stride * args.dt_fs, args.save_fs):
        p.error("--save-fs must be a multiple of --dt-fs")

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    n_side = round(N_MOLECULES ** (1 / 3))
    system, x0, symbols = build_system(BOX_A, n_side, rng)
    masses = np.array([system.getParticleMass(i).value_in_unit(u.dalton)
                       for i in range(system.getNumParticles())])
    density = masses.sum() * units.AMU_KG * 1e3 / (BOX_A * units.ANGSTROM_M * 1e2) ** 3  # g/cm³
    T = args.temperature * u.kelvin
    nvt = mm.LangevinMiddleIntegrator(T, FRICTION_PER_PS / u.picosecond,
                                      args.dt_fs * u.femtosecond)
    nvt.setRandomNumberSeed(args.seed)
    ctx = make_context(system, nvt, args.platform)
    ctx.setPositions(x0 * u.angstrom)
    mm.LocalEnergyMinimizer.minimize(ctx, 1.0, 1000)
    ctx.setVelocitiesToTemperature(T, args.seed)
    n_eq = int(round(args.equil_ps * 1000 / args.dt_fs))
    log(f"platform {ctx.getPlatform().getName()}, {len(symbols)} atoms, density "
        f"{density:.4f} g/cm³; NVT equilibration {args.equil_ps} ps ({n_eq} steps)")
    t1 = time.perf_counter()
    nvt.step(n_eq)
    t_eq = time.perf_counter() - t1
    emit(stage="equilibration", platform=ctx.getPlatform().getName(), n_atoms=len(symbols),
         density_g_cm3=round(density, 5), steps=n_eq, wall_s=round(t_eq, 3),
         ns_per_day=round(args.equil_ps * 1e-3 / max(t_eq, 1e-9) * 86400, 2))

    vv = velocity_verlet(args.dt_fs)
    nve = make_context(system, vv, args.platform)
    n_steps = int(round(args.length_ps * 1000 / args.dt_fs))
    n_dec = int(round(args.decorrelate_ps * 1000 / args.dt_fs))
    for run in range(args.runs):
        ctx.setVelocitiesToTemperature(T, args.seed + 1000 + run)
        nvt.step(n_dec)
        remove_com_velocity(ctx, masses)
        state = ctx.getState(getPositions=True, getVelocities=True)
        nve.setPositions(state.getPositions())
        nve.setVelocities(state.getVelocities())
        path = Path(args.out) / f"water_nve_{run:02d}.extxyz"
        log(f"run {run + 1}/{args.runs}: NVE {args.length_ps} ps -> {path}")
        t1 = time.perf_counter()
        n_frames, t_mean, drift = run_nve(nve, masses, symbols, BOX_A, n_steps, stride,
                                          args.dt_fs, path)
        wall = time.perf_counter() - t1
        emit(stage="nve", run=run, file=str(path), frames=n_frames, steps=n_steps,
             mean_temperature_K=round(t_mean, 2), energy_drift_eV=round(drift, 5),
             wall_s=round(wall, 3),
             ns_per_day=round(args.length_ps * 1e-3 / max(wall, 1e-9) * 86400, 2))
        # the next run branches off the NVT chain (new velocities + decorrelation period)
    emit(stage="done", runs=args.runs, total_wall_s=round(time.perf_counter() - t0, 3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
