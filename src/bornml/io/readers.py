"""Read structures with Born effective charges (BECs) into ``ase.Atoms`` frames.

Every frame returned by :func:`read_frames` carries

- ``atoms.arrays["bec"]``: float64 in e, project convention ``Z[j, a, b] = dP_a / dr_{j b}``
  (``a`` field / polarisation direction, ``b`` displacement), stored (n_atoms, 9) row-major so
  that ``ase.io.write`` accepts the frame; ``keys.bec_of(atoms)`` gives the (n_atoms, 3, 3) view;
- ``atoms.info["bornml_source"] = "path:frame_index"`` (frame index counted in the file);
- where present: ``arrays["forces"]`` (n_atoms, 3) eV/Å, ``info["energy"]`` eV,
  ``info["epsilon_inf"]`` (3, 3) dimensionless. Calculator results that ASE attaches
  (forces, energy, stress, charges, polarization, ...) are moved into ``arrays`` / ``info`` and
  ``atoms.calc`` is set to None, so every quantity lives in exactly one place.

Formats: extxyz (anything ASE reads), VASP OUTCAR (``OUTCAR*``), phonopy ``BORN``
(:func:`read_phonopy_born`, which needs the structure), the molecular APT files of
:mod:`.molecular` (Gaussian fchk / log, ORCA ``.hess``, NWChem, GAMESS), and the periodic DFT
outputs of :mod:`.vasprun` (``vasprun.xml``), :mod:`.quantum_espresso` (ph.x output, dyn,
XML dyn, q2r ``.fc``), :mod:`.castep` and :mod:`.abinit` (DDB, anaddb); several files at once
with :func:`read_many` (a list, a folder or a glob pattern). Storage layouts:
``"P-r"`` (row = field direction; extxyz default, VASP, phonopy) or ``"r-P"`` (transposed);
``"auto"`` picks the format's.
"""

import functools
import json
import re
from pathlib import Path

import ase.io
import numpy as np
from ase.io.extxyz import per_atom_properties
from ase.io.formats import filetype, string2index

from .. import keys
from ..errors import BornDataError
from . import abinit, castep, ipi, molecular, quantum_espresso, vasprun

_VASP_BEC_HEADER = "BORN EFFECTIVE CHARGES"
_VASP_EPS_HEADER = "MACROSCOPIC STATIC DIELECTRIC TENSOR (including local field effects in DFT)"
# ionic-step SCF header, number written I6 (linear-response iterations use I4: not matched)
_VASP_ITERATION = re.compile(r"^\s*-+ Iteration ([ \d]{5}\d)\(")

#: ``format=`` names of the periodic DFT readers (modules vasprun, quantum_espresso, castep,
#: abinit) and their aliases
FILE_FORMATS = {"vasprun": vasprun.read_vasprun, **quantum_espresso.FORMATS, **castep.FORMATS,
                **abinit.FORMATS}
FILE_ALIASES = {"vasp-xml": "vasprun", "vasprun.xml": "vasprun", **quantum_espresso.ALIASES,
                **castep.ALIASES, **abinit.ALIASES}
_TAKES_STRUCTURE = ("qe-ph", "anaddb")  # outputs without (precise) structure


def _ase_writable(read):
    """Make the reader store every frame's Born charges (n_atoms, 9) (see ``keys.bec_of``)."""
    @functools.wraps(read)
    def wrapper(*args, **kwargs):
        frames = read(*args, **kwargs)
        for frame in frames:
            if keys.BEC in frame.arrays:
                keys.set_bec(frame, frame.arrays[keys.BEC])
        return frames
    return wrapper


