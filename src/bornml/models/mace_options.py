"""Command-line options of the MACE models. Kept free of torch so that `bornml --help`
and the kernel-model commands never import torch or mace."""


#: MACE flags: argparse dest → (flag, default); the CLI refuses them for kernel models
MACE_OPTIONS = {
    "r_max": ("--r-max", 5.0), "max_epochs": ("--max-epochs", 200),
    "mace_channels": ("--mace-channels", 16), "mace_max_ell": ("--mace-max-ell", 2),
    "mace_correlation": ("--mace-correlation", 2), "learning_rate": ("--learning-rate", 5e-3),
    "batch_size": ("--batch-size", 4), "patience": ("--patience", 30),
    "max_time": ("--max-time", None), "device": ("--device", None),
    "float32": ("--float32", False),
}


def add_mace_cli_options(group):
    """Add the MACE options (``--r-max``, ``--max-epochs``, ``--mace-channels``, ...) to an
    argparse group. The options shared with the kernel models (``--seed``,
    ``--charge-regularisation``, ``--no-progress``) are read from the namespace if present."""
    group.add_argument("--r-max", type=float, default=5.0,
                       help="MACE: radial cutoff of the message passing in Å (5.0)")
    group.add_argument("--max-epochs", type=int, default=200,
                       help="MACE: most training epochs (200)")
    group.add_argument("--mace-channels", type=int, default=16,
                       help="MACE: channels per irrep (16)")
    group.add_argument("--mace-max-ell", type=int, default=2,
                       help="MACE: largest l of the edge spherical harmonics (2)")
    group.add_argument("--mace-correlation", type=int, default=2,
                       help="MACE: correlation order of the product basis (2)")
    group.add_argument("--learning-rate", type=float, default=5e-3,
                       help="MACE: initial Adam learning rate (5e-3)")
    group.add_argument("--batch-size", type=int, default=4, help="MACE: frames per batch (4)")
    group.add_argument("--patience", type=int, default=30,
                       help="MACE: epochs without validation improvement before stopping (30)")
    group.add_argument("--max-time", type=float, default=None,
                       help="MACE: stop training after this many seconds")
    group.add_argument("--device", default=None,
                       help="MACE: torch device (cuda when available, else cpu)")
    group.add_argument("--float32", action="store_true",
                       help="MACE: single precision (default float64)")
    return group
