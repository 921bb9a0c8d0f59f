"""The catalogue of published models (``published_models.json``) and their download.

Nothing downloads unless asked: ``python -m engine models download ID``, the worker task
``download_model`` or the plugin's *Download published model*. A download streams into
``<file>.part``, resumes after a dropped connection with an HTTP Range request (on a later call too),
checks the SHA-256 and only then renames the file into place, so no half-written file ever carries
the final name. A mirror that holds the files under their catalogue file names replaces the
publishers' URLs when the environment variable ``RSAI_MODELS_MIRROR`` gives its base URL.

Standard library only; ``installed_models`` alone imports onnxruntime, when it is called.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shlex
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable

from engine.contract import FP16_SUFFIX, contract_from_metadata
from engine.errors import Cancelled, EngineError
from engine.output_files import partial_path, write_failed

CATALOGUE = Path(__file__).with_name("published_models.json")
MODELS_DIR_ENV = "RSAI_MODELS_DIR"
MIRROR_ENV = "RSAI_MODELS_MIRROR"
APP_FOLDER = "rsai-toolbox"
DOWNLOADS = "downloads"  # subfolder of the user models folder that receives checkpoints
TASKS = ("estimate_bathymetry", "classify_seabed", "classify_scenes", "map_crops", "search_text",
         "compress_hyperspectral")
SOURCES = ("magicbathynet-bathymetry", "magicbathynet-seabed-unet", "magicbathynet-seabed-segformer",
           "reben", "open-clip", "tsvit-pastis",
           "hycot")  # `python -m training import --source` (tests keep them in step)
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
CHUNK_BYTES = 1 << 16
UNKNOWN_SIZE_REPORT_BYTES = 1 << 20  # without a Content-Length, progress text every MiB
USER_AGENT = "rsai-toolbox-model-download"
CARD_SUMMARY_CHARS = 400  # installed_models: a card's title and first paragraph, cut to this

Progress = Callable[[float, str], None]
IsCancelled = Callable[[], bool]


@dataclass(frozen=True)
class PublishedModel:
    """One catalogue entry: where a checkpoint is published and how the toolbox imports it."""

    id: str
    family: str
    task: str  # the engine task that runs the imported model
    title: str
    source: str  # ``python -m training import --source``
    import_options: dict  # further import arguments, e.g. {"area": "agia_napa", "modality": "s2"}
    url: str  # the file itself
    page: str  # where a person can read about it and download it by hand
    file_name: str
    licence: str
    citation: str
    size_bytes: int | None
    sha256: str | None
    checksum_note: str  # where size and SHA-256 come from, or why they are unknown

    def import_command(self, checkpoint: Path, out: Path) -> str:
        options = (f"--{key.replace('_', '-')} {shlex.quote(str(value))}" for key, value in self.import_options.items())
        return " ".join(("python -m training import", f"--source {self.source}",
                         f"--checkpoint {shlex.quote(str(checkpoint))}", f"--out {shlex.quote(str(out))}", *options))


NULLABLE = ("size_bytes", "sha256")  # null where unknown
FIELD_KINDS = {field.name: {"import_options": dict, "size_bytes": int}.get(field.name, str)
               for field in fields(PublishedModel)}


def load_catalogue(path: str | Path = CATALOGUE) -> list[PublishedModel]:
    """The catalogue's entries, every one validated; any problem is an EngineError naming the entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise EngineError(f"cannot read the model catalogue {path} ({err.strerror}); reinstall the toolbox") from None
    except json.JSONDecodeError as err:
        raise EngineError(f"the model catalogue {path} is not valid JSON (line {err.lineno}: {err.msg}); "
                          "restore it from the toolbox") from None
    entries = data.get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise EngineError(f"the model catalogue {path} must be a JSON object with a 'models' list")
    models, problems = [], []
    for number, entry in enumerate(entries, 1):
        label = entry.get("id", "without id") if isinstance(entry, dict) else "not an object"
        try:
            models.append(_published_model(entry))
        except ValueError as problem:
            problems.append(f"entry {number} ({label}): {problem}")
    ids = [model.id for model in models]
    duplicates = sorted({model_id for model_id in ids if ids.count(model_id) > 1})
    if duplicates:
        problems.append(f"ids used more than once: {', '.join(duplicates)}")
    if problems:
        raise EngineError(f"the model catalogue {path} is invalid: " + "; ".join(problems)
                          + ". Correct these entries or restore the file from the toolbox.")
    return models


