"""Readers of periodic DFT outputs (VASP vasprun/OUTCAR, QE, CASTEP, ABINIT) and many-file
reading. The orientation of each format is pinned by physics or by independent outputs of one
calculation, never by a file derived from the same printout; the real samples live in
``../shared/data/formats`` (tests skip without it), the synthetic files are written here."""

import re
import shutil

import numpy as np
import pytest

from bornml import keys
from bornml.errors import BornDataError
from bornml.io import read_frames
from bornml.io.abinit import read_anaddb, read_ddb
from bornml.io.quantum_espresso import read_ph_out, read_qe_dyn
from bornml.io.readers import read_many


@pytest.fixture
def formats(shared_data):
    folder = shared_data / "formats"
    if not folder.is_dir():
        pytest.skip("shared/data/formats not found")
    return folder


def bec(frame):
    return keys.bec_of(frame)


def antisym(z):
    return (z - z.transpose(0, 2, 1)) / 2


def _rz(t):
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def align(a, b, tol=0.03):
    """Orthogonal Q (proper or improper) and atom map ``perm`` with Q·a ≈ b up to lattice
    strain and an origin shift: a ↦ b[perm]. Searches hexagonal-axis frames (c ∥ z)."""
    fb = b.get_scaled_positions()
    for k in range(12):
        for m in (np.eye(3), np.diag([1, 1, -1.]), np.diag([1, -1, 1.]), np.diag([1, -1, -1.])):
            q = _rz(k * np.pi / 6) @ m
            lat = a.cell.array @ q.T @ np.linalg.inv(b.cell.array)
            if np.abs(lat - np.round(lat)).max() > 0.05 or \
                    abs(abs(np.linalg.det(np.round(lat))) - 1) > 1e-6:
                continue
            fa = a.get_scaled_positions() @ np.round(lat)
            for j in range(len(b)):
                d = (fa + fb[j] - fa[0])[:, None, :] - fb[None, :, :]
                dist = np.abs(d - np.round(d)).max(axis=2)
                perm = dist.argmin(axis=1)
                if (dist.min(axis=1) < tol).all() and len(set(perm)) == len(b) \
                        and (a.numbers == b.numbers[perm]).all():
                    return q, perm
    raise AssertionError("structures do not match")


# -- VASP -----------------------------------------------------------------------------------

QUARTZ_VASP = "vasp/SiO2_alpha-quartz_LEPSILON_vasp6.4.1_displaced_vasprun.xml"
QUARTZ_DDB = "abinit/SiO2-quartz_mp-7000_DDB.bz2"


def test_vasprun_frame(formats):
    (f,) = read_frames(formats / "vasp" / "SnO2_rutile_LEPSILON_vasp5.4.4_vasprun.xml")
    assert f.get_chemical_formula() == "O4Sn2" and f.pbc.all()
    z = bec(f)
    assert z.dtype == np.float64 and z.shape == (6, 3, 3)
    assert np.abs(z.sum(axis=0)).max() < 1e-6  # acoustic sum rule
    assert z[0, 0, 1] == pytest.approx(0.47310022)  # row 1 = field x, as printed
    assert np.allclose(np.diag(f.info[keys.EPSILON_INF]), [4.42038879, 4.42038879, 4.77663396])
    assert f.arrays[keys.FORCES].shape == (6, 3)
    assert f.info[keys.ENERGY] == pytest.approx(-39.66658636)
    assert f.info[keys.SOURCE].endswith("vasprun.xml:0")


def test_vasprun_orientation_agrees_with_abinit_ddb(formats):
    """VASP's rows, read as field direction, carry the antisymmetric part of the α-quartz Z*
    that ABINIT computes from labelled (field, displacement) derivatives; the transpose
    flips it. The two structures are enantiomorphs in different frames: Q maps one onto the
    other (Z → Q Z Qᵀ holds for improper Q too, Z being polar × polar)."""
    (v,) = read_frames(formats / QUARTZ_VASP)
    (d,) = read_frames(formats / QUARTZ_DDB)
    q, perm = align(v, d)
    ref = bec(d)[perm]
    as_read = np.einsum("ab,jbc,dc->jad", q, bec(v), q)
    transposed = as_read.transpose(0, 2, 1)
    assert np.abs(antisym(ref)).max() > 0.25  # a tensor that can tell
    assert np.abs(antisym(as_read) - antisym(ref)).max() < 0.05
    assert np.abs(antisym(transposed) - antisym(ref)).max() > 0.5
    assert np.abs(as_read - ref).max() < 0.1  # PBE (VASP) vs PBEsol (ABINIT), other cell


