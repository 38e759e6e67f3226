"""Command-line options of the MACE models. Kept free of torch so that `bornml --help`
and the kernel-model commands never import torch or mace."""

from typing import NamedTuple


class MaceFlag(NamedTuple):
    """One MACE option of ``bornml train``: its spelling, its default (filled in by
    :func:`model_from_cli_args <bornml.models.mace_model.model_from_cli_args>` when the flag is
    left out), its --help text (which states the default) and further argparse settings."""

    flag: str
    default: object
    help: str
    argparse: dict = None


#: MACE flags: argparse dest → :class:`MaceFlag`. The parser default of every one is None, so
#: the CLI can tell a flag given explicitly (even with its default value) from one left out,
#: and refuses it for the kernel models (exit 2) instead of ignoring it.
MACE_OPTIONS = {
    "r_max": MaceFlag("--r-max", 5.0, "MACE: radial cutoff of the message passing in Å (5.0); "
                      "the kernel models' --cutoff does not apply to MACE", {"type": float}),
    "max_epochs": MaceFlag("--max-epochs", 200, "MACE: most training epochs (200)",
                           {"type": int}),
    "mace_channels": MaceFlag("--mace-channels", 16, "MACE: channels per irrep (16)",
                              {"type": int}),
    "mace_max_ell": MaceFlag("--mace-max-ell", 2,
                             "MACE: largest l of the edge spherical harmonics (2)", {"type": int}),
    "mace_correlation": MaceFlag("--mace-correlation", 2,
                                 "MACE: correlation order of the product basis (2)",
                                 {"type": int}),
    "learning_rate": MaceFlag("--learning-rate", 5e-3, "MACE: initial Adam learning rate (5e-3)",
                              {"type": float}),
    "batch_size": MaceFlag("--batch-size", 4, "MACE: frames per batch (4)", {"type": int}),
    "patience": MaceFlag("--patience", 30, "MACE: epochs without validation improvement before "
                         "stopping (30)", {"type": int}),
    "max_time": MaceFlag("--max-time", None, "MACE: stop training after this many seconds "
                         "(default: no limit)", {"type": float}),
    "device": MaceFlag("--device", None, "MACE: torch device (default: cuda when available, "
                       "else cpu)"),
    "float32": MaceFlag("--float32", False, "MACE: single precision (default float64)",
                        {"action": "store_true"}),
}


def mace_setting(args, dest):
    """The value of MACE option ``dest`` in the namespace ``args``, or its default when the
    flag was left out (or the namespace lacks it)."""
    value = getattr(args, dest, None)
    return MACE_OPTIONS[dest].default if value is None else value


def add_mace_cli_options(group):
    """Add the MACE options (``--r-max``, ``--max-epochs``, ``--mace-channels``, ...; see
    :data:`MACE_OPTIONS`) to an argparse group, each with the parser default None. The options
    shared with the kernel models (``--seed``, ``--charge-regularisation``, ``--no-progress``)
    are read from the namespace if present."""
    for dest, option in MACE_OPTIONS.items():
        group.add_argument(option.flag, dest=dest, default=None, help=option.help,
                           **(option.argparse or {}))
    return group
