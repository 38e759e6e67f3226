"""VASP ``vasprun.xml``: one frame per ionic step (``<calculation>``) that holds Born charges.

Read per step: the structure (``<structure>``: ``basis`` Å, fractional ``positions``; species
from ``<atominfo>``), ``born_charges`` → ``arrays["bec"]`` (n, 3, 3) e, ``epsilon`` (ε∞ with
local-field effects, electronic only; ``epsilon_ion`` is not added) → ``info["epsilon_inf"]``,
``forces`` (n, 3) eV/Å, ``e_fr_energy`` (TOTEN) → ``info["energy"]`` eV (``e_0_energy`` →
``info["energy_sigma0"]``), ``stress`` (kBar) → ``info["stress"]`` Voigt (6,) eV/Å³ in ASE's
sign convention. ``bornml_source`` is ``path:k`` with k the ``<calculation>`` index.

Orientation: each ``<set>`` of ``born_charges`` is one ion, its three ``<v>`` rows are read as
rows of Z[F,u] (``"P-r"``), as VASP prints OUTCAR. This is *assumed* (phonopy reads them the
same way); it is not pinned by physics: crystal symmetry and the acoustic sum rule hold for
Z and Zᵀ alike (``Z' = R Z Rᵀ`` implies ``Z'ᵀ = R Zᵀ Rᵀ``). The orientation *relative to an
independent code* is checked in the tests: the antisymmetric part of the Si tensor of
α-quartz, as a chirality-invariant scalar, has the sign of ABINIT's DDB (whose derivative
indices are labelled) — see ``tests/test_format_readers.py``.
"""

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.units import GPa

from .. import keys
from ..errors import BornDataError
from ._common import finish, set_bec

KEY = "born_charges"


def _varray(node, name, path, frame):
    arr = node.find(f"varray[@name='{name}']") if node is not None else None
    if arr is None:
        return None
    try:
        return np.array([[float(x) for x in v.text.split()] for v in arr.findall("v")])
    except (ValueError, AttributeError) as err:
        raise BornDataError(f"unparsable <varray name={name!r}>: {err}", path=path,
                            frame=frame, key=name) from err


def _energies(calc):
    node = calc.find("energy")
    out = {}
    for item in node.findall("i") if node is not None else []:
        try:
            out[item.get("name")] = float(item.text)
        except (TypeError, ValueError):
            pass
    return out


def _born(calc, n, path, frame):
    node = calc.find(f"array[@name='{KEY}']")
    if node is None:
        return None
    sets = node.findall("set")
    try:
        block = np.array([[[float(x) for x in v.text.split()] for v in s.findall("v")]
                          for s in sets])
    except (ValueError, AttributeError) as err:
        raise BornDataError(f"unparsable number: {err}", path=path, frame=frame,
                            key=KEY) from err
    if block.shape != (n, 3, 3):
        raise BornDataError(f"{len(sets)} ion sets of shape {block.shape[1:]} for {n} atoms",
                            path=path, frame=frame, key=KEY)
    return block


def read_vasprun(path, layout=keys.LAYOUT_AUTO, require_bec=True):
    """Frames of a ``vasprun.xml`` (see the module docstring); list of ``ase.Atoms``."""
    path = Path(path)
    if not path.is_file():
        raise BornDataError("file not found", path=path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:  # a run still going has no closing tags
        raise BornDataError(f"unparsable XML (truncated run?): {err}", path=path) from err
    symbols = [rc.findall("c")[0].text.strip()
               for rc in root.findall("atominfo/array[@name='atoms']/set/rc")]
    if not symbols:
        raise BornDataError("no <atominfo> atoms", path=path, key="atominfo")
    frames, last = [], root.find("structure[@name='initialpos']")
    for k, calc in enumerate(root.findall("calculation")):
        struct = calc.find("structure")
        struct = last = struct if struct is not None else last
        cell = _varray(struct.find("crystal"), "basis", path, k) if struct is not None else None
        frac = _varray(struct, "positions", path, k)
        if cell is None or frac is None or frac.shape != (len(symbols), 3):
            raise BornDataError("no structure (basis, positions) for this step", path=path,
                                frame=k, key="structure")
        atoms = Atoms(symbols=symbols, cell=cell, scaled_positions=frac, pbc=True)
        born = _born(calc, len(atoms), path, k)
        if born is None and require_bec:
            continue
        if born is not None:
            set_bec(atoms, born, path, k, KEY, keys.LAYOUT_P_R, layout)
        forces = _varray(calc, "forces", path, k)
        if forces is not None:
            atoms.arrays[keys.FORCES] = forces
        stress = _varray(calc, "stress", path, k)
        if stress is not None:
            s = -0.1 * GPa * stress
            atoms.info[keys.STRESS] = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        energies = _energies(calc)
        if "e_fr_energy" in energies:
            atoms.info[keys.ENERGY] = energies["e_fr_energy"]
        if energies.get("e_0_energy"):  # VASP 5.4.4 writes 0 here
            atoms.info["energy_sigma0"] = energies["e_0_energy"]
        eps = _varray(calc, "epsilon", path, k)
        frames.append(finish(atoms, path, k, eps))
    if not frames and require_bec:
        raise BornDataError("no <array name='born_charges'> in any <calculation> (run VASP "
                            "with LEPSILON or LCALCEPS)", path=path, frame=0, key=KEY)
    return frames
