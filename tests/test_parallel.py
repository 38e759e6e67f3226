"""Parallel and distributed runs (bornml.parallel, spectra.chunks): the same numbers as serial.

One 2-worker Dask cluster is started for the module (the --scheduler path); one test starts its
own through ``--workers 2``. Without dask.distributed the Dask tests skip.
"""

import json
import sys
import warnings

import ase.io
import numpy as np
import pytest

import bornml
from bornml.cli import main
from bornml.demo import shipped_data_path
from bornml.models.equations import KernelEquations
from bornml.parallel import SerialRunner, frame_chunks
from bornml.progress import ChunkProgress
from bornml.spectra import chunks as chunks_module
from bornml.spectra.frame_index import count_frames
from bornml.spectra.ir import ir_spectrum

TINY = ["--n-sparse", "12", "--max-radial", "3", "--max-angular", "2", "--cutoff", "4.0",
        "--cv-folds", "3"]


@pytest.fixture(scope="module")
def quartz(tmp_path_factory):
    """8 shipped quartz frames written to a file, and a tiny monopole model trained on them."""
    folder = tmp_path_factory.mktemp("quartz")
    frames = bornml.read_frames(shipped_data_path())[:8]
    data = folder / "train.extxyz"
    ase.io.write(data, frames, format="extxyz")
    model = folder / "q.npz"
    assert main(["train", str(data), "-o", str(model), "--test-fraction", "0",
                 "--no-progress", *TINY]) == 0
    return frames, data, model