def test_symmetry_cannot_tell_the_orientation(formats):
    """Documents why symmetry is no orientation test: Z_j = R Z_i Rᵀ holds for Zᵀ as well."""
    spglib = pytest.importorskip("spglib")
    (v,) = read_frames(formats / QUARTZ_VASP)
    lat, frac = v.cell.array, v.get_scaled_positions()
    ds = spglib.get_symmetry_dataset((lat, frac, v.numbers), symprec=1e-3)
    assert len(ds.rotations) == 6  # P3_x21
    errors = {False: 0.0, True: 0.0}
    for rot, trans in zip(ds.rotations, ds.translations):
        rc = lat.T @ rot @ np.linalg.inv(lat.T)
        image = frac @ rot.T + trans
        for i in range(len(v)):
            d = frac - image[i]
            j = int(np.argmin(np.abs(d - np.round(d)).max(axis=1)))
            for flip, worst in errors.items():
                z = bec(v).transpose(0, 2, 1) if flip else bec(v)
                errors[flip] = max(worst, np.abs(rc @ z[i] @ rc.T - z[j]).max())
    assert errors[False] < 1e-3 and errors[True] < 1e-3


def _two_step_outcar(shared_data, tmp_path):
    """OUTCAR.1 followed by the ionic step of OUTCAR.2 renumbered as step 2."""
    def split(name):
        lines = (shared_data / "zro2-pbesol" / "outcar" / name).read_text().splitlines(True)
        i = next(k for k, ln in enumerate(lines) if re.match(r"^\s*-+ Iteration +1\(", ln))
        return lines[:i], lines[i:]
    head, one = split("OUTCAR.1")
    _, two = split("OUTCAR.2")
    two = [re.sub(r"Iteration      1\(", "Iteration      2(", ln) for ln in two]
    path = tmp_path / "OUTCAR"
    path.write_text("".join(head + one + two))
    return path


def test_outcar_several_bec_blocks(shared_data, tmp_path):
    frames = read_frames(_two_step_outcar(shared_data, tmp_path))
    assert [f.info[keys.SOURCE].rsplit(":", 1)[1] for f in frames] == ["0", "1"]
    for f, n in zip(frames, (1, 2)):
        (ref,) = read_frames(shared_data / "zro2-pbesol" / "outcar" / f"OUTCAR.{n}")
        assert np.array_equal(bec(f), bec(ref))
        assert np.allclose(f.positions, ref.positions)
        assert f.info[keys.ENERGY] == ref.info[keys.ENERGY]
        assert np.array_equal(f.info[keys.EPSILON_INF], ref.info[keys.EPSILON_INF])


# -- many files -----------------------------------------------------------------------------

def test_read_many_list_folder_glob(shared_data, tmp_path):
    src = shared_data / "zro2-pbesol" / "outcar"
    for n in (1, 2):
        (tmp_path / f"run{n}").mkdir()
        shutil.copy(src / f"OUTCAR.{n}", tmp_path / f"run{n}" / "OUTCAR")
    (tmp_path / "run1" / "notes.txt").write_text("not data\n")
    by_glob = read_frames(str(tmp_path / "run*" / "OUTCAR"))
    by_list = read_many([tmp_path / "run1" / "OUTCAR", tmp_path / "run2" / "OUTCAR"])
    by_folder = read_frames(tmp_path / "run1") + read_frames(tmp_path / "run2")
    for frames in (by_glob, by_list, by_folder):
        assert [f.info[keys.SOURCE] for f in frames] == \
            [f"{tmp_path / f'run{n}' / 'OUTCAR'}:0" for n in (1, 2)]
    assert len(read_frames([tmp_path / "run1", tmp_path / "run2"], index="1:")) == 1
    with pytest.raises(BornDataError, match="matches no file"):
        read_frames(str(tmp_path / "nothing*"))


