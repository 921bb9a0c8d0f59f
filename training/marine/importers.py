"""Importers of MagicBathyNet's published PyTorch weights (Agrafiotis, Janowski, Skarlatos, Demir:
"MagicBathyNet: A Multimodal Remote Sensing Dataset for Bathymetry Prediction and Pixel-based
Classification in Shallow Waters", IGARSS 2024; code and weights: github.com/pagraf/MagicBathyNet).

The authors publish, for each modality (Sentinel-2, SPOT-6, aerial) and area (Agia Napa, Puck
Lagoon), a bathymetry U-Net, a seabed U-Net and a seabed SegFormer (MiT-B5), each a ``torch.save``d
state dict in a zip. Their inference, which the exported graphs reproduce, is:

- input: the patch's RGB values min/max-normalised per band with the area's ``norm_param`` file
  (two rows: minimum, maximum) -> the contract's mean = minimum, std = maximum - minimum;
- bathymetry: zoom the patch bilinearly so that the training window (S2 18 px, SPOT-6 30 px,
  aerial 720 px) becomes 256 px, reflect-pad 32 px, run the U-Net, crop, zoom back; the output
  times the area's depth constant (30.443 m Agia Napa, 11 m Puck Lagoon) is the depth, positive down;
- seabed classes: clip to [0, 1], nearest-zoom so that the window (S2 and SPOT-6 16 px, aerial
  384 px) becomes 256 px, run the network, and return to the input grid. The authors sample the
  zoomed logits back with nearest neighbours; the graph averages them over each zoomed pixel
  instead (every output pixel then sees its whole footprint), then applies softmax. The last
  class is the reference's "undefined" (weight 0 in training), kept so the arg-max is theirs.

Graphs have a fixed tile size (``--tile-size``, default twice the S2/SPOT-6 window, one aerial
window), which the contract carries.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.contract import Band, ModelContract, Outputs
from training.datasets.magicbathynet_format import (
    AREA_CLASSES,
    DEPTH_SCALE_M,
    MODALITY_BANDS,
    MODALITY_GSD_M,
    UNDEFINED_COLOUR,
    read_norm_param,
)
from training.importers import ImportedModel, Importer, ImportRefused, load_state_dict, load_weights
from training.marine.export import BAND_ALIASES, PAPER
from training.marine.model import LightUNet, SeabedUNet
from training.marine.segformer import SegFormer, variant_of
from training.onnx_export import parity_check, write_onnx

LICENCE = "CC BY-NC-SA 4.0 (non-commercial; adaptations under the same licence)"
URL = "https://github.com/pagraf/MagicBathyNet#pre-trained-deep-learning-models"
ZOOMED_SIZE = 256  # the reference zooms its training windows to this size
BATHYMETRY_WINDOW = {"s2": 18, "spot6": 30, "aerial": 720}
SEABED_WINDOW = {"s2": 16, "spot6": 16, "aerial": 384}
BATHYMETRY_PAD = 32
PARITY_TOLERANCE = 1e-3  # depth / 30 m, probabilities: float32 through deep networks at 256-512 px


class ZoomedBathymetry(nn.Module):
    """The reference's bathymetry inference on a fixed tile: bilinear zoom, reflect pad, U-Net,
    crop, bilinear zoom back (``align_corners`` as scipy.ndimage.zoom with order 1)."""

    def __init__(self, network: nn.Module, tile: int, window: int) -> None:
        super().__init__()
        self.network, self.tile = network, tile
        self.zoomed = round(tile * ZOOMED_SIZE / window)  # scipy.ndimage.zoom's output size; the U-Net pads inside

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        zoomed = F.interpolate(image, size=(self.zoomed, self.zoomed), mode="bilinear", align_corners=True)
        padded = F.pad(zoomed, [BATHYMETRY_PAD] * 4, mode="reflect")
        depth = self.network(padded)[:, :, BATHYMETRY_PAD:-BATHYMETRY_PAD, BATHYMETRY_PAD:-BATHYMETRY_PAD]
        return F.interpolate(depth, size=(self.tile, self.tile), mode="bilinear", align_corners=True)


class ZoomedSegmentation(nn.Module):
    """The reference's seabed inference on a fixed tile: clip, nearest zoom by an integer factor,
    network, logits averaged back onto the input grid, softmax."""

    def __init__(self, network: nn.Module, factor: int) -> None:
        super().__init__()
        self.network, self.factor = network, factor

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        image = image.clamp(0, 1)
        if self.factor > 1:
            image = F.interpolate(image, scale_factor=self.factor, mode="nearest")
        logits = self.network(image)
        if self.factor > 1:
            logits = F.avg_pool2d(logits, self.factor)
        return logits.softmax(dim=1)


def light_unet_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The published bathymetry U-Net's names (``encoder.1.maxpool_conv.1.double_conv.0``,
    ``decoder.0.up``, ``decoder.3``) -> ``training.marine.model.LightUNet``'s: the same layers."""
    renamed = {}
    for key, value in state.items():
        new = re.sub(r"^encoder\.(\d)\.(?:maxpool_conv\.1\.)?double_conv\.", r"encoder.\1.", key)
        new = re.sub(r"^decoder\.(\d)\.up\.", r"decoder.\1.upsample.", new)
        new = re.sub(r"^decoder\.(\d)\.conv\.double_conv\.", r"decoder.\1.convolve.", new)
        renamed[re.sub(r"^decoder\.3\.", "head.", new)] = value
    return renamed


