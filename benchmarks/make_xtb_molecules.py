"""A many-species molecular Born-charge set from GFN2-xTB (semi-empirical, not DFT): conformers
of the G2 molecules made of H C N O F Si P S Cl (9 species, no cell, pbc False).

Z[j, a, b] = dμ_a/dr_{jb} (e) by central differences (h = 1e-3 Å) of the xTB dipole μ (the
project convention: a = dipole component, b = displacement). Every frame is checked: the
acoustic sum rule Σ_j Z_j ≈ 0 (a neutral molecule's dipole does not change under
translation) and the rotational sum rule — for a small rotation R, μ(R r) − μ(r) must equal
Σ_j Z_j (R r_j − r_j) to first order and R μ − μ; the transpose of Z fails it for these
non-symmetric tensors. Output: extxyz with ``bec:R:9``, ``info["dipole"]`` (e·Å),
``info["energy"]`` (eV), ``arrays["forces"]`` (eV/Å), ``info["molecule"]``.

    pip install tblite
    python benchmarks/make_xtb_molecules.py [--conformers 6] [--sigma 0.05]
           [--output benchmarks/out/xtb_molecules.extxyz]
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

BOHR = 0.52917721067  # Å
HARTREE = 27.211386245988  # eV
ELEMENTS = {"H", "C", "N", "O", "F", "Si", "P", "S", "Cl"}


def xtb(numbers, positions):
    """(dipole e·Å, energy eV, forces eV/Å) of GFN2-xTB."""
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", numbers, positions / BOHR)
    calc.set("verbosity", 0)
    calc.set("accuracy", 0.01)  # tight SCC: finite differences of μ need it
    res = calc.singlepoint()
    return (np.asarray(res.get("dipole")) * BOHR, float(res.get("energy")) * HARTREE,
            -np.asarray(res.get("gradient")) * HARTREE / BOHR)


def born_charges(numbers, positions, h=1e-3):
    """Z (N, 3, 3), Z[j, a, b] = dμ_a/dr_jb (e), central differences."""
    z = np.zeros((len(numbers), 3, 3))
    for j in range(len(numbers)):
        for b in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[j, b] += h
            minus[j, b] -= h
            z[j, :, b] = (xtb(numbers, plus)[0] - xtb(numbers, minus)[0]) / (2 * h)
    return z


def rotation_residual(numbers, positions, z, mu, angle=1e-3):
    """Largest |μ(Rr) − μ − Σ_j Z_j (R r_j − r_j)| (e·Å) over small rotations about x, y, z,
    for Z and for its transpose: the first-order change of the dipole under a rotation
    tells Z from Zᵀ."""
    ours, transposed = 0.0, 0.0
    centre = positions.mean(axis=0)
    for axis in range(3):
        k = np.zeros(3)
        k[axis] = angle
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rot = np.eye(3) + kx + kx @ kx / 2
        moved = (positions - centre) @ rot.T + centre
        change = xtb(numbers, moved)[0] - mu
        d = moved - positions
        ours = max(ours, np.linalg.norm(change - np.einsum("jab,jb->a", z, d)))
        transposed = max(transposed, np.linalg.norm(change - np.einsum("jba,jb->a", z, d)))
    return ours, transposed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conformers", type=int, default=6)
    parser.add_argument("--sigma", type=float, default=0.05, help="displacement σ in Å")
    parser.add_argument("--output", default=str(Path(__file__).parent / "out" /
                                                 "xtb_molecules.extxyz"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import ase.io
    from ase.collections import g2

    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    frames, failed, asr, rot_ours, rot_t = [], [], 0.0, [], []
    molecules = [a for a in g2 if set(a.get_chemical_symbols()) <= ELEMENTS and len(a) >= 3
                 and a.numbers.sum() % 2 == 0]
    for mol in molecules:
        for _ in range(args.conformers):
            atoms = mol.copy()
            atoms.positions += rng.normal(scale=args.sigma, size=atoms.positions.shape)
            try:
                mu, energy, forces = xtb(atoms.numbers, atoms.positions)
                z = born_charges(atoms.numbers, atoms.positions)
                ours, transposed = rotation_residual(atoms.numbers, atoms.positions, z, mu)
            except Exception as err:  # noqa: BLE001 - report and continue
                failed.append(f"{mol.get_chemical_formula()}: {err}")
                continue
            asr = max(asr, float(np.abs(z.sum(axis=0)).max()))
            rot_ours.append(ours)
            rot_t.append(transposed)
            atoms.pbc = False
            atoms.info.update(molecule=mol.get_chemical_formula(), dipole=mu, energy=energy)
            atoms.arrays["forces"] = forces
            atoms.arrays["bec"] = z.reshape(len(atoms), 9)
            frames.append(atoms)
        print(f"{mol.get_chemical_formula():>10s}: {len(frames)} frames so far", flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(args.output, frames, format="extxyz")
    counts = {}
    for atoms in frames:
        for s in set(atoms.get_chemical_symbols()):
            counts[s] = counts.get(s, 0) + 1
    print(json.dumps({"benchmark": "make_xtb_molecules", "frames": len(frames),
                      "molecules": len(molecules), "species_frames": counts,
                      "max_asr_residual_e": asr,
                      "rotation_residual_e_angstrom": {
                          "max": max(rot_ours), "median": float(np.median(rot_ours))},
                      "rotation_residual_transposed_e_angstrom": {
                          "max": max(rot_t), "median": float(np.median(rot_t))},
                      "frames_where_transpose_fits_better": int(np.sum(
                          np.array(rot_t) < np.array(rot_ours))),
                      "failed": failed, "seconds": round(time.perf_counter() - start, 1),
                      "output": args.output}))


if __name__ == "__main__":
    main()
