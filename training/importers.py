"""``python -m training import``: a published checkpoint becomes a contract ONNX model with a card.

Each model family declares its importers (``training/<family>/importers.py``: ``IMPORTERS``; their
options are declared in ``training/__main__.py``, which starts without torch); this module is the
registry and the one import procedure they share:

1. the checkpoint is checked: it exists, its SHA-256 matches the expected one when one is given,
   and it loads as tensors only (``torch.load(weights_only=True)`` or safetensors: loading runs no code);
2. the family's importer rebuilds the reference architecture, loads the weights under their
   published parameter names (a missing or unexpected name is refused, never ignored) and writes
   the ONNX file(s) with their contract, checking onnxruntime against torch;
3. a model card (``<model>.md``) names the source, licence, citation, the checkpoint's SHA-256, the
   exact command and the measured parity.

Everything is written in a scratch folder beside the output and moved into place only when all of it
succeeded: a refused or failed import leaves no file behind.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnxruntime
import torch

from engine.contract import ModelContract, contract_from_metadata
from engine.model_catalogue import file_sha256


class ImportRefused(ValueError):
    """The checkpoint cannot be imported; the message names the problem and the fix."""


@dataclass(frozen=True)
class ImportedModel:
    """What an importer wrote into the scratch folder: ONNX files and their parity with torch."""

    paths: tuple[Path, ...]
    max_abs_diff: float
    architecture: str
    notes: tuple[str, ...] = ()  # limits and deviations from the reference, for the card


@dataclass(frozen=True)
class Importer:
    source: str  # the --source name
    family: str
    summary: str
    licence: str
    citation: str
    url: str  # where the authors publish the weights
    run: Callable[[Path, Path, argparse.Namespace, dict], ImportedModel] = field(repr=False)
    # run(checkpoint, out (inside the scratch folder), options, provenance) -> ImportedModel


def importers() -> dict[str, Importer]:
    """Every known source, by --source name."""
    from training.crop_maps import importers as crop_maps
    from training.hycot import importers as hycot
    from training.marine import importers as marine
    from training.scene_labels import importers as scene_labels
    from training.text_search import importers as text_search

    families = (marine, crop_maps, scene_labels, text_search, hycot)
    return {importer.source: importer for family in families for importer in family.IMPORTERS}


def import_model(source: str, checkpoint: Path, out: Path, options: argparse.Namespace,
                 sha256: str | None = None, command: str = "") -> dict:
    """Import ``checkpoint`` as ``out`` (plus its card); returns what was written and measured."""
    known = importers()
    if source not in known:
        raise ImportRefused(f"unknown source {source!r}; known sources: {', '.join(sorted(known))}")
    importer = known[source]
    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file() or checkpoint.stat().st_size == 0:
        raise ImportRefused(f"checkpoint {checkpoint} does not exist or is empty; give the downloaded file")
    measured = file_sha256(checkpoint)
    if sha256 and measured != sha256.lower():
        raise ImportRefused(
            f"checkpoint {checkpoint} has SHA-256 {measured}, but {sha256.lower()} was expected: the file is "
            "damaged, incomplete or a different release; download it again"
        )
    if out.suffix != ".onnx":
        raise ImportRefused(f"--out must name an .onnx file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    provenance = {
        "source": source, "paper": importer.citation, "licence": importer.licence, "published_at": importer.url,
        "checkpoint": checkpoint.name, "checkpoint_sha256": measured, "import_command": command,
        "training_data": f"as published by the authors ({importer.summary})",
    }
    with tempfile.TemporaryDirectory(prefix=".rsai-import-", dir=out.parent) as scratch:
        imported = importer.run(checkpoint, Path(scratch) / out.name, options, provenance)
        seconds = time.perf_counter() - started
        written = []
        for path in imported.paths:
            card = path.with_suffix(".md")
            card.write_text(model_card(path, importer, imported, measured, command, seconds))
            written.append((path, out.parent / path.name))
            written.append((card, out.parent / card.name))
        for scratch_path, final in written:  # the ONNX files and cards appear only once all are ready
            os.replace(scratch_path, final)
    return {
        "paths": [str(final) for _, final in written if final.suffix == ".onnx"],
        "cards": [str(final) for _, final in written if final.suffix == ".md"],
        "max_abs_diff": imported.max_abs_diff,
        "checkpoint_sha256": measured,
        "seconds": round(seconds, 2),
    }


def load_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The tensors of a published checkpoint: a ``.safetensors`` file, or a ``torch.save``d state
    dict (or a dict holding one under ``state_dict``/``model``), possibly inside a ``.zip`` as the
    authors distribute them; a ``module.`` prefix (DataParallel) is removed."""
    if checkpoint.suffix == ".safetensors":
        return _safetensors(checkpoint)
    payload: bytes | Path = checkpoint
    if zipfile.is_zipfile(checkpoint):
        with zipfile.ZipFile(checkpoint) as archive:
            names = archive.namelist()
            if not any(name.endswith("data.pkl") for name in names):  # a zip around the torch file
                members = [name for name in names if not name.endswith("/")]
                if len(members) != 1:
                    raise ImportRefused(
                        f"{checkpoint} is a zip with {len(members)} files ({', '.join(members[:5])}); "
                        "extract the checkpoint and give that file"
                    )
                payload = archive.read(members[0])
    try:
        loaded = torch.load(io.BytesIO(payload) if isinstance(payload, bytes) else payload,
                            map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, zip errors...
        raise ImportRefused(
            f"{checkpoint} is not a readable PyTorch checkpoint (truncated, damaged or another format: "
            f"{str(err).splitlines()[0][:200]}); download it again"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ImportRefused(f"{checkpoint} holds no state dict of tensors; give the checkpoint file the authors publish")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def _safetensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        loaded = load_file(checkpoint)
    except (SafetensorError, OSError) as err:
        raise ImportRefused(
            f"{checkpoint} is not a readable safetensors file (truncated or damaged: {str(err)[:200]}); "
            "download it again"
        ) from None
    if not loaded:
        raise ImportRefused(f"{checkpoint} holds no tensors; give the checkpoint file the authors publish")
    return loaded


def required_shapes(state: dict[str, torch.Tensor], required: tuple[str, ...], checkpoint: Path, expected: str,
                    published_in: str, fix: str) -> dict[str, tuple[int, ...]]:
    """The shapes of the ``required`` tensors of a published state dict; refuses ``checkpoint`` as not
    ``expected`` (as published in ``published_in``), naming the absent tensors and the ``fix``."""
    absent = [name for name in required if name not in state]
    if absent:
        raise ImportRefused(f"{checkpoint} is not {expected} ({published_in}; no {', '.join(absent)}); {fix}")
    return {name: tuple(state[name].shape) for name in required}


def layer_count(state: dict[str, torch.Tensor], layers: str) -> int:
    """How many numbered layers ``<layers>.<i>.`` (e.g. ``transformer.layers``) the state dict holds."""
    pattern = re.compile(rf"{re.escape(layers)}\.(\d+)\.")
    return len({match[1] for name in state if (match := pattern.match(name))})


def toolbox_name(key: str, rules: tuple[tuple[str, str], ...]) -> str:
    """The toolbox's name of a published parameter: each (pattern, replacement) of ``rules`` applied
    in order; a name no rule matches stays as it is, so that ``load_weights`` reports it."""
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def refuse_mismatches(checks: tuple[tuple[str, bool], ...], checkpoint: Path, expected: str) -> None:
    """Refuse ``checkpoint`` as not ``expected``, naming the problem of every (problem, found) check found."""
    problems = [problem for problem, found in checks if found]
    if problems:
        raise ImportRefused(f"{checkpoint} is not {expected} ({'; '.join(problems)})")


def load_weights(network: torch.nn.Module, state: dict[str, torch.Tensor], checkpoint: Path, expected: str) -> None:
    """Load ``state`` into ``network`` under exactly its parameter names and shapes."""
    own = network.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        def some(names):
            return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")

        problems = [f"{label}: {some(names)}" for label, names in (
            ("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if names]
        raise ImportRefused(
            f"{checkpoint} is not {expected} ({'; '.join(problems)}); check --source and the options "
            "(area, modality, backbone) against the file you downloaded"
        )
    network.load_state_dict(state)


def model_card(path: Path, importer: Importer, imported: ImportedModel, sha256: str, command: str,
               seconds: float) -> str:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    contract: ModelContract = contract_from_metadata(session.get_modelmeta().custom_metadata_map, path.name)
    outputs = contract.outputs
    fixed_size = all(isinstance(side, int) for side in session.get_inputs()[0].shape[2:])
    lines = [
        f"# {path.stem}",
        "",
        f"Imported from the authors' published weights: **{importer.summary}**.",
        "",
        f"- **Source:** `{importer.source}` ({importer.url})",
        f"- **Licence of the weights:** {importer.licence}",
        f"- **Cite:** {importer.citation}",
        "- **Trained on:** the authors' data, as published; this toolbox did not train it.",
        f"- **Architecture:** {imported.architecture}",
        f"- **Checkpoint SHA-256:** `{sha256}`",
        f"- **Reproduce:** `{command}`" if command else "- **Reproduce:** `python -m training import ...`",
        "",
        "## Contract",
        f"- task `{contract.task}`; bands {_listed(contract.band_names)}; normalisation mean "
        f"{_per_band(contract.mean)}, std {_per_band(contract.std)}; units: "
        f"{contract.input_units or 'as in the training data'}"
        if contract.bands else f"- task `{contract.task}`; units: {contract.input_units or 'as in the training data'}",
        *(f"- time series `{m.name}` (at most {m.max_dates} dates): bands {', '.join(b.name for b in m.bands)}; "
          f"normalisation mean {list(m.mean)}, std {list(m.std)}" for m in contract.modalities),
        f"- tile {contract.tile_size} px ({'fixed by the graph' if fixed_size else 'the graph takes any size'}), "
        f"overlap {contract.overlap} px"
        + (f", {contract.gsd_m} m pixels" if contract.gsd_m else ""),
        f"- outputs: {outputs.kind} {_listed(outputs.names)}"
        + (f" in {outputs.units} (value x {outputs.scale:g})" if outputs.units else ""),
        "",
        "## Measured here",
        f"- onnxruntime vs torch max |difference|: {imported.max_abs_diff:.2e}",
        f"- import time: {seconds:.1f} s",
        "",
        "## Limits",
        "- Accuracy is the authors' (see the paper); it was not re-measured here, as the test data is not "
        "available offline.",
        *(f"- {note}" for note in imported.notes),
        "",
    ]
    return "\n".join(lines)


def _listed(names: tuple[str, ...] | list[str]) -> str:
    """Band or output names for a card, the middle of a long list left out."""
    return ", ".join(names) if len(names) <= 24 else f"{names[0]}, {names[1]}, ... {names[-1]} ({len(names)} in all)"


def _per_band(values: tuple[float, ...]) -> str:
    """A per-band normalisation for a card: one value when every band has it."""
    return f"{values[0]:g} for every band" if len(set(values)) == 1 else str(list(values))