@_ase_writable
def read_frames(path, index=":", layout=keys.LAYOUT_AUTO, format=None, require_bec=True,
                structure=None):
    """Read frames with BECs from ``path``; return ``list[ase.Atoms]``.

    ``index``: ASE-style selection (``":"``, ``"1::2"``, ``-1``, ``slice``). ``layout``: storage
    order of the 9 numbers per atom (``"auto"``, ``"P-r"``, ``"r-P"``). ``format``: ``"outcar"``,
    ``"phonopy"``, a molecular format (``molecular.FORMATS``: ``"gaussian-fchk"``,
    ``"gaussian-freq"``, ``"orca-hess"``, ``"nwchem-freq"``, ``"gamess-us-freq"``) or an ASE
    format name; default: from the file name (``OUTCAR*`` → outcar, ``BORN`` → phonopy), then
    :func:`molecular.guess_format`, else ASE detection. ``require_bec=False`` accepts frames
    without BECs (structures to predict for); BECs that are present are still checked.
    Periodic DFT outputs (:data:`FILE_FORMATS`): ``"vasprun"``, ``"qe-ph"``, ``"qe-dyn"``,
    ``"qe-dyn-xml"``, ``"qe-fc"``, ``"castep"``, ``"abinit-ddb"``, ``"anaddb"``, detected from
    the name or content. ``structure``: ``ase.Atoms`` or a file for outputs that lack a precise
    structure (QE ph.x output, anaddb output); found next to them when None.
    ``path`` may also be a list of paths, a directory or a glob pattern: see :func:`read_many`.
    Raises :class:`BornDataError` on bad data.
    """
    if _is_many(path):
        return read_many(path, index=index, layout=layout, format=format,
                         require_bec=require_bec, structure=structure)
    path = Path(path)
    if layout not in keys.LAYOUTS:
        raise BornDataError(f"unknown BEC layout {layout!r}; use one of {keys.LAYOUTS}",
                            path=path, key="layout")
    if not path.is_file():
        raise BornDataError("file not found", path=path)
    fmt = {"vasp-out": "outcar", "born": "phonopy"}.get(format, format) or _guess_format(path)
    if fmt == "outcar":
        return _select(_read_outcar(path, layout), index, path)
    fmt = molecular.ALIASES.get(fmt, fmt)
    if fmt in molecular.FORMATS:
        return _select(molecular.read_molecular(path, fmt, layout, require_bec), index, path)
    if fmt == "phonopy":
        raise BornDataError("a phonopy BORN file lists no structure; use "
                            "bornml.io.readers.read_phonopy_born(path, atoms)", path=path)
    if fmt in ipi.FORMATS:  # i-PI bec.txt / becx,becy,becz trajectories (see .ipi)
        return _select(ipi.read_ipi(path, fmt, layout), index, path)
    fmt = FILE_ALIASES.get(fmt, fmt)
    if fmt in FILE_FORMATS:
        extra = {}
        if structure is not None:
            if fmt not in _TAKES_STRUCTURE:
                raise BornDataError(f"structure= applies to {_TAKES_STRUCTURE}, not {fmt!r}",
                                    path=path, key="structure")
            extra["structure"] = structure
        return _select(FILE_FORMATS[fmt](path, layout=layout, require_bec=require_bec, **extra),
                       index, path)
    return _read_ase(path, index, layout, fmt, require_bec)


#: how each reader's tensor orientation is known (README table "Supported input formats");
#: ``bornml inspect`` prints it, so a user knows when the file alone decides the layout
ORIENTATION_PROVENANCE = {
    "outcar": "pinned: VASP linear-response DIRECTION blocks; agrees with vasprun.xml",
    "vasprun": "pinned: α-quartz antisymmetric parts agree with ABINIT's labelled DDB",
    "qe-ph": "QE source; dF/dE = dP/du blocks; row order not pinned by physics (symmetric "
             "samples)",
    "qe-dyn": "QE source; E-U block = transposed U-E block",
    "qe-dyn-xml": "QE source; equals the text dyn file of the same run",
    "qe-fc": "assumed (as the dyn E-U block); equals ph.x output on diagonal samples",
    "castep": "assumed (row = field): not pinned, only diagonal samples available",
    "abinit-ddb": "pinned: every line labels the field and displacement indices",
    "anaddb": "ABINIT source; equals the DDB",
    "phonopy": "phonopy documentation (row = field)",
    "gaussian-fchk": "pinned: rotational sum rule, printed IR intensities",
    "gaussian-freq": "pinned: rotational sum rule, printed IR intensities",
    "orca-hess": "pinned: rotational sum rule",
    "nwchem-freq": "pinned: rotational sum rule, agreement with Gaussian/GAMESS",
    "gamess-us-freq": "pinned: rotational sum rule, agreement with Gaussian/NWChem",
    "ipi-bec": "pinned: i-PI's driven forces equal Σ_a Z[j,a,b] E_a",
    "ipi-traj": "pinned: i-PI's driven forces equal Σ_a Z[j,a,b] E_a",
}


