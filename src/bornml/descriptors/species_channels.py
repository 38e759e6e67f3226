"""Species channels of the density: one per element, or a few mixed "pseudo-species".

The density expansion has one channel per neighbour species, so the power spectrum has
D ∝ (S·N)² features and the λ=1 features F ∝ (S·N)²: with 9 elements that is ~20 000 and
~30 000 numbers per atom. Alchemical compression (Willatt, Musil & Ceriotti, PCCP 20, 29661,
2018) mixes the S element channels into C < S pseudo-species before any product is formed,

    c̃[i, γ, n, lm] = Σ_s U[γ, s] c[i, s, n, lm],        U (C, S),

so that D and F grow with C², not S². The mixing is linear, so every derivative is the
element-resolved one weighted by ``U[:, s_p]`` for a pair with neighbour species s_p.

bornml uses a fixed (not learnt) mixing: the column of element Z is a unit vector drawn from a
normal distribution seeded by Z alone, so an element has the same embedding in every model
and the columns of different elements are distinct directions (two elements can only share
a channel pattern by chance, with probability zero). ``channels=None`` or ``channels ≥ S``
gives the identity (one channel per element, the exact, uncompressed descriptor).
"""

import numpy as np

#: above this many species the default ("auto") compresses to AUTO_CHANNELS pseudo-species
AUTO_MAX_SPECIES = 4
AUTO_CHANNELS = 4


def resolve_channels(channels, n_species):
    """Number of density channels for ``channels`` (None, "auto" or an int) and S species."""
    if channels is None:
        return n_species
    if channels == "auto":
        return n_species if n_species <= AUTO_MAX_SPECIES else AUTO_CHANNELS
    channels = int(channels)
    if channels < 1:
        raise ValueError(f"species_channels must be ≥ 1, None or 'auto', got {channels}")
    return min(channels, n_species)


def element_embedding(z, channels):
    """Unit vector (channels,) of element ``z``: normal draws seeded by z only."""
    v = np.random.default_rng(1000 + int(z)).standard_normal(channels)
    return v / np.linalg.norm(v)


def species_mixing(species, channels):
    """Mixing matrix U (C, S) for the atomic numbers ``species`` (S,); identity when C = S."""
    n_species = len(species)
    c = resolve_channels(channels, n_species)
    if c >= n_species:
        return np.eye(n_species)
    return np.stack([element_embedding(z, c) for z in species], axis=1)