# -- Quantum ESPRESSO -----------------------------------------------------------------------

def test_ph_out_dfde_and_dpdu_agree(formats):
    """dF/dE (field perturbation) and dP/du (phonon perturbation) are independent responses
    of one run; they agree as read."""
    # CH4: only the H atoms (norm-conserving); C uses an ultrasoft pseudopotential, for which
    # the two printed blocks differ by 0.1 e in this test-suite run
    for name, atoms, tol in (("AlAs_qe6.0_example02_ph.out", slice(None), 5e-3),
                             ("CH4_molecule_qe7.3.1_test-suite_ph_1d_ph.out", slice(0, 4), 1e-5)):
        path = formats / "qe" / name
        (a,) = read_ph_out(path)
        (b,) = read_ph_out(path, block="dPdu")
        assert np.abs(bec(a)[atoms] - bec(b)[atoms]).max() < tol


def test_ph_out_structure_and_asr(formats):
    (f,) = read_frames(formats / "qe" / "NaCl_prim_qe7.5_ph.out")
    (asr,) = read_ph_out(formats / "qe" / "NaCl_prim_qe7.5_ph.out", block="dFdE-asr")
    # the printed "Effective charges Sum" of the unprojected block, and 0 after the ASR
    assert np.allclose(bec(f).sum(axis=0), -0.00381 * np.eye(3), atol=1e-5)
    assert np.abs(bec(asr).sum(axis=0)).max() < 1e-5
    assert f.cell.volume == pytest.approx(310.8440 * 0.529177210903 ** 3, rel=1e-5)
    assert f.get_chemical_symbols() == ["Na", "Cl"]
    assert f.info[keys.EPSILON_INF][0, 0] == pytest.approx(2.474410241)
    (conv,) = read_frames(formats / "qe" / "NaCl_conv8_qe5.4_ph.out")
    assert len(conv) == 8 and np.abs(bec(conv).sum(axis=0)).max() < 0.06  # as printed


def test_qe_outputs_of_one_system_agree(formats):
    """AlAs: ph.x output, text dyn (E-U and U-E), XML dyn; NaCl: q2r .fc vs ph.x (with ASR)."""
    qe = formats / "qe"
    (ph,) = read_frames(qe / "AlAs_qe6.0_example02_ph.out")
    (eu,) = read_frames(qe / "AlAs_GRID_recover_example_alas.dyn1")
    (ue,) = read_qe_dyn(qe / "AlAs_GRID_recover_example_alas.dyn1", block="U-E")
    (xml,) = read_frames(qe / "AlAs_GRID_example_alas.dyn1.xml")
    for other in (eu, ue, xml):
        assert np.abs(bec(other) - bec(ph)).max() < 6e-3
        assert np.allclose(other.positions, ph.positions, atol=1e-4)
        assert np.allclose(other.info[keys.EPSILON_INF], ph.info[keys.EPSILON_INF], atol=3e-3)
    assert np.abs(bec(xml) - bec(eu)).max() < 1e-9  # same run, two formats
    (fc,) = read_frames(qe / "NaCl_prim_qe7.5_q2r.fc")
    (asr,) = read_ph_out(qe / "NaCl_prim_qe7.5_ph.out", block="dFdE-asr")
    assert np.abs(bec(fc) - bec(asr)).max() < 1e-5
    assert np.allclose(fc.cell.array, asr.cell.array, atol=1e-5)


def test_2d_dyn_file(formats):
    (eu,) = read_frames(formats / "qe" / "BN_2D_example17_bn.disp.dyn1")
    (ue,) = read_qe_dyn(formats / "qe" / "BN_2D_example17_bn.disp.dyn1", block="U-E")
    assert np.abs(bec(eu) - bec(ue)).max() < 1e-2
    assert bec(eu)[0, 0, 0] == pytest.approx(2.71, abs=0.01)
    assert bec(eu)[0, 2, 2] == pytest.approx(0.24, abs=0.01)