def detect_format(path):
    """The format name :func:`read_frames` would use for ``path`` (``pathlib.Path``)."""
    return _guess_format(Path(path))


def _guess_format(path):
    if path.name.upper().startswith("OUTCAR") or path.name.upper().endswith(".OUTCAR"):
        return "outcar"
    if path.name.upper() == "BORN":
        return "phonopy"
    fmt = ipi.guess_format(path) or molecular.guess_format(path) or _guess_dft(path)
    if fmt:
        return fmt
    try:
        return filetype(str(path), guess=True)
    except Exception as err:  # ASE raises several types for unknown content
        raise BornDataError(f"cannot detect the file format ({err}); pass format=",
                            path=path) from err


def _head(path, size=65536):
    """The first ``size`` characters of ``path`` (decompressed for ``.bz2``), or ""."""
    try:
        if path.suffix == ".bz2":
            import bz2

            with bz2.open(path, "rt", errors="replace") as fh:
                return fh.read(size)
        with open(path, errors="replace") as fh:
            return fh.read(size)
    except (OSError, EOFError, ValueError):
        return ""


def _guess_dft(path):
    """A :data:`FILE_FORMATS` name from the file name or its first characters, or None."""
    name = path.name.lower()
    if name.startswith("vasprun") and name.endswith(".xml"):
        return "vasprun"
    head = _head(path)
    if "<modeling>" in head[:2000] and "<generator>" in head[:4000]:
        return "vasprun"
    return (quantum_espresso.guess_format(path, head) or castep.guess_format(path, head)
            or abinit.guess_format(path, head))


# -- many files at once -----------------------------------------------------------------------

def _is_many(path):
    if isinstance(path, (list, tuple)):
        return True
    text = str(path)
    return Path(text).is_dir() or (not Path(text).exists() and any(c in text for c in "*?["))


#: formats a directory listing keeps (files of other kinds in the folder are skipped)
BEC_FORMATS = ("outcar", "extxyz", *molecular.FORMATS, *ipi.FORMATS, *FILE_FORMATS)


def expand_paths(paths):
    """Files named by ``paths``: a path, a directory (its recognised files, sorted by name), a
    glob pattern (sorted matches), or a list of these; in the order given. Raises
    :class:`BornDataError` for a pattern or directory that gives nothing."""
    import glob

    out = []
    for item in [paths] if isinstance(paths, (str, Path)) else list(paths):
        item = Path(item)
        if item.is_dir():
            found = []
            for f in sorted(p for p in item.iterdir() if p.is_file()):
                try:
                    fmt = _guess_format(f)
                except BornDataError:
                    continue
                if FILE_ALIASES.get(fmt, molecular.ALIASES.get(fmt, fmt)) in BEC_FORMATS:
                    found.append(f)
            if not found:
                raise BornDataError("no file with Born charges of a known format in the folder",
                                    path=item)
            out += found
        elif item.exists():
            out.append(item)
        elif any(c in str(item) for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(item)) if Path(p).is_file())
            if not found:
                raise BornDataError("the pattern matches no file", path=item)
            out += found
        else:
            raise BornDataError("file not found", path=item)
    return out


def read_many(paths, index=":", layout=keys.LAYOUT_AUTO, format=None, require_bec=True,
              structure=None):
    """Frames of several files (:func:`expand_paths`) in order, each read by
    :func:`read_frames`; ``index`` selects from the concatenated list. Every frame keeps its
    own ``info["bornml_source"] = "file:frame"``."""
    frames = []
    for path in expand_paths(paths):
        frames += read_frames(path, layout=layout, format=format, require_bec=require_bec,
                              structure=structure)
    return _select(frames, index, paths)


