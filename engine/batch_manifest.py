"""The record of a batch run in its output folder: ``batch-manifest.jsonl``, one JSON line per finished scene.

Each line: ``scene`` (its name), ``input``, ``output`` (the main output; ``outputs``: every file it wrote),
``status`` (done | failed), ``seconds``, ``device``,
``error`` (failed), ``worker`` (host:pid and Ray node that ran it), ``request`` (a hash of the task and its parameters)
and ``stamps`` (size and modification time of each input file); a search-index scene also its ``entry``.
Only the driver writes it (one writer), one line at a time, flushed: a killed run loses at most the line it
was writing, which the next run ignores. The last line of a scene counts. A scene is finished when that
line says done for the same request and input stamps and its outputs exist: the next run skips it. A failed
scene runs again unless failed scenes are to be skipped, and is reported either way.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engine.embedding_index import file_stamp
from engine.output_files import write_failed

MANIFEST_NAME = "batch-manifest.jsonl"


def request_key(task: str, params: dict) -> str:
    """What decides a scene's outputs apart from its files: the task and the run's parameters."""
    return hashlib.sha256(json.dumps([task, params], sort_keys=True).encode()).hexdigest()[:16]


def input_stamps(files: tuple[str, ...]) -> list:
    return [file_stamp(path)[1:] for path in files]


class BatchManifest:
    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / MANIFEST_NAME
        self.last: dict[str, dict] = {}  # scene name -> its last record
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # the line a killed run was writing
                if isinstance(record, dict) and "scene" in record:
                    self.last[record["scene"]] = record

    def finished(self, scene: str, request: str, stamps: list) -> bool:
        record = self.last.get(scene)
        return bool(record and record["status"] == "done" and record.get("request") == request
                    and record.get("stamps") == stamps and all(Path(p).exists() for p in outputs_of(record)))

    def failed(self, scene: str, request: str) -> dict | None:
        record = self.last.get(scene)
        return record if record and record["status"] == "failed" and record.get("request") == request else None

    def append(self, record: dict) -> None:
        try:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
        except OSError as err:
            raise write_failed(self.path, err) from None
        self.last[record["scene"]] = record


def outputs_of(record: dict) -> list[str]:
    return record.get("outputs") or []
