"""Per-species statistics of a model's charge (and dipole) partitioning.

The partition of the polarisation response into atomic charges q_i (e) and atomic dipoles
p_i (e·Å) is an accounting choice of the model — a pair of opposite charges is a dipole, and
regularisation decides the split. The numbers are useful to compare models and settings, not
as observables.
"""

import numpy as np

from . import keys


def partition_table(frames, predictions):
    """Per species: count, mean and standard deviation of q, max |q|, and max |p| when the
    predictions have ``"dipoles"`` (N, 3). Returns ``{symbol: {...}}``."""
    from ase.data import chemical_symbols

    numbers = np.concatenate([f.numbers for f in frames])
    charges = np.concatenate([p[keys.CHARGES] for p in predictions])
    dipoles = (np.concatenate([p[keys.DIPOLES] for p in predictions])
               if all(keys.DIPOLES in p for p in predictions) else None)
    table = {}
    for z in sorted(set(numbers.tolist())):
        sel = numbers == z
        q = charges[sel]
        row = {"n_atoms": int(sel.sum()), "mean_q": float(q.mean()), "std_q": float(q.std()),
               "max_abs_q": float(np.abs(q).max())}
        if dipoles is not None:
            row["max_abs_p"] = float(np.linalg.norm(dipoles[sel], axis=1).max())
        table[chemical_symbols[z]] = row
    return table


def format_table(table):
    """The table as aligned text (e, e·Å)."""
    lines = [f"{'species':>8} {'atoms':>7} {'mean q (e)':>11} {'std q (e)':>10} "
             f"{'max|q| (e)':>11} {'max|p| (e·Å)':>13}"]
    for symbol, row in table.items():
        p = f"{row['max_abs_p']:13.4f}" if "max_abs_p" in row else f"{'—':>13}"
        lines.append(f"{symbol:>8} {row['n_atoms']:7d} {row['mean_q']:11.4f} "
                     f"{row['std_q']:10.4f} {row['max_abs_q']:11.4f} {p}")
    return "\n".join(lines)
