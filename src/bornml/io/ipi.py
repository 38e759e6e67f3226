"""i-PI Born-charge files: ``bec.txt`` (the ``<bec mode="file">`` input and the driver output)
and the ``becx`` / ``becy`` / ``becz`` trajectories of driven dynamics.

Layout (i-PI ``engine/motion/driven_dynamics.py``: the BEC array is (3·n_atoms, 3) and the
driven force is ``F = Z @ E``): row ``3j + b`` is the displacement direction ``b`` of atom ``j``,
column ``a`` the field direction, i.e. ``bec.txt[3j + b, a] = Z[j, a, b]`` — the transpose of the
project's per-atom block (``"r-P"``). The trajectory ``bec<a>`` holds, per atom ``j``, the
vector ``Z[j, a, :]`` (column ``a`` of the array). Checked on the i-PI regression sample
(``tests/test_ipi.py``): its ``Eforces`` equal ``Σ_a Z[j, a, b] E_a`` and ``becz`` equals column
3 of ``bec.txt``. Born charges are in e in every i-PI unit system; positions and cells are
converted from the unit tag of the file (``{atomic_unit}`` = bohr, ``{angstrom}``) to Å.
"""

import re
from pathlib import Path

import numpy as np
from ase import Atoms

from .. import keys, units
from ..errors import BornDataError

FORMATS = ("ipi-bec", "ipi-traj")  #: bec.txt (no structure) and the becx/y/z trajectories
_BEC_NAME = re.compile(r"^(?P<prefix>.*)\.bec(?P<axis>[xyz])_(?P<bead>\d+)\.xyz$")
_LENGTH = {"atomic_unit": units.BOHR_ANGSTROM, "bohr": units.BOHR_ANGSTROM, "angstrom": 1.0}
_POSITION_NAMES = ("positions", "pos", "xc", "x_centroid")


def guess_format(path):
    """``"ipi-traj"`` for ``<prefix>.bec{x,y,z}_<bead>.xyz``, ``"ipi-bec"`` for ``*bec.txt``;
    else None."""
    name = Path(path).name
    if _BEC_NAME.match(name):
        return "ipi-traj"
    if name.lower().endswith("bec.txt"):
        return "ipi-bec"
    return None


# -- bec.txt -----------------------------------------------------------------------------------

def write_ipi_bec(path, bec):
    """Write ``bec`` (n_atoms, 3, 3) e, project layout, as an i-PI ``bec.txt``: 3·n_atoms rows of
    3 numbers, row ``3j + b``, column ``a`` = ``Z[j, a, b]`` (full float precision)."""
    bec = np.asarray(bec, dtype=np.float64)
    if bec.ndim != 3 or bec.shape[1:] != (3, 3):
        raise ValueError(f"bec must have shape (n_atoms, 3, 3), got {bec.shape}")
    rows = bec.transpose(0, 2, 1).reshape(-1, 3)
    text = "".join("\t".join(f"{x: .17g}" for x in row) + "\n" for row in rows)
    Path(path).write_text(text)


def read_ipi_bec(path, layout=keys.LAYOUT_AUTO):
    """Born charges (n_atoms, 3, 3) e, project layout, from an i-PI ``bec.txt`` (3·n_atoms rows
    of 3 numbers; ``#`` comments allowed; one block). ``layout="auto"`` is i-PI's ``"r-P"``."""
    path = Path(path)
    try:
        data = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as err:
        raise BornDataError(f"cannot parse as i-PI bec.txt: {err}", path=path, key="bec") from err
    if data.shape[1] != 3 or data.shape[0] % 3 or not data.size:
        raise BornDataError(f"expected 3·n_atoms rows of 3 numbers, got {data.shape}",
                            path=path, key="bec")
    layout = keys.LAYOUT_R_P if layout == keys.LAYOUT_AUTO else layout
    bec = keys.to_project_layout(data.reshape(-1, 3, 3), layout)
    if not np.isfinite(bec).all():
        raise BornDataError("BEC contains NaN or inf", path=path, key="bec")
    return np.ascontiguousarray(bec)


# -- trajectories --------------------------------------------------------------------------------

def read_ipi_xyz(path):
    """Frames of an i-PI xyz trajectory: list of (symbols, values (n, 3) in the file's unit,
    info dict with ``step``, ``cell`` (abcABC, Å and degrees) and ``unit``, the tag of the
    quantity)."""
    path = Path(path)
    lines = path.read_text().splitlines()
    frames, i = [], 0
    while i < len(lines) and lines[i].strip():
        try:
            n = int(lines[i])
            comment = lines[i + 1]
            rows = [lines[i + 2 + k].split() for k in range(n)]
            values = np.array([[float(x) for x in r[1:4]] for r in rows])
        except (ValueError, IndexError) as err:
            raise BornDataError(f"truncated or unparsable i-PI frame: {err}", path=path,
                                frame=len(frames)) from err
        frames.append(([r[0] for r in rows], values, _header(comment, path, len(frames))))
        i += n + 2
    return frames