DYN = """Dynamical matrix file
synthetic
  2    2  1 10.0000000  0.0000000  0.0000000  0.0000000  0.0000000  0.0000000
           1  'Na  '    20953.89
           2  'Cl  '    32313.43
    1    1      0.0000000000      0.0000000000      0.0000000000
    2    2      0.5000000000      0.5000000000      0.5000000000

     Dielectric Tensor:

          2.0 0.0 0.0
          0.0 2.0 0.0
          0.0 0.0 2.0

     Effective Charges E-U: Z_{{alpha}}{{s,beta}}

{eu}
     Effective Charges U-E: Z_{{s,alpha}}{{beta}}

{ue}
"""


def _dyn_blocks(z):
    return "\n".join(f"     atom #    {j + 1}\n" + "\n".join(" ".join(f"{x:18.12f}" for x in r)
                                                      for r in m) for j, m in enumerate(z))


def test_synthetic_dyn_reads_both_blocks_into_one_layout(tmp_path):
    """QE writes E-U as zstareu (rows = field) and U-E as its transpose; both give Z."""
    z = np.array([[[1.1, 0.2, 0.0], [-0.1, 1.1, 0.3], [0.0, 0.05, 1.2]]])
    z = np.concatenate([z, -z])
    path = tmp_path / "nacl.dyn1"
    path.write_text(DYN.format(eu=_dyn_blocks(z), ue=_dyn_blocks(z.transpose(0, 2, 1))))
    (eu,) = read_frames(path)
    (ue,) = read_qe_dyn(path, block="U-E")
    assert np.allclose(bec(eu), z) and np.allclose(bec(ue), z)
    assert eu.cell.lengths() == pytest.approx([5.29177210903] * 3)
    assert np.allclose(eu.info[keys.EPSILON_INF], 2 * np.eye(3))
    path.write_text(DYN.format(eu=_dyn_blocks(z)[:-40], ue=""))
    with pytest.raises(BornDataError, match="Effective Charges E-U"):
        read_frames(path)


# -- ABINIT ---------------------------------------------------------------------------------

def test_ddb_agrees_with_anaddb(formats):
    """anaddb (chneut=1) = DDB charges minus their mean residual per direction."""
    (d,) = read_frames(formats / "abinit" / "AlAs_trf2_3_DDB")
    (a,) = read_frames(formats / "abinit" / "AlAs_anaddb8.0.6_run.abo")
    z = bec(d)
    assert np.abs(z - z.mean(axis=0) - bec(a)).max() < 1e-6
    assert np.allclose(z.sum(axis=0), -0.022868 * np.eye(3), atol=1e-6)  # printed violation
    assert np.allclose(a.positions, d.positions)
    assert 9 < d.info[keys.EPSILON_INF][0, 0] < 11  # LDA AlAs at low cutoff


def test_ddb_quartz(formats):
    (d,) = read_ddb(formats / QUARTZ_DDB)
    assert d.get_chemical_formula() == "O6Si3"
    assert np.abs(bec(d).sum(axis=0)).max() < 3e-4
    (v,) = read_frames(formats / QUARTZ_VASP)
    assert np.allclose(np.diag(d.info[keys.EPSILON_INF]), np.diag(v.info[keys.EPSILON_INF]),
                       rtol=0.02)


def test_anaddb_needs_a_structure(formats, tmp_path):
    shutil.copy(formats / "abinit" / "AlAs_anaddb8.0.6_run.abo", tmp_path / "run.abo")
    with pytest.raises(BornDataError, match="structure"):
        read_frames(tmp_path / "run.abo")
    (d,) = read_frames(formats / "abinit" / "AlAs_trf2_3_DDB")
    (a,) = read_anaddb(tmp_path / "run.abo", structure=d)
    assert len(a) == 2


# -- CASTEP ---------------------------------------------------------------------------------

