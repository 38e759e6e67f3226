"""Tests of bornml.io: readers, writers, layouts, aliases, errors and the real data sets."""

import builtins
import json

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from bornml import keys
from bornml.errors import BornDataError
from bornml.io import read_frames, read_phonopy_born, write_frames

RNG = np.random.default_rng(7)


def make_frame(n=4, seed=0):
    rng = np.random.default_rng(seed)
    atoms = Atoms("H2OC"[:n] if n <= 4 else "H" * n, positions=rng.normal(size=(n, 3)) * 2,
                  cell=np.diag([7.0, 8.0, 9.0]) + rng.normal(size=(3, 3)) * 0.1, pbc=True)
    atoms.arrays["bec"] = rng.normal(size=(n, 3, 3))  # generic: not symmetric
    return atoms


def raw_xyz(path, frames_text):
    """Write hand-made extxyz frames: list of (comment, [atom lines])."""
    with open(path, "w") as fh:
        fh.writelines(f"{len(rows)}\n{comment}\n" + "".join(r + "\n" for r in rows) for comment, rows in frames_text)
    return path


def frame_text(key="bec", n=2, per_atom=True, bec=None, extra=""):
    """One hand-made frame with BEC ``bec`` (n, 9) under ``key``."""
    bec = np.arange(9 * n, dtype=float).reshape(n, 9) / 7 if bec is None else bec
    pos = np.arange(3 * n, dtype=float).reshape(n, 3)
    if per_atom:
        comment = (f'Lattice="6 0 0 0 6 0 0 0 6" Properties=species:S:1:pos:R:3:{key}:R:'
                   f'{bec.shape[1]} {extra} pbc="T T T"')
        rows = ["H " + " ".join(repr(float(x)) for x in (*pos[j], *bec[j])) for j in range(n)]
    else:
        comment = (f'Lattice="6 0 0 0 6 0 0 0 6" Properties=species:S:1:pos:R:3 {key}='
                   f'"{" ".join(repr(float(x)) for x in bec.ravel())}" {extra} pbc="T T T"')
        rows = ["H " + " ".join(repr(float(x)) for x in pos[j]) for j in range(n)]
    return comment, rows


def assert_error(excinfo, path, frame, key):
    msg = str(excinfo.value)
    assert path.name in msg, msg
    if frame is not None:
        assert f"frame {frame}" in msg, msg
    if key is not None:
        assert repr(key) in msg, msg


# -- round trip and layout -------------------------------------------------------------------

def test_round_trip_exact_and_orientation(tmp_path):
    frames = [make_frame(4, s) for s in range(3)]
    for i, at in enumerate(frames):
        at.arrays["charges"] = RNG.normal(size=len(at))
        at.arrays["dipoles"] = RNG.normal(size=(len(at), 3))
        at.arrays["forces"] = RNG.normal(size=(len(at), 3))
        at.info["energy"] = float(RNG.normal()) * 100
        at.info["epsilon_inf"] = RNG.normal(size=(3, 3))
    path = tmp_path / "out.extxyz"
    write_frames(path, frames)
    back = read_frames(path)
    assert len(back) == 3
    for i, (a, b) in enumerate(zip(frames, back)):
        for k in ("charges", "dipoles", "forces", "positions"):
            assert np.array_equal(a.arrays[k], b.arrays[k]), k
        assert np.array_equal(keys.bec_of(a), keys.bec_of(b))
        assert b.arrays["bec"].dtype == np.float64 and b.arrays["bec"].shape == (4, 9)
        assert np.array_equal(a.cell.array, b.cell.array)
        assert b.info["energy"] == a.info["energy"]
        assert np.array_equal(b.info["epsilon_inf"], a.info["epsilon_inf"])
        assert b.info[keys.SOURCE] == f"{path}:{i}"
        assert b.calc is None
    # orientation in the raw text: bec:R:9 row-major, a (field) the slow index
    lines = path.read_text().splitlines()
    spec = lines[1].split("Properties=")[1].split()[0].split(":")
    widths = dict(zip(spec[::3], map(int, spec[2::3])))
    start = sum(widths[name] for name in spec[::3][:spec[::3].index("bec")])
    assert widths["bec"] == 9
    z = keys.bec_of(frames[0])
    for j in range(4):
        cols = lines[2 + j].split()
        for a in range(3):
            for b in range(3):
                assert float(cols[start + 3 * a + b]) == z[j, a, b]
    assert z[0, 0, 1] != z[0, 1, 0]


def test_r_p_layout_transposes(tmp_path):
    path = write_and_return(tmp_path, [make_frame(3, 1)])
    pr = keys.bec_of(read_frames(path, layout="P-r")[0])
    rp = keys.bec_of(read_frames(path, layout="r-P")[0])
    assert np.array_equal(rp, pr.transpose(0, 2, 1))
    assert not np.allclose(rp, pr)
    assert np.array_equal(keys.bec_of(read_frames(path, layout="auto")[0]), pr)


