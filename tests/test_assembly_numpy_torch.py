"""The Z assembly of the kernel models (numpy) and of the MACE heads (torch) is the same
algebra: fed the same charges, pair gradients and dipole pair gradients they give the same Z
(molecule: the exact derivative of P; crystal: the local form projected onto the ASR)."""

import numpy as np
import pytest
from _structures import perturbed_molecule, slab

from bornml.models.bec_assembly import assemble_bec
from bornml.models.dipole_term import scatter_pairs

torch = pytest.importorskip("torch")
pytest.importorskip("mace")
from bornml.models.mace_bec import born_charges, frame_graph


class LinearHeads(torch.nn.Module):
    """q_i = q0_i + Σ_{p: i_p = i} g_p·d_p and p_i = p0_i + Σ_{p: i_p = i} G_p d_p: charges
    and dipoles whose pair gradients are exactly g_p (P, 3) and G_p (P, 3, 3)."""

    def __init__(self, q0, g, p0, big_g):
        super().__init__()
        self.q0, self.g, self.p0, self.big_g = q0, g, p0, big_g
        self.interactions = [None]  # one layer: the local form applies
        self.q_readout = True

    def forward(self, species, vectors, edge_index):
        receivers = edge_index[1]
        n = len(species)
        q = self.q0 + torch.zeros(n, dtype=vectors.dtype).index_add(
            0, receivers, (self.g * vectors).sum(dim=1))
        p = self.p0 + torch.zeros(n, 3, dtype=vectors.dtype).index_add(
            0, receivers, torch.einsum("pab,pb->pa", self.big_g, vectors))
        return q, p


@pytest.mark.parametrize("system", ["molecule", "crystal", "slab"])
def test_numpy_and_torch_assembly_agree(system, quartz_frames):
    atoms = {"molecule": lambda: perturbed_molecule("CH3CH2OH", seed=3),
             "crystal": lambda: quartz_frames[0],
             "slab": lambda: slab(quartz_frames[0])}[system]()
    graph = frame_graph(atoms, np.zeros(len(atoms), dtype=int), 4.0, torch.float64)
    directions = graph.periodic[0].numpy()
    assert directions.tolist() == {"molecule": [False] * 3, "crystal": [True] * 3,
                                   "slab": [True, True, False]}[system]
    n_pairs = graph.vectors.shape[0]
    rng = np.random.default_rng(0)
    q0, g = rng.normal(size=len(atoms)), rng.normal(size=(n_pairs, 3))
    p0, big_g = rng.normal(size=(len(atoms), 3)), rng.normal(size=(n_pairs, 3, 3))
    heads = LinearHeads(*(torch.as_tensor(x) for x in (q0, g, p0, big_g)))
    out = born_charges(heads, graph)
    neighbors, centers = graph.edge_index.numpy()
    vectors = graph.vectors.numpy()
    q = q0 + np.bincount(centers, weights=np.einsum("pb,pb->p", g, vectors),
                         minlength=len(atoms))
    bec, neutral, residual = assemble_bec(q, g, centers, neighbors, vectors, atoms.positions,
                                          directions)
    bec = bec + scatter_pairs(big_g, centers, neighbors, len(atoms))
    # the dipole part obeys the ASR: the projection removes nothing more (periodic rows)
    bec[:, directions] -= bec[:, directions].mean(axis=0)
    np.testing.assert_allclose(out["asr_residual"][0].detach().numpy(), residual, atol=1e-10)
    np.testing.assert_allclose(out["charges"].detach().numpy(), neutral, atol=1e-12)
    np.testing.assert_allclose(out["bec"].detach().numpy(), bec, rtol=0, atol=1e-10)
    assert np.abs(bec).max() > 1.0  # not a comparison of zeros
