"""Evaluate a crop-map checkpoint on a PASTIS-R split: overall accuracy, mean class accuracy, mean
IoU and IoU per class (Tarasiou et al. 2023; the IGARSS 2024 multi-modal TSViT paper), on the
split's patches cut into the training tile size (``training.crop_maps.data.EvaluationTiles``)."""
from __future__ import annotations

import math
from pathlib import Path

from training.checkpoint import load_checkpoint
from training.crop_maps.data import CropData
from training.crop_maps.fit import TASK
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.trainer import evaluation_record, test_metrics


def evaluate_crop(
    checkpoint: Path, data: Path, split: str = "test", batch_size: int = 8, accelerator: str = "auto",
    scale_out: ScaleOut = SINGLE_DEVICE,
) -> dict:
    module, saved = load_checkpoint(checkpoint, TASK)
    hyper = module.hparams
    tested = CropData(data, hyper.modalities, saved["data"]["s1_orbit"], module.config.image_size, hyper.max_dates,
                      batch_size, test_split=split)
    metrics = test_metrics(module, tested, accelerator, scale_out)
    return evaluation_record(
        TASK, checkpoint, data, split,
        patches=len(tested.test_set.patches),
        tiles=len(tested.test_set),
        fusion=hyper.fusion,
        modalities=list(hyper.modalities),
        metrics={name: round(float(metrics[name]), 6) for name in ("overall_accuracy", "mean_accuracy", "mean_iou")},
        iou_per_class={
            name: None if math.isnan(metrics[f"iou_{name}"]) else round(float(metrics[f"iou_{name}"]), 6)
            for name in hyper.class_names
        },
    )
