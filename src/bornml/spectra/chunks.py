r"""Ṁ of a long trajectory in chunks of frames, on any runner, resumable from a cache.

A trajectory file of n frames is cut at frames b_0 = 0 < b_1 < ... (every ``chunk_frames``).
Chunk k reads frames [b_k, b_{k+1}] — one frame of overlap, which position-only trajectories
need (the half step b_{k+1} − ½ uses frames b_{k+1} − 1 and b_{k+1}) and which also checks the
time step across the cut; the overlap frame is counted (temperature, volume, instant sample)
only by the chunk it starts. So the chunks give exactly the samples of the serial stream:
with velocities frames [b_k, b_{k+1}), from positions the half steps b_k + ½ .. b_{k+1} − ½.
The last chunk ends at the last frame (and has at least two frames).

:func:`chunk_series` is the unit of work: a module-level function of (provider, path, frame
range, options), so a Dask worker runs it, loading a model file once per process
(:class:`~bornml.model_file.ModelFile`) and reading only its frames (:mod:`.frame_index`). :func:`chunked_series`
runs the chunks of one file on a runner (:mod:`bornml.parallel`), takes finished chunks from a
:class:`ChunkCache` and writes new ones to it as they arrive, and joins them in order.
"""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import keys
from ..errors import BornDataError
from ..fileutils import atomic_path
from ..model_file import ModelFile
from .frame_index import FrameRange, is_extxyz, scan_extxyz
from .trajectory import TrajectoryStats, _close, _finish

#: default frames per chunk: a few seconds of work for a 200-atom frame, few MB of text
DEFAULT_CHUNK_FRAMES = 256


def plan_chunks(path, chunk_frames=DEFAULT_CHUNK_FRAMES, file_format=None):
    """:class:`FrameRange` list covering the file (see the module docstring); ``chunk_frames``
    ≥ 2 frames per chunk."""
    from .frame_index import count_frames

    c = max(2, int(chunk_frames))
    extxyz = is_extxyz(path, file_format)
    if extxyz:
        n, offsets = scan_extxyz(path, lambda k: k % c in (0, 1))
    else:
        n, offsets = count_frames(path, file_format), None
    starts = list(range(0, max(n, 1), c))
    if len(starts) > 1 and n - starts[-1] < 2:
        starts.pop()  # a last chunk of one frame joins the one before
    ranges = []
    for k, start in enumerate(starts):
        last = k == len(starts) - 1
        stop = n if last else starts[k + 1] + 1
        span = (offsets[start], offsets[stop]) if extxyz and n else None
        ranges.append(FrameRange(start, stop, boundary=not last, byte_range=span))
    return ranges


def chunk_series(provider, path, frame_range, options):
    """Ṁ (n, 3) e·Å/fs and :class:`TrajectoryStats` of one chunk (runs on a worker).

    ``provider``: "file" (Born charges stored in the frames), a :class:`ModelFile`, or a model
    object; ``options``: keyword arguments of :func:`bornml.spectra.ir.dipole_derivative_series`
    (layout, time step, volume, format, time unit, dof, constraints)."""
    from .ir import dipole_derivative_series

    if isinstance(provider, ModelFile):
        provider = provider.load()
    return dipole_derivative_series(str(path), bec_provider=provider, progress=False,
                                    frame_range=frame_range, **options)


def merge_stats(path, parts):
    """One :class:`TrajectoryStats` from those of consecutive chunks (sums, checks that the
    chunks agree on velocity source, degrees of freedom and time step)."""
    out = TrajectoryStats(path=str(path))
    first = parts[0]
    out.velocity_source, out.sampling, out.dof = first.velocity_source, first.sampling, first.dof
    out.timestep_fs = first.timestep_fs
    for st in parts:
        if st.velocity_source != first.velocity_source:
            raise BornDataError("some frames have velocities and some do not", path=path,
                                key=keys.VELOCITIES)
        if not _close(st.timestep_fs, first.timestep_fs):
            raise BornDataError(f"non-uniform time step: {st.timestep_fs:g} fs in one part of "
                                f"the file, {first.timestep_fs:g} fs before; spectra need "
                                "evenly spaced frames", path=path)
        for label, dt in st.time_sources.items():
            out.time_sources.setdefault(label, dt)
        out.n_frames += st.n_frames
        out.n_read += st.n_read
        out._ekin_sum_eV += st._ekin_sum_eV
        out._vol_sum += st._vol_sum
    _finish(out)
    return out


