"""imgpipe.engine (order, bounded window, one-line errors) and preprocess on it: the same bytes on
a local pool and on a 2-worker Dask LocalCluster. One cluster for the whole file (module fixture)."""

from __future__ import annotations

import os
import re
import sys
import time
from concurrent.futures import Future

import pytest
from ppkit import cfg, encode, rgb, write_raw
from processes import assert_no_new_children, child_processes

from imgpipe import engine
from imgpipe.engine import EngineSpec, ordered_map
from imgpipe.errors import PipelineError
from imgpipe.preprocess import pipeline
from imgpipe.preprocess.pipeline import preprocess_images

# --- tasks (module level: they travel to worker processes by name, or by value to Dask) --------


def square(x: int, delay: float = 0.0) -> int:
    time.sleep(delay * ((x * 7) % 5))  # later tasks often finish first
    return x * x


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError("seven is not allowed\nsecond line")
    return x


def die_on_three(x: int) -> int:
    if x == 3:
        os._exit(1)  # as a segfaulting native decoder would
    return x


def facts_with_pid(modules, distributions):
    return {**ORIGINAL_CODE_FACTS(modules, distributions), "pid": str(os.getpid())}


ORIGINAL_CODE_FACTS = engine._code_facts


def stuck_on_two(x: int) -> int:
    if x == 2:
        time.sleep(3600)  # as a task stuck in a loop or on a lock would
    return x


def interrupted_after(n: int):
    """Tasks, then Ctrl-C while some are in flight."""
    yield from range(n)
    raise KeyboardInterrupt


def add_margin(x: int, kwargs: dict) -> int:
    return x + kwargs["margin"]


class Counted:
    """An iterator of tasks that records how many were drawn."""

    def __init__(self, n: int) -> None:
        self.n, self.drawn = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.drawn += 1
            yield i


def assert_bounded(results, tasks: Counted, window: int) -> list:
    got = []
    for value in results:
        got.append(value)
        # Drawn so far: the ones consumed plus at most a window in flight.
        assert tasks.drawn <= len(got) + window
    return got


# --- local ---------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
def test_local_keeps_task_order_and_a_bounded_window(workers):
    tasks = Counted(40)
    got = assert_bounded(ordered_map(square, tasks, EngineSpec("local", workers), 0.002, per_worker=2), tasks,
                         2 * workers)
    assert got == [i * i for i in range(40)]


@pytest.mark.parametrize("workers", [1, 2])
def test_local_task_error_is_one_line_naming_the_task(workers):
    with pytest.raises(PipelineError) as info:
        list(ordered_map(fail_on_seven, range(20), EngineSpec("local", workers)))
    assert str(info.value).startswith("task 7 failed")
    assert str(info.value).endswith("ValueError: seven is not allowed")


def test_local_killed_worker_fails_naming_a_task_in_flight():
    with pytest.raises(PipelineError, match=r"a worker process died with task \d+ in flight .*engine\.workers=1"):
        list(ordered_map(die_on_three, range(20), EngineSpec("local", 2)))


@pytest.mark.parametrize("stop", ["stuck task", "ctrl-c"])
def test_local_pool_is_gone_after_a_stuck_task_or_ctrl_c(stop, monkeypatch):
    before = child_processes()
    if stop == "stuck task":  # one line, not a hang (nor a wait for the stuck process at shutdown)
        monkeypatch.setattr(engine, "TASK_TIMEOUT_S", 0.5)
        with pytest.raises(PipelineError, match=r"^task 2 gave no result within 0\.5 s \(imgpipe\.engine\.TASK_TIMEOUT_S\)"):
            list(ordered_map(stuck_on_two, range(8), EngineSpec("local", 2)))
    else:
        with pytest.raises(KeyboardInterrupt):
            list(ordered_map(square, interrupted_after(5), EngineSpec("local", 2)))
    assert_no_new_children(before)


