"""Write a phonopy ``BORN`` file (non-analytic term correction) from Born charges.

File: line 1 the unit-conversion factor (``default``: phonopy's for its calculator), line 2 ε∞
(9 numbers, row-major), then one line of 9 numbers per symmetry-independent atom (spglib's
orbit representatives, in atom order, as phonopy's ``parse_BORN`` expects), row = field
direction (the project layout, read back by :func:`bornml.io.readers.read_phonopy_born`).
The tensors are symmetrised over the space group first: Z̄_j = 1/|G| Σ_g R_g Z_{g⁻¹j} R_gᵀ and
ε̄ = 1/|G| Σ_g R_g ε R_gᵀ (Cartesian rotations R_g).

bornml models do not predict ε∞ and phonopy needs it: it comes from ``epsilon`` or
``atoms.info["epsilon_inf"]`` (e.g. the DFT value of the training data); without it the writer
refuses rather than guess (pass ``epsilon=np.eye(3)`` knowingly for an unscreened estimate).
"""

from pathlib import Path

import numpy as np

from .. import keys
from ..errors import BornDataError


def symmetrise(atoms, bec, epsilon=None, symprec=1e-5):
    """(Z̄ (N, 3, 3), ε̄ (3, 3) or None, independent atom indices) of ``atoms`` (its cell is
    the cell phonopy uses as primitive), averaged over the space group found by spglib."""
    import spglib

    frac, lat = atoms.get_scaled_positions(), atoms.cell.array
    ds = spglib.get_symmetry_dataset((lat, frac, atoms.numbers), symprec=symprec)
    if ds is None:
        raise BornDataError(f"spglib found no symmetry (symprec={symprec})", key="BORN")
    to_cart = np.linalg.inv(lat.T)
    zbar, ebar = np.zeros_like(bec), np.zeros((3, 3))
    for rot, trans in zip(ds.rotations, ds.translations):
        rc = lat.T @ rot @ to_cart  # the operation in Cartesian axes
        image = frac @ rot.T + trans  # where each atom i goes
        diff = image[:, None, :] - frac[None, :, :]
        hit = np.abs(diff - np.round(diff)).max(axis=2) < 10 * symprec
        if (hit.sum(axis=1) != 1).any():
            raise BornDataError("symmetry operation does not map atoms one to one; adjust "
                                "symprec", key="BORN")
        target = hit.argmax(axis=1)  # atom i → atom target[i]
        zbar[target] += rc @ bec @ rc.T
        if epsilon is not None:
            ebar += rc @ epsilon @ rc.T
    n_ops = len(ds.rotations)
    independent = sorted({int(i) for i in ds.equivalent_atoms})
    return zbar / n_ops, (ebar / n_ops if epsilon is not None else None), independent


def write_phonopy_born(path, atoms, bec=None, epsilon=None, symprec=1e-5, factor="default"):
    """Write ``path`` (phonopy ``BORN``) for ``atoms``, the cell phonopy uses as its primitive.

    ``bec``: (N, 3, 3) e (default ``keys.bec_of(atoms)``; from a model:
    ``model.predict_frame(atoms)["bec"]``); ``epsilon``: ε∞ (3, 3) (default
    ``atoms.info["epsilon_inf"]``; required). Returns (Z̄ (N, 3, 3), ε̄ (3, 3)) as written and
    expanded to every atom.
    """
    bec = np.asarray(keys.bec_of(atoms) if bec is None else bec, dtype=float)
    if bec.shape != (len(atoms), 3, 3):
        raise ValueError(f"bec must have shape ({len(atoms)}, 3, 3), got {bec.shape}")
    if epsilon is None:
        epsilon = atoms.info.get(keys.EPSILON_INF)
    if epsilon is None:
        raise BornDataError("phonopy needs the electronic dielectric tensor ε∞ and bornml "
                            "models do not predict it: pass epsilon= (e.g. the DFT value) or "
                            "set atoms.info['epsilon_inf']", path=path, key=keys.EPSILON_INF)
    epsilon = np.asarray(epsilon, dtype=float).reshape(3, 3)
    zbar, ebar, independent = symmetrise(atoms, bec, epsilon, symprec)
    lines = [str(factor), " ".join(f"{x:.10f}" for x in ebar.ravel())]
    lines += [" ".join(f"{x:.10f}" for x in zbar[i].ravel()) for i in independent]
    Path(path).write_text("\n".join(lines) + "\n")
    return zbar, ebar
