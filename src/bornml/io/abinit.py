"""ABINIT: text DDB files (also ``.bz2``) and anaddb main output (``.abo``).

**DDB** (derivative database). The header gives ``natom``, ``acell`` and ``rprim`` (bohr; each
printed line of ``rprim`` is one lattice vector, scaled by ``acell``), ``xred``, ``typat``,
``znucl`` and ``zion``. The Γ block(s) (``qpt 0 0 0``) hold second derivatives of the energy
``idir1 ipert1 idir2 ipert2 Re Im`` in reduced coordinates (Ha), with ``ipert = natom + 2``
the electric field. The index attached to the field is labelled on every line, so the
orientation needs no assumption. Converted to Cartesian, for atom κ:

    Z[κ]_{F=d, u=c} = zion_κ δ_cd + Σ_ij G_ci R_dj D(u_i κ, E_j) / 2π
    ε∞_{cd} = δ_cd − (4π/Ω) Σ_ij R_ci R_dj D(E_i, E_j) / (2π)²

with ``R`` = rprimd (columns a_j, bohr), ``G`` = gprimd (columns b_i, ``b_i·a_j = δ_ij``),
Ω the cell volume (bohr³). Lines with the atom first (``ipert1 = κ``, ``ipert2 = natom+2``)
are used, as anaddb does; the mirrored lines are the fallback. Z is returned as computed
(no charge-neutrality correction); the residual ``Σ_κ Z_κ`` is what anaddb's ``chneut``
spreads over the atoms.

**anaddb output**. "Effective charge tensors after imposition of the charge neutrality": rows
``atom displacement-direction`` with the three field directions as columns, i.e. Z[u,F]
(``"r-P"``, transposed on reading; ABINIT source, SOURCES.md). The output has no structure:
pass ``structure=`` (``ase.Atoms`` or a file), else a DDB next to it with the same number of
atoms is used. Pinned by the tests: DDB and anaddb agree after the neutrality correction
(AlAs), and the charge-neutral DDB quartz tensors carry the antisymmetric part of the VASP
quartz ones (chirality-invariant comparison).
"""

import re
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from .. import keys
from ..errors import BornDataError
from ._common import BOHR, finish, floats, lines_of, rows, set_bec

_HEADER_END = ("Description of the potentials", "**** Database",
               "No information on the potentials")


def _ddb_header(lines, path):
    """Header variables of a DDB: dict name → float array."""
    start = next((i for i, ln in enumerate(lines) if re.match(r"\s+(usepaw|natom)\s", ln)),
                 None)
    if start is None:
        raise BornDataError("no DDB header (natom)", path=path, frame=0, key="natom")
    out, name = {}, None
    for ln in lines[start:]:
        if any(ln.strip().startswith(h) for h in _HEADER_END):
            break
        for tok in ln.split():
            if re.match(r"[A-Za-z_]\w*$", tok):
                name = tok
                out[name] = []
            elif name is not None:
                try:
                    out[name].append(float(tok.replace("D", "E").replace("d", "e")))
                except ValueError:
                    pass
    need = ("natom", "acell", "rprim", "xred", "typat", "znucl", "zion")
    missing = [k for k in need if not out.get(k)]
    if missing:
        raise BornDataError(f"DDB header lacks {missing}", path=path, frame=0, key=missing[0])
    return {k: np.array(v) for k, v in out.items()}


def _ddb_structure(head):
    n = int(head["natom"][0])
    rprimd = head["rprim"][:9].reshape(3, 3) * head["acell"][:3][:, None]  # rows a_j, bohr
    types = head["typat"][:n].astype(int)
    numbers = np.rint(head["znucl"][types - 1]).astype(int)
    atoms = Atoms(numbers=numbers, cell=rprimd * BOHR, pbc=True,
                  scaled_positions=head["xred"][:3 * n].reshape(n, 3))
    return atoms, rprimd, head["zion"][types - 1]


def _gamma_entries(lines, path):
    """All entries of the q = 0 blocks: dict (i1, p1, i2, p2) → real part."""
    entries = {}
    for k, ln in enumerate(lines):
        if ln.strip().startswith("List of bloks"):  # the index at the end has no entries
            break
        if not ln.strip().startswith("2nd derivatives"):
            continue
        m = re.search(r"elements\s*:\s*(\d+)", ln)
        q = floats(lines[k + 1].replace("qpt", ""), path, 0, "qpt") if k + 1 < len(lines) \
            else np.ones(4)
        if not m or q.size < 3 or np.abs(q[:3]).max() > 1e-10:
            continue
        for row in lines[k + 2:k + 2 + int(m.group(1))]:
            parts = row.split()
            if len(parts) < 6:
                raise BornDataError(f"truncated DDB block: {row.strip()[:60]!r}", path=path,
                                    frame=0, key="2nd derivatives")
            idx = tuple(int(x) for x in parts[:4])
            entries[idx] = float(parts[4].replace("D", "E"))
    return entries


