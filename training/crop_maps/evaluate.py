"""Evaluate a crop-map checkpoint on a PASTIS-R split: overall accuracy, mean class accuracy, mean
IoU and IoU per class (Tarasiou et al. 2023; the IGARSS 2024 multi-modal TSViT paper), on the
split's patches cut into the training tile size (``training.crop_maps.data.EvaluationTiles``)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassConfusionMatrix

from training.checkpoint import load_checkpoint
from training.crop_maps.data import EvaluationTiles, crop_dataset
from training.crop_maps.fit import TASK
from training.datasets.pastis_r import collate_series
from training.tasks.crop import IGNORE_INDEX, segmentation_scores


def evaluate_crop(
    checkpoint: Path, data: Path, split: str = "test", batch_size: int = 8, accelerator: str = "auto"
) -> dict:
    module, saved = load_checkpoint(checkpoint, TASK)
    hyper = module.hparams
    patches = crop_dataset(data, split, hyper.modalities, saved["data"]["s1_orbit"])
    if not len(patches):
        raise ValueError(f"{data} has no patches in the {split!r} split")
    tiles = EvaluationTiles(patches, module.config.image_size, hyper.max_dates)
    use_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_gpu else "cpu")
    module.to(device)
    confusion = MulticlassConfusionMatrix(len(hyper.class_codes), ignore_index=IGNORE_INDEX).to(device)
    with torch.no_grad():
        for batch in DataLoader(tiles, batch_size=batch_size, collate_fn=collate_series):
            batch = {key: value.to(device) for key, value in batch.items()}
            confusion.update(module(batch).argmax(dim=1), module.targets(batch))
    scores = segmentation_scores(confusion.compute().cpu())
    return {
        "task": TASK,
        "checkpoint": str(checkpoint),
        "data": str(data),
        "split": split,
        "patches": len(patches),
        "tiles": len(tiles),
        "fusion": hyper.fusion,
        "modalities": list(hyper.modalities),
        "metrics": {
            "overall_accuracy": round(float(scores["overall_accuracy"]), 6),
            "mean_accuracy": round(float(scores["mean_accuracy"]), 6),
            "mean_iou": round(float(scores["mean_iou"]), 6),
        },
        "iou_per_class": {
            name: None if torch.isnan(iou) else round(float(iou), 6)
            for name, iou in zip(hyper.class_names, scores["iou_per_class"])
        },
    }