def test_castep(formats):
    """Sum rule enforced by CASTEP; orientation NOT pinned (all tensors diagonal)."""
    (f,) = read_frames(formats / "castep" / "BC2N-Pmm2_castep16.1_phonon_efield.castep")
    assert f.get_chemical_symbols() == ["B", "C", "C", "N"]
    assert np.abs(bec(f).sum(axis=0)).max() < 1e-4
    assert np.allclose(np.diag(bec(f)[0]), [1.10729, 1.29414, 1.34899])
    assert f.info[keys.ENERGY] == pytest.approx(-660.6805773779)


def test_cli_data_takes_several_paths(tmp_path):
    from bornml.cli import _refuse_overwriting_input, build_parser

    args = build_parser().parse_args(["evaluate", "m.npz", "run1/OUTCAR", "run2/OUTCAR"])
    assert args.data == ["run1/OUTCAR", "run2/OUTCAR"]
    args = build_parser().parse_args(["evaluate", "m.npz", "data.extxyz"])
    assert args.data == "data.extxyz"  # one path stays a path
    with pytest.raises(BornDataError, match="one of the input files"):
        _refuse_overwriting_input(tmp_path / "b", [tmp_path / "a", tmp_path / "b"])


def test_folder_and_list_read_synthetic_files(tmp_path):
    z = np.array([[[1.0, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    z = np.concatenate([z, -z])
    for name in ("a.dyn1", "b.dyn1"):
        (tmp_path / name).write_text(DYN.format(eu=_dyn_blocks(z), ue=""))
    (tmp_path / "README").write_text("notes\n")
    frames = read_frames(tmp_path)
    assert [f.info[keys.SOURCE] for f in frames] == [f"{tmp_path / n}:0"
                                                     for n in ("a.dyn1", "b.dyn1")]
    assert np.allclose(bec(frames[1]), z)
    assert len(read_frames([tmp_path / "a.dyn1", str(tmp_path / "*.dyn1")])) == 3


VASPRUN = """<?xml version="1.0" encoding="ISO-8859-1"?>
<modeling>
 <generator><i name="program" type="string">vasp </i></generator>
 <atominfo>
  <array name="atoms"><set>
    <rc><c>Na</c><c>   1</c></rc>
    <rc><c>Cl</c><c>   2</c></rc>
  </set></array>
 </atominfo>
 <calculation>
  <structure>
   <crystal><varray name="basis">
     <v> 4.0 0.0 0.0 </v><v> 0.0 4.0 0.0 </v><v> 0.0 0.0 4.0 </v>
   </varray></crystal>
   <varray name="positions"><v> 0.0 0.0 0.0 </v><v> 0.5 0.5 0.5 </v></varray>
  </structure>
  <varray name="forces"><v> 0.1 0.0 0.0 </v><v> -0.1 0.0 0.0 </v></varray>
  <energy><i name="e_fr_energy"> -7.5 </i><i name="e_0_energy"> -7.4 </i></energy>
  <varray name="epsilon"><v> 2.5 0 0 </v><v> 0 2.5 0 </v><v> 0 0 2.5 </v></varray>
  <array name="born_charges">{sets}</array>
 </calculation>
</modeling>
"""


def test_synthetic_vasprun(tmp_path):
    z = np.array([[[1.1, 0.2, 0.0], [-0.1, 1.1, 0.3], [0.0, 0.05, 1.2]]])
    z = np.concatenate([z, -z])
    sets = "".join("<set>" + "".join(f"<v> {r[0]} {r[1]} {r[2]} </v>" for r in m) + "</set>"
                   for m in z)
    path = tmp_path / "vasprun.xml"
    path.write_text(VASPRUN.format(sets=sets))
    (f,) = read_frames(path)
    assert np.allclose(bec(f), z)  # printed rows = field direction (layout "P-r")
    assert np.allclose(f.positions[1], [2, 2, 2])
    assert f.info[keys.ENERGY] == -7.5 and f.info[keys.EPSILON_INF][2, 2] == 2.5
    (t,) = read_frames(path, layout="r-P")
    assert np.allclose(bec(t), z.transpose(0, 2, 1))
    path.write_text(VASPRUN.format(sets=sets)[:-40])
    with pytest.raises(BornDataError, match="unparsable XML"):
        read_frames(path)