def _to_range(index, n, path):
    """Absolute frame numbers selected by ``index`` out of ``n`` frames."""
    idx = string2index(index) if isinstance(index, str) else index
    rng = range(n)
    try:
        return [rng[idx]] if isinstance(idx, (int, np.integer)) else list(rng[idx])
    except (IndexError, TypeError) as err:
        raise BornDataError(f"index {index!r} does not select frames out of {n}",
                            path=path, key="index") from err


def _select(frames, index, path):
    return [frames[i] for i in _to_range(index, len(frames), path)]


# -- extxyz and other ASE formats ------------------------------------------------------------

def _scan_xyz(path):
    """Line numbers of the frame headers of an (ext)xyz file; raise on a truncated frame."""
    starts, lineno = [], 0
    with open(path) as fh:
        lines = iter(fh)
        for line in lines:
            if not line.strip():
                break
            if line.lstrip().startswith("VEC"):  # cell vectors as pseudo-atoms (vec_cell)
                lineno += 1
                continue
            try:
                natoms = int(line)
            except ValueError as err:
                raise BornDataError(f"expected an atom count, got {line.strip()[:40]!r}",
                                    path=path, frame=len(starts), key="natoms") from err
            got = sum(1 for _, _ in zip(range(natoms + 1), lines))
            if got < natoms + 1:
                raise BornDataError(f"truncated file: {max(got - 1, 0)} of {natoms} atom lines",
                                    path=path, frame=len(starts), key="natoms")
            starts.append(lineno)
            lineno += natoms + 2
    return starts


def _bad_column(path, start):
    """Name the Properties column that makes the frame at line ``start`` unparsable."""
    with open(path) as fh:
        lines = [ln for _, ln in zip(range(start + 2), fh)][start:]
        natoms = int(lines[0])
        atoms = [next(fh).split() for _ in range(natoms)]
    props = re.search(r"Properties=(\S+)", lines[1])
    if not props:
        return "Properties", "no Properties= entry on the comment line"
    spec = props.group(1).strip("\"'").split(":")
    col = 0
    for name, kind, width in zip(spec[::3], spec[1::3], spec[2::3]):
        conv = {"R": float, "I": int}.get(kind, str)
        for j, row in enumerate(atoms):
            try:
                [conv(x) for x in row[col:col + int(width)]]
                if len(row) < col + int(width):
                    raise ValueError("missing columns")
            except ValueError as err:
                return name, f"atom {j}: {err}"
        col += int(width)
    return None, ""


def _read_ase(path, index, layout, fmt, require_bec=True):
    layout = keys.LAYOUT_P_R if layout == keys.LAYOUT_AUTO else layout
    if fmt in ("extxyz", "xyz"):  # plain xyz is read as extxyz, a superset
        fmt = "extxyz"
        starts = _scan_xyz(path)
        numbers = _to_range(index, len(starts), path)
        ordered = sorted(numbers)
        frames, k = {}, 0
        if ordered:
            step = ordered[1] - ordered[0] if len(ordered) > 1 else 1
            try:
                for k, atoms in zip(ordered, ase.io.iread(
                        str(path), index=slice(ordered[0], ordered[-1] + 1, step), format=fmt)):
                    frames[k] = atoms
            except Exception as err:  # ASE raises ValueError, XYZError, KeyError, ...
                bad = ordered[len(frames)] if len(frames) < len(ordered) else k
                try:
                    key, why = _bad_column(path, starts[bad])
                except Exception:  # the diagnosis is best effort
                    key, why = None, ""
                raise BornDataError(f"cannot parse frame: {why or err}", path=path, frame=bad,
                                    key=key) from err
        return [_finish(frames[i], path, i, layout, require_bec) for i in numbers]
    try:
        images = ase.io.read(str(path), index=":", format=fmt)
    except Exception as err:
        raise BornDataError(f"cannot parse as {fmt}: {err}", path=path) from err
    return [_finish(images[i], path, i, layout, require_bec)
            for i in _to_range(index, len(images), path)]


def _move_calc_results(atoms):
    """Move results of an attached calculator into ``arrays`` / ``info``; drop the calculator."""
    calc, atoms.calc = atoms.calc, None
    for name, value in (getattr(calc, "results", None) or {}).items():
        if name in per_atom_properties and np.shape(value)[:1] == (len(atoms),):
            atoms.arrays[name] = np.asarray(value)
        else:
            atoms.info[name] = value


