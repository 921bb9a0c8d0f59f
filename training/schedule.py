"""Optimiser shared by the MagicBathyNet tasks."""
from __future__ import annotations

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
