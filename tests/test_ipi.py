"""i-PI files: bec.txt writer / reader and the becx/becy/becz trajectories, orientation pinned by
the driven forces i-PI computed from the same Born charges (F_jb = Σ_a Z[j,a,b] E_a)."""

from pathlib import Path

import numpy as np
import pytest

from bornml import keys, read_frames
from bornml.errors import BornDataError
from bornml.io.ipi import read_ipi_bec, read_ipi_xyz, write_ipi_bec

IPI = Path(__file__).resolve().parents[2] / "shared" / "data" / "formats" / "ipi"
needs_samples = pytest.mark.skipif(not IPI.is_dir(), reason="needs ../shared/data/formats/ipi")


def test_bec_txt_layout_and_round_trip(tmp_path):
    z = np.random.default_rng(1).normal(size=(4, 3, 3))  # generic: not symmetric
    path = tmp_path / "bec.txt"
    write_ipi_bec(path, z)
    raw = np.loadtxt(path)  # what i-PI's <bec mode="file"> reads
    assert raw.shape == (12, 3)
    for j in range(4):
        for a in range(3):
            for b in range(3):
                assert raw[3 * j + b, a] == z[j, a, b]  # row = displacement, column = field
    assert np.array_equal(read_ipi_bec(path), z)
    assert np.array_equal(read_ipi_bec(path, layout="P-r"), z.transpose(0, 2, 1))
    # i-PI's driven force (engine/motion/driven_dynamics.py: Z @ E with Z (3N, 3)) is Zᵀ E
    e = np.array([0.3, -0.2, 0.7])
    np.testing.assert_allclose((raw @ e).reshape(4, 3), np.einsum("jab,a->jb", z, e))


def test_bec_txt_is_refused_by_read_frames_with_a_pointer(tmp_path):
    path = tmp_path / "bec.txt"
    write_ipi_bec(path, np.zeros((2, 3, 3)))
    with pytest.raises(BornDataError, match="read_ipi_bec"):
        read_frames(path)
    (tmp_path / "bad_bec.txt").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(BornDataError, match="3·n_atoms"):
        read_ipi_bec(tmp_path / "bad_bec.txt")


@needs_samples
def test_sample_bec_txt_and_trajectories_agree():
    z = read_ipi_bec(IPI / "H2O_EDANVE_bec.txt")
    assert z.shape == (3, 3, 3)
    frames = read_frames(IPI / "H2O_EDANVE_ref_simulation.becz_0.xyz")
    assert len(frames) == 11 and [f.info[keys.IPI_STEP] for f in frames] == list(range(11))
    for frame in frames:  # constant BECs (mode="file"), printed with 6 digits
        np.testing.assert_allclose(keys.bec_of(frame), z, rtol=0, atol=1e-6)
    start = np.loadtxt(IPI / "H2O_EDANVE_start.xyz", skiprows=2, usecols=(1, 2, 3))
    np.testing.assert_allclose(frames[0].positions, start * 0.529177210903, atol=1e-5)
    np.testing.assert_allclose(frames[0].cell.lengths(), 7 * 0.529177210903)


@needs_samples
def test_sample_orientation_from_driven_forces():
    """i-PI's Eforces are F_jb = Σ_a Z[j,a,b] E_a(t) (E from properties.out): the physics of
    F = −∂(−μ·E)/∂r pins which index is the field; the transposed reading fails."""
    frames = read_frames(IPI / "H2O_EDANVE_ref_simulation.becx_0.xyz")
    props = np.loadtxt(IPI / "H2O_EDANVE_ref_simulation.properties.out")
    eforces = read_ipi_xyz(IPI / "H2O_EDANVE_ref_simulation.Eforces_0.xyz")
    forces = {h["step"]: v for _, v, h in eforces}
    checked = 0
    for frame in frames:
        step = frame.info[keys.IPI_STEP]
        e = props[props[:, 0] == step, 5:8][0]
        if not np.abs(e).max() > 1e-3:
            continue
        z = keys.bec_of(frame)
        f = forces[step]
        scale = np.abs(f).max()
        ok = np.abs(np.einsum("jab,a->jb", z, e) - f).max()
        assert ok < 1e-4 * scale  # agreement to the 6 printed digits
        assert np.abs(np.einsum("jba,a->jb", z, e) - f).max() > 50 * max(ok, 1e-5 * scale)
        checked += 1
    assert checked >= 3