def _finish(atoms, path, frame, layout, require_bec=True):
    """Normalise one frame: calculator results, BEC key and layout, epsilon_inf, provenance."""
    _move_calc_results(atoms)
    has_bec = any(k in atoms.arrays or k in atoms.info for k in keys.BEC_ALIASES)
    if require_bec or has_bec:
        atoms.arrays[keys.BEC] = _extract_bec(atoms, path, frame, layout)
    for name in keys.EPSILON_ALIASES:
        if name in atoms.info:
            eps = _as_float(atoms.info.pop(name), path, frame, name)
            if eps.size != 9:
                raise BornDataError(f"epsilon_inf needs 9 numbers, got {eps.size}",
                                    path=path, frame=frame, key=name)
            atoms.info[keys.EPSILON_INF] = eps.reshape(3, 3)
            break
    atoms.info[keys.SOURCE] = f"{path}:{frame}"
    return atoms


def _as_float(value, path, frame, key):
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = value.replace(",", " ").split()
    try:
        return np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise BornDataError(f"value is not numeric: {err}", path=path, frame=frame,
                            key=key) from err


def bec_of_frame(atoms, layout=keys.LAYOUT_AUTO, path=None, frame=None):
    """Born charges of one frame, found as :func:`read_frames` finds them; ``atoms`` unchanged.

    Every alias of ``keys.BEC_ALIASES`` is tried, the per-atom array first ((n, 9) or
    (n, 3, 3)), then the frame info (9·n numbers, also as a string). ``layout``: storage order
    of the 9 numbers ("auto" = "P-r", the extxyz default; "r-P" = transposed). Returns
    (n_atoms, 3, 3) float64 in e, project layout Z[j, a, b] = dP_a/dr_jb; raises
    :class:`BornDataError` naming ``path``, ``frame`` and the key.
    """
    if layout not in keys.LAYOUTS:
        raise BornDataError(f"unknown BEC layout {layout!r}; use one of {keys.LAYOUTS}",
                            path=path, key="layout")
    layout = keys.LAYOUT_P_R if layout == keys.LAYOUT_AUTO else layout
    return _find_bec(atoms, path, frame, layout)[0]


def _extract_bec(atoms, path, frame, layout):
    """:func:`bec_of_frame` for the readers: also removes the key it was found under."""
    bec, name = _find_bec(atoms, path, frame, layout)
    (atoms.arrays if name in atoms.arrays else atoms.info).pop(name)
    return bec


def _find_bec(atoms, path, frame, layout):
    """(BEC (n, 3, 3) float64 in the project layout, key found); per-atom array first."""
    n = len(atoms)
    for name in keys.BEC_ALIASES:
        if name in atoms.arrays:
            raw = _as_float(atoms.arrays[name], path, frame, name)
            if raw.shape not in ((n, 9), (n, 3, 3)):
                raise BornDataError(f"per-atom BEC has shape {raw.shape}: "
                                    f"{raw[0].size if raw.ndim else 0} numbers per atom, "
                                    "expected 9", path=path, frame=frame, key=name)
            break
        if name in atoms.info:
            raw = _as_float(atoms.info[name], path, frame, name)
            if raw.size != 9 * n:
                raise BornDataError(f"per-frame BEC has {raw.size} numbers, expected "
                                    f"9 x {n} atoms = {9 * n}", path=path, frame=frame, key=name)
            break
    else:
        raise BornDataError(f"no BEC found (looked for {keys.BEC_ALIASES}); per-atom keys: "
                            f"{sorted(atoms.arrays)}, frame keys: {sorted(atoms.info)}",
                            path=path, frame=frame, key="bec")
    bec = check_bec(keys.to_project_layout(raw.reshape(n, 3, 3), layout), path, frame, name)
    return bec, name