def read_ddb(path, layout=keys.LAYOUT_AUTO, require_bec=True):
    """DDB → [frame] with Z* and ε∞ from the Γ electric-field derivatives."""
    path = Path(path)
    lines = lines_of(path)
    head = _ddb_header(lines, path)
    atoms, rprimd, zion = _ddb_structure(head)
    n, efield = len(atoms), len(atoms) + 2
    d = _gamma_entries(lines, path)
    R = rprimd.T  # columns a_j
    G = np.linalg.inv(rprimd)  # columns b_i: b_i . a_j = delta_ij

    def red(i, p, j, q):
        return d.get((i, p, j, q), d.get((j, q, i, p)))

    zred = np.array([[[red(i, k + 1, j, efield) for j in (1, 2, 3)] for i in (1, 2, 3)]
                     for k in range(n)], dtype=object)
    if any(v is None for v in zred.ravel()):
        if require_bec:
            raise BornDataError("no Γ electric-field / displacement derivatives (ipert = "
                                f"natom+2 = {efield}) for every atom", path=path, frame=0,
                                key="2nd derivatives")
        return [finish(atoms, path, 0)]
    zred = zred.astype(float)  # [atom, u_i, E_j]
    zcart = np.einsum("ci,kij,dj->kcd", G, zred, R) / (2 * np.pi)  # [atom, u_c, E_d]
    zcart += zion[:, None, None] * np.eye(3)
    set_bec(atoms, zcart, path, 0, "2nd derivatives", keys.LAYOUT_R_P, layout)
    ered = [[red(i, efield, j, efield) for j in (1, 2, 3)] for i in (1, 2, 3)]
    eps = None
    if all(v is not None for r in ered for v in r):
        ecart = R @ np.array(ered, dtype=float) @ R.T / (2 * np.pi) ** 2
        eps = np.eye(3) - 4 * np.pi / abs(np.linalg.det(rprimd)) * ecart
    return [finish(atoms, path, 0, eps)]


_ANADDB_Z = "Effective charge tensors after"


def read_anaddb(path, layout=keys.LAYOUT_AUTO, require_bec=True, structure=None):
    """anaddb main output → [frame]; structure from ``structure=`` or a DDB next to it."""
    path = Path(path)
    lines = lines_of(path)
    heads = [i for i, ln in enumerate(lines) if ln.strip().startswith(_ANADDB_Z)]
    if not heads:
        raise BornDataError(f"no {_ANADDB_Z!r} block (anaddb with dieflag/chneut)", path=path,
                            frame=0, key=_ANADDB_Z)
    i = heads[-1] + 1
    while i < len(lines) and not re.match(r"\s*\d+\s+\d+\s+\S+\s+\S+\s+\S+\s*$", lines[i]):
        i += 1
    table = []
    while i < len(lines) and re.match(r"\s*\d+\s+\d+\s+\S+\s+\S+\s+\S+\s*$", lines[i]):
        table.append(lines[i])
        i += 1
    if not table or len(table) % 3:
        raise BornDataError(f"{len(table)} rows, expected 3 per atom", path=path, frame=0,
                            key=_ANADDB_Z)
    z = rows(table, 0, len(table), path, 0, _ANADDB_Z).reshape(-1, 3, 3)
    atoms = _anaddb_structure(path, structure, len(z))
    set_bec(atoms, z, path, 0, _ANADDB_Z, keys.LAYOUT_R_P, layout)
    return [finish(atoms, path, 0)]


def _anaddb_structure(path, structure, n):
    if isinstance(structure, Atoms):
        atoms = structure.copy()
    elif structure is not None:
        try:
            atoms = ase.io.read(str(structure), index=-1)
        except Exception as err:
            raise BornDataError(f"cannot read the structure {structure!s}: {err}", path=path,
                                frame=0, key="structure") from err
    else:
        atoms = None
        for cand in sorted(path.parent.glob("*DDB*")):
            try:
                found, _, _ = _ddb_structure(_ddb_header(lines_of(cand), cand))
            except BornDataError:
                continue
            if len(found) == n:
                atoms = found
                break
        if atoms is None:
            raise BornDataError("anaddb output has no structure and no DDB with "
                                f"{n} atoms is next to it; pass structure=", path=path,
                                frame=0, key="structure")
    if len(atoms) != n:
        raise BornDataError(f"structure has {len(atoms)} atoms, the tensors {n}", path=path,
                            frame=0, key="structure")
    atoms.calc = None
    return atoms


FORMATS = {"abinit-ddb": read_ddb, "anaddb": read_anaddb}
ALIASES = {"ddb": "abinit-ddb", "abinit": "abinit-ddb", "abo": "anaddb",
           "anaddb-out": "anaddb"}


def guess_format(path, head):
    """``"abinit-ddb"``, ``"anaddb"`` or None from the first characters ``head``."""
    if "**** DERIVATIVE DATABASE ****" in head[:400]:
        return "abinit-ddb"
    if "of ANADDB" in head[:400]:
        return "anaddb"
    return None
