"""Quantum ESPRESSO: ph.x output, text and XML dynamical-matrix files, q2r.x ``.fc`` files.

Each reader returns one frame (the Γ point carries Z*): ``arrays["bec"]`` (n, 3, 3) e in the
project layout, ``info["epsilon_inf"]`` (3, 3) where printed, positions and cell in Å
(QE lengths are in bohr × alat; 1 bohr = 0.529177210903 Å).

Orientation (from QE source, SOURCES.md; how each block is written on the page):

* ph.x "Effective charges (d Force / dE)": rows labelled ``Ex Ey Ez`` (``E*x`` with ASR),
  data ``zstareu(E, u, atom)`` → Z[F,u], ``"P-r"``. "(d P / du)": rows ``Px Py Pz``,
  Z[F,u], ``"P-r"``. The two blocks are independent linear-response results (electric-field
  perturbation vs phonon perturbation) of one run.
* text dyn "Effective Charges E-U": rows = E, ``"P-r"``; "Effective Charges U-E": rows = u,
  ``"r-P"`` (transposed on reading).
* XML dyn ``<Z_AT_.n>``: Fortran column-major dump of zstareu(:, :, n), each printed line is
  one displacement direction → ``"r-P"``.
* q2r ``.fc``: the 3×3 per atom after the ``T`` flag is written like the dyn E-U block,
  ``"P-r"`` (assumed: its tensors in the sample are diagonal).

What pins it (tests/test_format_readers.py): the dF/dE and dP/du blocks of one ph.out agree;
the E-U and U-E blocks of one dyn file agree only with the transpose of U-E; ph.out, dyn, XML
dyn and .fc agree with each other. Every sample tensor is symmetric by site symmetry, and
symmetry / the acoustic sum rule hold for Z and Zᵀ alike, so the Z[F,u] order of the labelled
blocks themselves rests on the labels and QE source, not on a physical check.

ph.x output: by default the block *without* the acoustic sum rule (``block="dFdE"``, what the
response calculation gives); ``"dFdE-asr"`` the ASR-corrected one printed by QE ≥ 7
(q2r/dyn files of 7.x carry that one), ``"dPdu"`` the d P/du block (``zue=.true.``). The
structure: ``structure=`` (``ase.Atoms`` or a file ASE reads), else a pw.x input/output in the
same folder whose species and positions match the ph.x header (the longest common name prefix
first), else the ph.x header itself (cell from ibrav/celldm where supported, positions to
1e-5 alat).
"""

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from .. import keys
from ..errors import BornDataError
from ._common import BOHR, FLOAT, finish, floats, lines_of, rows, set_bec

PH_BLOCKS = {"dFdE": "Effective charges (d Force / dE) in cartesian axis",
             "dFdE-asr": "Effective charges (d Force / dE) in cartesian axis with asr applied",
             "dPdu": "Effective charges (d P / du) in cartesian axis"}
_EPS_PH = "Dielectric constant in cartesian axis"