def test_unreachable_scheduler_is_one_line(monkeypatch):
    import socket

    pytest.importorskip("distributed")
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT_S", 0.5)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = EngineSpec("dask", dask_address=f"tcp://127.0.0.1:{port}", section="preprocess")
    with pytest.raises(PipelineError, match=rf"^preprocess\.dask_address tcp://127\.0\.0\.1:{port}: cannot connect"):
        list(ordered_map(square, range(3), spec))


# --- dask ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_address():
    """A 2-worker LocalCluster started by the engine itself (dask_address empty)."""
    pytest.importorskip("distributed")
    import cloudpickle

    # This module is not importable on the workers: send its task functions by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    import dask

    before = {name: os.environ.get(name) for name in engine._CLUSTER_ENV}
    # A task whose worker dies fails at once (Dask's default retries it on 3 workers first).
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            engine.dask_client(EngineSpec("dask", dask_workers=2)) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        yield client.scheduler.address
    # The cluster's pre-spawn environment (OMP_NUM_THREADS=1, ...) does not outlive it.
    assert {name: os.environ.get(name) for name in engine._CLUSTER_ENV} == before
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_dask_keeps_order_and_a_bounded_window_names_failed_tasks_and_checks_paths(dask_address, tmp_path,
                                                                                  monkeypatch):
    # One client for the three (a connection costs a few tenths of a second).
    with engine.start(EngineSpec("dask", dask_address=dask_address)) as runner:
        assert runner.workers == 2 and runner.where.startswith(f"dask {dask_address}")
        tasks = Counted(30)
        got = assert_bounded(runner.map(square, tasks, 0.002, per_worker=2), tasks, 2 * 2)
        assert got == [i * i for i in range(30)]

        with pytest.raises(PipelineError, match=r"^task 7 failed on a Dask worker: ValueError: seven is not allowed$"):
            list(runner.map(fail_on_seven, range(20)))

        runner.require_paths([str(tmp_path)])
        with pytest.raises(PipelineError, match=r"^Dask worker tcp://\S+ cannot see /\S+/nowhere \(raw\): .*shared"):
            runner.require_paths([str(tmp_path / "nowhere")], "raw")

        runner.require_same_code(["imgpipe.engine"], ["numpy"])
        # A fact that differs between processes stands for another checkout on the worker.
        monkeypatch.setattr(engine, "_code_facts", facts_with_pid)
        with pytest.raises(PipelineError, match=r"^Dask worker tcp://\S+ runs other code than this machine: "
                                                r"pid is \d+ there, \d+ here; install the same"):
            runner.require_same_code(["imgpipe.engine"], ["numpy"])


def photos(n: int) -> dict[str, bytes]:
    """Assorted small files, a few JPEGs large enough to be drafted, and two bad files."""
    files = {}
    for i in range(n):
        image = rgb(12 + i % 9, 10 + i % 7, seed=i)
        if i % 4 == 0:
            files[f"c{i % 3}/{i:03d}.png"] = encode(image, "PNG")
        elif i % 4 == 1:
            files[f"c{i % 3}/{i:03d}.jpg"] = encode(rgb(96 + i, 80 + i, seed=i), "JPEG", quality=85)
        else:
            files[f"c{i % 3}/{i:03d}.jpg"] = encode(image, "JPEG", quality=80)
    files["c0/bad.jpg"] = b"\xff\xd8\xff\xe0 truncated"
    files["c1/bad.png"] = b"not an image"
    return files


def output_bytes(out) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("store", ["pixels", "jpeg"])
def test_preprocess_bytes_are_identical_on_local_1_2_workers_and_dask(store, dask_address, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "chunk_size", lambda c: 8)  # 9 chunks: real interleaving
    raw = write_raw(tmp_path / "raw", photos(70))
    outputs = {}
    for name, overrides in {
        "local1": {"workers": 1},
        "local2": {"workers": 2},
        "dask": {"engine": "dask", "dask_address": dask_address},
    }.items():
        summary = preprocess_images(raw, tmp_path / name, cfg(store=store, shard_max_mb=0.005, **overrides),
                                    progress=False)
        assert (summary["images"], summary["rejects"]) == (70, 2)
        outputs[name] = output_bytes(tmp_path / name)
    assert len([n for n in outputs["local1"] if n.startswith("shards/")]) > 1
    assert outputs["local1"] == outputs["local2"] == outputs["dask"]


