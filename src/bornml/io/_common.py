"""Helpers shared by the file-format readers: numbers, blocks of rows, and frame assembly."""

import re
from pathlib import Path

import numpy as np

from .. import keys
from ..errors import BornDataError

FLOAT = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?"
BOHR = 0.529177210903  #: Å per bohr (CODATA 2018, as QE and ABINIT use)


def lines_of(path):
    """The file's lines; a ``.bz2`` file is decompressed. Raises BornDataError if missing."""
    path = Path(path)
    if not path.is_file():
        raise BornDataError("file not found", path=path)
    if path.suffix == ".bz2":
        import bz2

        return bz2.open(path, "rt", errors="replace").read().splitlines()
    return path.read_text(errors="replace").splitlines()


def floats(text, path, frame, key, n=None):
    """All numbers in ``text`` (Fortran ``D`` exponents allowed); exactly ``n`` if given."""
    vals = re.findall(FLOAT, text)
    if n is not None and len(vals) != n:
        raise BornDataError(f"expected {n} numbers, got {len(vals)} in {text.strip()[:60]!r}",
                            path=path, frame=frame, key=key)
    return np.array([float(v.replace("D", "E").replace("d", "e")) for v in vals])


def rows(lines, start, count, path, frame, key, ncol=3):
    """``count`` lines from ``start`` with their last ``ncol`` numbers: (count, ncol)."""
    block = lines[start:start + count]
    if len(block) < count:
        raise BornDataError(f"truncated block: {len(block)} of {count} rows", path=path,
                            frame=frame, key=key)
    out = []
    for ln in block:
        vals = floats(ln, path, frame, key)
        if len(vals) < ncol:
            raise BornDataError(f"expected {ncol} numbers in {ln.strip()[:60]!r}", path=path,
                                frame=frame, key=key)
        out.append(vals[-ncol:])
    return np.array(out)


def set_bec(atoms, block, path, frame, key, stored, layout):
    """Store ``block`` (n, 3, 3), written in the file's order ``stored``, as ``arrays["bec"]``
    (project layout, via ``keys.set_bec``).

    ``layout`` ``"auto"`` uses ``stored``; ``"P-r"`` / ``"r-P"`` override how each 3×3 block
    as written in the file is read.
    """
    if layout not in keys.LAYOUTS:
        raise BornDataError(f"unknown BEC layout {layout!r}; use one of {keys.LAYOUTS}",
                            path=path, key="layout")
    block = np.asarray(block, dtype=np.float64)
    if block.shape != (len(atoms), 3, 3):
        raise BornDataError(f"BEC block has shape {block.shape}, expected ({len(atoms)}, 3, 3)",
                            path=path, frame=frame, key=key)
    bec = keys.to_project_layout(block, stored if layout == keys.LAYOUT_AUTO else layout)
    bad = np.flatnonzero(~np.isfinite(bec).all(axis=(1, 2)))
    if bad.size:
        raise BornDataError(f"BEC contains NaN or inf at atoms {bad[:10].tolist()}",
                            path=path, frame=frame, key=key)
    keys.set_bec(atoms, bec)  # stored (n, 9) row-major, read back with keys.bec_of
    return atoms


def finish(atoms, path, frame, epsilon=None):
    """Set ``info["epsilon_inf"]`` (3, 3) when known and ``info["bornml_source"]``."""
    if epsilon is not None:
        atoms.info[keys.EPSILON_INF] = np.asarray(epsilon, dtype=np.float64).reshape(3, 3)
    atoms.info[keys.SOURCE] = f"{path}:{frame}"
    return atoms
