"""Training cost of the monopole model: 80 water frames, 1000 reference environments per
species. Prints one JSON line: wall time per phase (reference selection, design +
normal equations, solve), peak resident memory of the process, and for comparison the size
of the full design matrix (rows × M × 8 bytes) that frame-by-frame accumulation avoids.

    python benchmarks/train_cost.py [--frames 80] [--n-sparse 1000]
"""

import argparse
import resource
import time


from _common import emit
from learning_curve import HYPERS, load_split


def peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--n-sparse", type=int, default=1000)
    args = parser.parse_args()

    import bornml

    train, _ = load_split("water", args.frames)
    hypers = dict(HYPERS["water"], n_sparse=args.n_sparse)
    model = bornml.MonopoleModel(**hypers)
    rss0 = peak_rss_gib()
    t0 = time.perf_counter()
    model.prepare(train)
    t1 = time.perf_counter()
    eqs = model.accumulate(train)
    t2 = time.perf_counter()
    model.solve(eqs)
    t3 = time.perf_counter()
    m_total = sum(len(r) for r in model.references_.values())
    rows = sum(9 * len(f) for f in train)
    emit({"benchmark": "train_cost", "system": "water", "n_frames": len(train),
          "n_sparse_per_species": args.n_sparse, "n_parameters": m_total,
          "seconds_total": t3 - t0, "seconds_references": t1 - t0,
          "seconds_design_and_normal_equations": t2 - t1, "seconds_solve": t3 - t2,
          "peak_rss_gib": peak_rss_gib(), "peak_rss_gib_before_fit": rss0,
          "full_design_matrix_gib": rows * m_total * 8 / 2**30, "design_rows": rows,
          "hypers": hypers})


if __name__ == "__main__":
    main()