def _required(options: argparse.Namespace, source: str) -> tuple[str, str, np.ndarray, np.ndarray]:
    missing = [f"--{name.replace('_', '-')}" for name in ("area", "modality", "norm_param") if not getattr(options, name)]
    if missing:
        raise ImportRefused(f"--source {source} needs {', '.join(missing)}")
    try:
        low, high = read_norm_param(options.norm_param)
    except (OSError, ValueError) as err:
        raise ImportRefused(str(err)) from None
    return options.area, options.modality, low, high


def _contract(out: Path, task: str, modality: str, low, high, outputs: Outputs, tile: int, provenance: dict,
              norm_param: Path) -> ModelContract:
    return ModelContract(
        task=task, name=out.stem,
        bands=tuple(Band(name, *BAND_ALIASES[name]) for name in MODALITY_BANDS[modality]),
        mean=tuple(float(v) for v in low), std=tuple(float(h - l) for l, h in zip(low, high)),
        outputs=outputs, tile_size=tile, overlap=tile // 4, gsd_m=MODALITY_GSD_M[modality],
        input_units=f"values of MagicBathyNet's {modality} img_<id>.tif patches (min/max from {Path(norm_param).name})",
        provenance=provenance | {"modality": modality},
    )


def _export(graph: nn.Module, out: Path, contract: ModelContract) -> float:
    graph = graph.eval()
    write_onnx(graph, 3, contract.tile_size, out, contract, dynamic_size=False)
    return parity_check(graph, out, 3, contract.tile_size, dynamic_size=False, tolerance=PARITY_TOLERANCE)


