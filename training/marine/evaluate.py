"""Evaluate a checkpoint on a split of MagicBathyNet-layout data with the paper's metrics."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.checkpoint import load_checkpoint
from training.marine.data import MarineData
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.simulation.shallow_water import simulation_records
from training.trainer import evaluation_record, test_metrics


def evaluate(
    checkpoint: Path,
    data: Path,
    areas: Sequence[str] | None = None,
    split: str = "test",
    batch_size: int = 16,
    accelerator: str = "auto",
    expected_task: str | None = None,
    scale_out: ScaleOut = SINGLE_DEVICE,
) -> dict:
    """Bathymetry: RMSE, MAE, std and bias of the error (m) and the mean-depth baseline RMSE;
    seabed: overall accuracy, per-class and mean F1. Areas default to the training areas."""
    module, saved = load_checkpoint(checkpoint, expected_task)
    areas = list(areas or saved["data"]["areas"])
    datamodule = MarineData.for_test(data, areas, saved["data"]["modality"], saved["task"], split, batch_size)
    metrics = test_metrics(module, datamodule, accelerator, scale_out)
    return evaluation_record(
        saved["task"], checkpoint, data, split,
        areas=areas,
        patches=len(datamodule.test_set),
        simulation=simulation_records(data, areas),
        metrics={name: round(float(value), 6) for name, value in metrics.items()},
    )