def write_and_return(tmp_path, frames, name="f.extxyz"):
    path = tmp_path / name
    write_frames(path, frames)
    return path


def test_calculator_results_written_once(tmp_path):
    at = make_frame(3, 2)
    forces = RNG.normal(size=(3, 3))
    at.calc = SinglePointCalculator(at, energy=-1.25, forces=forces, stress=np.arange(6.0))
    path = write_and_return(tmp_path, [at])
    head = path.read_text().splitlines()[1]
    assert head.count("forces") == 1 and head.count("energy=") == 1
    back = read_frames(path)[0]
    assert np.array_equal(back.arrays["forces"], forces)
    assert back.info["energy"] == -1.25
    assert np.allclose(back.info["stress"], np.arange(6.0))


def test_extra_per_atom_and_index(tmp_path):
    frames = [make_frame(4, s) for s in range(5)]
    extra = {"weights": [np.full(4, float(s)) for s in range(5)]}
    path = tmp_path / "e.xyz"
    write_frames(path, frames, extra_per_atom=extra)
    back = read_frames(path, index="1::2")
    assert [b.info[keys.SOURCE].rsplit(":", 1)[1] for b in back] == ["1", "3"]
    assert np.array_equal(back[1].arrays["weights"], np.full(4, 3.0))
    last = read_frames(path, index=-1)
    assert last[0].info[keys.SOURCE].endswith(":4")
    assert np.array_equal(keys.bec_of(last[0]), keys.bec_of(frames[4]))


# -- aliases and per-frame BECs --------------------------------------------------------------

@pytest.mark.parametrize("alias", keys.BEC_ALIASES)
@pytest.mark.parametrize("per_atom", [True, False])
def test_all_aliases(tmp_path, alias, per_atom):
    bec = RNG.normal(size=(2, 9))
    path = raw_xyz(tmp_path / "a.extxyz", [frame_text(alias, bec=bec, per_atom=per_atom)])
    at = read_frames(path)[0]
    assert np.array_equal(keys.bec_of(at), bec.reshape(2, 3, 3))
    assert alias == "bec" or alias not in at.arrays and alias not in at.info


@pytest.mark.parametrize("alias", keys.EPSILON_ALIASES)
def test_epsilon_aliases(tmp_path, alias):
    eps = RNG.normal(size=9)
    extra = f'{alias}="{" ".join(repr(float(x)) for x in eps)}"'
    path = raw_xyz(tmp_path / "e.extxyz", [frame_text(extra=extra)])
    at = read_frames(path)[0]
    assert np.array_equal(at.info["epsilon_inf"], eps.reshape(3, 3))


def test_per_frame_json_and_nested(tmp_path):
    bec = RNG.normal(size=(2, 3, 3))
    head = 'Lattice="6 0 0 0 6 0 0 0 6" Properties=species:S:1:pos:R:3 pbc="T T T" '
    rows = ["H 0 0 0", "O 1 0 0"]
    js = json.dumps(bec.tolist())
    path = raw_xyz(tmp_path / "j.extxyz", [(head + f"bec='{js}'", rows),
                                           (head + 'bec="_JSON ' + js.replace('"', '') + '"',
                                            rows)])
    for at in read_frames(path):
        assert np.array_equal(keys.bec_of(at), bec)


# -- errors ----------------------------------------------------------------------------------

def test_error_file_not_found(tmp_path):
    path = tmp_path / "missing.extxyz"
    with pytest.raises(BornDataError) as exc:
        read_frames(path)
    assert_error(exc, path, None, None)
    assert "not found" in str(exc.value)


def test_error_truncated(tmp_path):
    comment, rows = frame_text()
    path = tmp_path / "t.extxyz"  # the second frame announces 2 atoms but the file ends
    path.write_text(f"2\n{comment}\n{rows[0]}\n{rows[1]}\n2\n{comment}\n{rows[0]}\n")
    with pytest.raises(BornDataError) as exc:
        read_frames(path)
    assert_error(exc, path, 1, "natoms")


def test_error_unparsable_value(tmp_path):
    comment, rows = frame_text()
    bad = rows[1].rsplit(" ", 1)[0] + " x1.5y"
    path = raw_xyz(tmp_path / "u.extxyz", [(comment, rows), (comment, [rows[0], bad])])
    with pytest.raises(BornDataError) as exc:
        read_frames(path)
    assert_error(exc, path, 1, "bec")


