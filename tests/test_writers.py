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
