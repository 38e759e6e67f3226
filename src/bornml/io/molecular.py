"""Readers for atomic polar tensors (APTs) of isolated molecules from quantum-chemistry codes.

The atomic polar tensor of a molecule is its Born effective charge. Each reader returns a list
with one ``ase.Atoms`` frame (``pbc=False``, no cell). The frame has positions in Å,
``arrays["bec"]`` (N, 3, 3) in e in the project convention ``Z[j, a, b] = dP_a / dr_{j b}``,
and ``info["bornml_source"] = "path:0"``. Where the file gives the molecular dipole next to the
tensor (Gaussian), it is stored as ``info["polarization"]`` (3,) in e·Å.

``layout``: ``"auto"`` uses the orientation found below. ``"P-r"`` / ``"r-P"`` say how to read
each atom's 3×3 block *in the order the file writes it*, as for VASP OUTCAR. For fchk, Gaussian
log, ORCA and GAMESS that order is row = displacement. For NWChem it is row = dipole
component, as the labels give it.

How the orientation was checked
-------------------------------
For an isolated neutral molecule the dipole rotates rigidly with the nuclei. This gives the
rotational sum rule ``M = Σ_j Z_j [r_j]_× = [μ]_×`` (``[v]_×`` is the cross-product matrix).
``M`` does not depend on the origin, because the acoustic sum rule (ASR) ``Σ_j Z_j = 0`` holds.
The symmetric part of ``M`` must therefore vanish. If a file is read the wrong way round, each
``Z_j`` becomes ``Z_jᵀ``. The ASR cannot see that error, but in general the rotational rule can.

The rule cannot see it when the molecule is centrosymmetric. Atoms related by inversion have
identical tensors, so ``M = (Σ_j Z_j)[r_c]_× = 0`` for either orientation (``r_c`` is the
centre of inversion). Divinylbenzene (C2h, all the DVB sample files) is such a case. The rule
also cannot see it when every tensor is symmetric by site symmetry, as in CH4 (Td). Measured on
the sample files in ``shared/data/formats``: ``|sym M|`` is the largest element of the
symmetric part, ``ASR`` is ``max |Σ_j Z_j|``, both in e or e·Å.

* **ORCA ``.hess``**. ``$atoms`` gives N, then lines of ``symbol mass x y z`` in bohr.
  ``$dipole_derivatives`` gives 3N, then 3N rows of 3 numbers in e (atomic units). Row
  ``3j+b`` is the displacement of atom j along b; the columns are μx, μy, μz. So each 3×3
  block is stored ``"r-P"`` and is transposed on reading. Pinned by the rotational rule on
  ``H2O_orca_asymm.hess`` (water in a general orientation, with non-symmetric H tensors).
  Read as ``"r-P"``: ``|sym M| = 1.2e-5``. Read as ``"P-r"``: ``2.5e-2`` (2100× larger).
  ASR ``1.8e-5``. The implied dipole is ``|μ| = 0.405 e·Å`` (1.95 D). It points along the
  bisector from O to the H atoms (cosine 1 − 4e-11), as it must for water. ``CH4_orca3.0.2.hess``
  (Td) cannot decide the orientation: ``|sym M|`` is 1.8e-3 as read and 1.2e-3 transposed,
  both noise. Its ASR is 1.5e-2 e, which is finite-difference noise on tensors of ≤ 0.12 e.
* **Gaussian ``.fchk``**. ``Atomic numbers`` (I, N) and ``Current cartesian coordinates``
  (R, 3N, bohr, standard orientation). ``Dipole Derivatives`` (R, 9N, e) holds, for each
  nuclear coordinate ``3j+b`` in turn, the three values ``dμx, dμy, dμz``. So each 9-value
  group is stored ``"r-P"``. ``Dipole Moment`` (R, 3, e·bohr) is optional. For the DVB sample,
  the rotational rule holds for both orientations to 3e-8 (centrosymmetric, see above), so it
  cannot decide. The orientation is pinned in two other ways. First, by the IR intensities
  Gaussian prints in ``Vib-E2``. The double-harmonic formula is
  ``I_k = N_A |Σ_j Z_j l_jk|² / (12 ε0 c² μ_k)``, with modes ``l`` from ``Vib-Modes`` and
  reduced masses ``μ_k`` from ``Vib-E2``. With the ``"r-P"`` reading, ``I_k / (|Σ_j Z_j
  l_jk|²/μ_k)`` equals the physical factor 974.880 km/mol per e²/amu
  (``units.IR_INTENSITY_E2_PER_AMU_TO_KM_PER_MOL``) to 2e-8 relative, for every bright mode.
  With the transpose the ratio scatters from 0.26 to 8300. Second, the same B3LYP/STO-3G
  molecule from NWChem and GAMESS, rotated onto the Gaussian geometry, agrees with this
  reading to max ``|ΔZ|`` = 2.1e-3 / 2.2e-3 e. Transposing one side gives 0.32 e.
* **Gaussian log** (``freq`` job). Only the archive entry at the end has the full tensor. It is
  ``DipoleDeriv=`` (9N numbers, same layout as the fchk, e) in the *input* orientation, with
  the geometry of the molecule-specification section (Å, same orientation) and ``Dipole=``
  (e·bohr). The printed "APT charges" are only traces/3. The orientation is the fchk's. The
  fchk and the log of the same job agree to 5e-8 e once rotated onto each other. Transposing
  one of them gives 0.32 e.
* **NWChem** frequency output. The block ``Derivative Dipole`` has lines
  ``d_dipole_a/<atom= j,b> = value(au) [value(debye/angstrom)]``. The labels name both
  indices, so ``Z[j,a,b]`` is read from them directly. The D/Å value is used, because it has
  ~5× more digits, and converted with ``units.DEBYE_PER_ANGSTROM_TO_E``. Without the
  bracket, the au value is used. The geometry is the ``Atom information`` block that follows
  (bohr, ``D`` exponents). Without that block, the last ``Output coordinates`` block before
  the tensor is used. DVB is centrosymmetric, so the rotational rule holds for both
  orientations. The labelled reading agrees with GAMESS (max ``|ΔZ|`` 4.3e-4 e) and with the
  pinned Gaussian reading (2.1e-3 e). The transpose differs from both by 0.32 e. The D/Å and
  au columns agree to within the au rounding (< 6e-5 e).
* **GAMESS-US** (``RUNTYP=HESSIAN``). The block ``DIPOLE DERIVATIVE TENSOR (DEBYE/ANGSTROM)``
  has, per atom, rows labelled ``D/DX D/DY D/DZ`` (displacement) and columns
  ``MU-X MU-Y MU-Z``. So each block is stored ``"r-P"``, in D/Å, converted to e. The
  geometry is the last ``COORDINATES (BOHR)`` block (or ``COORDINATES OF ALL ATOMS ARE
  (ANGS)``) before the tensor. For the DVB sample this is the NWChem geometry exactly, with
  ``(x, y)_GAMESS = (y, -x)_NWChem``. The rotated tensors agree with NWChem's to 4.3e-4 e,
  and with the Gaussian ones to 2.2e-3 e. The transpose gives 0.32 e. The labels and the
  cross-program agreement pin the orientation, because the rotational rule is blind for DVB.
  Both programs give ASR residuals below 1e-4 e.
"""

