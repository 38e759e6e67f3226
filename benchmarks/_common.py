"""Shared helpers of the benchmark scripts: data location, JSON lines, timing."""

import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data():
    """The ../shared/data folder (or $BORNML_SHARED_DATA); exits with a message if absent."""
    env = os.environ.get("BORNML_SHARED_DATA")
    path = Path(env) if env else (REPO / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        sys.exit(f"shared data not found at {path}; set BORNML_SHARED_DATA")
    return path


DATASETS = {
    "water": "water-rpbe/H2O_BEC.extxyz",
    "zro2": "zro2-pbesol/ZrO2_BEC.extxyz",
    "quartz": "sio2-quartz/SiO2.xyz",
}


def emit(record):
    """Print one JSON line (flushed) and return it."""
    print(json.dumps(record), flush=True)
    return record


def median_ms(fn, repeats=20, warmup=2):
    """Median wall time of ``fn()`` in ms over ``repeats`` calls (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), times
