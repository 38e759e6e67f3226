"""Where the heavy loops run: in this process, on a local Dask cluster, or on a running one.

Dask is optional (``pip install 'bornml[dask]'``). :func:`open_runner` gives

* :class:`SerialRunner` for ``workers=1`` and no scheduler — today's in-process path, Dask is
  never imported;
* :class:`DaskRunner` on a ``distributed.LocalCluster`` of ``workers`` processes (one thread
  each), or on the scheduler at ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``, started by
  dask-jobqueue on a SLURM or PBS cluster).

A runner runs module-level functions over a list of argument tuples; results are yielded as
they finish, with the task's position, so callers keep a fixed order (the sums of the
training equations are added in chunk order, spectra are joined in frame order).
"""

import contextlib
import contextvars
import itertools
import os
import sys

INSTALL_HINT = "pip install 'bornml[dask]'"

#: glibc's trim threshold as the user's environment had it when bornml was imported (None:
#: unset); Dask's nanny sets it to 64 KiB in its workers *and* in the process starting them
TRIM_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
_USER_TRIM = os.environ.get(TRIM_VARIABLE)


class DaskUnavailable(ImportError):
    """``--workers`` > 1 or ``--scheduler`` without dask.distributed installed."""


def require_dask():
    """Import ``distributed`` or raise :class:`DaskUnavailable` saying what to install."""
    try:
        import distributed
    except ImportError as err:
        raise DaskUnavailable(f"--workers > 1 and --scheduler run on Dask, which is not "
                              f"installed ({err}); install it with: {INSTALL_HINT}") from None
    return distributed


