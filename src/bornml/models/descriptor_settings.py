"""The descriptor and reference settings every kernel estimator shares (BEC models and the
force field): the SOAP settings object built from them, and their checks."""

from ..descriptors.soap import SoapSettings
from ..descriptors.species_channels import species_mixing
from ..memory import parse_bytes
from .sparsify import METHODS


def soap_settings(model):
    """:class:`SoapSettings` from ``model``'s cutoff, max_radial, max_angular, atomic_width and
    cutoff_width (Å)."""
    return SoapSettings(cutoff=float(model.cutoff), max_radial=int(model.max_radial),
                        max_angular=int(model.max_angular),
                        atomic_width=float(model.atomic_width),
                        cutoff_width=float(model.cutoff_width))


def check_descriptor_settings(model):
    """ValueError naming the setting for descriptor / reference settings that cannot work
    (sparse_method, cutoff, cutoff_width, n_sparse, max_memory, species_channels, and a
    cutoff/atomic_width whose radial integrals do not converge)."""
    if model.sparse_method not in METHODS:
        raise ValueError(f"sparse_method must be one of {METHODS}, got {model.sparse_method!r}")
    if not model.cutoff > 0:
        raise ValueError(f"cutoff must be positive (Å), got {model.cutoff}")
    if not 0 <= model.cutoff_width < model.cutoff:
        raise ValueError(f"cutoff_width must be ≥ 0 and smaller than cutoff, got "
                         f"{model.cutoff_width}")
    if int(model.n_sparse) != model.n_sparse or model.n_sparse < 1:
        raise ValueError(f"n_sparse must be a positive integer, got {model.n_sparse}")
    parse_bytes(model.max_memory)
    species_mixing((1,), model.species_channels)  # checks the value


def check_radial_basis(model):
    """Build (cached) the radial basis: large cutoff/atomic_width refused before any work."""
    soap_settings(model).radial_basis()
