"""The model contract: what an ONNX model needs and produces, stored in its own metadata.

training/ writes it at export (``ModelContract.to_onnx_metadata``); the engine reads and validates
it on load (``load_contract``) and refuses a model whose contract it cannot satisfy with a message
that says what is missing. It is the single definition shared by both sides.

ONNX graph convention: one float32 input ``[batch, bands, height, width]`` (already normalised:
``(value - mean) / std`` per band) and one float32 output ``[batch, channels, height, width]``:
one channel per regression quantity, or per-class scores. Class scores reach every task as
probabilities: the graph gives them (``outputs.activation`` "none"), or logits to which the engine
applies softmax over the channels ("softmax") or a sigmoid per channel ("sigmoid", multi-label).

Deepness-format models (metadata keys ``model_type``, ``class_names``, ``resolution``,
``tiles_size``/``tile_size``, ``standardization_mean``/``standardization_std``) are mapped onto the
contract so that models made for that QGIS plugin run here too.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.errors import ModelContractError
from engine.input_distribution import input_statistics_problems

CONTRACT_KEY = "rsai_contract"
TOKENIZER_KEY = "rsai_tokenizer"  # text encoders: the HuggingFace tokenizers JSON that makes their inputs
# A model's fp16 variant sits beside it as <stem>.fp16.onnx (training/fp16_variant.py writes it, the engine runs
# it on CUDA): the same contract, and under FP16_KEY its parity with the float32 file and that file's graph SHA-256.
FP16_KEY = "rsai_fp16"
FP16_SUFFIX = ".fp16.onnx"
CONTRACT_VERSION = 1
OUTPUT_KINDS = ("regression", "classes", "embedding")  # embedding: L2-normalised vectors of provenance["dim"]
ACTIVATIONS = ("none", "softmax", "sigmoid")  # applied by the engine to a classes output (Outputs.activation)
TEST_TIME_AUGMENTATIONS = ("none", "flips", "dihedral")  # views of a tile the model allows (engine/uncertainty.py)
COLOUR = re.compile(r"#[0-9a-fA-F]{6}")  # a class colour, "#rrggbb"
STORED_CONTRACT_FIX = (f"Re-export the model (`python -m training export`), or correct the field in its "
                       f"{CONTRACT_KEY!r} metadata")


@dataclass(frozen=True)
class Band:
    """One model input band: canonical name, accepted aliases (matched against band descriptions)."""

    name: str
    aliases: tuple[str, ...] = ()
    description: str = ""

    def matches(self, label: str) -> bool:
        wanted = {self.name.lower(), *(a.lower() for a in self.aliases)}
        return label.strip().lower() in wanted


@dataclass(frozen=True)
class Modality:
    """One input time series of a multi-temporal model (e.g. Sentinel-2, Sentinel-1).

    ONNX inputs per modality ``m``: ``m`` float32 [batch, dates, bands, height, width] normalised
    like single images (invalid pixels 0); ``m_doy`` int64 [batch, dates] day of year 1..366
    (0 for padding dates); ``m_mask`` float32 [batch, dates, height, width], 1 where valid.
    """

    name: str
    bands: tuple[Band, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_dates: int  # dates the model was trained with at most; longer series are subsampled


@dataclass(frozen=True)
class Outputs:
    kind: str  # "regression" or "classes"
    names: tuple[str, ...]  # regression quantities or class names, one per output channel
    colors: tuple[str, ...] = ()  # "#rrggbb" per class
    units: str = ""
    scale: float = 1.0  # physical value = network output * scale + offset
    offset: float = 0.0
    description: str = ""
    activation: str = "none"  # one of ACTIVATIONS: "none" when the graph outputs probabilities

    @property
    def channels(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class ModelContract:
    task: str
    name: str
    bands: tuple[Band, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    outputs: Outputs
    tile_size: int
    overlap: int
    gsd_m: float | None = None  # ground sampling distance the model was trained at (metres)
    batch_size: int = 8
    input_units: str = ""  # what raw pixel values mean, e.g. "surface reflectance x 10000"
    provenance: dict = field(default_factory=dict)  # paper, training_data, command, metrics
    modalities: tuple[Modality, ...] = ()  # multi-temporal models: their inputs (bands stays empty)
    # water tasks, from the training data (engine/quality.py): "depth_range_m" [low, high] and
    # "deep_water" {band: deep-water signal in raw input units}
    quality: dict = field(default_factory=dict)
    # views of a tile whose outputs, turned back, should agree (engine/uncertainty.py): "dihedral" (flips and
    # 90-degree rotations, as the toolbox's models are trained), "flips", or "none"
    test_time_augmentations: str = "none"
    # the training inputs per band in raw units, for the out-of-distribution flag (engine/input_distribution.py)
    input_statistics: dict = field(default_factory=dict)
    # a fully convolutional graph (training/fully_convolutional.py), run at the largest tile a memory budget
    # allows (engine/tile_plan.py): {"receptive_radius": px each side, "size_multiple": total stride,
    # "activation_bytes_per_px": peak model memory per input pixel}; empty for a model of fixed tile size
    fully_convolutional: dict = field(default_factory=dict)
    version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        problems = (self._input_problems() + self._output_problems() + self._run_problems()
                    + self._quality_problems())
        if problems:
            raise ModelContractError(f"invalid model contract for {self.name!r}: " + "; ".join(problems))

    def _input_problems(self) -> list[str]:
        problems = []
        if not self.bands and not self.modalities:
            problems.append("'bands' is empty: list the model's input bands")
        for label, bands, mean, std in [("", self.bands, self.mean, self.std),
                                        *((f"modality {m.name}: ", m.bands, m.mean, m.std) for m in self.modalities)]:
            if len(mean) != len(bands) or len(std) != len(bands):
                problems.append(
                    f"{label}normalisation has {len(mean)} means and {len(std)} stds for {len(bands)} bands; "
                    "give one mean and one std per band"
                )
            if not all(math.isfinite(v) for v in mean):
                problems.append(f"{label}mean is {list(mean)}; every mean must be a finite number")
            if not all(math.isfinite(s) and s > 0 for s in std):
                problems.append(f"{label}std is {list(std)}; every std must be a finite number > 0")
            names = [b.name for b in bands]
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                problems.append(f"{label}bands list {', '.join(map(repr, twice))} more than once; "
                                "give each input band once, in the model's input order")
        if self.modalities:  # time series: one record per modality, of single-date pixels
            sizes = {modality.name: len(modality.bands) for modality in self.modalities}
            for name, statistics in self.input_statistics.items():
                if name not in sizes or not isinstance(statistics, dict):
                    problems.append(f"input_statistics[{name!r}] must be the record of one of the modalities "
                                    f"{sorted(sizes)}")
                else:
                    problems += [f"{name}: {problem}" for problem in input_statistics_problems(statistics, sizes[name])]
                    threshold = statistics.get("series_distance_threshold")
                    if not (isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0):
                        problems.append(f"input_statistics[{name!r}].series_distance_threshold is {threshold!r}; give "
                                        "the distance calibrated on the median over dates, a number > 0")
        else:
            problems += input_statistics_problems(self.input_statistics, len(self.bands))
        for modality in self.modalities:
            if not modality.bands:
                problems.append(f"modality {modality.name}: 'bands' is empty")
            if modality.max_dates < 1:
                problems.append(f"modality {modality.name}: max_dates is {modality.max_dates}; it must be a "
                                "whole number >= 1 (the most dates the model was trained with)")
        return problems

    def _output_problems(self) -> list[str]:
        problems = []
        outputs = self.outputs
        if outputs.kind not in OUTPUT_KINDS:
            problems.append(f"outputs.kind must be one of {OUTPUT_KINDS}, got {outputs.kind!r}")
        if outputs.channels < 1:
            problems.append("outputs.names is empty: give one name per output channel")
        if outputs.colors and len(outputs.colors) != outputs.channels:
            problems.append("outputs.colors must give one colour per class")
        bad_colours = [c for c in outputs.colors if not COLOUR.fullmatch(str(c))]
        if bad_colours:
            problems.append(f"outputs.colors has {bad_colours[:3]}; write each colour as '#rrggbb'")
        if outputs.activation not in ACTIVATIONS:
            problems.append(f"outputs.activation must be one of {ACTIVATIONS}, got {outputs.activation!r}")
        elif outputs.activation != "none" and outputs.kind != "classes":
            problems.append(f"outputs.activation {outputs.activation!r} applies to class scores only; "
                            f"a {outputs.kind} output needs 'none'")
        for name in ("scale", "offset"):
            value = getattr(outputs, name)
            if not math.isfinite(value):
                problems.append(f"outputs.{name} is {value}; it must be a finite number "
                                "(physical value = network output * scale + offset)")
        if outputs.kind == "embedding" and not _positive_whole(self.provenance.get("dim")):
            problems.append(f"provenance.dim is {self.provenance.get('dim')!r}; an embedding model must state "
                            "its embedding size as a whole number >= 1")
        return problems

    def _run_problems(self) -> list[str]:
        problems = []
        if self.tile_size < 1 or not 0 <= self.overlap < self.tile_size:
            problems.append(
                f"tile_size is {self.tile_size} and overlap {self.overlap}; tiling needs tile_size >= 1 and "
                "0 <= overlap < tile_size (pixels)"
            )
        if self.batch_size < 1:
            problems.append(f"batch_size is {self.batch_size}; it must be a whole number >= 1 (tiles per model "
                            "run, e.g. 8)")
        if self.gsd_m is not None and not (math.isfinite(self.gsd_m) and self.gsd_m > 0):
            problems.append(f"gsd_m is {self.gsd_m}; it must be a finite number of metres > 0, or absent")
        if self.test_time_augmentations not in TEST_TIME_AUGMENTATIONS:
            problems.append(f"test_time_augmentations must be one of {TEST_TIME_AUGMENTATIONS}, got "
                            f"{self.test_time_augmentations!r}")
        problems += fully_convolutional_problems(self.fully_convolutional)
        if self.version > CONTRACT_VERSION:
            problems.append(
                f"contract version {self.version} is newer than this engine's ({CONTRACT_VERSION}); "
                "update the toolbox"
            )
        return problems

    def _quality_problems(self) -> list[str]:
        problems = []
        depth_range = self.quality.get("depth_range_m")
        if depth_range is not None and not (
                isinstance(depth_range, list | tuple) and len(depth_range) == 2
                and all(isinstance(v, int | float) and math.isfinite(v) for v in depth_range)
                and depth_range[0] < depth_range[1]):
            problems.append(f"quality.depth_range_m is {depth_range!r}; give [low, high] in metres with low < high")
        tolerance = self.quality.get("deep_ratio_tolerance", 0.08)
        if not (isinstance(tolerance, int | float) and not isinstance(tolerance, bool) and 0 < tolerance < 1):
            problems.append(f"quality.deep_ratio_tolerance is {tolerance!r}; give how far ln(green/blue) of optically "
                            "deep water may lie from the deep-water signal's, a number between 0 and 1")
        for name, signal in self.quality.get("deep_water", {}).items():
            if name not in self.band_names:
                problems.append(f"quality.deep_water names band {name!r}, which is not an input band of the model")
            elif not (isinstance(signal, int | float) and math.isfinite(signal) and signal > 0):
                problems.append(f"quality.deep_water[{name!r}] is {signal!r}; give the deep-water signal as a number "
                                "> 0 in the input's units")
        return problems

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def to_onnx_metadata(self) -> dict[str, str]:
        return {CONTRACT_KEY: self.to_json()}

    @classmethod
    def from_dict(cls, data: dict) -> ModelContract:
        """A contract from its JSON form; a missing or malformed field raises ModelContractError naming it."""
        contract = _Fields(data, "")
        outputs = _Fields(contract.get("outputs", _object), "outputs.")

        def bands(items: list) -> tuple[Band, ...]:
            return tuple(Band(item.get("name", _text), tuple(item.get("aliases", _texts, ())),
                              item.get("description", _text, ""))
                         for item in (_Fields(b, f"bands[{k}].") for k, b in enumerate(items)))

        modalities = [_Fields(m, f"modalities[{k}].") for k, m in enumerate(contract.get("modalities", _list, []))]
        return cls(
            task=contract.get("task", _text),
            name=contract.get("name", _text),
            bands=bands(contract.get("bands", _list)),
            modalities=tuple(
                Modality(m.get("name", _text), bands(m.get("bands", _list)), tuple(m.get("mean", _number_list)),
                         tuple(m.get("std", _number_list)), m.get("max_dates", _integer))
                for m in modalities
            ),
            mean=tuple(contract.get("mean", _number_list)),
            std=tuple(contract.get("std", _number_list)),
            outputs=Outputs(
                kind=outputs.get("kind", _text),
                names=tuple(outputs.get("names", _texts)),
                colors=tuple(outputs.get("colors", _texts, ())),
                units=outputs.get("units", _text, ""),
                scale=outputs.get("scale", _number, 1.0),
                offset=outputs.get("offset", _number, 0.0),
                description=outputs.get("description", _text, ""),
                activation=outputs.get("activation", _text, "none"),
            ),
            tile_size=contract.get("tile_size", _integer),
            overlap=contract.get("overlap", _integer),
            gsd_m=contract.get("gsd_m", _number, None),
            batch_size=contract.get("batch_size", _integer, 8),
            input_units=contract.get("input_units", _text, ""),
            provenance=contract.get("provenance", _object, {}),
            quality=contract.get("quality", _object, {}),
            test_time_augmentations=contract.get("test_time_augmentations", _text, "none"),
            input_statistics=contract.get("input_statistics", _object, {}),
            fully_convolutional=contract.get("fully_convolutional", _object, {}),
            version=contract.get("version", _integer, CONTRACT_VERSION),
        )


FULLY_CONVOLUTIONAL_FIELDS = {  # name: (least value, whole number)
    "receptive_radius": (0, True), "size_multiple": (1, True), "activation_bytes_per_px": (0, False)}


def fully_convolutional_problems(record: dict) -> list[str]:
    """What is wrong with a contract's ``fully_convolutional`` record (empty: a fixed-size model)."""
    if not record:
        return []
    problems = [f"fully_convolutional lacks {name!r}" for name in FULLY_CONVOLUTIONAL_FIELDS if name not in record]
    problems += [f"fully_convolutional has an unknown field {name!r}" for name in record
                 if name not in FULLY_CONVOLUTIONAL_FIELDS]
    for name, (least, whole) in FULLY_CONVOLUTIONAL_FIELDS.items():
        value = record.get(name, least)
        if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
                or value < least or whole and value != int(value)):
            problems.append(f"fully_convolutional.{name} is {value!r}; it must be a {'whole ' if whole else ''}"
                            f"number >= {least}")
    if problems:
        problems.append("record it with `python -m training export`, or remove the field to run the model at its "
                        "tile size")
    return problems


