"""Fit a crop-map TSViT (``training.crop_maps.module``) on PASTIS-R-layout data and write a safe checkpoint.

Normalisation statistics (per band, valid pixels of the training folds) and the predicted classes
(the PASTIS labels present in the training folds, void excluded) come from the training split and
are stored in the checkpoint's hyperparameters, so evaluation and export use what training used.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.crop_maps.data import (
    MODALITY_BANDS,
    CropData,
    band_statistics,
    class_colour,
    class_name,
    crop_dataset,
    present_class_codes,
)
from training.crop_maps.model import TSViTConfig
from training.crop_maps.module import CropMappingTask
from training.trainer import FitRun, fit_and_save, fit_trainer, start_fit

TASK = "crop"
WARMUP_SHARE = 0.05


def fit_crop(
    run: FitRun,
    modalities: Sequence[str] = ("s2", "s1"),
    fusion: str | None = None,
    s1_orbit: str = "s1a",
    config: TSViTConfig = TSViTConfig(),
    max_dates: dict[str, int] | None = None,
    weight_decay: float = 0.01,
    warmup_steps: int | None = None,
) -> Path:
    """Train on the training folds of ``run.data`` (batch size default 8, learning rate 1e-3); returns
    the checkpoint path under ``run.out``.

    ``fusion``: one of ``training.crop_maps.model.FUSIONS`` for two modalities, None for one;
    ``config.image_size`` is the training tile; ``max_dates`` the most dates per modality in a
    training sample (default: S2 32, S1 32).
    """
    start_fit(run)
    batch_size = run.batch_size or 8
    max_dates = {m: (max_dates or {}).get(m, 32) for m in modalities}
    statistics_view = crop_dataset(run.data, "train", modalities, s1_orbit)
    training = CropData(run.data, modalities, s1_orbit, config.image_size, max_dates, batch_size, run.num_workers)
    mean, std = band_statistics(statistics_view)
    codes = present_class_codes(statistics_view)
    total_steps = run.max_steps or run.epochs * max(1, len(training.train_set) // batch_size)
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
        lr=1e-3 if run.lr is None else run.lr,
        weight_decay=weight_decay,
        warmup_steps=round(WARMUP_SHARE * total_steps) if warmup_steps is None else warmup_steps,
        total_steps=total_steps,
    )
    trainer = fit_trainer(run, total_steps, limit_val_batches=0)
    return fit_and_save(trainer, module, training, run, TASK, lambda: training.description(run.seed),
                        lambda: {"parameters": sum(p.numel() for p in module.network.parameters()),
                                 "final_train_loss": float(trainer.callback_metrics.get("train_loss", float("nan")))})
