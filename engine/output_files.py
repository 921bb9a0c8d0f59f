"""How every engine output reaches the disk: nothing half-written, nothing lost, no silent failure.

An output is written under a temporary name beside its target (``.<stem>.rsai-partial-<pid>-<id>``),
closed, verified, and only then renamed into place. Any failure removes the temporary file and
raises an error that names the path, the free space left and the fix. The owner's process id in
the name lets the next run on the same output delete what a killed process (SIGKILL, power loss)
left behind, without touching the temporaries of a run still going. SIGTERM (and SIGINT, which
Python already turns into KeyboardInterrupt) end the CLI and the worker through the same cleanup.
"""
from __future__ import annotations

import os
import shutil
import signal
import uuid
from pathlib import Path

from engine.errors import EngineError

PARTIAL_MARKER = ".rsai-partial-"


class OutputWriteError(EngineError):
    """An output could not be written completely (disk full, quota, permissions, I/O error)."""


def partial_path(target: str | Path, suffix: str | None = None) -> Path:
    """The temporary name ``target`` is written under: hidden, beside it, owned by this process."""
    target = Path(target)
    suffix = target.suffix if suffix is None else suffix
    return target.with_name(f".{target.stem}{PARTIAL_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


def check_output_file(path: str | Path, kind: str, suffixes: tuple[str, ...]) -> None:
    """Refuse, before any work, a path that cannot become an output file of ``kind`` (named by
    ``suffixes``, the first one suggested): an existing folder, a missing or read-only folder, another
    file type."""
    target = Path(path)
    if target.is_dir():
        raise EngineError(f"output {path} is an existing folder; give a file path, e.g. "
                          f"{target / ('result' + suffixes[0])}")
    if not target.parent.is_dir():
        raise EngineError(f"output folder {target.parent} does not exist; create it or choose another output path")
    if not os.access(target.parent, os.W_OK):
        raise EngineError(f"output folder {target.parent} is not writable; choose another output path")
    if target.suffix.lower() not in suffixes:
        raise EngineError(f"output {path} must be a {kind} path ending in {suffixes[0]}")


def remove_stale_partials(target: str | Path) -> list[Path]:
    """Delete the temporaries of ``target`` whose process no longer runs; return what was deleted."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    stale = [p for p in target.parent.glob(f".{target.stem}{PARTIAL_MARKER}*") if is_stale_partial(p)]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def is_stale_partial(path: Path) -> bool:
    """Whether ``path`` is a temporary output left by a process that no longer runs."""
    if PARTIAL_MARKER not in path.name:
        return False
    owner = path.name.split(PARTIAL_MARKER, 1)[1].split("-", 1)[0]
    if not owner.isdigit():
        return True  # named before owners were recorded
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process
        return False
    return False


def write_failed(path: str | Path, reason: object) -> OutputWriteError:
    """The error for an output that could not be written: the path, the cause, the free space, the fix."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return OutputWriteError(
        f"could not write {path}: {reason} ({free} on the disk of {folder}). Free some space or choose a "
        "folder on another disk, then run again"
    )


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM): unwinds like Ctrl+C so that temporaries are removed."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated(f"stopped by signal {signal.Signals(signum).name}")


def stop_cleanly_on_sigterm() -> None:
    """Make SIGTERM unwind the main thread like SIGINT does, through every output's cleanup."""
    signal.signal(signal.SIGTERM, _raise_terminated)
