"""The torch module of the MACE comparator: atomic charges q_i (e) and dipoles p_i (e·Å).

Built from mace-torch blocks: one-hot species → linear embedding; Bessel radial basis with a
polynomial cutoff; spherical harmonics of the edge vectors; ``num_interactions`` MACE layers
(interaction + symmetric-contraction product basis); linear readouts to ``0e`` (charges) and
``1o`` (dipoles, Cartesian x, y, z in e3nn's convention).

Inputs are edge vectors, not positions: ``vectors`` (E, 3) Å with ``edge_index`` = (sender,
receiver) = (neighbour j, centre i), ``d = r_j + T − r_i``. Callers differentiate with respect
to the vectors (see :mod:`bornml.models.mace_bec`). With one interaction layer the outputs of
atom i depend only on the edges received by i (and the species of the senders).
"""

import contextlib
import sys
import warnings

import mace  # noqa: F401  (must come before e3nn: it configures torch.load for e3nn)
import torch

# mace-torch prints a note about cuequivariance to stdout on import; keep stdout clean (JSON)
with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
    warnings.simplefilter("ignore", UserWarning)
    from e3nn import o3
    from mace.modules.blocks import (
        EquivariantProductBasisBlock,
        LinearNodeEmbeddingBlock,
        LinearReadoutBlock,
        RadialEmbeddingBlock,
        RealAgnosticInteractionBlock,
        RealAgnosticResidualInteractionBlock,
    )
    from mace.tools.scatter import scatter_sum

__all__ = ["BECNetwork", "scatter_sum"]


class BECNetwork(torch.nn.Module):
    """MACE layers with a charge and/or dipole readout.

    Parameters: ``n_species``; ``head`` in {"q", "p", "q+p"}; ``r_max`` (Å); ``num_bessel``,
    ``num_polynomial_cutoff`` (radial basis); ``max_ell`` (largest l of the edge spherical
    harmonics); ``num_channels``; ``correlation`` (body order − 1 of the product basis);
    ``num_interactions``; ``radial_mlp`` (hidden widths of the radial network);
    ``avg_num_neighbors`` (message normalisation).

    Buffers ``q_shift`` (n_species,) e, ``q_scale`` () e and ``p_scale`` () e·Å map the raw
    readouts to physical units: q_i = q_shift[s_i] + q_scale·q̃_i, p_i = p_scale·p̃_i.
    """

    def __init__(self, n_species, head="q+p", r_max=5.0, num_bessel=8, num_polynomial_cutoff=5,
                 max_ell=2, num_channels=16, correlation=2, num_interactions=1,
                 radial_mlp=(32, 32), avg_num_neighbors=10.0):
        super().__init__()
        if head not in ("q", "p", "q+p"):
            raise ValueError(f"head must be 'q', 'p' or 'q+p', got {head!r}")
        if "p" in head and max_ell < 1:
            raise ValueError("dipole heads need max_ell >= 1")
        self.head = head
        self.n_species = int(n_species)
        channels = int(num_channels)
        node_attr_irreps = o3.Irreps(f"{self.n_species}x0e")
        scalars = o3.Irreps(f"{channels}x0e")
        with_vectors = o3.Irreps(f"{channels}x0e + {channels}x1o")
        self.node_embedding = LinearNodeEmbeddingBlock(node_attr_irreps, scalars)
        self.radial_embedding = RadialEmbeddingBlock(
            r_max=float(r_max), num_bessel=int(num_bessel),
            num_polynomial_cutoff=int(num_polynomial_cutoff))
        edge_feats_irreps = o3.Irreps(f"{int(num_bessel)}x0e")
        sh_irreps = o3.Irreps.spherical_harmonics(int(max_ell))
        self.spherical_harmonics = o3.SphericalHarmonics(sh_irreps, normalize=True,
                                                         normalization="component")
        interaction_irreps = (sh_irreps * channels).sort()[0].simplify()
        self.interactions = torch.nn.ModuleList()
        self.products = torch.nn.ModuleList()
        feats_irreps = scalars
        for layer in range(int(num_interactions)):
            last = layer == num_interactions - 1
            hidden = with_vectors if ("p" in head or not last) else scalars
            cls = RealAgnosticInteractionBlock if layer == 0 else \
                RealAgnosticResidualInteractionBlock
            inter = cls(node_attrs_irreps=node_attr_irreps, node_feats_irreps=feats_irreps,
                        edge_attrs_irreps=sh_irreps, edge_feats_irreps=edge_feats_irreps,
                        target_irreps=interaction_irreps, hidden_irreps=hidden,
                        avg_num_neighbors=float(avg_num_neighbors),
                        radial_MLP=[int(w) for w in radial_mlp])
            self.interactions.append(inter)
            self.products.append(EquivariantProductBasisBlock(
                node_feats_irreps=inter.target_irreps, target_irreps=hidden,
                correlation=int(correlation), num_elements=self.n_species, use_sc=layer > 0))
            feats_irreps = hidden
        self.q_readout = LinearReadoutBlock(feats_irreps, o3.Irreps("0e")) \
            if "q" in head else None
        self.p_readout = LinearReadoutBlock(feats_irreps, o3.Irreps("1o")) \
            if "p" in head else None
        self.register_buffer("q_shift", torch.zeros(self.n_species))
        self.register_buffer("q_scale", torch.tensor(1.0))
        self.register_buffer("p_scale", torch.tensor(1.0))

    def forward(self, species, vectors, edge_index):
        """Charges (N,) e or None and dipoles (N, 3) e·Å or None.

        species (N,) long indices into the model's species; vectors (E, 3) Å; edge_index
        (2, E) long = (sender j, receiver i).
        """
        node_attrs = torch.nn.functional.one_hot(species, self.n_species).to(vectors.dtype)
        lengths = torch.linalg.norm(vectors, dim=1, keepdim=True)
        edge_attrs = self.spherical_harmonics(vectors)
        edge_feats, cutoff = self.radial_embedding(lengths, node_attrs, edge_index, species)
        feats = self.node_embedding(node_attrs)
        for inter, prod in zip(self.interactions, self.products):
            feats, sc = inter(node_attrs=node_attrs, node_feats=feats, edge_attrs=edge_attrs,
                              edge_feats=edge_feats, edge_index=edge_index, cutoff=cutoff)
            feats = prod(node_feats=feats, sc=sc, node_attrs=node_attrs)
        charges = dipoles = None
        if self.q_readout is not None:
            charges = self.q_shift[species] + self.q_scale * self.q_readout(feats)[:, 0]
        if self.p_readout is not None:
            dipoles = self.p_scale * self.p_readout(feats)
        return charges, dipoles
