"""Optimisers and learning-rate schedules the tasks share."""
from __future__ import annotations

import math

import torch
from lightning import LightningModule


def adam_with_cosine_decay(module: LightningModule, lr: float) -> dict:
    """Adam whose learning rate decays to zero along a cosine over the run's steps.

    The paper lowers Adam's rate in steps late in training; a cosine over the known number of
    steps does the same smoothly, so the final weights are not those of a noisy full-rate step.
    """
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=int(module.trainer.estimated_stepping_batches)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": decay, "interval": "step"}}


def adamw_with_warmup_cosine(module: LightningModule) -> dict:
    """AdamW (the module's ``lr`` and ``weight_decay`` hyperparameters) whose learning rate warms up
    linearly over ``warmup_steps`` and then decays to zero along a cosine at ``total_steps``, stepped
    every optimiser step (``warmup_cosine``)."""
    hyper = module.hparams
    optimiser = torch.optim.AdamW(module.parameters(), lr=hyper.lr, weight_decay=hyper.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: warmup_cosine(step, hyper.warmup_steps, hyper.total_steps)
    )
    return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear from 1/warmup to 1 over ``warmup_steps``, then cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * progress))