def latgen(ibrav, celldm):
    """Lattice vectors (rows, in units of alat) of QE's ``ibrav`` for ``celldm`` (6,)."""
    b, c = celldm[1], celldm[2]
    r3 = np.sqrt(3.0)
    table = {1: [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
             2: [[-.5, 0, .5], [0, .5, .5], [-.5, .5, 0]],
             3: [[.5, .5, .5], [-.5, .5, .5], [-.5, -.5, .5]],
             -3: [[-.5, .5, .5], [.5, -.5, .5], [.5, .5, -.5]],
             4: [[1, 0, 0], [-.5, r3 / 2, 0], [0, 0, c]],
             6: [[1, 0, 0], [0, 1, 0], [0, 0, c]],
             8: [[1, 0, 0], [0, b, 0], [0, 0, c]]}
    if ibrav not in table:
        return None
    return np.array(table[ibrav], dtype=float)


def _atom_blocks(lines, start, n, path, key, label=r"atom\s*#?\s*(\d+)"):
    """After ``start``: for atoms 1..n a line matching ``label`` then 3 rows → (n, 3, 3)."""
    out, i, pat = np.empty((n, 3, 3)), start, re.compile(r"^\s*" + label)
    for j in range(n):
        while i < len(lines) and not lines[i].strip():
            i += 1
        m = pat.match(lines[i]) if i < len(lines) else None
        if not m or int(m.group(1)) != j + 1:
            got = lines[i].strip()[:40] if i < len(lines) else "end of file"
            raise BornDataError(f"expected atom {j + 1}, got {got!r}", path=path, frame=0,
                                key=key)
        out[j] = rows(lines, i + 1, 3, path, 0, key)
        i += 4
    return out


def _nonblank(lines, i, count):
    """Index of the first of ``count`` lines after ``i`` skipping blank ones (they are
    consecutive in QE's output)."""
    i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i


# -- ph.x output ---------------------------------------------------------------------------

def _ph_header(lines, path):
    """Structure printed by ph.x (first q point): Atoms in Å."""
    text = "\n".join(lines[:2000])
    m = re.search(rf"lattice parameter \(alat\)\s*=\s*({FLOAT})", text)
    if not m:
        raise BornDataError("no 'lattice parameter (alat)' in the ph.x header", path=path,
                            frame=0, key="alat")
    alat = float(m.group(1)) * BOHR
    ib = re.search(r"bravais-lattice index\s*=\s*(-?\d+)", text)
    cd = re.findall(rf"celldm\(\d\)=\s*({FLOAT})", text)[:6]
    cell = None
    if ib and len(cd) == 6 and int(ib.group(1)) != 0:
        celldm = [float(x) for x in cd]
        cell = latgen(int(ib.group(1)), celldm)
        alat = celldm[0] * BOHR if cell is not None else alat
    if cell is None:
        ax = re.findall(rf"a\(\d\) = \(\s*({FLOAT})\s+({FLOAT})\s+({FLOAT})\s*\)", text)[:3]
        if len(ax) < 3:
            raise BornDataError("no crystal axes in the ph.x header", path=path, frame=0,
                                key="crystal axes")
        cell = np.array(ax, dtype=float)
    sites = re.findall(rf"^\s*\d+\s+(\S+)\s+{FLOAT}\s+tau\(\s*\d+\)\s*=\s*\(\s*({FLOAT})\s+"
                       rf"({FLOAT})\s+({FLOAT})", text, flags=re.MULTILINE)
    nat = re.search(r"number of atoms/cell\s*=\s*(\d+)", text)
    if not sites or (nat and len(sites) < int(nat.group(1))):
        raise BornDataError("no atomic positions in the ph.x header", path=path, frame=0,
                            key="tau")
    sites = sites[:int(nat.group(1))] if nat else sites
    symbols = [re.match(r"[A-Za-z]+", s[0]).group(0).capitalize()[:2] for s in sites]
    symbols = [s if s in ase.data.atomic_numbers else s[:1] for s in symbols]
    pos = np.array([s[1:] for s in sites], dtype=float) * alat
    return Atoms(symbols=symbols, positions=pos, cell=cell * alat, pbc=True)


def _same_structure(a, b, tol=2e-3):
    if len(a) != len(b) or list(a.numbers) != list(b.numbers):
        return False
    if np.abs(a.cell.array - b.cell.array).max() > tol:
        return False
    d = np.linalg.solve(a.cell.array.T, (a.positions - b.positions).T).T
    return np.abs((d - np.round(d)) @ a.cell.array).max() < tol


def _pw_neighbour(path, header):
    """A pw.x input/output next to ``path`` with the structure of ``header``, or None."""
    def prefix(p):
        return len(os.path.commonprefix([p.name, path.name]))

    for cand in sorted(path.parent.iterdir(), key=lambda p: (-prefix(p), p.name)):
        if cand == path or not cand.is_file() or cand.stat().st_size > 50_000_000:
            continue
        try:
            with open(cand, errors="replace") as fh:
                head = fh.read(20000)
        except OSError:
            continue
        fmt = ("espresso-out" if "Program PWSCF" in head
               else "espresso-in" if re.search(r"&system", head, re.IGNORECASE) else None)
        if fmt is None:
            continue
        try:
            atoms = ase.io.read(str(cand), index=-1 if fmt == "espresso-out" else 0,
                                format=fmt)
        except Exception:  # noqa: BLE001, S112 -- ibrav != 0 inputs etc.: try the next file
            continue
        if _same_structure(atoms, header):
            atoms.calc = None
            return Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True)
    return None


