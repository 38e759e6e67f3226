"""Input and output of structures with Born effective charges (see :mod:`.readers`)."""

from .readers import read_frames, read_phonopy_born
from .writers import write_frames

__all__ = ["read_frames", "read_phonopy_born", "write_frames"]
