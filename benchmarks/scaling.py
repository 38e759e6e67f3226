"""Scaling of bornml on processes (Dask): IR and training with 1 and 2 workers, cost per atom,
memory against trajectory length, and a projection to 10⁶ frames of 1000 atoms.

Not part of the package; needs ``pip install 'bornml[dask]'`` and ../shared/data. One run
prints JSON lines (one per part, then a summary with the ratios):

* ``ir``: ``bornml ir`` throughput (frames/s) on 192-atom water frames with a monopole model,
  in process (no Dask) and on a local cluster of 1 and 2 workers, each after a warm-up (model
  loaded and Numba kernels compiled on every worker; the cluster start is not timed). The
  trajectory is MD-like: the 100 water-rpbe structures in turn, perturbed by 0.01 Å, Maxwell
  velocities at 300 K, 1 fs apart. The spectra of all runs are compared (max relative diff).
* ``train``: accumulation of the normal equations (``model.accumulate``, features and design
  of every frame) on 1 and 2 workers; the equations are compared to the serial ones.
* ``predict``: ``model.predict`` time per atom for the 192-atom cell and its 2×2×2 and 4×4×4
  supercells (1536 and 12 288 atoms), in process (median of repeats, after a warm-up).
* ``memory``: peak RSS (VmHWM of a child process running ``bornml ir``; its
  ``getrusage`` maxrss is recorded too but inherits this script's RSS at the fork) on 5000 and 50 000 frames of a 6-atom cell, Born charges from the file, serial and
  chunked (``--cache``).
* ``projection``: wall time of 10⁶ frames × 1000 atoms on 1, 16 and 256 cores from these
  numbers, with the assumptions written into the record.

The machine's load average is recorded with every part: on a shared machine the 2-worker ratio
is depressed by other jobs (two workers need two idle cores).

    python benchmarks/scaling.py [--ir-frames 400] [--train-frames 48] [--memory-frames 5000 50000]
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _common import DATASETS, emit, shared_data

IDLE_EFFICIENCY = 0.9  # assumed per-worker efficiency on dedicated cores (projection)
AMU_A2_FS2_TO_EV = 103.642697  # 1 amu·Å²/fs² in eV
KB_EV = 8.617333262e-5


def ase_read(path):
    import ase.io

    return ase.io.read(path, index=0)


@contextlib.contextmanager
def dask_runner(workers):
    """A DaskRunner on bornml's local cluster of ``workers`` single-threaded processes (also
    for 1: the same overheads as 2, unlike the in-process path of ``open_runner(1)``)."""
    from distributed import Client

    from bornml.parallel import DaskRunner, local_cluster

    with local_cluster(workers) as cluster, Client(cluster) as client:
        yield DaskRunner(client)


def load():
    return round(os.getloadavg()[0], 2)


def md_like(frames, n, path, seed=0, temperature=300.0):
    """Write ``n`` frames cycling through ``frames`` (perturbed, Maxwell velocities at
    ``temperature`` K, ``time_fs`` 1 fs apart) to the extxyz ``path``."""
    import ase.io

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = frames[i % len(frames)].copy()
        for key in list(a.arrays):
            if key not in ("numbers", "positions"):
                del a.arrays[key]
        a.calc = None
        a.info = {"time_fs": float(i)}
        a.positions += 0.01 * rng.normal(size=a.positions.shape)
        sigma = np.sqrt(KB_EV * temperature / (a.get_masses() * AMU_A2_FS2_TO_EV))
        a.new_array("velocities", sigma[:, None] * rng.normal(size=(len(a), 3)))
        out.append(a)
    ase.io.write(path, out, format="extxyz")
    return str(path)


def small_trajectory(path, n, seed=0):
    """``n`` frames of a 6-atom periodic cell with Born charges and velocities (fast text)."""
    rng = np.random.default_rng(seed)
    z = np.tile(np.array([[-0.8, 0, 0, 0, -0.8, 0, 0, 0, -0.8],
                          [0.4, 0, 0, 0, 0.4, 0, 0, 0, 0.4],
                          [0.4, 0, 0, 0, 0.4, 0, 0, 0, 0.4]]), (2, 1))
    species = ["O", "H", "H", "O", "H", "H"]
    base = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0],
                     [3, 3, 3], [3.96, 3, 3], [2.76, 3.93, 3]], dtype=float)
    header = ('Lattice="6 0 0 0 6 0 0 0 6" Properties=species:S:1:pos:R:3:bec:R:9:'
              'velocities:R:3 pbc="T T T" time_fs={:.1f}\n')
    with open(path, "w") as fh:
        for i in range(n):
            pos = base + 0.02 * rng.normal(size=base.shape)
            vel = 0.01 * rng.normal(size=base.shape)
            fh.write("6\n" + header.format(float(i)))
            fh.writelines(s + " " + " ".join(f"{x:.6f}" for x in (*p, *zz, *v)) + "\n" for s, p, zz, v in zip(species, pos, z, vel))
    return str(path)


def _warm_ir(model_path, frame):
    """On a worker: load the model (kept per process) and compile its kernels."""
    from bornml.model_file import ModelFile

    ModelFile(model_path).load().dipole_derivative(frame, frame.arrays["velocities"])


def _warm_train(model, frames):
    """On a worker: compile the kernels of the design (one small accumulation)."""
    model.accumulate(frames, n_folds=1)


def time_ir(path, provider, runner=None, chunk=None):
    import bornml

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp = bornml.ir_spectrum(path, bec_provider=provider, progress=False, runner=runner,
                                chunk_frames=chunk)
    return time.perf_counter() - start, sp


def part_ir(args, model_path, water, tmp):
    import bornml
    from bornml.model_file import ModelFile

    path = md_like(water, args.ir_frames, Path(tmp) / "water_md.extxyz")
    warm = md_like(water, 2 * args.chunk_frames + 1, Path(tmp) / "warm.extxyz", seed=1)
    model = bornml.load_model(model_path)
    time_ir(warm, model)
    out = {"part": "ir", "n_atoms": len(water[0]), "frames": args.ir_frames,
           "chunk_frames": args.chunk_frames, "load_average_start": load()}
    t, ref = time_ir(path, model)
    out["in_process_frames_per_s"] = round(args.ir_frames / t, 2)
    for workers in (1, 2):
        with dask_runner(workers) as runner:
            # every worker: model loaded, kernels compiled; then a short chunked run
            runner.client.run(_warm_ir, str(model_path), ase_read(warm))
            time_ir(warm, ModelFile(model_path), runner, args.chunk_frames)
            out[f"workers_{workers}_load_average_before"] = load()
            t, sp = time_ir(path, ModelFile(model_path), runner, args.chunk_frames)
        out[f"workers_{workers}_frames_per_s"] = round(args.ir_frames / t, 2)
        out[f"workers_{workers}_max_rel_diff"] = float(
            np.max(np.abs(sp.n_alpha_cm1 - ref.n_alpha_cm1)) / np.max(np.abs(ref.n_alpha_cm1)))
    out["speedup_2_vs_1"] = round(out["workers_2_frames_per_s"]
                                  / out["workers_1_frames_per_s"], 3)
    out["speedup_2_vs_in_process"] = round(out["workers_2_frames_per_s"]
                                           / out["in_process_frames_per_s"], 3)
    out["load_average_end"] = load()
    return emit({"benchmark": "scaling", **out})


def part_train(args, water, hypers):
    import bornml
    from bornml.parallel import using

    frames = water[:args.train_frames]
    model = bornml.MonopoleModel(**hypers).prepare(frames)
    out = {"part": "train", "frames": len(frames), "n_columns": model.n_design_columns(),
           "load_average_start": load()}
    start = time.perf_counter()
    ref = model.accumulate(frames, n_folds=1)
    out["in_process_s"] = round(time.perf_counter() - start, 3)
    for workers in (1, 2):
        with dask_runner(workers) as runner, using(runner):
            runner.client.run(_warm_train, model, frames[:1])  # kernels compiled everywhere
            out[f"workers_{workers}_load_average_before"] = load()
            start = time.perf_counter()
            eqs = model.accumulate(frames, n_folds=1)
            out[f"workers_{workers}_s"] = round(time.perf_counter() - start, 3)
        out[f"workers_{workers}_max_rel_diff"] = float(
            np.max(np.abs(eqs.parts[0].a - ref.parts[0].a)) / np.max(np.abs(ref.parts[0].a)))
    out["speedup_2_vs_1"] = round(out["workers_1_s"] / out["workers_2_s"], 3)
    out["speedup_2_vs_in_process"] = round(out["in_process_s"] / out["workers_2_s"], 3)
    out["load_average_end"] = load()
    return emit({"benchmark": "scaling", **out})


def part_predict(args, model_path, water):
    from threadpoolctl import threadpool_limits

    import bornml

    model = bornml.load_model(model_path)
    model.progress = False
    out = {"part": "predict", "load_average_start": load(), "us_per_atom": {},
           "repeats": {}, "threads": 1}
    for k, repeats in ((1, 9), (2, 5), (4, 3)):
        frame = water[0].repeat((k, k, k))
        # one BLAS / OpenMP thread, as every task of bornml predict / ir runs (parallel.one_thread)
        with threadpool_limits(limits=1):
            model.predict(frame)  # warm-up (neighbour lists, kernels)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model.predict(frame)
                times.append(time.perf_counter() - start)
        out["us_per_atom"][len(frame)] = round(1e6 * statistics.median(times) / len(frame), 2)
        out["repeats"][len(frame)] = repeats
    values = list(out["us_per_atom"].values())
    out["max_over_min"] = round(max(values) / min(values), 3)
    out["load_average_end"] = load()
    return emit({"benchmark": "scaling", **out})


WRAPPER = ("import json, re, resource, sys, warnings\n"
           "warnings.simplefilter('ignore')\n"
           "from bornml.cli import main\n"
           "rc = main(sys.argv[1:])\n"
           "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())\n"
           "print(json.dumps({'rc': rc, 'vmhwm_kb': int(hwm.group(1)) if hwm else None, "
           "'maxrss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), "
           "file=sys.stderr)\n")


def part_memory(args, tmp):
    out = {"part": "memory", "n_atoms": 6, "load_average_start": load(), "maxrss_MB": {},
           "getrusage_maxrss_MB": {}, "seconds": {},
           "note": "maxrss_MB is the child's VmHWM (/proc/self/status), its own peak RSS; "
                   "getrusage's ru_maxrss of a forked child keeps the parent's RSS at the "
                   "fork across exec on Linux, so it shows this script's size"}
    for n in args.memory_frames:
        path = small_trajectory(Path(tmp) / f"small_{n}.extxyz", n)
        for how, extra in (("serial", []),
                           ("chunked_cache", ["--cache", str(Path(tmp) / f"cache_{n}")])):
            start = time.perf_counter()
            res = subprocess.run(
                [sys.executable, "-c", WRAPPER, "ir", path, "--bec-from-file", "--max-lag",
                 "200", "--no-progress", "-o", str(Path(tmp) / f"ir_{n}_{how}.csv"), *extra],
                capture_output=True, text=True, check=True)
            rec = json.loads(res.stderr.strip().splitlines()[-1])
            out["maxrss_MB"].setdefault(how, {})[n] = round(rec["vmhwm_kb"] / 1024, 1)
            out["getrusage_maxrss_MB"].setdefault(how, {})[n] = round(rec["maxrss_kb"] / 1024, 1)
            out["seconds"].setdefault(how, {})[n] = round(time.perf_counter() - start, 1)
        Path(path).unlink()
    lo, hi = min(args.memory_frames), max(args.memory_frames)
    out["ratio_largest_vs_smallest"] = {how: round(v[hi] / v[lo], 3)
                                        for how, v in out["maxrss_MB"].items()}
    out["load_average_end"] = load()
    return emit({"benchmark": "scaling", **out})


def part_scan(tmp_file):
    from bornml.spectra.frame_index import scan_extxyz

    size = os.path.getsize(tmp_file)
    start = time.perf_counter()
    n, _ = scan_extxyz(tmp_file, lambda k: k % 256 in (0, 1))
    t = time.perf_counter() - start
    return {"frames": n, "MB": round(size / 2**20, 1), "MB_per_s": round(size / 2**20 / t, 1)}


def projection(ir, predict, scan):
    """Wall time of 10⁶ frames × 1000 atoms from the measured numbers (see assumptions)."""
    per_atom_s = predict["us_per_atom"][max(predict["us_per_atom"])] * 1e-6
    # the IR pipeline per frame = prediction + reading; reading from the in-process IR rate
    pipeline_per_atom_s = 1.0 / (ir["in_process_frames_per_s"] * ir["n_atoms"])
    per_frame = 1000 * max(per_atom_s, pipeline_per_atom_s)
    efficiency = min(1.0, ir["speedup_2_vs_1"] / 2)
    frames = 1e6
    bytes_per_frame = 1000 * 110  # extxyz with velocities: ≈ 110 bytes per atom line
    scan_s = frames * bytes_per_frame / 2**20 / scan["MB_per_s"]
    out = {}
    for cores in (1, 16, 256):
        row = {"offset_scan_hours": round(scan_s / 3600, 3)}
        for label, eff in (("measured_efficiency", efficiency),
                           ("efficiency_0.9", IDLE_EFFICIENCY)):
            eff = 1.0 if cores == 1 else eff
            compute = frames * per_frame / (cores * eff)
            row[f"hours_{label}"] = round((compute + scan_s) / 3600, 2)
        out[cores] = row
    return {
        "part": "projection", "frames": int(frames), "atoms": 1000, "cores": out,
        "seconds_per_frame_one_core": round(per_frame, 4),
        "measured_efficiency": round(efficiency, 3),
        "assumptions": [
            ("cost per frame = 1000 × the larger of (prediction time per atom at 12 288 atoms) "
             "and (in-process IR pipeline time per atom at 192 atoms: reading + prediction)"),
            ("parallel efficiency per worker on 16 and 256 cores: either the 2-worker efficiency "
             "(speedup/2) measured on this shared, overloaded 2-core machine (a pessimistic "
             "floor), or 0.9 for dedicated cores (chunks are independent; the client only "
             "gathers 24 bytes per frame); one worker per core, one thread each"),
            ("the client's extxyz offset scan (one pass over ~110 bytes per atom line, "
             f"{scan['MB_per_s']} MB/s measured) is serial and added; the correlation and "
             "lineshape on the client take seconds"),
            ("the file system delivers the workers' reads (≈ 110 GB) without becoming the "
             "bottleneck; Dask's per-task overhead (~1 ms per 256-frame chunk) is negligible"),
        ]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ir-frames", type=int, default=400)
    parser.add_argument("--chunk-frames", type=int, default=50)
    parser.add_argument("--train-frames", type=int, default=48)
    parser.add_argument("--model-train-frames", type=int, default=16)
    parser.add_argument("--n-sparse", type=int, default=200)
    parser.add_argument("--memory-frames", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("ir", "train", "predict", "memory"))
    args = parser.parse_args()

    from learning_curve import HYPERS

    import bornml

    water = bornml.read_frames(shared_data() / DATASETS["water"])
    hypers = dict(HYPERS["water"], n_sparse=args.n_sparse, progress=False)
    emit({"benchmark": "scaling", "part": "setup", "cpu_count": os.cpu_count(),
          "load_average": load(), "hypers": hypers, "bornml_version": bornml.__version__,
          "thread_env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS",
                                                        "OMP_NUM_THREADS")}})
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "water_q.npz"
        start = time.perf_counter()
        bornml.MonopoleModel(**hypers).fit(water[:args.model_train_frames]).save(model_path)
        emit({"benchmark": "scaling", "part": "model", "train_frames": args.model_train_frames,
              "fit_s": round(time.perf_counter() - start, 1)})
        if "ir" not in args.skip:
            results["ir"] = part_ir(args, model_path, water, tmp)
            results["scan"] = part_scan(Path(tmp) / "water_md.extxyz")
        if "train" not in args.skip:
            results["train"] = part_train(args, water, hypers)
        if "predict" not in args.skip:
            results["predict"] = part_predict(args, model_path, water)
        if "memory" not in args.skip:
            results["memory"] = part_memory(args, tmp)
    if {"ir", "predict"} <= set(results):
        emit({"benchmark": "scaling", **projection(results["ir"], results["predict"],
                                                   results["scan"])})
    summary = {"benchmark": "scaling", "part": "summary", "load_average_end": load()}
    if "ir" in results:
        summary["ir_speedup_2_workers"] = results["ir"]["speedup_2_vs_1"]
        summary["ir_goal_1p7"] = results["ir"]["speedup_2_vs_1"] >= 1.7
    if "train" in results:
        summary["train_speedup_2_workers"] = results["train"]["speedup_2_vs_1"]
        summary["train_goal_1p6"] = results["train"]["speedup_2_vs_1"] >= 1.6
    if "predict" in results:
        summary["predict_per_atom_max_over_min"] = results["predict"]["max_over_min"]
        summary["predict_goal_within_20pct"] = results["predict"]["max_over_min"] <= 1.2
    if "memory" in results:
        summary["memory_ratio"] = results["memory"]["ratio_largest_vs_smallest"]
        summary["memory_goal_within_10pct"] = all(
            r <= 1.1 for r in results["memory"]["ratio_largest_vs_smallest"].values())
    emit(summary)


if __name__ == "__main__":
    main()
