"""Calibration and cost of the kernel models' predictive uncertainty (bornml.models.posterior).

In domain (water, ZrO2, quartz): a kernel model (``--models``, q by default) fitted on
``--n-train`` frames evenly spaced through the pool, the 10 evenly spaced held-out frames of
benchmarks/learning_curve.py predicted with ``return_std=True`` by the default route
("sampled", K posterior weight draws through the batched adjoint prediction) and by the exact
route. Reported per system and model:

- ``cover_2sigma_model``: fraction of the held-out Born-charge components with
  |error| ≤ 2·bec_std (the model's own, epistemic std), default route;
- ``cover_2sigma_total``: the same with the std of a label, sqrt(bec_std² + σ²);
- ``spearman_score_rmse``: Spearman correlation of the per-frame score with the per-frame RMSE;
- ``flagged``: held-out frames above the model's extrapolation threshold;
- the same three for the exact route (``*_exact``), and the agreement of the two routes:
  per-frame score ratio sampled/exact (median, min, max) and per-component std ratio
  (median, quartiles);
- cost, in one run, each held-out frame predicted once per route after a warm-up frame
  (numba compilation), BLAS limited to one thread as ``bornml predict`` runs it: median
  seconds per frame of the plain ``predict``, of the default route and of the exact route,
  and their ratios to the plain prediction.

Out of domain (``quartz_ood``): trained on the 300 K frames only and tested on 300 K held-out
and 600 K frames (default route; the exact route's flags too). No info key of SiO2.xyz records
the temperature; the file holds frames 0–100 at 300 K and 101–200 at 600 K (the RMS force
jumps from 2.0 to 2.8 eV/Å, ≈ √2, at frame 101, as equipartition predicts for twice the
temperature).

Learning-curve hyper-parameters with ``--n-sparse`` (300) and the fixed ω (no
cross-validation), so one system takes a few minutes on 2 cores.

    python benchmarks/uncertainty.py [--systems water zro2 quartz quartz_ood]
           [--models q p q+p] [--n-train 40] [--n-sparse 300]
           > benchmarks/out/uncertainty.jsonl
"""

import argparse
import os
import time

import numpy as np
import scipy.stats
from _common import DATASETS, emit, shared_data
from learning_curve import load_split, model_for, split, training_subset

QUARTZ_300K = 101  #: frames [0, 101) of SiO2.xyz are at 300 K, the rest at 600 K


def _errors(frames, preds, sigma):
    from bornml import keys

    err = np.concatenate([(p[keys.BEC] - keys.bec_of(f)).reshape(-1) for f, p in
                          zip(frames, preds)])
    std = np.concatenate([p[keys.BEC_STD].reshape(-1) for p in preds])
    rmse = np.array([np.sqrt(np.mean((p[keys.BEC] - keys.bec_of(f)) ** 2))
                     for f, p in zip(frames, preds)])
    score = np.array([p[keys.UNCERTAINTY_SCORE] for p in preds])
    total = np.sqrt(std ** 2 + sigma ** 2)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))),
            "cover_2sigma_model": float(np.mean(np.abs(err) <= 2 * std)),
            "cover_2sigma_total": float(np.mean(np.abs(err) <= 2 * total)),
            "mean_bec_std": float(np.sqrt(np.mean(std ** 2))),
            "frame_rmse": rmse.round(5).tolist(), "frame_score": score.round(6).tolist()}, \
        rmse, score


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _per_frame(model, frames, **kw):
    """(predictions, seconds of each frame), one frame at a time."""
    preds, seconds = [], []
    for frame in frames:
        pred, t = _timed(lambda f=frame: model.predict(f, **kw))
        preds.append(pred)
        seconds.append(t)
    return preds, np.array(seconds)


def _agreement(sampled, exact):
    """Per-frame score ratio and per-component std ratio of the sampled and exact routes."""
    from bornml import keys

    score = np.array([s[keys.UNCERTAINTY_SCORE] / e[keys.UNCERTAINTY_SCORE]
                      for s, e in zip(sampled, exact)])
    comp = np.concatenate([(s[keys.BEC_STD] / e[keys.BEC_STD]).reshape(-1)
                           for s, e in zip(sampled, exact)])
    return {"score_ratio_median": float(np.median(score)),
            "score_ratio_min": float(score.min()), "score_ratio_max": float(score.max()),
            "std_ratio_median": float(np.median(comp)),
            "std_ratio_iqr": np.percentile(comp, [25, 75]).round(3).tolist()}


