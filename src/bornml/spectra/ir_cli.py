"""The ``bornml ir`` subcommand: IR spectrum n·α(ν̃) from MD trajectories.

Wire-up: ``add_arguments(subparsers.add_parser("ir", ...))`` and ``run(args) -> int``.
Values that cannot work (a negative temperature, zero blocks, ...) are refused by the parser
(exit 2, naming the option); data problems raise :class:`~bornml.errors.BornDataError`
(exit 2 in ``bornml.cli``).
"""

import argparse
import json
import math
import sys

from .. import keys
from ..errors import BornDataError
from .ir import DEFAULT_MAX_LAG_FS, DEFAULT_ZERO_PAD, QCFS, WINDOWS
from .trajectory import TIME_UNITS_FS

DESCRIPTION = (
    "Compute a finite-temperature infrared spectrum n(ν̃)·α(ν̃) (cm⁻¹ versus wavenumber "
    "ν̃ in cm⁻¹) from MD trajectories, via dM/dt = Σ_j Z_j v_j and its autocorrelation. "
    "Born charges Z come from a trained model (--model) or from the frames themselves "
    "(--bec-from-file). Several trajectories (or --blocks) give a 95 % confidence interval "
    "of the mean (Student t).")


def _number(kind, minimum, strict=True):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}"
                                             f": {text!r}") from None
        if math.isnan(value) or not (value > minimum if strict else value >= minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value
    return parse


_POSITIVE = _number(float, 0.0)
_POSITIVE_INT = _number(int, 0)
_NON_NEGATIVE_INT = _number(int, 0, strict=False)


def add_arguments(parser):
    """Add the ``bornml ir`` arguments to an ``argparse`` parser."""
    parser.description = parser.description or DESCRIPTION
    parser.add_argument(
        "trajectories", nargs="+", metavar="TRAJ",
        help="MD trajectory files (extxyz, ASE .traj, XDATCAR, vasprun.xml, LAMMPS dump, ...), "
             "read frame by frame. Velocities are taken from the file (extxyz column "
             "'velocities' in Å/fs, or ASE momenta); without them dM/dt is taken at half steps "
             "from position differences, with the exact inverse filter sinc²(ωΔt/2), and "
             "--temperature is required. Independent runs give the error band.")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="MODEL",
                     help="trained bornml model file that predicts the Born charges")
    src.add_argument("--bec-from-file", action="store_true",
                     help="use the Born effective charges stored in every frame (per-atom "
                          "key 'bec' or an alias, or 9·N numbers as frame info; in e)")
    parser.add_argument("--layout", choices=keys.LAYOUTS, default=None,
                        help="with --bec-from-file: storage order of the 9 numbers per atom, "
                             "'P-r' (row = polarisation direction, the project's and the "
                             "extxyz default; 'auto' is the same) or 'r-P' (transposed)")
    parser.add_argument("--timestep", type=_POSITIVE, metavar="FS",
                        help="time between stored frames in fs (not the MD integration step "
                             "unless every step was saved); checked against the file's "
                             "'timestep_fs', 'time_fs'/'time_ps' and .traj header when present")
    parser.add_argument("--time-unit", choices=tuple(TIME_UNITS_FS), dest="time_unit",
                        help="unit of a bare 'time' frame key (fs, ps, or ase = "
                             "Å·sqrt(amu/eV) ≈ 10.18 fs); it is never guessed")
    parser.add_argument("--temperature", type=_POSITIVE, metavar="K",
                        help="temperature in K for the lineshape prefactor 1/(k_B T); "
                             "default: kinetic temperature of each trajectory from its stored "
                             "velocities (required without velocities)")
    dof = parser.add_mutually_exclusive_group()
    dof.add_argument("--dof", type=_POSITIVE_INT, metavar="N",
                     help="degrees of freedom of the kinetic temperature (default 3N-3)")
    dof.add_argument("--constraints", type=_NON_NEGATIVE_INT, metavar="N",
                     help="number of holonomic constraints (SHAKE, rigid molecules: 3 per "
                          "rigid water): degrees of freedom 3N-3-N")
    parser.add_argument("--volume", type=_POSITIVE, metavar="Å3",
                        help="volume in Å^3; default: the mean cell volume. Required for "
                             "non-periodic systems")
    parser.add_argument("--window", choices=tuple(WINDOWS), default="hann",
                        help="window over the correlation lags (default: hann; 'none' = "
                             "plain truncation)")
    parser.add_argument("--max-lag", type=_POSITIVE, metavar="FS", dest="max_lag",
                        help="correlation length in fs; sets the resolution, of order "
                             "1/(c·max_lag) (≈ 17 cm⁻¹ for 2000 fs). Default: "
                             f"min({DEFAULT_MAX_LAG_FS:g} fs, half the shortest "
                             "trajectory or block)")
    parser.add_argument("--zero-pad", type=_POSITIVE_INT, default=DEFAULT_ZERO_PAD,
                        metavar="N", dest="zero_pad",
                        help=f"zero-padding factor of the lags (default {DEFAULT_ZERO_PAD}); "
                             "only interpolates the spectrum")
    parser.add_argument("--qcf", choices=QCFS, default="harmonic",
                        help="quantum correction factor (default: harmonic, the classical "
                             "correlation with prefactor β/(6cVε₀); egelstaff works on the "
                             "dipole correlation and only suits bands that decay within "
                             "βħ/2); see bornml.spectra.ir for the definitions")
    parser.add_argument("--scale", type=_POSITIVE, default=1.0, metavar="FACTOR",
                        help="multiply the wavenumber axis by FACTOR (e.g. 0.985 for a 1.5 %% "
                             "redshift); default 1")
    parser.add_argument("--blocks", type=_POSITIVE_INT, metavar="N",
                        help="split each trajectory into N contiguous blocks and use them as "
                             "samples for the band (correlated: the band is optimistic)")
    parser.add_argument("--format", dest="file_format", metavar="FMT",
                        help="ase.io format of the trajectories when the file name does not "
                             "tell (e.g. lammps-dump-text, vasp-xdatcar)")
    parser.add_argument("--experiment", metavar="CSV",
                        help="experimental spectrum to overlay on the plot: two columns, "
                             "wavenumber (cm⁻¹) and n·α (cm⁻¹); a Bertie & Lan 'cm-1,alpha-n' "
                             "file (α·n/1000) is converted")
    parser.add_argument("--output", "-o", required=True, metavar="OUT.csv",
                        help="CSV output: wavenumber_cm-1,n_alpha_cm-1,n_alpha_ci95_low_cm-1,"
                             "n_alpha_ci95_high_cm-1")
    parser.add_argument("--plot", metavar="OUT.png", help="also save a plot")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (there is none anyway when stderr is not a "
                             "terminal)")
    parser.add_argument("--score-every", type=_NON_NEGATIVE_INT, metavar="N", dest="score_every",
                        help="with a kernel --model: uncertainty score of every N-th sample "
                             "(default 10; 0 = none), written with Ṁ to OUT_uncertainty.csv; "
                             "samples above the model's training threshold are reported")
    from ..parallel import add_arguments as add_parallel_arguments

    g = add_parallel_arguments(parser)
    g.add_argument("--cache", metavar="DIR",
                   help="keep every finished chunk's dM/dt in DIR, so that an interrupted run "
                        "(a job killed at its wall time) continues where it stopped when run "
                        "again with the same inputs and options")
    g.add_argument("--chunk-frames", type=_number(int, 1), metavar="N", dest="chunk_frames",
                   help="frames per chunk with --workers/--scheduler/--cache (default "
                        "256); progress, caching and load balance go by chunks")
    return parser


