"""The engine worker: ``python -m engine.worker`` serves task requests as JSON lines.

stdin:  {"id": "1", "task": "estimate_bathymetry", "params": {...}}   run a known task
        {"cancel": "1"}                                               stop request 1 at the next batch
stdout: {"id": "1", "event": "progress", "fraction": 0.5, "message": "..."}
        {"id": "1", "event": "log", "level": "warning", "message": "..."}
        {"id": "1", "event": "result", "result": {...}}   or
        {"id": "1", "event": "error", "kind": "EngineError", "message": "..."}
Exactly one result or error answers each request. Requests run one at a time, in order; cancel
lines are read while a task runs. Only task names from the registry run, with validated parameters.
The plugin runs this in a separate process so that ML libraries never load inside QGIS, GPU memory
is released with the process, and a stuck run can always be killed. SIGTERM and SIGINT end it
after removing the running task's temporary files.
"""
from __future__ import annotations

import json
import queue
import sys
import threading
import traceback

from engine.errors import EngineError
from engine.output_files import Terminated, stop_cleanly_on_sigterm
from engine.tasks import run_task


class Worker:
    def __init__(self, stdin=sys.stdin, stdout=sys.stdout):
        self.stdin, self.stdout = stdin, stdout
        self.requests: queue.Queue = queue.Queue()
        self.cancelled_ids: set[str] = set()
        self.lock = threading.Lock()

    def emit(self, message: dict) -> None:
        with self.lock:
            self.stdout.write(json.dumps(message) + "\n")
            self.stdout.flush()

    def read_lines(self) -> None:
        for line in self.stdin:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                self.emit({"id": None, "event": "error", "kind": "EngineError",
                           "message": f"request is not a JSON object: {err}"})
                continue
            if "cancel" in message:
                self.cancelled_ids.add(str(message["cancel"]))
            else:
                self.requests.put(message)
        self.requests.put(None)

    def serve(self) -> None:
        threading.Thread(target=self.read_lines, daemon=True).start()
        while (request := self.requests.get()) is not None:
            self.handle(request)

    def handle(self, request: dict) -> None:
        request_id = str(request.get("id"))

        def progress(fraction: float, message: str) -> None:
            self.emit({"id": request_id, "event": "progress", "fraction": round(fraction, 4), "message": message})

        try:
            result = run_task(str(request.get("task")), request.get("params", {}), progress,
                              lambda: request_id in self.cancelled_ids)
        except EngineError as err:
            self.emit({"id": request_id, "event": "error", "kind": type(err).__name__, "message": str(err)})
            return
        except Exception as err:  # a bug, not bad input: say so, with the traceback on stderr
            traceback.print_exc(file=sys.stderr)
            self.emit({"id": request_id, "event": "error", "kind": "InternalError",
                       "message": f"internal error ({type(err).__name__}: {err}); please report it"})
            return
        finally:
            self.cancelled_ids.discard(request_id)
        for warning in result.get("warnings", []):
            self.emit({"id": request_id, "event": "log", "level": "warning", "message": warning})
        self.emit({"id": request_id, "event": "result", "result": result})


if __name__ == "__main__":
    stop_cleanly_on_sigterm()
    try:
        Worker().serve()
    except KeyboardInterrupt as stop:  # SIGTERM or SIGINT: the running task's temporaries are gone
        print(f"engine worker {stop or 'interrupted'}", file=sys.stderr)
        sys.exit(143 if isinstance(stop, Terminated) else 130)
