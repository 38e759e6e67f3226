"""Stream MD frames with velocities (Å/fs) and a checked, uniform time step.

Any trajectory ``ase.io.iread`` understands works (extxyz, ASE ``.traj``, XDATCAR, vasprun.xml,
LAMMPS dumps, ...); frames are read one by one and only three are held at a time, so memory
does not grow with the length of the trajectory.

Velocities, in order of preference:

1. the per-atom array ``velocities`` (Å/fs, the project's key, see :mod:`bornml.keys`);
2. ASE momenta (extxyz ``momenta`` column, ``.traj``, LAMMPS dumps with ``vx vy vz``), converted
   from ASE's Å/(Å·sqrt(amu/eV)) to Å/fs;
3. otherwise central differences of the unwrapped positions,
   ``v_i = (x_{i+1} - x_{i-1}) / (2 Δt)``, where successive displacements are unwrapped with
   the minimum-image convention (an atom must move less than half a cell per frame). The first
   and the last frame have no central difference and are dropped.

Time between stored frames (fs), in order of preference: the ``timestep_fs`` argument (the
``--timestep`` flag); the frame info ``timestep_fs`` / ``dt_fs`` (fs); differences of the frame
info ``time_fs`` / ``time`` (fs). A LAMMPS dump's integer ``timestep`` info is an MD step
counter, not a time: it is only used to check that frames are evenly spaced, and the time step
must then be given explicitly. Uneven spacing or no time step at all is a
:class:`~bornml.errors.BornDataError` naming the file and the frame.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import keys, units
from ..errors import BornDataError

#: relative tolerance for "the same time step"
TIMESTEP_RTOL = 1e-4

TIME_KEYS = keys.TIME_KEYS  #: frame info: absolute time of the frame, fs
TIMESTEP_KEYS = keys.TIMESTEP_KEYS  #: frame info: time between stored frames, fs
STEP_COUNTER_KEYS = ("timestep",)  #: frame info: integer MD step counter (LAMMPS dumps)


@dataclass
class Frame:
    """One frame: ``atoms`` (ase.Atoms), ``velocities`` (n_atoms, 3) in Å/fs, ``index`` in file."""

    index: int
    atoms: object
    velocities: np.ndarray


@dataclass
class TrajectoryStats:
    """What was learnt about a trajectory while streaming it (filled in during iteration).

    ``timestep_fs``: time between yielded frames; ``n_frames``: frames yielded;
    ``velocity_source``: "file" or "positions"; ``temperature_K``: kinetic temperature,
    2⟨E_kin⟩ / ((3N − 3) k_B) averaged over the yielded frames; ``volume_A3``: mean cell volume
    (None for a system that is not periodic in all three directions).
    """

    path: str
    timestep_fs: float = None
    n_frames: int = 0
    velocity_source: str = None
    temperature_K: float = None
    volume_A3: float = None
    _ekin_sum_eV: float = field(default=0.0, repr=False)
    _dof: int = field(default=0, repr=False)
    _vol_sum: float = field(default=0.0, repr=False)
    _periodic: bool = field(default=True, repr=False)


def _first_key(info, names):
    for name in names:
        if name in info:
            return name
    return None


def _file_velocities(atoms):
    """Velocities in Å/fs stored in the frame, or None."""
    if keys.VELOCITIES in atoms.arrays:
        return np.asarray(atoms.arrays[keys.VELOCITIES], dtype=float).reshape(len(atoms), 3)
    if keys.MOMENTA in atoms.arrays:
        return atoms.get_velocities() / units.ASE_TIME_UNIT_FS
    return None


def _minimum_image(d, atoms):
    """Displacements d (n, 3) Å mapped to their minimum image in ``atoms``' periodic cell."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.any():
        return d
    cell = np.asarray(atoms.cell[:])
    frac = np.linalg.solve(cell.T, d.T).T
    frac[:, pbc] -= np.round(frac[:, pbc])
    return frac @ cell


class _TimeChecker:
    """Checks that the frames of one file are evenly spaced; finds the time step (fs)."""

    def __init__(self, path, timestep_fs):
        self.path = path
        self.given = timestep_fs
        self.prev = None  # (kind, value) of the previous frame
        self.spacing = None  # in the units of the info key used
        self.timestep_fs = timestep_fs
        self.warned = False
        if timestep_fs is not None and not timestep_fs > 0:
            raise BornDataError(f"the time step must be positive, got {timestep_fs} fs",
                                path=path)

    def check(self, atoms, index):
        info = atoms.info
        key = _first_key(info, TIMESTEP_KEYS)
        if key is not None:
            dt = float(info[key])
            if not dt > 0:
                raise BornDataError(f"time step {dt} fs is not positive", path=self.path,
                                    frame=index, key=key)
            if self.spacing is not None and not np.isclose(dt, self.spacing, rtol=TIMESTEP_RTOL):
                raise BornDataError(
                    f"non-uniform time step: {dt} fs here, {self.spacing} fs before; spectra "
                    "need evenly spaced frames", path=self.path, frame=index, key=key)
            self.spacing = dt
            if self.given is None:
                self.timestep_fs = dt
            return
        key = _first_key(info, TIME_KEYS) or _first_key(info, STEP_COUNTER_KEYS)
        if key is None:
            if self.given is None:
                raise BornDataError(
                    "missing time step: the frame has no 'time_fs'/'time' or 'timestep_fs' "
                    "info; give the time between stored frames (e.g. --timestep 2.0 fs)",
                    path=self.path, frame=index)
            return
        if key in STEP_COUNTER_KEYS and self.given is None:
            raise BornDataError(
                f"missing time step: '{key}' is an MD step counter, not a time; give the "
                "time between stored frames (e.g. --timestep 2.0 fs)", path=self.path,
                frame=index, key=key)
        value = float(info[key])
        if self.prev is not None:
            pkey, pvalue = self.prev
            if pkey == key:
                step = value - pvalue
                if not step > 0 or (self.spacing is not None and
                                    not np.isclose(step, self.spacing, rtol=TIMESTEP_RTOL)):
                    raise BornDataError(
                        f"non-uniform time step: {key} goes from {pvalue} to {value} "
                        f"(spacing {step}, expected {self.spacing}); spectra need evenly "
                        "spaced frames", path=self.path, frame=index, key=key)
                self.spacing = step
                if self.given is None:
                    self.timestep_fs = step
        self.prev = (key, value)

    def require(self, index):
        file_dt = self.spacing if self.prev is None or self.prev[0] in TIME_KEYS else None
        if (self.given is not None and file_dt is not None and not self.warned
                and not np.isclose(file_dt, self.given, rtol=TIMESTEP_RTOL)):
            warnings.warn(f"{self.path}: the given time step {self.given} fs overrides the "
                          f"file's {file_dt} fs", stacklevel=3)
            self.warned = True
        if self.timestep_fs is None:
            raise BornDataError(
                "missing time step: cannot tell the time between frames from a single frame; "
                "give it explicitly (e.g. --timestep 2.0 fs)", path=self.path, frame=index)
        return self.timestep_fs


