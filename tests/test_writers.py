"""Writers: ASE interoperability of the extxyz frames (both directions) and the stored layout."""

from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms

from bornml import keys
from bornml.io import read_frames, write_frames

WATER = Path(__file__).resolve().parents[2] / "shared" / "data" / "water-rpbe" / "H2O_BEC.extxyz"


def generic_frames(n_frames=3, n_atoms=5):
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(n_frames):
        at = Atoms("OH2CN"[:n_atoms], positions=rng.normal(size=(n_atoms, 3)) * 2,
                   cell=np.diag([6.0, 7.0, 8.0]), pbc=True)
        keys.set_bec(at, rng.normal(size=(n_atoms, 3, 3)))  # generic: not symmetric
        at.arrays[keys.FORCES] = rng.normal(size=(n_atoms, 3))
        at.info[keys.ENERGY] = float(rng.normal())
        frames.append(at)
    return frames


def test_set_bec_and_bec_of_are_one_row_major_array():
    at = generic_frames(1)[0]
    z = keys.bec_of(at)
    assert at.arrays[keys.BEC].shape == (5, 9) and z.shape == (5, 3, 3)
    assert z[2, 0, 1] == at.arrays[keys.BEC][2, 1] and z[2, 1, 0] == at.arrays[keys.BEC][2, 3]
    z[0, 2, 1] = 42.0  # a view: writes go through
    assert at.arrays[keys.BEC][0, 7] == 42.0
    by_hand = Atoms("H2", positions=np.zeros((2, 3)))
    by_hand.arrays[keys.BEC] = np.arange(18.0).reshape(2, 3, 3)  # (N, 3, 3) set by hand
    assert keys.bec_of(by_hand)[1, 2, 0] == 15.0
    with pytest.raises(ValueError):
        keys.set_bec(by_hand, np.zeros((3, 3, 3)))


def test_write_frames_output_is_read_by_ase(tmp_path):
    frames = generic_frames()
    path = tmp_path / "f.extxyz"
    write_frames(path, frames)
    back = ase.io.read(path, index=":")
    for a, b in zip(frames, back):
        assert np.array_equal(b.arrays["bec"].reshape(-1, 3, 3), keys.bec_of(a))  # a slow
        assert np.array_equal(b.positions, a.positions)


def test_read_frames_output_is_written_by_ase_and_read_back(tmp_path):
    frames = generic_frames()
    path = tmp_path / "f.extxyz"
    write_frames(path, frames)
    ours = read_frames(path)
    out = tmp_path / "ase.extxyz"
    ase.io.write(out, ours, format="extxyz")  # raised "could not broadcast" with (N, 3, 3)
    again = read_frames(out)
    for a, b in zip(frames, again):
        np.testing.assert_allclose(keys.bec_of(b), keys.bec_of(a), rtol=1e-7, atol=1e-8)
        assert keys.bec_of(b)[0, 0, 1] != keys.bec_of(b)[0, 1, 0]
        np.testing.assert_allclose(b.arrays[keys.FORCES], a.arrays[keys.FORCES], atol=1e-7)
    # and ASE's own reader sees the same 9 numbers in the same order
    plain = ase.io.read(out, index=":")
    for a, b in zip(frames, plain):
        np.testing.assert_allclose(b.arrays["bec"], a.arrays[keys.BEC], atol=1e-7)


@pytest.mark.skipif(not WATER.is_file(), reason="needs ../shared/data/water-rpbe")
def test_real_data_set_goes_through_ase_write(tmp_path):
    frames = read_frames(WATER, index=":2")
    out = tmp_path / "w.extxyz"
    ase.io.write(out, frames, format="extxyz")
    back = read_frames(out)
    for a, b in zip(frames, back):
        np.testing.assert_allclose(keys.bec_of(b), keys.bec_of(a), rtol=1e-7, atol=1e-7)
        assert keys.bec_of(b).shape == (192, 3, 3)


# -- phonopy BORN --------------------------------------------------------------------------------

def phonopy_read(path, atoms):
    """Born charges and ε∞ as phonopy's own reader gives them (expanded to every atom)."""
    pytest.importorskip("phonopy")
    from phonopy.file_IO import parse_BORN
    from phonopy.structure.atoms import PhonopyAtoms

    cell = PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())
    nac = parse_BORN(cell, filename=str(path))
    return nac["born"], nac["dielectric"]


