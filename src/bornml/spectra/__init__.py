"""IR spectra from MD trajectories: ``ir_spectrum`` (Ṁ = Σ Z v, correlation, lineshape),
trajectory streaming, plots. See :mod:`bornml.spectra.ir` for the physics and units."""

from .ir import IRSpectrum, ir_spectrum, QCFS, WINDOWS
from .plot import plot_ir, read_experiment_csv

__all__ = ["IRSpectrum", "ir_spectrum", "plot_ir", "read_experiment_csv", "QCFS", "WINDOWS"]
