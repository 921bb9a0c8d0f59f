"""Runs engine tasks in a worker process (``<python> -m engine.worker``) and relays its events.

The engine runs in its own interpreter rather than inside QGIS: installing ML packages into
QGIS's Python is the most reported failure of QGIS ML plugins, native libraries clash inside QGIS,
GPU memory must be released after a run, and cancel must be certain (the process can be killed).

Protocol (JSON lines): the plugin writes ``{"id", "task", "params"}`` requests and
``{"cancel": id}`` lines to the worker's stdin; the worker answers on stdout with ``progress``,
``log``, and exactly one ``result`` or ``error`` event per request. It exits when stdin closes.
"""
import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from qgis.core import QgsProcessingException

from rs_qgis_plugin.settings import ENGINE_PYTHON_ENV, engine_folder, engine_python

CANCEL_GRACE_S = 5.0  # a cancelled worker stops at its next batch; after this long it is killed
EXIT_GRACE_S = 5.0  # a worker whose stdin closed exits; after this long it is killed
POLL_S = 0.1  # how often a waiting request checks the feedback for cancel
PROGRESS_TEXT_INTERVAL_S = 10.0  # Processing logs every progress text: pass one on this often
OUTPUT_PARAMS = ("output", "probabilities", "heatmap")  # request params that name files the worker writes
PARTIAL_MARKER = ".rsai-partial-"  # engine temporaries: <dir>/.<stem>.rsai-partial-<pid>-<id>.tif (engine/output_files.py)
SETTING_HINT = (
    "Set the engine's interpreter in Settings > Options > Processing > Providers > "
    f"Remote Sensing AI Toolbox, or in the environment variable {ENGINE_PYTHON_ENV}."
)
CANCELLED_MESSAGE = "Cancelled: no output was written."
STDERR_LINES_SHOWN = 20  # the last lines of the engine's stderr quoted when it fails
SHELL_SIGNAL_EXIT = 128  # a shell (an interpreter wrapper) and the engine itself exit 128 + n after signal n
MEMORY_ADVICE = (
    "Linux's out-of-memory killer ends a process this way when memory runs out, so the run most likely needed "
    "more memory than was free: process a smaller extent, use a smaller tile size (the TILE_SIZE of 'Run ONNX "
    "model' or 'Build search index') or fewer tiles per model run (the CLI's --batch-size 1), or close "
    "other programs, then run again."
)
SIGNAL_ADVICE = {  # by name: Windows has no SIGKILL
    "SIGKILL": MEMORY_ADVICE,
    "SIGTERM": "Another program or the system asked it to stop (a shutdown, a job scheduler); run again.",
    "SIGINT": "It was interrupted (Ctrl+C); run again.",
    "SIGSEGV": "It crashed in a native library (onnxruntime, GDAL); please report it with the engine output below.",
    "SIGABRT": "A native library (onnxruntime, GDAL, CUDA) aborted it; please report it with the engine output below.",
}


def engine_environment() -> dict:
    """The environment an engine process starts with: QGIS may export its own PYTHONHOME/PYTHONPATH,
    which would make the engine's interpreter load QGIS's standard library and packages instead of its own."""
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    environment.pop("PYTHONHOME", None)
    environment.pop("PYTHONPATH", None)
    return environment


def cannot_start(python: str, error: OSError) -> QgsProcessingException:
    return QgsProcessingException(
        f"Cannot start the engine with the Python interpreter {python!r} ({error.strerror}). {SETTING_HINT}")


def run_engine_module(module: str, arguments: list[str], timeout_s: float, python: str | None = None) -> str:
    """Run ``<engine python> -m <module> <arguments>`` to the end and return its standard output; a
    failure raises QgsProcessingException with the engine's last lines."""
    python = python or engine_python()
    try:
        done = subprocess.run([python, "-m", module, *arguments], cwd=engine_folder(), env=engine_environment(),
                              capture_output=True, text=True, encoding="utf-8", timeout=timeout_s)
    except OSError as error:
        raise cannot_start(python, error) from None
    except subprocess.TimeoutExpired:
        raise QgsProcessingException(f"{python} -m {module} did not finish in {timeout_s:.0f} s.") from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-STDERR_LINES_SHOWN:])
        raise QgsProcessingException(
            f"{python} -m {module} failed with exit code {done.returncode}. {SETTING_HINT}\nLast engine output:\n{tail}")
    return done.stdout


