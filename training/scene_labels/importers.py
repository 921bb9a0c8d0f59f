"""Importer of the reBEN reference classifiers (Clasen et al.: "reBEN: Refined BigEarthNet Dataset
for Remote Sensing Image Analysis", 2024, arXiv:2407.03653), published on the Hugging Face hub by
BIFOLD-BigEarthNetv2-0 as ``<backbone>-<s1|s2|all>-v<release>``.

Each published folder holds ``config.json`` (configilm's ``ILMConfiguration``: ``timm_model_name``,
``channels`` 2 | 10 | 12, ``classes`` 19, ``image_size`` 120) and ``model.safetensors``: the state
dict of the authors' Lightning module (reben-training-scripts, ``BigEarthNetv2_0_ImageClassifier``,
saved with huggingface_hub's ``PyTorchModelHubMixin``), whose only weights are a
``configilm.ConfigILM`` image classifier kept as ``model``: names ``model.vision_encoder.<timm>``.
Its Lightning training checkpoints (``.ckpt``) hold the same names under ``state_dict``.

The network is rebuilt with configilm itself, the authors' model library, so that every name and
shape is theirs: ``timm.create_model(backbone, in_chans, num_classes=19, img_size=120 where the
model takes one)``. It returns 19 logits in configilm's ``NEW_LABELS`` order (the class names sorted,
as the hub's example outputs show); the graph maps them to the toolbox's order and applies the
sigmoid of their BCE-with-logits training.

Inputs are standardised with the training split's statistics at 120 px with nearest upsampling
(configilm's ``120_nearest``, ``training.datasets.reben_format.BAND_MEAN``/``BAND_STD``). The band
order depends on the release (the hub's model cards):

- v0.2.0: S1 = VV, VH; S2 = B02, B03, B04, B05, B06, B07, B08, B8A, B11, B12; all = S1 then S2;
- v0.1.1: S1 = VH, VV; S2 = B02, B03, B04, B08, B05, B06, B07, B11, B12, B8A; all = S2 then S1.

The contract names the bands in the release's order; the engine reads them by name.
"""
from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from engine.contract import Band, ModelContract, Outputs
from training.datasets.ben_labels import CLASS_COLOURS, CLASS_NAMES, TORCHGEO_CLASS_NAMES
from training.datasets.reben_format import BAND_MEAN, BAND_STD, PATCH_PIXELS
from training.onnx_export import parity_check, write_onnx
from training.importers import ImportedModel, Importer, ImportRefused, load_state_dict, load_weights
from training.scene_labels.export import CONTRACT_TASK, INPUT_UNITS, PAPER
from training.sentinel_bands import SENTINEL_BANDS

URL = "https://huggingface.co/BIFOLD-BigEarthNetv2-0"
LICENCE = "MIT (as stated on the weights' hub pages)"
# Backbones published by the authors on the hub; any other timm name is built as given.
BACKBONES = ("resnet50", "resnet101", "convnextv2_base", "convmixer_768_32", "mixer_b16_224", "mobilevit_s",
             "vit_base_patch8_224")
RELEASES = ("v0.2.0", "v0.1.1")
MODALITIES = ("s1", "s2", "s1s2")
_S2_V1 = ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B11", "B12", "B8A")
_S2_V2 = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
RELEASE_BANDS = {
    "v0.2.0": {"s1": ("VV", "VH"), "s2": _S2_V2, "s1s2": ("VV", "VH", *_S2_V2)},
    "v0.1.1": {"s1": ("VH", "VV"), "s2": _S2_V1, "s1s2": (*_S2_V1, "VH", "VV")},
}
MODALITY_OF_CHANNELS = {2: "s1", 10: "s2", 12: "s1s2"}
PARITY_TOLERANCE = 1e-4  # probabilities through deep float32 networks (random ResNet-50: about 2e-5)
# configilm's NEW_LABELS: the 19 names of the CLC-code order (torchgeo's) sorted alphabetically.
PUBLISHED_CLASSES = tuple(sorted(TORCHGEO_CLASS_NAMES))
PUBLISHED_INDEX = tuple(PUBLISHED_CLASSES.index(name) for name in CLASS_NAMES)


class PublishedClassifier(nn.Module):
    """The authors' Lightning module as far as its weights go: the ConfigILM network as ``model``."""

    def __init__(self, backbone: str, channels: int, config: dict) -> None:
        super().__init__()
        from configilm.ConfigILM import ConfigILM, ILMConfiguration, ILMType

        settings = ILMConfiguration(
            timm_model_name=backbone, image_size=PATCH_PIXELS, channels=channels, classes=len(CLASS_NAMES),
            network_type=ILMType.IMAGE_CLASSIFICATION, drop_rate=config.get("drop_rate", 0.15),
            drop_path_rate=config.get("drop_path_rate", 0.15),
        )
        with warnings.catch_warnings():  # configilm drops the keywords a timm model does not take (img_size)
            warnings.simplefilter("ignore")
            self.model = ConfigILM(settings)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