_REQUIRED = object()


class _Fields:
    """The fields of one JSON object of a contract, each read with the form it must have."""

    def __init__(self, data, where: str):
        if not isinstance(data, dict):
            raise ModelContractError(f"model contract field {where.rstrip('.') or '(the whole contract)'} is "
                                     f"{_shown(data)}; expected a JSON object")
        self.data, self.where = data, where

    def get(self, key: str, read, default=_REQUIRED):
        if key not in self.data or (self.data[key] is None and default is not _REQUIRED):
            if default is _REQUIRED:
                raise ModelContractError(f"model contract is missing the field {self.where + key!r}")
            return default
        try:
            return read(self.data[key])
        except (TypeError, ValueError):
            raise ModelContractError(f"model contract field {self.where + key!r} is {_shown(self.data[key])}; "
                                     f"expected {FORMS[read]}") from None


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def has_contract(metadata: dict[str, str]) -> bool:
    """Whether ONNX custom metadata holds a contract (ours or a Deepness model's)."""
    return CONTRACT_KEY in metadata or "model_type" in metadata


def fp16_variant_path(model: str | Path) -> Path:
    """Where the fp16 variant of ``model`` (``m.onnx``) sits: ``m.fp16.onnx`` beside it."""
    model = Path(model)
    return model.with_name(model.name.removesuffix(".onnx") + FP16_SUFFIX)


