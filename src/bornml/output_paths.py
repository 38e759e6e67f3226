"""Output paths checked before any work starts, so that a long fit is never lost to a typo.

Each command calls :func:`check_output` for every file it will write: the folder must exist and
be writable, the path must not be a folder, and where the format follows from the suffix the
suffix must be one that bornml writes. Failures raise :class:`~bornml.errors.BornDataError`
naming the option (the CLI turns it into one ``error:`` line and exit status 2).
"""

import os
from pathlib import Path

from .errors import BornDataError

#: suffixes matplotlib writes (the plot format follows the suffix)
IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff",
                  ".webp")
#: suffixes of the extended-XYZ files bornml writes
EXTXYZ_SUFFIXES = (".xyz", ".extxyz")
CSV_SUFFIXES = (".csv",)


def check_output(path, option, suffixes=None, what="file"):
    """Raise BornDataError unless ``path`` can be written as a ``what`` with one of
    ``suffixes`` (None = any). ``option`` is the command-line option that named it."""
    if path is None:
        return
    path = Path(path)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise BornDataError(f"{option} must name a {what} ending in "
                            f"{', '.join(suffixes)} (got {path.name!r})", path=path, key=option)
    if path.is_dir():
        raise BornDataError(f"{option} names a folder; give a file name", path=path, key=option)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise BornDataError(f"the folder of {option} does not exist: create it first",
                            path=path, key=option)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BornDataError(f"the folder of {option} is not writable", path=path, key=option)
    if path.exists() and not os.access(path, os.W_OK):
        raise BornDataError(f"{option} exists and is not writable", path=path, key=option)