def _structure(structure, path):
    if isinstance(structure, Atoms):
        return structure.copy()
    try:
        return ase.io.read(str(structure), index=-1)
    except Exception as err:
        raise BornDataError(f"cannot read the structure {structure!s}: {err}", path=path,
                            frame=0, key="structure") from err


def _ph_block(lines, title, n, path):
    """Last block whose header line is ``title`` (not its with-asr variant): (n, 3, 3)."""
    heads = [i for i, ln in enumerate(lines) if ln.strip().startswith(title)
             and (title.endswith("applied") or "with asr applied" not in ln)]
    if not heads:
        return None
    return _atom_blocks(lines, heads[-1] + 1, n, path, title,
                        label=r"atom\s+(\d+)")


def read_ph_out(path, layout=keys.LAYOUT_AUTO, require_bec=True, structure=None, block="dFdE"):
    """ph.x output → [frame] with Z* of ``block`` (see the module docstring)."""
    path = Path(path)
    lines = lines_of(path)
    if block not in PH_BLOCKS:
        raise BornDataError(f"unknown block {block!r}; use one of {sorted(PH_BLOCKS)}",
                            path=path, key="block")
    header = _ph_header(lines, path)
    if structure is not None:
        atoms = _structure(structure, path)
        if list(atoms.numbers) != list(header.numbers):
            raise BornDataError(f"structure {atoms.get_chemical_formula()} does not match "
                                f"the ph.x atoms {header.get_chemical_formula()}", path=path,
                                frame=0, key="structure")
    else:
        atoms = _pw_neighbour(path, header) or header
    z = _ph_block(lines, PH_BLOCKS[block], len(atoms), path)
    if z is None and require_bec:
        raise BornDataError(f"no {PH_BLOCKS[block]!r} block (ph.x with epsil=.true. at Γ"
                            f"{', zue=.true.' if block == 'dPdu' else ''})", path=path,
                            frame=0, key=PH_BLOCKS[block])
    if z is not None:
        set_bec(atoms, z, path, 0, PH_BLOCKS[block], keys.LAYOUT_P_R, layout)
    eps = [i for i, ln in enumerate(lines) if ln.strip().startswith(_EPS_PH)]
    epsilon = (rows(lines, _nonblank(lines, eps[-1], 3), 3, path, 0, _EPS_PH) if eps
               else None)
    return [finish(atoms, path, 0, epsilon)]


# -- text dynamical matrix and q2r force constants ------------------------------------------