def contract_from_metadata(metadata: dict[str, str], source: str) -> ModelContract:
    """Read the contract from ONNX custom metadata (ours, or a Deepness model's)."""
    if CONTRACT_KEY in metadata:
        try:
            data = json.loads(metadata[CONTRACT_KEY])
        except json.JSONDecodeError as bad:
            raise ModelContractError(f"{source}: the model contract is not valid JSON ({bad})") from None
        try:
            return ModelContract.from_dict(data)
        except ModelContractError as bad:
            raise ModelContractError(f"{source}: {bad}. {STORED_CONTRACT_FIX}.") from None
    if "model_type" in metadata:
        return _from_deepness(metadata, source)
    raise ModelContractError(
        f"{source} has no model contract in its metadata (key {CONTRACT_KEY!r}): the engine cannot "
        "know its bands, normalisation or outputs. Export it with `python -m training export`, "
        "which writes the contract, write one with `python -m engine contract set`, run it with "
        "the options of 'Run ONNX model', or add Deepness metadata (model_type, class_names, ...)."
    )


def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _texts(value) -> list[str]:
    if not isinstance(value, list):
        raise TypeError
    return [_text(v) for v in value]


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    if not math.isfinite(value):  # JSON as Python reads it may hold NaN and Infinity
        raise ValueError
    return float(value)