import re
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from .. import keys, units
from ..errors import BornDataError

__all__ = ["ALIASES", "FORMATS", "guess_format", "read_gamess_freq", "read_gaussian_fchk",
           "read_gaussian_log", "read_molecular", "read_nwchem_freq", "read_orca_hess"]

_FLOAT = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?"


# -- shared helpers ----------------------------------------------------------------------------

def _lines(path):
    path = Path(path)
    if not path.is_file():
        raise BornDataError("file not found", path=path)
    return path.read_text(errors="replace").splitlines()


def _num(text, path, key):
    try:
        return float(text.replace("D", "E").replace("d", "e"))
    except ValueError:
        raise BornDataError(f"not a number: {text[:40]!r}", path=path, frame=0,
                            key=key) from None


def _element(label, path, key):
    """Atomic number from a label such as ``C``, ``H1``, ``CL`` or ``O_w``."""
    letters = re.match(r"[A-Za-z]+", label.strip())
    for cand in ([letters.group(0)[:2].capitalize(), letters.group(0)[:1].upper()]
                 if letters else []):
        if cand in atomic_numbers:
            return atomic_numbers[cand]
    raise BornDataError(f"unknown element label {label!r}", path=path, frame=0, key=key)


def _frame(path, numbers, positions, block, stored, layout, key, info=None):
    """Build the frame. ``block`` (N, 3, 3) is in the file's order, ``stored`` its layout."""
    atoms = Atoms(numbers=numbers, positions=positions, pbc=False)
    if block is not None:
        block = np.asarray(block, dtype=np.float64)
        if block.shape != (len(atoms), 3, 3):
            raise BornDataError(f"{block.size} tensor elements for {len(atoms)} atoms "
                                f"(expected {9 * len(atoms)})", path=path, frame=0, key=key)
        if layout not in keys.LAYOUTS:
            raise BornDataError(f"unknown BEC layout {layout!r}; use one of {keys.LAYOUTS}",
                                path=path, key="layout")
        bec = keys.to_project_layout(block, stored if layout == keys.LAYOUT_AUTO else layout)
        bad = np.flatnonzero(~np.isfinite(bec).all(axis=(1, 2)))
        if bad.size:
            raise BornDataError(f"BEC contains NaN or inf at atoms {bad[:10].tolist()}",
                                path=path, frame=0, key=key)
        keys.set_bec(atoms, bec)
    atoms.info.update(info or {})
    atoms.info[keys.SOURCE] = f"{path}:0"
    return [atoms]


