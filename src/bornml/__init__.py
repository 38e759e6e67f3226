"""bornml: Born effective charges from DFT with monopole kernel models, and IR spectra."""

__version__ = "0.1.0"