def _trajectory(path, frames, n=40, velocities=True, seed=0):
    """An MD-like trajectory: the quartz frames perturbed in turn, 1 fs apart."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = frames[i % len(frames)].copy()
        a.positions += 0.02 * rng.normal(size=a.positions.shape)
        if velocities:
            a.new_array("velocities", 0.01 * rng.normal(size=(len(a), 3)))
        a.info = {"time_fs": float(i)}
        out.append(a)
    ase.io.write(path, out, format="extxyz")
    return str(path)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c


# -- pieces without Dask ------------------------------------------------------------------

def test_equations_merge_equals_one_pass(quartz):
    frames = quartz[0]
    model = bornml.CombinedModel(n_sparse=12, max_radial=3, max_angular=2, cutoff=4.0,
                                 progress=False).prepare(frames)
    learnt = model._learnt()
    blocks, start = {}, 0
    for t in learnt:
        blocks[t.name] = slice(start, start + t.n_raw_columns())
        start += t.n_raw_columns()
    whole = model._add_frames(blocks, 3, frames)
    merged = model._add_frames(blocks, 3, frames[:3])
    merged += model._add_frames(blocks, 3, frames[3:5], 3)
    merged.merge(model._add_frames(blocks, 3, frames[5:], 5))
    assert merged.n_frames == whole.n_frames == len(frames)
    for mine, ref in zip(merged.parts, whole.parts):
        np.testing.assert_allclose(mine.a, ref.a, rtol=1e-12, atol=1e-12 * np.abs(ref.a).max())
        np.testing.assert_allclose(mine.b, ref.b, rtol=1e-12, atol=1e-12 * np.abs(ref.b).max())
        assert mine.counts == ref.counts and mine.n_rows == ref.n_rows
        assert len(mine.sum_rule) == len(ref.sum_rule)
        for x, y in zip(mine.sum_rule, ref.sum_rule):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="frame order"):
        KernelEquations(blocks, model.reference_set_.species, whole.n_charge, 3).merge(
            model._add_frames(blocks, 3, frames[3:5], 3))


def test_chunks_cover_the_file(tmp_path, quartz):
    path = _trajectory(tmp_path / "t.extxyz", quartz[0], n=21, velocities=False)
    ase.io.write(tmp_path / "t.traj", ase.io.read(path, ":"))
    for p in (path, str(tmp_path / "t.traj")):
        assert count_frames(p) == 21
        ranges = chunks_module.plan_chunks(p, 5)
        assert [(r.start, r.stop, r.boundary) for r in ranges] == [
            (0, 6, True), (5, 11, True), (10, 16, True), (15, 21, False)]  # 1-frame tail joined
        got = [a for r in ranges for a in list(r.read(p))[:r.stop - r.start - r.boundary]]
        assert len(got) == 21
        for a, b in zip(got, ase.io.read(path, ":")):
            np.testing.assert_array_equal(a.positions, b.positions)


@pytest.mark.parametrize("velocities", [True, False])
def test_chunked_ir_equals_stream(tmp_path, quartz, velocities):
    path = _trajectory(tmp_path / "t.extxyz", quartz[0], velocities=velocities)
    kw = dict(bec_provider=chunks_module.ModelFile(str(quartz[2])), max_lag_fs=10.0,
              temperature_K=None if velocities else 300.0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ir_spectrum(path, **kw)
        for size in (2, 7):
            got = ir_spectrum(path, runner=SerialRunner(), chunk_frames=size, **kw)
            assert _rel(got.n_alpha_cm1, ref.n_alpha_cm1) <= 1e-12
            assert got.temperature_K == pytest.approx(ref.temperature_K, rel=1e-12)
            assert got.volume_A3 == pytest.approx(ref.volume_A3, rel=1e-12)
            assert got.chunks["computed"] == len(chunks_module.plan_chunks(path, size))


def test_cache_resumes_where_it_stopped(tmp_path, quartz, monkeypatch, capsys):
    path = _trajectory(tmp_path / "t.extxyz", quartz[0], n=40)
    n_chunks = len(chunks_module.plan_chunks(path, 5))
    calls = []
    real = chunks_module.chunk_series

    def counted(*args):
        if len(calls) == 3 and stop_early:
            raise KeyboardInterrupt  # the job killed at its wall time
        calls.append(args[2].start)
        return real(*args)

    monkeypatch.setattr(chunks_module, "chunk_series", counted)
    argv = ["ir", path, "--model", str(quartz[2]), "--max-lag", "10", "--cache",
            str(tmp_path / "cache"), "--chunk-frames", "5", "--no-progress", "-o"]
    stop_early = True
    with pytest.raises(KeyboardInterrupt):
        main([*argv, str(tmp_path / "a.csv")])
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3
    stop_early = False
    calls.clear()
    assert main([*argv, str(tmp_path / "a.csv")]) == 0
    assert len(calls) == n_chunks - 3 and 0 not in calls  # the finished chunks were kept
    assert json.loads(capsys.readouterr().out)["chunks"] == {"computed": n_chunks - 3,
                                                             "cached": 3}
    monkeypatch.setattr(chunks_module, "chunk_series", real)
    assert main(["ir", path, "--model", str(quartz[2]), "--max-lag", "10", "--no-progress",
                 "-o", str(tmp_path / "b.csv")]) == 0
    a, b = (np.loadtxt(tmp_path / f, delimiter=",", skiprows=1) for f in ("a.csv", "b.csv"))
    assert _rel(a[:, 1], b[:, 1]) <= 1e-12


def test_without_dask_workers_say_what_to_install(tmp_path, quartz, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    path = _trajectory(tmp_path / "t.extxyz", quartz[0], n=10)
    with pytest.raises(SystemExit) as err:
        main(["ir", path, "--bec-from-file", "--workers", "2", "-o", str(tmp_path / "x.csv")])
    assert err.value.code == 2
    assert "pip install 'bornml[dask]'" in capsys.readouterr().err


def test_progress_line_has_rate_and_eta():
    bar = ChunkProgress("ir", enabled=False)
    bar.add(1000, 4, "t.extxyz")
    bar.update(250, cached=True)
    bar.update(250)
    line = bar.line()
    assert "2/4 chunks, 500/1000 frames, 250 from cache" in line
    assert "frames/s" in line and "ETA" in line
    assert frame_chunks(10, 4) == [(0, 2), (2, 5), (5, 8), (8, 10)]


# -- on Dask ------------------------------------------------------------------------------

def test_ir_two_local_workers_equal_serial(tmp_path, quartz, capsys):
    pytest.importorskip("distributed")
    path = _trajectory(tmp_path / "t.extxyz", quartz[0], n=30, velocities=False)
    common = ["--model", str(quartz[2]), "--max-lag", "10", "--temperature", "300",
              "--no-progress", "-o"]
    assert main(["ir", path, *common, str(tmp_path / "serial.csv")]) == 0
    assert main(["ir", path, *common, str(tmp_path / "two.csv"), "--workers", "2",
                 "--chunk-frames", "8"]) == 0
    a, b = (np.loadtxt(tmp_path / f, delimiter=",", skiprows=1)
            for f in ("two.csv", "serial.csv"))
    assert _rel(a[:, 1], b[:, 1]) <= 1e-12


def test_scheduler_address_train_predict_ir(tmp_path, quartz, cluster, capsys):
    frames, data, model = quartz
    address = ["--scheduler", cluster.scheduler_address]
    train = ["train", str(data), "--test-fraction", "0", "--no-progress", "--model", "q+p",
             *TINY]
    assert main([*train, "-o", str(tmp_path / "serial.npz")]) == 0
    assert main([*train, "-o", str(tmp_path / "dask.npz"), *address]) == 0
    serial, dask = (bornml.load_model(tmp_path / f) for f in ("serial.npz", "dask.npz"))
    for name in ("weights_", "dipole_weights_"):
        got, ref = getattr(dask, name), getattr(serial, name)
        got, ref = ((np.concatenate([np.ravel(v) for v in x.values()]) if isinstance(x, dict)
                     else np.ravel(x)) for x in (got, ref))
        assert _rel(got, ref) <= 1e-10

    out = {}
    for how, extra in (("serial", []), ("dask", address)):
        assert main(["predict", str(model), str(data), "--no-progress", "--no-score",
                     "-o", str(tmp_path / f"{how}.extxyz"), *extra]) == 0
        out[how] = ase.io.read(tmp_path / f"{how}.extxyz", ":")
    for a, b in zip(out["dask"], out["serial"]):
        np.testing.assert_array_equal(a.arrays["bec_predicted"], b.arrays["bec_predicted"])
    from distributed import Client  # in memory, before the file's rounding: bit for bit

    from bornml.model_file import ModelFile, predict_on
    from bornml.parallel import DaskRunner, one_thread

    with Client(cluster) as client:
        got = predict_on(DaskRunner(client), ModelFile(str(model)), frames, chunk=3)
    ref = one_thread(bornml.load_model(model).predict, frames)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a["bec"], b["bec"])

    path = _trajectory(tmp_path / "t.extxyz", frames, n=30)
    common = ["--model", str(model), "--max-lag", "10", "--no-progress", "-o"]
    assert main(["ir", path, *common, str(tmp_path / "s.csv")]) == 0
    assert main(["ir", path, *common, str(tmp_path / "d.csv"), *address, "--chunk-frames",
                 "6"]) == 0
    a, b = (np.loadtxt(tmp_path / f, delimiter=",", skiprows=1) for f in ("d.csv", "s.csv"))
    assert _rel(a[:, 1], b[:, 1]) <= 1e-12


def _trim_threshold():
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_local_workers_keep_default_memory_trimming(monkeypatch):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers (and leaks it into this
    process); with it every large numpy allocation faults its pages in again and a water frame
    costs 1.65× as much. bornml's local workers start without it; the variable this process
    had before is restored."""
    import os

    distributed = pytest.importorskip("distributed")
    from bornml import parallel

    monkeypatch.setattr(parallel, "_USER_TRIM", None)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as a plain LocalCluster leaves it
    with parallel.local_cluster(1) as cluster, distributed.Client(cluster) as client:
        seen = list(client.run(_trim_threshold).values())
    assert seen == [None]
    assert os.environ.get("MALLOC_TRIM_THRESHOLD_") == "65536"
    monkeypatch.setattr(parallel, "_USER_TRIM", "1048576")  # the user's own choice is kept
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    with parallel.local_cluster(1) as cluster, distributed.Client(cluster) as client:
        assert list(client.run(_trim_threshold).values()) == ["1048576"]
