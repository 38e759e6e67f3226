"""The one place the version of bornml is written (read by pyproject.toml and the package)."""

__version__ = "0.2.0"
