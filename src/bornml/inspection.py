"""What a data file holds, and whether its Born charges look right: ``bornml inspect DATA``.

Per file: frames, species and counts, the per-atom and per-frame keys, periodicity, and three
checks of the labels (Z[j, a, b] = dP_a/dr_jb, e):

- **acoustic sum rule** (ASR): |Σ_j Z_j| / N per frame, e. DFT violates it slightly (finite
  grids); large values mean a broken file or a partial structure;
- **neutrality**: Σ_j tr(Z_j)/3 per frame, e (the trace part of the ASR);
- **layout** (which index is the field): for an isolated molecule the rotational sum rule.
  Rotating the molecule by θ rotates its dipole, δμ = θ × μ, so

      M[a, c] = Σ_j Σ_{b,d} Z[j, a, b] ε_{bcd} r_{jd}   (r about the centroid, ASR-corrected Z)

  must equal ε_{acd} μ_d: an antisymmetric matrix, whatever μ is. The symmetric part of M
  is the residual; it is computed for the file's Z (P-r) and for its transpose (r-P). The
  orientation whose residual is much smaller is the right one; with symmetric tensors both
  are equal and the data cannot tell (nor does it matter). A periodic crystal has no such
  rule: its orientation comes from the format alone, which is said.
"""

import numpy as np

from . import keys

#: a verdict needs one orientation's residual below this fraction of the other's
LAYOUT_RATIO = 0.3

_LEVI_CIVITA = np.zeros((3, 3, 3))
for _a, _b, _c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
    _LEVI_CIVITA[_a, _b, _c], _LEVI_CIVITA[_a, _c, _b] = 1.0, -1.0


def rotational_residual(bec, positions):
    """(residual e·Å, μ (3,) e·Å) of the rotational sum rule for one molecule: the Frobenius
    norm of the symmetric part of M (module docstring) and the dipole its antisymmetric part
    implies. ``bec`` (N, 3, 3) e in the P-r layout, ``positions`` (N, 3) Å."""
    z = bec - bec.mean(axis=0)
    r = positions - positions.mean(axis=0)
    m = np.einsum("jab,bcd,jd->ac", z, _LEVI_CIVITA, r)
    sym = 0.5 * (m + m.T)
    anti = 0.5 * (m - m.T)
    mu = 0.5 * np.einsum("acd,ac->d", _LEVI_CIVITA, anti)  # ε_acd μ_d = anti[a, c]
    return float(np.linalg.norm(sym)), mu


def is_isolated(atoms, bond_cutoff=3.0):
    """True for a molecule: no periodic direction, or no pair within ``bond_cutoff`` Å that
    crosses a cell boundary (a molecule in a box with a vacuum gap)."""
    if not atoms.pbc.any():
        return True
    from .descriptors.neighbors import neighbor_list, periodic_directions

    return not periodic_directions(neighbor_list(atoms, bond_cutoff), atoms.positions).any()


def format_provenance(paths, fmt=None):
    """{file: "format: how its orientation is known"} for data files ``paths`` (format
    ``fmt`` given, or detected as :func:`bornml.io.read_frames` does)."""
    from .io.readers import ORIENTATION_PROVENANCE, detect_format, expand_paths

    out = {}
    given = fmt
    for path in expand_paths(paths):
        fmt = given or detect_format(path)
        out[str(path)] = f"{fmt}: " + ORIENTATION_PROVENANCE.get(
            fmt, "project convention (row = field) unless --layout r-P says otherwise")
    return out


def inspect_frames(frames, path=None):
    """A JSON-ready report of ``frames`` (from :func:`bornml.io.read_frames`)."""
    from ase.data import chemical_symbols

    numbers = np.concatenate([f.numbers for f in frames])
    report = {"file": None if path is None else str(path), "n_frames": len(frames),
              "n_atoms": sorted({len(f) for f in frames}),
              "species": {chemical_symbols[z]: int((numbers == z).sum())
                          for z in sorted(set(numbers.tolist()))},
              "per_atom_keys": sorted({k for f in frames for k in f.arrays}),
              "frame_keys": sorted({k for f in frames for k in f.info if k != keys.SOURCE}),
              "units": {"positions": "Å", keys.BEC: "e (Z[j,a,b] = dP_a/dr_jb)"}}
    isolated = [is_isolated(f) for f in frames]
    report["structure"] = ("molecule" if all(isolated) else "periodic" if not any(isolated)
                           else "mixed")
    labelled = [f for f in frames if keys.BEC in f.arrays]
    report["n_labelled"] = len(labelled)
    if not labelled:
        return report
    asr = [np.abs(keys.bec_of(f).sum(axis=0)).max() / len(f) for f in labelled]
    charge = [np.trace(keys.bec_of(f), axis1=1, axis2=2).sum() / 3 for f in labelled]
    report["asr_residual_per_atom"] = {"max": float(np.max(asr)), "median": float(np.median(asr))}
    report["total_charge"] = {"max_abs": float(np.max(np.abs(charge))),
                              "median": float(np.median(charge))}
    report["max_antisymmetry"] = max(float(np.abs(b - b.transpose(0, 2, 1)).max())
                                     for b in map(keys.bec_of, labelled))
    report["layout"] = layout_check(labelled)
    return report


