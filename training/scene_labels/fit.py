"""Fit the reBEN scene-label task (``training.scene_labels.module``) and write a safe checkpoint.

Validation runs on the "val" split every ``validate_every`` steps (default: once per epoch); the
weights with the best validation macro AP are kept (the reference recipe's early stopping), and
training stops after ``patience`` validations without improvement when ``patience`` is given.
"""
from __future__ import annotations

import copy
from pathlib import Path

import lightning
from lightning.pytorch.callbacks import Callback, EarlyStopping

from training.scene_labels.data import SceneLabelsData
from training.scene_labels.module import reben_task
from training.trainer import FitRun, fit_and_save, fit_trainer, start_fit

TASK = "scene-labels"
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
    run: FitRun,
    modalities: str = "s1,s2",
    model: str = "resnet50",
    width: int | None = None,
    depth: int | None = None,
    augment: str = "none",
    weight_decay: float = 0.01,
    warmup_steps: int | None = None,
    dropout: float = 0.15,
    validate_every: int | None = None,
    patience: int | None = None,
) -> Path:
    """Train on ``run.data`` (BigEarthNet v2 root or ``prepare`` store; batch size default 16, learning
    rate 1e-3); returns the checkpoint path."""
    start_fit(run)
    batch_size = run.batch_size or 16
    splits = SceneLabelsData(run.data, modalities, batch_size, run.num_workers)
    steps_per_epoch = max(1, len(splits.train_set) // batch_size)
    total_steps = run.max_steps or run.epochs * steps_per_epoch
    module = reben_task(
        modalities,
        model=model,
        width=width,
        depth=depth,
        dropout=dropout,
        augment=augment,
        lr=1e-3 if run.lr is None else run.lr,
        weight_decay=weight_decay,
        warmup_steps=round(WARMUP_SHARE * total_steps) if warmup_steps is None else warmup_steps,
        total_steps=total_steps,
    )
    best = KeepBestWeights()
    callbacks = [best]
    if patience:
        callbacks.append(EarlyStopping(MONITOR, mode="max", patience=patience))
    trainer = fit_trainer(
        run, total_steps,
        val_check_interval=min(validate_every or steps_per_epoch, total_steps),
        check_val_every_n_epoch=None if validate_every else 1,
        limit_val_batches=1.0 if len(splits.val_set) else 0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    return fit_and_save(trainer, module, splits, run, TASK, lambda: splits.description(run.seed), lambda: {
        "best_validation_ap_macro": best.best_score,
        "best_validation_step": best.best_step,
        "parameters": sum(parameter.numel() for parameter in module.parameters()),
    })
