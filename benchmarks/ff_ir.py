"""IR spectra of kernel-force-field MD (benchmarks/ff_md.py) with the q, p and q+p Born-charge
models and a fixed-charge baseline: water against Bertie & Lan, α-quartz against DFPT.

Not part of the package. Steps:

1. the three kernel BEC models of ``--system`` from ONE pass over its DFT frames (hyper-parameters
   ``learning_curve.HYPERS`` / ``COMBINED``, ``--n-sparse`` to make them cheaper): a
   CombinedModel accumulates the normal equations, q, p and q+p are solved from them
   (``fit_equations``); the 10 evenly spaced held-out frames of ``learning_curve.split`` give
   their Born-charge RMSE; models written to ``benchmarks/out/<system>_ff_ir_{q,p,qp}.npz``;
2. fixed charges Z_j = q⁰_j·I with q⁰ the training mean of tr(Z)/3 per species (the p model's);
3. ``bornml.ir_spectrum`` of the same trajectories with each (Hann window, harmonic QCF, kinetic
   temperature of each run, Student-t 95 % band over runs);
4. per band: peak position (cm⁻¹) and ∫ n·α dν̃ (cm⁻²); water bands as in ``water_ir.py``
   against Bertie & Lan; quartz: DFPT IR-active groups, the MD peak inside each window, and
   intensities relative to the 1041–1048 cm⁻¹ group, against the DFPT table (``IR`` column)
   and against ∫ n·α of the DFPT ε''(ω) (n·α = 2π ν̃ ε''(ν̃), ν̃ in cm⁻¹).

Outputs: JSON line (also ``benchmarks/out/<system>_ff_ir.json``), figure
``docs/figures/<system>_ir_ff.png``.

    python benchmarks/ff_ir.py water --n-sparse 500
    python benchmarks/ff_ir.py quartz --n-sparse 300 --max-frames 2000
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, REPO, emit, shared_data
from learning_curve import COMBINED, HYPERS, split
from water_ir import BANDS, FixedCharges, band_summary, complete_frames

OUT = REPO / "benchmarks" / "out"
FIGURES = REPO / "docs" / "figures"
EXPERIMENT = "water-ir-experiment/spectrum.csv"
DFPT = "sio2-quartz/dfpt_reference"
#: α-quartz IR-active groups of the DFPT table (cm⁻¹ windows around the modes)
QUARTZ_BANDS = {"1041-1048": (990.0, 1100.0), "751-767": (720.0, 800.0),
                "667": (640.0, 700.0), "462": (445.0, 485.0), "421": (400.0, 440.0),
                "348-375": (330.0, 395.0), "250": (230.0, 270.0)}
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


def model_path(system, name):
    return OUT / f"{system}_ff_ir_{name.replace('+', '')}.npz"


def bec_models(system, n_sparse, progress, reuse=False):
    """{"q", "p", "q+p": fitted model}, held-out errors, fit seconds (one accumulation);
    ``reuse``: load the models an earlier run wrote."""
    import bornml
    from bornml.metrics import bec_errors

    frames = bornml.read_frames(shared_data() / DATASETS[system])
    test, pool = split(len(frames))
    train, held = [frames[i] for i in pool], [frames[i] for i in test]
    if reuse:
        models = {name: bornml.load_model(model_path(system, name)) for name in ("q", "p", "q+p")}
        info = {"fit_s": None, "n_train": len(train), "reused": True,
                "hypers": models["q+p"].get_params()}
        for name, model in models.items():
            errors = bec_errors(held, model.predict(held))
            info[name] = {"test_rmse_e": errors["rmse"], "test_nrmse": errors["nrmse"]}
        info["fixed_charges_e"] = {int(z): float(q) for z, q in
                                   models["p"].fixed_charges_.items()}
        return models, info
    hypers = dict(HYPERS[system], n_sparse=n_sparse or HYPERS[system]["n_sparse"],
                  progress=progress)
    combined = dict(hypers, **COMBINED[system])
    combined["dipole_tikhonov"] = combined["tikhonov"]
    start = time.perf_counter()
    builder = bornml.CombinedModel(**combined).prepare(train)
    eqs = builder.accumulate(train, n_folds=1)
    dipole = {k: v for k, v in hypers.items() if k != "zeta"}
    models = {"q": bornml.MonopoleModel(**hypers, charge_regularisation=0.0),
              "p": bornml.DipoleModel(**dipole), "q+p": bornml.CombinedModel(**combined)}
    info = {"fit_s": None, "n_train": len(train), "hypers": combined}
    for name, model in models.items():
        model.fit_equations(eqs)
        errors = bec_errors(held, model.predict(held))
        info[name] = {"test_rmse_e": errors["rmse"], "test_nrmse": errors["nrmse"]}
        model.save(model_path(system, name))
    info["fit_s"] = time.perf_counter() - start
    info["fixed_charges_e"] = {int(z): float(q) for z, q in
                               models["p"].fixed_charges_.items()}
    return models, info


def streamed(path, n_frames):
    import ase.io

    return itertools.islice(ase.io.iread(str(path), index=":"), n_frames)


def dfpt_reference():
    """(modes (n, 3): cm⁻¹, THz, IR intensity; ν̃ cm⁻¹, n·α cm⁻¹ from ε'')."""
    base = shared_data() / DFPT
    modes = np.loadtxt(base / "SiO2-IR-dfpt.dat", comments="#")[:, 1:]
    eps_im = np.loadtxt(base / "SiO2-epsim-dfpt.dat")
    return modes, eps_im[:, 0], 2 * np.pi * eps_im[:, 0] * eps_im[:, 1]


def quartz_table(spectra, modes, nu_dfpt, na_dfpt):
    """Per DFPT group: DFPT mode(s), summed IR intensity, ∫n·α of ε''; per spectrum peak and ∫
    n·α; intensities relative to the 1041–1048 group."""
    table = {}
    for band, (lo, hi) in QUARTZ_BANDS.items():
        sel = (modes[:, 0] >= lo) & (modes[:, 0] <= hi)
        row = {"dfpt_modes_cm1": modes[sel, 0].round(1).tolist(),
               "dfpt_ir": float(modes[sel, 2].sum())}
        s = (nu_dfpt >= lo) & (nu_dfpt <= hi)
        row["dfpt_eps_integral_cm2"] = float(_trapezoid(na_dfpt[s], nu_dfpt[s]))
        for name, sp in spectra.items():
            nu = sp.wavenumber_cm1
            w = (nu >= lo) & (nu <= hi)
            row[name] = {"peak_cm1": float(nu[w][np.argmax(sp.n_alpha_cm1[w])]),
                         "intensity_cm2": float(_trapezoid(sp.n_alpha_cm1[w], nu[w]))}
        table[band] = row
    top = table["1041-1048"]
    for row in table.values():
        row["dfpt_ir_relative"] = row["dfpt_ir"] / top["dfpt_ir"]
        for name in spectra:
            row[name]["relative"] = row[name]["intensity_cm2"] / top[name]["intensity_cm2"]
    return table


def plot(spectra, reference, path, title, xmax):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colors = {"q": "C0", "p": "C2", "q+p": "C3", "fixed": "C7"}
    for name, sp in spectra.items():
        nu = sp.wavenumber_cm1
        ax.plot(nu, sp.n_alpha_cm1, color=colors[name], lw=1.1,
                label=f"{name} model" if name != "fixed" else "fixed charges tr(Z)/3")
        if name == "q+p" and np.all(np.isfinite(sp.n_alpha_low_cm1)):  # one band: legible
            ax.fill_between(nu, sp.n_alpha_low_cm1, sp.n_alpha_high_cm1, color=colors[name],
                            alpha=0.25, lw=0)
    ref_nu, ref_y, ref_label = reference
    ax.plot(ref_nu, ref_y, color="k", lw=1.0, ls="--", label=ref_label)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, None)
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel(r"$n(\tilde\nu)\,\alpha(\tilde\nu)$ (cm$^{-1}$)")
    ax.set_title(title, fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def replot(system):
    """The figure again from ``<system>_ff_ir_*.csv`` and ``<system>_ff_ir.json``."""
    from bornml.spectra import read_experiment_csv
    from bornml.spectra.ir import IRSpectrum

    record = json.loads((OUT / f"{system}_ff_ir.json").read_text())
    spectra = {name: IRSpectrum.read_csv(OUT / f"{system}_ff_ir_{name.replace('+', '')}.csv")
               for name in ("q", "p", "q+p", "fixed")}
    title = (f"{system}, kernel-FF NVE: {len(record['frames'])} runs × "
             f"{min(record['frames'])} frames ({record['timestep_fs']:g} fs), "
             f"T = {record['temperature_K']:.0f} K, max lag {record['max_lag_fs']:g} fs, "
             "95 % band over runs (q+p)")
    if system == "water":
        experiment = read_experiment_csv(shared_data() / EXPERIMENT)
        plot(spectra, (*experiment, "experiment (Bertie & Lan 1996)"), record["figure"], title,
             4500)
    else:
        _, nu_d, na_d = dfpt_reference()
        plot(spectra, (nu_d, na_d, "DFPT n·α = 2πν̃ε''"), record["figure"], title, 1400)


def main():
    import bornml
    from bornml.spectra import read_experiment_csv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=("water", "quartz"))
    parser.add_argument("--trajectories", nargs="+", type=Path,
                        help="default benchmarks/out/<system>_ff_md/<system>_ff_nve_*.extxyz")
    parser.add_argument("--n-sparse", type=int, help="references per species of the BEC models")
    parser.add_argument("--max-frames", type=int, help="first N frames of every trajectory")
    parser.add_argument("--max-lag", type=float, default=1000.0, help="fs (1000)")
    parser.add_argument("--train-only", action="store_true", help="fit and save the BEC models")
    parser.add_argument("--reuse", action="store_true", help="load the BEC models of a run")
    parser.add_argument("--plot-only", action="store_true",
                        help="redraw the figure from the CSV and JSON files of a run")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args()
    t0 = time.perf_counter()
    if args.plot_only:
        return replot(args.system)
    if args.train_only:
        emit({"bench": "ff_ir", "system": args.system,
              "bec_models": bec_models(args.system, args.n_sparse, args.progress)[1]})
        return
    paths = args.trajectories or sorted((OUT / f"{args.system}_ff_md").glob("*_ff_nve_*.extxyz"))
    counts = {p: min(complete_frames(p), args.max_frames or 10**9) for p in paths}
    paths = [p for p in paths if counts[p] >= 10]
    if not paths:
        raise SystemExit("no trajectories with frames; run benchmarks/ff_md.py first")
    shortest = min(counts[p] for p in paths)
    dt = float(bornml.read_frames(paths[0], index="0", require_bec=False)[0].info["timestep_fs"])
    max_lag = min(args.max_lag, 0.5 * (shortest - 1) * dt)

    models, info = bec_models(args.system, args.n_sparse, args.progress, args.reuse)
    providers = dict(models)
    providers["fixed"] = FixedCharges(info["fixed_charges_e"])
    spectra, timings = {}, {}
    for name, provider in providers.items():
        start = time.perf_counter()
        spectra[name] = bornml.ir_spectrum([streamed(p, counts[p]) for p in paths],
                                           bec_provider=provider, window="hann",
                                           max_lag_fs=max_lag, qcf="harmonic",
                                           progress=args.progress)
        timings[name] = time.perf_counter() - start
        spectra[name].to_csv(OUT / f"{args.system}_ff_ir_{name.replace('+', '')}.csv")
    FIGURES.mkdir(parents=True, exist_ok=True)
    figure = FIGURES / f"{args.system}_ir_ff.png"
    sp0 = spectra["q"]
    title = (f"{args.system}, kernel-FF NVE: {len(paths)} runs × {shortest} frames "
             f"({dt:g} fs), T = {sp0.temperature_K:.0f} K, max lag {sp0.max_lag_fs:g} fs, "
             f"95 % band over runs (q+p)")
    record = {"bench": "ff_ir", "system": args.system, "bec_models": info,
              "trajectories": [str(p) for p in paths], "frames": [counts[p] for p in paths],
              "timestep_fs": dt, "temperature_K": sp0.temperature_K,
              "max_lag_fs": sp0.max_lag_fs, "wall_s": timings, "figure": str(figure)}
    if args.system == "water":
        experiment = read_experiment_csv(shared_data() / EXPERIMENT)
        record["bands_cm1"] = BANDS
        record["table"] = {name: band_summary(sp.wavenumber_cm1, sp.n_alpha_cm1)
                           for name, sp in spectra.items()}
        record["table"]["experiment"] = band_summary(*experiment)
        plot(spectra, (*experiment, "experiment (Bertie & Lan 1996)"), figure, title, 4500)
    else:
        modes, nu_d, na_d = dfpt_reference()
        record["table"] = quartz_table(spectra, modes, nu_d, na_d)
        plot(spectra, (nu_d, na_d, "DFPT n·α = 2πν̃ε''"), figure, title, 1400)
    record["total_s"] = time.perf_counter() - t0
    with open(OUT / f"{args.system}_ff_ir.json", "w") as fh:
        json.dump(record, fh, indent=1)
    emit(record)


if __name__ == "__main__":
    main()