def run(args):
    """Run ``bornml ir``; return the exit status (0 on success)."""
    if args.model and args.layout is not None:
        raise BornDataError("the Born charges come from the model; --layout applies to "
                            "--bec-from-file only", key="--layout")
    if not args.model and args.score_every is not None:
        raise BornDataError("--score-every scores a model's predictions: it needs --model",
                            key="--score-every")
    from ..parallel import is_parallel, runner_from_args

    chunked = is_parallel(args.workers, args.scheduler) or args.cache
    if args.model:
        from .. import load_model  # lazily: the model stack is heavy

        provider = load_model(args.model)  # also checks the file before any work
        provider = _scored(args, provider, chunked)
        if chunked:
            from ..model_file import ModelFile

            provider = ModelFile(args.model)  # every worker loads it once
    else:
        provider = "file"
    with runner_from_args(args, "ir") as runner:
        spectrum = _spectrum(args, provider, runner if chunked else None)
    spectrum.to_csv(args.output)
    if hasattr(provider, "rows"):  # extrapolation check (bornml.extrapolation)
        provider.write(args.side_file)
        print(provider.summary() or f"uncertainty scores of {len(provider.rows)} samples "
              f"written to {args.side_file}: none above the model's threshold",
              file=sys.stderr)
    return _finish(args, spectrum)