def test_error_no_bec_lists_keys(tmp_path):
    comment, rows = frame_text(key="charges_xyz")
    path = raw_xyz(tmp_path / "n.extxyz", [frame_text(), (comment + " energy=1.0", rows)])
    with pytest.raises(BornDataError) as exc:
        read_frames(path)
    assert_error(exc, path, 1, "bec")
    assert "charges_xyz" in str(exc.value) and "energy" in str(exc.value)


def test_error_six_numbers_per_atom(tmp_path):
    path = raw_xyz(tmp_path / "s.extxyz", [frame_text("BEC", bec=np.ones((2, 6)))])
    with pytest.raises(BornDataError) as exc:
        read_frames(path)
    assert_error(exc, path, 0, "BEC")
    assert "6 numbers per atom" in str(exc.value)


def test_error_per_frame_size_mismatch(tmp_path):
    # a frame whose atom count differs from the count its label was made for (3 vs 2 atoms)
    comment, rows = frame_text("born_charge", n=3, per_atom=False)
    path = raw_xyz(tmp_path / "m.extxyz", [frame_text(), (comment, rows[:2])])
    with pytest.raises(BornDataError) as exc:
        read_frames(path)
    assert_error(exc, path, 1, "born_charge")
    assert "27" in str(exc.value) and "18" in str(exc.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_error_nan_inf(tmp_path, bad):
    bec = np.ones((2, 9))
    bec[1, 4] = bad
    path = raw_xyz(tmp_path / "x.extxyz", [frame_text(), frame_text("becs", bec=bec)])
    with pytest.raises(BornDataError) as exc:
        read_frames(path)
    assert_error(exc, path, 1, "becs")
    assert "atoms [1]" in str(exc.value)


def test_error_unknown_layout(tmp_path):
    path = raw_xyz(tmp_path / "l.extxyz", [frame_text()])
    with pytest.raises(BornDataError) as exc:
        read_frames(path, layout="P_r")
    assert_error(exc, path, None, "layout")
    assert "'P_r'" in str(exc.value)


def test_error_outcar_without_bec(tmp_path):
    path = tmp_path / "OUTCAR"
    path.write_text(" vasp.6.1.0\n free  energy   TOTEN  =  -1.0 eV\n")
    with pytest.raises(BornDataError) as exc:
        read_frames(path)
    assert_error(exc, path, 0, "BORN EFFECTIVE CHARGES")


def test_error_writer_nan(tmp_path):
    at = make_frame(2)
    keys.bec_of(at)[0, 0, 0] = np.nan
    path = tmp_path / "w.extxyz"
    with pytest.raises(BornDataError) as exc:
        write_frames(path, [make_frame(2), at])
    assert_error(exc, path, 1, "bec")
    assert not path.exists()


# -- phonopy BORN ----------------------------------------------------------------------------

def test_phonopy_born_one_line_per_atom(tmp_path):
    at = make_frame(2, 3)
    del at.arrays["bec"]
    z, eps = RNG.normal(size=(2, 3, 3)), RNG.normal(size=(3, 3))
    lines = ["14.400"] + [" ".join(repr(float(x)) for x in m.ravel()) for m in (eps, *z)]
    path = tmp_path / "BORN"
    path.write_text("\n".join(lines) + "\n")
    out = read_phonopy_born(path, at)
    assert np.array_equal(keys.bec_of(out), z) and np.array_equal(out.info["epsilon_inf"], eps)
    path.write_text("\n".join(lines[1:]) + "\n")  # the factor line is optional
    assert np.array_equal(keys.bec_of(read_phonopy_born(path, at)), z)
    with pytest.raises(BornDataError) as exc:
        read_frames(path)
    assert "read_phonopy_born" in str(exc.value)


def test_phonopy_born_needs_spglib_for_fewer_lines(tmp_path, monkeypatch):
    at = make_frame(3, 4)
    path = tmp_path / "BORN"
    path.write_text("\n".join(" ".join(["1.0"] * 9) for _ in range(3)) + "\n")  # eps + 2 atoms
    real_import = builtins.__import__

    def no_spglib(name, *args, **kwargs):
        if name == "spglib":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_spglib)
    with pytest.raises(BornDataError) as exc:
        read_phonopy_born(path, at)
    assert_error(exc, path, 0, "BORN")
    assert "spglib" in str(exc.value)


