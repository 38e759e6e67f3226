"""Memory estimated before the work: every step that allocates O(D²), O(M²) or O(N·M) arrays
asks :func:`check_memory` first, so a too-large setting stops with a message that names the
setting to change — never a segmentation fault or the out-of-memory killer.

Sizes in bytes; float64 arrays (8 bytes per number).
"""

import os
import re

from .errors import MemoryLimitError

FLOAT = 8  #: bytes per float64
#: what shrinks the reference-sized arrays (the hint of those memory errors)
FEWER_REFERENCES = ("lower n_sparse (--n-sparse) or compress the species channels "
                    "(species_channels / --species-channels)")
DEFAULT_FRACTION = 0.8  #: share of the available memory a step may take when no limit is set

_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2 ** 10,
          "MIB": 2 ** 20, "GIB": 2 ** 30, "TIB": 2 ** 40}


def parse_bytes(value):
    """Bytes (float) from a number or a string such as "4GB", "500 MiB"; None stays None."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"max_memory must be positive, got {value}")
        return float(value)
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", str(value))
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"max_memory: cannot read {value!r}; use bytes or e.g. '4GB', '500MB'")
    return parse_bytes(float(match.group(1)) * _UNITS[match.group(2).upper()])


def available_bytes():
    """Memory the system can still give (MemAvailable of /proc/meminfo, else physical RAM)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def human(n_bytes):
    """'1.23 GB' style text for a byte count."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.2f} {unit}"
    return f"{n_bytes:.0f} B"


def check_memory(n_bytes, what, hint, limit=None):
    """Raise :class:`MemoryLimitError` if ``n_bytes`` exceeds ``limit`` (bytes, "4GB", …) or,
    with no limit, :data:`DEFAULT_FRACTION` of the available memory.

    ``what``: the step and its array (e.g. "normal equations (5000 × 5000)"); ``hint``: the
    setting(s) that reduce it (e.g. "lower n_sparse / --n-sparse").
    """
    limit_bytes = parse_bytes(limit)
    source = "max_memory"
    if limit_bytes is None:
        limit_bytes = DEFAULT_FRACTION * available_bytes()
        source = f"{DEFAULT_FRACTION:.0%} of the available memory"
    if n_bytes > limit_bytes:
        raise MemoryLimitError(
            f"{what} would need {human(n_bytes)}, more than the limit of {human(limit_bytes)} "
            f"({source}); {hint}, or raise max_memory (--max-memory)")
    return n_bytes
