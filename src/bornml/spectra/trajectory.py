r"""Stream MD frames as samples of Ṁ = Σ_j Z_j v_j, with a cross-checked time step.

Any trajectory ``ase.io.iread`` understands works (extxyz, ASE ``.traj``, XDATCAR, vasprun.xml,
LAMMPS dumps, ...); frames are read one by one and at most two are held at a time, so memory
does not grow with the length of the trajectory.

**Velocities** (Å/fs). From the file when it has them: the per-atom array ``velocities``
(Å/fs, :data:`bornml.keys.VELOCITIES`) or ASE momenta (extxyz ``momenta``, ``.traj``, LAMMPS
dumps with ``vx vy vz``), converted from ASE's Å/(Å·sqrt(amu/eV)). One sample per frame, at the
frame's time, with that frame's geometry (``sampling = "instant"``).

Otherwise from positions, one sample per **half step** (``sampling = "half-step"``): between
frames n and n+1 the mean velocity ``v̄_j = (r_j(t+Δt) − r_j(t)) / Δt`` (successive
displacements unwrapped with the minimum-image convention: an atom must move less than half a
cell per frame) at the midpoint geometry ``r_mid = r(t) + (r(t+Δt) − r(t))/2``. Z at the half
step is Z(r_mid) for a model and ½(Z_n + Z_{n+1}) for Born charges stored in the frames; for a
polarisation quadratic in the positions both make ``Σ_j Z_j·(r_j(t+Δt) − r_j(t)) = P(t+Δt) −
P(t)`` exact, so the sample is ``Ṁ_{n+½} = [P(t+Δt) − P(t)]/Δt``, the average of Ṁ over the
step. Its spectrum is the true one times ``sinc²(ωΔt/2)``, which
:func:`bornml.spectra.ir.lineshape` divides out exactly. N frames give N − 1 samples.

**Kinetic temperature** only from velocities stored in the file,
``T = 2⟨E_kin⟩ / (f k_B)`` with ``f = 3N − 3`` degrees of freedom by default, ``f = dof`` when
given, or ``f = 3N − 3 − constraints`` (rigid molecules, SHAKE: e.g. 3 per rigid water).
Finite-difference velocities never give a temperature (their kinetic energy is biased low by
the same filter): a positions-only trajectory needs the temperature from the user.

**Time between stored frames** (fs). Every source present is read and they must agree
(relative tolerance :data:`TIMESTEP_RTOL`), otherwise a :class:`~bornml.errors.BornDataError`
names the file, the frame and the key:

* the ``timestep_fs`` argument (``--timestep``);
* frame info ``timestep_fs`` / ``dt_fs`` (fs between stored frames, constant);
* differences of the frame info ``time_fs`` (fs) and ``time_ps`` (ps);
* differences of a bare ``time`` key, whose unit must be stated (``time_unit`` = ``"fs"``,
  ``"ps"`` or ``"ase"``, ASE's Å·sqrt(amu/eV) ≈ 10.18 fs: ``--time-unit``) — never guessed;
* an ASE ``.traj`` header written by ASE's MD (``timestep`` in ASE units × ``interval``, the
  number of MD steps between stored frames); a header with a ``timestep`` but no ``interval``
  only requires the spacing to be a whole multiple of that MD step.

A LAMMPS dump's integer ``timestep`` info is an MD step counter, not a time: it is only used to
check that the frames are evenly spaced, and the time between frames must be given. Uneven
spacing or no time step at all is an error naming the file and the frame.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import keys, units
from ..errors import BornDataError

#: relative tolerance for "the same time step"
TIMESTEP_RTOL = 1e-4

#: the units a bare ``time`` key may be declared in (``--time-unit``), in fs
TIME_UNITS_FS = {"fs": 1.0, "ps": 1000.0, "ase": units.ASE_TIME_UNIT_FS}

TIMESTEP_KEYS = keys.TIMESTEP_KEYS  #: frame info: time between stored frames, fs
STEP_COUNTER_KEYS = (keys.STEP_COUNTER,)  #: frame info: integer MD step counter (LAMMPS)

SAMPLING_INSTANT = "instant"  #: Ṁ(t_n) from velocities stored in the file
SAMPLING_HALF_STEP = "half-step"  #: [P(t+Δt) − P(t)]/Δt from position differences


@dataclass
class Frame:
    """One sample of Ṁ.

    ``index``: frame index in the file (for a half step, the first of its two frames);
    ``atoms``: the geometry at which Z is evaluated (a half step: the midpoint geometry, a new
    ``ase.Atoms``); ``velocities``: (n_atoms, 3) Å/fs (a half step: the mean velocity over the
    step); ``ends``: None, or for a half step the two file frames ``(atoms_n, atoms_n+1)``.
    """

    index: int
    atoms: object
    velocities: np.ndarray
    ends: tuple = None


@dataclass
class TrajectoryStats:
    """What was learnt about a trajectory while streaming it (filled in during iteration).

    ``timestep_fs``: time between samples (= between stored frames); ``n_frames``: samples
    yielded; ``n_read``: frames read; ``velocity_source``: "file" or "positions";
    ``sampling``: :data:`SAMPLING_INSTANT` or :data:`SAMPLING_HALF_STEP`; ``time_sources``:
    {description: fs} of every time source found (all agree); ``dof``: degrees of freedom of the
    kinetic temperature; ``temperature_K``: 2⟨E_kin⟩ / (dof k_B) over the frames, only with
    velocities from the file (else None); ``volume_A3``: mean cell volume (or the given one).
    """

    path: str
    timestep_fs: float = None
    n_frames: int = 0
    n_read: int = 0
    velocity_source: str = None
    sampling: str = None
    time_sources: dict = field(default_factory=dict)
    dof: int = None
    temperature_K: float = None
    volume_A3: float = None
    _ekin_sum_eV: float = field(default=0.0, repr=False)
    _vol_sum: float = field(default=0.0, repr=False)


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


def _close(a, b):
    return bool(np.isclose(a, b, rtol=TIMESTEP_RTOL, atol=0.0))


def traj_header_times(path):
    """``(frame_spacing_fs, md_step_fs)`` from an ASE ``.traj`` header written by ASE's MD
    (``description`` with ``timestep`` in ASE time units and ``interval`` in MD steps); either
    may be None."""
    from ase.io.trajectory import Trajectory

    try:
        with Trajectory(str(path)) as traj:
            desc = dict(traj.description or {})
    except (OSError, ValueError, KeyError, TypeError):  # not an ASE .traj: ase.io says so
        return None, None
    if desc.get("timestep") is None:
        return None, None
    md_step = float(desc["timestep"]) * units.ASE_TIME_UNIT_FS
    interval = desc.get("interval")
    return (md_step * int(interval) if interval else None), md_step


class _Clock:
    """Collects every time source of one file, checks that they agree, gives the time step."""

    def __init__(self, path, timestep_fs, time_unit=None, header=(None, None)):
        self.path = path
        self.sources = {}  # description -> (fs between frames, frame, key)
        self.prev = {}  # time key -> (time in fs, frame index)
        self.counter = None  # (previous step count, spacing)
        self.time_unit = time_unit
        self.md_step_fs = header[1]
        if time_unit is not None and time_unit not in TIME_UNITS_FS:
            raise BornDataError(f"unknown time unit {time_unit!r}; use one of "
                                f"{tuple(TIME_UNITS_FS)}", key="--time-unit")
        if timestep_fs is not None:
            if not timestep_fs > 0:
                raise BornDataError(f"the time step must be positive, got {timestep_fs} fs",
                                    path=path, key="--timestep")
            self.sources["--timestep"] = (float(timestep_fs), None, "--timestep")
        if header[0] is not None:
            self._agree("the .traj header (MD timestep × interval)", header[0], 0,
                        "description")

    def _agree(self, label, dt, frame, key):
        if label in self.sources:
            ref = self.sources[label][0]
            if not _close(dt, ref):
                raise BornDataError(
                    f"non-uniform time step: {label} gives {dt:g} fs here, {ref:g} fs before; "
                    "spectra need evenly spaced frames", path=self.path, frame=frame, key=key)
            return
        for other, (ref, _, _) in self.sources.items():
            if not _close(dt, ref):
                raise BornDataError(
                    f"the time sources disagree: {label} gives {dt:g} fs between stored "
                    f"frames, {other} gives {ref:g} fs (is one of them the MD integration "
                    "step?); correct the file or --timestep", path=self.path, frame=frame,
                    key=key)
        if self.md_step_fs is not None:
            ratio = dt / self.md_step_fs
            if round(ratio) < 1 or not _close(ratio, round(ratio)):
                raise BornDataError(
                    f"{label} gives {dt:g} fs between stored frames, not a whole multiple of "
                    f"the MD step {self.md_step_fs:g} fs in the .traj header", path=self.path,
                    frame=frame, key=key)
        self.sources[label] = (float(dt), frame, key)

    def check(self, atoms, index):
        """Read the time information of frame ``index``; raise on any disagreement."""
        info = atoms.info
        for key in TIMESTEP_KEYS:
            if key in info:
                dt = float(info[key])
                if not dt > 0:
                    raise BornDataError(f"time step {dt} fs is not positive", path=self.path,
                                        frame=index, key=key)
                self._agree(f"info '{key}'", dt, index, key)
        for key, unit in keys.TIME_KEY_UNITS.items():
            if key not in info:
                continue
            if unit is None:
                unit = self.time_unit
                if unit is None:
                    raise BornDataError(
                        f"the frame time '{key}' has no unit; state it with --time-unit "
                        f"{'|'.join(TIME_UNITS_FS)} (time_unit=)", path=self.path,
                        frame=index, key=key)
            value = float(info[key]) * TIME_UNITS_FS[unit]
            if key in self.prev:
                pvalue, pindex = self.prev[key]
                step = value - pvalue
                if pindex != index - 1 or not step > 0:
                    raise BornDataError(
                        f"non-uniform time step: '{key}' goes from {pvalue:g} fs (frame "
                        f"{pindex}) to {value:g} fs; spectra need evenly spaced frames",
                        path=self.path, frame=index, key=key)
                self._agree(f"differences of info '{key}' ({unit})", step, index, key)
            self.prev[key] = (value, index)
        for key in STEP_COUNTER_KEYS:
            if key in info:
                count = float(info[key])
                if self.counter is not None:
                    step = count - self.counter[0]
                    if step == 0:
                        raise BornDataError(
                            f"'{key}' is read as an MD step counter but does not change; if "
                            "it is the time between frames in fs, store it as 'timestep_fs' "
                            "or give --timestep", path=self.path, frame=index, key=key)
                    if not step > 0 or (self.counter[1] is not None
                                        and not _close(step, self.counter[1])):
                        raise BornDataError(
                            f"non-uniform time step: the MD step counter '{key}' goes from "
                            f"{self.counter[0]:g} to {count:g} (spacing {step:g}, expected "
                            f"{self.counter[1]}); spectra need evenly spaced frames",
                            path=self.path, frame=index, key=key)
                    self.counter = (count, step)
                else:
                    self.counter = (count, None)

        if index == 0 and not self.sources and not any(k in info for k in keys.TIME_KEYS):
            raise self._missing(index)  # no later frame can tell either

    def require(self, index):
        """The agreed time between frames (fs); raise when no source gives one."""
        if self.sources:
            return next(iter(self.sources.values()))[0]
        raise self._missing(index)

    def _missing(self, index):
        if self.counter is not None:
            why = (f"'{STEP_COUNTER_KEYS[0]}' is an MD step counter, not a time; give the time "
                   "between stored frames (e.g. --timestep 2.0 fs)")
        elif self.md_step_fs is not None:
            why = (f"the .traj header gives the MD step ({self.md_step_fs:g} fs) but not how "
                   "many steps lie between stored frames; give the time between stored frames "
                   "(--timestep)")
        else:
            why = ("the frames have no 'time_fs'/'time_ps'/'time' or 'timestep_fs' info (or a "
                   "single frame); give the time between stored frames (e.g. --timestep 2.0 fs)")
        return BornDataError(f"missing time step: {why}", path=self.path, frame=index)


def iter_frames(source, *, timestep_fs=None, volume_A3=None, file_format=None, stats=None,
                time_unit=None, dof=None, constraints=None, frame_range=None):
    """Yield :class:`Frame` samples (velocities in Å/fs) from one trajectory, streamed.

    ``source``: a path, or an iterable of ``ase.Atoms`` (then named "<memory>" in errors).
    ``timestep_fs``: time between stored frames (fs); checked against the file's own.
    ``volume_A3``: explicit volume (Å³); needed when the system is not periodic in 3-D.
    ``file_format``: passed to ``ase.io.iread`` (None: guess from the name / content).
    ``stats``: a :class:`TrajectoryStats` to fill in (time step, temperature, volume, ...).
    ``time_unit``: unit of a bare ``time`` info key ("fs", "ps" or "ase").
    ``dof`` / ``constraints``: degrees of freedom of the kinetic temperature, or the number of
    constraints to remove from 3N − 3 (give at most one).
    ``frame_range``: a :class:`~bornml.spectra.frame_index.FrameRange` (a chunk of a file):
    only frames [start, stop) are read, numbered as in the file. With ``boundary`` its last
    frame is the first of the next chunk: it is checked (time step, cell, velocities) and ends
    the last half step, but it is neither counted in ``stats`` nor yielded as an instant
    sample, so the chunks of a file add up to the whole (see :mod:`bornml.spectra.chunks`).
    """
    import ase.io

    header = (None, None)
    if isinstance(source, (str, Path)):
        path = str(source)
        if not Path(path).exists():
            raise BornDataError("trajectory file not found", path=path)
        if file_format == "traj" or (file_format is None and path.endswith(".traj")):
            header = traj_header_times(path)
        if frame_range is None:
            frames = ase.io.iread(path, index=":", format=file_format)
        else:
            frames = frame_range.read(path, file_format)
    elif frame_range is not None:
        raise ValueError("frame_range needs a trajectory file, not frames in memory")
    else:
        path = "<memory>"
        frames = iter(source)
    if stats is None:
        stats = TrajectoryStats(path=path)
    if dof is not None and constraints is not None:
        raise BornDataError("give the degrees of freedom (--dof) or the number of constraints "
                            "(--constraints), not both", path=path, key="--dof")
    clock = _Clock(path, timestep_fs, time_unit, header)
    prev = None  # positions mode: (index, atoms copy, unwrapped positions)
    mode = None
    first = 0 if frame_range is None else frame_range.start
    uncounted = frame_range.stop - 1 if frame_range is not None and frame_range.boundary \
        else None  # the next chunk's first frame
    index = first - 1
    for index, atoms in enumerate(frames, first):
        counted = index != uncounted
        clock.check(atoms, index)
        _check_cell(atoms, path, index, volume_A3, stats, counted)
        stats.n_read += counted
        v = _file_velocities(atoms)
        if mode is None:
            mode = "file" if v is not None else "positions"
            stats.velocity_source = mode
            stats.sampling = SAMPLING_INSTANT if v is not None else SAMPLING_HALF_STEP
            stats.dof = _degrees_of_freedom(len(atoms), dof, constraints, path)
        elif (v is not None) != (mode == "file"):
            raise BornDataError("some frames have velocities and some do not", path=path,
                                frame=index, key=keys.VELOCITIES)
        if mode == "file":
            if not counted:
                break
            _kinetic(stats, atoms, v)
            stats.n_frames += 1
            yield Frame(index, atoms, v)
            continue
        here = atoms.copy()  # the source may reuse one Atoms object
        if prev is None:
            prev = (index, here, np.array(here.positions, dtype=float))
            continue
        pindex, patoms, punwrapped = prev
        if len(here) != len(patoms):
            raise BornDataError("the number of atoms changes", path=path, frame=index)
        dt = clock.require(index)
        step = _minimum_image(here.positions - patoms.positions, here)
        mid = patoms.copy()
        mid.positions = patoms.positions + 0.5 * step
        stats.timestep_fs = dt
        stats.n_frames += 1
        yield Frame(pindex, mid, step / dt, ends=(patoms, here))
        prev = (index, here, punwrapped + step)
    if stats.n_frames == 0:
        raise BornDataError("no usable frames (velocities from positions need at least 2)",
                            path=path)
    stats.timestep_fs = clock.require(index)
    stats.time_sources = {k: v[0] for k, v in clock.sources.items()}
    _finish(stats)


def _degrees_of_freedom(n_atoms, dof, constraints, path):
    if dof is not None:
        f = int(dof)
        if f != dof or f < 1:
            raise BornDataError(f"--dof must be a positive integer, got {dof}", path=path,
                                key="--dof")
        return f
    c = 0 if constraints is None else constraints
    if int(c) != c or c < 0:
        raise BornDataError(f"--constraints must be an integer >= 0, got {constraints}",
                            path=path, key="--constraints")
    f = 3 * n_atoms - 3 - int(c)
    return f if f > 0 else None


def _check_cell(atoms, path, index, volume_A3, stats, counted=True):
    if volume_A3 is not None:
        if not volume_A3 > 0:
            raise BornDataError(f"volume must be positive, got {volume_A3} Å³", path=path,
                                key="--volume")
        stats._vol_sum += volume_A3 * counted
        return
    if not all(atoms.pbc):
        raise BornDataError(
            "the system is not periodic in all three directions, so its volume is not "
            "defined; give the volume explicitly (--volume Å³)", path=path, frame=index)
    vol = abs(float(atoms.cell.volume))
    if not vol > 0:
        raise BornDataError("the cell has zero volume; give the volume (--volume Å³)",
                            path=path, frame=index)
    stats._vol_sum += vol * counted


def _kinetic(stats, atoms, velocities):
    m = atoms.get_masses()
    stats._ekin_sum_eV += 0.5 * float(np.sum(m[:, None] * velocities**2)) \
        * units.AMU_A2_PER_FS2_TO_EV


def _finish(stats):
    stats.volume_A3 = stats._vol_sum / stats.n_read
    if stats.velocity_source == "file" and stats.dof:
        stats.temperature_K = (2.0 * stats._ekin_sum_eV / stats.n_frames
                               / (stats.dof * units.BOLTZMANN_EV_PER_K))
