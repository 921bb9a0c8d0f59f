"""Scenes as Ray tasks: one task per scene, retried when its worker dies, a bounded number in flight.

Ray (Moritz et al., "Ray: A Distributed Framework for Emerging AI Applications", OSDI 2018) runs plain
Python functions as tasks on a local instance or a cluster. Imported only here, when a batch runs
(``pip install .[batch]``); nothing else in engine/ imports it.

- No address: a local Ray on this machine (``workers`` CPUs, a small object store: scenes travel as
  paths, not pixels; no dashboard). ``auto`` or ``ray://host:10001``: an existing cluster, whose nodes
  have this toolbox installed and see the input and output paths (a shared filesystem).
- A Ray already started by the calling process (``ray.init`` in a notebook or a test) is used as it is.
- A worker process that dies (killed, out of memory, its node lost) has its scene run again, up to
  ``RETRIES`` times; a scene whose task fails (bad input) is not retried: the result says why.
- At most ``max_in_flight`` scenes are submitted at once, so thousands of scenes never queue in the
  object store, and results are recorded as they arrive.
- Cancel (the caller's ``cancelled()``, Ctrl+C, SIGTERM) cancels the running tasks (their workers are
  killed; their temporary files are removed) and keeps every scene that finished; the signals then stop the
  process as they would have (KeyboardInterrupt, engine.output_files.Terminated).
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from engine.errors import EngineError
from engine.output_files import Terminated
from engine.pipeline import IsCancelled, Progress

RETRIES = 3  # runs of a scene after its worker died
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20  # results are small records; Ray's minimum is 75 MB
WAIT_S = 0.5  # how often the driver checks for cancel while scenes run
CANCEL_WAIT_S = 2.0  # for the workers of cancelled tasks to end


def ray_module():
    try:
        import ray
    except ImportError:
        raise EngineError("batch runs need Ray, which is not installed in the engine's Python: pip install "
                          "'.[batch]' in the toolbox folder (or pip install 'ray[client]'), or run "
                          "scripts/setup.sh") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, workers: int | None):
    """Ray for one batch run: the caller's if it started one, else a cluster at ``address``, else local."""
    ray = ray_module()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"log_to_driver": False, "logging_level": "warning"}  # the worker protocol owns stdout
    on_sigterm = signal.getsignal(signal.SIGTERM)  # Ray's own handler would abort this process (no cleanup)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(address="local", num_cpus=workers or os.cpu_count(), include_dashboard=False,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise EngineError(f"cannot start or reach {where}: {str(err).splitlines()[0]}. Check the address "
                          "(ray status on the head node prints it; 'auto' joins the cluster this machine is part "
                          "of) or leave it empty for a local Ray") from None
    if threading.current_thread() is threading.main_thread() and on_sigterm is not None:
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_name() -> str:
    """host:pid of this Ray worker, and its Ray node (two nodes may share a host)."""
    node = ray_module().get_runtime_context().get_node_id()
    return f"{socket.gethostname()}:{os.getpid()} node {node[:8]}"


def outcome_of(function: Callable[..., dict], *args) -> dict:
    """Run one scene's ``function`` in a Ray worker: its result with status done, or status failed and why
    (a scene's failure is reported, never raised: Ray retries only workers that died)."""
    started = time.perf_counter()
    try:
        outcome = {"status": "done", **function(*args)}
    except EngineError as err:
        outcome = {"status": "failed", "error": str(err)}
    except Exception as err:  # a bug: this scene fails with the traceback, the others go on
        outcome = {"status": "failed", "error": f"internal error ({type(err).__name__}: {err}); please report it",
                   "traceback": traceback.format_exc()}
    return {**outcome, "seconds": round(time.perf_counter() - started, 3), "worker": worker_name()}


@dataclass
class Counts:
    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    started: float = 0.0

    def message(self) -> str:
        finished = self.done + self.failed
        elapsed = time.perf_counter() - self.started
        rate = finished / elapsed if elapsed > 0 else 0.0
        left = self.total - self.skipped - finished
        eta = f", ETA {left / rate:.0f} s" if rate > 0 and left else ""
        skipped = f" ({self.skipped} finished before)" if self.skipped else ""
        return f"{finished + self.skipped}/{self.total} scenes{skipped}: {self.done} done, {self.failed} failed, " \
               f"{rate:.2f} scenes/s{eta}"

    def fraction(self) -> float:
        return (self.skipped + self.done + self.failed) / max(1, self.total)