def check_bec(bec, path=None, frame=None, key=keys.BEC):
    """Return ``bec`` as a contiguous float64 (n, 3, 3) array; raise on NaN / inf."""
    bec = np.ascontiguousarray(bec, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(bec).all(axis=(1, 2)))
    if bad.size:
        raise BornDataError(f"BEC contains NaN or inf at atoms {bad[:10].tolist()}",
                            path=path, frame=frame, key=key)
    return bec


# -- VASP OUTCAR -----------------------------------------------------------------------------

def _read_outcar(path, layout):
    """One frame per ``BORN EFFECTIVE CHARGES`` block of an OUTCAR, with its ionic step.

    A block belongs to the ionic step ``N`` of the last ``Iteration N(`` header before it (an
    LEPSILON run prints it after the step's forces; an LCALCEPS MD run once per step); that
    step's structure, forces and energy come with it, and the electronic ε∞ printed since the
    previous block. Several blocks in one step: the last. Frame index = ionic step index.
    VASP prints, per ion, rows = field direction and columns = displacement (``"P-r"``): the row
    ``d`` of the final block equals the ``DIRECTION d`` linear-response block.
    """
    lines = Path(path).read_text(errors="replace").splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.strip().startswith(_VASP_BEC_HEADER)]
    if not starts:
        raise BornDataError("no BORN EFFECTIVE CHARGES block (run VASP with LEPSILON or "
                            "LCALCEPS)", path=path, frame=0, key=_VASP_BEC_HEADER)
    try:
        images = ase.io.read(str(path), index=":", format="vasp-out")
    except Exception as err:
        raise BornDataError(f"cannot parse the structure: {err}", path=path, frame=0) from err
    steps = [(i, int(m.group(1))) for i, ln in enumerate(lines)
             if (m := _VASP_ITERATION.match(ln))]
    eps_at = [i for i, ln in enumerate(lines) if ln.strip() == _VASP_EPS_HEADER]
    layout = keys.LAYOUT_P_R if layout == keys.LAYOUT_AUTO else layout
    chosen = {}  # ionic step index -> (block start, previous block start)
    for k, start in enumerate(starts):
        step = max([n for i, n in steps if i < start], default=len(images))
        chosen[min(step, len(images)) - 1] = (start, starts[k - 1] if k else -1)
    frames = []
    for frame, (start, prev) in sorted(chosen.items()):
        atoms = images[frame]
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        _move_calc_results(atoms)
        if "free_energy" in results:  # TOTEN; ASE's "energy" is energy(sigma->0)
            atoms.info[keys.ENERGY] = float(results["free_energy"])
            atoms.info["energy_sigma0"] = float(results["energy"])
            atoms.info.pop("free_energy")
        bec = _parse_vasp_bec(lines, start, len(atoms), path, frame)
        atoms.arrays[keys.BEC] = check_bec(keys.to_project_layout(bec, layout), path, frame,
                                           _VASP_BEC_HEADER)
        eps = [i for i in eps_at if prev < i < start]
        if eps:
            atoms.info[keys.EPSILON_INF] = _parse_rows(lines[eps[-1] + 2:eps[-1] + 5], 3, path,
                                                       frame, _VASP_EPS_HEADER)
        atoms.info[keys.SOURCE] = f"{path}:{frame}"
        frames.append(atoms)
    return frames


def _parse_rows(rows, ncol, path, frame, key):
    try:
        out = np.array([[float(x) for x in r.split()[-ncol:]] for r in rows])
        if out.shape != (len(rows), ncol) or any(len(r.split()) < ncol for r in rows):
            raise ValueError(f"expected {len(rows)} rows of {ncol} numbers")
    except ValueError as err:
        raise BornDataError(f"truncated or unparsable block: {err}", path=path, frame=frame,
                            key=key) from err
    return out


