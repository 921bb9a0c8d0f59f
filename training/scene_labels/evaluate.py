"""Evaluate a scene-label checkpoint on a reBEN split with the paper's metrics (Clasen et al., 2024):
average precision, F1 and precision, macro and micro; macro averages skip classes absent from
the split, and ``classes_present`` says how many were present."""
from __future__ import annotations

from pathlib import Path

from training.checkpoint import load_checkpoint
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.scene_labels.data import SceneLabelsData, classes_in_split
from training.scene_labels.fit import TASK
from training.trainer import evaluation_record, test_metrics


def evaluate_scene_labels(
    checkpoint: Path, data: Path, split: str = "test", batch_size: int = 32, accelerator: str = "auto",
    scale_out: ScaleOut = SINGLE_DEVICE,
) -> dict:
    module, saved = load_checkpoint(checkpoint, TASK)
    splits = SceneLabelsData(data, saved["data"]["modalities"], batch_size, test_split=split)
    if not len(splits.test_set):
        raise ValueError(f"{data} has no patches in the {split!r} split")
    metrics = test_metrics(module, splits, accelerator, scale_out)
    return evaluation_record(
        TASK, checkpoint, data, split,
        patches=len(splits.test_set),
        classes_present=len(classes_in_split(data, split)),
        metrics={name: round(float(value), 6) for name, value in metrics.items()},
    )
