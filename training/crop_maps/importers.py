"""Importer of TSViT's published PASTIS24 weights (Tarasiou, Chavez, Zafeiriou: "ViTs for SITS:
Vision Transformers for Satellite Image Time Series", CVPR 2023; code and weights:
github.com/michaeltrs/DeepSatModels, README_TSVIT.md).

The authors publish one checkpoint per PASTIS fold, ``best.pth``: ``torch.save(net.state_dict())``
of ``models/TSViT/TSViTdense.TSViT`` (no ``module.`` prefix), configured as in
``configs/PASTIS24/TSViT_fold*.yaml``: Sentinel-2 only, 24 x 24 px, 2 px patches, dim 128, 4 + 4
layers of 4 heads, 19 classes (PASTIS background and 18 crops; void is not predicted), 60 dates at
most. Their inference, which the exported graph reproduces on 24 x 24 tiles:

- input: the 10 PASTIS bands (B02 ... B12, reflectance x 10000) standardised with one fixed
  mean/std (their ``Normalize``, the same for every fold) -> the contract's modality ``s2``;
- the day of year rides along as an 11th channel divided by 365.0001; the network multiplies it
  back, truncates it and embeds it as Linear(366, dim) of its one-hot vector. The graph takes
  ``s2_doy`` and looks the same row up: the table is built with their float32 arithmetic, which
  maps 19 days of the year to the previous day's row;
- a series shorter than 60 dates is padded with zero dates (values 0, day 0) that take part in the
  attention as in training: the graph pads the same way;
- the per-patch outputs become the [K, H, W] map by a plain reshape that does not put a patch's
  pixels at the patch (DeepSatModels issue #22); the weights were trained with it, so the graph
  reassembles the pixels the same way, then applies softmax.

The network is the toolbox's ``TSViT`` (``training.crop_maps.model``), whose layers are the same:
``tsvit_names`` maps the published names and layouts onto it (the mask channel of its patch
embedding gets zero weights, and every token is attendable).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from engine.contract import Band, ModelContract, Modality, Outputs
from training.crop_maps.data import class_colour, class_name
from training.crop_maps.export import CONTRACT_TASK, parity_check, write_crop_onnx
from training.datasets.pastis_r_format import GSD_M, INPUT_UNITS, S2_BANDS
from training.importers import (
    ImportedModel,
    Importer,
    layer_count,
    load_state_dict,
    load_weights,
    refuse_mismatches,
    required_shapes,
    toolbox_name,
)
from training.crop_maps.model import TSViT, TSViTConfig
from training.sentinel_bands import SENTINEL_BANDS

PAPER = ("Tarasiou, Chavez, Zafeiriou: ViTs for SITS: Vision Transformers for Satellite Image Time Series, "
         "CVPR 2023 (PASTIS: Garnot & Landrieu, ICCV 2021)")
LICENCE = "Apache-2.0 (the DeepSatModels repository's licence; the weights carry no separate one)"
URL = "https://github.com/michaeltrs/DeepSatModels/blob/main/README_TSVIT.md#pre-trained-checkpoints"
# Their Normalize (data/PASTIS24/data_transforms.py), in PASTIS band order, used for every fold.
MEAN = (1165.9398193359375, 1375.6534423828125, 1429.2191162109375, 1764.798828125, 2719.273193359375,
        3063.61181640625, 3205.90185546875, 3319.109619140625, 2422.904296875, 1639.370361328125)
STD = (1942.6156005859375, 1881.9234619140625, 1959.3798828125, 1867.2239990234375, 1754.5850830078125,
       1769.4046630859375, 1784.860595703125, 1767.7100830078125, 1458.963623046875, 1299.2833251953125)
DAY_SCALE = 365.0001  # their day-of-year channel is doy / DAY_SCALE
DAY_ROWS = 366  # Linear(366, dim) over the one-hot day
MAX_DATES = 60  # max_seq_len: shorter series are padded with zero dates
CLASSES = 19  # PASTIS 0 (background) .. 18; void (19) is ignored in their training
HEADS = 4  # every PASTIS24 config (TSViT and TSViT-S); not recoverable from the weights
CONVERTED = {"to_patch_embedding.1.weight", "to_patch_embedding.1.bias", "to_temporal_embedding_input.weight",
             "to_temporal_embedding_input.bias", "space_pos_embedding"}  # by tsvit_names, not renamed
RENAMES = (  # published -> training.crop_maps.model, applied in order
    (r"^temporal_transformer\.", "temporal_encoder."),
    (r"^space_transformer\.", "decoder.encoder."),
    (r"\.layers\.(\d+)\.0\.norm\.", r".layers.\1.norm."),
    (r"\.layers\.(\d+)\.0\.fn\.to_out\.", r".layers.\1.attention.to_out."),
    (r"\.layers\.(\d+)\.1\.norm\.", r".layers.\1.feed_forward.0."),
    (r"\.layers\.(\d+)\.1\.fn\.net\.0\.", r".layers.\1.feed_forward.1."),
    (r"\.layers\.(\d+)\.1\.fn\.net\.3\.", r".layers.\1.feed_forward.4."),
    (r"^mlp_head\.", "decoder.to_pixels."),
    (r"^temporal_token$", "class_tokens.tokens"),
)


def day_rows() -> Tensor:
    """The Linear(366) row each day of year 0..366 selects in the reference: the day is divided by
    365.0001 in float32 (their data pipeline), multiplied back and truncated (their network)."""
    days = torch.arange(0, 367, dtype=torch.float32)
    return ((days / DAY_SCALE) * DAY_SCALE).to(torch.int64)


def published_config(state: dict[str, Tensor], checkpoint: Path) -> TSViTConfig:
    """Sizes of the published network, read from its tensors; anything that is not a PASTIS24
    Sentinel-2 TSViT is refused."""
    required = ("temporal_token", "space_pos_embedding", "to_patch_embedding.1.weight", "to_patch_embedding.1.bias",
                "to_temporal_embedding_input.weight", "to_temporal_embedding_input.bias",
                "temporal_transformer.layers.0.0.fn.to_qkv.weight", "temporal_transformer.layers.0.1.fn.net.0.weight")
    shape = required_shapes(state, required, checkpoint, "a TSViT state dict as Tarasiou et al. publish it",
                            "models/TSViT/TSViTdense.py", "give a fold's best.pth of the PASTIS24 checkpoints")
    dim = shape["temporal_token"][-1]
    patch = math.isqrt(shape["to_patch_embedding.1.weight"][-1] // len(S2_BANDS))
    grid = math.isqrt(shape["space_pos_embedding"][1]) if len(shape["space_pos_embedding"]) == 3 else 0
    inner = shape["temporal_transformer.layers.0.0.fn.to_qkv.weight"][0] // 3
    refuse_mismatches((
        (f"temporal_token {shape['temporal_token']}: {CLASSES} PASTIS classes expected",
         shape["temporal_token"] != (1, CLASSES, dim)),
        (f"to_patch_embedding.1.weight {shape['to_patch_embedding.1.weight']}: patches of the "
         f"{len(S2_BANDS)} Sentinel-2 bands expected",
         shape["to_patch_embedding.1.weight"] != (dim, patch**2 * len(S2_BANDS))),
        (f"space_pos_embedding {shape['space_pos_embedding']}: a square patch grid expected",
         shape["space_pos_embedding"] != (1, grid**2, dim)),
        (f"to_temporal_embedding_input {shape['to_temporal_embedding_input.weight']}, "
         f"{shape['to_temporal_embedding_input.bias']}: ({dim}, {DAY_ROWS}) and ({dim},) expected",
         shape["to_temporal_embedding_input.weight"] != (dim, DAY_ROWS)
         or shape["to_temporal_embedding_input.bias"] != (dim,)),
        (f"to_qkv {shape['temporal_transformer.layers.0.0.fn.to_qkv.weight']}: {HEADS} heads expected",
         inner % HEADS),
    ), checkpoint, "TSViT for PASTIS24 Sentinel-2")
    return TSViTConfig(
        image_size=grid * patch, patch_size=patch, dim=dim,
        temporal_depth=layer_count(state, "temporal_transformer.layers"),
        spatial_depth=layer_count(state, "space_transformer.layers"), heads=HEADS, head_dim=inner // HEADS,
        mlp_ratio=shape["temporal_transformer.layers.0.1.fn.net.0.weight"][0] // dim,
    )


def tsvit_names(state: dict[str, Tensor], config: TSViTConfig) -> dict[str, Tensor]:
    """The published tensors under ``training.crop_maps.model``'s names and layouts: the fused q/k/v
    projection split, the patch Linear over (row, column, band) as a convolution with a zero mask
    channel, the day Linear folded into a per-day table, the position embedding as a grid. Names
    it does not know are kept, so that ``load_weights`` reports them."""
    renamed = {}
    for key, value in state.items():
        if key.endswith("fn.to_qkv.weight"):
            query, key_value = value.split([value.shape[0] // 3, 2 * value.shape[0] // 3])
            prefix = key.removesuffix("0.fn.to_qkv.weight")
            for new, tensor in (("to_query", query), ("to_key_value", key_value)):
                renamed[toolbox_name(prefix, RENAMES) + f"attention.{new}.weight"] = tensor
        elif key not in CONVERTED:
            renamed[toolbox_name(key, RENAMES)] = value
    p, grid, bands = config.patch_size, config.image_size // config.patch_size, len(S2_BANDS)
    patch = state["to_patch_embedding.1.weight"].reshape(config.dim, p, p, bands).permute(0, 3, 1, 2)
    renamed["tokenizer.patch_embedding.weight"] = torch.cat([patch, patch.new_zeros(config.dim, 1, p, p)], dim=1)
    renamed["tokenizer.patch_embedding.bias"] = state["to_patch_embedding.1.bias"]
    days = state["to_temporal_embedding_input.weight"].T[day_rows()]
    renamed["tokenizer.day_embedding.weight"] = days + state["to_temporal_embedding_input.bias"]
    renamed["decoder.position_embedding"] = (
        state["space_pos_embedding"].reshape(1, grid, grid, config.dim).permute(0, 3, 1, 2))
    return renamed


def legacy_pixel_order(config: TSViTConfig) -> Tensor:
    """For each pixel of the reference's output (row-major over the tile), the pixel of a
    geometric patch reassembly that holds its value: their reshape lays each patch's p*p outputs
    out consecutively along the rows (DeepSatModels issue #22)."""
    p, size = config.patch_size, config.image_size
    flat = torch.arange(size * size)
    patch, within = flat // p**2, flat % p**2
    row = patch // (size // p) * p + within // p
    column = patch % (size // p) * p + within % p
    return row * size + column


class PublishedTSViT(nn.Module):
    """The authors' inference as a crop-map graph on (s2, s2_doy, s2_mask): the series padded to
    ``MAX_DATES`` with zero dates, every token attended (the mask is not used: their network has
    none), their pixel order, softmax."""

    def __init__(self, network: TSViT, config: TSViTConfig) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("pixel_order", legacy_pixel_order(config), persistent=False)

    def forward(self, *series: Tensor) -> Tensor:
        values, day_of_year, _ = series  # called as the toolbox's crop graphs: graph(*series)
        batch, dates, channels, height, width = values.shape
        values = torch.cat([values, values.new_zeros(batch, MAX_DATES - dates, channels, height, width)], dim=1)
        day_of_year = torch.cat([day_of_year, day_of_year.new_zeros(batch, MAX_DATES - dates)], dim=1)
        tokens = self.network.tokenizer(values, day_of_year, torch.ones_like(values[:, :, 0]))
        tokens.valid = torch.ones_like(tokens.valid)
        logits = self.network.classify(tokens)
        return logits.flatten(2)[:, :, self.pixel_order].reshape(logits.shape).softmax(dim=1)


def import_pastis(checkpoint: Path, out: Path, options: argparse.Namespace, provenance: dict) -> ImportedModel:
    state = load_state_dict(checkpoint)
    config = published_config(state, checkpoint)
    network = TSViT(len(S2_BANDS), CLASSES, config)
    load_weights(network, tsvit_names(state, config), checkpoint,
                 f"TSViT for PASTIS24 ({config.temporal_depth} temporal, {config.spatial_depth} spatial layers)")
    contract = ModelContract(
        task=CONTRACT_TASK, name=out.stem, bands=(), mean=(), std=(),
        modalities=(Modality("s2", tuple(Band(name, *SENTINEL_BANDS[name]) for name in S2_BANDS), MEAN, STD, MAX_DATES),),
        outputs=Outputs(
            kind="classes", names=tuple(class_name(code) for code in range(CLASSES)),
            colors=tuple(class_colour(code) for code in range(CLASSES)),
            description="per-pixel crop class probabilities (softmax over the classes, PASTIS nomenclature)",
        ),
        tile_size=config.image_size, overlap=config.image_size // 3, gsd_m=GSD_M,
        input_units=f"s2: {INPUT_UNITS['s2']}",
        provenance=provenance | {"architecture": "TSViT (TSViTdense.TSViT)", "model": config.as_dict(),
                                 "class_codes": list(range(CLASSES)), "modalities": {"s2": "Sentinel-2 L2A"}},
    )
    graph = PublishedTSViT(network, config).eval()
    write_crop_onnx(graph, ["s2"], [len(S2_BANDS)], config.image_size, out, contract,
                    dynamic_size=False, max_dates=MAX_DATES)
    return ImportedModel(
        (out,), parity_check(graph, out, ["s2"], [len(S2_BANDS)],
                             ((2, [MAX_DATES], config.image_size), (1, [7], config.image_size))),
        f"TSViT, {config.dim} wide, {config.temporal_depth} temporal and {config.spatial_depth} spatial layers of "
        f"{HEADS} heads, {config.patch_size} px patches, on {config.image_size} px tiles of up to {MAX_DATES} dates",
        ("Sentinel-2 only, trained on PASTIS (France, Sept. 2018 - Nov. 2019): other regions, years and crop "
         "calendars were not evaluated by the authors.",
         "The network has no validity mask, as in training (PASTIS keeps cloudy dates): clouds are seen as "
         "data and nodata pixels enter as the band mean (0 after standardisation).",
         f"More than {MAX_DATES} dates are subsampled evenly by the engine; the authors keep the first "
         f"{MAX_DATES} in day-of-year order.",
         "Tiles overlap and their probabilities are blended; the authors predict disjoint 24 x 24 crops.",
         "The output keeps the authors' pixel reassembly (DeepSatModels issue #22), which the weights were "
         "trained with."),
    )


IMPORTERS = (
    Importer("tsvit-pastis", "crop_maps", "TSViT crop-type segmentation, PASTIS24 (Sentinel-2)", LICENCE, PAPER,
             URL, import_pastis),
)