def _integer(value) -> int:
    number = _number(value)
    if number != int(number):
        raise ValueError
    return int(number)


def _positive_whole(value) -> bool:
    try:
        return _integer(value) >= 1
    except (TypeError, ValueError):
        return False


def _whole(value) -> int:
    if _integer(value) < 1:
        raise ValueError
    return int(value)


def _number_list(value) -> list[float]:
    if not isinstance(value, list):
        raise TypeError
    return [_number(v) for v in value]


def _numbers(value) -> list[float]:
    numbers = _number_list(value)
    if not numbers:
        raise TypeError
    return numbers


def _list(value) -> list:
    if not isinstance(value, list):
        raise TypeError
    return value


def _object(value) -> dict:
    if not isinstance(value, dict):
        raise TypeError
    return value


FORMS = {  # what each reader of a contract field accepts, for the refusal
    _text: "text", _texts: "a list of texts", _number: "a finite number", _integer: "a whole number",
    _number_list: "a list of finite numbers", _list: "a list", _object: "a JSON object",
}


def _class_names(value) -> list[str]:
    """Deepness class_names: {"0": name, ...}, a list of names, or a list of one such object."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]  # one output head
    if isinstance(value, dict):
        by_index = {int(k): _text(v) for k, v in value.items()}  # int("x") raises ValueError
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError
        return [by_index[i] for i in range(len(by_index))]
    if isinstance(value, list):
        return [_text(v) for v in value]
    raise TypeError


# Deepness metadata keys (values are JSON strings): how to read each, and its expected form.
DEEPNESS_KEYS = {
    "model_type": (_text, 'a JSON string: "Segmentor" or "Regressor" (with the quotes)'),
    "class_names": (_class_names, 'a JSON object of class index to name, e.g. {"0": "background", '
                                  '"1": "field"} with indexes 0, 1, ... (one output head), or a list of names'),
    "resolution": (_number, "a JSON number: centimetres per pixel, e.g. 50"),
    "tiles_size": (_whole, "a JSON whole number: the tile side in pixels, e.g. 512"),
    "tile_size": (_whole, "a JSON whole number: the tile side in pixels, e.g. 512"),
    "tiles_overlap": (_number, "a JSON number: the tile overlap in percent, e.g. 15"),
    "standardization_mean": (_numbers, "a JSON list of numbers, one per band, for values scaled to "
                                       "0-1, e.g. [0.485, 0.456, 0.406]"),
    "standardization_std": (_numbers, "a JSON list of numbers > 0, one per band, for values scaled to "
                                      "0-1, e.g. [0.229, 0.224, 0.225]"),
    "reg_output_scaling": (_number, "a JSON number: the factor regression outputs are multiplied by, e.g. 1.0"),
}


def _from_deepness(metadata: dict[str, str], source: str) -> ModelContract:
    """Map Deepness metadata (values are JSON strings) onto the contract. Deepness segmentors output
    probabilities (softmax, or a sigmoid for one class) and get UInt8 values scaled to 0-1."""

    def value(key, default=None):
        if key not in metadata:
            return default
        read, form = DEEPNESS_KEYS[key]
        try:
            return read(json.loads(metadata[key]))
        except (ValueError, TypeError):  # json.JSONDecodeError is a ValueError
            raise ModelContractError(
                f"{source}: Deepness metadata {key!r} is {metadata[key][:80]!r}; expected {form}. "
                "Correct the metadata, or write this engine's contract with `python -m engine contract set`."
            ) from None

    model_type = value("model_type").lower()
    kind = {"segmentor": "classes", "regressor": "regression"}.get(model_type)
    if kind is None:
        raise ModelContractError(
            f"{source}: Deepness model_type {value('model_type')!r} is not supported "
            "(only 'Segmentor' and 'Regressor')"
        )
    tile = value("tiles_size", value("tile_size", 512))
    mean = value("standardization_mean", [0.0, 0.0, 0.0])
    std = value("standardization_std", [1.0] * len(mean))
    names = value("class_names", []) or ["value"]
    resolution_cm = value("resolution")
    try:
        return ModelContract(
            task="deepness-" + model_type,
            name=source,
            bands=tuple(Band(f"band{i + 1}") for i in range(len(mean))),
            mean=tuple(m * 255.0 for m in mean),  # Deepness scales UInt8 input to [0, 1] first
            std=tuple(s * 255.0 for s in std),
            outputs=Outputs(kind=kind, names=tuple(names), scale=value("reg_output_scaling", 1.0)),
            tile_size=tile,
            overlap=int(tile * value("tiles_overlap", 15.0) / 100),
            gsd_m=None if resolution_cm is None else resolution_cm / 100.0,
            provenance={"format": "deepness"},
        )
    except ModelContractError as bad:
        raise ModelContractError(f"{source}: {bad}. Correct the model's Deepness metadata, or write this "
                                 "engine's contract with `python -m engine contract set`.") from None
