"""Graphs of frames and Born charges of the MACE heads by automatic differentiation.

A :class:`Graph` holds one or more frames (a batch) as flat tensors; edges are bornml's
image-resolved neighbour pairs p (centre i_p, neighbour j_p, d_p = r_j + T − r_i, Å), each a
leaf of the autograd graph. With neutral charges q'_i = q_i − mean_frame(q) and
g_p = ∂q_{i_p}/∂d_p, h^a_p = ∂(Σ_i p_{i,a})/∂d_p:

    Z_j[a, :] = q'_j e_a + Σ_{p: j_p = j} (−d_{p,a}) g_p                  (local monopole)
              + (r_j − r̄)_a (Σ_{p: j_p = j} g_p − Σ_{p: i_p = j} g_p)        (molecules only)
              + Σ_{p: j_p = j} h^a_p − Σ_{p: i_p = j} h^a_p                  (dipoles)

and, for periodic frames, minus the frame mean of Z (the ASR projection; the removed sum is
``asr_residual``). Exactly as :mod:`bornml.models.bec_assembly` for the kernel model; the
monopole part is exact only when q_i depends on the edges received by i alone, i.e. with ONE
interaction layer. For molecules with more layers :func:`born_charges` differentiates
P = Σ_i q'_i r_i + Σ_i p_i directly (three backward passes); periodic frames with more layers
are refused (the image-resolved r_i of a two-hop neighbour is not defined by the edges).
"""

from dataclasses import dataclass

import numpy as np
import torch

from .. import keys
from ..descriptors.neighbors import neighbor_list, periodic_directions
from .mace_network import scatter_sum


@dataclass
class Graph:
    """Flat tensors of a batch of frames. Shapes: species, node_frame (N,) long;
    positions (N, 3) Å; edge_index (2, E) long (sender j, receiver i); vectors (E, 3) Å;
    periodic (F, 3) bool (periodic Cartesian directions); n_atoms (F,) long; targets (N, 3, 3) e or None."""

    species: torch.Tensor
    node_frame: torch.Tensor
    positions: torch.Tensor
    edge_index: torch.Tensor
    vectors: torch.Tensor
    periodic: torch.Tensor
    n_atoms: torch.Tensor
    targets: torch.Tensor = None

    @property
    def n_frames(self):
        return len(self.n_atoms)

    def to(self, device):
        fields = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
                  for k, v in self.__dict__.items()}
        return Graph(**fields)


def frame_graph(atoms, species_index, r_max, dtype, targets=None):
    """Graph of one ``ase.Atoms``. ``species_index`` (N,) ints; ``targets`` (N, 3, 3) or None."""
    nl = neighbor_list(atoms, r_max)
    t = lambda x: torch.as_tensor(np.asarray(x), dtype=dtype)
    return Graph(
        species=torch.as_tensor(np.asarray(species_index), dtype=torch.long),
        node_frame=torch.zeros(len(atoms), dtype=torch.long),
        positions=t(atoms.positions),
        edge_index=torch.as_tensor(np.stack([nl.neighbors, nl.centers]), dtype=torch.long),
        vectors=t(nl.vectors),
        # per Cartesian direction: does some pair's image shift have a component along it?
        # (a molecule in a box has none, a slab none along its normal)
        periodic=torch.as_tensor(periodic_directions(nl, atoms.positions))[None, :],
        n_atoms=torch.tensor([len(atoms)]),
        targets=None if targets is None else t(targets))


def collate(graphs):
    """One :class:`Graph` of several (node and frame indices offset)."""
    offsets = np.cumsum([0] + [len(g.species) for g in graphs])[:-1]
    return Graph(
        species=torch.cat([g.species for g in graphs]),
        node_frame=torch.cat([g.node_frame + k for k, g in enumerate(graphs)]),
        positions=torch.cat([g.positions for g in graphs]),
        edge_index=torch.cat([g.edge_index + int(o) for g, o in zip(graphs, offsets)], dim=1),
        vectors=torch.cat([g.vectors for g in graphs]),
        periodic=torch.cat([g.periodic for g in graphs]),
        n_atoms=torch.cat([g.n_atoms for g in graphs]),
        targets=None if any(g.targets is None for g in graphs)
        else torch.cat([g.targets for g in graphs]))