def _dyn_header(lines, path, start, basis_label):
    """Structure of a dyn/fc header at ``start``; returns (Atoms, index of the next line)."""
    key = "header"
    head = lines[start].split() if start < len(lines) else []
    try:
        ntyp, nat, ibrav = (int(x) for x in head[:3])
        celldm = [float(x) for x in head[3:9]]
    except (ValueError, IndexError):
        raise BornDataError(f"expected 'ntyp nat ibrav celldm(1:6)', got "
                            f"{' '.join(head)[:60]!r}", path=path, frame=0, key=key) from None
    i = start + 1
    if ibrav == 0:
        if basis_label and lines[i].strip().lower().startswith("basis"):
            i += 1
        cell = rows(lines, i, 3, path, 0, "basis vectors")
        i += 3
    else:
        cell = latgen(ibrav, celldm)
        if cell is None:
            raise BornDataError(f"ibrav={ibrav} is not supported (1, 2, 3, -3, 4, 6, 8, or 0 "
                                "with basis vectors)", path=path, frame=0, key="ibrav")
    names = {}
    for ln in lines[i:i + ntyp]:
        m = re.match(r"\s*(\d+)\s+'([^']*)'", ln)
        if not m:
            raise BornDataError(f"expected a species line, got {ln.strip()[:40]!r}",
                                path=path, frame=0, key="species")
        names[int(m.group(1))] = m.group(2).strip()
    i += ntyp
    types, pos = [], []
    for ln in lines[i:i + nat]:
        parts = ln.split()
        if len(parts) < 5:
            raise BornDataError(f"expected an atom line, got {ln.strip()[:40]!r}", path=path,
                                frame=0, key="atoms")
        types.append(int(parts[1]))
        pos.append([float(x) for x in parts[2:5]])
    symbols = [re.match(r"[A-Za-z]+", names[t]).group(0).capitalize()[:2] for t in types]
    symbols = [s if s in ase.data.atomic_numbers else s[:1] for s in symbols]
    alat = celldm[0] * BOHR
    atoms = Atoms(symbols=symbols, positions=np.array(pos) * alat, cell=cell * alat, pbc=True)
    return atoms, i + nat


DYN_BLOCKS = {"E-U": ("Effective Charges E-U", keys.LAYOUT_P_R),
              "U-E": ("Effective Charges U-E", keys.LAYOUT_R_P)}


def read_qe_dyn(path, layout=keys.LAYOUT_AUTO, require_bec=True, block="E-U"):
    """Text dyn file (``*.dyn*``, ``dynG``) → [frame]; ``block`` ``"E-U"`` or ``"U-E"``."""
    path = Path(path)
    lines = lines_of(path)
    if block not in DYN_BLOCKS:
        raise BornDataError(f"unknown block {block!r}; use 'E-U' or 'U-E'", path=path,
                            key="block")
    atoms, _ = _dyn_header(lines, path, 2, basis_label=True)
    title, stored = DYN_BLOCKS[block]
    heads = [i for i, ln in enumerate(lines) if ln.strip().startswith(title)]
    if heads:
        z = _atom_blocks(lines, heads[0] + 1, len(atoms), path, title)
        set_bec(atoms, z, path, 0, title, stored, layout)
    elif require_bec:
        raise BornDataError(f"no {title!r} block (a Γ dyn file of a run with epsil=.true.)",
                            path=path, frame=0, key=title)
    eps = [i for i, ln in enumerate(lines) if ln.strip().startswith("Dielectric Tensor")]
    epsilon = rows(lines, _nonblank(lines, eps[0], 3), 3, path, 0, "Dielectric Tensor") \
        if eps else None
    return [finish(atoms, path, 0, epsilon)]


def read_q2r_fc(path, layout=keys.LAYOUT_AUTO, require_bec=True):
    """q2r.x force-constant file → [frame] with ε∞ and Z* when the flag after the header
    is ``T``."""
    path = Path(path)
    lines = lines_of(path)
    atoms, i = _dyn_header(lines, path, 0, basis_label=False)
    flag = lines[i].split()[:1] if i < len(lines) else []
    if flag == ["T"]:
        epsilon = rows(lines, i + 1, 3, path, 0, "epsilon")
        z = _atom_blocks(lines, i + 4, len(atoms), path, "zeu", label=r"(\d+)\s*$")
        set_bec(atoms, z, path, 0, "zeu", keys.LAYOUT_P_R, layout)
        return [finish(atoms, path, 0, epsilon)]
    if require_bec:
        raise BornDataError("no effective charges (the flag after the header is not T)",
                            path=path, frame=0, key="zeu")
    return [finish(atoms, path, 0)]


