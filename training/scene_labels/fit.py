"""Fit the reBEN scene-label task (``training.scene_labels.module``) and write a safe checkpoint.

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

from training.checkpoint import save_fit_checkpoint
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.scene_labels.data import SceneLabelsData
from training.scene_labels.module import reben_task
from training.trainer import fit_provenance, fit_trainer

TASK = "scene-labels"
CHECKPOINT_NAME = "checkpoint.pt"
MONITOR = "val_ap_macro"
WARMUP_SHARE = 0.05  # default warm-up: 5% of the optimiser steps


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
    splits = SceneLabelsData(data, modalities, batch_size, num_workers)
    steps_per_epoch = max(1, len(splits.train_set) // batch_size)
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
        limit_val_batches=1.0 if len(splits.val_set) else 0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    started = time.monotonic()
    trainer.fit(module, datamodule=splits)
    provenance = {
        **fit_provenance(trainer, command, seed, started),
        "best_validation_ap_macro": best.best_score,
        "best_validation_step": best.best_step,
        "parameters": sum(parameter.numel() for parameter in module.parameters()),
    }
    return save_fit_checkpoint(trainer, out / CHECKPOINT_NAME, TASK, module, splits.description(seed), provenance)