def test_phonopy_born_symmetry_expansion(tmp_path):
    pytest.importorskip("spglib")
    from ase.spacegroup import crystal
    at = crystal(["Ti", "O"], basis=[(0, 0, 0), (0.3, 0.3, 0)], spacegroup=136,
                 cellpar=[4.6, 4.6, 2.95, 90, 90, 90])
    z_ti = np.diag([6.0, 6.0, 7.0]) + np.array([[0, 0.5, 0], [0.5, 0, 0], [0, 0, 0]])
    z_o = -np.diag([3.0, 3.0, 3.5]) - np.array([[0, 0.25, 0], [0.25, 0, 0], [0, 0, 0]])
    path = tmp_path / "BORN"
    path.write_text("\n".join(" ".join(map(str, m.ravel())) for m in (np.eye(3), z_ti, z_o)))
    bec = keys.bec_of(read_phonopy_born(path, at))
    assert np.allclose(bec.sum(axis=0), 0, atol=1e-10)  # ASR holds after the expansion
    assert np.allclose(np.trace(bec, axis1=1, axis2=2), [19.0] * 2 + [-9.5] * 4)


# -- real data -------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 60])
def test_outcar_agrees_with_extxyz(shared_data, n):
    folder = shared_data / "zro2-pbesol"
    outcar = read_frames(folder / "outcar" / f"OUTCAR.{n}")
    assert len(outcar) == 1
    o = outcar[0]
    ref = [f for f in read_frames(folder / "ZrO2_BEC.extxyz")
           if f.info["source_outcar"] == f"OUTCAR.{n}"]
    assert len(ref) == 1
    x = ref[0]
    assert o.get_chemical_symbols() == x.get_chemical_symbols()
    assert np.allclose(o.positions, x.positions, atol=1e-6)
    assert np.allclose(o.cell.array, x.cell.array, atol=1e-6)
    assert np.allclose(keys.bec_of(o), keys.bec_of(x), atol=6e-6, rtol=0)
    assert np.allclose(o.arrays["forces"], x.arrays["forces"], atol=1e-6)
    assert o.info["energy"] == pytest.approx(x.info["energy"], abs=1e-8)
    assert np.allclose(o.info["epsilon_inf"], x.info["epsilon_inf"], atol=1e-6)
    # a non-symmetric check that the orientation is right: VASP rows = field direction
    if n == 2:
        assert keys.bec_of(o)[0, 0, 2] == pytest.approx(0.32103)
        assert keys.bec_of(o)[0, 2, 0] == pytest.approx(0.39087)
    if n == 1:
        zr = keys.bec_of(o)[np.array(o.get_chemical_symbols()) == "Zr"]
        assert np.allclose(zr, np.diag([5.72, 5.72, 4.98]), atol=0.005)


def test_outcar_truncated_bec_block(shared_data, tmp_path):
    text = (shared_data / "zro2-pbesol" / "outcar" / "OUTCAR.1").read_text()
    cut = text.index("BORN EFFECTIVE CHARGES (including local")
    path = tmp_path / "OUTCAR.cut"
    path.write_text(text[:cut + 2000])
    with pytest.raises(BornDataError) as exc:
        read_frames(path)
    assert_error(exc, path, 0, "BORN EFFECTIVE CHARGES")


def _asr(frames):
    return max(np.abs(keys.bec_of(f).sum(axis=0)).max() for f in frames)


def test_real_water(shared_data):
    frames = read_frames(shared_data / "water-rpbe" / "H2O_BEC.extxyz")
    assert len(frames) == 100 and all(len(f) == 192 for f in frames)
    assert _asr(frames) <= 2e-4
    z = np.concatenate([keys.bec_of(f) for f in frames])
    num = np.concatenate([f.numbers for f in frames])
    tr = np.trace(z, axis1=1, axis2=2) / 3
    assert tr[num == 1].mean() == pytest.approx(0.451, abs=0.002)
    assert tr[num == 8].mean() == pytest.approx(-0.903, abs=0.002)
    assert frames[0].arrays["forces"].shape == (192, 3) and "energy" in frames[0].info


def test_real_zro2_and_quartz(shared_data):
    zro2 = read_frames(shared_data / "zro2-pbesol" / "ZrO2_BEC.extxyz")
    assert len(zro2) == 119 and _asr(zro2) <= 5e-4
    assert zro2[0].info["epsilon_inf"].shape == (3, 3)
    quartz = read_frames(shared_data / "sio2-quartz" / "SiO2.xyz")
    assert len(quartz) == 201 and _asr(quartz) <= 1e-8
    assert quartz[0].info["polarization"].shape == (3,)


def test_real_crystals(shared_data):
    frames = read_frames(shared_data / "crystals" / "phonon_becs_epsilon.xyz")
    assert len(frames) == 1520
    assert all(keys.bec_of(f).shape == (len(f), 3, 3) for f in frames)
    assert all(f.info["epsilon_inf"].shape == (3, 3) for f in frames)
    assert _asr(frames) <= 1e-6


def test_outputs_respect_the_umask(tmp_path):
    """Atomic outputs get 0666 minus the umask (a temporary file would keep 0600)."""
    import os

    from bornml.fileutils import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644
