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

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from imgpipe.errors import PipelineError

# Tasks in flight per worker: one running and one queued keeps every worker busy while results
# are consumed, without holding more than a couple of tasks' results per worker.
IN_FLIGHT_PER_WORKER = 2
# How long to keep trying to reach a scheduler at dask_address before failing the stage.
CONNECT_TIMEOUT_S = 30.0
# How long the driver waits for the oldest task in flight (chunks are seconds of work: 256 items at
# most in preprocess, 12 MiB of pixels in validate) before it fails the stage in one line instead of
# waiting forever on a task stuck in a loop or on a lock, or on a cluster that never runs it.
TASK_TIMEOUT_S = 600.0
# When Dask gives up on a task whose worker died, how long to wait for the other tasks in flight to
# settle: the scheduler gives up on every task the dying worker held in the same step, so the task
# that killed it may be any of them (see _map_dask's siblings_lost).
SIBLINGS_WAIT_S = 2.0
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

    def require_same_code(self, modules: Iterable[str], distributions: Iterable[str] = ()) -> None:
        """Fail with one line unless every worker imports the same source of ``modules`` and the
        same versions of ``distributions`` as this process: a worker with another Pillow or an
        older checkout would silently make other bytes."""
        if self._client is None:
            return
        modules, distributions = list(modules), list(distributions)
        mine = _code_facts(modules, distributions)
        theirs = self._client.run(_code_facts, modules, distributions)
        for worker, facts in sorted(theirs.items()):
            differ = [name for name in mine if facts.get(name) != mine[name]]
            if differ:
                name = differ[0]
                raise PipelineError(
                    f"Dask worker {worker} runs other code than this machine: {name} is {facts.get(name)} there, "
                    f"{mine[name]} here{f' (and {len(differ) - 1} more)' if len(differ) > 1 else ''}; install the "
                    "same imgpipe checkout and libraries on the workers (outputs must not depend on the engine)")

    @contextmanager
    def shared(self, value: Any) -> Iterator[Any]:
        """``value`` as an argument of every task of the maps run inside (large arguments: lookup
        tables, a fitted model). On Dask it is sent to every worker once, under a key of its own,
        and dropped from the cluster after; here or in a pool it is ``value`` itself.

        (Not ``client.scatter(a_dict)``: Dask stores a dict's items under the dict's own keys,
        ``margin`` and the like, which the next map's arguments reused; releasing the old one lost
        the new one, and tasks waited for it forever with their workers looking for it.)"""
        if self._client is None or value is None or (isinstance(value, (dict, list, tuple)) and not value):
            yield value
            return
        [future] = self._client.scatter([value], broadcast=True, hash=False)  # a unique key
        try:
            yield future
        finally:
            future.release()

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
        section = self.spec.section
        return _in_order(
            tasks, max(1, per_worker * self.workers), describe,
            submit=lambda task: self._pool.submit(fn, task, *args),
            result=_result_in_time,
            lost=BrokenProcessPool,
            # A broken pool fails every task in flight alike: the oldest is the one named.
            lost_message=lambda names: (f"a worker process died with {names[0]} in flight (a crashing native "
                                        f"decoder? out of memory?); rerun with {section}.workers=1 to see which item"),
            where=lambda exc: " in a worker process")

    def _map_dask(self, fn, tasks, args, describe, per_worker) -> Iterator:
        from distributed import KilledWorker
        from distributed import wait as wait_for

        client = self._client
        section = self.spec.section

        def result(future):
            try:
                return _result_in_time(future)
            finally:
                future.release()

        def where(exc: BaseException) -> str:
            if type(exc).__module__.startswith(("distributed", "asyncio", "concurrent")):
                return f" (lost the Dask scheduler {client.scheduler.address}?)"
            return " on a Dask worker"

        def siblings_lost(futures) -> list[bool]:
            # A worker's death costs every task it held (running or queued there), not only the one
            # that killed it: which of the others Dask also gave up on.
            with suppress(TimeoutError):
                wait_for(futures, timeout=SIBLINGS_WAIT_S)
            return [future.status == "error" and isinstance(future.exception(), KilledWorker)
                    for future in futures]

        return _in_order(
            tasks, max(1, per_worker * self.workers), describe,
            submit=lambda task: client.submit(fn, task, *args, pure=False),
            result=result,
            lost=KilledWorker,
            lost_message=lambda names: (f"Dask workers died running {_one_of(names)} (out of memory? a crashing "
                                        f"native decoder?); rerun with {section}.engine=local and "
                                        f"{section}.workers=1 to see which item"),
            siblings_lost=siblings_lost,
            where=where,
            # An error or an early stop: cancel what is still queued on the cluster.
            cancel=client.cancel)


class _NotFinished(Exception):
    """The oldest task in flight gave no result within :data:`TASK_TIMEOUT_S`."""


def _result_in_time(future):
    """``future.result()``, waiting at most :data:`TASK_TIMEOUT_S` (a pool's or a Dask future)."""
    try:
        return future.result(timeout=TASK_TIMEOUT_S)
    except TimeoutError:
        if future.done():  # the task's own TimeoutError (a socket's, say), or it just finished
            return future.result()
        raise _NotFinished from None