def layout_check(frames):
    """{verdict, residuals, why} of the rotational sum rule over the labelled isolated
    molecules among ``frames`` (module docstring)."""
    frames = [f for f in frames if keys.BEC in f.arrays]
    molecules = [f for f in frames if is_isolated(f)]
    asym = max((float(np.abs(b - b.transpose(0, 2, 1)).max())
                for b in map(keys.bec_of, molecules)), default=0.0)
    if not molecules:
        return {"verdict": "cannot tell",
                "why": "periodic frames have no rotational sum rule: the layout follows from "
                       "the file format (see the README's table of formats)"}
    as_read = swapped = scale = 0.0  # sums over the molecules
    for f in molecules:
        z, r = keys.bec_of(f), f.positions - f.positions.mean(axis=0)
        as_read += rotational_residual(z, f.positions)[0]
        swapped += rotational_residual(z.transpose(0, 2, 1), f.positions)[0]
        scale += float(np.sum(np.linalg.norm(z - z.mean(0), axis=(1, 2))
                              * np.linalg.norm(r, axis=1)))
    n = len(molecules)
    out = {"rotational_residual_P-r": as_read / n, "rotational_residual_r-P": swapped / n}
    if as_read < LAYOUT_RATIO * swapped:
        out["verdict"] = "P-r (as read)"
    elif swapped < LAYOUT_RATIO * as_read:
        out["verdict"] = "r-P: the tensors are transposed; read them with --layout r-P"
    else:
        out["verdict"] = "cannot tell"
        if asym < 1e-3:
            out["why"] = "the tensors are (nearly) symmetric, so both layouts fit equally"
        elif max(as_read, swapped) < 1e-3 * scale:
            out["why"] = ("both layouts obey the rule: the molecule's symmetry (e.g. an "
                          "inversion centre) makes it blind to the orientation")
        else:
            out["why"] = ("both layouts violate the rule similarly (not a stationary geometry, "
                          "or noisy labels)")
    return out


def format_report(report):
    """Human-readable lines of :func:`inspect_frames`' report."""
    lines = [f"{report['file']}: {report['n_frames']} frames, atoms per frame "
             f"{report['n_atoms']}, {report['structure']}"]
    lines += [f"format of {name}: {text}" for name, text in report.get("formats", {}).items()]
    lines += ["species: " + ", ".join(f"{s} {n}" for s, n in report["species"].items()),
             "per-atom keys: " + ", ".join(report["per_atom_keys"]),
             "frame keys: " + (", ".join(report["frame_keys"]) or "-"),
             f"Born charges in {report['n_labelled']} frames (e, Z[j,a,b] = dP_a/dr_jb)"]
    if report["n_labelled"]:
        lines += [(f"acoustic sum rule |Σ_j Z_j|/N: max {report['asr_residual_per_atom']['max']:.4f}"
                  f" e, median {report['asr_residual_per_atom']['median']:.4f} e"),
                  (f"total charge Σ_j tr(Z_j)/3: largest |.| {report['total_charge']['max_abs']:.4f}"
                  " e"),
                  f"largest |Z_ab − Z_ba|: {report['max_antisymmetry']:.4f} e"]
        layout = report["layout"]
        if "rotational_residual_P-r" in layout:
            lines.append(f"rotational sum rule residual (e·Å): as read (P-r) "
                         f"{layout['rotational_residual_P-r']:.4f}, transposed (r-P) "
                         f"{layout['rotational_residual_r-P']:.4f}")
        lines.append(f"layout: {layout['verdict']}"
                     + (f" ({layout['why']})" if "why" in layout else ""))
    return "\n".join(lines)
