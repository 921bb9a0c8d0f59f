"""Evaluate text-search checkpoints (R@1/5/10, mAP; ``retrieval``) on a split, and measure the model
cards' free-text queries through exported encoders as the engine runs them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch.utils.data import DataLoader

from engine.contract import TOKENIZER_KEY, contract_from_metadata
from training.checkpoint import load_checkpoint
from training.datasets.gaia import GaiaCaptions
from training.datasets.levir_cc import LevirCCPairs
from training.datasets.paired_modalities import PairedModalities
from training.simulation.land_cover_captions import change_answers, image_answers
from training.text_search.data import CaptionData, ChangeData, PairedData
from training.text_search.retrieval import retrieval_report
from training.text_search.tokenization import tokenize
from training.trainer import evaluation_record

# Free-text queries of the model cards, each with the answer that makes a test item right
# (``land_cover_captions.image_answers`` / ``change_answers``): for tiles, the short noun of their
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


@torch.no_grad()
def evaluate_search(checkpoint: Path, data: Path, split: str = "test", batch_size: int = 64,
                    task: str | None = None) -> dict:
    """Retrieval metrics of a checkpoint (of ``task`` if given) on one split, ranked in one process
    (both directions; see ``retrieval``)."""
    module, saved = load_checkpoint(checkpoint, task)
    task, size = saved["task"], saved["data"]["image_size"]
    if task == "bitemporal":
        items = ChangeData(data, split, batch_size, size)
    elif task == "align-modality":
        folder = saved["data"].get("modality_folder", "multispectral")
        items = PairedData(data, split, batch_size, size, folder, student_view=True)
    else:
        items = CaptionData(data, split, batch_size, size)
    images = torch.cat([module.embed_images(batch) for batch in DataLoader(items.test_set, batch_size=batch_size)])
    texts = module.embed_texts(items.vocabulary.sentences)
    report = retrieval_report(images, texts, items.vocabulary.relevance(items.caption_sets))
    return evaluation_record(task, checkpoint, data, split, space=module.text_space, **report)


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
    image, text = (onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                   for path in (image_model, text_model))
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
