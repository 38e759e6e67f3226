"""Figures people would rather look at than read: parity plots of Born charges."""

import numpy as np

from . import keys
from .fileutils import atomic_path


def parity_plot(frames, predictions, path, title=None):
    """Predicted vs reference Z elements, one colour per species, diagonal, per-species RMSE
    in the legend and the overall RMSE in the title (after ``title``, e.g. the model type and
    the data file's name); written atomically to ``path`` (PNG/PDF/SVG by suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.data import chemical_symbols

    from .models.monopole import asr_corrected

    fig, ax = plt.subplots(figsize=(4.8, 4.6), dpi=130)
    numbers = np.concatenate([f.numbers for f in frames])
    ref = np.concatenate([asr_corrected(keys.bec_of(f)) for f in frames])
    pred = np.concatenate([p[keys.BEC] for p in predictions])
    for z in sorted(set(numbers.tolist())):
        sel = numbers == z
        r, p = ref[sel].ravel(), pred[sel].ravel()
        rmse = np.sqrt(np.mean((r - p) ** 2))
        ax.scatter(r, p, s=4, alpha=0.5, label=f"{chemical_symbols[z]} (RMSE {rmse:.3f} e)")
    lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("reference $Z_{j,ab}$ (e)")
    ax.set_ylabel("predicted $Z_{j,ab}$ (e)")
    overall = f"RMSE {np.sqrt(np.mean((ref - pred) ** 2)):.4f} e"
    ax.set_title(f"{title} — {overall}" if title else overall, fontsize=9)
    ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