def _scored(args, model, chunked):
    """The model wrapped to score every --score-every-th sample, or the model unchanged."""
    from ..extrapolation import (
        SIDE_SUFFIX,
        ScoredProvider,
        has_posterior,
        why_no_posterior,
    )
    from ..output_paths import CSV_SUFFIXES, check_output

    every = 10 if args.score_every is None else args.score_every
    if every == 0 or not has_posterior(model) or chunked:
        if args.score_every and not has_posterior(model):
            raise BornDataError(f"--score-every: {why_no_posterior(model)}", key="--score-every")
        if args.score_every and chunked:
            raise BornDataError("--score-every works without --workers/--cache only",
                                key="--score-every")
        return model
    args.side_file = str(args.output)[:-len(".csv")] + SIDE_SUFFIX \
        if str(args.output).lower().endswith(".csv") else str(args.output) + SIDE_SUFFIX
    check_output(args.side_file, "--output (its uncertainty side file)", CSV_SUFFIXES,
                 "CSV file")
    return ScoredProvider(model, every)


def _spectrum(args, provider, runner):
    from .ir import ir_spectrum

    return ir_spectrum(
        args.trajectories, bec_provider=provider, bec_layout=args.layout or keys.LAYOUT_AUTO,
        timestep_fs=args.timestep, time_unit=args.time_unit, temperature_K=args.temperature,
        dof=args.dof, constraints=args.constraints, volume_A3=args.volume, window=args.window,
        max_lag_fs=args.max_lag, qcf=args.qcf, frequency_scale=args.scale,
        n_blocks=args.blocks, zero_pad=args.zero_pad, progress=not args.no_progress,
        file_format=args.file_format, runner=runner, cache_dir=args.cache,
        chunk_frames=args.chunk_frames)


def _finish(args, spectrum):
    from .plot import plot_ir

    if args.plot:
        plot_ir(spectrum, args.plot, experiment=args.experiment)
    summary = {"output": str(args.output), "plot": args.plot,
               "n_trajectories": spectrum.n_trajectories, "n_samples": spectrum.n_samples,
               "samples": spectrum.samples, "band": spectrum.band,
               "velocity_source": spectrum.velocity_source,
               "temperature_K": round(spectrum.temperature_K, 2),
               "temperature_source": spectrum.temperature_source, "dof": spectrum.dof,
               "volume_A3": round(spectrum.volume_A3, 3), "timestep_fs": spectrum.timestep_fs,
               "max_lag_fs": spectrum.max_lag_fs, "qcf": spectrum.qcf}
    if spectrum.chunks is not None:
        summary["chunks"] = spectrum.chunks
    print(json.dumps(summary, ensure_ascii=False), file=sys.stdout)
    return 0
