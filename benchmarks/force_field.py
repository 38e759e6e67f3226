"""Kernel force field (bornml.ForceFieldModel) on the shared DFT sets: accuracy, cost, stability.

Not part of the package. Subcommands (one JSON line per result to stdout, progress to stderr):

    python benchmarks/force_field.py fit water --settings md      # held-out errors, model saved
    python benchmarks/force_field.py speed benchmarks/out/ff_water_md.npz   # ms per MD step
    python benchmarks/force_field.py nve benchmarks/out/ff_water_md.npz --ps 2   # NVE drift

``fit``: 10 % of the frames held out (evenly spaced, bornml.metrics.held_out_indices), the
model trained on the rest (``--train-every k``: every k-th of them) and written to
``benchmarks/out/ff_<set>_<settings>.npz``; reports force RMSE (eV/Å) and RMSE / std of the
force components, energy RMSE per atom (eV/atom; sets with energies), fit time
(:func:`bornml.metrics.force_field_errors`).
``speed``: one single-threaded force evaluation (neighbours, SOAP, kernel, adjoint) of the first
water frame (192 atoms; ``--system`` for another set), median of 30, with the load
average (the 2-core machine is shared). ``nve``: ASE velocity Verlet at ``--dt`` fs from a DFT
water frame with 300 K Maxwell velocities; total energy every 10 steps, linear drift in
meV/atom/ps, RMS fluctuation, smallest O–H / H–H distances (stability).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # cost per step is quoted for one core

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, REPO, emit, median_ms, shared_data

import bornml
from bornml.metrics import force_field_errors, held_out_indices

OUT = REPO / "benchmarks" / "out"

#: named settings: "default" = the BEC models' SOAP defaults, "md" = cheaper for MD
SETTINGS = {
    "default": {"cutoff": 5.0, "max_radial": 7, "max_angular": 6, "n_sparse": 500},
    "md": {"cutoff": 5.0, "max_radial": 6, "max_angular": 4, "n_sparse": 500},
}


def cmd_fit(args):
    path = shared_data() / DATASETS[args.dataset]
    frames = bornml.read_frames(path, require_bec=False)
    test = held_out_indices(len(frames), 0.1)
    train_idx = np.setdiff1d(np.arange(len(frames)), test)[::args.train_every]
    train, held = [frames[i] for i in train_idx], [frames[i] for i in test]
    settings = dict(SETTINGS[args.settings], tikhonov=args.tikhonov,
                    energy_weight=args.energy_weight, force_weight=1.0, progress=True)
    model = bornml.ForceFieldModel(**settings)
    start = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - start
    out = OUT / f"ff_{args.dataset}_{args.settings}.npz"
    model.training_summary_ = {"data": str(path), "train_frames": train_idx.tolist(),
                               "test_frames": test.tolist(), "fit_seconds": fit_s}
    model.save(out)
    record = {"bench": "force_field_fit", "dataset": args.dataset, "settings": args.settings,
              **settings, "n_train": len(train), "n_test": len(held),
              "references": {int(z): len(r) for z, r in model.reference_set_.references.items()},
              "fit_s": fit_s, "model": str(out.relative_to(REPO))}
    record["train"] = force_field_errors(train, model.predict(train))
    record["test"] = force_field_errors(held, model.predict(held))
    emit(record)


def cmd_speed(args):
    model = bornml.load_model(args.model)
    atoms = bornml.read_frames(shared_data() / DATASETS[args.system], index="0:1",
                               require_bec=False)[0]
    ms, times = median_ms(lambda: model.predict_frame(atoms), repeats=30, warmup=3)
    ctx = model.reference_set_.expand(atoms)
    expand_ms, _ = median_ms(lambda: model.reference_set_.expand(atoms), repeats=30)
    cpu = []  # CPU time of this process: the cost on one core even when the machine is shared
    for _ in range(30):
        start = time.process_time()
        model.predict_frame(atoms)
        cpu.append(1e3 * (time.process_time() - start))
    emit({"bench": "force_field_speed", "model": args.model, "n_atoms": len(atoms),
          "pairs": len(ctx.fe.pairs.centers), "features": model.reference_set_.n_features,
          "ms_per_step": ms, "ms_min": min(times), "ms_descriptor": expand_ms,
          "cpu_ms_per_step_median": float(np.median(cpu)),
          "threads": os.environ["OMP_NUM_THREADS"], "load_avg": os.getloadavg()[0]})


def min_distances(atoms):
    """Smallest O–H and H–H distances (Å, minimum image)."""
    d = atoms.get_all_distances(mic=True)
    h, o = atoms.numbers == 1, atoms.numbers == 8
    hh = d[np.ix_(h, h)] + 1e9 * np.eye(int(h.sum()))
    return float(d[np.ix_(o, h)].min()), float(hh.min())


def cmd_nve(args):
    from ase import units as ase_units
    from ase.md.verlet import VelocityVerlet

    model = bornml.load_model(args.model)
    atoms = bornml.read_frames(shared_data() / DATASETS["water"], index=f"{args.frame}",
                               require_bec=False)[0]
    atoms.calc = model.calculator()
    rng = np.random.default_rng(args.seed)
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * 300 * ase_units.kB))
    atoms.set_momenta(atoms.get_momenta() - masses * atoms.get_momenta().sum(0) / masses.sum())
    dyn = VelocityVerlet(atoms, timestep=args.dt * ase_units.fs)
    n_steps = round(args.ps * 1000 / args.dt)
    log = []
    start = time.perf_counter()
    for step in range(0, n_steps + 1, 10):
        if step:
            dyn.run(10)
        e_pot, e_kin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        log.append((step * args.dt, e_pot + e_kin, e_kin / (1.5 * len(atoms) * ase_units.kB)))
        if step % 400 == 0:
            oh, hh = min_distances(atoms)
            print(f"t {step * args.dt / 1000:.2f} ps  E {e_pot + e_kin:.4f} eV  "
                  f"T {log[-1][2]:.0f} K  min OH {oh:.2f} HH {hh:.2f} Å", file=sys.stderr)
            if oh < 0.5 or hh < 0.5 or not np.isfinite(e_pot):
                break
    wall = time.perf_counter() - start
    t, total, temp = (np.array(c) for c in zip(*log))
    slope = np.polyfit(t / 1000, total, 1)[0] if len(t) > 2 else float("nan")  # eV/ps
    oh, hh = min_distances(atoms)
    every = max(1, round(100 / (10 * args.dt)))  # the trace: every 100 fs
    emit({"bench": "force_field_nve", "model": args.model, "dt_fs": args.dt,
          "T_trace_K_every_100fs": [round(float(x)) for x in temp[::every]],
          "ps_run": float(t[-1] / 1000), "ps_asked": args.ps, "n_atoms": len(atoms),
          "drift_meV_per_atom_per_ps": 1e3 * slope / len(atoms),
          "total_energy_rms_meV_per_atom": 1e3 * float(np.std(total)) / len(atoms),
          "total_energy_change_meV_per_atom": 1e3 * float(total[-1] - total[0]) / len(atoms),
          "mean_T_K": float(temp.mean()), "min_OH_A": oh, "min_HH_A": hh,
          "ms_per_step": 1e3 * wall / max(1, len(t) * 10 - 10), "wall_s": wall})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit")
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--settings", choices=sorted(SETTINGS), default="md")
    p.add_argument("--tikhonov", type=float, default=1e-6)
    p.add_argument("--energy-weight", type=float, default=1.0)
    p.add_argument("--train-every", type=int, default=1)
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("speed")
    p.add_argument("model")
    p.add_argument("--system", choices=sorted(DATASETS), default="water")
    p.set_defaults(func=cmd_speed)
    p = sub.add_parser("nve")
    p.add_argument("model")
    p.add_argument("--ps", type=float, default=2.0)
    p.add_argument("--dt", type=float, default=0.5)
    p.add_argument("--frame", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_nve)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    args.func(args)


if __name__ == "__main__":
    main()
