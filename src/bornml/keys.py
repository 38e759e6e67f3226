"""The one registry of data keys and Born-charge layouts.

Every per-atom / per-frame key that bornml reads or writes (``ase.Atoms.arrays`` and
``ase.Atoms.info`` keys, extxyz columns, keys of the dicts returned by ``predict``) is a constant
here, with its shape and unit; modules use the constant, never the string.

Convention of the whole package: ``Z[j, a, b] = dP_a / dr_{j b}`` (e), shape (n_atoms, 3, 3);
``a`` is the polarisation (field) direction, ``b`` the displacement direction of atom ``j``.
In extxyz files it is stored as the per-atom column ``bec:R:9``, row-major (``a`` slow).
In ``ase.Atoms.arrays["bec"]`` frames from the readers hold the same 9 numbers as an
(n_atoms, 9) array (ASE's extxyz writer accepts only 1-D or 2-D per-atom arrays, so
``ase.io.write`` works on them); read it with :func:`bec_of` ((n_atoms, 3, 3) view) and store it
with :func:`set_bec`. An (n_atoms, 3, 3) array set by hand is accepted by every reader of it.

``model.predict(frame)`` (every model: q, p, q+p and the MACE heads) returns one dict per frame:

* :data:`CHARGES` ``"charges"`` (N,) e: neutral atomic charges q'_i (for p and mace-p the fixed
  species charges, made neutral);
* :data:`DIPOLES` ``"dipoles"`` (N, 3) e·Å: atomic dipoles p_i, only for models with dipoles
  (p, q+p, mace-p, mace-q+p);
* :data:`BEC` ``"bec"`` (N, 3, 3) e: the Born effective charges Z[j, a, b];
* :data:`ASR_RESIDUAL` ``"asr_residual"`` (3, 3) e: what the acoustic-sum-rule projection
  removed (zero for molecules).

``bornml predict`` / ``bornml partition`` write them as extxyz columns under the keys of
:data:`PREDICTED` (``bec_predicted:R:9``, ``charges_predicted``, ``dipoles_predicted``), so a
file's DFT labels (``bec``) and charges are never replaced by predictions.
"""

import numpy as np

# -- canonical keys in ``ase.Atoms.arrays`` / ``ase.Atoms.info`` --------------------------
BEC = "bec"  #: per-atom Born charges, stored (n_atoms, 9) row-major in arrays, e; see bec_of
CHARGES = "charges"  #: per-atom model charges, (n_atoms,), e
DIPOLES = "dipoles"  #: per-atom model dipoles, (n_atoms, 3), e·Å
FORCES = "forces"  #: per-atom forces, (n_atoms, 3), eV/Å
VELOCITIES = "velocities"  #: per-atom velocities, (n_atoms, 3), Å/fs
ENERGY = "energy"  #: frame energy, eV
ENERGY_ALIASES = (ENERGY, "total_energy")  #: frame info keys read as the energy (eV), in order
ATOMIC_ENERGIES = "energies"  #: per-atom energies of a force field (site + offset), (n_atoms,), eV
EPSILON_INF = "epsilon_inf"  #: frame electronic dielectric tensor, (3, 3)
POLARIZATION = "polarization"  #: frame polarisation (cell dipole), (3,), e·Å
NUMBERS = "numbers"  #: per-atom atomic numbers (ASE), (n_atoms,), named in species errors
POSITIONS = "positions"  #: per-atom positions (ASE), (n_atoms, 3), Å
MOMENTA = "momenta"  #: per-atom momenta (ASE units, amu·Å/ASE-time), (n_atoms, 3)
STRESS = "stress"  #: frame stress (calculator result), Voigt (6,) or (3, 3), eV/Å³
PBC = "pbc"  #: frame periodicity written to the extxyz comment line, (3,) bool
SOURCE = "bornml_source"  #: frame provenance "file:frame" used in error messages
ASR_RESIDUAL = "asr_residual"  #: predict dict: part removed by the sum-rule projection, (3, 3) e
TIME_FS = "time_fs"  #: frame info: time of the frame, fs
TIME_PS = "time_ps"  #: frame info: time of the frame, ps
TIME = "time"  #: frame info: time of the frame in a unit the file does not state (--time-unit)
TIME_KEYS = (TIME_FS, TIME_PS, TIME)  #: frame info: absolute time of the frame
TIME_KEY_UNITS = {TIME_FS: "fs", TIME_PS: "ps", TIME: None}  #: unit of each time key (None: ask)
STEP_COUNTER = "timestep"  #: frame info (LAMMPS dumps): integer MD step counter, not a time
TIMESTEP_KEYS = ("timestep_fs", "dt_fs")  #: frame info: time between stored frames, fs
TIMESTEP = TIMESTEP_KEYS[0]  #: the time-step key bornml writes, fs
IPI_STEP = "ipi_step"  #: frame info: i-PI step number of a frame read from i-PI trajectories

# -- chunk cache of ``bornml ir --cache DIR`` (one .npz per chunk, bornml.spectra.chunks) ---
CACHE_MDOT = "mdot"  #: Ṁ samples of the chunk, (n_samples, 3), e·Å/fs
CACHE_STATS = "stats"  #: the chunk's TrajectoryStats fields as a JSON string

# -- model predictions written next to the input's data (never over its labels) -------------
BEC_PREDICTED = "bec_predicted"  #: per-atom predicted Born charges, extxyz bec_predicted:R:9, e
CHARGES_PREDICTED = "charges_predicted"  #: per-atom predicted charges q'_i, (n_atoms,), e
DIPOLES_PREDICTED = "dipoles_predicted"  #: per-atom predicted dipoles p_i, (n_atoms, 3), e·Å
#: predict-dict key → the column ``bornml predict`` / ``partition`` write it under
PREDICTED = {BEC: BEC_PREDICTED, CHARGES: CHARGES_PREDICTED, DIPOLES: DIPOLES_PREDICTED}

