"""The Lightning trainers every task uses: one quiet single-device set-up for fitting (metrics to
``<out>/metrics.csv``; the tasks save their own safe checkpoints), the provenance every fit
records, and one set-up for testing."""
from __future__ import annotations

import time
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


def fit_provenance(trainer: lightning.Trainer, command: str, seed: int, started: float) -> dict:
    """What every checkpoint records of its fit: the command, seed, steps, epochs and seconds since
    ``started`` (a ``time.monotonic()`` reading)."""
    return {"command": command, "seed": seed, "steps": trainer.global_step, "epochs": trainer.current_epoch,
            "seconds": round(time.monotonic() - started, 1)}


def metrics_on(module: lightning.LightningModule, dataset: Dataset, batch_size: int, accelerator: str) -> dict:
    """The module's test metrics over ``dataset``."""
    trainer = lightning.Trainer(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False,
                                enable_model_summary=False)
    return trainer.test(module, DataLoader(dataset, batch_size=batch_size), verbose=False)[0]
