"""Many species: fit and prediction cost, peak memory, descriptor size and held-out accuracy of
the q, p and q+p kernel models on species-rich data, against the species-mean baseline.

Data sets (built here, nothing downloaded):
- ``crystals``: the DFPT crystals of ../shared/data/crystals/phonon_becs_epsilon.xyz whose
  elements all lie among the ``--elements`` most frequent elements of the file (≥ 9 species in
  the union), 10 % held out (evenly spaced);
- ``xtb``: the GFN2-xTB molecules of ``benchmarks/make_xtb_molecules.py`` (conformers of G2
  molecules with H C N O F Si P S Cl), 10 % of the frames held out (evenly spaced);
- ``g2``: 40 molecules of ASE's G2 collection made of H C N O F Si P S Cl (9 species, no
  cell) with random labels: timing and memory only (there are no DFT labels).

Each model is fitted in its own subprocess so that its peak resident memory is its own.
One JSON line per (data set, model, species channels):

    python benchmarks/many_species.py [--data crystals g2] [--models q p q+p]
           [--channels auto none] [--n-sparse 500]
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _common import emit, shared_data

G2_ELEMENTS = {"H", "C", "N", "O", "F", "Si", "P", "S", "Cl"}


def crystal_frames(n_elements):
    import ase.io

    import bornml

    path = shared_data() / "crystals" / "phonon_becs_epsilon.xyz"
    frames = bornml.read_frames(str(path))
    counts = Counter()
    for atoms in frames:
        counts.update(set(atoms.get_chemical_symbols()))
    allowed = {e for e, _ in counts.most_common(n_elements)}
    del ase
    return [a for a in frames if set(a.get_chemical_symbols()) <= allowed]


def xtb_frames():
    """Molecules with GFN2-xTB Born charges made by benchmarks/make_xtb_molecules.py."""
    import bornml

    path = Path(__file__).parent / "out" / "xtb_molecules.extxyz"
    if not path.exists():
        sys.exit(f"{path} not found: run python benchmarks/make_xtb_molecules.py first")
    return bornml.read_frames(str(path))


def g2_frames(n_molecules=40, seed=0):
    from ase.collections import g2

    rng = np.random.default_rng(seed)
    frames = []
    for atoms in g2:
        if set(atoms.get_chemical_symbols()) <= G2_ELEMENTS and len(atoms) >= 2:
            atoms = atoms.copy()
            atoms.pbc = False
            atoms.arrays["bec"] = rng.normal(size=(len(atoms), 3, 3))
            frames.append(atoms)
    return frames[:n_molecules]


def split_by_molecule(frames, every=10):
    """Hold out every ``every``-th molecule (all its conformers): unseen molecules."""
    names = list(dict.fromkeys(f.info.get("molecule") for f in frames))
    held = set(names[every // 2::every])
    return ([f for f in frames if f.info.get("molecule") not in held],
            [f for f in frames if f.info.get("molecule") in held])


def split(frames, fraction=0.1):
    n_test = max(1, int(round(fraction * len(frames))))
    test = set(np.linspace(0, len(frames) - 1, n_test).round().astype(int).tolist())
    return ([f for k, f in enumerate(frames) if k not in test],
            [f for k, f in enumerate(frames) if k in test])


def species_mean_rmse(train, test):
    """RMSE of predicting every atom's Z by its species' training-mean tensor (ASR-corrected)."""
    from bornml.models.monopole import asr_corrected

    means = {}
    for f in train:
        z = asr_corrected(f.arrays["bec"])
        for number in set(f.numbers.tolist()):
            means.setdefault(number, []).append(z[f.numbers == number])
    means = {k: np.concatenate(v).mean(axis=0) for k, v in means.items()}
    err = [asr_corrected(np.stack([means[n] for n in f.numbers])) - asr_corrected(f.arrays["bec"])
           for f in test]
    return float(np.sqrt(np.mean(np.concatenate(err) ** 2)))


def run_one(data, model_type, channels, n_sparse, elements, by_molecule=False):
    """Fit and evaluate one model in this process; returns the record."""
    import bornml
    from bornml.models.monopole import asr_corrected

    frames = {"crystals": lambda: crystal_frames(elements), "xtb": xtb_frames,
              "g2": g2_frames}[data]()
    if data == "g2":
        train, test = frames, frames[:4]
    else:
        train, test = split_by_molecule(frames) if by_molecule else split(frames)
    cls = {"q": bornml.MonopoleModel, "p": bornml.DipoleModel,
           "q+p": bornml.CombinedModel}[model_type]
    kw = {} if model_type == "p" else {"zeta": 2}
    model = cls(n_sparse=n_sparse, species_channels=None if channels == "none" else channels,
                **kw)
    import bornml.models.reference_set as selection_module

    selection = [0.0]
    select = selection_module.select_sparse

    def timed_select(*args, **kw):  # the selection algorithm alone (FPS/CUR on the features)
        start = time.perf_counter()
        out = select(*args, **kw)
        selection[0] += time.perf_counter() - start
        return out

    selection_module.select_sparse = timed_select
    tr = time.perf_counter()
    model.soap_settings.radial_basis()  # one-off spline table (cached per process)
    t0 = time.perf_counter()
    model.prepare(train)
    t1 = time.perf_counter()
    model.solve(model.accumulate(train))
    t2 = time.perf_counter()
    pred = model.predict(test)
    t3 = time.perf_counter()
    err = np.concatenate([p["bec"] - asr_corrected(f.arrays["bec"])
                          for p, f in zip(pred, test)])
    species = sorted({int(z) for f in frames for z in f.numbers})
    record = {
        "benchmark": "many_species", "data": data, "model": model_type,
        "species_channels": channels, "n_species": len(species),
        "split": "molecules" if by_molecule else "frames",
        "n_train": len(train), "n_test": len(test),
        "atoms_train": int(sum(len(f) for f in train)),
        "n_sparse": n_sparse, "D": model.n_features(),
        "design_columns": model.n_design_columns(),
        "radial_table_seconds": round(t0 - tr, 2),
        "fit_seconds": round(t2 - tr, 2), "prepare_seconds": round(t1 - t0, 2),
        "selection_seconds": round(selection[0], 3),
        "selection_share": round(selection[0] / (t2 - tr), 4),
        "predict_ms_per_frame": round(1e3 * (t3 - t2) / len(test), 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3),
    }
    if model_type in ("p", "q+p"):
        record["dipole_route"] = model.dipole_route_
    record["regularisation"] = getattr(model, "regularisation_", None)
    if data != "g2":
        record["test_rmse"] = float(np.sqrt(np.mean(err ** 2)))
        record["species_mean_rmse"] = species_mean_rmse(train, test)
        record["ratio_to_baseline"] = round(record["test_rmse"] / record["species_mean_rmse"], 3)
    return record


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["crystals", "g2"])
    parser.add_argument("--models", nargs="+", default=["q", "p", "q+p"])
    parser.add_argument("--channels", nargs="+", default=["auto", "none"],
                        help="species channels: auto, none (one per element) or an integer")
    parser.add_argument("--n-sparse", type=int, default=500)
    parser.add_argument("--elements", type=int, default=12,
                        help="crystals: keep those made of the N most frequent elements (12)")
    parser.add_argument("--split", default="frames", choices=["frames", "molecules"],
                        help="xtb: hold out 10 %% of the frames (evenly spaced), or every 10th "
                             "molecule with all its conformers (unseen molecules)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one in this process
    args = parser.parse_args()
    if args.one:
        data, model_type, channels = json.loads(args.one)
        emit(run_one(data, model_type, channels, args.n_sparse, args.elements,
                     args.split == "molecules"))
        return
    for data in args.data:
        for channels in args.channels:
            for model_type in args.models:
                cmd = [sys.executable, __file__, "--n-sparse", str(args.n_sparse),
                       "--elements", str(args.elements), "--split", args.split,
                       "--one", json.dumps([data, model_type, channels])]
                out = subprocess.run(cmd, capture_output=True, text=True)
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                if out.returncode or not lines:
                    emit({"benchmark": "many_species", "data": data, "model": model_type,
                          "species_channels": channels, "failed": out.returncode,
                          "error": out.stderr.strip().splitlines()[-1:]})
                else:
                    print(lines[-1], flush=True)


if __name__ == "__main__":
    main()