def wurtzite():
    """ZnO wurtzite (P6_3mc, 2 independent atoms) with uniaxial Born charges diag(a, a, c)."""
    from ase.build import bulk

    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    z = np.array([np.diag([2.1, 2.1, 2.7]) if s == "Zn" else np.diag([-2.1, -2.1, -2.7])
                  for s in atoms.get_chemical_symbols()])
    return atoms, z


def test_born_symmetric_crystal_read_back_by_phonopy(tmp_path):
    from bornml.io.phonopy_born import write_phonopy_born

    atoms, z = wurtzite()
    eps = np.diag([3.7, 3.7, 3.8])
    noise = np.random.default_rng(0).normal(scale=1e-3, size=z.shape)
    path = tmp_path / "BORN"
    zbar, _ = write_phonopy_born(path, atoms, bec=z + noise, epsilon=eps)
    lines = path.read_text().splitlines()
    assert lines[0] == "default" and len(lines) == 2 + 2  # Zn and O are the independent atoms
    born, dielectric = phonopy_read(path, atoms)
    np.testing.assert_allclose(dielectric, eps, atol=1e-9)
    np.testing.assert_allclose(born, zbar, atol=1e-9)  # phonopy expands what we symmetrised
    np.testing.assert_allclose(born, z, atol=3e-3)  # and the noise is averaged away
    assert np.abs(born - z).max() < np.abs(noise).max()
    for j in range(4):  # symmetric crystal: every atom's tensor respects the 6mm axis
        np.testing.assert_allclose(born[j][:2, :2], born[j][0, 0] * np.eye(2), atol=1e-9)


def test_born_low_symmetry_keeps_generic_tensors_and_orientation(tmp_path):
    from bornml.io.phonopy_born import write_phonopy_born
    from bornml.io.readers import read_phonopy_born

    rng = np.random.default_rng(5)
    atoms = Atoms("ZnOZnO", scaled_positions=rng.random((4, 3)),
                  cell=[[3.3, 0.1, 0.0], [0.2, 3.1, 0.3], [0.0, 0.4, 5.0]], pbc=True)  # P1
    z = rng.normal(size=(4, 3, 3))  # not symmetric: rows (field) ≠ columns
    keys.set_bec(atoms, z)
    atoms.info[keys.EPSILON_INF] = np.array([[4.0, 0.1, 0.0], [0.1, 4.2, 0.0], [0, 0, 4.5]])
    path = tmp_path / "BORN"
    write_phonopy_born(path, atoms)
    born, dielectric = phonopy_read(path, atoms)
    np.testing.assert_allclose(born, z, atol=1e-9)
    np.testing.assert_allclose(dielectric, atoms.info[keys.EPSILON_INF], atol=1e-9)
    np.testing.assert_allclose(keys.bec_of(read_phonopy_born(path, atoms)), z, atol=1e-9)
    first = np.array(path.read_text().splitlines()[2].split(), dtype=float)
    np.testing.assert_allclose(first, z[0].ravel(), atol=1e-9)  # row-major, field (a) slow


def test_born_without_epsilon_is_refused(tmp_path):
    from bornml.errors import BornDataError
    from bornml.io.phonopy_born import write_phonopy_born

    atoms, z = wurtzite()
    with pytest.raises(BornDataError, match="ε∞"):
        write_phonopy_born(tmp_path / "BORN", atoms, bec=z)


def test_born_from_a_model_prediction(tmp_path, quartz_frames):
    import bornml
    from bornml.io.phonopy_born import write_phonopy_born

    model = bornml.MonopoleModel(cutoff=5.0, max_radial=4, max_angular=3, n_sparse=10,
                                 tikhonov=1e-3, charge_regularisation=0.1).fit(quartz_frames[:2])
    atoms = quartz_frames[10]
    z = model.predict_frame(atoms)[keys.BEC]
    path = tmp_path / "BORN"
    write_phonopy_born(path, atoms, bec=z, epsilon=np.eye(3) * 2.4, symprec=1e-6)  # MD: P1
    born, _ = phonopy_read(path, atoms)
    assert len(path.read_text().splitlines()) == 2 + len(atoms)
    np.testing.assert_allclose(born, z, atol=1e-9)
