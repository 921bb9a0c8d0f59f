"""The Lightning trainers every task uses: one quiet single-device set-up for fitting (metrics to
``<out>/metrics.csv``; the tasks save their own safe checkpoints) and one for testing."""
from __future__ import annotations

from pathlib import Path

import lightning
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset


def fit_trainer(out: Path, accelerator: str, max_steps: int = -1, max_epochs: int = -1,
                **options) -> lightning.Trainer:
    return lightning.Trainer(
        accelerator=accelerator, devices=1, max_steps=max_steps, max_epochs=max_epochs,
        logger=CSVLogger(out, name="", version=""), log_every_n_steps=10, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, **options,
    )


def metrics_on(module: lightning.LightningModule, dataset: Dataset, batch_size: int, accelerator: str) -> dict:
    """The module's test metrics over ``dataset``."""
    trainer = lightning.Trainer(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False,
                                enable_model_summary=False)
    return trainer.test(module, DataLoader(dataset, batch_size=batch_size), verbose=False)[0]
