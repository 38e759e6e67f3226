"""Physical constants and unit conversions, nothing else.

Internal units everywhere in bornml: Å (length), fs (time), eV (energy), e (charge),
amu (mass), K (temperature). Convert only at the edges, with the factors below.
Values: CODATA 2018 (exact where SI defines them).
"""

# SI constants
ELEMENTARY_CHARGE_C = 1.602176634e-19  # C per e (exact)
BOLTZMANN_J_PER_K = 1.380649e-23  # J/K (exact)
SPEED_OF_LIGHT_M_PER_S = 299792458.0  # m/s (exact)
VACUUM_PERMITTIVITY_F_PER_M = 8.8541878128e-12  # F/m
PLANCK_J_S = 6.62607015e-34  # J s (exact)
HBAR_J_S = PLANCK_J_S / (2.0 * 3.141592653589793)
AMU_KG = 1.66053906660e-27  # kg per amu
AVOGADRO_PER_MOL = 6.02214076e23  # 1/mol (exact)

# length / time / mass / energy
ANGSTROM_M = 1e-10
FS_S = 1e-15
EV_J = ELEMENTARY_CHARGE_C
BOHR_ANGSTROM = 0.529177210903

# dipole moments (molecular quantum-chemistry outputs, bornml.io.molecular)
DEBYE_C_M = 1e-21 / SPEED_OF_LIGHT_M_PER_S  # 1 D = 1e-18 statC·cm ≈ 3.33564e-30 C·m
E_ANGSTROM_DEBYE = ELEMENTARY_CHARGE_C * ANGSTROM_M / DEBYE_C_M  # 1 e·Å ≈ 4.80320 D
DEBYE_PER_ANGSTROM_TO_E = 1.0 / E_ANGSTROM_DEBYE
"""A dipole derivative in D/Å times this is in e (1 e = 4.80320 D/Å)."""
E_BOHR_TO_E_ANGSTROM = BOHR_ANGSTROM
"""A dipole moment in atomic units (e·bohr) times this is in e·Å."""

# derived
ANGSTROM_PER_FS_TO_M_PER_S = ANGSTROM_M / FS_S  # 1 Å/fs = 1e5 m/s
BOLTZMANN_EV_PER_K = BOLTZMANN_J_PER_K / EV_J
CM_INV_TO_RAD_PER_FS = 2.0 * 3.141592653589793 * SPEED_OF_LIGHT_M_PER_S * 100.0 * FS_S
"""Angular frequency (rad/fs) of a wavenumber of 1 cm⁻¹: ω = 2π c ν̃."""

# -- IR spectra / trajectories (bornml.spectra) ---------------------------------------------
ANGSTROM3_M3 = ANGSTROM_M**3  # 1 Å³ in m³
PER_M_TO_PER_CM = 1e-2  # a quantity in m⁻¹ times this is in cm⁻¹
E_ANGSTROM_PER_FS_TO_SI = ELEMENTARY_CHARGE_C * ANGSTROM_PER_FS_TO_M_PER_S
"""Dipole time derivative: 1 e·Å/fs in C·m/s."""
ASE_TIME_UNIT_FS = ANGSTROM_M * (AMU_KG / EV_J) ** 0.5 / FS_S
"""ASE's time unit Å·sqrt(amu/eV) in fs (≈ 10.18 fs); ASE velocities are Å per this unit,
so v[Å/fs] = v_ase / ASE_TIME_UNIT_FS."""
AMU_A2_PER_FS2_TO_EV = AMU_KG * ANGSTROM_PER_FS_TO_M_PER_S**2 / EV_J
"""Kinetic energy: 1 amu·Å²/fs² in eV (≈ 103.6 eV)."""

# -- molecular IR intensities (harmonic, double-harmonic approximation) ---------------------
IR_INTENSITY_E2_PER_AMU_TO_KM_PER_MOL = (
    AVOGADRO_PER_MOL * ELEMENTARY_CHARGE_C**2
    / (12.0 * VACUUM_PERMITTIVITY_F_PER_M * SPEED_OF_LIGHT_M_PER_S**2 * AMU_KG) / 1e3)
"""Integrated IR band intensity A = N_A |dμ/dQ|² / (12 ε0 c²): a squared mode dipole derivative
of 1 e²/amu (Q the mass-weighted normal coordinate) gives ≈ 974.88 km/mol."""
