"""Training cost of a kernel model (q, p or q+p): 80 water frames, 1000 reference environments per
species. Prints one JSON line: wall time per phase (reference selection, design +
normal equations, solve), peak resident memory of the process, and for comparison the size
of the full design matrix (rows × M × 8 bytes) that frame-by-frame accumulation avoids.

    python benchmarks/train_cost.py [--frames 80] [--n-sparse 1000] [--model q|p|q+p] [--cv]

``--cv`` leaves ω (and λ_q) to 5-fold cross-validation (the default of ``fit``); without it
the tuned settings of ``learning_curve.py`` are used.
"""

import argparse
import resource
import time

from _common import emit
from learning_curve import cross_validated, load_split, model_for


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--n-sparse", type=int, default=1000)
    parser.add_argument("--model", default="q", choices=["q", "p", "q+p"])
    parser.add_argument("--cv", action="store_true",
                        help="regularisation by cross-validation (the default of fit)")
    args = parser.parse_args()

    train, _ = load_split("water", args.frames)
    model, _ = model_for("water", args.model, args.n_sparse)
    if args.cv:
        model = cross_validated(model)
    hypers = model.get_params()
    rss0 = peak_rss_gib()
    t0 = time.perf_counter()
    model.prepare(train)
    t1 = time.perf_counter()
    eqs = model.accumulate(train)
    t2 = time.perf_counter()
    model.solve(eqs)
    t3 = time.perf_counter()
    m_total = model.n_design_columns()
    rows = sum(9 * len(f) for f in train)
    emit({"benchmark": "train_cost", "system": "water", "model": args.model,
          "regularisation": model.regularisation_, "n_folds": len(eqs.parts),
          "n_frames": len(train),
          "n_sparse_per_species": args.n_sparse, "n_parameters": m_total,
          "seconds_total": t3 - t0, "seconds_references": t1 - t0,
          "seconds_design_and_normal_equations": t2 - t1, "seconds_solve": t3 - t2,
          "peak_rss_gib": peak_rss_gib(), "peak_rss_gib_before_fit": rss0,
          "full_design_matrix_gib": rows * m_total * 8 / 2**30, "design_rows": rows,
          "hypers": hypers})


if __name__ == "__main__":
    main()
