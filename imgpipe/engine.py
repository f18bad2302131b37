"""Run one function over many tasks, here or on Dask distributed, and get the results in task order.

The engine of the stages whose per-item work is embarrassingly parallel (preprocess; validate's
per-chunk features). A section opts in with the :class:`imgpipe.params.base.EngineParams`
keys (``engine: local | dask``, ``dask_address``, ``dask_workers``) plus its own local worker
count, and calls::

    spec = EngineSpec.of(cfg, "preprocess", workers=cfg.workers)
    for result in ordered_map(process_chunk, chunks, spec, cfg, describe=chunk_name):
        ...

- Results come back **in task order** whatever finished first, so what a stage writes from them
  does not depend on the engine or the worker count.
- Submission is **windowed**: at most ``per_worker`` tasks per worker are in flight (submitted,
  running or finished but not yet consumed), so memory does not grow with the dataset and the
  task iterator is drained lazily.
- ``local``: a process pool of ``workers`` processes (``<= 1``: in this process, no pool).
  ``dask``: ``client.submit`` to the scheduler at ``dask_address``, or to a ``LocalCluster`` of
  ``dask_workers`` processes started for the run. The function must be a module-level function
  of an importable module (it travels by name: workers need the same ``imgpipe`` installed) and
  tasks should carry paths, not pixels: workers must see the files at the same absolute paths
  (:meth:`Runner.require_paths` checks that before any work is sent).
- Failures are one :class:`PipelineError` line naming the task: a task's exception, a worker
  process that died (a crashing native decoder, the OOM killer), an unreachable scheduler.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from imgpipe.errors import PipelineError

# Tasks in flight per worker: one running and one queued keeps every worker busy while results
# are consumed, without holding more than a couple of tasks' results per worker.
IN_FLIGHT_PER_WORKER = 2
# How long to keep trying to reach a scheduler at dask_address before failing the stage.
CONNECT_TIMEOUT_S = 30.0
# Starting a LocalCluster (distributed's pre-spawn-environ) sets these in this process for good;
# they are put back when the cluster closes, so later work here keeps its usual threads.
_CLUSTER_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_")


@dataclass(frozen=True)
class EngineSpec:
    """Where to run: ``kind`` local or dask; ``section`` names the params in error messages."""

    kind: str = "local"
    workers: int = 1  # local: processes (<= 1 = in this process); 0 = every core
    dask_address: str = ""
    dask_workers: int = 2
    section: str = "engine"

    @classmethod
    def of(cls, params: Any, section: str, workers: int = 1) -> EngineSpec:
        """From a params model carrying the :class:`~imgpipe.params.base.EngineParams` keys."""
        return cls(params.engine, workers, params.dask_address, params.dask_workers, section)


def resolve_workers(workers: int) -> int:
    """A local worker count: 0 means every core."""
    return workers if workers > 0 else (os.cpu_count() or 1)


def _task_name(index: int, task: Any) -> str:
    return f"task {index}"


class Runner:
    """A started engine: :meth:`map` as often as needed (a cluster is started once)."""

    def __init__(self, spec: EngineSpec, workers: int, pool: ProcessPoolExecutor | None = None,
                 client: Any = None) -> None:
        self.spec = spec
        self.workers = workers  # parallel slots: local processes or the Dask workers' threads
        self._pool = pool
        self._client = client

    @property
    def where(self) -> str:
        """For logs: ``local, 2 processes`` or ``dask tcp://...:8786, 4 threads``."""
        if self._client is not None:
            return f"dask {self._client.scheduler.address}, {self.workers} worker threads"
        return f"local, {self.workers} process{'es' if self.workers != 1 else ''}"

    def require_paths(self, paths: Iterable[str], why: str = "") -> None:
        """Fail with one line unless every worker sees ``paths`` (Dask workers may be on other
        machines: they need a shared filesystem with the same absolute paths)."""
        if self._client is None:
            return
        paths = [os.path.abspath(p) for p in paths]
        missing = self._client.run(_missing_paths, paths)
        for worker, lost in sorted(missing.items()):
            if lost:
                raise PipelineError(
                    f"Dask worker {worker} cannot see {lost[0]}{f' ({why})' if why else ''}: the workers need "
                    "the same files at the same absolute paths (a shared filesystem); see docs/scale.md")

    def map(self, fn: Callable, tasks: Iterable, *args: Any, describe: Callable[[int, Any], str] = _task_name,
            per_worker: int = IN_FLIGHT_PER_WORKER) -> Iterator:
        """``fn(task, *args)`` for every task, yielded in task order, ``per_worker * workers``
        tasks in flight at most. ``describe(index, task)`` names a task in error messages."""
        if self._client is not None:
            return self._map_dask(fn, tasks, args, describe, per_worker)
        if self._pool is not None:
            return self._map_pool(fn, tasks, args, describe, per_worker)
        return self._map_inline(fn, tasks, args, describe)

    # --- the three ways ------------------------------------------------------------------------

    def _map_inline(self, fn, tasks, args, describe) -> Iterator:
        for index, task in enumerate(tasks):
            try:
                result = fn(task, *args)
            except PipelineError:
                raise
            except Exception as exc:  # noqa: BLE001 - one line naming the task
                raise PipelineError(_failed(describe(index, task), exc, "")) from exc
            yield result

    def _map_pool(self, fn, tasks, args, describe, per_worker) -> Iterator:
        window = max(1, per_worker * self.workers)
        pending: deque = deque()

        def next_result():
            index, task, future = pending.popleft()
            try:
                return future.result()
            except BrokenProcessPool:
                raise PipelineError(
                    f"a worker process died with {describe(index, task)} in flight (a crashing native "
                    f"decoder? out of memory?); rerun with {self.spec.section}.workers=1 to see which item"
                ) from None
            except PipelineError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise PipelineError(_failed(describe(index, task), exc, " in a worker process")) from exc

        for index, task in enumerate(tasks):
            try:
                future = self._pool.submit(fn, task, *args)
            except BrokenProcessPool:  # a worker died since the last result: report a task it held
                while pending:
                    next_result()
                raise
            pending.append((index, task, future))
            if len(pending) >= window:
                yield next_result()
        while pending:
            yield next_result()

    def _map_dask(self, fn, tasks, args, describe, per_worker) -> Iterator:
        from distributed import KilledWorker

        client = self._client
        window = max(1, per_worker * self.workers)
        pending: deque = deque()

        def next_result():
            index, task, future = pending.popleft()
            try:
                return future.result()
            except KilledWorker:
                raise PipelineError(
                    f"Dask workers died running {describe(index, task)} (out of memory? a crashing native "
                    f"decoder?); rerun with {self.spec.section}.engine=local and "
                    f"{self.spec.section}.workers=1 to see which item") from None
            except PipelineError:
                raise
            except Exception as exc:  # noqa: BLE001
                where = " on a Dask worker"
                if type(exc).__module__.startswith(("distributed", "asyncio", "concurrent")):
                    where = f" (lost the Dask scheduler {client.scheduler.address}?)"
                raise PipelineError(_failed(describe(index, task), exc, where)) from exc
            finally:
                future.release()

        try:
            for index, task in enumerate(tasks):
                pending.append((index, task, client.submit(fn, task, *args, pure=False)))
                if len(pending) >= window:
                    yield next_result()
            while pending:
                yield next_result()
        finally:  # an error or an early stop: cancel what is still queued on the cluster
            if pending:
                client.cancel([future for _, _, future in pending])