def test_dask_shared_arguments_of_consecutive_maps_do_not_collide(dask_address, monkeypatch):
    # Scattered as a dict, each map's {"margin": ...} lived under the cluster key "margin": the
    # release of one map's copy raced the next map's, and tasks waited forever for a lost key.
    monkeypatch.setattr(engine, "TASK_TIMEOUT_S", 30.0)  # a regression fails, it does not hang
    with engine.start(EngineSpec("dask", dask_address=dask_address)) as runner:
        for margin in range(12):
            with runner.shared({"margin": margin}) as kwargs:
                assert list(runner.map(add_margin, range(4), kwargs)) == [x + margin for x in range(4)]


@pytest.mark.parametrize("stop", ["stuck task", "ctrl-c"])
def test_a_cluster_started_for_a_run_is_gone_after_a_stuck_task_or_ctrl_c(stop, dask_address, monkeypatch):
    # Its own one-worker LocalCluster (the module's is older: its processes are in `before`).
    before = child_processes()
    spec = EngineSpec("dask", dask_workers=1, section="validate")
    if stop == "stuck task":
        monkeypatch.setattr(engine, "TASK_TIMEOUT_S", 3.0)
        # task 2 never ends; on a loaded machine an earlier one may be the first past 3 s
        with pytest.raises(PipelineError, match=r"^task [0-2] gave no result within 3 s \(imgpipe\.engine\.TASK_TIMEOUT_S\)"):
            list(ordered_map(stuck_on_two, range(6), spec))
    else:
        with pytest.raises(KeyboardInterrupt):
            list(ordered_map(square, interrupted_after(5), spec))
    assert_no_new_children(before)


def test_dask_killed_worker_is_one_line_naming_the_task(dask_address):
    # Last in the file: the nanny restarts the killed worker while the cluster shuts down.
    spec = EngineSpec("dask", dask_address=dask_address, section="preprocess")
    with pytest.raises(PipelineError) as caught:
        list(ordered_map(die_on_three, range(6), spec))
    message = str(caught.value)
    assert "\n" not in message and message.endswith("preprocess.engine=local and preprocess.workers=1 to see which item")
    # Dask also gives up on a task that was only queued on the dying worker (seen in CI: task 2),
    # so the line names each task it lost; the one that killed the worker is always among them.
    named = re.match(r"^Dask workers died running (.+?) \(out of memory\? ", message)
    assert named, message
    assert "task 3" in re.split(r", | or ", named.group(1)), message


def test_every_task_lost_with_a_worker_is_named_in_task_order():
    # The loop on its own, with futures settled by hand: the oldest is lost, and so is one queued
    # beside it; a third finished fine and is not named.
    class Lost(Exception):
        pass

    futures = [Future() for _ in range(4)]
    futures[0].set_exception(Lost())
    futures[1].set_result(1)
    futures[2].set_exception(Lost())
    handed = iter(futures)

    def siblings_lost(others):
        assert others == futures[1:]  # every other task in flight, in order
        return [f.done() and isinstance(f.exception(), Lost) for f in others]

    with pytest.raises(PipelineError, match=r"^died running task 0 or task 2$"):
        list(engine._in_order(range(4), 4, lambda i, _: f"task {i}", submit=lambda _: next(handed),
                              result=lambda f: f.result(), lost=Lost,
                              lost_message=lambda names: f"died running {engine._one_of(names)}",
                              where=lambda exc: "", siblings_lost=siblings_lost))
    assert engine._one_of(["a"]) == "a" and engine._one_of(["a", "b", "c"]) == "a, b or c"