class ToolboxProbabilities(nn.Module):
    """Logits in the published class order -> sigmoid probabilities ``[N, 19, 1, 1]`` in ``CLASS_NAMES`` order."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.register_buffer("order", torch.tensor(PUBLISHED_INDEX), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(image)[:, self.order])[:, :, None, None]


def _config(checkpoint: Path) -> dict:
    path = checkpoint.with_name("config.json")
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise ImportRefused(f"cannot read {path} (the configuration published with the weights): {err}") from None
    for key, expected in (("classes", len(CLASS_NAMES)), ("image_size", PATCH_PIXELS), ("network_type", 0)):
        if config.get(key, expected) != expected:
            raise ImportRefused(f"{path} says {key} = {config[key]!r}; reBEN's classifiers have {expected}: "
                                "this is not a reBEN scene classifier")
    return config


def _agreed(name: str, given, published, path: Path):
    if given and published and given != published:
        raise ImportRefused(f"--{name} {given} contradicts {path} beside the checkpoint ({published}); "
                            f"leave --{name} out or give the matching file")
    return given or published


def _release(checkpoint: Path, given: str | None) -> str:
    """--release, or the release the hub's folder name in the checkpoint's path ends with."""
    named = sorted(set(re.findall(r"v0\.1\.1|v0\.2\.0", str(checkpoint.absolute()))))
    if given and named and given not in named:
        raise ImportRefused(f"the checkpoint's path {checkpoint} names release {', '.join(named)} but --release is "
                            f"{given}; give the matching --release")
    if given or len(named) == 1:
        return given or named[0]
    raise ImportRefused(
        f"cannot tell the release of {checkpoint}: give --release v0.2.0 (S1 = VV, VH; S2 = B02..B12 in ESA order; "
        "S1 before S2) or --release v0.1.1 (S1 = VH, VV; S2 = B02 B03 B04 B08 B05 B06 B07 B11 B12 B8A; S2 before "
        "S1), as the hub folder's name ends"
    )


def _check_input_bands(network: nn.Module, state: dict[str, torch.Tensor], checkpoint: Path, modality: str,
                       channels: int) -> None:
    """A clear refusal when the weights were trained on another modality (their stem takes other bands)."""
    stem = next(name for name, value in network.state_dict().items() if value.ndim == 4)
    if stem not in state or state[stem].shape[1] == channels:
        return
    taken = state[stem].shape[1]
    if taken not in MODALITY_OF_CHANNELS:
        raise ImportRefused(f"{checkpoint} takes {taken} input bands: it is not a reBEN S1, S2 or S1+S2 classifier")
    raise ImportRefused(f"{checkpoint} holds {MODALITY_OF_CHANNELS[taken]} weights ({taken} input bands), not the "
                        f"{channels} bands of --bands {modality}; give --bands {MODALITY_OF_CHANNELS[taken]}")


def import_reben(checkpoint: Path, out: Path, options: argparse.Namespace, provenance: dict) -> ImportedModel:
    config = _config(checkpoint)
    config_path = checkpoint.with_name("config.json")
    backbone = _agreed("backbone", options.backbone, config.get("timm_model_name"), config_path)
    modality = _agreed("bands", options.bands, MODALITY_OF_CHANNELS.get(config.get("channels")), config_path)
    if not backbone or not modality:
        raise ImportRefused(
            "--source reben needs --backbone (the timm name: " + ", ".join(BACKBONES) + ") and --bands "
            "(s1, s2 or s1s2), or the config.json published beside model.safetensors"
        )
    release = _release(checkpoint, options.release)
    bands = RELEASE_BANDS[release][modality]
    try:
        from configilm import __version__ as configilm_version
    except ImportError:
        raise ImportRefused("configilm (the reBEN authors' model library) is not installed: "
                            "pip install --no-deps configilm==0.7.1 appdirs (see scripts/setup.sh)") from None
    try:
        network = PublishedClassifier(backbone, len(bands), config).eval()
    except RuntimeError as err:  # timm: unknown model
        raise ImportRefused(f"--backbone {backbone}: {err}; the published backbones are "
                            f"{', '.join(BACKBONES)}") from None
    state = load_state_dict(checkpoint)
    _check_input_bands(network, state, checkpoint, modality, len(bands))
    load_weights(network, state, checkpoint,
                 f"reBEN's {backbone} classifier (configilm names model.vision_encoder.*, {len(bands)} bands)")
    contract = ModelContract(
        task=CONTRACT_TASK, name=out.stem,
        bands=tuple(Band(name, *SENTINEL_BANDS[name]) for name in bands),
        mean=tuple(BAND_MEAN[name] for name in bands), std=tuple(BAND_STD[name] for name in bands),
        outputs=Outputs(kind="classes", names=CLASS_NAMES, colors=CLASS_COLOURS,
                        description="multi-label scene classes: one independent probability (sigmoid) per class "
                                    "for the whole 120x120 patch, shape [N, 19, 1, 1]; they do not sum to 1"),
        tile_size=PATCH_PIXELS, overlap=0, gsd_m=10.0, input_units=INPUT_UNITS,
        provenance=provenance | {"architecture": backbone, "release": release, "modalities": modality,
                                 "label_order": "alphabetical 19-class reBEN nomenclature (configilm NEW_LABELS)"},
    )
    graph = ToolboxProbabilities(network).eval()
    write_onnx(graph, len(bands), PATCH_PIXELS, out, contract, dynamic_size=False)
    difference = parity_check(graph, out, len(bands), PATCH_PIXELS, dynamic_size=False, tolerance=PARITY_TOLERANCE)
    return ImportedModel(
        (out,), difference,
        f"timm {backbone} built with configilm {configilm_version} as the authors did: {len(bands)} bands in, "
        "19 logits, sigmoid",
        (f"Release {release}: bands in the order {', '.join(bands)}, standardised with reBEN's training-split "
         "statistics; 20 m bands are nearest-upsampled to 10 m as in training.",
         "Trained on 1200 m x 1200 m reBEN patches of 10 European countries (2017-2018); other regions and "
         "seasons were not evaluated by the authors."),
    )


IMPORTERS = (
    Importer("reben", "scene_labels", "reBEN / BigEarthNet v2.0 scene classifier (configilm, timm backbone)",
             LICENCE, PAPER, URL, import_reben),
)
