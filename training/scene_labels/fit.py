"""Fit the reBEN scene-label task (``training.tasks.scene_labels``) and write a safe checkpoint.

Validation runs on the "val" split every ``validate_every`` steps (default: once per epoch); the
weights with the best validation macro AP are kept (the reference recipe's early stopping), and
training stops after ``patience`` validations without improvement when ``patience`` is given.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import lightning
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch.utils.data import DataLoader

from training.checkpoint import save_fit_checkpoint
from training.datasets.ben_labels import CLASS_COLOURS, CLASS_NAMES
from training.datasets.reben_format import BAND_MEAN, BAND_STD, MODALITY_BANDS
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.scene_labels.data import describe_data, scene_label_dataset, training_input_statistics
from training.tasks.scene_labels import SceneLabelsTask
from training.trainer import fit_provenance, fit_trainer

TASK = "scene-labels"
CHECKPOINT_NAME = "checkpoint.pt"
MONITOR = "val_ap_macro"
WARMUP_SHARE = 0.05  # default warm-up: 5% of the optimiser steps


def reben_task(modalities: str, **hyperparameters) -> SceneLabelsTask:
    """A scene-labels module for ``modalities`` with reBEN's band statistics and the 19 classes."""
    bands = MODALITY_BANDS[modalities]
    return SceneLabelsTask(band_mean=[BAND_MEAN[band] for band in bands], band_std=[BAND_STD[band] for band in bands],
                           class_names=list(CLASS_NAMES), class_colours=list(CLASS_COLOURS), **hyperparameters)


class KeepBestWeights(Callback):
    """Remembers the weights of the best validation macro AP and restores them when fit ends."""

    def __init__(self) -> None:
        self.best_score: float | None = None
        self.best_step = 0
        self._weights: dict | None = None

    def on_validation_end(self, trainer: lightning.Trainer, module: lightning.LightningModule) -> None:
        score = trainer.callback_metrics.get(MONITOR)
        if score is not None and (self.best_score is None or float(score) > self.best_score):
            self.best_score, self.best_step = float(score), trainer.global_step
            self._weights = copy.deepcopy(module.state_dict())

    def on_fit_end(self, trainer: lightning.Trainer, module: lightning.LightningModule) -> None:
        if self._weights is not None:
            module.load_state_dict(self._weights)


def fit_scene_labels(
    data: Path,
    out: Path,
    modalities: str = "s1,s2",
    model: str = "resnet50",
    width: int | None = None,
    depth: int | None = None,
    augment: str = "none",
    max_steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 16,
    lr: float | None = None,
    weight_decay: float = 0.01,
    warmup_steps: int | None = None,
    dropout: float = 0.15,
    validate_every: int | None = None,
    patience: int | None = None,
    seed: int = 0,
    accelerator: str = "auto",
    num_workers: int = 0,
    command: str = "",
    scale_out: ScaleOut = SINGLE_DEVICE,
) -> Path:
    """Train on ``data`` (BigEarthNet v2 root or ``prepare`` store); returns the checkpoint path."""
    if not max_steps and not epochs:
        raise ValueError("give max_steps or epochs")
    lightning.seed_everything(seed, workers=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    training_set = scene_label_dataset(data, "train", modalities, flips=True)
    validation_set = scene_label_dataset(data, "val", modalities)
    steps_per_epoch = max(1, len(training_set) // batch_size)
    total_steps = max_steps or epochs * steps_per_epoch
    module = reben_task(
        modalities,
        model=model,
        width=width,
        depth=depth,
        dropout=dropout,
        augment=augment,
        lr=1e-3 if lr is None else lr,
        weight_decay=weight_decay,
        warmup_steps=round(WARMUP_SHARE * total_steps) if warmup_steps is None else warmup_steps,
        total_steps=total_steps,
    )
    best = KeepBestWeights()
    callbacks = [best]
    if patience:
        callbacks.append(EarlyStopping(MONITOR, mode="max", patience=patience))
    trainer = fit_trainer(
        out, accelerator, total_steps, scale_out=scale_out,
        val_check_interval=min(validate_every or steps_per_epoch, total_steps),
        check_val_every_n_epoch=None if validate_every else 1,
        limit_val_batches=1.0 if len(validation_set) else 0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    loader_options = {"batch_size": batch_size, "num_workers": num_workers, "persistent_workers": num_workers > 0}
    started = time.monotonic()
    trainer.fit(
        module,
        DataLoader(training_set, shuffle=True, drop_last=len(training_set) > batch_size, **loader_options),
        DataLoader(validation_set, **loader_options),
    )
    provenance = {
        **fit_provenance(trainer, command, seed, started),
        "best_validation_ap_macro": best.best_score,
        "best_validation_step": best.best_step,
        "parameters": sum(parameter.numel() for parameter in module.parameters()),
    }
    description = describe_data(data, modalities, len(training_set)) | {
        "input_statistics": training_input_statistics(data, modalities, seed)}
    return save_fit_checkpoint(trainer, out / CHECKPOINT_NAME, TASK, module, description, provenance)

