"""Calibration and cost of the kernel models' predictive uncertainty (bornml.models.posterior).

In domain (water, ZrO2, quartz): q model fitted on ``--n-train`` frames evenly spaced through
the pool, the 10 evenly spaced held-out frames of benchmarks/learning_curve.py predicted with
``return_std=True``. Reported per system:

- ``cover_2sigma_model``: fraction of the held-out Born-charge components with
  |error| ≤ 2·bec_std (the model's own, epistemic std);
- ``cover_2sigma_total``: the same with the std of a label, sqrt(bec_std² + σ²);
- ``spearman_score_rmse``: Spearman correlation of the per-frame score with the per-frame RMSE;
- ``flagged``: held-out frames above the model's extrapolation threshold;
- cost: median time of ``predict`` with and without ``return_std`` per frame, and of the
  sampled route (K posterior weight samples through the adjoint prediction) with its
  agreement with the exact std.

Out of domain (``quartz_ood``): trained on the 300 K frames only and tested on 300 K held-out
and 600 K frames. No info key of SiO2.xyz records the temperature; the file holds frames
0–100 at 300 K and 101–200 at 600 K (the RMS force jumps from 2.0 to 2.8 eV/Å, ≈ √2, at
frame 101, as equipartition predicts for twice the temperature).

q model, the learning-curve hyper-parameters with ``--n-sparse`` (300) and the fixed ω
(no cross-validation), so one system takes a few minutes on 2 cores.

    python benchmarks/uncertainty.py [--systems water zro2 quartz quartz_ood]
           [--n-train 40] [--n-sparse 300] [--samples 16] > benchmarks/out/uncertainty.jsonl
"""

import argparse
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


def run_system(system, n_train, n_sparse, n_samples):
    from bornml import keys
    from bornml.models.posterior import sampled_uncertainty

    train, held = load_split(system, n_train)
    model, hypers = model_for(system, "q", n_sparse=n_sparse)
    _, fit_s = _timed(lambda: model.fit(train))
    post = model.posterior_
    plain, t_plain = _timed(lambda: model.predict(held))
    preds, t_std = _timed(lambda: model.predict(held, return_std=True))
    stats, rmse, score = _errors(held, preds, post.noise_std)
    sampled, t_sampled = _timed(lambda: [sampled_uncertainty(model, f, n_samples)
                                         for f in held[:3]])
    ratio = np.concatenate([(s[keys.BEC_STD] / p[keys.BEC_STD]).reshape(-1)
                            for s, p in zip(sampled, preds[:3])])
    return emit({
        "system": system, "n_train": len(train), "n_test": len(held), "model": "q",
        "n_sparse": n_sparse, "n_weights": len(post.factor), "fit_seconds": round(fit_s, 1),
        "noise_std": post.noise_std, "effective_parameters": post.effective_parameters,
        "threshold": post.threshold, **stats,
        "spearman_score_rmse": float(scipy.stats.spearmanr(score, rmse)[0]),
        "flagged": int(np.sum(score > post.threshold)),
        "predict_s_per_frame": t_plain / len(held),
        "predict_std_s_per_frame": t_std / len(held),
        "std_cost_ratio": t_std / t_plain,
        "sampled_K": n_samples, "sampled_s_per_frame": t_sampled / 3,
        "sampled_cost_ratio": (t_sampled / 3) / (t_plain / len(held)),
        "sampled_over_exact_median": float(np.median(ratio)),
        "sampled_over_exact_iqr": np.percentile(ratio, [25, 75]).round(3).tolist()})


def run_quartz_ood(n_train, n_sparse):
    import bornml

    frames = bornml.read_frames(shared_data() / DATASETS["quartz"])
    cold = np.arange(QUARTZ_300K)
    test, pool = split(len(cold))
    train = [frames[i] for i in training_subset(pool, n_train)]
    held = [frames[i] for i in test]
    hot_idx = np.round(np.linspace(QUARTZ_300K, len(frames) - 1, 20)).astype(int)
    hot = [frames[i] for i in hot_idx]
    model, _ = model_for("quartz", "q", n_sparse=n_sparse)
    model.fit(train)
    post = model.posterior_
    cold_stats, cold_rmse, cold_score = _errors(held, model.predict(held, return_std=True),
                                                post.noise_std)
    hot_stats, hot_rmse, hot_score = _errors(hot, model.predict(hot, return_std=True),
                                             post.noise_std)
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
        "spearman_score_rmse_all": float(scipy.stats.spearmanr(score, rmse)[0]),
        "spearman_score_rmse_600K": float(scipy.stats.spearmanr(hot_score, hot_rmse)[0])})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", nargs="+",
                        default=["quartz", "zro2", "water", "quartz_ood"],
                        choices=sorted(DATASETS) + ["quartz_ood"])
    parser.add_argument("--n-train", type=int, default=40)
    parser.add_argument("--n-sparse", type=int, default=300)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    for system in args.systems:
        if system == "quartz_ood":
            run_quartz_ood(args.n_train, args.n_sparse)
        else:
            run_system(system, args.n_train, args.n_sparse, args.samples)


if __name__ == "__main__":
    main()
