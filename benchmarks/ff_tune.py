"""Force-field settings scan: one accumulation of the normal equations per SOAP setting, then
solves for a grid of energy weights and ω (fit once, solve many). Not part of the package.

10 % of the frames held out (evenly spaced), every ``EVERY``-th of the rest trained on; one JSON
line per (setting, energy weight, ω) with the training force RMSE (from the sums) and the
held-out force RMSE / nRMSE and energy RMSE per atom; the best-ω model of each setting is saved
to ``benchmarks/out/ff_<set>_<setting>.npz``.

    python benchmarks/ff_tune.py water 2 '{"cutoff": 5.0, "max_radial": 7, "max_angular": 6, "n_sparse": 1000, "zeta": 2}'
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATASETS, REPO, emit, shared_data

import bornml
from bornml.metrics import force_field_errors, held_out_indices

ENERGY_WEIGHTS = (1.0, 10.0)
OMEGAS = (1e-8, 1e-7, 1e-6)


def main():
    name, every, settings = sys.argv[1], int(sys.argv[2]), [json.loads(s) for s in sys.argv[3:]]
    frames = bornml.read_frames(shared_data() / DATASETS[name], require_bec=False)
    test = held_out_indices(len(frames), 0.1)
    train_idx = np.setdiff1d(np.arange(len(frames)), test)[::every]
    train, held = [frames[i] for i in train_idx], [frames[i] for i in test]
    for setting in settings:
        start = time.perf_counter()
        model = bornml.ForceFieldModel(**setting)
        model.prepare(train)
        eqs = model.accumulate(train)
        accumulate_s = time.perf_counter() - start
        best = None
        for weight in ENERGY_WEIGHTS:
            for omega in OMEGAS:
                model.set_params(energy_weight=weight, tikhonov=omega).solve(eqs)
                errors = force_field_errors(held, model.predict(held))
                emit({"bench": "ff_tune", "dataset": name, "n_train": len(train), **setting,
                      "energy_weight": weight, "tikhonov": omega, "accumulate_s": accumulate_s,
                      "train_force_rmse": model.training_rmse_["forces"],
                      "test_force_rmse": errors["rmse"], "test_force_nrmse": errors["nrmse"],
                      "test_energy_rmse_per_atom": errors.get("energy_rmse_per_atom")})
                if best is None or errors["rmse"] < best[0]:
                    best = (errors["rmse"], weight, omega)
        model.set_params(energy_weight=best[1], tikhonov=best[2]).solve(eqs)
        tag = "_".join(f"{k}{v}" for k, v in setting.items())
        model.save(REPO / "benchmarks" / "out" / f"ff_{name}_{tag}.npz")


if __name__ == "__main__":
    main()
