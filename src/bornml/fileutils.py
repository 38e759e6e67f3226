"""Atomic file output: write to a temporary file beside the target, then rename.

A crash or an error half-way never leaves a truncated output, and an existing file is only
replaced once the new one is complete. The file gets the permissions a plain ``open(path,
"w")`` would give (0666 minus the umask), not the 0600 of a temporary file, so colleagues
sharing a group folder can read models and spectra.
"""

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yield a temporary path in the target's folder; move it onto ``path`` on success.

    ``suffix`` defaults to the target's suffix (some writers pick the format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask():
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
