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
from dataclasses import asdict, dataclass, field

from engine.errors import ModelContractError

CONTRACT_KEY = "rsai_contract"
TOKENIZER_KEY = "rsai_tokenizer"  # text encoders: the HuggingFace tokenizers JSON that makes their inputs
CONTRACT_VERSION = 1
OUTPUT_KINDS = ("regression", "classes", "embedding")  # embedding: L2-normalised vectors of provenance["dim"]
ACTIVATIONS = ("none", "softmax", "sigmoid")  # applied by the engine to a classes output (Outputs.activation)


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
    version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        problems = []
        if not self.bands and not self.modalities:
            problems.append("'bands' is empty")
        for label, bands, mean, std in [("", self.bands, self.mean, self.std),
                                        *((f"{m.name}: ", m.bands, m.mean, m.std) for m in self.modalities)]:
            if len(mean) != len(bands) or len(std) != len(bands):
                problems.append(
                    f"{label}normalisation has {len(mean)} means and {len(std)} stds for {len(bands)} bands"
                )
            if any(s <= 0 for s in std):
                problems.append(f"{label}every normalisation std must be > 0")
        if any(m.max_dates < 1 for m in self.modalities):
            problems.append("every modality needs max_dates >= 1")
        if self.outputs.kind not in OUTPUT_KINDS:
            problems.append(f"outputs.kind must be one of {OUTPUT_KINDS}, got {self.outputs.kind!r}")
        if self.outputs.channels < 1:
            problems.append("outputs.names is empty")
        if self.outputs.colors and len(self.outputs.colors) != self.outputs.channels:
            problems.append("outputs.colors must give one colour per class")
        if self.outputs.activation not in ACTIVATIONS:
            problems.append(f"outputs.activation must be one of {ACTIVATIONS}, got {self.outputs.activation!r}")
        elif self.outputs.activation != "none" and self.outputs.kind != "classes":
            problems.append(f"outputs.activation {self.outputs.activation!r} applies to class scores only; "
                            f"a {self.outputs.kind} output needs 'none'")
        if self.tile_size < 1 or not 0 <= self.overlap < self.tile_size:
            problems.append(
                f"tiling needs tile_size >= 1 and 0 <= overlap < tile_size "
                f"(got {self.tile_size}, {self.overlap})"
            )
        if self.gsd_m is not None and self.gsd_m <= 0:
            problems.append("gsd_m must be > 0")
        if self.version > CONTRACT_VERSION:
            problems.append(
                f"contract version {self.version} is newer than this engine's ({CONTRACT_VERSION}); "
                "update the toolbox"
            )
        if problems:
            raise ModelContractError(f"invalid model contract for {self.name!r}: " + "; ".join(problems))

    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def to_onnx_metadata(self) -> dict[str, str]:
        return {CONTRACT_KEY: self.to_json()}

    @classmethod
    def from_dict(cls, data: dict) -> ModelContract:
        def bands(items):
            return tuple(Band(b["name"], tuple(b.get("aliases", ())), b.get("description", "")) for b in items)

        try:
            return cls(
                task=data["task"],
                name=data["name"],
                bands=bands(data["bands"]),
                modalities=tuple(
                    Modality(m["name"], bands(m["bands"]), tuple(map(float, m["mean"])),
                             tuple(map(float, m["std"])), int(m["max_dates"]))
                    for m in data.get("modalities", ())
                ),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                outputs=Outputs(
                    kind=data["outputs"]["kind"],
                    names=tuple(data["outputs"]["names"]),
                    colors=tuple(data["outputs"].get("colors", ())),
                    units=data["outputs"].get("units", ""),
                    scale=float(data["outputs"].get("scale", 1.0)),
                    offset=float(data["outputs"].get("offset", 0.0)),
                    description=data["outputs"].get("description", ""),
                    activation=data["outputs"].get("activation", "none"),
                ),
                tile_size=int(data["tile_size"]),
                overlap=int(data["overlap"]),
                gsd_m=None if data.get("gsd_m") is None else float(data["gsd_m"]),
                batch_size=int(data.get("batch_size", 8)),
                input_units=data.get("input_units", ""),
                provenance=dict(data.get("provenance", {})),
                version=int(data.get("version", CONTRACT_VERSION)),
            )
        except KeyError as missing:
            raise ModelContractError(
                f"model contract is missing the field {missing}; re-export the model with "
                "`python -m training export`"
            ) from None
        except (TypeError, ValueError) as bad:
            raise ModelContractError(f"model contract has a malformed field: {bad}") from None


def has_contract(metadata: dict[str, str]) -> bool:
    """Whether ONNX custom metadata holds a contract (ours or a Deepness model's)."""
    return CONTRACT_KEY in metadata or "model_type" in metadata


def contract_from_metadata(metadata: dict[str, str], source: str) -> ModelContract:
    """Read the contract from ONNX custom metadata (ours, or a Deepness model's)."""
    if CONTRACT_KEY in metadata:
        try:
            data = json.loads(metadata[CONTRACT_KEY])
        except json.JSONDecodeError as bad:
            raise ModelContractError(f"{source}: the model contract is not valid JSON ({bad})") from None
        if not isinstance(data, dict):
            raise ModelContractError(f"{source}: the model contract is not a JSON object")
        return ModelContract.from_dict(data)
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


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError
    return float(value)


def _whole(value) -> int:
    if _number(value) != int(value) or value < 1:
        raise ValueError
    return int(value)


def _numbers(value) -> list[float]:
    if not isinstance(value, list) or not value:
        raise TypeError
    return [_number(v) for v in value]


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