def one_thread(fn, *args):
    """``fn(*args)`` with BLAS and OpenMP limited to one thread (threadpoolctl), as on a Dask
    worker: every task runs so, in this process or on a worker, so its floating-point sums
    do not depend on where it ran (a multi-threaded BLAS may add in another order)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a core dependency
        return fn(*args)
    with threadpool_limits(limits=1):
        return fn(*args)


class SerialRunner:
    """Runs every task in this process, in order."""

    n_workers = 1

    def share(self, obj):
        """Something every task receives (a model): here, the object itself."""
        return obj

    def unordered(self, fn, tasks):
        """Yield ``(position, fn(*task))`` for every task."""
        for i, task in enumerate(tasks):
            yield i, one_thread(fn, *task)

    def ordered(self, fn, tasks):
        """``[fn(*task) for task in tasks]``."""
        return [r for _, r in self.unordered(fn, tasks)]

    def fold(self, fn, tasks, combine):
        """``combine(...combine(combine(r0, r1), r2)..., r_last)`` of the results
        ``r_i = fn(*tasks[i])``, in task order (a fixed summation order)."""
        out = None
        for _, r in self.unordered(fn, tasks):
            out = r if out is None else combine(out, r)
        return out


class DaskRunner:
    """Runs tasks on the workers of a ``distributed.Client``."""

    def __init__(self, client):
        self.client = client

    @property
    def n_workers(self):
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def share(self, obj):
        """Send ``obj`` to every worker once; tasks get it as an argument (a future)."""
        return self.client.scatter(obj, broadcast=True, hash=False)

    def unordered(self, fn, tasks):
        """Yield ``(position, result)`` as tasks finish; on the first error the others are
        cancelled and the error is raised here."""
        from distributed import as_completed

        futures = [self.client.submit(one_thread, fn, *task, pure=False) for task in tasks]
        where = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in as_completed(futures):
                result = future.result()  # raises the task's error
                i = where[future.key]
                futures[i] = None  # results are not kept on the cluster once here
                future.release()
                yield i, result
        finally:
            live = [f for f in futures if f is not None]
            if live:
                self.client.cancel(live)

    def ordered(self, fn, tasks):
        out = [None] * len(tasks)
        for i, result in self.unordered(fn, tasks):
            out[i] = result
        return out

    def fold(self, fn, tasks, combine):
        """As :meth:`SerialRunner.fold` (same order, so the same sums): results are combined
        here in task order as they arrive; at most 2 tasks per worker are in flight, so at
        most that many results wait here."""
        from distributed import as_completed

        todo = iter(enumerate(tasks))
        where, waiting, live = {}, {}, as_completed()
        out, nxt = None, 0

        def submit():
            for i, task in todo:
                future = self.client.submit(one_thread, fn, *task, pure=False)
                where[future.key] = i
                live.add(future)
                return

        for _ in range(2 * self.n_workers):
            submit()
        try:
            for future in live:
                waiting[where.pop(future.key)] = future.result()
                future.release()
                submit()
                while nxt in waiting:
                    r = waiting.pop(nxt)
                    out = r if out is None else combine(out, r)
                    nxt += 1
        finally:
            live.clear()
        return out


def frame_chunks(n, n_chunks):
    """``[(start, stop), ...]``: ``n`` items cut into at most ``n_chunks`` contiguous, nearly
    equal chunks, in order."""
    edges = [round(k * n / max(1, min(n_chunks, n))) for k in range(max(1, min(n_chunks, n)) + 1)]
    return [(a, b) for a, b in itertools.pairwise(edges) if b > a]


_CURRENT = contextvars.ContextVar("bornml_runner", default=None)


def current_runner():
    """The runner set by :func:`using` (None: the plain serial code)."""
    return _CURRENT.get()


@contextlib.contextmanager
def using(runner):
    """Run the model fits inside on ``runner`` (``with using(r): model.fit(frames)``)."""
    token = _CURRENT.set(runner)
    try:
        yield runner
    finally:
        _CURRENT.reset(token)


def is_parallel(workers=1, scheduler=None):
    """True when the work goes to Dask."""
    return scheduler is not None or int(workers) > 1


@contextlib.contextmanager
def open_runner(workers=1, scheduler=None):
    """A runner for ``workers`` local processes or the Dask scheduler at ``scheduler``.

    The local cluster has one thread per worker (the kernels are serial; Dask's nanny sets
    OMP/OpenBLAS/MKL threads to 1 in each worker) and no dashboard; it is shut down on exit.
    """
    if not is_parallel(workers, scheduler):
        yield SerialRunner()
        return
    require_dask()
    from distributed import Client

    if scheduler is not None:
        with Client(scheduler) as client:
            yield DaskRunner(client)
        return
    with local_cluster(workers) as cluster, Client(cluster) as client:
        yield DaskRunner(client)


@contextlib.contextmanager
def local_cluster(workers):
    """A ``distributed.LocalCluster`` of ``workers`` single-threaded processes, no dashboard,
    whose workers keep glibc's default memory trimming.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (memory handed back to
    the system at every free). bornml's kernels allocate and free (atoms, D) arrays per frame;
    with that setting every allocation faults its pages in again, and a frame costs 1.65× the
    in-process time (water, 192 atoms, measured with ``benchmarks/scaling.py``: 1 worker 36
    frames/s against 73 in process). The workers here start without it (a value the user had
    exported before importing bornml is kept). On a cluster of your own (``--scheduler``) set
    it in the Dask configuration of the workers (docs: "Parallel and distributed runs").
    """
    import logging

    import dask
    from distributed import LocalCluster

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}))
    environ[TRIM_VARIABLE] = _USER_TRIM  # None: not set in the workers
    leaked = os.environ.get(TRIM_VARIABLE) if _USER_TRIM is None else None
    if leaked is not None:  # set by an earlier Dask cluster of this process, not by the user
        del os.environ[TRIM_VARIABLE]
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                   processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
    finally:
        if leaked is not None:
            os.environ[TRIM_VARIABLE] = leaked
    with cluster:
        yield cluster


def _positive_int(text):
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_arguments(parser):
    """``--workers N`` and ``--scheduler ADDRESS`` (for train, predict, partition, ir)."""
    g = parser.add_argument_group("parallel and distributed runs (Dask: " + INSTALL_HINT + ")")
    g.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="worker processes on this machine (default 1: in this process, no "
                        "Dask); results are the same as with 1")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of a running Dask scheduler (e.g. tcp://node17:8786, from "
                        "dask-jobqueue on a SLURM cluster); its workers do the work")
    return g


def runner_from_args(args, command):
    """:func:`open_runner` for parsed ``--workers`` / ``--scheduler``; exit 2 with the install
    hint when Dask is missing, or when both are given."""
    workers = getattr(args, "workers", 1) or 1
    scheduler = getattr(args, "scheduler", None)
    if scheduler is not None and workers != 1:
        print(f"bornml {command}: error: give --workers (a local cluster) or --scheduler (a "
              "running one), not both", file=sys.stderr)
        raise SystemExit(2)
    if is_parallel(workers, scheduler):
        try:
            require_dask()
        except DaskUnavailable as err:
            print(f"bornml {command}: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
    return open_runner(workers, scheduler)