def import_bathymetry(checkpoint: Path, out: Path, options: argparse.Namespace, provenance: dict) -> ImportedModel:
    area, modality, low, high = _required(options, "magicbathynet-bathymetry")
    network = LightUNet(3, 1, 32)
    load_weights(network, light_unet_names(load_state_dict(checkpoint)), checkpoint,
                 "MagicBathyNet's bathymetry U-Net (UNet_bathy, 3 bands in, 1 out)")
    window = BATHYMETRY_WINDOW[modality]
    tile = options.tile_size or (window if modality == "aerial" else 2 * window)
    outputs = Outputs(kind="regression", names=("depth",), units="m", scale=DEPTH_SCALE_M[area],
                      description="depth below the water surface, positive down")
    contract = _contract(out, "bathymetry", modality, low, high, outputs, tile,
                         provenance | {"area": area, "architecture": "MagicBathyNet bathymetry U-Net"}, options.norm_param)
    graph = ZoomedBathymetry(network, tile, window)
    return ImportedModel(
        (out,), _export(graph, out, contract),
        f"MagicBathyNet's modified U-Net for bathymetry (32-64-128-256, no BatchNorm); each {tile} px tile is "
        f"zoomed to {graph.zoomed} px and reflect-padded by {BATHYMETRY_PAD} px as in the authors' test code",
        (f"Trained on {area.replace('_', ' ').title()} only: depth is scaled by that area's constant "
         f"({DEPTH_SCALE_M[area]} m) and is not meant for other coasts without checking.",
         "Valid for optically shallow water only: land, clouds and deep water get depths anyway."),
    )


def _seabed_outputs(area: str) -> Outputs:
    classes = AREA_CLASSES[area] + (("undefined", UNDEFINED_COLOUR),)
    return Outputs(kind="classes", names=tuple(name for name, _ in classes),
                   colors=tuple("#%02x%02x%02x" % colour for _, colour in classes),
                   description="probability of each seabed class (the last is the reference's 'undefined')")


def _import_seabed(checkpoint: Path, out: Path, options: argparse.Namespace, provenance: dict, source: str,
                   build) -> ImportedModel:
    area, modality, low, high = _required(options, source)
    outputs = _seabed_outputs(area)
    state = load_state_dict(checkpoint)
    network, architecture = build(state, outputs.channels)
    load_weights(network, state, checkpoint, f"MagicBathyNet's {architecture} for {area} ({outputs.channels} classes)")
    window = SEABED_WINDOW[modality]
    factor = ZOOMED_SIZE // window
    tile = options.tile_size or (window if modality == "aerial" else 2 * window)
    contract = _contract(out, "seabed", modality, low, high, outputs, tile,
                         provenance | {"area": area, "architecture": architecture}, options.norm_param)
    return ImportedModel(
        (out,), _export(ZoomedSegmentation(network, factor), out, contract),
        f"{architecture}; each {tile} px tile is zoomed x{factor} (nearest) as in the authors' test code",
        (f"Classes of {area.replace('_', ' ').title()} only: {', '.join(outputs.names)}.",
         "Logits are averaged over each zoomed pixel, where the authors sample one of them; arg-max maps can "
         "differ at class borders.",
         "Valid for optically shallow water only: land and deep water still get a seabed class."),
    )


def import_seabed_unet(checkpoint, out, options, provenance) -> ImportedModel:
    return _import_seabed(checkpoint, out, options, provenance, "magicbathynet-seabed-unet",
                          lambda state, classes: (SeabedUNet(3, classes), "U-Net (64-1024, BatchNorm, bilinear up)"))


def import_seabed_segformer(checkpoint, out, options, provenance) -> ImportedModel:
    def build(state, classes):
        try:
            variant = variant_of(state)
        except ValueError as err:
            raise ImportRefused(f"{checkpoint} is not a SegFormer state dict: {err}") from None
        return SegFormer(variant, classes), f"SegFormer MiT-{variant}"

    return _import_seabed(checkpoint, out, options, provenance, "magicbathynet-seabed-segformer", build)


IMPORTERS = tuple(
    Importer(source, "marine", summary, LICENCE, PAPER, URL, run)
    for source, summary, run in (
        ("magicbathynet-bathymetry", "MagicBathyNet bathymetry U-Net", import_bathymetry),
        ("magicbathynet-seabed-unet", "MagicBathyNet seabed-class U-Net", import_seabed_unet),
        ("magicbathynet-seabed-segformer", "MagicBathyNet seabed-class SegFormer", import_seabed_segformer),
    )
)