def _missing(path, key, what, require_bec):
    if require_bec:
        raise BornDataError(f"no {what} section", path=path, frame=0, key=key)


# -- Gaussian formatted checkpoint -------------------------------------------------------------

_FCHK_HEADER = re.compile(r"^(?P<name>\S.{0,41}?)\s+(?P<type>[ICRL])\s+"
                          r"(?:N=\s*(?P<n>\d+)|(?P<value>\S+))\s*$")
_FCHK_PER_LINE = {"I": 6, "R": 5, "C": 5, "L": 72, "H": 9}


def _fchk_sections(lines, path):
    """``{name: (type, values or scalar text, first data line)}``; arrays as lists of text."""
    out, i = {}, 2  # line 1: title, line 2: job type, method, basis
    while i < len(lines):
        m = _FCHK_HEADER.match(lines[i])
        i += 1
        if not m:
            continue
        name, typ = m.group("name").strip(), m.group("type")
        if m.group("n") is None:
            out[name] = (typ, m.group("value"))
            continue
        n = int(m.group("n"))
        if typ in "IR":
            values = []
            while len(values) < n and i < len(lines) and not _FCHK_HEADER.match(lines[i]):
                values += lines[i].split()
                i += 1
            out[name] = (typ, values[:n] if len(values) >= n else values, n)
        else:
            i += -(-n // _FCHK_PER_LINE.get(typ, 5))
            out[name] = (typ, None, n)
    return out


def _fchk_array(sections, name, path, shape=None):
    if name not in sections:
        raise BornDataError(f"no {name!r} section", path=path, frame=0, key=name)
    _, values, n = (sections[name] + (None,))[:3]
    if n is None or values is None or len(values) < n:
        got = len(values) if values else 0
        raise BornDataError(f"truncated or unparsable section: {got} of {n} values",
                            path=path, frame=0, key=name)
    arr = np.array([_num(v, path, name) for v in values])
    return arr.reshape(shape) if shape is not None else arr


def read_gaussian_fchk(path, layout=keys.LAYOUT_AUTO, require_bec=True):
    """Gaussian formatted checkpoint (``formchk`` of a ``freq`` job): one frame.

    Positions are read from ``Current cartesian coordinates`` (bohr) and the APT from
    ``Dipole Derivatives``, stored ``"r-P"``. ``Dipole Moment``, if present, is stored as
    ``info["polarization"]`` in e·Å.
    """
    path = Path(path)
    sections = _fchk_sections(_lines(path), path)
    numbers = _fchk_array(sections, "Atomic numbers", path).astype(int)
    n = len(numbers)
    pos = _fchk_array(sections, "Current cartesian coordinates", path, (n, 3))
    info = {}
    if "Dipole Moment" in sections:
        info[keys.POLARIZATION] = (_fchk_array(sections, "Dipole Moment", path)
                                   * units.E_BOHR_TO_E_ANGSTROM)
    block = None
    if "Dipole Derivatives" in sections or require_bec:
        block = _fchk_array(sections, "Dipole Derivatives", path)
        if block.size != 9 * n:
            raise BornDataError(f"{block.size} values for {n} atoms (expected {9 * n})",
                                path=path, frame=0, key="Dipole Derivatives")
        block = block.reshape(n, 3, 3)
    return _frame(path, numbers, pos * units.BOHR_ANGSTROM, block, keys.LAYOUT_R_P, layout,
                  "Dipole Derivatives", info)


# -- Gaussian log: the archive entry -----------------------------------------------------------

def _gaussian_archives(lines):
    """Text of each archive entry (``1\\1\\...\\@``), with the line wrapping undone."""
    out, cur = [], None
    for line in lines:
        if cur is None and line.startswith(" 1\\1\\"):
            cur = []
        if cur is not None:
            cur.append(line.removeprefix(" "))
            if "\\@" in line:
                out.append("".join(cur))
                cur = None
    if cur is not None:
        out.append("".join(cur) + "<truncated>")
    return out


def read_gaussian_log(path, layout=keys.LAYOUT_AUTO, require_bec=True):
    """Gaussian log of a ``freq`` job: one frame from the last archive entry that has
    ``DipoleDeriv`` (input orientation; positions in Å, APT stored ``"r-P"`` as in the fchk).
    """
    path = Path(path)
    archives = _gaussian_archives(_lines(path))
    if not archives:
        raise BornDataError("no archive entry (1\\1\\...\\@) at the end of the log",
                            path=path, frame=0, key="archive")
    with_apt = [a for a in archives if "\\DipoleDeriv=" in a]
    text = with_apt[-1] if with_apt else archives[-1]
    if text.endswith("<truncated>") or "\\\\" not in text:
        raise BornDataError("truncated archive entry", path=path, frame=0, key="archive")
    sections = text.split("\\\\")
    if len(sections) < 5:
        raise BornDataError("truncated archive entry", path=path, frame=0, key="archive")
    numbers, pos = [], []
    for entry in sections[3].split("\\")[1:]:  # first entry: charge,multiplicity
        fields = entry.split(",")
        if len(fields) not in (4, 5):
            raise BornDataError(f"not a Cartesian atom entry: {entry[:40]!r} (Z-matrix "
                                "geometries are not supported)", path=path, frame=0,
                                key="geometry")
        numbers.append(_element(fields[0], path, "geometry"))
        pos.append([_num(x, path, "geometry") for x in fields[-3:]])
    props = dict(item.split("=", 1) for item in sections[4].split("\\") if "=" in item)
    info = {}
    if "Dipole" in props:
        info[keys.POLARIZATION] = (np.array([_num(x, path, "Dipole")
                                             for x in props["Dipole"].split(",")])
                                   * units.E_BOHR_TO_E_ANGSTROM)
    block = None
    if "DipoleDeriv" in props:
        block = np.array([_num(x, path, "DipoleDeriv") for x in props["DipoleDeriv"].split(",")])
        if block.size != 9 * len(numbers):
            raise BornDataError(f"{block.size} values for {len(numbers)} atoms (expected "
                                f"{9 * len(numbers)})", path=path, frame=0, key="DipoleDeriv")
        block = block.reshape(-1, 3, 3)
    else:
        _missing(path, "DipoleDeriv", "DipoleDeriv (archive: full dipole derivatives)",
                 require_bec)
    return _frame(path, numbers, np.array(pos), block, keys.LAYOUT_R_P, layout,
                  "DipoleDeriv", info)


# -- ORCA .hess --------------------------------------------------------------------------------

def _orca_block(lines, name, ncol, path, required=True):
    """Rows of the ``$name`` block: (count, list of the last ``ncol`` fields of each row)."""
    starts = [i for i, ln in enumerate(lines) if ln.strip() == name]
    if not starts:
        if required:
            raise BornDataError(f"no {name} block", path=path, frame=0, key=name)
        return None
    i = starts[-1] + 1
    try:
        count = int(lines[i].split()[0])
    except (IndexError, ValueError):
        raise BornDataError("missing row count", path=path, frame=0, key=name) from None
    rows = lines[i + 1:i + 1 + count]
    if len(rows) < count or any(len(r.split()) < ncol or r.lstrip().startswith("$")
                                for r in rows):
        raise BornDataError(f"truncated or unparsable block: expected {count} rows of "
                            f"{ncol} values", path=path, frame=0, key=name)
    return [r.split() for r in rows]


def read_orca_hess(path, layout=keys.LAYOUT_AUTO, require_bec=True):
    """ORCA ``.hess`` file: ``$atoms`` (bohr) and ``$dipole_derivatives`` (stored ``"r-P"``)."""
    path = Path(path)
    lines = _lines(path)
    atoms_rows = _orca_block(lines, "$atoms", 5, path)
    numbers = [_element(r[0], path, "$atoms") for r in atoms_rows]
    pos = np.array([[_num(x, path, "$atoms") for x in r[-3:]] for r in atoms_rows])
    rows = _orca_block(lines, "$dipole_derivatives", 3, path, required=require_bec)
    block = None
    if rows is not None:
        if len(rows) != 3 * len(numbers):
            raise BornDataError(f"{len(rows)} rows for {len(numbers)} atoms (expected "
                                f"{3 * len(numbers)})", path=path, frame=0,
                                key="$dipole_derivatives")
        block = np.array([[_num(x, path, "$dipole_derivatives") for x in r[-3:]]
                          for r in rows]).reshape(-1, 3, 3)
    return _frame(path, numbers, pos * units.BOHR_ANGSTROM, block, keys.LAYOUT_R_P, layout,
                  "$dipole_derivatives")


# -- NWChem ------------------------------------------------------------------------------------

_NW_KEY = "Derivative Dipole"
_NW_LINE = re.compile(rf"d_dipole_([xyz])/<atom=\s*(\d+)\s*,\s*([xyz])>\s*=\s*({_FLOAT})"
                      rf"(?:\s*\[\s*({_FLOAT})\s*\])?")


def _nwchem_geometry(lines, start, stop, path):
    """(numbers, positions Å): ``Atom information`` in [start, stop), else the last
    ``Output coordinates`` block before ``start``."""
    info = [i for i in range(start, stop) if "Atom information" in lines[i]]
    if info:
        numbers, pos = [], []
        for ln in lines[info[0] + 3:]:  # column titles and dashes follow the header
            f = ln.split()
            if len(f) < 5 or ln.strip().startswith("---"):
                break
            numbers.append(_element(f[0], path, "Atom information"))
            pos.append([_num(x, path, "Atom information") for x in f[2:5]])
        return numbers, np.array(pos) * units.BOHR_ANGSTROM
    heads = [i for i in range(start) if re.search(r"Output coordinates in (angstroms|a\.u\.)",
                                                  lines[i])]
    if not heads:
        raise BornDataError("no geometry (Atom information or Output coordinates)",
                            path=path, frame=0, key="Output coordinates")
    h = heads[-1]
    scale = 1.0 if "angstroms" in lines[h] else units.BOHR_ANGSTROM
    numbers, pos = [], []
    for ln in lines[h + 4:]:  # blank, column titles, dashes
        f = ln.split()
        if len(f) < 6:
            break
        charge = _num(f[2], path, "Output coordinates")
        numbers.append(round(charge) if charge >= 1 else
                       _element(f[1], path, "Output coordinates"))
        pos.append([_num(x, path, "Output coordinates") for x in f[3:6]])
    return numbers, np.array(pos) * scale


def read_nwchem_freq(path, layout=keys.LAYOUT_AUTO, require_bec=True):
    """NWChem frequency output: the last ``Derivative Dipole`` block (labelled, ``"P-r"``)."""
    path = Path(path)
    lines = _lines(path)
    starts = [i for i, ln in enumerate(lines) if ln.strip() == _NW_KEY]
    if not starts:
        _missing(path, _NW_KEY, "Derivative Dipole", require_bec)
        numbers, pos = _nwchem_geometry(lines, len(lines), len(lines), path)
        return _frame(path, numbers, pos, None, keys.LAYOUT_P_R, layout, _NW_KEY)
    values, i = {}, starts[-1] + 1
    use_debye = False
    while i < len(lines):
        ln = lines[i]
        m = _NW_LINE.search(ln)
        if m:
            a, j, b, au, debye = m.groups()
            values[("xyz".index(a), int(j) - 1, "xyz".index(b))] = (
                _num(debye, path, _NW_KEY) * units.DEBYE_PER_ANGSTROM_TO_E
                if use_debye and debye is not None else _num(au, path, _NW_KEY))
        elif "vector of derivative dipole" in ln:
            use_debye = "[debye/angstrom]" in ln.lower()
        elif ln.strip():
            break
        i += 1
    numbers, pos = _nwchem_geometry(lines, i, len(lines), path)
    n = len(numbers)
    block = np.full((n, 3, 3), np.nan)
    for (a, j, b), v in values.items():
        if j >= n:
            raise BornDataError(f"derivative for atom {j + 1} of a {n}-atom geometry",
                                path=path, frame=0, key=_NW_KEY)
        block[j, a, b] = v
    if len(values) != 9 * n:
        raise BornDataError(f"truncated or unparsable block: {len(values)} of {9 * n} "
                            "derivatives", path=path, frame=0, key=_NW_KEY)
    return _frame(path, numbers, pos, block, keys.LAYOUT_P_R, layout, _NW_KEY)


# -- GAMESS-US ---------------------------------------------------------------------------------

_GAMESS_KEY = "DIPOLE DERIVATIVE TENSOR"
_GAMESS_ROW = re.compile(rf"D/D([XYZ])\s+({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*$")


def _gamess_geometry(lines, stop, path):
    """(numbers, positions Å) from the last geometry block before line ``stop``."""
    heads = [i for i in range(stop) if "COORDINATES (BOHR)" in lines[i]
             or "COORDINATES OF ALL ATOMS ARE (ANGS)" in lines[i]]
    if not heads:
        raise BornDataError("no geometry block (COORDINATES (BOHR))", path=path, frame=0,
                            key="COORDINATES (BOHR)")
    h = heads[-1]
    bohr = "BOHR" in lines[h]
    key = "COORDINATES (BOHR)" if bohr else "COORDINATES OF ALL ATOMS ARE (ANGS)"
    numbers, pos = [], []
    for ln in lines[h + 2:]:  # column titles (and, for ANGS, dashes) follow the header
        f = ln.split()
        if ln.strip().startswith("---") or (f and f[0] == "ATOM"):
            continue
        if len(f) != 5:
            break
        charge = _num(f[1], path, key)
        numbers.append(round(charge) if charge >= 1 else _element(f[0], path, key))
        pos.append([_num(x, path, key) for x in f[2:5]])
    if not numbers:
        raise BornDataError("empty geometry block", path=path, frame=0, key=key)
    return numbers, np.array(pos) * (units.BOHR_ANGSTROM if bohr else 1.0)


def read_gamess_freq(path, layout=keys.LAYOUT_AUTO, require_bec=True):
    """GAMESS-US hessian output: the last ``DIPOLE DERIVATIVE TENSOR`` (``"r-P"``)."""
    path = Path(path)
    lines = _lines(path)
    starts = [i for i, ln in enumerate(lines) if _GAMESS_KEY in ln]
    if not starts:
        _missing(path, _GAMESS_KEY, _GAMESS_KEY, require_bec)
        numbers, pos = _gamess_geometry(lines, len(lines), path)
        return _frame(path, numbers, pos, None, keys.LAYOUT_R_P, layout, _GAMESS_KEY)
    s = starts[-1]
    if "DEBYE/ANGSTROM" in lines[s]:
        factor = units.DEBYE_PER_ANGSTROM_TO_E
    elif "A.U." in lines[s].upper() or "AU)" in lines[s].upper():
        factor = 1.0
    else:
        raise BornDataError(f"unknown unit in {lines[s].strip()!r}", path=path, frame=0,
                            key=_GAMESS_KEY)
    numbers, pos = _gamess_geometry(lines, s, path)
    rows, i = [], s + 1
    while i < len(lines) and len(rows) < 3 * len(numbers):
        m = _GAMESS_ROW.search(lines[i])
        if m:
            if m.group(1) != "XYZ"[len(rows) % 3]:
                raise BornDataError(f"expected D/D{'XYZ'[len(rows) % 3]}, got D/D{m.group(1)}"
                                    f" at atom {len(rows) // 3 + 1}", path=path, frame=0,
                                    key=_GAMESS_KEY)
            rows.append([_num(x, path, _GAMESS_KEY) for x in m.groups()[1:]])
        elif rows and lines[i].strip():
            break
        i += 1
    if len(rows) != 3 * len(numbers):
        raise BornDataError(f"truncated or unparsable block: {len(rows)} of "
                            f"{3 * len(numbers)} rows", path=path, frame=0, key=_GAMESS_KEY)
    block = np.array(rows).reshape(-1, 3, 3) * factor
    return _frame(path, numbers, pos, block, keys.LAYOUT_R_P, layout, _GAMESS_KEY)


# -- dispatch ----------------------------------------------------------------------------------

FORMATS = {
    "gaussian-fchk": read_gaussian_fchk,
    "gaussian-freq": read_gaussian_log,
    "orca-hess": read_orca_hess,
    "nwchem-freq": read_nwchem_freq,
    "gamess-us-freq": read_gamess_freq,
}
"""``format=`` names of :func:`bornml.read_frames` handled here."""

ALIASES = {"fchk": "gaussian-fchk", "gaussian-log": "gaussian-freq", "orca": "orca-hess",
           "hess": "orca-hess", "nwchem": "nwchem-freq", "gamess": "gamess-us-freq",
           "gamess-freq": "gamess-us-freq"}

# (program marker in the first lines, format, marker of the APT section anywhere in the file)
_OUTPUT_MARKERS = (
    ("Northwest Computational Chemistry Package", "nwchem-freq", _NW_KEY),
    ("GAMESS VERSION", "gamess-us-freq", _GAMESS_KEY),
    ("Entering Gaussian System", "gaussian-freq", "\\DipoleDeriv="),
    ("Gaussian, Inc.", "gaussian-freq", "\\DipoleDeriv="),
)


def _contains(path, marker):
    """Whether ``marker`` occurs in the file, also across a wrapped line (Gaussian archive)."""
    tail = ""
    with open(path, errors="replace") as fh:
        for line in fh:
            text = line.rstrip("\r\n")
            if marker in tail + text.removeprefix(" "):
                return True
            tail = text.removeprefix(" ")[-len(marker):]
    return False


def guess_format(path):
    """Format name from :data:`FORMATS` for ``path``, or None.

    ``*.fchk`` / ``*.fch`` → fchk, ``*.hess`` or ``$orca_hessian_file`` → ORCA. An NWChem,
    GAMESS or Gaussian output is claimed only when it has the APT section; otherwise None,
    so that the file goes to ASE's readers as before.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".fchk", ".fch")):
        return "gaussian-fchk"
    try:
        with open(path, errors="replace") as fh:
            head = fh.read(65536).splitlines(keepends=True)[:200]
    except OSError:
        return None
    first = next((ln.strip() for ln in head if ln.strip()), "")
    if name.endswith(".hess") or first == "$orca_hessian_file":
        return "orca-hess"
    if len(head) > 2 and re.match(r"Number of atoms\s+I\s", head[2]):
        return "gaussian-fchk"
    text = "".join(head)
    for program, fmt, section in _OUTPUT_MARKERS:
        if program in text:
            return fmt if _contains(path, section) else None
    return None


def read_molecular(path, format, layout=keys.LAYOUT_AUTO, require_bec=True):
    """Read ``path`` with the reader of ``format`` (a key of :data:`FORMATS` or an alias)."""
    fmt = ALIASES.get(format, format)
    if fmt not in FORMATS:
        raise BornDataError(f"unknown molecular format {format!r}; use one of "
                            f"{sorted(FORMATS)}", path=path, key="format")
    return FORMATS[fmt](path, layout=layout, require_bec=require_bec)
