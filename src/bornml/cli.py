"""Command line: ``bornml train | evaluate | predict | partition | ir | demo``. A thin layer
over the API."""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

from . import keys

MODEL_TYPES = ("q", "p", "q+p", "mace-q", "mace-p", "mace-q+p", "ff")
MODEL_HELP = ("model type: q = monopole kernel model (environment-dependent charges); "
              "p = dipole kernel model (fixed species charges + λ=1 atomic dipoles); "
              "q+p = combined kernel model (charges and dipoles fitted jointly); "
              "mace-q / mace-p / mace-q+p = the same heads on a MACE network (needs torch "
              "and mace-torch: pip install 'bornml[mace]'); ff = kernel force field fitted "
              "to the frames' energies and forces (no Born charges needed)")


class _DataPaths(argparse.Action):
    """DATA of train / evaluate: one path (stored as given) or several (stored as a list);
    files, folders or glob patterns, read by ``bornml.io.read_frames``."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values[0] if len(values) == 1 else list(values))


DATA_ARGUMENT = {"nargs": "+", "action": _DataPaths,
                 "help": "labelled structures: one or more files, folders or glob patterns "
                         "(e.g. run*/OUTCAR); the format of each is detected"}


def _data_name(data):
    """Short name of DATA for plot titles."""
    from pathlib import Path

    return Path(data).name if isinstance(data, (str, Path)) else f"{len(data)} files"


def _add_data_options(p):
    p.add_argument("--index", default=":",
                   help="frames to use, ASE slice syntax (default ':' = all), e.g. '0:50'")
    p.add_argument("--layout", default="auto", choices=("auto", "P-r", "r-P"),
                   help="storage order of the 9 numbers per atom: 'P-r' = row is the "
                        "polarisation direction (Z[j,a,b]=dP_a/dr_jb, VASP/extxyz default), "
                        "'r-P' = transposed storage")
    p.add_argument("--format", dest="data_format", metavar="FMT",
                   help="file format when detection from the name or content is not wanted: "
                        "outcar, vasprun, qe-ph, qe-dyn, qe-dyn-xml, qe-fc, castep, abinit-ddb, "
                        "anaddb, gaussian-fchk, gaussian-freq, orca-hess, nwchem-freq, "
                        "gamess-us-freq, ipi-bec, ipi-traj, or any ase.io format (extxyz, ...)")
    p.add_argument("--structure", metavar="FILE",
                   help="structure for outputs that do not print one completely (QE ph.x "
                        "output: the pw.x input/output; anaddb output: its DDB); default: a "
                        "matching file next to the data")


def _add_predict_options(p):
    """MODEL, FRAMES, --output and the data options of predict and partition."""
    p.add_argument("model", help="model file")
    p.add_argument("frames", help="structures (anything ASE reads)")
    p.add_argument("--output", "-o", required=True, help="output extxyz")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_data_options(p)
    _add_parallel_options(p)


def _add_parallel_options(p):
    """--workers N / --scheduler ADDRESS (Dask, optional: bornml.parallel)."""
    from .parallel import add_arguments

    add_arguments(p)


KERNEL = ("q", "p", "q+p")
MACE = ("mace-q", "mace-p", "mace-q+p")
KERNEL_FF = (*KERNEL, "ff")  #: settings shared by the kernel BEC models and the force field
FF_WHY = "it weights the force field's labels (energies, forces, stresses)"


def _species_channels(text):
    if text in ("auto", "none"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expects 'auto', 'none' or a number of channels")
    if value < 1:
        raise argparse.ArgumentTypeError("must be ≥ 1")
    return value


class Flag(NamedTuple):
    """One model setting of ``bornml train``.

    ``flag``: the spelling on the command line (its argparse dest, the key in
    :data:`TRAIN_OPTIONS`, is the constructor parameter of the kernel models); ``models``: the
    ``--model`` values it applies to; ``default``: used when the flag is left out (filled in
    after the applicability check; the parser default is None); ``help``: the --help text,
    which states the default; ``argparse``: type / choices / metavar; ``why``: the reason given
    when the flag is refused for a --model it does not apply to (a kernel-only flag given for a
    MACE model gets a general reason)."""

    flag: str
    models: tuple
    default: object
    help: str
    argparse: dict = None
    why: str = ""


# ============================================================================================
# The model settings of `bornml train`: argparse dest (= constructor parameter) → Flag.
# A flag given for a --model not in its `models` is refused (exit 2), never ignored.
# To add a kernel-model constructor setting, add ONE line here, e.g.
#     "max_pool": Flag("--max-pool", KERNEL, 20000, "q, p, q+p: ... (20000)", {"type": int}),
# (the MACE settings live in bornml.models.mace_options.MACE_OPTIONS).
# ============================================================================================
TRAIN_OPTIONS = {
    "cutoff": Flag("--cutoff", KERNEL_FF, 5.0, "environment radius in Å (5.0)", {"type": float}),
    "max_radial": Flag("--max-radial", KERNEL_FF, 7, "radial basis size − 1 (7)", {"type": int}),
    "max_angular": Flag("--max-angular", KERNEL_FF, 6, "largest l of the expansion (6)",
                        {"type": int}),
    "atomic_width": Flag("--atomic-width", KERNEL_FF, 0.3,
                         "Gaussian width of the atomic density in Å (0.3)", {"type": float}),
    "cutoff_width": Flag("--cutoff-width", KERNEL_FF, 0.5, "width of the smooth cut-off in Å (0.5)",
                         {"type": float}),
    "zeta": Flag("--zeta", ("q", "q+p", "ff"), 2,
                 "q, q+p, ff: exponent ζ of the charge (energy) kernel (2); the dipole "
                 "kernel's is --dipole-zeta",
                 {"type": int}, why="p has no charge kernel (the dipole kernel's exponent is "
                 "--dipole-zeta)"),
    "dipole_zeta": Flag("--dipole-zeta", ("p", "q+p"), 1,
                        "p, q+p: exponent ζ_p ≥ 1 of the dipole kernel, λ-SOAP × "
                        "(x̂_i·x̂_k)^(ζ_p−1); 1 = linear, fitted fastest (1)", {"type": int},
                        why="it is the exponent of the dipole kernel and q learns no dipoles"),
    "n_sparse": Flag("--n-sparse", KERNEL_FF, 500, "reference environments per species (500)",
                     {"type": int}),
    "sparse_method": Flag("--sparse-method", KERNEL_FF, "fps",
                          "how reference environments are chosen (fps)",
                          {"choices": ("fps", "cur", "random")}),
    "tikhonov": Flag("--tikhonov", KERNEL_FF, None,
                     "regularisation ω relative to tr(ΦᵀΦ)/M: of the charges (q, q+p) or of "
                     "the dipoles (p) (default: chosen by cross-validation on the training "
                     "frames); of the energy weights (ff, default 1e-6)", {"type": float}),
    "dipole_tikhonov": Flag("--dipole-tikhonov", ("q+p",), None,
                            "q+p: regularisation ω_p of the dipoles (default: cross-validation)",
                            {"type": float},
                            why="q has no dipoles, and the dipole ω of p is --tikhonov"),
    "regulariser": Flag("--regulariser", ("q", "q+p", "ff"), "kernel",
                        "q, q+p, ff: ω·wᵀK_MM·w ('kernel', default) or ω·|w|² ('identity')",
                        {"choices": ("kernel", "identity")},
                        why="it is the prior of the charge weights and p learns no charges"),
    "charge_regularisation": Flag(
        "--charge-regularisation", ("q", "q+p", "mace-q", "mace-q+p"), None,
        "λ_q, pulls charges towards tr(Z_DFT)/3 (q, q+p: default chosen by cross-validation; "
        "mace-q, mace-q+p: default 0)", {"type": float},
        why="the charges of p and mace-p are fixed, not learnt"),
    "sum_rule_weight": Flag("--sum-rule-weight", ("q", "q+p"), None,
                            "q, q+p: weight μ of the acoustic-sum-rule residual in the fit, so "
                            "the learnt total charge is conserved (default: "
                            "bornml.models.kernel_estimator.SUM_RULE_WEIGHT; 0 = projection "
                            "only)", {"type": float, "metavar": "MU"},
                            why="the sum-rule residual comes from learnt charges; p has none"),
    "charges": Flag("--charges", ("p",), None,
                    "p: fixed charges in e, e.g. 'Zr=4,O=-2' (default: the training mean of "
                    "tr(Z)/3 per species)", {"metavar": "EL=Q,..."},
                    why="q and q+p learn their charges"),
    "species_channels": Flag("--species-channels", KERNEL_FF, "auto",
                             "density channels: 'none' = one per element, N = N mixed "
                             "pseudo-species, 'auto' = one per element up to 4 species, 4 "
                             "above (auto)", {"type": _species_channels}),
    "max_memory": Flag("--max-memory", KERNEL_FF, None,
                       "largest memory one step may allocate, e.g. '8GB' (default 80 %% of the "
                       "available memory); a step that needs more stops before starting",
                       {"metavar": "SIZE"}),
    "cv_folds": Flag("--cv-folds", KERNEL, 5,
                     "folds of the cross-validation that chooses ω and λ_q (5)", {"type": int},
                     why="the force field takes ω as given (--tikhonov)"),
    "energy_weight": Flag("--energy-weight", ("ff",), 1.0,
                          "ff: weight of the per-atom energy error, 0 = forces only (1.0)",
                          {"type": float}, why=FF_WHY),
    "force_weight": Flag("--force-weight", ("ff",), 1.0,
                         "ff: weight of the force-component error, eV/Å (1.0)", {"type": float},
                         why=FF_WHY),
    "stress_weight": Flag("--stress-weight", ("ff",), 0.0,
                          "ff: weight of the per-atom virial error from info['stress'] in "
                          "eV/Å³, ASE sign; 0 = stresses not used (0.0)", {"type": float},
                          why=FF_WHY),
}


def _add_model_options(p):
    g = p.add_argument_group("kernel model hyper-parameters (q, p, q+p, ff)")
    for dest, option in TRAIN_OPTIONS.items():
        g.add_argument(option.flag, dest=dest, default=None, help=option.help,
                       **(option.argparse or {}))
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")


def _refusal(flag, model, models, why):
    return (f"{flag} does not apply to --model {model}: {why}; {flag} applies only to "
            f"--model {', '.join(models)}")


def _check_applicable(args):
    """Refuse (exit 2) every flag given for a model type it does not apply to. Every model
    flag has the parser default None, so "given" means "not None", whatever its value."""
    from .models.mace_options import MACE_OPTIONS

    for dest, option in TRAIN_OPTIONS.items():
        if getattr(args, dest, None) is None or args.model in option.models:
            continue
        if args.model in MACE and not set(MACE) & set(option.models):
            why = "it is a kernel-model setting and the MACE models have their own"
            if dest == "cutoff":
                why = "it is the kernel models' cutoff (MACE: --r-max)"
        elif args.model == "ff" and dest != "cv_folds":
            why = "it is a Born-charge model setting; ff fits energies and forces"
        else:
            why = option.why or "it is not a setting of this model"
        _usage_error(_refusal(option.flag, args.model, option.models, why))
    for dest, option in MACE_OPTIONS.items():
        if getattr(args, dest, None) is not None and args.model not in MACE:
            why = "it is a MACE setting"
            if dest == "r_max":
                why = "it is the MACE cutoff (kernel models: --cutoff)"
            _usage_error(_refusal(option.flag, args.model, MACE, why))


def _kernel_settings(args):
    """The kernel options of --model, with the defaults of the flags left out."""
    out = {}
    for dest, option in TRAIN_OPTIONS.items():
        if args.model in option.models:
            value = getattr(args, dest, None)
            out[dest] = option.default if value is None else value
    if "sum_rule_weight" in out and out["sum_rule_weight"] is None:
        from .models.kernel_estimator import SUM_RULE_WEIGHT

        out["sum_rule_weight"] = SUM_RULE_WEIGHT
    if out.get("species_channels") == "none":
        out["species_channels"] = None
    return out


def _add_mace_options(p):
    """MACE options (argparse only: building the parser never imports torch)."""
    from .models.mace_options import add_mace_cli_options

    add_mace_cli_options(p.add_argument_group(
        "MACE model settings (mace-q, mace-p, mace-q+p; need torch and mace-torch)"))


def _refuse_overwriting_input(output, *inputs):
    """Outputs never replace an input file (a typo must not cost the user's data)."""
    from .errors import BornDataError

    out = Path(output).resolve()
    for path in [p for i in inputs for p in ([i] if isinstance(i, (str, Path)) else i)]:
        if Path(path).resolve() == out:
            raise BornDataError("the output file is one of the input files; choose another "
                                "--output", path=path, key="--output")


def _report(errors, label):
    line = f"{label}: RMSE {errors['rmse']:.4f} e, nRMSE {errors['nrmse']:.3f}"
    per = ", ".join(f"{s} {v['rmse']:.4f}" for s, v in errors["per_species"].items())
    return f"{line}  (per species RMSE: {per}; {errors['n_frames']} frames)"


def _parse_charges(text):
    """'Zr=4,O=-2' → {"Zr": 4.0, "O": -2.0}."""
    if not text:
        return None
    from ase.data import atomic_numbers

    out = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        name = name.strip()
        try:
            out[name] = float(value)
        except ValueError:
            _usage_error(f"--charges expects EL=Q,... (got {text!r})")
        if name not in atomic_numbers:
            _usage_error(f"--charges: {name!r} is not an element symbol")
    return out


def _usage_error(message):
    """Exit with code 2 (as for bad input files) after a one-line message."""
    print(f"bornml train: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _build_model(args):
    """The estimator named by --model with the command-line settings."""
    _check_applicable(args)
    if args.model.startswith("mace-"):
        try:
            from .models.mace_model import model_from_cli_args
        except ImportError as err:
            _usage_error(str(err))
        return model_from_cli_args(args.model[len("mace-"):], args)
    from .models.dipole import CombinedModel, DipoleModel
    from .models.monopole import MonopoleModel

    settings = _kernel_settings(args)
    settings.update(seed=args.seed, progress=not args.no_progress)
    if "charges" in settings:
        settings["charges"] = _parse_charges(settings["charges"])
    if args.model == "ff":  # flags left out: the constructor's defaults (ω 1e-6, no CV)
        from .models.force_field import ForceFieldModel as cls

        settings = {k: v for k, v in settings.items() if v is not None}
    else:
        cls = {"q": MonopoleModel, "p": DipoleModel, "q+p": CombinedModel}[args.model]
    try:
        model = cls(**settings)
        model._check_settings()
    except ValueError as err:
        _usage_error(str(err))
    return model


def _read_labelled(args, path, require_bec=True):
    """Frames of ``path`` with --index and --layout; an empty selection is an error."""
    from .errors import BornDataError
    from .io import read_frames

    extra = {"structure": args.structure} if getattr(args, "structure", None) else {}
    frames = read_frames(path, index=args.index, layout=args.layout, require_bec=require_bec,
                         format=getattr(args, "data_format", None), **extra)
    if not frames:
        raise BornDataError(f"no frames selected (--index {args.index!r})", path=path,
                            key="--index")
    return frames


def _check_train_outputs(args):
    """Every output of train checked before any work (a fit must never be lost)."""
    from .output_paths import IMAGE_SUFFIXES, check_output

    _refuse_overwriting_input(args.output, args.data)
    check_output(args.output, "--output", what="model file")
    if args.parity:
        _refuse_overwriting_input(args.parity, args.data)
        check_output(args.parity, "--parity", IMAGE_SUFFIXES, "plot")
    if not 0 <= args.test_fraction < 1:
        _usage_error(f"--test-fraction must be in [0, 1), got {args.test_fraction}")


def _held_out(n_frames, test_fraction):
    """Held-out indices; with a single frame none, and a note that the fit uses it."""
    import numpy as np

    from .metrics import held_out_indices

    if n_frames < 2 and test_fraction > 0:
        print("one frame: a held-out set needs at least two; training on it and reporting "
              "training errors only (--test-fraction 0 says so explicitly)", file=sys.stderr)
        return np.array([], dtype=int)
    return held_out_indices(n_frames, test_fraction)


def _report_ff(errors, label):
    line = (f"{label}: force RMSE {errors['rmse']:.4f} eV/Å, nRMSE {errors['nrmse']:.3f}")
    if "energy_rmse_per_atom" in errors:
        line += f", energy RMSE {1e3 * errors['energy_rmse_per_atom']:.2f} meV/atom"
    per = ", ".join(f"{s} {v['rmse']:.4f}" for s, v in errors["per_species"].items())
    return f"{line}  (per species force RMSE: {per}; {errors['n_frames']} frames)"


def _fit(args, model, frames):
    """``model.fit(frames)``; the kernel models' features and normal equations on Dask with
    --workers / --scheduler (the same weights, bornml.parallel)."""
    from .parallel import is_parallel, runner_from_args, using

    if not is_parallel(args.workers, args.scheduler):
        return model.fit(frames)
    if args.model not in KERNEL:
        _usage_error(f"--workers / --scheduler apply to the kernel models {', '.join(KERNEL)}, "
                     f"not --model {args.model}")
    with runner_from_args(args, "train") as runner, using(runner):
        return model.fit(frames)


def _predict(args, model, frames, return_std=False):
    """``model.predict(frames)`` (one dict per frame), in chunks on Dask workers with
    --workers / --scheduler; each worker loads the model file once (the same numbers). The
    std (``return_std``) by the route --uncertainty-method."""
    from .parallel import is_parallel, one_thread, runner_from_args

    method = getattr(args, "uncertainty_method", "sampled")
    if not is_parallel(args.workers, args.scheduler):  # one BLAS thread, as on a worker
        return one_thread(model.predict, frames, return_std, method) if return_std \
            else one_thread(model.predict, frames)
    from .model_file import ModelFile, predict_on

    with runner_from_args(args, args.command) as runner:
        return predict_on(runner, ModelFile(args.model), frames, return_std=return_std,
                          uncertainty=method)


def cmd_train(args):
    import numpy as np

    from .metrics import bec_errors, force_field_errors

    ff = args.model == "ff"
    if ff and args.parity:
        _usage_error("--parity plots Born charges; --model ff has none")
    _check_train_outputs(args)
    model = _build_model(args)  # bad options (--charges, missing torch) fail before reading data
    frames = _read_labelled(args, args.data, require_bec=not ff)
    errors_of, report = (force_field_errors, _report_ff) if ff else (bec_errors, _report)
    if not ff:
        _warn_layout(frames, args.layout)
    test = _held_out(len(frames), args.test_fraction)
    train_idx = np.setdiff1d(np.arange(len(frames)), test)
    train = [frames[i] for i in train_idx]
    held = [frames[i] for i in test]
    print(f"{len(frames)} frames from {args.data}: {len(train)} training, {len(held)} held out "
          f"(evenly spaced: {test.tolist()})", file=sys.stderr)
    start = time.perf_counter()
    _fit(args, model, train)
    fit_seconds = time.perf_counter() - start
    summary = {"data": str(args.data), "train_frames": train_idx.tolist(),
               "test_frames": test.tolist(), "fit_seconds": fit_seconds}
    if getattr(model, "regularisation_", None) is not None:
        summary["regularisation"] = model.regularisation_
        if model.cv_curve_:
            best = min(c["cv_rmse"] for c in model.cv_curve_)
            chosen = ", ".join(f"{k} {v:g}" for k, v in model.regularisation_.items())
            print(f"regularisation by {model.cv_folds}-fold "
                  f"cross-validation on the training frames: {chosen} (CV RMSE {best:.4f} e, "
                  f"{len(model.cv_curve_)} settings tried)", file=sys.stderr)
    summary["train"] = errors_of(train, model.predict(train))
    print(report(summary["train"], "train"), file=sys.stderr)
    if held:
        predictions = model.predict(held)
        summary["test"] = errors_of(held, predictions)
        print(report(summary["test"], "test "), file=sys.stderr)
        if args.parity:
            from .plots import parity_plot

            parity_plot(held, predictions, args.parity,
                        title=f"{args.model}: {len(held)} held-out frames of "
                              f"{_data_name(args.data)}")
    model.training_summary_ = {k: summary[k] for k in ("data", "train_frames", "test_frames",
                                                       "fit_seconds", "regularisation")
                               if k in summary}
    if getattr(model, "cv_curve_", None):
        model.training_summary_["cv_curve"] = model.cv_curve_
    model.training_summary_["train_rmse"] = summary["train"]["rmse"]
    if held:
        model.training_summary_["test_rmse"] = summary["test"]["rmse"]
    model.save(args.output)
    print(f"model written to {args.output} (fit {fit_seconds:.1f} s)", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    return 0


def cmd_evaluate(args):
    from .metrics import bec_errors
    from .models.serialization import load_model
    from .output_paths import IMAGE_SUFFIXES, check_output

    if args.parity:
        _refuse_overwriting_input(args.parity, args.data, args.model)
        check_output(args.parity, "--parity", IMAGE_SUFFIXES, "plot")
    model = load_model(args.model)
    model.progress = not args.no_progress
    if getattr(model, "model_type", None) == "ff":
        return _evaluate_force_field(args, model)
    frames = _read_labelled(args, args.data)
    predictions = _predict(args, model, frames)
    errors = bec_errors(frames, predictions)
    if args.parity:
        from .plots import parity_plot

        parity_plot(frames, predictions, args.parity,
                    title=f"{getattr(model, 'model_type', '')}: {_data_name(args.data)}")
    if args.json:
        print(json.dumps(errors))
    else:
        print(_report(errors, "all"))
        print("per component RMSE (Z[j,a,b], a = field, b = displacement):")
        print("  " + "  ".join(f"{c} {v['rmse']:.4f}" for c, v in errors["per_component"].items()))
        if "sum_rule_correction_rms" in errors:
            print(f"sum-rule correction (removed by the projection): RMS "
                  f"{errors['sum_rule_correction_rms']:.4f} e, largest per atom "
                  f"{errors['max_asr_residual_per_atom']:.4f} e")
    return 0


def _evaluate_force_field(args, model):
    """evaluate for --model ff files: force (and energy) errors of the frames."""
    from .metrics import force_field_errors

    if args.parity:
        _usage_error("--parity plots Born charges; a force-field model has none")
    frames = _read_labelled(args, args.data, require_bec=False)
    errors = force_field_errors(frames, model.predict(frames))
    print(json.dumps(errors) if args.json else _report_ff(errors, "all"))
    return 0


def _predict_and_write(args, names):
    """Shared by predict and partition: load MODEL, predict FRAMES, write the predictions
    ``names`` (those the model provides) to --output under their ``*_predicted`` keys
    (:data:`keys.PREDICTED`), next to everything the input had (DFT labels included).
    Returns (frames, predictions, written column names)."""
    from .io import write_frames
    from .models.serialization import load_model
    from .output_paths import EXTXYZ_SUFFIXES, check_output

    _refuse_overwriting_input(args.output, args.frames, args.model)
    check_output(args.output, "--output", EXTXYZ_SUFFIXES, "extended-XYZ file")
    from .extrapolation import has_posterior, summary, why_no_posterior

    model = load_model(args.model)
    model.progress = not args.no_progress
    write_std = getattr(args, "uncertainty", False)  # predict --uncertainty
    if write_std and not has_posterior(model):
        _command_error(args.command, f"--uncertainty: {why_no_posterior(model)}")
    every = 0 if getattr(args, "no_score", True) else getattr(args, "score_every", 10)
    score = write_std or (every > 0 and has_posterior(model))
    frames = _read_labelled(args, args.frames, require_bec=False)
    predictions = _predict(args, model, frames, return_std=write_std)
    scored = predictions  # the frames whose uncertainty score is checked
    if score and not write_std:  # every N-th frame: one scored prediction costs 3–5 plain
        scored = _predict(args, model, frames[::every], return_std=True)
    if write_std:
        names = tuple(names) + tuple(keys.STD_COLUMNS)
    threshold = model.posterior_.threshold if score else None
    out, written = [], []
    for frame, pred in zip(frames, predictions):
        frame = frame.copy()
        for name in names:
            if name in pred:
                column = keys.PREDICTED.get(name) or keys.STD_COLUMNS[name]
                frame.arrays[column] = pred[name]
                if column not in written:
                    written.append(column)
        if write_std:
            frame.info[keys.UNCERTAINTY_SCORE] = pred[keys.UNCERTAINTY_SCORE]
            if threshold is not None:
                frame.info[keys.EXTRAPOLATING] = bool(pred[keys.UNCERTAINTY_SCORE] > threshold)
        out.append(frame)
    write_frames(args.output, out)
    if score:
        step = 1 if write_std else every
        warning = summary([p[keys.UNCERTAINTY_SCORE] for p in scored], threshold,
                          [f"frame {k * step}" for k in range(len(scored))])
        if warning:
            print(warning, file=sys.stderr)
    return frames, predictions, written


def _command_error(command, message):
    """Exit with code 2 after ``bornml COMMAND: error: message``."""
    print(f"bornml {command}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def cmd_predict(args):
    frames, _, written = _predict_and_write(args, (keys.BEC, keys.CHARGES, keys.DIPOLES))
    labels = " (the input's DFT Born charges kept under 'bec')" if any(
        keys.BEC in f.arrays for f in frames) else ""
    print(f"{len(frames)} frames with {', '.join(written)} written to {args.output}{labels}",
          file=sys.stderr)
    return 0


def cmd_partition(args):
    from .partition import format_table, partition_table

    frames, predictions, written = _predict_and_write(args, (keys.CHARGES, keys.DIPOLES))
    table = partition_table(frames, predictions)
    if args.json:
        print(json.dumps(table))
    else:
        print(format_table(table))
    print(f"{len(frames)} frames with {', '.join(written)} written to {args.output}",
          file=sys.stderr)
    return 0


def cmd_inspect(args):
    from .inspection import format_provenance, format_report, inspect_frames

    frames = _read_labelled(args, args.data, require_bec=False)
    report = inspect_frames(frames, path=_data_name(args.data))
    report["formats"] = format_provenance(args.data, args.data_format)
    print(json.dumps(report) if args.json else format_report(report))
    return 0


def _warn_layout(frames, layout):
    """Warn when the rotational sum rule of molecular labels contradicts the layout used."""
    from .inspection import layout_check

    check = layout_check(frames[:50])
    if check["verdict"].startswith("r-P"):
        print(f"warning: the rotational sum rule of these molecules says the Born charges read "
              f"with --layout {layout} are transposed (residual "
              f"{check['rotational_residual_P-r']:.3g} e·Å as read, "
              f"{check['rotational_residual_r-P']:.3g} e·Å transposed); check --layout "
              "(bornml inspect DATA shows the details)", file=sys.stderr)


def cmd_ir(args):
    from .output_paths import CSV_SUFFIXES, IMAGE_SUFFIXES, check_output
    from .spectra.ir_cli import run

    for output in (args.output, args.plot):
        if output:
            _refuse_overwriting_input(output, *args.trajectories,
                                      *([args.model] if args.model else []))
    check_output(args.output, "--output", CSV_SUFFIXES, "CSV file")
    check_output(args.plot, "--plot", IMAGE_SUFFIXES, "plot")
    return run(args)


def cmd_select(args):
    """Greedy batch of the pool frames whose labels most reduce the model's uncertainty
    (:mod:`bornml.models.selection`), written without labels plus their pool indices."""
    import numpy as np

    from .extrapolation import has_posterior, why_no_posterior
    from .fileutils import atomic_path
    from .io import write_frames
    from .models.selection import select_frames
    from .models.serialization import load_model
    from .output_paths import EXTXYZ_SUFFIXES, check_output

    if args.n < 1:
        _command_error("select", f"--n must be ≥ 1, got {args.n}")
    indices_path = args.indices or str(Path(args.output).with_suffix("")) + "_indices.txt"
    for path in (args.output, indices_path):
        _refuse_overwriting_input(path, args.pool, args.model)
    check_output(args.output, "--output", EXTXYZ_SUFFIXES, "extended-XYZ file")
    check_output(indices_path, "--indices", (".txt",), "text file")
    model = load_model(args.model)
    if not has_posterior(model):
        _command_error("select", why_no_posterior(model))
    pool = _read_labelled(args, args.pool, require_bec=False)
    if args.n > len(pool):
        _command_error("select", f"--n {args.n} is more than the {len(pool)} pool frames")
    picked, scores, initial = select_frames(model, pool, args.n,
                                            progress=not args.no_progress)
    out = []
    for k, score in zip(picked, scores):
        frame = pool[int(k)].copy()  # structure only: no labels, predictions or calculator
        for name in list(frame.arrays):
            if name not in keys.STRUCTURE_COLUMNS:
                del frame.arrays[name]
        frame.info = {keys.POOL_INDEX: int(k), keys.UNCERTAINTY_SCORE: float(score)}
        out.append(frame)
    write_frames(args.output, out)
    with atomic_path(indices_path) as tmp:
        np.savetxt(tmp, np.column_stack([picked, scores, initial[picked]]),
                   fmt=["%d", "%.6g", "%.6g"],
                   header="pool_index score_when_picked_e score_before_any_pick_e")
    threshold = model.posterior_.threshold
    flagged = "" if threshold is None else (
        f"; {int(np.sum(initial > threshold))} pool frames above the model's extrapolation "
        f"threshold {threshold:.4g} e")
    print(f"{len(out)} of {len(pool)} pool frames written without labels to {args.output}, "
          f"their pool indices to {indices_path} (uncertainty score when picked "
          f"{scores[0]:.4g} … {scores[-1]:.4g} e{flagged})", file=sys.stderr)
    print(json.dumps({"indices": picked.tolist(), "scores": scores.round(6).tolist()}))
    return 0


def cmd_demo(args):
    from .demo import run_demo

    return run_demo(args.output_dir, quick=args.quick)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bornml",
        description="Learn Born effective charges (Z[j,a,b] = dP_a/dr_jb, e) from DFT data "
                    "with charge (q), dipole (p) and combined (q+p) kernel models or MACE, predict them "
                    "along trajectories and compute "
                    "IR spectra.")
    parser.add_argument("--version", action="version",
                        version=f"bornml {__import__('bornml').__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="fit a model to DFT Born charges",
                       description="Fit a model to the Born charges of DATA (extxyz with a "
                                   "per-atom bec/BEC/born_charge column, VASP OUTCAR, ...). "
                                   "Held-out frames are evenly spaced through the file.")
    p.add_argument("data", **DATA_ARGUMENT)
    p.add_argument("--model", default="q", choices=MODEL_TYPES, help=MODEL_HELP)
    p.add_argument("--output", "-o", required=True, help="model file to write (.npz)")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="fraction of frames held out for testing (0.1)")
    p.add_argument("--parity", metavar="PNG", help="parity plot of the held-out frames")
    p.add_argument("--json", action="store_true", help="print the error summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_data_options(p)
    _add_model_options(p)
    _add_mace_options(p)
    _add_parallel_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="errors of a model on labelled data",
                       description="RMSE and normalised RMSE (RMSE / std of the targets) of "
                                   "the predicted Born charges, overall, per species and per "
                                   "Cartesian component.")
    p.add_argument("model", help="model file")
    p.add_argument("data", **DATA_ARGUMENT)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (keys rmse, nrmse, per_species, per_component)")
    p.add_argument("--parity", metavar="PNG", help="write a parity plot")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_data_options(p)
    _add_parallel_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict charges and Born charges for structures",
                       description="Write FRAMES with the predicted per-atom "
                                   "'charges_predicted' (e), 'dipoles_predicted' (e·Å, models "
                                   "with dipoles) and 'bec_predicted:R:9' (Z[j,a,b] = "
                                   "dP_a/dr_jb, row-major) to an extxyz file; everything the "
                                   "input had (DFT labels under 'bec') is kept. Kernel "
                                   "models also score every --score-every-th frame and warn "
                                   "about frames outside their training data.")
    _add_predict_options(p)
    scoring = p.add_mutually_exclusive_group()
    scoring.add_argument("--uncertainty", action="store_true",
                         help="also write the posterior std of every Born-charge component "
                              "'bec_std:R:9' and charge 'charges_std' (e), and per frame "
                              "'uncertainty_score' (e) and 'extrapolating' (kernel models)")
    scoring.add_argument("--no-score", action="store_true", dest="no_score",
                         help="skip the extrapolation check")
    p.add_argument("--score-every", type=int, default=10, metavar="N", dest="score_every",
                   help="kernel models: check the uncertainty score of every N-th frame "
                        "(default 10; one scored frame costs 3–5 plain predictions of a q "
                        "model with the default --uncertainty-method, 5–6 with a dipole term; "
                        "measured on water, ZrO2 and quartz)")
    p.add_argument("--uncertainty-method", choices=("sampled", "exact"), default="sampled",
                   dest="uncertainty_method",
                   help="route of the std and the score: 'sampled' (default: 16 posterior "
                        "weight draws through the adjoint prediction, each std with a "
                        "sampling error of about 18 %%, the score far less) or 'exact' (the "
                        "frame's design rows, 16–26 plain predictions)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("partition", help="per-atom charges (and dipoles) of a model",
                       description="Write the model's per-atom charges q_i (e) (and dipoles "
                                   "p_i, e·Å, for models that have them) for FRAMES to an "
                                   "extxyz file and print, per species, the mean and spread "
                                   "of q, max |q| and max |p|. The split of the response into "
                                   "charges and dipoles is a choice (gauge) of the model, not "
                                   "an observable: compare Born charges with DFT, not q_i.")
    _add_predict_options(p)
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_partition)

    p = sub.add_parser("inspect", help="what a data file holds, and checks of its Born charges",
                       description="Frames, species, keys, periodicity, and checks of the "
                                   "Born-charge labels: acoustic sum rule |Σ_j Z_j|/N, total "
                                   "charge Σ_j tr(Z_j)/3, and the layout — for molecules the "
                                   "rotational sum rule tells Z from its transpose (the "
                                   "residual of both orientations is printed); for crystals "
                                   "the data cannot tell and the format decides. Run it first "
                                   "on a new file.")
    p.add_argument("data", **DATA_ARGUMENT)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_data_options(p)
    p.set_defaults(func=cmd_inspect)

    from .spectra.ir_cli import DESCRIPTION, add_arguments

    p = sub.add_parser("ir", help="IR spectrum from MD trajectories", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=cmd_ir)

    p = sub.add_parser("select", help="choose the frames of a pool to label next (DFT)",
                       description="Active learning: pick --n frames of POOL (an MD "
                                   "trajectory, any file ASE reads) that most reduce the "
                                   "model's predicted uncertainty, one at a time with the "
                                   "posterior conditioned on each pick (so the batch is "
                                   "diverse, a duplicate is not picked twice). Writes them "
                                   "without labels, ready for DFT, with their pool index "
                                   "(info 'pool_index') and a text file of the indices. "
                                   "Kernel models (q, p, q+p) only.")
    p.add_argument("pool", help="candidate structures (anything ASE reads)")
    p.add_argument("--model", required=True, help="kernel model file")
    p.add_argument("--n", type=int, required=True, help="frames to pick")
    p.add_argument("--output", "-o", required=True, help="output extxyz of the picked frames")
    p.add_argument("--indices", metavar="TXT",
                   help="text file of the picked pool indices and scores (default: "
                        "OUTPUT without suffix + '_indices.txt')")
    p.add_argument("--index", default=":",
                   help="pool frames to consider, ASE slice syntax (default ':' = all); "
                        "indices are counted in the whole file only for ':'")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_select, layout="auto")

    p = sub.add_parser("demo", help="train on shipped α-quartz data, evaluate, IR spectrum",
                       description="Runs the main job on data shipped with bornml (30 frames "
                                   "of α-quartz, MIT licence): trains a monopole model, "
                                   "reports held-out errors, writes the model, a parity plot, "
                                   "and an IR spectrum of a short generated trajectory.")
    p.add_argument("--output-dir", default="bornml-demo", help="where to write (bornml-demo)")
    p.add_argument("--quick", action="store_true", help="smaller model and trajectory")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import BornDataError, ModelFileError

    try:
        return args.func(args)
    except (BornDataError, ModelFileError, FileNotFoundError) as err:
        print(f"bornml {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
