"""Small structures shared by the model tests (not fixtures: plain functions)."""

import numpy as np
from ase.build import molecule

# small SOAP settings shared by the kernel-model tests (one radial basis for all of them)
SMALL = dict(cutoff=5.0, max_radial=4, max_angular=3, atomic_width=0.3, cutoff_width=0.5)


def perturbed_molecule(name, seed, scale=0.1):
    """ASE molecule ``name`` with Gaussian displacements (Å), non-periodic."""
    atoms = molecule(name)
    atoms.positions += np.random.default_rng(seed).normal(scale=scale, size=atoms.positions.shape)
    atoms.pbc = False
    return atoms


def synthetic_molecule_frames(seed=0):
    """H/C/O molecules with random (synthetic) Born charges: any targets define a model whose
    Z must still be the exact derivative of its dipole."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, name in enumerate(["CH3OH", "CH3CH2OH", "HCOOH", "CH3COOH", "H2CO"] * 2):
        atoms = perturbed_molecule(name, seed=k)
        atoms.arrays["bec"] = rng.normal(size=(len(atoms), 3, 3))
        frames.append(atoms)
    return frames


def slab(atoms, vacuum=20.0):
    """The atoms (wrapped) in a cell with ``vacuum`` Å added to the third cell vector's z
    component (for quartz c ∥ z): still periodic in x and y, no pair crosses the z boundary."""
    out = atoms.copy()
    out.wrap()
    cell = out.cell.array.copy()
    cell[2, 2] += vacuum
    out.set_cell(cell, scale_atoms=False)
    return out


def rotated(atoms, rot):
    """Copy of ``atoms`` with positions (and cell) rotated by ``rot`` (3, 3)."""
    out = atoms.copy()
    out.positions = atoms.positions @ rot.T
    if atoms.pbc.any():
        out.set_cell(np.asarray(atoms.cell[:]) @ rot.T, scale_atoms=False)
    return out


def finite_difference_bec(dipole, atoms, h=1e-5, indices=None):
    """Central differences of ``dipole(atoms)`` (any shape, e.g. P (3,) e·Å) with respect to
    the positions of the atoms ``indices`` (default all): array (n, *shape, 3) whose
    [k, ..., b] is ∂dipole/∂r_{indices[k], b}; for P that is Z[j, a, b]."""
    indices = range(len(atoms)) if indices is None else indices
    rows = []
    for j in indices:
        columns = []
        for b in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[j, b] += h
            minus.positions[j, b] -= h
            columns.append((np.asarray(dipole(plus)) - np.asarray(dipole(minus))) / (2 * h))
        rows.append(np.stack(columns, axis=-1))
    return np.stack(rows)


def finite_difference_along(dipole, atoms, velocities, h=1e-5):
    """Central difference of ``dipole(atoms)`` along the displacement field ``velocities``
    (N, 3): the Ṁ = Σ_j Z_j v_j that a model must reproduce."""
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions += h * velocities
    minus.positions -= h * velocities
    return (dipole(plus) - dipole(minus)) / (2 * h)
