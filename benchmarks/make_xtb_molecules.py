"""A many-species molecular Born-charge set from GFN2-xTB (semi-empirical, not DFT): distorted
conformers of the closed-shell G2 molecules (``ase.collections.g2``) made of H C N O F Si P S Cl
(9 species) with at least 3 atoms. Radicals (odd electron count) and the two triplet G2 entries
(``CH2_s3B1d``, ``SiH2_s3B1d``: non-zero initial magnetic moments) are skipped; every
calculation is neutral and closed-shell (tblite ``charge=0, uhf=0``).

Conformers: K per molecule (``--conformers``, default 6), every atom displaced by a Gaussian of
σ = 0.05 Å (``--sigma``); the random stream of a molecule is seeded by (``--seed``, its G2 name),
so a frame does not depend on which other molecules are in the set.

Born charges, project convention ``Z[j, a, b] = dμ_a/dr_{jb}`` in e (a = dipole component,
b = displacement direction), by central differences of the xTB dipole with h = 1e-3 Å
(``--step``): tblite works in bohr and returns μ in e·bohr; positions go in as Å / a0 and μ
comes back as e·bohr × a0, so Z = Δμ[e·Å] / Δr[Å] = Δμ[e·bohr] / Δr[bohr], in e either way.
The SCC is converged tightly (tblite accuracy 1e-4): with the looser 0.01 the SCC noise shows
up as acoustic-sum-rule errors of up to ~1e-3 e in a few frames (~1e-6 e with 1e-4).

Checks, asserted for every frame and reported (maxima) in the summary:

- acoustic sum rule: max |Σ_j Z_j| ≈ 0 (a neutral molecule's dipole does not move under a
  translation);
- rotational sum rule (orientation check): rotating the molecule by a small angle θ about each
  axis k must rotate its dipole, so with R± = R(±θ k̂) about the centroid
  (a) μ(R+ r) − μ(R− r)  ≈ Σ_j Z_j (R+ r_j − R− r_j)   (first-order response, xTB vs Z),
  (b) μ(R+ r) − μ(R− r)  ≈ (R+ − R−) μ(r)               (the dipole rotates with the molecule),
  (c) Σ_j Z_j (k̂ × r_j) = k̂ × μ                         (the infinitesimal form, no extra xTB),
  all O(θ³) by the central (±θ) differences. The same residuals with Zᵀ in place of Z are
  reported for contrast: Zᵀ fails (a)/(c) by orders of magnitude, so this fixes the orientation
  Z[j, a, b] (row a = dipole component), not just the magnitude.

After writing, the file is read back with ``bornml.read_frames`` and the Born charges are
asserted to equal the computed (N, 3, 3) arrays (same orientation, to the 8 decimals of extxyz).

Output (extxyz, pbc False, no cell): ``arrays["bec"]`` written as ``bec:R:9`` (row-major,
Z.reshape(N, 9)), ``arrays["forces"]`` (eV/Å), ``info["dipole"]`` (e·Å), ``info["energy"]``
(eV), ``info["molecule"]`` (G2 name). One JSON summary line at the end.

    pip install tblite          # benchmark-only dependency, not in pyproject
    OMP_NUM_THREADS=1 python benchmarks/make_xtb_molecules.py [--conformers 6] [--sigma 0.05]
        [--step 1e-3] [--seed 0] [--output benchmarks/out/xtb_molecules.extxyz]

About one minute on one core for the default 98 molecules × 6 conformers.
"""

import argparse
import json
import os
import time
import zlib
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from bornml.units import BOHR_ANGSTROM

HARTREE_EV = 27.211386245988  # CODATA 2018
ELEMENTS = {"H", "C", "N", "O", "F", "Si", "P", "S", "Cl"}
ACCURACY = 1e-4  # tblite SCC thresholds (smaller = tighter; default 1.0)
ASR_TOL = 1e-3  # e
ROTATION_TOL = 1e-4  # e·Å for rotations by ±1e-3 rad; e·Å per rad for the sum rule (c)
ROUND_TRIP_TOL = 1e-7  # e; extxyz keeps 8 decimals


