"""The one registry of data keys and Born-charge layouts.

Convention of the whole package: ``Z[j, a, b] = dP_a / dr_{j b}`` (e), shape (n_atoms, 3, 3);
``a`` is the polarisation (field) direction, ``b`` the displacement direction of atom ``j``.
In extxyz files it is stored as the per-atom column ``bec:R:9``, row-major (``a`` slow).

``model.predict(frame)`` returns one dict per frame with the keys :data:`BEC` (N, 3, 3) e,
:data:`CHARGES` (N,) e (neutral), :data:`ASR_RESIDUAL` (3, 3) e (what the sum-rule projection
removed; zero for molecules) and, for models with dipoles, :data:`DIPOLES` (N, 3) e·Å.
"""

# -- canonical keys in ``ase.Atoms.arrays`` / ``ase.Atoms.info`` --------------------------
BEC = "bec"  #: per-atom Born effective charges, (n_atoms, 3, 3), e
CHARGES = "charges"  #: per-atom model charges, (n_atoms,), e
DIPOLES = "dipoles"  #: per-atom model dipoles, (n_atoms, 3), e·Å
FORCES = "forces"  #: per-atom forces, (n_atoms, 3), eV/Å
VELOCITIES = "velocities"  #: per-atom velocities, (n_atoms, 3), Å/fs
ENERGY = "energy"  #: frame energy, eV
EPSILON_INF = "epsilon_inf"  #: frame electronic dielectric tensor, (3, 3)
POLARIZATION = "polarization"  #: frame polarisation (cell dipole), (3,), e·Å
SOURCE = "bornml_source"  #: frame provenance "file:frame" used in error messages
ASR_RESIDUAL = "asr_residual"  #: predict dict: part removed by the sum-rule projection, (3, 3) e
TIME_KEYS = ("time_fs", "time")  #: frame info: absolute time of the frame, fs
TIMESTEP_KEYS = ("timestep_fs", "dt_fs")  #: frame info: time between stored frames, fs
TIMESTEP = TIMESTEP_KEYS[0]  #: the time-step key bornml writes, fs

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
