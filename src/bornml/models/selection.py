"""Active learning: which frames of a pool to label next (``bornml select``).

Greedy batch selection on the posterior of a kernel model (:mod:`bornml.models.posterior`).
In the whitened coordinates v = Lᵀw (A_reg = LLᵀ) the posterior covariance is σ²·M with M = I
before any pick; a pool frame g with design rows Φ_g (9N, n) has whitened rows
B_g = Φ_g L⁻ᵀ and total predicted variance σ²·tr(B_g M B_gᵀ) over its 9N components.

Each round picks the frame with the largest total variance (the most uncertain Born charges
summed over its atoms), then conditions M on that frame's labels as if they were exact (a
rank-9N update M ← M − M Bᵀ(εI + B M Bᵀ)⁻¹ B M with ε = :data:`LABEL_NOISE` × the mean
eigenvalue of B M Bᵀ). Why not ε = σ²: σ² is the model's misfit, which a relabelled
duplicate repeats exactly, and it is ~50× the epistemic variance, so conditioning with it
hardly changes anything and the batch would be K near-copies. Why not ε → 0: one frame has
9N ≳ n rows, so exact labels of one frame pin every weight and all other scores collapse to
round-off. With ε = 0.1 × the frame's mean eigenvalue the pick's own variance drops ~10×
along its well-determined directions, a duplicate of it is not the next pick, and frames
like it drop too — the batch is diverse, not K copies of
the hardest frame. M is kept as I − WWᵀ (W grows by ≤ r columns per pick) and every frame's
variance is updated by −|B_g W_new|², so a round costs O(pool · r² · n).

Memory: each pool frame is kept as Y_g = S Vᵀ (r, n), the top r ≤ :data:`MAX_RANK` singular
directions of B_g (exact when 9N ≤ r; otherwise the variance is that of the kept directions,
which carry almost all of it: the spectrum of B_g decays fast).
"""

import numpy as np

from .posterior import require_posterior, weight_design

MAX_RANK = 128  #: singular directions kept per pool frame
LABEL_NOISE = 0.1  #: noise of a fantasised label, relative to the mean eigenvalue of B M Bᵀ


def _compress(b, max_rank):
    """Y (r, n) with YᵀY ≈ BᵀB from the top r singular directions of B (rows, n)."""
    if b.shape[0] <= b.shape[1]:
        lam, u = np.linalg.eigh(b @ b.T)
        order = np.argsort(lam)[::-1][:max_rank]
        keep = order[lam[order] > 1e-14 * max(lam.max(), 1e-300)]
        return u[:, keep].T @ b
    lam, v = np.linalg.eigh(b.T @ b)
    order = np.argsort(lam)[::-1][:max_rank]
    keep = order[lam[order] > 1e-14 * max(lam.max(), 1e-300)]
    return np.sqrt(lam[keep])[:, None] * v[:, keep].T


def select_frames(model, pool, n_select, max_rank=MAX_RANK, label_noise=LABEL_NOISE,
                  progress=False):
    """Greedy batch of ``n_select`` pool frames (see module docstring).

    Returns (indices (K,) into ``pool`` in pick order, scores (K,) e: the RMS posterior std
    of each pick's Born-charge components at the moment it was picked, initial (len(pool),) e:
    every pool frame's score before any pick)."""
    from tqdm.auto import tqdm

    posterior = require_posterior(model)
    pool = list(pool)
    n_select = min(int(n_select), len(pool))
    sigma2 = posterior.noise_variance
    compressed, rows = [], []
    for i, frame in enumerate(tqdm(pool, desc="select: pool", disable=not progress)):
        design, _ = weight_design(model, model.reference_set_.expand(frame, i), frame)
        b = posterior.whiten(design)
        compressed.append(_compress(b, max_rank))
        rows.append(design.shape[0])
    rows = np.array(rows, dtype=float)
    variance = np.array([float(np.sum(y ** 2)) for y in compressed])  # tr(B M Bᵀ)/… , M = I
    initial = np.sqrt(sigma2 * variance / rows)
    n = len(posterior.factor)
    w = np.zeros((n, 0))
    picked, scores = [], []
    for _ in range(n_select):
        current = variance.copy()
        current[picked] = -np.inf
        k = int(np.argmax(current))
        picked.append(k)
        scores.append(float(np.sqrt(sigma2 * max(variance[k], 0.0) / rows[k])))
        y = compressed[k]
        t = y.T - w @ (w.T @ y.T)  # M Yᵀ (n, r)
        s = y @ t
        s[np.diag_indices(len(y))] += label_noise * max(np.trace(s) / len(y), 1e-300)
        lam, q = np.linalg.eigh(0.5 * (s + s.T))
        good = lam > 1e-12 * max(lam.max(), 1e-300)
        new = t @ (q[:, good] / np.sqrt(lam[good]))  # M ← M − new newᵀ
        w = np.concatenate([w, new], axis=1)
        for g, yg in enumerate(compressed):
            variance[g] -= float(np.sum((yg @ new) ** 2))
    return np.array(picked, dtype=int), np.array(scores), initial