def _failed(name: str, exc: BaseException, where: str) -> str:
    text = str(exc).strip().splitlines()
    return f"{name} failed{where}: {type(exc).__name__}: {text[0] if text else '(no message)'}"


def _missing_paths(paths: list[str]) -> list[str]:
    # Runs on each Dask worker (client.run).
    return [p for p in paths if not os.path.exists(p)]


@contextmanager
def start(spec: EngineSpec, max_tasks: int | None = None) -> Iterator[Runner]:
    """Start the engine ``spec`` names; ``max_tasks`` (when known) caps the local processes."""
    if spec.kind == "dask":
        with dask_client(spec) as client:
            threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
            yield Runner(spec, max(1, threads), client=client)
        return
    if spec.kind != "local":
        raise PipelineError(f"{spec.section}.engine: unknown engine {spec.kind!r} (local or dask)")
    workers = resolve_workers(spec.workers)
    if max_tasks is not None:
        workers = max(1, min(workers, max_tasks))  # no point forking more processes than tasks
    if workers <= 1:
        yield Runner(spec, 1)
        return
    # A process pool executor, not multiprocessing.Pool: if a native decoder kills its worker,
    # the map fails with an error instead of waiting forever for the lost task.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context()) as pool:
        yield Runner(spec, workers, pool=pool)


def ordered_map(fn: Callable, tasks: Iterable, spec: EngineSpec, *args: Any,
                describe: Callable[[int, Any], str] = _task_name, per_worker: int = IN_FLIGHT_PER_WORKER,
                max_tasks: int | None = None) -> Iterator:
    """:func:`start` the engine, :meth:`Runner.map` once, stop it."""
    with start(spec, max_tasks) as runner:
        yield from runner.map(fn, tasks, *args, describe=describe, per_worker=per_worker)


@contextmanager
def dask_client(spec: EngineSpec):
    """A client of the scheduler at ``dask_address``, or of a LocalCluster started here."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise PipelineError(f"{spec.section}.engine is dask, but dask distributed is not installed: "
                            "pip install -e '.[distributed]'") from None
    if spec.dask_address:
        try:
            client = Client(spec.dask_address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise PipelineError(f"{spec.section}.dask_address {spec.dask_address}: cannot connect to a Dask "
                                f"scheduler: {exc}") from None
        with client:
            if not client.scheduler_info()["workers"]:
                try:
                    client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
                except (OSError, TimeoutError) as exc:
                    raise PipelineError(f"{spec.section}.dask_address {spec.dask_address}: the scheduler has no "
                                        f"workers (start some: dask worker {spec.dask_address}): {exc}") from None
            yield client
        return
    saved = {name: os.environ.get(name) for name in _CLUSTER_ENV}
    try:
        with LocalCluster(n_workers=spec.dask_workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield client
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