class ChunkCache:
    """Finished chunks on disk (``--cache DIR``): one ``.npz`` per chunk, written atomically,
    named by a hash of everything the chunk's Ṁ depends on — the trajectory file and the model
    file (absolute path, size, modification time), the frame range and the options. A changed
    file or option gives new names, so stale chunks are never used."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(provider, path, frame_range, options):
        st = Path(path).stat()
        what = {"trajectory": [str(Path(path).resolve()), st.st_size, st.st_mtime_ns],
                "provider": provider.identity() if isinstance(provider, ModelFile)
                else str(provider),
                "range": [frame_range.start, frame_range.stop, frame_range.boundary],
                "options": {k: options[k] for k in sorted(options)}}
        digest = hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:20]
        return f"chunk-{frame_range.start:09d}-{frame_range.stop:09d}-{digest}.npz"

    def load(self, name):
        """(mdot, stats) of a finished chunk, or None."""
        path = self.folder / name
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                mdot = np.array(data[keys.CACHE_MDOT])
                fields = json.loads(str(data[keys.CACHE_STATS]))
        except (OSError, ValueError, KeyError):
            return None  # unreadable: computed again
        return mdot, TrajectoryStats(**fields)

    def store(self, name, mdot, stats):
        fields = {k: v for k, v in asdict(stats).items()}
        with atomic_path(self.folder / name) as tmp:
            np.savez(tmp, **{keys.CACHE_MDOT: np.asarray(mdot, dtype=float),
                             keys.CACHE_STATS: np.array(json.dumps(fields))})


def chunked_series(path, *, provider, runner, options, chunk_frames=None, cache=None,
                   progress=None):
    """``(mdot (n_samples, 3) e·Å/fs, stats)`` of one trajectory file, identical to
    :func:`~bornml.spectra.ir.dipole_derivative_series` of the whole file.

    ``runner``: :mod:`bornml.parallel` runner; ``cache``: a :class:`ChunkCache` or None;
    ``progress``: a :class:`bornml.progress.ChunkProgress` or None.
    Returns also ``counts`` = {"computed": chunks computed, "cached": chunks from the cache}."""
    ranges = plan_chunks(path, chunk_frames or DEFAULT_CHUNK_FRAMES, options.get("file_format"))
    results, todo, names = {}, [], {}
    for k, fr in enumerate(ranges):
        names[k] = ChunkCache.key(provider, path, fr, options) if cache is not None else None
        hit = cache.load(names[k]) if cache is not None else None
        if hit is not None:
            results[k] = hit
        else:
            todo.append(k)
    if progress is not None:
        progress.add(sum(r.stop - r.start - r.boundary for r in ranges), len(ranges),
                     Path(path).name)
        for k in results:
            progress.update(results[k][1].n_read, cached=True)
    tasks = [(provider, str(path), ranges[k], options) for k in todo]
    for i, (mdot, stats) in runner.unordered(chunk_series, tasks):
        k = todo[i]
        if cache is not None:
            cache.store(names[k], mdot, stats)
        results[k] = (mdot, stats)
        if progress is not None:
            progress.update(stats.n_read)
    mdot = np.concatenate([results[k][0] for k in range(len(ranges))]).reshape(-1, 3)
    stats = merge_stats(path, [results[k][1] for k in range(len(ranges))])
    return mdot, stats, {"computed": len(todo), "cached": len(ranges) - len(todo)}

