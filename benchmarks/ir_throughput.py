"""Throughput of the ``bornml ir`` pipeline on 192-atom water frames, model vs fixed charges.

Not part of the package. The pipeline is :func:`bornml.ir_spectrum` on an extxyz file, as the
``bornml ir`` command runs it: reading the frames (``ase.io.iread``, velocities from the file),
Ṁ = Σ_j Z_j v_j per frame, then the autocorrelation and the lineshape. It is timed twice in
the same run on the same file (the first ``--frames`` frames of one q-SPC/Fw NVE trajectory from
``water_md.py``, copied to a temporary file so that exactly that many frames are read):

* ``frames_per_second``: Z_j predicted by the monopole model (``dipole_derivative``);
* ``frames_per_second_fixed_charges``: constant point charges Z_j = q_j·I (q-SPC/Fw), the cost
  of a ``--bec-from-file``-like run without a model — the difference isolates the model;
* ``ms_per_frame_model_only``: median wall time of ``model.dipole_derivative(atoms, v)``
  alone, each of 20 frames timed once (after two warm-up calls).

Everything runs after a warm-up prediction (Numba kernels compiled or loaded from cache, file
in the page cache), so the numbers are steady-state. The target of the issue is ≥ 20
frames/s on 2 cores. Timings depend on other load on the machine; the load average at the
start and the end is recorded, with the thread settings. On a busy 2-core machine OpenBLAS's
default of one thread per core slowed the prediction about 3.5-fold (178 vs 50 ms per frame,
load average ≈ 4): compare ``OPENBLAS_NUM_THREADS=1 python benchmarks/ir_throughput.py`` with
the default (the variable must be set before Python starts).

The model: ``--model PATH`` (default ``benchmarks/out/water_q.npz``, written by
``water_ir.py``); when that file does not exist, a model with ``HYPERS["water"]`` (or
``--n-sparse``) is trained on ``--train-frames`` frames of the water-rpbe data first
(prediction cost depends on the number of reference environments, not on the training-set
size, as long as there are at least n_sparse environments per species: 16 frames for 1000).

    python benchmarks/ir_throughput.py [--model benchmarks/out/water_q.npz] [--frames 500]
"""

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from _common import DATASETS, emit, shared_data
from learning_curve import HYPERS, split, training_subset
from water_ir import FF_CHARGES, MD_DIR, OUT, FixedCharges, complete_frames

TARGET_FPS = 20.0


def copy_prefix(src, dst, n_frames):
    """Write the first ``n_frames`` frames of the extxyz ``src`` to ``dst``."""
    with open(src, "rb") as fin:
        n_atoms = int(fin.readline())
        fin.seek(0)
        with open(dst, "wb") as fout:
            fout.writelines(fin.readline() for _ in range(n_frames * (n_atoms + 2)))


def get_model(args):
    import bornml

    if args.model.exists():
        return bornml.load_model(args.model), str(args.model)
    frames = bornml.read_frames(shared_data() / DATASETS["water"])
    _, pool = split(len(frames))
    hypers = dict(HYPERS["water"])
    if args.n_sparse:
        hypers["n_sparse"] = args.n_sparse
    idx = training_subset(pool, args.train_frames)
    return bornml.MonopoleModel(**hypers).fit([frames[i] for i in idx]), \
        f"trained here on {len(idx)} frames"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=OUT / "water_q.npz")
    parser.add_argument("--train-frames", type=int, default=20,
                        help="training frames when --model does not exist (default 20)")
    parser.add_argument("--n-sparse", type=int,
                        help="n_sparse when training here (default HYPERS['water'])")
    parser.add_argument("--trajectory", type=Path, default=MD_DIR / "water_nve_00.extxyz")
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--model-only-frames", type=int, default=20)
    args = parser.parse_args()

    import ase.io
    import numpy as np

    import bornml

    load_start = os.getloadavg()[0]
    available = complete_frames(args.trajectory)
    if available < args.frames:
        raise SystemExit(f"{args.trajectory} has {available} complete frames < {args.frames}")
    model, model_source = get_model(args)
    fixed = FixedCharges(FF_CHARGES)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prefix.extxyz"
        copy_prefix(args.trajectory, path, args.frames)
        first = ase.io.read(path, index=0)
        model.dipole_derivative(first, first.arrays["velocities"])  # warm-up (Numba, caches)

        def pipeline(provider):
            start = time.perf_counter()
            with warnings.catch_warnings():  # one trajectory: "no confidence band"
                warnings.simplefilter("ignore")
                sp = bornml.ir_spectrum(str(path), bec_provider=provider, progress=False)
            return time.perf_counter() - start, sp

        t_fixed, sp = pipeline(fixed)
        t_model, _ = pipeline(model)

        n_only = min(args.model_only_frames, args.frames)
        picks = np.unique(np.linspace(0, args.frames - 1, n_only).round().astype(int))
        frames = [ase.io.read(path, index=int(i)) for i in picks]
    for f in frames[:2]:
        model.dipole_derivative(f, f.arrays["velocities"])
    times = []
    for f in frames:
        v = f.arrays["velocities"]
        start = time.perf_counter()
        model.dipole_derivative(f, v)
        times.append((time.perf_counter() - start) * 1e3)

    fps = args.frames / t_model
    fps_fixed = args.frames / t_fixed
    try:
        import numba

        numba_threads = numba.get_num_threads()
    except ImportError:
        numba_threads = None
    emit({
        "benchmark": "ir_throughput",
        "n_atoms": len(first),
        "frames": args.frames,
        "trajectory": str(args.trajectory),
        "frames_per_second": round(fps, 3),
        "frames_per_second_fixed_charges": round(fps_fixed, 3),
        "ms_per_frame_pipeline": round(1e3 / fps, 2),
        "ms_per_frame_pipeline_fixed_charges": round(1e3 / fps_fixed, 2),
        "ms_per_frame_model_in_pipeline": round(1e3 / fps - 1e3 / fps_fixed, 2),
        "ms_per_frame_model_only": round(statistics.median(times), 2),
        "ms_per_frame_model_only_min_max": [round(min(times), 2), round(max(times), 2)],
        "model_only_frames": len(times),
        "target_frames_per_second": TARGET_FPS,
        "meets_target": bool(fps >= TARGET_FPS),
        "model": model_source,
        "n_sparse": {int(z): len(r) for z, r in model.references_.items()},
        "max_lag_fs": sp.max_lag_fs,
        "cpu_count": os.cpu_count(),
        "numba_threads": numba_threads,
        "thread_env": {k: os.environ.get(k) for k in (
            "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")},
        "load_average_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "bornml_version": bornml.__version__,
    })


if __name__ == "__main__":
    main()