# -- XML dynamical matrix ------------------------------------------------------------------

def _xml_numbers(node, name, path, size):
    item = node.find(f".//{name}")
    if item is None:
        return None
    vals = floats(item.text or "", path, 0, name)
    if vals.size != size:
        raise BornDataError(f"{vals.size} numbers, expected {size}", path=path, frame=0,
                            key=name)
    return vals


def read_qe_dyn_xml(path, layout=keys.LAYOUT_AUTO, require_bec=True):
    """XML dyn file (``*.dyn*.xml``) → [frame]."""
    path = Path(path)
    if not path.is_file():
        raise BornDataError("file not found", path=path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise BornDataError(f"unparsable XML: {err}", path=path) from err
    geo = root.find("GEOMETRY_INFO")
    if geo is None:
        raise BornDataError("no <GEOMETRY_INFO>", path=path, frame=0, key="GEOMETRY_INFO")
    nat = int(_xml_numbers(geo, "NUMBER_OF_ATOMS", path, 1)[0])
    alat = _xml_numbers(geo, "CELL_DIMENSIONS", path, 6)[0] * BOHR
    cell = _xml_numbers(geo, "AT", path, 9).reshape(3, 3)  # printed line k = a_k
    symbols, pos = [], []
    for j in range(nat):
        atom = geo.find(f"ATOM.{j + 1}")
        if atom is None:
            raise BornDataError(f"no <ATOM.{j + 1}>", path=path, frame=0, key="ATOM")
        name = re.match(r"[A-Za-z]+", atom.get("SPECIES").strip()).group(0).capitalize()[:2]
        symbols.append(name if name in ase.data.atomic_numbers else name[:1])
        pos.append(floats(atom.get("TAU"), path, 0, "TAU", 3))
    atoms = Atoms(symbols=symbols, positions=np.array(pos) * alat, cell=cell * alat, pbc=True)
    diel = root.find("DIELECTRIC_PROPERTIES")
    eps = _xml_numbers(diel, "EPSILON", path, 9) if diel is not None else None
    zs = [_xml_numbers(diel, f"Z_AT_.{j + 1}", path, 9) if diel is not None else None
          for j in range(nat)]
    if all(z is not None for z in zs):
        set_bec(atoms, np.array(zs).reshape(nat, 3, 3), path, 0, "Z_AT_", keys.LAYOUT_R_P,
                layout)
    elif require_bec:
        raise BornDataError("no <ZSTAR><Z_AT_.n> for every atom", path=path, frame=0,
                            key="Z_AT_")
    # EPSILON is dumped column-major too: transpose back to [row][column]
    return [finish(atoms, path, 0, None if eps is None else eps.reshape(3, 3).T)]


# -- detection -------------------------------------------------------------------------------

FORMATS = {"qe-ph": read_ph_out, "qe-dyn": read_qe_dyn, "qe-dyn-xml": read_qe_dyn_xml,
           "qe-fc": read_q2r_fc}
ALIASES = {"ph": "qe-ph", "ph.x": "qe-ph", "espresso-ph": "qe-ph", "dyn": "qe-dyn",
           "dyn-xml": "qe-dyn-xml", "q2r": "qe-fc", "fc": "qe-fc"}


def guess_format(path, head):
    """Format name for a file whose first characters are ``head``, or None."""
    first = head.lstrip().splitlines()[0].strip() if head.strip() else ""
    if "Program PHONON" in head[:3000]:
        return "qe-ph"
    if first == "Dynamical matrix file":
        return "qe-dyn"
    if "<GEOMETRY_INFO>" in head and ("<DIELECTRIC_PROPERTIES>" in head or
                                      "<DYNAMICAL_MAT_" in head):
        return "qe-dyn-xml"
    if re.fullmatch(rf"\d+\s+\d+\s+-?\d+(\s+{FLOAT}){{6}}", first):
        return "qe-fc"
    return None