def _parse_vasp_bec(lines, start, n_atoms, path, frame):
    """Parse ``ion k`` + 3 rows ``d  Z[d,0] Z[d,1] Z[d,2]`` for every ion after ``start``."""
    bec = np.empty((n_atoms, 3, 3))
    i = start + 2  # skip header and dashes
    for j in range(n_atoms):
        head = lines[i].split() if i < len(lines) else []
        if head[:2] != ["ion", str(j + 1)]:
            raise BornDataError(f"truncated or unparsable block: expected 'ion {j + 1}', got "
                                f"{' '.join(head)[:40]!r}", path=path, frame=frame,
                                key=_VASP_BEC_HEADER)
        block = lines[i + 1:i + 4]
        if len(block) < 3 or [r.split()[:1] for r in block] != [["1"], ["2"], ["3"]]:
            raise BornDataError(f"truncated or unparsable block at ion {j + 1}", path=path,
                                frame=frame, key=_VASP_BEC_HEADER)
        bec[j] = _parse_rows(block, 3, path, frame, _VASP_BEC_HEADER)
        i += 4
    return bec


# -- phonopy BORN ------------------------------------------------------------------------------

def read_phonopy_born(path, atoms, symprec=1e-5):
    """Return a copy of ``atoms`` with BECs and epsilon_inf from a phonopy ``BORN`` file.

    File: optional first line with the unit-conversion factor (a number or ``default``), one line
    of 9 numbers ε∞ (row-major), then one line of 9 numbers per symmetrically independent atom,
    row = field direction (``"P-r"``, the project layout). If there is one line per atom the
    charges are used as they stand; otherwise they are expanded with the crystal symmetry, which
    needs ``spglib`` (``Z_j = R Z_i R^T`` for the operation R mapping atom i onto j).
    """
    path = Path(path)
    if not path.is_file():
        raise BornDataError("file not found", path=path)
    rows = [ln.split("#")[0].split() for ln in path.read_text().splitlines()]
    rows = [r for r in rows if r]
    if rows and len(rows[0]) == 1:
        factor = rows.pop(0)[0]
    else:
        factor = None
    try:
        data = [[float(x) for x in r] for r in rows]
    except ValueError as err:
        raise BornDataError(f"unparsable number: {err}", path=path, frame=0, key="BORN") from err
    if len(data) < 2 or any(len(r) != 9 for r in data):
        raise BornDataError("expected lines of 9 numbers: epsilon, then one per independent atom",
                            path=path, frame=0, key="BORN")
    eps, zs = np.array(data[0]).reshape(3, 3), np.array(data[1:]).reshape(-1, 3, 3)
    out = atoms.copy()
    if len(zs) != len(atoms):
        zs = _expand_by_symmetry(zs, atoms, symprec, path)
    keys.set_bec(out, check_bec(zs, path, 0, "BORN"))
    out.info[keys.EPSILON_INF] = eps
    if factor is not None:
        out.info["phonopy_factor"] = factor
    out.info[keys.SOURCE] = f"{path}:0"
    return out


def _expand_by_symmetry(zs, atoms, symprec, path):
    try:
        import spglib
    except ImportError:
        raise BornDataError(f"{len(zs)} BEC lines for {len(atoms)} atoms: expanding the "
                            "independent atoms needs spglib (not installed), or give one line "
                            "per atom", path=path, frame=0, key="BORN") from None
    frac, lat = atoms.get_scaled_positions(), atoms.cell.array
    ds = spglib.get_symmetry_dataset((lat, frac, atoms.numbers), symprec=symprec)
    independent = list(dict.fromkeys(int(i) for i in ds.equivalent_atoms))
    if len(independent) != len(zs):
        raise BornDataError(f"{len(zs)} BEC lines but {len(independent)} independent atoms "
                            f"(symprec={symprec})", path=path, frame=0, key="BORN")
    out, done = np.empty((len(atoms), 3, 3)), np.zeros(len(atoms), bool)
    for k, i in enumerate(independent):
        for rot, trans in zip(ds.rotations, ds.translations):
            diff = frac - (rot @ frac[i] + trans)  # atom j = R x_i + t (mod 1)?
            hit = np.abs(diff - np.round(diff)).max(axis=1) < 10 * symprec
            rc = lat.T @ rot @ np.linalg.inv(lat.T)  # the operation in Cartesian axes
            for j in np.flatnonzero(hit & ~done):
                out[j], done[j] = rc @ zs[k] @ rc.T, True
    if not done.all():
        raise BornDataError("symmetry expansion left atoms without BEC", path=path, frame=0,
                            key="BORN")
    return out
