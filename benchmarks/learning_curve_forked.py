"""One (system, ζ_p) point of the 80-frame learning curve on a many-core machine without Dask:
the p and q+p models with the tuned ω of ``learning_curve.py`` (same splits, SOAP settings and
references), the normal equations accumulated by forked worker processes (chunks of
``ACC_CHUNK`` frames, default 8, one BLAS thread each, added in chunk order: the sums of the
serial path up to the order of floating-point additions). Appends one JSON line per model to
``$OUT/zeta<ζ>_<system>.jsonl`` (``$OUT`` default: benchmarks/out): held-out RMSE, RMSE on
every 8th training frame, fit and design time, peak memory of the parent and of the largest
worker.

    python benchmarks/learning_curve_forked.py SYSTEM ZETA WORKERS

Measured this way on a 16-core machine (five fits side by side): the ζ_p = 2 and 3 records of
docs/figures.md ("The nonlinear dipole kernel"). ``N_SPARSE`` / ``N_TRAIN`` (environment)
shrink a smoke test.
"""

import json
import multiprocessing as mp
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np


def _call(args):
    from bornml.parallel import one_thread

    fn, i, task = args
    return i, one_thread(fn, *task)


class ForkRunner:
    """The runner protocol of bornml.parallel on a fork pool (no Dask on that machine)."""

    def __init__(self, n):
        self.n_workers = n
        self.pool = mp.get_context("fork").Pool(n)

    def share(self, obj):
        return obj

    def unordered(self, fn, tasks):
        yield from self.pool.imap_unordered(_call, [(fn, i, t) for i, t in enumerate(tasks)])

    def ordered(self, fn, tasks):
        out = [None] * len(tasks)
        for i, r in self.unordered(fn, tasks):
            out[i] = r
        return out

    def fold(self, fn, tasks, combine):
        pending, total, nxt = {}, None, 0
        for i, r in self.unordered(fn, tasks):
            pending[i] = r
            while nxt in pending:
                r = pending.pop(nxt)
                total = r if total is None else combine(total, r)
                nxt += 1
        return total


def main():
    system, zeta, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from learning_curve import load_split, model_for

    import bornml
    import bornml.models.kernel_estimator as estimator
    from bornml.metrics import bec_errors
    from bornml.models.joint_fit import fit_together
    from bornml.parallel import using

    out = os.path.join(os.environ.get("OUT", os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "out")), f"zeta{zeta}_{system}.jsonl")
    n_sparse = int(os.environ.get("N_SPARSE", "0")) or None  # smoke tests only
    train, held = load_split(system, int(os.environ.get("N_TRAIN", "80")))
    # compile the kernels in the parent once (the forked workers inherit them)
    tiny = bornml.DipoleModel(cutoff=4.0, max_radial=3, max_angular=2, n_sparse=5,
                              dipole_zeta=2, tikhonov=1e-3)
    tiny.fit(train[:1])
    models = [model_for(system, m, n_sparse, zeta)[0] for m in ("p", "q+p")]
    # smaller chunks of frames per task (more tasks than workers; the sums are the same up to
    # the order of floating-point additions)
    estimator.ACCUMULATE_CHUNK = int(os.environ.get("ACC_CHUNK", estimator.ACCUMULATE_CHUNK))
    start = time.perf_counter()
    with using(ForkRunner(workers)):
        models = fit_together(models, train)
    fit_s = time.perf_counter() - start
    for kind, model in zip(("p", "q+p"), models):
        t0 = time.perf_counter()
        te = bec_errors(held, model.predict(held))
        pred_s = (time.perf_counter() - t0) / len(held)
        tr = bec_errors(train[::8], model.predict(train[::8]))
        record = {"benchmark": "learning_curve_device", "system": system, "model": kind,
                  "regularisation": "tuned", "chosen": model.regularisation_,
                  "dipole_zeta": zeta, "n_train": len(train), "n_test": len(held),
                  "train_rmse_every_8th": tr["rmse"], "test_rmse": te["rmse"],
                  "test_nrmse": te["nrmse"], "test_std": te["std"],
                  "test_rmse_per_species": {s: v["rmse"] for s, v in
                                            te["per_species"].items()},
                  "fit_seconds_both_models": fit_s,
                  "shared_design_seconds": model.shared_fit_seconds_,
                  "workers": workers, "frames_per_task": estimator.ACCUMULATE_CHUNK,
                  "cpu_count": os.cpu_count(), "predict_seconds_per_frame": pred_s,
                  "peak_rss_gb_parent": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                  "peak_rss_gb_largest_worker":
                      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6,
                  "n_columns": int(sum(t.n_columns() for t in model._learnt())),
                  "hypers": model.get_params()}
        with open(out, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        print(json.dumps({k: record[k] for k in ("system", "model", "dipole_zeta",
                                                 "test_rmse", "fit_seconds_both_models")}),
              flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
