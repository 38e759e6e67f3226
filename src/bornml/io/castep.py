"""CASTEP ``.castep`` output: the "Born Effective Charges" block of a phonon / E-field run.

Read: the last "Real Lattice(A)" (Å) and "Fractional coordinates of atoms" blocks before the
charges, the charges per atom (``Sp  k  z z z`` then two rows of 3, e; matched to the structure
by species and index), "Optical Permittivity (f->infinity)" → ``info["epsilon_inf"]`` when
printed, "Final energy" (eV) → ``info["energy"]``. Several blocks (a run with several
structures): one frame per block.

Orientation: each 3×3 is read as rows = field direction (Z[F,u], ``"P-r"``). This is
**assumed**, not pinned: the only sample (BC2N, Pmm2) has diagonal tensors, and no CASTEP
documentation of the printed order was available. Pass ``layout="r-P"`` if your file is
known to be the transpose.
"""

import re
from pathlib import Path

import numpy as np
from ase import Atoms

from .. import keys
from ..errors import BornDataError
from ._common import FLOAT, finish, floats, lines_of, rows, set_bec

KEY = "Born Effective Charges"


def _lattice(lines, stop, path):
    heads = [i for i in range(stop) if lines[i].strip().startswith("Real Lattice(A)")]
    if not heads:
        raise BornDataError("no 'Real Lattice(A)' block before the charges", path=path,
                            frame=0, key="Real Lattice")
    return rows([" ".join(ln.split()[:3]) for ln in lines[heads[-1] + 1:heads[-1] + 4]], 0, 3,
                path, 0, "Real Lattice")


def _fractional(lines, stop, path):
    heads = [i for i in range(stop) if "Fractional coordinates of atoms" in lines[i]]
    if not heads:
        raise BornDataError("no 'Fractional coordinates of atoms' block", path=path, frame=0,
                            key="Fractional coordinates")
    pat = re.compile(rf"^\s*x\s+([A-Za-z][\w:]*)\s+(\d+)\s+({FLOAT})\s+({FLOAT})\s+({FLOAT})")
    labels, frac = [], []
    for ln in lines[heads[-1] + 1:]:
        m = pat.match(ln)
        if m:
            labels.append((m.group(1), int(m.group(2))))
            frac.append([float(m.group(k)) for k in (3, 4, 5)])
        elif labels:  # the first line after the atom rows ends the table
            break
    return labels, np.array(frac)


def _born(lines, start, labels, path, frame):
    where = {lab: j for j, lab in enumerate(labels)}
    z = np.full((len(labels), 3, 3), np.nan)
    i = start + 1
    while i < len(lines) and not re.match(r"^\s*[A-Za-z]", lines[i]):
        i += 1  # the dashes under the title
    for _ in labels:
        parts = lines[i].split() if i < len(lines) else []
        if len(parts) < 5 or (parts[0], _int(parts[1])) not in where:
            raise BornDataError(f"expected 'species index z z z', got {' '.join(parts)[:50]!r}",
                                path=path, frame=frame, key=KEY)
        block = rows([" ".join(parts[2:])] + lines[i + 1:i + 3], 0, 3, path, frame, KEY)
        z[where[(parts[0], int(parts[1]))]] = block
        i += 3
    return z


def _int(text):
    try:
        return int(text)
    except ValueError:
        return None


def read_castep(path, layout=keys.LAYOUT_AUTO, require_bec=True):
    """``.castep`` → one frame per "Born Effective Charges" block."""
    path = Path(path)
    lines = lines_of(path)
    heads = [i for i, ln in enumerate(lines) if ln.strip() == KEY]
    if not heads:
        raise BornDataError(f"no {KEY!r} block (phonon or efield task with E-field "
                            "perturbation)", path=path, frame=0, key=KEY)
    frames = []
    for k, start in enumerate(heads):
        cell = _lattice(lines, start, path)
        labels, frac = _fractional(lines, start, path)
        symbols = [lab.split(":")[0] for lab, _ in labels]
        atoms = Atoms(symbols=symbols, cell=cell, scaled_positions=frac, pbc=True)
        set_bec(atoms, _born(lines, start, labels, path, k), path, k, KEY, keys.LAYOUT_P_R,
                layout)
        prev = heads[k - 1] if k else 0
        eps = [i for i in range(prev, len(lines) if k == len(heads) - 1 else heads[k + 1])
               if "Optical Permittivity" in lines[i]]
        epsilon = None
        if eps:
            table = [ln for ln in lines[eps[0] + 2:eps[0] + 5]]
            epsilon = np.array([floats(ln, path, k, "Optical Permittivity")[:3]
                                for ln in table])
        energy = [ln for ln in lines[prev:start] if ln.strip().startswith("Final energy")]
        if energy:
            atoms.info[keys.ENERGY] = float(re.findall(FLOAT, energy[-1].split("=")[-1])[0])
        frames.append(finish(atoms, path, k, epsilon))
    return frames


FORMATS = {"castep": read_castep}
ALIASES = {"castep-castep": "castep"}


def guess_format(path, head):
    """``"castep"`` for a ``.castep`` file or CASTEP's banner, else None."""
    if Path(path).suffix.lower() == ".castep" or "CCC   AA    SSS  TTTTT  EEEEE  PPPP" in head:
        return "castep"
    return None
