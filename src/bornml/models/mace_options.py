"""Command-line options of the MACE models. Kept free of torch so that `bornml --help`
and the kernel-model commands never import torch or mace."""


def add_mace_cli_options(group):
    """Add the MACE options (``--max-epochs``, ``--mace-channels``, ...) to an argparse group.
    The options shared with the kernel models (``--cutoff``, ``--seed``,
    ``--charge-regularisation``, ``--no-progress``) are read from the namespace if present."""
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
