"""Write frames with Born effective charges to extended XYZ, losslessly and atomically.

Per-atom columns: ``species``, ``pos`` (Å), ``bec:R:9`` (e; ``Z[j, a, b] = dP_a/dr_{jb}``
row-major, ``a`` slow), then every other array of the frame (``forces`` eV/Å, ``charges`` (N,) e,
``dipoles`` (N, 3) e·Å, ...) and the ``extra_per_atom`` columns. Frame info goes to the comment
line (``energy`` eV, ``epsilon_inf`` (3, 3), ...). Results of an attached ASE calculator are
written once, as ordinary columns / info entries (they win over an array or info entry of the
same name). Floats are written with the shortest repr that round-trips, so
``read_frames(write_frames(...))`` gives bit-identical arrays.
"""

import numpy as np
from ase import Atoms
from ase.io.extxyz import key_val_dict_to_str
from ase.stress import voigt_6_to_full_3x3_stress

from .. import keys
from ..errors import BornDataError
from ..fileutils import atomic_path
from .readers import _move_calc_results, check_bec

_SKIP = (*keys.STRUCTURE_COLUMNS, keys.BEC)


def write_frames(path, frames, *, extra_per_atom=None):
    """Write ``frames`` (an ``ase.Atoms`` or a sequence of them) to the extxyz file ``path``.

    ``extra_per_atom``: optional ``{name: [array per frame]}``, each array of shape (n_atoms,) or
    (n_atoms, k), written as additional per-atom columns. The file is replaced atomically.
    """
    frames = [frames] if isinstance(frames, Atoms) else list(frames)
    extra = dict(extra_per_atom or {})
    for name, values in extra.items():
        if len(values) != len(frames):
            raise BornDataError(f"extra_per_atom has {len(values)} arrays for {len(frames)} "
                                "frames", path=path, key=name)
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        fh.writelines(_frame_text(frame, {k: v[i] for k, v in extra.items()}, path, i)
                      for i, frame in enumerate(frames))


def _fmt_column(name, value, n, path, frame):
    """Return (Properties triple, list of per-atom string lists) for one array."""
    value = np.asarray(value)
    if value.shape[:1] != (n,):
        raise BornDataError(f"per-atom array has shape {value.shape}, expected ({n}, ...)",
                            path=path, frame=frame, key=name)
    value = value.reshape(n, -1)
    kind = value.dtype.kind
    if kind == "f":
        text, code = [[repr(float(x)) for x in row] for row in value], "R"
    elif kind in "iu":
        text, code = [[str(int(x)) for x in row] for row in value], "I"
    elif kind == "b":
        text, code = [["T" if x else "F" for x in row] for row in value], "L"
    else:
        text, code = [[str(x) for x in row] for row in value], "S"
    return f"{name}:{code}:{value.shape[1]}", text


def _frame_text(frame, extra, path, index):
    atoms = frame.copy()
    atoms.calc = frame.calc
    _move_calc_results(atoms)  # calculator results become ordinary arrays / info entries
    n = len(atoms)
    columns = {keys.EXTXYZ_SPECIES: np.array(atoms.get_chemical_symbols()),
               keys.EXTXYZ_POSITIONS: atoms.positions}
    if keys.BEC in atoms.arrays:
        bec = np.asarray(atoms.arrays[keys.BEC], dtype=np.float64)
        if bec.shape not in ((n, 3, 3), (n, 9)):
            raise BornDataError(f"BEC has shape {bec.shape}, expected ({n}, 3, 3)", path=path,
                                frame=index, key=keys.BEC)
        columns[keys.BEC] = check_bec(bec.reshape(n, 3, 3), path, index).reshape(n, 9)
    columns.update((k, v) for k, v in atoms.arrays.items() if k not in _SKIP)
    columns.update(extra)
    props, texts = zip(*(_fmt_column(k, v, n, path, index) for k, v in columns.items()))

    info = {k: v for k, v in atoms.info.items() if k != keys.SOURCE}
    if np.shape(info.get(keys.STRESS)) == (6,):
        info[keys.STRESS] = voigt_6_to_full_3x3_stress(np.asarray(info[keys.STRESS]))
    if np.shape(info.get(keys.EPSILON_INF)) == (3, 3):  # 9 numbers, row-major, like VASP data
        info[keys.EPSILON_INF] = np.asarray(info[keys.EPSILON_INF], dtype=np.float64).ravel()
    info[keys.PBC] = atoms.pbc
    head = ""
    if atoms.cell.any():
        head = 'Lattice="' + " ".join(repr(float(x)) for x in atoms.cell.array.ravel()) + '" '
    head += "Properties=" + ":".join(props) + " " + key_val_dict_to_str(info)
    rows = (f"{texts[0][j][0]:<3}" + " ".join(f"{x:>12}" for t in texts[1:] for x in t[j])
            for j in range(n))
    return f"{n}\n{head}\n" + "".join(r + "\n" for r in rows)