def run_system(system, kind, n_train, n_sparse):
    from bornml.models.sampled_uncertainty import DEFAULT_SAMPLES

    train, held = load_split(system, n_train)
    model, _ = model_for(system, kind, n_sparse=n_sparse)
    model.progress = False
    _, fit_s = _timed(lambda: model.fit(train))
    post = model.posterior_
    for route in ("sampled", "exact"):  # warm-up: numba compilation, caches
        model.predict(held[0], return_std=True, uncertainty=route)
    _, t_plain = _per_frame(model, held)
    preds, t_sampled = _per_frame(model, held, return_std=True)
    exact, t_exact = _per_frame(model, held, return_std=True, uncertainty="exact")
    stats, rmse, score = _errors(held, preds, post.noise_std)
    exact_stats, _, exact_score = _errors(held, exact, post.noise_std)
    plain = float(np.median(t_plain))
    return emit({
        "system": system, "n_train": len(train), "n_test": len(held), "model": kind,
        "n_sparse": n_sparse, "n_weights": len(post.factor), "fit_seconds": round(fit_s, 1),
        "noise_std": post.noise_std, "effective_parameters": post.effective_parameters,
        "threshold": post.threshold, "route": "sampled", "samples": DEFAULT_SAMPLES, **stats,
        "spearman_score_rmse": float(scipy.stats.spearmanr(score, rmse)[0]),
        "flagged": int(np.sum(score > post.threshold)),
        "cover_2sigma_model_exact": exact_stats["cover_2sigma_model"],
        "cover_2sigma_total_exact": exact_stats["cover_2sigma_total"],
        "spearman_score_rmse_exact": float(scipy.stats.spearmanr(exact_score, rmse)[0]),
        "flagged_exact": int(np.sum(exact_score > post.threshold)),
        **_agreement(preds, exact),
        "predict_s_per_frame": plain,
        "sampled_s_per_frame": float(np.median(t_sampled)),
        "exact_s_per_frame": float(np.median(t_exact)),
        "sampled_cost_ratio": float(np.median(t_sampled)) / plain,
        "exact_cost_ratio": float(np.median(t_exact)) / plain,
        "load_average_1min": os.getloadavg()[0]})


def run_quartz_ood(n_train, n_sparse):
    import bornml
    from bornml import keys

    frames = bornml.read_frames(shared_data() / DATASETS["quartz"])
    cold = np.arange(QUARTZ_300K)
    test, pool = split(len(cold))
    train = [frames[i] for i in training_subset(pool, n_train)]
    held = [frames[i] for i in test]
    hot_idx = np.round(np.linspace(QUARTZ_300K, len(frames) - 1, 20)).astype(int)
    hot = [frames[i] for i in hot_idx]
    model, _ = model_for("quartz", "q", n_sparse=n_sparse)
    model.progress = False
    model.fit(train)
    post = model.posterior_
    cold_stats, cold_rmse, cold_score = _errors(held, model.predict(held, return_std=True),
                                                post.noise_std)
    hot_stats, hot_rmse, hot_score = _errors(hot, model.predict(hot, return_std=True),
                                             post.noise_std)
    exact_cold = [p[keys.UNCERTAINTY_SCORE] for p in
                  model.predict(held, return_std=True, uncertainty="exact")]
    exact_hot = [p[keys.UNCERTAINTY_SCORE] for p in
                 model.predict(hot, return_std=True, uncertainty="exact")]
    rmse = np.concatenate([cold_rmse, hot_rmse])
    score = np.concatenate([cold_score, hot_score])
    return emit({
        "system": "quartz_ood", "train": "300 K", "n_train": len(train),
        "n_test_300K": len(held), "n_test_600K": len(hot), "n_sparse": n_sparse,
        "noise_std": post.noise_std, "threshold": post.threshold,
        "rmse_300K": cold_stats["rmse"], "rmse_600K": hot_stats["rmse"],
        "mean_score_300K": float(cold_score.mean()), "mean_score_600K": float(hot_score.mean()),
        "cover_2sigma_total_300K": cold_stats["cover_2sigma_total"],
        "cover_2sigma_total_600K": hot_stats["cover_2sigma_total"],
        "cover_2sigma_model_600K": hot_stats["cover_2sigma_model"],
        "flagged_300K": int(np.sum(cold_score > post.threshold)),
        "flagged_600K": int(np.sum(hot_score > post.threshold)),
        "flagged_300K_exact": int(np.sum(np.array(exact_cold) > post.threshold)),
        "flagged_600K_exact": int(np.sum(np.array(exact_hot) > post.threshold)),
        "route": "sampled",
        "spearman_score_rmse_all": float(scipy.stats.spearmanr(score, rmse)[0]),
        "spearman_score_rmse_600K": float(scipy.stats.spearmanr(hot_score, hot_rmse)[0])})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+",
                        default=["quartz", "zro2", "water", "quartz_ood"],
                        choices=sorted(DATASETS) + ["quartz_ood"])
    parser.add_argument("--n-train", type=int, default=40)
    parser.add_argument("--n-sparse", type=int, default=300)
    parser.add_argument("--models", nargs="+", default=["q"], choices=["q", "p", "q+p"])
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # as bornml predict (parallel.one_thread)
        run(args)


def run(args):
    for system in args.systems:
        if system == "quartz_ood":
            run_quartz_ood(args.n_train, args.n_sparse)
            continue
        for kind in args.models:
            run_system(system, kind, args.n_train, args.n_sparse)


if __name__ == "__main__":
    main()
