"""MD with the kernel force field (bornml.ForceFieldModel) for IR spectra: water or α-quartz.

Not part of the package. The cell of a DFT frame of ``--system`` (water: 64 H2O in the
12.429 Å cell of the RPBE-D3 data; quartz: the 72-atom cell of the QE data, ``--repeat`` for a
supercell) as the start, ASE integrators, 0.5 fs:

1. Maxwell velocities at 300 K, NVT equilibration with ASE's Bussi thermostat (τ = 100 fs);
2. for every run: fresh velocities (seed + run), NVT decorrelation, centre-of-mass velocity
   removed, then NVE velocity Verlet, writing every ``--stride`` steps (2 fs by default) to
   ``OUT/<system>_ff_nve_RUN.extxyz``: positions (Å, unwrapped: ASE does not wrap), per-atom
   ``velocities`` (Å/fs), info ``time_fs``, ``timestep_fs`` (fs), ``energy`` (potential, eV),
   ``total_energy`` (eV). Frames are flushed as written, so a run cut short by ``--budget-min``
   is a usable shorter trajectory (``benchmarks/water_ir.py`` reads complete frames only).

One JSON line per stage to stdout (wall time, ms per step, mean T, total-energy change):

    python benchmarks/ff_md.py --model benchmarks/out/ff_water_md.npz --runs 4 --nve-ps 5
    python benchmarks/ff_md.py --system quartz --model benchmarks/out/ff_quartz_md.npz
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, REPO, emit, shared_data

import bornml
from bornml import units


def log(text):
    print(text, file=sys.stderr, flush=True)


def min_distance(atoms):
    """Shortest interatomic distance (Å, minimum image): a collapse shows here first."""
    d = atoms.get_all_distances(mic=True)
    return float((d + 1e9 * np.eye(len(atoms))).min())


def maxwell(atoms, temperature_k, rng):
    """Maxwell-Boltzmann momenta at ``temperature_k`` with zero total momentum."""
    from ase import units as ase_units

    masses = atoms.get_masses()[:, None]
    p = rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * temperature_k * ase_units.kB)
    atoms.set_momenta(p - masses * p.sum(axis=0) / masses.sum())


def nvt(atoms, ps, dt_fs, seed, temperature_k):
    from ase import units as ase_units
    from ase.md.bussi import Bussi

    dyn = Bussi(atoms, dt_fs * ase_units.fs, temperature_K=temperature_k, taut=100 * ase_units.fs,
                rng=np.random.default_rng(seed))
    start = time.perf_counter()
    n = round(ps * 1000 / dt_fs)
    dyn.run(n)
    return n, time.perf_counter() - start


def nve(atoms, ps, dt_fs, stride, path, deadline):
    """Velocity Verlet, a frame every ``stride`` steps to ``path``; stops at ``deadline``."""
    import ase.io
    from ase import units as ase_units
    from ase.md.verlet import VelocityVerlet

    dyn = VelocityVerlet(atoms, dt_fs * ase_units.fs)
    n_frames = round(ps * 1000 / dt_fs) // stride + 1
    dof = 3 * len(atoms) - 3
    temps, totals = [], []
    start = time.perf_counter()
    with open(path, "w") as fh:
        for frame in range(n_frames):
            if frame:
                dyn.run(stride)
            epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
            out = atoms.copy()
            out.calc = None
            out.new_array("velocities", atoms.get_velocities() / units.ASE_TIME_UNIT_FS)
            out.info.update(time_fs=frame * stride * dt_fs, timestep_fs=stride * dt_fs,
                            energy=epot, total_energy=epot + ekin)
            ase.io.write(fh, out, format="extxyz")
            fh.flush()
            temps.append(2 * ekin / (dof * units.BOLTZMANN_EV_PER_K))
            totals.append(epot + ekin)
            if frame % 250 == 0:
                log(f"  {path.name} frame {frame}/{n_frames - 1}  T {temps[-1]:.0f} K  "
                    f"E_tot {totals[-1]:.4f} eV  min distance {min_distance(atoms):.2f} Å")
            if time.perf_counter() > deadline:
                log(f"  budget reached after {frame} frames")
                break
    wall = time.perf_counter() - start
    steps = (len(totals) - 1) * stride
    t_ps = np.arange(len(totals)) * stride * dt_fs / 1000
    slope = np.polyfit(t_ps, totals, 1)[0] if len(totals) > 2 else float("nan")
    return {"frames": len(totals), "ps": steps * dt_fs / 1000, "wall_s": wall,
            "ms_per_step": 1e3 * wall / max(steps, 1), "mean_T_K": float(np.mean(temps)),
            "total_energy_change_meV_per_atom": 1e3 * (totals[-1] - totals[0]) / len(atoms),
            "drift_meV_per_atom_per_ps": 1e3 * slope / len(atoms),
            "max_T_K": float(np.max(temps)), "min_distance_A": min_distance(atoms)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--system", choices=("water", "quartz"), default="water")
    parser.add_argument("--repeat", type=int, nargs=3, default=(1, 1, 1),
                        help="supercell of the start frame")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (300)")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--nvt-ps", type=float, default=2.0)
    parser.add_argument("--decorrelate-ps", type=float, default=0.5)
    parser.add_argument("--nve-ps", type=float, default=20.0)
    parser.add_argument("--dt", type=float, default=0.5, help="time step, fs (0.5)")
    parser.add_argument("--stride", type=int, default=4, help="steps between frames (4 = 2 fs)")
    parser.add_argument("--frame", type=int, default=0, help="DFT frame to start from")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget-min", type=float, default=1e9,
                        help="stop every run when this much wall time has passed in total")
    parser.add_argument("--out", type=Path, help="default benchmarks/out/<system>_ff_md")
    args = parser.parse_args()
    args.out = args.out or REPO / "benchmarks" / "out" / f"{args.system}_ff_md"
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + 60 * args.budget_min

    model = bornml.load_model(args.model)
    start = bornml.read_frames(shared_data() / DATASETS[args.system], index=f"{args.frame}",
                               require_bec=False)[0]
    atoms = Atoms(start.numbers, start.positions, cell=start.cell, pbc=True)
    atoms = atoms.repeat(args.repeat)
    atoms.calc = model.calculator()
    maxwell(atoms, args.temperature, np.random.default_rng(args.seed))
    n, wall = nvt(atoms, args.nvt_ps, args.dt, args.seed, args.temperature)
    emit({"bench": "ff_md", "system": args.system, "stage": "nvt", "model": str(args.model),
          "n_atoms": len(atoms), "ps": args.nvt_ps, "wall_s": wall,
          "ms_per_step": 1e3 * wall / max(n, 1), "T_K": float(atoms.get_temperature()),
          "min_distance_A": min_distance(atoms)})
    for run in range(args.runs):
        if time.perf_counter() > deadline:
            break
        maxwell(atoms, args.temperature, np.random.default_rng(args.seed + 1 + run))
        nvt(atoms, args.decorrelate_ps, args.dt, args.seed + 100 + run, args.temperature)
        momenta = atoms.get_momenta()
        atoms.set_momenta(momenta - atoms.get_masses()[:, None] * momenta.sum(0)
                          / atoms.get_masses().sum())
        path = args.out / f"{args.system}_ff_nve_{run}.extxyz"
        record = nve(atoms, args.nve_ps, args.dt, args.stride, path, deadline)
        emit({"bench": "ff_md", "system": args.system, "stage": "nve", "run": run,
              "path": str(path),
              "dt_fs": args.dt, "stride": args.stride, **record})


if __name__ == "__main__":
    main()
