"""Figure: temperature along NVE runs of the kernel force field (water: 1 ps from 300 K with three
settings, from ``force_field.py nve`` JSON lines; α-quartz: the ``ff_md.py`` runs, from the
velocities in the trajectories). Not part of the package.

    python benchmarks/ff_stability_plot.py     # → docs/figures/ff_nve_stability.png
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO

from bornml import units

OUT = REPO / "benchmarks" / "out"
WATER = {  # JSON line file → label
    "ff_nve_water_c4z4_1ps.jsonl": "water, cutoff 4 Å, n 6, l 4, ζ 4, 500 refs",
    "ff_nve_water_default1000_1ps.jsonl": "water, cutoff 5 Å, n 7, l 6, ζ 2, 1000 refs",
}


def quartz_temperatures(path):
    """(time ps, T K) of an ff_md.py trajectory (velocities Å/fs in the frames)."""
    import ase.io

    times, temps = [], []
    for atoms in ase.io.iread(str(path), index="::25"):
        v = atoms.arrays["velocities"]
        ekin = 0.5 * np.sum(atoms.get_masses()[:, None] * v ** 2) * units.AMU_A2_PER_FS2_TO_EV
        temps.append(2 * ekin / ((3 * len(atoms) - 3) * units.BOLTZMANN_EV_PER_K))
        times.append(atoms.info["time_fs"] / 1000)
    return np.array(times), np.array(temps)


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, label in WATER.items():
        path = OUT / name
        if path.exists():
            rec = json.loads(path.read_text().splitlines()[-1])
            trace = rec["T_trace_K_every_100fs"]
            axes[0].plot(0.1 * np.arange(len(trace)), trace, marker="o", ms=3, label=label)
    axes[0].axhline(300, color="k", lw=0.6, ls=":")
    axes[0].set_xlabel("time (ps)")
    axes[0].set_ylabel("temperature (K)")
    axes[0].set_title("water NVE from a DFT frame at 300 K", fontsize=9)
    axes[0].legend(frameon=False, fontsize=7)
    for path in sorted((OUT / "quartz_ff_md").glob("quartz_ff_nve_*.extxyz")):
        t, temp = quartz_temperatures(path)
        axes[1].plot(t, temp, lw=0.8, label=path.stem.split("_")[-1])
    axes[1].set_xlabel("time (ps)")
    axes[1].set_title("α-quartz NVE runs (72 atoms)", fontsize=9)
    axes[1].legend(frameon=False, fontsize=7, title="run", title_fontsize=7)
    fig.tight_layout()
    out = REPO / "docs" / "figures" / "ff_nve_stability.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    print(out)


if __name__ == "__main__":
    main()
