"""IR spectra from MD trajectories: ``ir_spectrum`` (Ṁ = Σ Z v, correlation, lineshape),
trajectory streaming, plots. See :mod:`bornml.spectra.ir` for the physics and units."""

from .ir import QCFS, WINDOWS, IRSpectrum, ir_spectrum
from .plot import plot_ir, read_experiment_csv

__all__ = ["QCFS", "WINDOWS", "IRSpectrum", "ir_spectrum", "plot_ir", "read_experiment_csv"]
