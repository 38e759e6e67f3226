"""Input and output of structures with Born effective charges (see :mod:`.readers`)."""

from .ipi import read_ipi_bec, read_ipi_trajectory, write_ipi_bec
from .molecular import (
    read_gamess_freq,
    read_gaussian_fchk,
    read_gaussian_log,
    read_nwchem_freq,
    read_orca_hess,
)
from .phonopy_born import write_phonopy_born
from .readers import read_frames, read_many, read_phonopy_born
from .writers import write_frames

__all__ = ["read_frames", "read_gamess_freq", "read_gaussian_fchk", "read_gaussian_log",
           "read_ipi_bec", "read_ipi_trajectory", "read_many", "read_nwchem_freq",
           "read_orca_hess", "read_phonopy_born", "write_frames", "write_ipi_bec",
           "write_phonopy_born"]
