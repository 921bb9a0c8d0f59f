"""Engine set-up: the engine's own Python environment, created from inside QGIS (no terminal).

The environment lives in the QGIS profile folder (``<profile>/rsai-toolbox/engine-env``), outside the
plugin folder, so plugin updates keep it. It is made with ``uv`` when it is on PATH, else with
``python -m venv``, from a Python 3.10+ found on the machine (or the one the user chooses), and the
engine is installed into it from the wheel the plugin zip carries (``engine_wheel/``; from the
checkout when the plugin runs from one) with the onnxruntime flavour that fits the machine:
onnxruntime-gpu where an NVIDIA driver is present, DirectML on other Windows machines, otherwise the
CPU package (which brings CoreML on macOS). The driver is looked for by the engine's own probe
(``engine.doctor``), run from the wheel by the chosen interpreter.

The environment is built beside the old one (``engine-env.new``) and swapped in only once the engine
imports in it: a failed or cancelled set-up deletes the new folder and leaves the previous
environment as it was. Offline, a wheelhouse folder replaces the package index (``python -m
engine wheelhouse`` or scripts/build_wheelhouse.sh build one on a connected machine).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from qgis.core import QgsProcessingException

from rs_qgis_plugin.settings import PLUGIN_DIR, REPO_ROOT, engine_environment_dir, engine_wheel, environment_python
from rs_qgis_plugin.worker_client import engine_environment

FLAVOURS = ("auto", "cpu", "cuda", "directml")
MIN_PYTHON = (3, 10)  # pyproject's requires-python
PYTHON_NAMES = ("python3.13", "python3.12", "python3.11", "python3.10", "python3", "python")
PROBE_TIMEOUT_S = 30
DOCTOR_TIMEOUT_S = 600  # loads every shipped model once on a GPU machine
LOG_NAME = "engine-setup.log"
RECORD_NAME = "engine-setup.json"  # beside the environment: what the last set-up installed
ENGINE_DISTRIBUTION = "rs-ai-toolbox"
MISSING_PACKAGE_PATTERNS = (  # pip's and uv's words for a requirement the wheelhouse cannot satisfy
    re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-]+)"),
    re.compile(r"Because ([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])? was not found in the provided package locations"),
    re.compile(r"Because there is no version of ([A-Za-z0-9_.\-]+)"),
    re.compile(r"([A-Za-z0-9_.\-]+) was not found in the package registry"),
)


class SetupFailed(QgsProcessingException):
    """The set-up stopped; the message names the problem and the fix, and nothing was left half-made."""


def engine_source() -> str:
    """What to install: the engine wheel the plugin zip carries, else this checkout (built by pip)."""
    if engine_wheel() is not None:
        return str(engine_wheel())
    if (REPO_ROOT / "pyproject.toml").is_file():
        return str(REPO_ROOT)
    raise SetupFailed(f"The plugin folder {PLUGIN_DIR} has no engine_wheel/: the plugin zip is incomplete. "
                      "Install the plugin again from its zip.")


def python_version(python: str) -> tuple[int, int] | None:
    """The interpreter's (major, minor) when it runs and has the venv module, else None."""
    try:
        done = subprocess.run([python, "-c", "import sys, venv; print(*sys.version_info[:2])"], env=engine_environment(),
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    return (int(parts[0]), int(parts[1])) if done.returncode == 0 and len(parts) == 2 else None


def find_python(chosen: str = "") -> str:
    """The chosen interpreter when it is a usable Python 3.10+, else the newest one on PATH."""
    needed = ".".join(map(str, MIN_PYTHON))
    if chosen:
        version = python_version(chosen)
        if version is None or version < MIN_PYTHON:
            found = "it does not run" if version is None else f"it is Python {version[0]}.{version[1]}"
            raise SetupFailed(f"The chosen interpreter {chosen} cannot hold the engine: {found}; the engine needs "
                              f"Python {needed} or later with its venv module. Choose another one, or leave the "
                              "choice empty to use one found on this machine.")
        return chosen
    for name in PYTHON_NAMES:
        candidate = shutil.which(name)
        version = python_version(candidate) if candidate else None
        if version is not None and version >= MIN_PYTHON:
            return candidate
    install = ("install it from python.org" if sys.platform in ("win32", "darwin")
               else "install it with your package manager (Debian, Ubuntu: sudo apt install python3 python3-venv)")
    raise SetupFailed(f"No Python {needed} or later was found on this machine (looked on PATH for "
                      f"{', '.join(PYTHON_NAMES)}). The engine runs in its own Python: {install}, then run the "
                      "Engine set-up again, or choose the interpreter (Python interpreter).")


def nvidia_driver(python: str, source: str) -> str:
    """Where the engine's probe finds an NVIDIA driver ('' when none), run from ``source`` by ``python``."""
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); from engine.doctor import ldconfig_cache, nvidia_driver; "
             "print(nvidia_driver(ldconfig_cache())[0] or '')")
    done = subprocess.run([python, "-c", probe, source], env=engine_environment(), capture_output=True, text=True,
                          timeout=PROBE_TIMEOUT_S)
    return done.stdout.strip() if done.returncode == 0 else ""


