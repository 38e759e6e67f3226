"""Image-resolved neighbour lists.

Every pair ``p`` is one neighbour *image*: centre ``i``, neighbour ``j`` and integer cell
shift ``T`` with vector ``d_p = r_j + T·cell − r_i`` (Å), ``0 < |d_p| < cutoff``. When the
cutoff exceeds half the cell, the same ``j`` appears several times with different ``T``; the
pairs are kept apart, which is what makes Born charges of small periodic cells right.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class NeighborList:
    """Directed pairs sorted by centre. Shapes: centers, neighbors (P,); shifts (P, 3) int;
    vectors (P, 3) Å; distances (P,) Å."""

    centers: np.ndarray
    neighbors: np.ndarray
    shifts: np.ndarray
    vectors: np.ndarray
    distances: np.ndarray


def neighbor_list(atoms, cutoff, neighbor_key=None):
    """All neighbour images of every atom of ``atoms`` (ase.Atoms) within ``cutoff`` Å.

    Pairs are sorted by centre, then by ``neighbor_key[j]`` (e.g. the species index of the
    neighbour; optional), then by neighbour index.
    """
    positions = np.asarray(atoms.positions, dtype=float)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all() or not pbc.any():
        import vesin

        box = np.asarray(atoms.cell[:], dtype=float) if pbc.all() else np.zeros((3, 3))
        i, j, shifts, vectors = vesin.NeighborList(cutoff=cutoff, full_list=True).compute(
            points=positions, box=box, periodic=bool(pbc.all()), quantities="ijSD")
    else:  # mixed periodicity (slabs, wires): ASE handles it
        from ase.neighborlist import primitive_neighbor_list

        i, j, shifts, vectors = primitive_neighbor_list(
            "ijSD", pbc, atoms.cell[:], positions, cutoff, self_interaction=False)
    distances = np.linalg.norm(vectors, axis=1)
    keep = distances < cutoff
    keys_ = (j[keep], i[keep]) if neighbor_key is None else (
        j[keep], np.asarray(neighbor_key)[j[keep]], i[keep])
    order = np.lexsort(keys_)
    i, j = i[keep][order].astype(np.int64), j[keep][order].astype(np.int64)
    return NeighborList(i, j, np.asarray(shifts)[keep][order].astype(np.int64),
                        np.asarray(vectors, dtype=float)[keep][order], distances[keep][order])


def periodic_directions(pairs, positions):
    """(3,) bool: Cartesian directions a along which some pair's image shift
    T_p = d_p − (r_j − r_i) (Å) has a component. A molecule in a box with a vacuum gap has
    none; a slab with vacuum along z is periodic in x and y only. ``pairs``: a
    :class:`NeighborList`; ``positions`` (N, 3) Å."""
    shift = pairs.vectors - (positions[pairs.neighbors] - positions[pairs.centers])
    return np.any(np.abs(shift) > 1e-8, axis=0)
