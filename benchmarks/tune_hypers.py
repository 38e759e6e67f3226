"""Hyper-parameter scan of the monopole model on training/validation frames only.

The 10 evenly spaced held-out frames of ``learning_curve.py`` are removed first and never
looked at. From the remaining pool, ``--n-train`` frames (evenly spaced) train and
``--n-val`` other frames (evenly spaced) validate. One setting is varied at a time around a
base setting (a coordinate scan); for each descriptor setting the normal equations are built
once and the regularisation ω is scanned on them. Prints one JSON line per fit.

    python benchmarks/tune_hypers.py --system water [--n-train 30 --n-val 10 --n-sparse 500]
"""

import argparse
import json
import time

import numpy as np
from _common import DATASETS, emit, shared_data
from learning_curve import split, training_subset

BASE = dict(cutoff=5.0, max_radial=7, max_angular=6, atomic_width=0.3, zeta=2,
            sparse_method="fps")
VARIATIONS = {
    "cutoff": [4.0, 5.0, 6.0],
    "zeta": [1, 2, 3, 4],
    "atomic_width": [0.3, 0.5],
    "sparse_method": ["fps", "cur", "random"],
    "regulariser": ["kernel", "identity"],
}
OMEGAS = [1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="water", choices=sorted(DATASETS))
    parser.add_argument("--n-train", type=int, default=30)
    parser.add_argument("--n-val", type=int, default=10)
    parser.add_argument("--n-sparse", type=int, default=500)
    parser.add_argument("--only", nargs="*", help="vary only these settings")
    parser.add_argument("--base", default="{}",
                        help='JSON overrides of the base setting, e.g. \'{"zeta": 1}\'')
    parser.add_argument("--vary", default=None,
                        help='JSON {setting: [values]} replacing the default variations')
    args = parser.parse_args()

    import bornml
    from bornml.metrics import bec_errors

    frames = bornml.read_frames(shared_data() / DATASETS[args.system])
    _, pool = split(len(frames))
    val_idx = training_subset(pool[1::2], args.n_val)
    train_idx = training_subset(np.setdiff1d(pool, val_idx), args.n_train)
    train = [frames[i] for i in train_idx]
    val = [frames[i] for i in val_idx]
    base = dict(BASE)
    if args.system == "zro2":
        base["cutoff"] = 6.0
    base.update(json.loads(args.base))
    variations = json.loads(args.vary) if args.vary else VARIATIONS
    for name, values in variations.items():
        if args.only and name not in args.only:
            continue
        for value in values:
            hypers = dict(base, n_sparse=args.n_sparse)
            hypers[name] = value
            start = time.perf_counter()
            model = bornml.MonopoleModel(**hypers)
            eqs = model.prepare(train).accumulate(train)  # ω is scanned on the same equations
            build_s = time.perf_counter() - start
            for omega in OMEGAS:
                model.tikhonov = omega
                model.solve(eqs)
                va = bec_errors(val, model.predict(val))
                emit({"benchmark": "tune", "system": args.system, "vary": name,
                      "value": value, "tikhonov": omega, "val_rmse": va["rmse"],
                      "val_nrmse": va["nrmse"], "n_train": len(train), "n_val": len(val),
                      "hypers": {k: v for k, v in hypers.items()}, "build_seconds": build_s})


if __name__ == "__main__":
    main()