def _published_model(entry) -> PublishedModel:
    if not isinstance(entry, dict):
        raise ValueError("an entry must be a JSON object")
    missing, unknown = sorted(set(FIELD_KINDS) - set(entry)), sorted(set(entry) - set(FIELD_KINDS))
    if missing or unknown:
        raise ValueError(f"missing fields {missing}, unknown fields {unknown}")
    problems = [f"{name} must be {'null or ' if name in NULLABLE else ''}{kind.__name__}"
                for name, kind in FIELD_KINDS.items()
                if not (isinstance(entry[name], kind) and not isinstance(entry[name], bool)
                        or name in NULLABLE and entry[name] is None)]
    if problems:
        raise ValueError(", ".join(problems))
    if not all(entry[name].strip() for name, kind in FIELD_KINDS.items() if kind is str and entry[name] is not None):
        problems.append("text fields must not be empty")
    if entry["task"] not in TASKS:
        problems.append(f"task must be one of {TASKS}")
    if entry["source"] not in SOURCES:
        problems.append(f"source must be one of {SOURCES}")
    if not entry["url"].startswith("https://") or not entry["page"].startswith("https://"):
        problems.append("url and page must be https:// addresses")
    if Path(entry["file_name"]).name != entry["file_name"] or entry["file_name"].startswith("."):
        problems.append("file_name must be a plain file name")
    if entry["sha256"] is not None and not SHA256_HEX.fullmatch(entry["sha256"]):
        problems.append("sha256 must be null or 64 lower-case hexadecimal digits")
    if entry["size_bytes"] is not None and entry["size_bytes"] <= 0:
        problems.append("size_bytes must be null or positive")
    if not all(isinstance(value, (str, int)) for value in entry["import_options"].values()):
        problems.append("import_options values must be strings or integers")
    if problems:
        raise ValueError(", ".join(problems))
    return PublishedModel(**entry)


def find_model(model_id: str, path: str | Path = CATALOGUE) -> PublishedModel:
    models = load_catalogue(path)
    for model in models:
        if model.id == model_id:
            return model
    raise EngineError(f"no published model {model_id!r} in the catalogue; known ids: "
                      f"{', '.join(model.id for model in models)} (python -m engine models list)")


def user_models_dir() -> Path:
    """The per-user models folder: ``RSAI_MODELS_DIR``, else the platform's per-user data folder
    (~/.local/share or $XDG_DATA_HOME on Linux, %APPDATA% on Windows, ~/Library/Application Support
    on macOS) / rsai-toolbox/models."""
    if os.environ.get(MODELS_DIR_ENV):
        return Path(os.environ[MODELS_DIR_ENV]).expanduser()
    return user_app_dir("data") / "models"


USER_FOLDERS = {  # kind: (Windows variable and fallback, macOS folder, XDG variable and fallback), under home
    "data": (("APPDATA", "AppData/Roaming"), "Library/Application Support", ("XDG_DATA_HOME", ".local/share")),
    "cache": (("LOCALAPPDATA", "AppData/Local"), "Library/Caches", ("XDG_CACHE_HOME", ".cache")),
}


def user_app_dir(kind: str) -> Path:
    """The toolbox's folder in the platform's per-user ``kind`` ("data" or "cache") folder."""
    windows, mac, xdg = USER_FOLDERS[kind]
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get(windows[0]) or home / windows[1])
    elif sys.platform == "darwin":
        base = home / mac
    else:
        base = Path(os.environ.get(xdg[0]) or home / xdg[1])
    return base / APP_FOLDER