def _in_order(tasks: Iterable, window: int, describe: Callable[[int, Any], str], *, submit: Callable,
              result: Callable, lost: type[BaseException], lost_message: Callable[[list[str]], str],
              where: Callable[[BaseException], str], cancel: Callable | None = None,
              siblings_lost: Callable[[list], list[bool]] | None = None) -> Iterator:
    """The windowed loop of a pool or a cluster: ``submit(task)`` gives a future, at most ``window``
    are in flight, ``result(future)`` waits for the oldest, and what is yielded is in task order.
    A failure is one :class:`PipelineError` line naming the task: ``lost`` (the backend lost a
    worker) says ``lost_message(names)``, a task with no result in time says how long it waited,
    anything else is the task's own exception, ``where(exc)`` saying where it ran.
    ``siblings_lost(futures)``: which other tasks in flight the backend also lost with that worker
    (named too, in task order, so the one that killed it is among the names).
    ``cancel(futures)``: what is still in flight when the loop stops early."""
    pending: deque = deque()

    def next_result():
        index, task, future = pending.popleft()
        try:
            return result(future)
        except PipelineError:
            raise
        except lost:
            names = [describe(index, task)]
            if siblings_lost is not None and pending:
                others = list(pending)
                gone = siblings_lost([future for *_, future in others])
                names += [describe(i, t) for (i, t, _), lost_too in zip(others, gone, strict=True) if lost_too]
            raise PipelineError(lost_message(names)) from None
        except _NotFinished:
            raise PipelineError(_timed_out(describe(index, task))) from None
        except Exception as exc:  # noqa: BLE001 - one line naming the task
            raise PipelineError(_failed(describe(index, task), exc, where(exc))) from exc

    try:
        for index, task in enumerate(tasks):
            try:
                future = submit(task)
            except lost:  # a worker died since the last result: report a task it held
                while pending:
                    next_result()
                raise
            pending.append((index, task, future))
            if len(pending) >= window:
                yield next_result()
        while pending:
            yield next_result()
    finally:
        if pending and cancel is not None:
            cancel([future for _, _, future in pending])


def _one_of(names: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _timed_out(name: str) -> str:
    return (f"{name} gave no result within {TASK_TIMEOUT_S:g} s (imgpipe.engine.TASK_TIMEOUT_S): a task stuck "
            "in a loop or on a lock, or workers too busy to start it; see docs/scale.md")


def _failed(name: str, exc: BaseException, where: str) -> str:
    text = str(exc).strip().splitlines()
    return f"{name} failed{where}: {type(exc).__name__}: {text[0] if text else '(no message)'}"


def _code_facts(modules: list[str], distributions: list[str]) -> dict[str, str]:
    # Runs here and on each Dask worker (client.run): a digest of each module's source, and the
    # installed version of each distribution.
    import hashlib
    import importlib
    import importlib.metadata

    facts = {}
    for name in modules:
        try:
            path = importlib.import_module(name).__file__
            with open(path, "rb") as f:
                facts[name] = "source sha256 " + hashlib.sha256(f.read()).hexdigest()[:12]
        except Exception as exc:  # noqa: BLE001 - reported as a difference, not a crash
            facts[name] = f"not importable ({type(exc).__name__})"
    for name in distributions:
        try:
            facts[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            facts[name] = "not installed"
    return facts


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
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context())
    try:
        yield Runner(spec, workers, pool=pool)
    except BaseException:  # an error, a timeout, Ctrl-C: no waiting for tasks that may never end
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Shut ``pool`` down now: queued tasks cancelled, its processes terminated (killed if they
    do not stop within seconds) and reaped, so none outlives the stage."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()


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
    # The scheduler and nannies of a LocalCluster log here, at INFO, a few lines per worker and
    # per client: a stage's log keeps the warnings only.
    quiet = logging.getLogger("distributed")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        # No dashboard; the scheduler's small HTTP server on a free loopback port, not on 8787
        # (taken by the first of several clusters on a machine: the others warned and moved).
        # Every worker process the cluster spawns, restarts included (a nanny may restart a worker
        # it is stopping for a stuck task): the spawned children of this process born meanwhile.
        before = _spawned_children()
        try:
            with LocalCluster(n_workers=spec.dask_workers, threads_per_worker=1, processes=True,
                              dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False}) as cluster, \
                    Client(cluster) as client:
                yield client
        finally:
            _reap(sorted(_spawned_children() - before))
    finally:
        quiet.setLevel(level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _spawned_children() -> set[int]:
    """Live processes this one started with multiprocessing's spawn (Dask's nannies start workers so)."""
    import psutil  # a dependency of distributed

    pids = set()
    for proc in psutil.Process().children():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(proc.cmdline()):
                pids.add(proc.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def _reap(pids: list[int], grace_s: float = 10.0) -> None:
    """Make sure a closed LocalCluster's worker processes are dead. A worker stuck in a task is
    killed by its nanny only after the nanny's own timeout, and on a busy machine the process
    outlived the cluster's close (seen in CI): wait for it, then kill it here. Reaping stays with
    distributed (its process watcher joins each worker), so no pid is waited on twice."""
    import time

    import psutil  # a dependency of distributed

    def running() -> list:
        alive = []
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                continue
        return alive

    for attempt in range(2):
        deadline = time.monotonic() + grace_s
        while (alive := running()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not alive or attempt:
            return
        for proc in alive:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