def xtb(numbers, positions):
    """(dipole e·Å, energy eV, forces eV/Å) of neutral closed-shell GFN2-xTB; positions in Å."""
    from tblite.interface import Calculator

    calc = Calculator("GFN2-xTB", numbers, positions / BOHR_ANGSTROM, charge=0.0, uhf=0)
    calc.set("verbosity", 0)
    calc.set("accuracy", ACCURACY)
    res = calc.singlepoint()
    return (np.asarray(res.get("dipole")) * BOHR_ANGSTROM,
            float(res.get("energy")) * HARTREE_EV,
            -np.asarray(res.get("gradient")) * HARTREE_EV / BOHR_ANGSTROM)


def born_charges(numbers, positions, h):
    """Z (N, 3, 3) in e, Z[j, a, b] = dμ_a/dr_jb, central differences with step h (Å)."""
    z = np.zeros((len(numbers), 3, 3))
    for j in range(len(numbers)):
        for b in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[j, b] += h
            minus[j, b] -= h
            z[j, :, b] = (xtb(numbers, plus)[0] - xtb(numbers, minus)[0]) / (2 * h)
    return z


def rotation(axis, angle):
    """Exact rotation matrix about coordinate axis ``axis`` (0, 1, 2) by ``angle`` (rad)."""
    k = np.zeros(3)
    k[axis] = 1.0
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def rotation_checks(numbers, positions, z, mu, angle=1e-3):
    """Residuals of the rotational checks (a), (b), (c) of the module docstring, each the max
    over the three axes, for Z and (a, c) for Zᵀ."""
    centre = positions.mean(axis=0)
    rel = positions - centre
    out = dict.fromkeys(("response", "dipole_rotates", "sum_rule",
                         "response_transposed", "sum_rule_transposed"), 0.0)
    for axis in range(3):
        rp, rm = rotation(axis, angle), rotation(axis, -angle)
        pos_p, pos_m = rel @ rp.T + centre, rel @ rm.T + centre
        change = xtb(numbers, pos_p)[0] - xtb(numbers, pos_m)[0]
        d = pos_p - pos_m
        k = np.eye(3)[axis]
        kr = np.cross(k, rel)  # (N, 3): generator of the rotation acting on r_j
        for key, zz in (("", z), ("_transposed", z.transpose(0, 2, 1))):
            out["response" + key] = max(out["response" + key], float(
                np.linalg.norm(change - np.einsum("jab,jb->a", zz, d))))
            out["sum_rule" + key] = max(out["sum_rule" + key], float(
                np.linalg.norm(np.einsum("jab,jb->a", zz, kr) - np.cross(k, mu))))
        out["dipole_rotates"] = max(out["dipole_rotates"], float(
            np.linalg.norm(change - (rp - rm) @ mu)))
    return out


