"""An i-PI Python driver that gives i-PI's driven dynamics (``eda-nve`` / ``eda-nvt`` with
``<bec mode="driver">``) the Born charges of a bornml model.

i-PI loads it as a custom PES, either in-process::

    <ffdirect name="bornml" pbc="false">
      <pes> custom </pes> <pes_path> PATH/TO/bornml/ipi_driver.py </pes_path>
      <parameters> { template: start.xyz, model: water.bornml.npz } </parameters>
    </ffdirect>

or through a socket: ``i-pi-py_driver -u -a ADDRESS -m custom -P PATH/TO/bornml/ipi_driver.py
-o template=start.xyz,model=water.bornml.npz`` (``python -m bornml.ipi_driver`` prints PATH).

Per call it returns zero energy, forces and virial (the potential comes from another forcefield
in the same ``<forces>``, whose results i-PI adds) and the extras ``BEC`` — the (3·N, 3) array
of i-PI, row ``3j + b``, column ``a`` = ``Z[j, a, b]`` in e, so i-PI's ``Z @ E`` is the field
force Σ_a Z[j,a,b] E_a — plus, for molecules (``pbc=False``), ``dipole`` (3,) in e·bohr.
``template``: any file ASE reads with the atoms in i-PI's order (symbols; positions ignored).
"""

import json

import numpy as np

from bornml import keys, units

__DRIVER_NAME__ = "bornml"
__DRIVER_CLASS__ = "BornDriver"


def ipi_bec(bec):
    """i-PI's (3·N, 3) BEC array (row 3j + b, column a) from Z (N, 3, 3), project layout."""
    bec = np.asarray(bec, dtype=float)
    return bec.transpose(0, 2, 1).reshape(-1, 3)


class BornDriver:
    """i-PI PES: Born charges (and the molecular dipole) of ``model`` at i-PI's positions.

    ``template``: structure file (atom order and species); ``model``: a saved bornml model
    (path) or a fitted model object; ``pbc``: periodic (default: the template's, True when it
    has a cell and ``pbc`` is unset)."""

    def __init__(self, template, model, pbc=None, verbose=False, *args, **kwargs):
        import ase.io

        from bornml.models.serialization import load_model

        self.template = ase.io.read(template)
        if pbc is not None:
            self.template.pbc = bool(pbc) if not isinstance(pbc, str) else pbc.lower() == "true"
        self.model = load_model(model) if isinstance(model, (str, bytes)) or hasattr(
            model, "__fspath__") else model
        self.verbose = verbose

    def atoms(self, cell, pos):
        """``ase.Atoms`` (Å) from i-PI's cell (3, 3) bohr, vectors as columns, and pos (N, 3)
        bohr."""
        atoms = self.template.copy()
        atoms.positions = np.asarray(pos, dtype=float).reshape(-1, 3) * units.BOHR_ANGSTROM
        if atoms.pbc.any():
            atoms.cell = np.asarray(cell, dtype=float).T * units.BOHR_ANGSTROM
        return atoms

    def compute_structure(self, cell, pos):
        """(0 Ha, zero forces (N, 3), zero virial (3, 3), JSON extras with ``BEC``, ``dipole``)."""
        atoms = self.atoms(cell, pos)
        pred = self.model.predict_frame(atoms)
        extras = {"BEC": ipi_bec(pred[keys.BEC]).tolist()}
        if not atoms.pbc.any():
            mu = np.asarray(pred[keys.CHARGES]) @ atoms.positions
            if keys.DIPOLES in pred:
                mu = mu + np.asarray(pred[keys.DIPOLES]).sum(axis=0)
            extras["dipole"] = (mu / units.E_BOHR_TO_E_ANGSTROM).tolist()
        pos = np.asarray(pos, dtype=float)
        return 0.0, np.zeros_like(pos), np.zeros((3, 3)), json.dumps(extras)

    def compute(self, cell, pos):
        if isinstance(cell, list):  # batched mode of i-PI
            return [self.compute_structure(c, p) for c, p in zip(cell, pos)]
        return self.compute_structure(cell, pos)

    def __call__(self, cell, pos):
        return self.compute(cell, pos)


if __name__ == "__main__":
    print(__file__)