def choose_flavour(requested: str, python: str, source: str) -> tuple[str, str]:
    """(the onnxruntime flavour to install, why)."""
    if requested != "auto":
        return requested, "as chosen"
    if sys.platform == "darwin":
        return "cpu", "macOS: the onnxruntime package runs on the CPU and, through CoreML, on Apple's GPU"
    driver = nvidia_driver(python, source)
    if driver:
        return "cuda", f"an NVIDIA driver is installed ({driver})"
    if sys.platform == "win32":
        return "directml", "Windows without an NVIDIA driver: DirectML runs on any DirectX 12 GPU"
    return "cpu", "no NVIDIA driver is installed"


class Steps:
    """Runs the set-up's commands, passing their output to the feedback and the log file, and
    turning progress lines into the progress bar between ``start`` and ``end`` percent."""

    def __init__(self, feedback, log_path: Path):
        self.feedback = feedback
        self.log = log_path.open("a", encoding="utf-8")

    def say(self, message: str) -> None:
        self.log.write(message + "\n")
        self.log.flush()
        if self.feedback is not None:
            self.feedback.pushInfo(message)

    def run(self, command: list[str], start: float, end: float, environment: dict) -> list[str]:
        self.say("$ " + " ".join(command))
        lines, progress = [], start
        with subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, encoding="utf-8", errors="replace") as process:
            for line in process.stdout:
                lines.append(line.rstrip())
                self.log.write(line)
                if self.feedback is not None:
                    self.feedback.pushConsoleInfo(line.rstrip())
                    if line.lstrip().startswith(("Collecting", "Processing", "Prepared", "Installed", "Downloading")):
                        progress = min(end - 1, progress + (end - progress) * 0.1)
                        self.feedback.setProgress(progress)
                    if self.feedback.isCanceled():
                        process.kill()
                self.log.flush()
        if self.feedback is not None and self.feedback.isCanceled():
            raise SetupFailed("Cancelled: the previous engine environment, if any, is unchanged.")
        if process.returncode != 0:
            raise subprocess.CalledProcessError(process.returncode, command, "\n".join(lines))
        if self.feedback is not None:
            self.feedback.setProgress(end)
        return lines

    def check(self, environment: Path) -> dict:
        """The engine's doctor in the new environment: a tile must run on some device."""
        command = [str(environment_python(environment)), "-m", "engine.doctor", "--json"]
        self.say("$ " + " ".join(command))
        try:
            done = subprocess.run(command, env=engine_environment(), capture_output=True, text=True, encoding="utf-8",
                                  timeout=DOCTOR_TIMEOUT_S)
            diagnosis = json.loads(done.stdout) if done.returncode == 0 else None
        except (subprocess.TimeoutExpired, ValueError):
            done, diagnosis = None, None
        output = f"{done.stdout}{done.stderr}" if done else f"no answer in {DOCTOR_TIMEOUT_S} s"
        if diagnosis is None or not any(test["error"] is None for test in diagnosis["tests"]):
            raise subprocess.CalledProcessError(1, command, diagnosis["report"] if diagnosis else output)
        self.say(diagnosis["report"])
        if self.feedback is not None:
            self.feedback.setProgress(98)
        return diagnosis

    def close(self) -> None:
        self.log.close()


