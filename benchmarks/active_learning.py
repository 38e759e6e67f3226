"""Active learning with ``bornml select`` against random and evenly spaced choices.

Per system: the 10 evenly spaced held-out frames of benchmarks/learning_curve.py; the rest is
the pool (a ``--pool`` subset evenly spaced through it, to bound the cost). Every strategy
starts from the same ``--start`` frames (evenly spaced through the pool) and adds ``--step``
frames per round up to ``--max``, refitting the q model (learning-curve hyper-parameters,
``--n-sparse``, fixed ω: no cross-validation inside the loop) each round:

- ``select``: the greedy batch of :func:`bornml.models.selection.select_frames` on the
  current model (the posterior conditioned on each pick);
- ``random``: uniformly random unlabelled pool frames (``--seeds``);
- ``even``: the first ``size`` frames evenly spaced through the pool (not nested).

One JSON line per (strategy, seed, size): held-out RMSE, fit and selection time. The
reference the issue asks for — random choice at 2 × ``--max`` frames — is one more line
(``strategy = "random_reference"``).

    python benchmarks/active_learning.py [--systems quartz zro2 water] [--n-sparse 300]
        [--start 5] [--step 5] [--max 40] [--seeds 0 1 2] [--pool 100]
        > benchmarks/out/active_learning.jsonl
"""

import argparse
import time

import numpy as np
from _common import DATASETS, emit, shared_data
from learning_curve import model_for, split, training_subset


def _fit_rmse(system, n_sparse, frames, idx, held):
    from bornml.metrics import bec_errors

    model, _ = model_for(system, "q", n_sparse=n_sparse)
    start = time.perf_counter()
    model.fit([frames[i] for i in idx])
    fit_s = time.perf_counter() - start
    return model, bec_errors(held, model.predict(held))["rmse"], fit_s


def run(system, args):
    import bornml
    from bornml.models.selection import select_frames

    frames = bornml.read_frames(shared_data() / DATASETS[system])
    test, pool = split(len(frames))
    pool = training_subset(pool, args.pool)
    held = [frames[i] for i in test]
    start = training_subset(pool, args.start)
    sizes = list(range(args.start, args.max + 1, args.step))
    base = dict(system=system, n_sparse=args.n_sparse, pool=len(pool), n_test=len(held))
    strategies = [("select", None), ("even", None)] + [("random", s) for s in args.seeds]
    for strategy, seed in strategies:
        rng = np.random.default_rng(seed)
        labelled = list(start)
        for size in sizes:
            if strategy == "even":
                labelled = list(training_subset(pool, size))
            model, rmse, fit_s = _fit_rmse(system, args.n_sparse, frames, labelled, held)
            record = dict(base, strategy=strategy, seed=seed, n_train=len(labelled),
                          test_rmse=rmse, fit_seconds=round(fit_s, 1))
            if size == sizes[-1]:
                emit(record)
                break
            rest = np.setdiff1d(pool, labelled)
            t0 = time.perf_counter()
            if strategy == "select":
                picked, scores, _ = select_frames(model, [frames[i] for i in rest], args.step)
                labelled += rest[picked].tolist()
                record["picked_scores"] = scores.round(6).tolist()
            elif strategy == "random":
                labelled += rng.choice(rest, args.step, replace=False).tolist()
            record["select_seconds"] = round(time.perf_counter() - t0, 1)
            emit(record)
    for seed in args.seeds[:1]:
        idx = np.random.default_rng(seed).choice(pool, min(2 * args.max, len(pool)),
                                                 replace=False)
        _, rmse, fit_s = _fit_rmse(system, args.n_sparse, frames, idx, held)
        emit(dict(base, strategy="random_reference", seed=seed, n_train=len(idx),
                  test_rmse=rmse, fit_seconds=round(fit_s, 1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+", default=["quartz", "zro2", "water"],
                        choices=sorted(DATASETS))
    parser.add_argument("--n-sparse", type=int, default=300)
    parser.add_argument("--start", type=int, default=5)
    parser.add_argument("--step", type=int, default=5)
    parser.add_argument("--max", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pool", type=int, default=100,
                        help="pool frames (evenly spaced through the non-held-out frames)")
    args = parser.parse_args()
    for system in args.systems:
        run(system, args)


if __name__ == "__main__":
    main()
