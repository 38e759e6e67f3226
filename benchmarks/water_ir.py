"""IR spectrum of liquid water from q-SPC/Fw MD with learnt Born charges (the paper's Fig. 3).

Not part of the package. Three curves on the same axes (n·α in cm⁻¹ against ν̃ in cm⁻¹):

1. **model**: Ṁ = Σ_j Z_j v_j with Z_j predicted by a monopole model trained on the RPBE-D3
   Born charges of ``../shared/data/water-rpbe/H2O_BEC.extxyz`` (hyper-parameters
   ``HYPERS["water"]`` of ``learning_curve.py``; training pool = all frames not held out by
   ``learning_curve.split``, or ``--train-frames N`` of them evenly spaced), mean ± 2 standard
   errors over the independent NVE trajectories;
2. **fixed charges**: the same trajectories with the force field's own point charges,
   Z_j = q_j·I (q-SPC/Fw: q_O = −0.84 e, q_H = +0.42 e, read from ``water_md.py``);
3. **experiment**: Bertie & Lan 1996, 25 °C (``water-ir-experiment/spectrum.csv``, α·n/1000
   converted to n·α by :func:`bornml.spectra.read_experiment_csv`).

Spectra: :func:`bornml.ir_spectrum` with the kinetic temperature of each trajectory, Hann
window, ``--max-lag`` (default 1000 fs, i.e. a resolution of roughly 1/(c·1000 fs) ≈ 33 cm⁻¹
before the window's broadening), harmonic quantum-correction factor. Trajectories are the
``benchmarks/out/water_md/water_nve_*.extxyz`` files written by ``water_md.py`` (each is checked
for complete frames; a file still being written is used up to its last complete frame);
``--max-frames N`` streams only the first N frames of every file.

Band windows (cm⁻¹) for the summary: libration 300–1000, H–O–H bend 1400–1900, O–H stretch
2800–4000, and "total" 0–4500. For each band and curve: the peak position (wavenumber of the
maximum of n·α inside the window, on the curve's own grid) and the integrated intensity
∫ n·α dν̃ over the window (cm⁻², trapezoidal rule); for the model also ∫ 2 s.e. dν̃, an upper
bound of the 2-s.e. uncertainty of its integral; ratios model/experiment, fixed/experiment and
model/fixed per band.

Interpretation: both MD spectra come from the same q-SPC/Fw trajectories, so the peak positions
and line shapes are those of the force field's dynamics — the model and fixed-charge spectra
peak at the same wavenumbers (up to small shifts from the geometry dependence of Z) and any
shift against experiment is the force field's (classical nuclei, q-SPC/Fw parametrisation), not
the Born charges'. What the learnt Born charges change is the intensities: the band integrals,
relative to the fixed point charges, measure how much the DFT charge flow (Z_H with its large
bond-parallel component, Z_O) enhances or suppresses each mode's dipole derivative. Compare the
model/experiment intensity ratios, not the peak positions, when judging the Born charges.

Outputs (``--out-dir``, default ``benchmarks/out``): ``water_ir.png``, ``water_ir.json`` (also
printed as one JSON line), ``water_ir_model.csv`` / ``water_ir_fixed.csv`` (spectra), and the
trained model ``water_q.npz`` (unless ``--model`` is given). On a busy 2-core machine one BLAS
thread was 3× faster per predicted frame than OpenBLAS's default (see ``ir_throughput.py``).

    OPENBLAS_NUM_THREADS=1 python benchmarks/water_ir.py            # full: train, 4 × 10001 frames
    python benchmarks/water_ir.py --model benchmarks/out/water_q.npz   # reuse a trained model
    python benchmarks/water_ir.py --train-frames 5 --n-sparse 200 --max-frames 500 \\
        --out-dir benchmarks/out/water_ir_small                     # quick test
"""

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import DATASETS, REPO, emit, shared_data
from learning_curve import HYPERS, split, training_subset
from water_md import Q_H_E, Q_O_E

OUT = Path(__file__).resolve().parent / "out"
MD_DIR = OUT / "water_md"
EXPERIMENT = "water-ir-experiment/spectrum.csv"

BANDS = {  # cm⁻¹
    "libration": (300.0, 1000.0),
    "bend": (1400.0, 1900.0),
    "stretch": (2800.0, 4000.0),
    "total": (0.0, 4500.0),
}

FF_CHARGES = {8: Q_O_E, 1: Q_H_E}  #: q-SPC/Fw point charges (e) by atomic number


