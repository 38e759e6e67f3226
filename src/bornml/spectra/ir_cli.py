"""The ``bornml ir`` subcommand: IR spectrum n·α(ν̃) from MD trajectories.

Wire-up: ``add_arguments(subparsers.add_parser("ir", ...))`` and ``run(args) -> int``.
"""

import json
import sys

from .ir import DEFAULT_MAX_LAG_FS, DEFAULT_ZERO_PAD, QCFS, WINDOWS

DESCRIPTION = (
    "Compute a finite-temperature infrared spectrum n(ν̃)·α(ν̃) (cm⁻¹ versus wavenumber "
    "ν̃ in cm⁻¹) from MD trajectories, via dM/dt = Σ_j Z_j v_j and its autocorrelation. "
    "Born charges Z come from a trained model (--model) or from the frames themselves "
    "(--bec-from-file). Several trajectories (or --blocks) give a band of mean ± 2 standard "
    "errors.")


def add_arguments(parser):
    """Add the ``bornml ir`` arguments to an ``argparse`` parser."""
    parser.description = parser.description or DESCRIPTION
    parser.add_argument(
        "trajectories", nargs="+", metavar="TRAJ",
        help="MD trajectory files (extxyz, ASE .traj, XDATCAR, vasprun.xml, LAMMPS dump, ...), "
             "read frame by frame. Velocities are taken from the file (extxyz column "
             "'velocities' in Å/fs, or ASE momenta), otherwise from positions by central "
             "differences. Independent runs give the error band.")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="MODEL",
                     help="trained bornml model file that predicts the Born charges")
    src.add_argument("--bec-from-file", action="store_true",
                     help="use the Born effective charges stored in every frame (per-atom "
                          "key 'bec' or an alias, Z[j,a,b] = dP_a/dr_jb in e)")
    parser.add_argument("--timestep", type=float, metavar="FS",
                        help="time between stored frames in fs (not the MD integration step "
                             "unless every step was saved); default: from the file's "
                             "'time_fs'/'timestep_fs' frame info")
    parser.add_argument("--temperature", type=float, metavar="K",
                        help="temperature in K for the lineshape prefactor 1/(k_B T); "
                             "default: kinetic temperature of each trajectory (3N-3 degrees "
                             "of freedom)")
    parser.add_argument("--volume", type=float, metavar="Å3",
                        help="volume in Å^3; default: the mean cell volume. Required for "
                             "non-periodic systems")
    parser.add_argument("--window", choices=tuple(WINDOWS), default="hann",
                        help="window over the correlation lags (default: hann; 'none' = "
                             "plain truncation)")
    parser.add_argument("--max-lag", type=float, metavar="FS", dest="max_lag",
                        help="correlation length in fs; sets the resolution, of order "
                             "1/(c·max_lag) (≈ 17 cm⁻¹ for 2000 fs). Default: "
                             f"min({DEFAULT_MAX_LAG_FS:g} fs, half the shortest "
                             "trajectory or block)")
    parser.add_argument("--zero-pad", type=int, default=DEFAULT_ZERO_PAD, metavar="N",
                        dest="zero_pad",
                        help=f"zero-padding factor of the lags (default {DEFAULT_ZERO_PAD}); "
                             "only interpolates the spectrum")
    parser.add_argument("--qcf", choices=QCFS, default="harmonic",
                        help="quantum correction factor (default: harmonic, the classical "
                             "correlation with prefactor β/(6cVε₀)); see "
                             "bornml.spectra.ir for the definitions")
    parser.add_argument("--scale", type=float, default=1.0, metavar="FACTOR",
                        help="multiply the wavenumber axis by FACTOR (e.g. 0.985 for a 1.5 %% "
                             "redshift); default 1")
    parser.add_argument("--blocks", type=int, metavar="N",
                        help="split each trajectory into N contiguous blocks and use them as "
                             "independent samples for the error band")
    parser.add_argument("--format", dest="file_format", metavar="FMT",
                        help="ase.io format of the trajectories when the file name does not "
                             "tell (e.g. lammps-dump-text, vasp-xdatcar)")
    parser.add_argument("--experiment", metavar="CSV",
                        help="experimental spectrum to overlay on the plot: two columns, "
                             "wavenumber (cm⁻¹) and n·α (cm⁻¹); a Bertie & Lan 'cm-1,alpha-n' "
                             "file (α·n/1000) is converted")
    parser.add_argument("--output", "-o", required=True, metavar="OUT.csv",
                        help="CSV output: wavenumber_cm-1,n_alpha_cm-1,n_alpha_low_cm-1,"
                             "n_alpha_high_cm-1")
    parser.add_argument("--plot", metavar="OUT.png", help="also save a plot")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run(args):
    """Run ``bornml ir``; return the exit status (0 on success)."""
    from .ir import ir_spectrum
    from .plot import plot_ir

    if args.model:
        from .. import load_model  # lazily: the model stack is heavy

        provider = load_model(args.model)
    else:
        provider = "file"
    spectrum = ir_spectrum(
        args.trajectories, bec_provider=provider, timestep_fs=args.timestep,
        temperature_K=args.temperature, volume_A3=args.volume, window=args.window,
        max_lag_fs=args.max_lag, qcf=args.qcf, frequency_scale=args.scale,
        n_blocks=args.blocks, zero_pad=args.zero_pad, progress=not args.no_progress,
        file_format=args.file_format)
    spectrum.to_csv(args.output)
    if args.plot:
        plot_ir(spectrum, args.plot, experiment=args.experiment)
    summary = {"output": str(args.output), "plot": args.plot,
               "n_trajectories": spectrum.n_trajectories, "n_samples": spectrum.n_samples,
               "temperature_K": round(spectrum.temperature_K, 2),
               "volume_A3": round(spectrum.volume_A3, 3), "timestep_fs": spectrum.timestep_fs,
               "max_lag_fs": spectrum.max_lag_fs, "qcf": spectrum.qcf}
    print(json.dumps(summary), file=sys.stdout)
    return 0