# -- predictive uncertainty of the kernel models (:mod:`bornml.models.posterior`) -----------
BEC_STD = "bec_std"  #: predict dict / extxyz bec_std:R:9: posterior std of each Z[j,a,b], (N, 3, 3) e
CHARGES_STD = "charges_std"  #: predict dict / per-atom column: posterior std of q'_i, (N,) e
#: predict dict / frame info: RMS over the frame's 9N components of ``bec_std``, e
UNCERTAINTY_SCORE = "uncertainty_score"
EXTRAPOLATING = "extrapolating"  #: frame info: score above the model's training threshold, bool
POOL_INDEX = "pool_index"  #: frame info (``bornml select``): index of the frame in the pool
#: predict-dict std key → the column ``bornml predict --uncertainty`` writes it under
STD_COLUMNS = {BEC_STD: BEC_STD, CHARGES_STD: CHARGES_STD}

# -- extxyz: structure columns, never written as extra per-atom columns --------------------
EXTXYZ_SPECIES = "species"  #: extxyz column of element symbols, (n_atoms,)
EXTXYZ_POSITIONS = "pos"  #: extxyz column of positions, (n_atoms, 3), Å
STRUCTURE_COLUMNS = (NUMBERS, POSITIONS, EXTXYZ_SPECIES, EXTXYZ_POSITIONS, "symbols")

# -- aliases met in the wild ----------------------------------------------------------------
BEC_ALIASES = ("bec", "BEC", "born_charge", "born_charges", "born_effective_charges", "becs")
EPSILON_ALIASES = ("epsilon_inf", "epsilon", "eps", "dielectric_tensor")

# -- layouts of the 9 numbers per atom ------------------------------------------------------
LAYOUT_P_R = "P-r"  #: row = polarisation direction a, column = displacement b (the project's)
LAYOUT_R_P = "r-P"  #: transposed storage: row = displacement, column = polarisation
LAYOUT_AUTO = "auto"  #: decide from the source (file format, key); extxyz defaults to "P-r"
LAYOUTS = (LAYOUT_AUTO, LAYOUT_P_R, LAYOUT_R_P)


def to_project_layout(bec, layout):
    """Return ``bec`` (n_atoms, 3, 3) in the project layout from storage ``layout``."""
    if layout == LAYOUT_P_R:
        return bec
    if layout == LAYOUT_R_P:
        return bec.transpose(0, 2, 1)
    raise ValueError(f"unknown BEC layout {layout!r}; use one of {LAYOUTS}")


def bec_of(atoms):
    """Born charges of ``atoms`` as (n_atoms, 3, 3) float64, e: a view of ``arrays["bec"]``
    (stored (n_atoms, 9) row-major, or (n_atoms, 3, 3) when set by hand), so writes go
    through. Raises KeyError without Born charges, ValueError for another size."""
    bec = atoms.arrays[BEC]
    if np.shape(bec) not in ((len(atoms), 9), (len(atoms), 3, 3)):
        raise ValueError(f"arrays[{BEC!r}] has shape {np.shape(bec)}, expected "
                         f"({len(atoms)}, 9) or ({len(atoms)}, 3, 3)")
    if bec.dtype != np.float64 or not bec.flags.c_contiguous:  # make the view writable-through
        bec = atoms.arrays[BEC] = np.ascontiguousarray(bec, dtype=np.float64)
    return bec.reshape(len(atoms), 3, 3)


def energy_of(atoms):
    """Energy (eV) of a labelled frame: the first of :data:`ENERGY_ALIASES` in ``info``, else a
    single-point calculator's result (``ase.io.read``), else None."""
    for key in ENERGY_ALIASES:
        if key in atoms.info:
            return float(atoms.info[key])
    results = getattr(atoms.calc, "results", {}) or {}
    return float(results[ENERGY]) if ENERGY in results else None


def forces_of(atoms):
    """Forces (n_atoms, 3) eV/Å of a labelled frame from ``arrays["forces"]``, else a
    single-point calculator's result, else None."""
    if FORCES in atoms.arrays:
        return np.asarray(atoms.arrays[FORCES], dtype=float)
    results = getattr(atoms.calc, "results", {}) or {}
    return np.asarray(results[FORCES], dtype=float) if FORCES in results else None


def stress_of(atoms):
    """Stress (3, 3) eV/Å³ (ASE sign) from ``info["stress"]`` (9 numbers or Voigt 6), else a
    single-point calculator's result, else None."""
    value = atoms.info.get(STRESS)
    if value is None:
        value = (getattr(atoms.calc, "results", {}) or {}).get(STRESS)
    if value is None:
        return None
    value = np.asarray(value, dtype=float).reshape(-1)
    if value.size == 6:
        xx, yy, zz, yz, xz, xy = value
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return value.reshape(3, 3)


def set_bec(atoms, bec):
    """Store Born charges ``bec`` ((n_atoms, 3, 3) or (n_atoms, 9), e, project layout) as
    ``atoms.arrays["bec"]``, float64 (n_atoms, 9) row-major; return the (n_atoms, 3, 3) view."""
    bec = np.array(bec, dtype=np.float64, order="C")
    if bec.shape not in ((len(atoms), 9), (len(atoms), 3, 3)):
        raise ValueError(f"Born charges of shape {bec.shape} for {len(atoms)} atoms; expected "
                         f"({len(atoms)}, 3, 3) or ({len(atoms)}, 9)")
    atoms.arrays[BEC] = bec.reshape(len(atoms), 9)
    return atoms.arrays[BEC].reshape(len(atoms), 3, 3)
