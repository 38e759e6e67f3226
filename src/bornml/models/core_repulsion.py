"""A repulsive wall below the shortest distances of the training data (force-field baseline).

A kernel force field knows nothing about geometries closer than any in its training frames and
can attract atoms into each other there (measured: water at 300 K collapsed within 1 ps without
it). The wall is zero wherever the training data are:

    E_core = ½ Σ_p k (r0_{s_i s_j} − r_p)³  for r_p < r0,   r0_ab = margin · min r_ab(training)

(sum over directed pairs p, hence ½; k in eV/Å³; r0 (S, S) Å, 0 for species pairs never seen
within the cutoff). ``g_p = ∂E_core/∂d_p = −(3k/2)(r0 − r_p)² d̂_p``.
"""

import numpy as np

from ..descriptors.neighbors import neighbor_list


def shortest_distances(frames, species, cutoff):
    """(S, S) shortest distance (Å) between species a and b over ``frames`` (0 if none within
    ``cutoff``)."""
    index = {z: k for k, z in enumerate(species)}
    out = np.full((len(species), len(species)), np.inf)
    for frame in frames:
        pairs = neighbor_list(frame, cutoff)
        s_i = np.array([index[int(z)] for z in frame.numbers[pairs.centers]], dtype=int)
        s_j = np.array([index[int(z)] for z in frame.numbers[pairs.neighbors]], dtype=int)
        np.minimum.at(out, (s_i, s_j), pairs.distances)
    out[~np.isfinite(out)] = 0.0
    return out


def core_energy_and_pair_gradients(radii, stiffness, species_index, pairs):
    """(per-atom E_core (N,) eV — each directed pair's half on its centre —, g (P, 3) eV/Å)
    for ``pairs`` (NeighborList) with species indices ``species_index`` (N,) and walls
    ``radii`` (S, S) Å."""
    r0 = radii[species_index[pairs.centers], species_index[pairs.neighbors]]
    depth = np.clip(r0 - pairs.distances, 0.0, None)
    energy = np.bincount(pairs.centers, 0.5 * stiffness * depth ** 3,
                         minlength=len(species_index))
    unit = pairs.vectors / np.maximum(pairs.distances, 1e-12)[:, None]
    return energy, (-1.5 * stiffness * depth ** 2)[:, None] * unit
