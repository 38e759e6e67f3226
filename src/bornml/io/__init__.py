"""Input and output of structures with Born effective charges (see :mod:`.readers`)."""

from .molecular import (
    read_gamess_freq,
    read_gaussian_fchk,
    read_gaussian_log,
    read_nwchem_freq,
    read_orca_hess,
)
from .readers import read_frames, read_phonopy_born
from .writers import write_frames

__all__ = ["read_frames", "read_gamess_freq", "read_gaussian_fchk", "read_gaussian_log",
           "read_nwchem_freq", "read_orca_hess", "read_phonopy_born", "write_frames"]