class EngineWorker:
    """One worker process that serves requests in sequence; use it as a context manager."""

    def __init__(self, python: str | None = None):
        self.python = python or engine_python()
        try:
            self._process = subprocess.Popen(
                [self.python, "-m", "engine.worker"],
                cwd=engine_folder(),
                env=engine_environment(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                bufsize=1,
            )
        except OSError as error:
            raise cannot_start(self.python, error) from None
        self._lines = queue.Queue()  # stdout lines, then None when the worker closes stdout
        self._answered = False  # whether the worker has sent any event: it started, its interpreter works
        self._progress_text_due = 0.0  # when the next progress text may be passed on
        self._stderr_tail = deque(maxlen=40)
        self._stdout_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stdout_reader.start()
        self._stderr_reader.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def describe_model(self, task: str, model: str | None) -> dict:
        """The model's contract (the task's shipped default model when ``model`` is None)."""
        params = {"task": task} if model is None else {"model": model}
        return self.run("describe_model", params)["contract"]

    def run(self, task: str, params: dict, feedback=None) -> dict:
        """Send one request and relay its events to ``feedback`` until its result, which is
        returned; an engine error or a cancel raises QgsProcessingException."""
        request_id = uuid.uuid4().hex
        started = time.time()
        self._progress_text_due = 0.0
        self._send({"id": request_id, "task": task, "params": params})
        cancel_deadline = None
        while True:
            if cancel_deadline is None and feedback is not None and feedback.isCanceled():
                self._send({"cancel": request_id})
                cancel_deadline = time.monotonic() + CANCEL_GRACE_S
            if cancel_deadline is not None and time.monotonic() > cancel_deadline:
                self.kill()
                remove_leftovers(params, started)
                raise QgsProcessingException(CANCELLED_MESSAGE)
            try:
                line = self._lines.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if line is None:  # the worker has gone
                remove_leftovers(params, started)
                if cancel_deadline is not None:
                    raise QgsProcessingException(CANCELLED_MESSAGE)
                raise self._stopped_unexpectedly()
            event = self._parse(line, feedback)
            self._answered |= event is not None
            if event is not None and event.get("id") == request_id:
                if event.get("event") == "result":
                    log_device(event["result"], feedback)
                    return event["result"]
                if event.get("event") == "error":
                    raise self._error(event)
                self._relay(event, feedback)

    def is_running(self) -> bool:
        """False once the worker process has exited (killed after a cancel, or crashed)."""
        return self._process.poll() is None

    def close(self) -> None:
        """Let the worker exit (it does when stdin closes), kill it if it does not, free the pipes."""
        try:
            self._process.stdin.close()
            self._process.wait(EXIT_GRACE_S)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        for reader in (self._stdout_reader, self._stderr_reader):
            reader.join(EXIT_GRACE_S)
        self._process.stdout.close()
        self._process.stderr.close()

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()

    def _send(self, message: dict) -> None:
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        except OSError:
            raise self._stopped_unexpectedly() from None

    def _read_stdout(self) -> None:
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_stderr(self) -> None:
        for line in self._process.stderr:
            self._stderr_tail.append(line.rstrip())

    @staticmethod
    def _parse(line: str, feedback) -> dict | None:
        """A JSON event, or None for any other output (passed on as debug information)."""
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            if feedback is not None and line.strip():
                feedback.pushDebugInfo(line.rstrip())
            return None
        return event

    def _relay(self, event: dict, feedback) -> None:
        if feedback is None:
            return
        if event.get("event") == "progress":
            feedback.setProgress(100.0 * float(event.get("fraction") or 0.0))
            if event.get("message") and time.monotonic() >= self._progress_text_due:
                feedback.setProgressText(event["message"])
                self._progress_text_due = time.monotonic() + PROGRESS_TEXT_INTERVAL_S
        elif event.get("event") == "log":
            if event.get("level") == "warning":
                feedback.pushWarning(event.get("message", ""))
            else:
                feedback.pushInfo(event.get("message", ""))

    def _error(self, event: dict) -> QgsProcessingException:
        kind, message = event.get("kind"), event.get("message", "")
        if kind == "Cancelled":
            return QgsProcessingException(CANCELLED_MESSAGE)
        if kind == "InternalError":
            return QgsProcessingException(
                f"The engine failed unexpectedly: {message}{self._stderr_excerpt()}"
            )
        return QgsProcessingException(message)  # EngineError, ModelContractError: said for users

    def _stopped_unexpectedly(self) -> QgsProcessingException:
        try:
            code = self._process.wait(EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self._process.returncode
        excerpt = self._stderr_excerpt()
        engine = f"The engine ({self.python} -m engine.worker)"
        stopped_by = stopping_signal(code)
        if stopped_by is not None:
            how = "killed" if stopped_by.name == "SIGKILL" else "stopped"
            return QgsProcessingException(
                f"{engine} was {how} by signal {stopped_by.name}{'' if code < 0 else f' (exit code {code})'}. "
                f"{SIGNAL_ADVICE.get(stopped_by.name, 'Run again.')}{excerpt}"
            )
        if self._answered:
            return QgsProcessingException(
                f"{engine} exited with code {code} in the middle of the task: a bug in the engine or a library it "
                f"uses; please report it with the engine output below.{excerpt}"
            )
        hint = SETTING_HINT
        if "No module named 'engine'" in excerpt:
            hint = (
                f"{self.python} cannot import the toolbox's engine: install the toolbox into that "
                f"environment (pip install <toolbox folder>) or choose its interpreter. {SETTING_HINT}"
            )
        return QgsProcessingException(
            f"{engine} stopped unexpectedly while starting, with exit code {code}: that interpreter cannot run "
            f"the engine. {hint}{excerpt}"
        )

    def _stderr_excerpt(self) -> str:
        self._stderr_reader.join(timeout=POLL_S)  # let it catch a failing worker's last lines
        lines = list(self._stderr_tail)[-STDERR_LINES_SHOWN:]
        return "\nLast engine output:\n" + "\n".join(lines) if lines else ""


def device_text(result: dict) -> str:
    """The device that ran the model, and why not a GPU when the engine found a reason ('' when the
    task ran no model)."""
    if not result.get("device"):
        return ""
    note = f" (GPU not used: {result['device_note']})" if result.get("device_note") else ""
    return f"Device: {result['device']}{note}"


def log_device(result: dict, feedback) -> None:
    """Every run's log names the device (Plugins > Remote Sensing AI Toolbox > Diagnostics tells more)."""
    if feedback is not None and device_text(result):
        feedback.pushInfo(device_text(result))


def stopping_signal(code: int) -> signal.Signals | None:
    """The signal that ended a process with exit status ``code``: -n from Python's subprocess, 128 + n
    from a shell wrapping the interpreter or from the engine itself (after SIGTERM or SIGINT)."""
    number = -code if code < 0 else code - SHELL_SIGNAL_EXIT if code > SHELL_SIGNAL_EXIT else None
    try:
        return signal.Signals(number) if number is not None else None
    except ValueError:
        return None


def remove_leftovers(params: dict, since: float) -> None:
    """After a kill, delete what the worker may have left of its outputs, written since the request
    started: the outputs themselves, their GDAL side-cars and the engine's temporary files."""
    for key in OUTPUT_PARAMS:
        if not params.get(key):
            continue
        output = Path(params[key])
        if not output.parent.is_dir():
            continue
        for candidate in output.parent.iterdir():
            if (
                candidate.is_file()
                and candidate.name.startswith((output.name, f".{output.stem}{PARTIAL_MARKER}"))
                and candidate.stat().st_mtime >= since - 1.0
            ):
                candidate.unlink(missing_ok=True)
