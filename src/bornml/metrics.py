"""Error measures of predicted Born charges against reference data.

RMSE over all tensor elements (e) and normalised RMSE = RMSE / std of the targets (the std
over the same elements, about their mean). Targets are ASR-corrected per frame first (the
model's predictions obey the sum rule by construction), see :func:`bornml.models.monopole.asr_corrected`.
"""

import numpy as np

from . import keys
from .models.monopole import asr_corrected

COMPONENTS = [f"{a}{b}" for a in "xyz" for b in "xyz"]


def _rmse_block(pred, ref):
    err = pred - ref
    rmse = float(np.sqrt(np.mean(err ** 2)))
    std = float(np.std(ref))
    return {"rmse": rmse, "nrmse": rmse / std if std > 0 else float("nan"), "std": std,
            "mae": float(np.mean(np.abs(err))), "n": int(ref.size)}


def bec_errors(frames, predictions):
    """Errors overall, per species and per Cartesian component ``ab`` (Z[j,a,b]).

    ``frames``: reference ``ase.Atoms`` with ``arrays["bec"]``; ``predictions``: matching dicts
    with ``"bec"`` (N, 3, 3). Returns a JSON-ready dict with keys ``rmse``, ``nrmse``, ``std``,
    ``mae``, ``n``, ``per_species`` and ``per_component``.
    """
    from ase.data import chemical_symbols

    refs = [asr_corrected(keys.bec_of(f)) for f in frames]
    preds = [p[keys.BEC] for p in predictions]
    ref_all, pred_all = np.concatenate(refs), np.concatenate(preds)
    numbers = np.concatenate([f.numbers for f in frames])
    out = _rmse_block(pred_all, ref_all)
    out["per_species"] = {
        chemical_symbols[z]: _rmse_block(pred_all[numbers == z], ref_all[numbers == z])
        for z in sorted(set(numbers.tolist()))}
    out["per_component"] = {
        c: _rmse_block(pred_all[:, i // 3, i % 3], ref_all[:, i // 3, i % 3])
        for i, c in enumerate(COMPONENTS)}
    out["n_frames"] = len(frames)
    residuals = [np.abs(p[keys.ASR_RESIDUAL]).max() / len(f) for f, p in zip(frames, predictions)
                 if keys.ASR_RESIDUAL in p]
    if residuals:
        out["max_asr_residual_per_atom"] = float(np.max(residuals))
        out["sum_rule_correction_rms"] = sum_rule_correction_rms(frames, predictions)
    return out


def sum_rule_correction_rms(frames, predictions):
    """RMS (e) over atoms and the 9 components of the part the sum-rule projection removed:
    R/N on every atom of a periodic frame (R = ``asr_residual`` (3, 3)), 0 for molecules
    (their Z is exact, nothing is removed). Compare with the RMSE: a correction as large as
    the error means the learnt total charge is not conserved."""
    total, count = 0.0, 0
    for frame, pred in zip(frames, predictions):
        n = len(frame)
        if frame.pbc.any():
            total += float(np.sum(pred[keys.ASR_RESIDUAL] ** 2)) / n  # N atoms × |R/N|²
        count += 9 * n
    return float(np.sqrt(total / max(count, 1)))


def held_out_indices(n_frames, test_fraction):
    """Evenly spaced held-out frame indices (at least one when test_fraction > 0)."""
    if test_fraction <= 0:
        return np.array([], dtype=int)
    n_test = max(1, int(round(n_frames * test_fraction)))
    if n_test >= n_frames:
        raise ValueError(f"test fraction {test_fraction} leaves no training frames "
                         f"out of {n_frames}")
    return np.unique(np.round(np.linspace(0, n_frames - 1, n_test + 2)[1:-1]).astype(int))


def force_field_errors(frames, predictions):
    """Errors of a force field: ``rmse`` / ``nrmse`` / ``std`` of the force components (eV/Å;
    nRMSE = RMSE / std of the reference components), ``mae`` (eV/Å), ``per_species`` force
    RMSE, and, when every frame has an energy, ``energy_rmse_per_atom`` (eV/atom, error of
    E/N) and ``energy_std_per_atom``. ``frames`` carry ``arrays["forces"]`` (and energies);
    ``predictions`` are dicts with ``"forces"`` (N, 3) and ``"energy"`` (eV)."""
    from ase.data import chemical_symbols

    from .errors import BornDataError

    for index, frame in enumerate(frames):
        if keys.forces_of(frame) is None:
            raise BornDataError("no forces to compare with", path=frame.info.get(keys.SOURCE),
                                frame=index, key=keys.FORCES)
    ref = np.concatenate([keys.forces_of(f) for f in frames])
    pred = np.concatenate([p[keys.FORCES] for p in predictions])
    numbers = np.concatenate([f.numbers for f in frames])
    out = _rmse_block(pred, ref)
    out["per_species"] = {chemical_symbols[z]: _rmse_block(pred[numbers == z], ref[numbers == z])
                          for z in sorted(set(numbers.tolist()))}
    out["n_frames"] = len(frames)
    energies = [keys.energy_of(f) for f in frames]
    if all(e is not None for e in energies):
        per_atom = np.array([e / len(f) for e, f in zip(energies, frames)])
        err = np.array([p[keys.ENERGY] / len(f) for p, f in zip(predictions, frames)]) - per_atom
        out["energy_rmse_per_atom"] = float(np.sqrt(np.mean(err ** 2)))
        out["energy_std_per_atom"] = float(np.std(per_atom))
    return out