class _Interrupted(Exception):
    """The transfer stopped before the end (network error, server error): worth retrying."""


def download(url: str, destination: str | Path, sha256: str | None = None, progress: Progress | None = None,
             cancelled: IsCancelled | None = None, retries: int = 3, timeout_s: float = 30.0,
             retry_pause_s: float = 2.0) -> dict:
    """Download ``url`` to ``destination`` through ``<destination>.part``, resuming it after up to
    ``retries`` interruptions in a row; returns path, measured SHA-256, whether it was verified
    against ``sha256`` and the size. A mismatch or a cancel deletes the partial file and raises;
    after the last retry the partial file is kept for a later call to resume."""
    destination = Path(destination)
    part = destination.with_name(destination.name + ".part")
    cancelled = cancelled or (lambda: False)
    report = _Reporter(progress)
    expected = sha256.lower() if sha256 else None
    if expected and destination.is_file() and file_sha256(destination) == expected:
        report(1.0, f"{destination.name} is already downloaded and verified")
        return _downloaded(destination, expected, verified=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        _transfer_with_retries(url, part, report, cancelled, retries, timeout_s, retry_pause_s)
    except Cancelled:
        part.unlink(missing_ok=True)
        raise
    report(1.0, f"checking the SHA-256 of {destination.name}")
    measured = file_sha256(part)
    if expected and measured != expected:
        part.unlink()
        raise EngineError(
            f"the file downloaded from {url} has SHA-256 {measured}, not the published {expected}: it is "
            "damaged or not the published file, and was deleted. Download it again; if the SHA-256 differs "
            "again, the publisher has changed the file: compare it on the model's page before using it")
    os.replace(part, destination)
    return _downloaded(destination, measured, verified=expected is not None)


def _downloaded(path: Path, sha256: str, verified: bool) -> dict:
    return {"path": str(path), "sha256": sha256, "verified": verified, "size_bytes": path.stat().st_size}


class _Reporter:
    """Passes progress on and remembers the latest fraction, which retry messages repeat."""

    def __init__(self, progress: Progress | None):
        self.progress, self.fraction = progress, 0.0

    def __call__(self, fraction: float, text: str) -> None:
        self.fraction = fraction
        if self.progress is not None:
            self.progress(fraction, text)


def _transfer_with_retries(url: str, part: Path, report: _Reporter, cancelled: IsCancelled, retries: int,
                           timeout_s: float, retry_pause_s: float) -> None:
    interruptions = 0
    while True:
        try:
            _transfer(url, part, report, cancelled, timeout_s)
            return
        except _Interrupted as why:
            interruptions += 1
            kept = part.stat().st_size if part.is_file() else 0
            if interruptions > retries:
                raise EngineError(
                    f"downloading {url} failed {interruptions} times in a row (last: {why}). {part} keeps the "
                    f"{kept} bytes received: run the download again to resume it, or download the file "
                    "by hand and import it") from None
            report(report.fraction, f"{why}; retrying from byte {kept} ({interruptions} of {retries})")
        deadline = time.monotonic() + retry_pause_s * interruptions
        while time.monotonic() < deadline:
            if cancelled():
                raise Cancelled("download cancelled: the partial file was deleted")
            time.sleep(min(0.1, retry_pause_s))


def _transfer(url: str, part: Path, progress: Progress, cancelled: IsCancelled, timeout_s: float) -> None:
    """One request: append to ``part`` from its current size (restart when the server ignores the
    Range request); raises _Interrupted when the transfer stops short."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT, **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the partial file is not a prefix the server knows
            part.unlink()
            raise _Interrupted("the server refused to resume the partial file, which was deleted") from None
        if err.code >= 500 or err.code == 429:
            raise _Interrupted(f"the server answered HTTP {err.code} {err.reason}") from None
        raise EngineError(f"{url} answered HTTP {err.code} {err.reason}: the file is not available there "
                          "(moved, or access refused). Check the model's page, or download the file by hand "
                          "and import it") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _Interrupted(f"cannot reach {url} ({getattr(err, 'reason', err)})") from None
    with response:
        if response.headers.get_content_type() == "text/html":
            raise EngineError(
                f"{url} answered with a web page, not the model file (the site asks for a confirmation or a "
                "login). Open the model's page in a browser, download the file there and import it")
        resumed = response.status == 206
        if resumed and _range_start(response) != offset:
            part.unlink()
            raise _Interrupted("the server resumed at another byte than asked; starting again")
        start = offset if resumed else 0
        if offset and not resumed:
            progress(0.0, "the server cannot resume downloads; starting again from the beginning")
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        _receive(response, part, start, total, progress, cancelled)


def _range_start(response) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _receive(response, part: Path, start: int, total: int | None, progress: Progress,
             cancelled: IsCancelled) -> None:
    received, reported = start, -1.0
    with open(part, "ab" if start else "wb") as stream:
        while True:
            if cancelled():
                raise Cancelled("download cancelled: the partial file was deleted")
            try:
                chunk = response.read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as err:
                raise _Interrupted(f"the connection broke after {received} bytes ({err})") from None
            if not chunk:
                break
            try:
                stream.write(chunk)
            except OSError as err:  # the partial file stays: the next download resumes it
                raise write_failed(part, err) from None
            received += len(chunk)
            if total:
                fraction = min(received / total, 1.0)
                if fraction - reported >= 0.01 or received == total:
                    progress(fraction, f"{received / 1e6:.1f} of {total / 1e6:.1f} MB")
                    reported = fraction
            elif received // UNKNOWN_SIZE_REPORT_BYTES != (received - len(chunk)) // UNKNOWN_SIZE_REPORT_BYTES:
                progress(0.0, f"{received / 1e6:.1f} MB")
    if total is not None and received < total:
        raise _Interrupted(f"the connection closed after {received} of {total} bytes")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_published(model: PublishedModel, folder: str | Path | None = None, progress: Progress | None = None,
                       cancelled: IsCancelled | None = None) -> dict:
    """Download ``model``'s checkpoint into ``folder`` (default: the user models folder's
    downloads/), record where it came from beside it (``<file>.json``) and return the download with
    the import command to run next."""
    folder = Path(folder) if folder else user_models_dir() / DOWNLOADS
    mirror = os.environ.get(MIRROR_ENV)
    url = f"{mirror.rstrip('/')}/{model.file_name}" if mirror else model.url
    result = download(url, folder / model.file_name, model.sha256, progress, cancelled)
    record = {"id": model.id, "url": url, "page": model.page, "licence": model.licence, "citation": model.citation,
              **result, "downloaded": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    _write_atomically(folder / f"{model.file_name}.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    out = user_models_dir() / f"{model.id}.onnx"
    result = {"id": model.id, "url": url, "licence": model.licence, **result,
              "import_command": model.import_command(Path(result["path"]), out)}
    if not result["verified"]:
        result["warnings"] = [
            f"{model.id} has no published SHA-256, so the download could not be verified (its SHA-256 is "
            f"{result['sha256']}); compare it with the publisher's if they give one"]
    return result


def _write_atomically(path: Path, text: str) -> None:
    scratch = partial_path(path)
    try:
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, path)
    except OSError as err:
        raise write_failed(path, err) from None
    finally:
        scratch.unlink(missing_ok=True)


def models_folders() -> dict[str, Path]:
    """Where installed models live, by origin: the shipped models_onnx/ and the user models folder."""
    from engine.runtime import MODELS_DIR

    return {"shipped": MODELS_DIR, "user": user_models_dir()}


def installed_model(name: str, named_by: str) -> Path:
    """The installed model file called ``name``, a name read from a data file (``named_by``), which
    is not trusted to choose a path: a plain ``.onnx`` file name, looked up in the shipped folder,
    then in the user models folder and its subfolders. Anything else is refused."""
    folders = models_folders()
    places = f"{folders['shipped']} or {folders['user']}"
    if PurePosixPath(name).name != name or PureWindowsPath(name).name != name or not name.endswith(".onnx"):
        raise EngineError(
            f"{named_by} names the model {name!r}, which is not a plain .onnx file name: a model named by a data "
            f"file must be an installed model ({places}) and is never looked for elsewhere. If you trust the "
            "file, give that model yourself (the model parameter)"
        )
    user = folders["user"]
    in_subfolders = sorted(path for path in user.rglob("*.onnx") if path.name == name) if user.is_dir() else []
    for candidate in [folders["shipped"] / name, user / name, *in_subfolders]:
        if candidate.is_file():
            return candidate
    raise EngineError(f"{named_by} names the model {name}, which is not installed ({places}); put it in the user "
                      "models folder, or give the model file yourself (the model parameter)")


def installed_models() -> dict:
    """The ``.onnx`` models in the shipped folder (models_onnx/) and the user models folder, grouped
    by their contract's task; a file that onnxruntime cannot read or that has no contract is left
    out with a warning, a model's fp16 variant (``*.fp16.onnx``, run in its place on CUDA) silently."""
    import onnxruntime as ort

    folders = models_folders()
    tasks: dict[str, list[dict]] = {}
    warnings, seen = [], set()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # only the metadata is read
    ort.set_default_logger_severity(4)  # a corrupt file is reported below, not dumped by onnxruntime
    try:
        for origin, folder in folders.items():
            paths = sorted(folder.glob("*.onnx" if origin == "shipped" else "**/*.onnx")) if folder.is_dir() else []
            for path in paths:
                if path.resolve() in seen or path.name.endswith(FP16_SUFFIX):
                    continue
                seen.add(path.resolve())
                try:
                    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                    contract = contract_from_metadata(session.get_modelmeta().custom_metadata_map, path.name)
                except Exception as err:  # onnxruntime raises its own exception types for corrupt files
                    warnings.append(f"{path} was skipped: {str(err).splitlines()[0][:200]}")
                    continue
                tasks.setdefault(contract.task, []).append({
                    "name": contract.name, "path": str(path), "origin": origin,
                    "inputs": [f"{m.name} time series" for m in contract.modalities] or contract.band_names,
                    "summary": card_summary(path)})
    finally:
        ort.set_default_logger_severity(2)
    return {"folders": {origin: str(folder) for origin, folder in folders.items()}, "tasks": tasks,
            "warnings": warnings}


def card_summary(model: Path) -> str:
    """The title and first paragraph of the model's card, as plain text ('' without a card). The
    card is ``<model>.md`` beside the model, else the card of its pair (``hycot_cr8_enmap_sim.md``
    for ``hycot_cr8_enmap_sim_encoder.onnx``): the longest card name the model's name begins with."""
    cards = [card for card in model.parent.glob("*.md") if model.stem == card.stem
             or model.stem.startswith(card.stem + "_")]
    if not cards:
        return ""
    lines = max(cards, key=lambda card: len(card.stem)).read_text(encoding="utf-8", errors="replace").splitlines()
    title = next((number for number, line in enumerate(lines) if line.startswith("# ")), None)
    if title is None:
        return ""
    paragraph = []
    for line in lines[title + 1:]:
        if line.strip():
            paragraph.append(line.strip())
        elif paragraph:
            break
    text = " ".join([lines[title][2:].strip(), *paragraph])
    text = text.replace("**", "").replace("`", "")
    return text if len(text) <= CARD_SUMMARY_CHARS else text[:CARD_SUMMARY_CHARS - 1].rstrip() + "…"