def _header(comment, path, frame):
    step = re.search(r"Step:\s*(\d+)", comment)
    tags = dict(re.findall(r"(\w+)\{(\w+)\}", comment))
    cell = re.search(r"CELL\(abcABC\):((?:\s+\S+){6})", comment)
    if step is None or cell is None:
        raise BornDataError("no i-PI comment line (CELL(abcABC) ... Step:)", path=path,
                            frame=frame)
    quantity = [u for k, u in tags.items() if k != "cell"]
    scale = _scale(tags.get("cell", "atomic_unit"), path, frame)
    abc = np.array(cell.group(1).split(), dtype=float)
    abc[:3] *= scale
    return {"step": int(step.group(1)), "cell": abc, "unit": quantity[0] if quantity else None}


def _scale(unit, path, frame):
    if unit not in _LENGTH:
        raise BornDataError(f"unsupported length unit {unit!r} (use {sorted(_LENGTH)})",
                            path=path, frame=frame)
    return _LENGTH[unit]


def read_ipi_trajectory(path, layout=keys.LAYOUT_AUTO, positions=None, pbc=True):
    """Frames (``ase.Atoms`` with Born charges, Å, cell from ``CELL(abcABC)``) from the i-PI
    trajectories ``<prefix>.bec{x,y,z}_<bead>.xyz`` (``path`` names any of the three) and the
    positions of the same run (``positions``; default ``<prefix>.{positions,pos,...}_<bead>.xyz``
    next to it). Only steps present in all four files are returned; ``info["ipi_step"]``. i-PI
    does not store periodicity: ``pbc`` (default True; False for an isolated molecule)."""
    path = Path(path)
    m = _BEC_NAME.match(path.name)
    if m is None:
        raise BornDataError("expected an i-PI trajectory named <prefix>.bec{x,y,z}_<bead>.xyz",
                            path=path)
    stem = path.parent / m.group("prefix")
    bead = m.group("bead")
    if positions is None:
        found = [Path(f"{stem}.{n}_{bead}.xyz") for n in _POSITION_NAMES]
        found = [p for p in found if p.is_file()]
        if not found:
            raise BornDataError(f"no positions trajectory next to it (looked for "
                                f"{stem.name}.{{{','.join(_POSITION_NAMES)}}}_{bead}.xyz); pass "
                                "positions=", path=path)
        positions = found[0]
    parts = {}
    for axis in "xyz":
        part = Path(f"{stem}.bec{axis}_{bead}.xyz")
        if not part.is_file():
            raise BornDataError(f"missing the becx/becy/becz companion {part.name}", path=path)
        parts[axis] = {h["step"]: v for _, v, h in read_ipi_xyz(part)}
    layout = keys.LAYOUT_P_R if layout == keys.LAYOUT_AUTO else layout
    frames = []
    for index, (symbols, pos, head) in enumerate(read_ipi_xyz(positions)):
        step = head["step"]
        if not all(step in parts[a] for a in "xyz"):
            continue
        scale = _scale(head["unit"] or "atomic_unit", positions, index)
        cell = Atoms(cell=head["cell"]).cell  # from (a, b, c, α, β, γ)
        atoms = Atoms(symbols, positions=pos * scale, cell=cell, pbc=pbc)
        rows = np.stack([parts[a][step] for a in "xyz"], axis=1)  # [j, a, b] = Z[j, a, b]
        if rows.shape != (len(atoms), 3, 3):
            raise BornDataError(f"step {step}: {rows.shape[0]} BEC rows for {len(atoms)} atoms",
                                path=path, frame=index)
        keys.set_bec(atoms, keys.to_project_layout(rows, layout))
        atoms.info[keys.IPI_STEP] = step
        atoms.info[keys.SOURCE] = f"{positions}:{index}"
        frames.append(atoms)
    if not frames:
        raise BornDataError("no step is present in the positions and all three BEC files",
                            path=path)
    return frames


def read_ipi(path, fmt, layout=keys.LAYOUT_AUTO):
    """The ``read_frames`` hook: frames of an i-PI trajectory (``"ipi-traj"``); a ``bec.txt``
    (``"ipi-bec"``) lists no structure and is refused with a pointer to :func:`read_ipi_bec`."""
    if fmt == "ipi-bec":
        raise BornDataError("an i-PI bec.txt lists no structure; use "
                            "bornml.io.ipi.read_ipi_bec(path) and keys.set_bec(atoms, bec)",
                            path=path)
    return read_ipi_trajectory(path, layout)