class FixedCharges:
    """Born-charge provider with constant point charges, Z_j = q_j·I: Ṁ = Σ_j q_j v_j."""

    def __init__(self, charges_by_number):
        self.charges = dict(charges_by_number)

    def dipole_derivative(self, atoms, velocities):
        q = np.array([self.charges[int(z)] for z in atoms.numbers])
        return q @ np.asarray(velocities)


def complete_frames(path):
    """Number of complete frames of an extxyz file with a constant atom count."""
    with open(path, "rb") as fh:
        n_atoms = int(fh.readline())
        fh.seek(0)
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b""))
    return lines // (n_atoms + 2)


def streamed(path, n_frames):
    """The first ``n_frames`` frames of ``path``, read lazily (ase.io.iread + islice)."""
    import ase.io

    return itertools.islice(ase.io.iread(str(path), index=":"), n_frames)


_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2 renamed it


def band_summary(nu, y, band=None):
    """Peak position and integral of every band in :data:`BANDS` (and of ``band``, 2 s.e.)."""
    nu, y = np.asarray(nu), np.asarray(y)
    out = {}
    for name, (lo, hi) in BANDS.items():
        sel = (nu >= lo) & (nu <= hi)
        rec = {"peak_cm1": float(nu[sel][np.argmax(y[sel])]),
               "intensity_cm2": float(_trapezoid(y[sel], nu[sel]))}
        if band is not None and np.all(np.isfinite(band[sel])):
            rec["intensity_2se_bound_cm2"] = float(_trapezoid(band[sel], nu[sel]))
        out[name] = rec
    return out


def ratios(num, den):
    return {b: num[b]["intensity_cm2"] / den[b]["intensity_cm2"] for b in BANDS}


def get_model(args, out_dir):
    import bornml
    from bornml.metrics import bec_errors

    frames = bornml.read_frames(shared_data() / DATASETS["water"])
    test, pool = split(len(frames))
    held = [frames[i] for i in test]
    info = {}
    if args.model:
        model = bornml.load_model(args.model)
        info["path"] = str(args.model)
        info["fit_seconds"] = None
    else:
        idx = training_subset(pool, args.train_frames) if args.train_frames else pool
        hypers = dict(HYPERS["water"])
        if args.n_sparse:
            hypers["n_sparse"] = args.n_sparse
        start = time.perf_counter()
        model = bornml.MonopoleModel(**hypers, progress=args.progress).fit(
            [frames[i] for i in idx])
        info["fit_seconds"] = round(time.perf_counter() - start, 2)
        path = out_dir / "water_q.npz"
        model.save(path)
        info["path"] = str(path)
        info["n_train"] = len(idx)
    info["n_sparse"] = {int(z): len(r) for z, r in model.references_.items()}
    info["params"] = model.get_params()
    te = bec_errors(held, model.predict(held))
    info["test_rmse_e"] = te["rmse"]
    info["test_nrmse"] = te["nrmse"]
    info["test_rmse_per_species_e"] = {s: v["rmse"] for s, v in te["per_species"].items()}
    info["test_frames"] = test.tolist()
    return model, info


