"""Model contracts from options: for ONNX models made elsewhere, with or without a contract.

``contract_with_options`` applies Deepness-like options (bands, scale, mean/std, tile size,
classes, output kind, activation) over the model's own contract (ours or Deepness's), and fills
what neither gives from what the graph fixes (band count, tile size, output channels). The
``run_onnx`` task runs a model with it; ``set_contract`` (``python -m engine contract set``) writes
the result into the ONNX file.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from engine.contract import (COLOUR, OUTPUT_KINDS, Band, ModelContract, Outputs, contract_from_metadata,
                             has_contract)
from engine.errors import EngineError, ModelContractError
from engine.onnx_metadata import write_metadata
from engine.pipeline import IsCancelled, Progress
from engine.runtime import Model, static
from engine.tasks.parameters import PATH, ListOf

CONTRACT_OPTIONS = {
    "band_names": (ListOf(str), False),  # the model's input bands in order, matched against band descriptions
    "mean": (ListOf(float), False),  # one value, or one per band, of values already divided by scale
    "std": (ListOf(float), False),
    "scale": (float, False),  # raw values are divided by it first (Deepness: 255)
    "tile_size": (int, False),
    "overlap": (int, False),
    "classes": (ListOf(str), False),  # "name" or "name:#rrggbb" per output channel
    "output_kind": (str, False),  # classes, regression or embedding
    "activation": (str, False),  # none, softmax or sigmoid (engine.contract.ACTIVATIONS)
    "units": (str, False),
    "test_time_augmentations": (str, False),  # none, flips or dihedral (engine.contract.TEST_TIME_AUGMENTATIONS)
}
NORMALISATION = ("mean", "std", "scale")
DEFAULT_OVERLAP_PERCENT = 15  # as Deepness


def contract_with_options(model: Model, options: dict) -> ModelContract:
    """``model``'s contract with ``options`` (CONTRACT_OPTIONS keys) applied; without a contract
    in the model, one made from the options and its graph. Mean, std and scale replace the whole
    normalisation when any is given: inputs become (raw / scale - mean) / std. ``options`` have the
    forms CONTRACT_OPTIONS declares (checked by engine.tasks.validate)."""
    base = contract_from_metadata(model.metadata, model.name) if has_contract(model.metadata) else None
    given = {key: value for key, value in options.items() if key in CONTRACT_OPTIONS and value is not None}
    inputs, outputs = model.session.get_inputs(), model.session.get_outputs()
    image = inputs[0].shape if len(inputs) == 1 and len(inputs[0].shape) == 4 else [None] * 4
    graph_bands, graph_tile = static(image[1]), static(image[2]) or static(image[3])
    graph_channels = static(outputs[0].shape[1]) if len(outputs[0].shape) >= 2 else None
    missing = []

    per_band = [len(given[key]) for key in ("mean", "std") if len(given.get(key, ())) > 1]
    count = len(given["band_names"]) if "band_names" in given else (
        per_band[0] if per_band else len(base.bands) if base else graph_bands)
    if count is None:
        missing.append("the band count (band names, or mean and std with one value per band; the graph "
                       "does not fix it)")
    kind = given.get("output_kind") or (base.outputs.kind if base else None)
    if kind is None:
        missing.append("the output kind (classes, regression or embedding)")
    tile = given.get("tile_size") or (base.tile_size if base else graph_tile)
    if tile is None:
        missing.append("the tile size (the graph does not fix it)")
    same_outputs = base is not None and base.outputs.kind == kind
    if "classes" not in given and not same_outputs and graph_channels is None:
        missing.append("the classes, one name per output channel (the graph does not fix their number)")
    if missing:
        needs = f"{model.name}{': the' if base else ' has no model contract, so the'} engine needs"
        advice = "" if base else ", with the normalisation the model was trained with (scale, mean, std)"
        raise ModelContractError(
            f"{needs} {'; '.join(missing)}. Give {'them' if len(missing) > 1 else 'it'} as options of "
            f"'Run ONNX model' or `python -m engine contract set`{advice}."
        )
    if kind not in OUTPUT_KINDS:
        raise ModelContractError(f"output kind must be one of {', '.join(OUTPUT_KINDS)}, got {kind!r}")

    if "band_names" in given:
        bands = tuple(Band(str(name)) for name in given["band_names"])
    elif base and len(base.bands) == count:
        bands = base.bands
    else:
        bands = tuple(Band(f"band{i + 1}") for i in range(count))
    if base and len(base.bands) == count and not any(key in given for key in NORMALISATION):
        mean, std = base.mean, base.std
    else:
        scale = float(given.get("scale", 1.0))
        if scale <= 0:
            raise ModelContractError(f"scale must be > 0 (raw values are divided by it), got {scale}")
        mean = tuple(v * scale for v in _per_band("mean", given.get("mean", [0.0]), count))
        std = tuple(v * scale for v in _per_band("std", given.get("std", [1.0]), count))
    if "overlap" in given:
        overlap = given["overlap"]
    elif base and tile == base.tile_size:
        overlap = base.overlap
    else:
        overlap = tile * DEFAULT_OVERLAP_PERCENT // 100

    if "classes" in given:
        names, colors = _classes(given["classes"])
    elif same_outputs:
        names, colors = base.outputs.names, base.outputs.colors
    else:
        prefix = {"classes": "class", "regression": "value", "embedding": "dim"}[kind]
        names, colors = tuple(f"{prefix}_{i}" for i in range(graph_channels)), ()
    settings = {"names": names, "colors": colors, **{k: given[k] for k in ("units", "activation") if k in given}}
    outputs = replace(base.outputs, **settings) if same_outputs else Outputs(kind=kind, **settings)
    provenance = dict(base.provenance) if base else {}
    if kind == "embedding" and not (same_outputs and "classes" not in given):  # one name per dimension
        provenance["dim"] = len(names)
    try:
        return ModelContract(
            task=base.task if base else "run_onnx", name=base.name if base else Path(model.path).stem,
            bands=bands, mean=mean, std=std, outputs=outputs, tile_size=tile, overlap=overlap,
            gsd_m=base.gsd_m if base else None, batch_size=base.batch_size if base else 8,
            input_units=base.input_units if base else "", provenance=provenance,
            modalities=base.modalities if base else (),
            test_time_augmentations=given.get("test_time_augmentations",
                                              base.test_time_augmentations if base else "none"),
            input_statistics=base.input_statistics if base and bands == base.bands else {},
            fully_convolutional=base.fully_convolutional if base else {},  # of the graph, whatever the options
        )
    except ModelContractError as bad:
        raise ModelContractError(f"{model.name}: {bad}. Correct the options of 'Run ONNX model' or "
                                 "`python -m engine contract set`.") from None


def _per_band(option: str, values: list, count: int) -> tuple[float, ...]:
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise ModelContractError(f"{option} has {len(values)} values for {count} bands; give one, or one per band")
    return tuple(float(v) for v in values)


def _classes(items: list) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """["water:#0000ff", "land:#00ff00"] -> names and colours (none when no class has one)."""
    names, colors = [], []
    for item in map(str, items):
        name, _, colour = item.rpartition(":")
        if not (name and COLOUR.fullmatch(colour)):
            name, colour = item, ""
        names.append(name.strip())
        colors.append(colour)
    if any(colors) and not all(colors):
        raise ModelContractError(
            "give a colour to every class or to none, like water:#1f78b4 land:#33a02c (got "
            f"{' '.join(items)})"
        )
    return tuple(names), tuple(colors) if all(colors) else ()


class SetContract:
    """Write a contract (``contract_with_options``) into an ONNX file's metadata: in place, or into
    ``out`` leaving the model untouched. The written file is loaded (graph checks included) before
    it replaces anything, so a contract that does not fit the graph is refused and nothing written."""

    name = "set_contract"
    params = {"model": (PATH, True), "out": (PATH, False), "task": (str, False), **CONTRACT_OPTIONS}

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        source = Path(params["model"])
        if not source.is_file():
            raise EngineError(f"model file {source} does not exist")
        contract = Model(source, "cpu", contract=lambda model: self.contract(model, params)).contract
        target = params.get("out") or str(source)

        def check(written: str) -> None:
            if Model(written, "cpu").contract != contract:
                raise EngineError(f"the contract written to {target} reads back differently; nothing was written")

        write_metadata(source, contract.to_onnx_metadata(), target, check)
        return {"model": target, "contract": asdict(contract)}

    @staticmethod
    def contract(model: Model, params: dict) -> ModelContract:
        contract = contract_with_options(model, params)
        return replace(contract, task=params["task"]) if params.get("task") else contract