def install_commands(python: str, building: Path, spec: str, wheelhouse: str) -> tuple[list, list, dict]:
    """(the command creating the environment, the one installing the engine, their environment)."""
    environment = engine_environment()
    new_python = str(environment_python(building))
    uv = shutil.which("uv")
    offline = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    if wheelhouse:  # only the wheelhouse: no configured index, mirror or extra wheel folder
        environment.update(PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1")
    if uv:
        return ([uv, "venv", "--python", python, str(building)],
                [uv, "pip", "install", "--python", new_python, *(["--offline"] if wheelhouse else []), *offline, spec],
                environment)
    return ([python, "-m", "venv", str(building)],
            [new_python, "-m", "pip", "install", "--disable-pip-version-check", *offline, spec], environment)


def set_up_engine(python: str = "", flavour: str = "auto", wheelhouse: str = "", feedback=None,
                  target: Path | None = None, source: str = "") -> dict:
    """Create (or replace) the engine's environment ``target`` (default: the profile's) with the engine
    from ``source`` (default: the plugin's wheel); returns its interpreter, flavour and the seconds taken."""
    started = time.monotonic()
    target = target or engine_environment_dir()
    if wheelhouse and not Path(wheelhouse).is_dir():
        raise SetupFailed(f"The wheelhouse {wheelhouse} is not a folder: choose the folder of wheels built with "
                          "scripts/build_wheelhouse.sh (or python -m engine wheelhouse), or leave it empty to install "
                          "from the package index.")
    target.parent.mkdir(parents=True, exist_ok=True)
    steps = Steps(feedback, target.parent / LOG_NAME)
    building = target.with_name(target.name + ".new")
    try:
        steps.say(f"== Engine set-up {time.strftime('%Y-%m-%d %H:%M:%S')}, log: {target.parent / LOG_NAME}")
        python = find_python(python)
        source = source or engine_source()
        flavour, why = choose_flavour(flavour, python, source)
        steps.say(f"Python: {python}; engine: {source}; onnxruntime flavour: {flavour} ({why})"
                  + (f"; offline from the wheelhouse {wheelhouse}" if wheelhouse else "; from the package index"))
        shutil.rmtree(building, ignore_errors=True)  # what a killed set-up left
        create, install, environment = install_commands(
            python, building, f"{ENGINE_DISTRIBUTION}[{flavour}] @ {Path(source).as_uri()}", wheelhouse)
        steps.run(create, 5, 15, environment)
        steps.run(install, 15, 90, environment)
        steps.check(building)
        swap_in(building, target)
        (target.parent / RECORD_NAME).write_text(json.dumps(
            {"engine": Path(source).name, "flavour": flavour, "python": python, "wheelhouse": wheelhouse}))
    except subprocess.CalledProcessError as error:
        shutil.rmtree(building, ignore_errors=True)
        raise failure(error, wheelhouse, flavour, target, steps) from None
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    finally:
        steps.close()
    seconds = round(time.monotonic() - started, 1)
    return {"python": str(environment_python(target)), "flavour": flavour, "seconds": seconds}


def outdated_engine(target: Path, wheel: Path | None) -> str:
    """Why the engine in the set-up environment ``target`` is not the plugin's (after a plugin update:
    the environment is kept, the engine it holds is older); '' when it is, or nothing was set up here."""
    record = target.parent / RECORD_NAME
    if wheel is None or not record.is_file() or not target.is_dir():
        return ""
    installed = json.loads(record.read_text()).get("engine")
    if installed == wheel.name:
        return ""
    return (f"The plugin was updated: it carries {wheel.name} but its engine environment holds {installed}. "
            "Run Engine set-up to update the engine (the environment is replaced only once the new one works).")


def swap_in(building: Path, target: Path) -> None:
    """Replace ``target`` by ``building``; the old environment goes only after the new one is in place."""
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    building.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def failure(error: subprocess.CalledProcessError, wheelhouse: str, flavour: str, target: Path,
            steps: Steps) -> SetupFailed:
    """The message for a failed step: a package the wheelhouse lacks, else the step's last lines."""
    output = error.output or ""
    kept = (f"The previous engine environment {target} is unchanged." if target.exists()
            else "No engine environment was created.")
    steps.say(f"FAILED (exit code {error.returncode}). {kept}")
    missing = next((match.group(1) for pattern in MISSING_PACKAGE_PATTERNS for match in [pattern.search(output)]
                    if match), None)
    if wheelhouse and missing:
        return SetupFailed(
            f"The wheelhouse {wheelhouse} lacks {missing}, which the engine needs (onnxruntime flavour {flavour}). "
            f"Build the wheelhouse again on a connected machine of this platform with `scripts/build_wheelhouse.sh "
            f"{wheelhouse} {flavour}` (or `python -m engine wheelhouse --out {wheelhouse} --flavour {flavour}`), or "
            f"add {missing}'s wheel to it. {kept}")
    if "ensurepip is not" in output:
        return SetupFailed(f"{error.cmd[0]} has no venv support: install it (Debian, Ubuntu: sudo apt install "
                           f"python3-venv) or choose another Python. {kept}")
    tail = "\n".join(output.strip().splitlines()[-15:])
    return SetupFailed(f"The engine set-up failed at `{' '.join(map(str, error.cmd[:4]))} …` (exit code "
                       f"{error.returncode}); its environment was removed. {kept} Read the log "
                       f"{target.parent / LOG_NAME}; a damaged wheel in a wheelhouse is named there: build the "
                       f"wheelhouse again.\n{tail}")
