"""``bornml demo``: the main job on data shipped with the package, no network.

1. Train a monopole model on 27 of the 30 shipped α-quartz frames (MIT licence), test on the
   3 evenly spaced held-out frames, write the model and a parity plot.
2. Generate a short trajectory of the first frame with a toy force field (harmonic Si–O and
   O–O springs of the SiO4 tetrahedra, velocity Verlet, 300 K), predict Ṁ = Σ_j Z_j v_j along
   it with the model, and plot the IR spectrum. The toy springs set the band positions, so
   the spectrum demonstrates the pipeline, not quartz's measured spectrum.
"""

import json
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np

from . import keys, units
from .fileutils import atomic_path

SHIPPED_DATA = "quartz_30.extxyz"
SPRINGS_EV_PER_A2 = {"Si-O": 37.0, "O-O": 5.0}  # toy values: Si–O stretch near 1000 cm⁻¹
BOND_CUTOFFS_A = {"Si-O": 2.0, "O-O": 2.9}


def shipped_data_path():
    """Path of the shipped α-quartz example data."""
    return Path(str(resources.files("bornml") / "data" / SHIPPED_DATA))


def spring_network_trajectory(atoms, n_steps, dt_fs=0.5, save_every=4, temperature_K=300.0,
                              seed=0):
    """Velocity-Verlet MD with harmonic springs between bonded neighbours of ``atoms``.

    Springs (rest length = the starting distance) join Si–O pairs within 2.0 Å and O–O pairs
    within 2.9 Å (minimum image). Returns a list of frames with ``arrays["velocities"]``
    (Å/fs) and ``info["timestep_fs"]`` = dt_fs · save_every.
    """
    from ase.geometry import find_mic

    frame = atoms.copy()
    frame.arrays.pop(keys.BEC, None)
    pos = frame.positions.copy()
    sym = np.array(frame.get_chemical_symbols())
    masses = frame.get_masses()
    i, j = np.triu_indices(len(frame), 1)
    vec, dist = find_mic(pos[j] - pos[i], frame.cell, frame.pbc)
    kind = np.where((sym[i] == "O") & (sym[j] == "O"), "O-O", "Si-O")
    mixed = sym[i] != sym[j]
    bonded = np.where(kind == "O-O", dist < BOND_CUTOFFS_A["O-O"],
                      mixed & (dist < BOND_CUTOFFS_A["Si-O"]))
    bi, bj, rest = i[bonded], j[bonded], dist[bonded]
    k = np.array([SPRINGS_EV_PER_A2[t] for t in kind[bonded]])

    def forces(x):
        d = x[bj] - x[bi]
        d -= np.rint(d @ np.linalg.inv(frame.cell[:])) @ frame.cell[:]
        r = np.linalg.norm(d, axis=1)
        f = (k * (r - rest) / r)[:, None] * d  # force on i, eV/Å
        out = np.zeros_like(x)
        np.add.at(out, bi, f)
        np.add.at(out, bj, -f)
        return out

    rng = np.random.default_rng(seed)
    kt = units.BOLTZMANN_EV_PER_K * temperature_K
    sigma = np.sqrt(kt / masses / units.AMU_A2_PER_FS2_TO_EV)  # Å/fs
    vel = rng.normal(size=pos.shape) * sigma[:, None]
    vel -= (masses[:, None] * vel).sum(0) / masses.sum()
    acc = forces(pos) / masses[:, None] / units.AMU_A2_PER_FS2_TO_EV
    out = []
    for step in range(n_steps):
        if step % save_every == 0:
            snap = frame.copy()
            snap.positions = pos.copy()
            snap.arrays[keys.VELOCITIES] = vel.copy()
            snap.info[keys.TIMESTEP] = dt_fs * save_every
            out.append(snap)
        vel += 0.5 * dt_fs * acc
        pos += dt_fs * vel
        acc = forces(pos) / masses[:, None] / units.AMU_A2_PER_FS2_TO_EV
        vel += 0.5 * dt_fs * acc
    return out


def run_demo(output_dir="bornml-demo", quick=False):
    """Run the demo; writes model, parity plot, spectrum CSV/PNG and summary.json."""
    from .io import read_frames
    from .metrics import bec_errors, held_out_indices
    from .models.monopole import MonopoleModel
    from .plots import parity_plot
    from .spectra.ir import ir_spectrum
    from .spectra.plot import plot_ir

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    frames = read_frames(shipped_data_path())
    test = held_out_indices(len(frames), 0.1)
    train = [f for i, f in enumerate(frames) if i not in set(test.tolist())]
    held = [frames[i] for i in test]
    print(f"[1/3] training a monopole model on {len(train)} α-quartz frames "
          f"({len(frames[0])} atoms each; held out: frames {test.tolist()})", file=sys.stderr)
    model = MonopoleModel(cutoff=5.0, max_radial=5 if quick else 7,
                          max_angular=4 if quick else 6, n_sparse=100 if quick else 300,
                          progress=True)
    model.fit(train)
    model.training_summary_ = {"data": SHIPPED_DATA, "test_frames": test.tolist()}
    predictions = model.predict(held)
    errors = bec_errors(held, predictions)
    train_errors = bec_errors(train, model.predict(train))
    per = ", ".join(f"{s} {v['rmse']:.3f} e" for s, v in errors["per_species"].items())
    print(f"      held-out RMSE {errors['rmse']:.4f} e, nRMSE {errors['nrmse']:.3f} "
          f"(per species: {per}); train RMSE {train_errors['rmse']:.4f} e", file=sys.stderr)
    model_path = out / "quartz_monopole.npz"
    model.save(model_path)
    parity_plot(held, predictions, out / "parity.png", title="α-quartz, held-out frames")

    n_steps = 2000 if quick else 8000
    print(f"[2/3] toy spring-network MD of α-quartz: {n_steps} steps of 0.5 fs at 300 K",
          file=sys.stderr)
    traj = spring_network_trajectory(frames[0], n_steps)
    print("[3/3] IR spectrum from Ṁ = Σ_j Z_j v_j with the model's Born charges",
          file=sys.stderr)
    halves = [traj[: len(traj) // 2], traj[len(traj) // 2:]]
    spectrum = ir_spectrum(halves, bec_provider=model, temperature_K=300.0,
                           max_lag_fs=400.0 if quick else 1000.0, progress=True)
    spectrum.to_csv(out / "ir_spectrum.csv")
    plot_ir(spectrum, out / "ir_spectrum.png", label="toy MD, monopole-model Z",
            title="α-quartz, toy spring-network dynamics")
    peak = float(spectrum.wavenumber_cm1[np.nanargmax(spectrum.n_alpha_cm1)])
    summary = {"held_out": {k: errors[k] for k in ("rmse", "nrmse", "n_frames")},
               "train": {k: train_errors[k] for k in ("rmse", "nrmse", "n_frames")},
               "per_species_rmse": {s: v["rmse"] for s, v in errors["per_species"].items()},
               "ir_peak_cm1": peak, "seconds": time.perf_counter() - t0,
               "files": sorted(p.name for p in out.iterdir() if not p.name.startswith("."))}
    with atomic_path(out / "summary.json") as tmp, open(tmp, "w") as handle:
        json.dump(summary, handle, indent=1)
    print(f"done in {summary['seconds']:.0f} s; wrote {', '.join(summary['files'])} to {out}/",
          file=sys.stderr)
    print(json.dumps(summary))
    return 0
