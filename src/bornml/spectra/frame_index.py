"""Count the frames of a trajectory file and read a contiguous range of them.

A chunk of a long trajectory is read without parsing the frames before it:

* extxyz / xyz: :func:`scan_extxyz` finds the byte offset of every frame once (one pass over
  the lines, no parsing; only the offsets that chunks start or end at are kept, so its memory
  does not grow with the file); a worker then reads just its bytes and parses them with
  ``ase.io``;
* ASE ``.traj``: random access (``ase.io.iread`` with a slice);
* any other format ``ase.io`` reads: ``ase.io.iread`` with a slice, which parses (and discards)
  the frames before the chunk — correct, but each chunk costs a pass over the file up to it.
"""

import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import BornDataError

EXTXYZ_FORMATS = ("extxyz", "xyz")


def is_extxyz(path, file_format=None):
    """True when ``path`` is read as (extended) XYZ."""
    if file_format is not None:
        return file_format in EXTXYZ_FORMATS
    return Path(path).suffix.lower() in (".xyz", ".extxyz")


@dataclass(frozen=True)
class FrameRange:
    """Frames [start, stop) of one file (0-based, as numbered in the file).

    ``boundary``: the last frame is also the first frame of the next chunk (see
    :func:`bornml.spectra.trajectory.iter_frames`); ``byte_range``: (first byte, end byte) of
    these frames in an extxyz file, or None (then ``ase.io.iread`` with a slice).
    """

    start: int
    stop: int
    boundary: bool = False
    byte_range: tuple = None

    def read(self, path, file_format=None):
        """Iterator over the ``ase.Atoms`` of this range."""
        import ase.io

        if self.byte_range is None:
            return ase.io.iread(str(path), index=slice(self.start, self.stop),
                                format=file_format)
        first, end = self.byte_range
        with open(path, "rb") as fh:
            fh.seek(first)
            text = fh.read(end - first).decode()
        return ase.io.iread(io.StringIO(text), index=":", format="extxyz")


def scan_extxyz(path, keep):
    """``(n_frames, {frame: byte offset})`` of an extxyz file, one pass over its lines.

    ``keep(frame) -> bool`` chooses the frames whose offset is kept; the end of the file is
    kept under ``n_frames``. Files with ``VEC`` cell lines are refused here (read them without
    chunks)."""
    offsets = {}
    n = 0
    with open(path, "rb") as fh:
        while True:
            pos = fh.tell()
            line = fh.readline()
            if not line.strip():
                break
            try:
                natoms = int(line)
            except ValueError:
                raise BornDataError(f"not an xyz frame header: {line[:40]!r}", path=path,
                                    frame=n) from None
            if keep(n):
                offsets[n] = pos
            for _ in range(natoms + 1):
                fh.readline()
            peek = fh.peek(4)[:4] if hasattr(fh, "peek") else b""
            if peek.lstrip().startswith(b"VEC"):
                raise BornDataError("VEC cell lines are not supported in chunked reading",
                                    path=path, frame=n)
            n += 1
    offsets[n] = pos
    return n, offsets


def count_frames(path, file_format=None):
    """Number of frames in a trajectory file (extxyz: a line scan; .traj: its length;
    otherwise one pass of ``ase.io.iread``)."""
    import ase.io

    path = str(path)
    if not Path(path).exists():
        raise BornDataError("trajectory file not found", path=path)
    if is_extxyz(path, file_format):
        return scan_extxyz(path, lambda k: False)[0]
    if file_format == "traj" or (file_format is None and path.endswith(".traj")):
        from ase.io.trajectory import Trajectory

        with Trajectory(path) as traj:
            return len(traj)
    return sum(1 for _ in ase.io.iread(path, index=":", format=file_format))