def run_scenes(ray, work: list[tuple[object, Callable[..., dict], tuple]], record: Callable[[object, dict], None],
               counts: Counts, progress: Progress, cancelled: IsCancelled, *, cpus_per_task: float = 1,
               gpus_per_task: float = 0, max_in_flight: int | None = None,
               cleanup: Callable[[object], None] = lambda key: None) -> bool:
    """Run ``function(*args)`` of each ``(key, function, args)`` in ``work`` as a Ray task; ``record(key,
    outcome)`` as each finishes. Returns False when cancelled (unfinished scenes were stopped, then
    ``cleanup(key)`` removed what each left)."""
    check_resources(ray, cpus_per_task, gpus_per_task)
    if max_in_flight is None:
        max_in_flight = max(1, int(2 * ray.cluster_resources().get("CPU", 1) / max(cpus_per_task, 1e-3)))
    if max_in_flight < 1:
        raise EngineError(f"max_in_flight is {max_in_flight}; give a whole number >= 1")
    remote = ray.remote(outcome_of).options(max_retries=RETRIES, retry_exceptions=False, num_cpus=cpus_per_task,
                                            num_gpus=gpus_per_task)
    queue, running = list(reversed(work)), {}

    def finish(key, outcome: dict) -> None:
        setattr(counts, outcome["status"], getattr(counts, outcome["status"]) + 1)
        record(key, outcome)

    counts.started = time.perf_counter()
    progress(counts.fraction(), counts.message())
    stopped = False
    with stop_signals() as received:
        try:
            while (queue or running) and not stopped:
                if cancelled() or received:
                    stop(ray, running, finish, cleanup)
                    stopped = True
                    break
                while queue and len(running) < max_in_flight:
                    key, function, args = queue.pop()
                    running[remote.remote(function, *args)] = key
                ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    finish(running.pop(ref), result_or_loss(ray, ref))
                if ready:
                    progress(counts.fraction(), counts.message())
        except BaseException:  # a failed record (a full disk): stop what runs, keep what finished
            stop(ray, running, finish, cleanup)
            raise
    if received:
        raise Terminated("stopped by signal SIGTERM") if received[0] == signal.SIGTERM else KeyboardInterrupt()
    return not stopped


@contextlib.contextmanager
def stop_signals():
    """SIGTERM and SIGINT while scenes run: noted, for the loop to stop the scenes within ``WAIT_S`` and then
    stop the process as they would (raised inside Ray's calls, they left Ray 2.60's core worker inconsistent:
    "Tried to complete task that was not pending", a fatal check failure). Only the main thread has signals."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {number: signal.signal(number, lambda signum, frame: received.append(signum))
                for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def result_or_loss(ray, ref) -> dict:
    """A finished task's outcome; a scene whose workers died every time it ran fails with Ray's reason."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:
        return {"status": "failed", "seconds": None, "worker": None,
                "error": f"its Ray worker was lost {RETRIES + 1} times ({type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0]}); it may need more memory than a worker has"}


def stop(ray, running: dict, finish: Callable[[object, dict], None], cleanup: Callable[[object], None]) -> None:
    """Cancel the running tasks and wait for them to end; a scene that finished meanwhile is kept (``finish``),
    the others are cleaned up after (``cleanup``). A scene stopped just as its output was renamed into place
    leaves that complete output unrecorded: the next run writes it again."""
    for ref in running:
        ray.cancel(ref, force=True)  # kills the worker: its temporaries are left to ``cleanup``
    ray.wait(list(running), num_returns=len(running), timeout=CANCEL_WAIT_S)
    for ref, key in running.items():
        try:
            outcome = ray.get(ref, timeout=0)
        except ray.exceptions.RayError:  # cancelled (or still ending: its worker is being killed)
            cleanup(key)
            continue
        finish(key, outcome)
    running.clear()


def check_resources(ray, cpus_per_task: float, gpus_per_task: float) -> None:
    """Refuse a task size that no node can run (Ray would wait for it forever)."""
    if cpus_per_task <= 0 or gpus_per_task < 0:
        raise EngineError(f"cpus_per_task must be > 0 and gpus_per_task >= 0; got {cpus_per_task} and {gpus_per_task}")
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if not any(r.get("CPU", 0) >= cpus_per_task and r.get("GPU", 0) >= gpus_per_task for r in nodes):
        have = "; ".join(f"{r.get('CPU', 0):g} CPU, {r.get('GPU', 0):g} GPU" for r in nodes)
        raise EngineError(f"no node of the Ray cluster has {cpus_per_task:g} CPU and {gpus_per_task:g} GPU for one "
                          f"scene (nodes: {have}); lower cpus_per_task / gpus_per_task or add such a node")