def _frame_mean(x, graph):
    total = scatter_sum(x, graph.node_frame, dim=0, dim_size=graph.n_frames)
    shape = (-1,) + (1,) * (x.dim() - 1)
    return total / graph.n_atoms.to(x.dtype).view(shape)


def _edge_to_atom(values, index, n_atoms):
    return scatter_sum(values, index, dim=0, dim_size=n_atoms)


def born_charges(net, graph, fixed_charges=None, create_graph=False):
    """Born charges of ``graph`` from ``net`` (:class:`~bornml.models.mace_network.BECNetwork`).

    ``fixed_charges`` (n_species,) e: species charges q⁰ used when the network has no charge
    head (the dipole model P = Σ q⁰ r + Σ p). ``create_graph=True`` while training.
    Returns a dict of tensors: ``bec`` (N, 3, 3) e, ``charges`` (N,) e (neutral),
    ``dipoles`` (N, 3) e·Å or None, ``asr_residual`` (F, 3, 3) e.
    """
    vectors = graph.vectors.detach().requires_grad_(True)
    charges, dipoles = net(graph.species, vectors, graph.edge_index)
    n_atoms = len(graph.species)
    senders, receivers = graph.edge_index  # j_p, i_p
    layers = len(net.interactions)
    open_rows = ~graph.periodic[graph.node_frame]  # (N, 3): non-periodic directions per atom
    if layers > 1 and bool(graph.periodic.any()):
        raise ValueError(
            "MACE Born charges of periodic frames need num_interactions=1: with more layers "
            "a charge depends on edges of its neighbours, whose image-resolved positions the "
            "local form cannot assign")
    eye = torch.eye(3, dtype=vectors.dtype, device=vectors.device)
    if charges is None:
        charges = fixed_charges.to(vectors.dtype)[graph.species]
    neutral = charges - _frame_mean(charges, graph)[graph.node_frame]
    bec = neutral[:, None, None] * eye
    rel = graph.positions - _frame_mean(graph.positions, graph)[graph.node_frame]
    rel = rel * open_rows.to(rel.dtype)  # r − r̄ only along non-periodic directions
    rows = [torch.zeros_like(bec[:, 0]) for _ in range(3)]
    if layers > 1:  # molecules only: differentiate P_a = Σ q_i (r_i − r̄)_a + Σ p_{i,a}
        for a in range(3):
            s = (charges * rel[:, a]).sum() if net.q_readout is not None else 0.0
            if dipoles is not None:
                s = s + dipoles[:, a].sum()
            h, = torch.autograd.grad(s, vectors, create_graph=create_graph, retain_graph=True,
                                     allow_unused=True, materialize_grads=True)
            rows[a] = _edge_to_atom(h, senders, n_atoms) - _edge_to_atom(h, receivers, n_atoms)
    else:
        if net.q_readout is not None:
            g, = torch.autograd.grad(charges.sum(), vectors, create_graph=create_graph,
                                     retain_graph=True, allow_unused=True,
                                     materialize_grads=True)
            local = _edge_to_atom(-vectors.detach()[:, :, None] * g[:, None, :], senders,
                                  n_atoms)
            dq = _edge_to_atom(g, senders, n_atoms) - _edge_to_atom(g, receivers, n_atoms)
            for a in range(3):
                rows[a] = rows[a] + local[:, a] + rel[:, a, None] * dq
        if dipoles is not None:
            for a in range(3):
                h, = torch.autograd.grad(dipoles[:, a].sum(), vectors,
                                         create_graph=create_graph, retain_graph=True,
                                         allow_unused=True, materialize_grads=True)
                rows[a] = rows[a] + _edge_to_atom(h, senders, n_atoms) \
                    - _edge_to_atom(h, receivers, n_atoms)
    bec = bec + torch.stack(rows, dim=1)
    residual = scatter_sum(bec, graph.node_frame, dim=0, dim_size=graph.n_frames)
    residual = residual * graph.periodic.to(bec.dtype)[:, :, None]  # rows projected
    bec = bec - (residual / graph.n_atoms.to(bec.dtype).view(-1, 1, 1))[graph.node_frame]
    return {keys.BEC: bec, keys.CHARGES: neutral, keys.DIPOLES: dipoles,
            keys.ASR_RESIDUAL: residual}
