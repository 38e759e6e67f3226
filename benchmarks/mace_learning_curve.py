"""Learning curves of the MACE heads (mace-q, mace-p, mace-q+p) on water and ZrO2.

Same frames as ``learning_curve.py`` (its ``split`` / ``training_subset``): the 10 evenly
spaced held-out frames, training sets of 5, 10, 20, 40, 80 frames. Every point trains under
the same wall-time budget (``--max-time`` seconds, one CPU thread) with early stopping on an
internal validation split (10 % of the training frames, at least one); the epochs reached
are recorded. Prints one JSON line per point with the record fields of ``learning_curve.py``
plus ``epochs`` and ``device`` (plot them together with ``learning_curve.py --replot``).

    python benchmarks/mace_learning_curve.py [--systems water zro2] [--heads q p q+p]
        [--sizes 5 10 20 40 80] [--max-epochs 2000] [--max-time 90]
"""

import argparse
import time
import warnings

from _common import DATASETS, emit, shared_data
from learning_curve import split, training_subset

# Architecture and optimiser settings (not tuned on the held-out frames): r_max 4 Å for water
# (the kernel model's cutoff), 5 Å for ZrO2; 16 channels, l ≤ 2, correlation 2, one layer
# (periodic data); Adam lr 1e-2, 2 frames per batch; float32 (CPU speed; Z is checked against
# finite differences in float64 in the tests).
HYPERS = {
    "water": dict(r_max=4.0),
    "zro2": dict(r_max=5.0),
}
COMMON = dict(num_channels=16, max_ell=2, correlation=2, num_interactions=1,
              learning_rate=1e-2, batch_size=2, patience=50, dtype="float32")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["water", "zro2"],
                        choices=sorted(DATASETS))
    parser.add_argument("--heads", nargs="+", default=["q", "p", "q+p"],
                        choices=["q", "p", "q+p"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[5, 10, 20, 40, 80])
    parser.add_argument("--max-epochs", type=int, default=2000)
    parser.add_argument("--max-time", type=float, default=90.0,
                        help="training wall-time budget per point in seconds (90)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    args = parser.parse_args()

    warnings.filterwarnings("ignore", category=UserWarning)
    import torch

    torch.set_num_threads(args.threads)
    import bornml
    from bornml.metrics import bec_errors
    from bornml.models.mace_model import MaceBECModel

    for system in args.systems:
        frames = bornml.read_frames(shared_data() / DATASETS[system])
        test, pool = split(len(frames))
        held = [frames[i] for i in test]
        for head in args.heads:
            for size in args.sizes:
                idx = training_subset(pool, size)
                train = [frames[i] for i in idx]
                hypers = dict(head=head, **HYPERS.get(system, {}), **COMMON,
                              max_epochs=args.max_epochs, max_time=args.max_time)
                start = time.perf_counter()
                model = MaceBECModel(**hypers).fit(train)
                fit_s = time.perf_counter() - start
                tr = bec_errors(train, model.predict(train))
                te = bec_errors(held, model.predict(held))
                summary = model.training_summary_
                emit({
                    "benchmark": "learning_curve", "system": system, "model": model.model_type,
                    "n_train": len(idx), "n_test": len(test), "test_frames": test.tolist(),
                    "train_rmse": tr["rmse"], "train_nrmse": tr["nrmse"],
                    "test_rmse": te["rmse"], "test_nrmse": te["nrmse"], "test_std": te["std"],
                    "test_rmse_per_species": {s: v["rmse"]
                                              for s, v in te["per_species"].items()},
                    "fit_seconds": fit_s, "hypers": hypers, "epochs": summary["epochs"],
                    "device": summary["device"], "best_epoch": summary["best_epoch"],
                    "stop_reason": summary["stop_reason"],
                    "best_val_rmse": summary["best_val_rmse"],
                    "torch_threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