def plot(model_sp, fixed_sp, experiment, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for sp, color, label in ((model_sp, "C0", "MD + learnt Born charges"),
                             (fixed_sp, "C1", "MD + q-SPC/Fw point charges")):
        nu = sp.wavenumber_cm1
        ax.plot(nu, sp.n_alpha_cm1, color=color, lw=1.2, label=label)
        if np.all(np.isfinite(sp.n_alpha_low_cm1)):
            ax.fill_between(nu, sp.n_alpha_low_cm1, sp.n_alpha_high_cm1, color=color,
                            alpha=0.3, lw=0)
    ex_nu, ex_y = experiment
    ax.plot(ex_nu, ex_y, color="k", lw=1.0, ls="--", label="experiment (Bertie & Lan 1996)")
    ax.set_xlim(0, 4500)
    tops = [float(np.max(ex_y[ex_nu <= 4500]))]
    for sp in (model_sp, fixed_sp):
        upper = sp.n_alpha_high_cm1 if np.all(np.isfinite(sp.n_alpha_high_cm1)) \
            else sp.n_alpha_cm1
        tops.append(float(np.max(upper[sp.wavenumber_cm1 <= 4500])))
    top = max(tops)
    ax.set_ylim(0, 1.05 * top)
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_ylabel(r"$n(\tilde\nu)\,\alpha(\tilde\nu)$ (cm$^{-1}$)")
    ax.set_title(title, fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="use this trained model instead of training")
    parser.add_argument("--train-frames", type=int,
                        help="train on N frames evenly spaced through the training pool "
                             "(default: the whole pool, 90 frames)")
    parser.add_argument("--n-sparse", type=int, help="override HYPERS['water']['n_sparse']")
    parser.add_argument("--trajectories", nargs="+", type=Path,
                        help="NVE trajectories (default: out/water_md/water_nve_*.extxyz)")
    parser.add_argument("--max-frames", type=int, help="use only the first N frames of each")
    parser.add_argument("--max-lag", type=float, default=1000.0, metavar="FS",
                        help="correlation length in fs (default 1000)")
    parser.add_argument("--out-dir", type=Path, default=OUT)
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args()

    import ase.io

    import bornml
    from bornml.spectra import read_experiment_csv

    t0 = time.perf_counter()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    paths = args.trajectories or sorted(MD_DIR.glob("water_nve_*.extxyz"))
    if not paths:
        raise SystemExit(f"no trajectories in {MD_DIR}; run benchmarks/water_md.py first")
    counts = {}
    for p in paths:
        n = complete_frames(p)
        counts[str(p)] = min(n, args.max_frames) if args.max_frames else n
    paths = [p for p in paths if counts[str(p)] >= 3]
    if not paths:
        raise SystemExit("no trajectory has complete frames yet")

    max_lag = args.max_lag
    dt = ase.io.read(str(paths[0]), index=0).info.get("timestep_fs")
    shortest = min(counts[str(p)] for p in paths)
    if dt and max_lag >= 0.5 * (shortest - 1) * dt:
        max_lag = None  # ir_spectrum's default: half the shortest trajectory
        print(f"--max-lag {args.max_lag:g} fs is too long for {shortest} frames of {dt:g} fs; "
              "using half the trajectory", file=sys.stderr)

    model, model_info = get_model(args, args.out_dir)
    t_model = time.perf_counter()

    common = dict(temperature_K=None, window="hann", max_lag_fs=max_lag, qcf="harmonic",
                  progress=args.progress)
    spectra, timings = {}, {}
    for name, provider in (("model", model), ("fixed", FixedCharges(FF_CHARGES))):
        start = time.perf_counter()
        sp = bornml.ir_spectrum([streamed(p, counts[str(p)]) for p in paths],
                                bec_provider=provider, **common)
        timings[name] = time.perf_counter() - start
        sp.to_csv(args.out_dir / f"water_ir_{name}.csv")
        spectra[name] = sp
    experiment = read_experiment_csv(shared_data() / EXPERIMENT)

    m, f = spectra["model"], spectra["fixed"]
    summary = {
        "model": band_summary(m.wavenumber_cm1, m.n_alpha_cm1,
                              m.n_alpha_high_cm1 - m.n_alpha_cm1),
        "fixed_charges": band_summary(f.wavenumber_cm1, f.n_alpha_cm1,
                                      f.n_alpha_high_cm1 - f.n_alpha_cm1),
        "experiment": band_summary(*experiment),
    }
    frames_used = [counts[str(p)] for p in paths]
    figure = args.out_dir / "water_ir.png"
    plot(m, f, experiment, figure,
         f"liquid water, q-SPC/Fw NVE: {len(paths)} × {frames_used[0]} frames, "
         f"T = {m.temperature_K:.0f} K, max lag {m.max_lag_fs:g} fs, ±2 s.e.")
    record = {
        "benchmark": "water_ir",
        "bands_cm1": BANDS,
        **summary,
        "ratio_model_over_experiment": ratios(summary["model"], summary["experiment"]),
        "ratio_fixed_over_experiment": ratios(summary["fixed_charges"], summary["experiment"]),
        "ratio_model_over_fixed": ratios(summary["model"], summary["fixed_charges"]),
        "n_trajectories": m.n_trajectories,
        "trajectories": [str(Path(p).resolve().relative_to(REPO)) if str(Path(p).resolve())
                         .startswith(str(REPO)) else str(p) for p in paths],
        "frames_per_trajectory": frames_used,
        "frames_total": int(sum(frames_used)),
        "timestep_fs": m.timestep_fs,
        "temperature_K": round(m.temperature_K, 2),
        "volume_A3": round(m.volume_A3, 3),
        "max_lag_fs": m.max_lag_fs, "window": m.window, "qcf": m.qcf,
        "fixed_charges_e": {"O": Q_O_E, "H": Q_H_E},
        "model_info": model_info,
        "wall_s": {"model": round(t_model - t0, 2),
                   "spectrum_model": round(timings["model"], 2),
                   "spectrum_fixed": round(timings["fixed"], 2),
                   "total": round(time.perf_counter() - t0, 2)},
        "model_frames_per_second": round(sum(frames_used) / timings["model"], 2),
        "figure": str(figure),
    }
    with open(args.out_dir / "water_ir.json", "w") as fh:
        json.dump(record, fh, indent=1)
    emit(record)


if __name__ == "__main__":
    main()