def iter_frames(source, *, timestep_fs=None, volume_A3=None, file_format=None, stats=None):
    """Yield :class:`Frame` objects (velocities in Å/fs) from one trajectory, streamed.

    ``source``: a path, or an iterable of ``ase.Atoms`` (then named "<memory>" in errors).
    ``timestep_fs``: time between stored frames (fs), overrides the file's info.
    ``volume_A3``: explicit volume (Å³); needed when the system is not periodic in 3-D.
    ``file_format``: passed to ``ase.io.iread`` (None: guess from the name / content).
    ``stats``: a :class:`TrajectoryStats` to fill in (time step, temperature, volume, ...).
    """
    import ase.io

    if isinstance(source, (str, Path)):
        path = str(source)
        if not Path(path).exists():
            raise BornDataError("trajectory file not found", path=path)
        frames = ase.io.iread(path, index=":", format=file_format)
    else:
        path = "<memory>"
        frames = iter(source)
    if stats is None:
        stats = TrajectoryStats(path=path)
    clock = _TimeChecker(path, timestep_fs)
    window = []  # (index, atoms, unwrapped positions) of up to three frames
    mode = None
    for index, atoms in enumerate(frames):
        clock.check(atoms, index)
        _check_cell(atoms, path, index, volume_A3, stats)
        v = _file_velocities(atoms)
        if mode is None:
            mode = "file" if v is not None else "positions"
            stats.velocity_source = mode
        elif (v is not None) != (mode == "file"):
            raise BornDataError("some frames have velocities and some do not", path=path,
                                frame=index, key=keys.VELOCITIES)
        if mode == "file":
            yield _account(stats, Frame(index, atoms, v))
            continue
        if window:
            if len(atoms) != len(window[-1][1]):
                raise BornDataError("the number of atoms changes", path=path, frame=index)
            step = _minimum_image(atoms.positions - window[-1][1].positions, atoms)
            unwrapped = window[-1][2] + step
        else:
            unwrapped = np.array(atoms.positions, dtype=float)
        window.append((index, atoms, unwrapped))
        if len(window) == 3:
            dt = clock.require(index)
            stats.timestep_fs = dt
            i, mid, _ = window[1]
            v = (window[2][2] - window[0][2]) / (2.0 * dt)
            yield _account(stats, Frame(i, mid, v))
            window.pop(0)
    if stats.n_frames == 0:
        raise BornDataError("no usable frames (velocities from positions need at least 3)",
                            path=path)
    stats.timestep_fs = clock.require(stats.n_frames - 1)
    _finish(stats)


def _check_cell(atoms, path, index, volume_A3, stats):
    if volume_A3 is not None:
        if not volume_A3 > 0:
            raise BornDataError(f"volume must be positive, got {volume_A3} Å³", path=path)
        stats._vol_sum += volume_A3
        return
    if not all(atoms.pbc):
        raise BornDataError(
            "the system is not periodic in all three directions, so its volume is not "
            "defined; give the volume explicitly (--volume Å³)", path=path, frame=index)
    vol = abs(float(atoms.cell.volume))
    if not vol > 0:
        raise BornDataError("the cell has zero volume; give the volume (--volume Å³)",
                            path=path, frame=index)
    stats._vol_sum += vol


def _account(stats, frame):
    m = frame.atoms.get_masses()
    stats._ekin_sum_eV += 0.5 * float(np.sum(m[:, None] * frame.velocities**2)) \
        * units.AMU_A2_PER_FS2_TO_EV
    stats._dof = 3 * len(m) - 3
    stats.n_frames += 1
    return frame


def _finish(stats):
    n_seen = stats.n_frames + (2 if stats.velocity_source == "positions" else 0)
    stats.volume_A3 = stats._vol_sum / n_seen
    if stats._dof > 0:
        stats.temperature_K = (2.0 * stats._ekin_sum_eV / stats.n_frames
                               / (stats._dof * units.BOLTZMANN_EV_PER_K))
