"""Fit a crop-map TSViT (``training.tasks.crop``) on PASTIS-R-layout data and write a safe checkpoint.

Normalisation statistics (per band, valid pixels of the training folds) and the predicted classes
(the PASTIS labels present in the training folds, void excluded) come from the training split and
are stored in the checkpoint's hyperparameters, so evaluation and export use what training used.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import lightning
from torch.utils.data import DataLoader

from training.checkpoint import save_fit_checkpoint
from training.crop_maps.data import (
    MODALITY_BANDS,
    RandomTrainingView,
    band_statistics,
    class_colour,
    class_name,
    crop_dataset,
    describe_data,
    present_class_codes,
    training_input_statistics,
)
from training.datasets.pastis_r import collate_series
from training.models.tsvit import TSViTConfig
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.tasks.crop import CropMappingTask
from training.trainer import fit_provenance, fit_trainer

TASK = "crop"
CHECKPOINT_NAME = "checkpoint.pt"
WARMUP_SHARE = 0.05


def fit_crop(
    data: Path,
    out: Path,
    modalities: Sequence[str] = ("s2", "s1"),
    fusion: str | None = None,
    s1_orbit: str = "s1a",
    config: TSViTConfig = TSViTConfig(),
    max_dates: dict[str, int] | None = None,
    max_steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 8,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_steps: int | None = None,
    seed: int = 0,
    accelerator: str = "auto",
    num_workers: int = 0,
    command: str = "",
    scale_out: ScaleOut = SINGLE_DEVICE,
) -> Path:
    """Train on the training folds of ``data``; returns the checkpoint path under ``out``.

    ``fusion``: one of ``training.models.tsvit_fusion.FUSIONS`` for two modalities, None for one;
    ``config.image_size`` is the training tile; ``max_dates`` the most dates per modality in a
    training sample (default: S2 32, S1 32).
    """
    if not max_steps and not epochs:
        raise ValueError("give max_steps or epochs")
    lightning.seed_everything(seed, workers=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    max_dates = {m: (max_dates or {}).get(m, 32) for m in modalities}
    statistics_view = crop_dataset(data, "train", modalities, s1_orbit)
    training_set = crop_dataset(data, "train", modalities, s1_orbit, RandomTrainingView(config.image_size, max_dates))
    mean, std = band_statistics(statistics_view)
    codes = present_class_codes(statistics_view)
    total_steps = max_steps or epochs * max(1, len(training_set) // batch_size)
    module = CropMappingTask(
        modalities=list(modalities),
        band_names={m: list(MODALITY_BANDS[m]) for m in modalities},
        band_mean=mean,
        band_std=std,
        class_codes=codes,
        class_names=[class_name(code) for code in codes],
        class_colours=[class_colour(code) for code in codes],
        fusion=fusion,
        model=config.as_dict(),
        max_dates=max_dates,
        lr=lr,
        weight_decay=weight_decay,
        warmup_steps=round(WARMUP_SHARE * total_steps) if warmup_steps is None else warmup_steps,
        total_steps=total_steps,
    )
    trainer = fit_trainer(out, accelerator, total_steps, scale_out=scale_out, limit_val_batches=0)
    loader = DataLoader(
        training_set, batch_size=batch_size, shuffle=True, drop_last=len(training_set) > batch_size,
        collate_fn=collate_series, num_workers=num_workers, persistent_workers=num_workers > 0,
    )
    started = time.monotonic()
    trainer.fit(module, loader)
    provenance = {
        **fit_provenance(trainer, command, seed, started),
        "parameters": sum(p.numel() for p in module.network.parameters()),
        "final_train_loss": float(trainer.callback_metrics.get("train_loss", float("nan"))),
    }
    description = describe_data(data, modalities, s1_orbit, len(training_set)) | {
        "input_statistics": training_input_statistics(data, modalities, s1_orbit, seed)}
    return save_fit_checkpoint(trainer, out / CHECKPOINT_NAME, TASK, module, description, provenance)