def select_molecules():
    """(kept G2 names, skipped {name: reason}) for the element / size / closed-shell filter."""
    from ase.collections import g2

    kept, skipped = [], {}
    for name in g2.names:
        atoms = g2[name]
        if not set(atoms.get_chemical_symbols()) <= ELEMENTS or len(atoms) < 3:
            continue
        if atoms.numbers.sum() % 2:
            skipped[name] = "odd electron count (radical)"
        elif abs(atoms.get_initial_magnetic_moments().sum()) > 1e-6:
            skipped[name] = "open shell in G2 (non-zero magnetic moments)"
        else:
            kept.append(name)
    return kept, skipped


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conformers", type=int, default=6, help="frames per molecule (K)")
    parser.add_argument("--sigma", type=float, default=0.05, help="displacement σ in Å")
    parser.add_argument("--step", type=float, default=1e-3, help="finite-difference h in Å")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None,
                        help="only the first N molecules (quick test)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "out" /
                                                 "xtb_molecules.extxyz"))
    args = parser.parse_args()
    import ase.io
    from ase.collections import g2

    import bornml

    start = time.perf_counter()
    names, skipped = select_molecules()
    names = names[:args.limit]
    frames, zs, failed = [], [], {}
    worst, transpose_better = {"asr": 0.0}, 0
    for i, name in enumerate(names):
        mol = g2[name]
        rng = np.random.default_rng([args.seed, zlib.crc32(name.encode())])
        for _ in range(args.conformers):
            atoms = mol.copy()
            atoms.set_initial_magnetic_moments(None)
            atoms.positions += rng.normal(scale=args.sigma, size=atoms.positions.shape)
            try:
                mu, energy, forces = xtb(atoms.numbers, atoms.positions)
                z = born_charges(atoms.numbers, atoms.positions, args.step)
                rot = rotation_checks(atoms.numbers, atoms.positions, z, mu)
            except Exception as err:  # noqa: BLE001 - report the molecule and go on
                failed[name] = f"{type(err).__name__}: {err}"
                continue
            asr = float(np.abs(z.sum(axis=0)).max())
            label = f"{name} frame {len(frames)}"
            assert asr < ASR_TOL, f"{label}: acoustic sum rule residual {asr:.2e} e"
            for key in ("response", "dipole_rotates", "sum_rule"):
                assert rot[key] < ROTATION_TOL, f"{label}: rotation check {key} {rot[key]:.2e}"
            worst["asr"] = max(worst["asr"], asr)
            transpose_better += rot["response_transposed"] <= rot["response"]
            for key, value in rot.items():
                worst[key] = max(worst.get(key, 0.0), value)
                worst.setdefault(key + "_min", value)
                worst[key + "_min"] = min(worst[key + "_min"], value)
            atoms.pbc = False
            atoms.info.update(molecule=name, dipole=mu, energy=energy)
            atoms.arrays["forces"] = forces
            atoms.arrays["bec"] = z.reshape(len(atoms), 9)
            frames.append(atoms)
            zs.append(z)
        print(f"[{i + 1:3d}/{len(names)}] {name:>22s} ({mol.get_chemical_formula()}): "
              f"{len(frames)} frames, {time.perf_counter() - start:.0f} s", flush=True)

    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(args.output, frames, format="extxyz")

    # round trip through bornml's reader: same (N, 3, 3) orientation as computed
    back = bornml.read_frames(args.output)
    assert len(back) == len(frames), (len(back), len(frames))
    round_trip = 0.0
    for atoms, ref, z in zip(back, frames, zs):
        assert atoms.arrays["bec"].shape == z.shape
        assert atoms.info["molecule"] == ref.info["molecule"]
        assert not atoms.pbc.any()
        round_trip = max(round_trip, float(np.abs(atoms.arrays["bec"] - z).max()))
    assert round_trip < ROUND_TRIP_TOL, f"read-back Z differs by {round_trip:.2e} e"

    frames_with, atoms_of = {}, {}
    for atoms in frames:
        symbols = atoms.get_chemical_symbols()
        for s in set(symbols):
            frames_with[s] = frames_with.get(s, 0) + 1
        for s in symbols:
            atoms_of[s] = atoms_of.get(s, 0) + 1
    print(json.dumps({
        "benchmark": "make_xtb_molecules", "method": "GFN2-xTB (tblite)",
        "frames": len(frames), "molecules": len(names) - len(failed),
        "atoms": sum(len(a) for a in frames), "species": len(atoms_of),
        "frames_with_species": frames_with, "atoms_per_species": atoms_of,
        "conformers": args.conformers, "sigma_angstrom": args.sigma,
        "step_angstrom": args.step, "seed": args.seed,
        "max_asr_residual_e": worst["asr"],
        "max_rotation_response_residual_e_angstrom": worst.get("response"),
        "max_dipole_rotation_residual_e_angstrom": worst.get("dipole_rotates"),
        "max_rotational_sum_rule_residual_e_angstrom": worst.get("sum_rule"),
        "transposed_Z": {"min_rotation_response_residual_e_angstrom":
                         worst.get("response_transposed_min"),
                         "min_rotational_sum_rule_residual_e_angstrom":
                         worst.get("sum_rule_transposed_min"),
                         "frames_where_it_fits_the_rotation_better": int(transpose_better)},
        "max_read_back_difference_e": round_trip,
        "skipped": skipped, "failed": failed,
        "seconds": round(time.perf_counter() - start, 1), "output": args.output}))


if __name__ == "__main__":
    main()
