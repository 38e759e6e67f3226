"""Shared pytest fixtures for bornml tests."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data():
    """Folder of the real DFT data sets (``../shared/data``), or skip when it is absent.

    ``BORNML_SHARED_DATA`` overrides the location; a user's fresh clone has no ``../shared``.
    """
    candidates = [os.environ.get("BORNML_SHARED_DATA"),
                  Path(__file__).parents[1] / ".." / "shared" / "data"]
    for cand in candidates:
        if cand and Path(cand).resolve().is_dir():
            return Path(cand).resolve()
    pytest.skip("shared data folder not found (set BORNML_SHARED_DATA)")


@pytest.fixture(scope="session")
def quartz_frames():
    """The 30 α-quartz frames shipped with bornml (labelled, periodic, 72 atoms)."""
    import bornml
    from bornml.demo import shipped_data_path

    return bornml.read_frames(shipped_data_path())
