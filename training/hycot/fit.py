"""Fit HyCoT (Fuchs, Rasti & Demir, "HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image
Compression", 2024) on HySpecNet-11k (Fuchs & Demir, 2023), read with torchgeo's ``HySpecNet11k`` (202
bands, water-vapour bands dropped), real or simulated (``training/simulation/hyperspectral.py``), and
write a safe checkpoint; ``training.hycot.module.load_hycot_checkpoint`` reads it back."""
from __future__ import annotations

import time
from pathlib import Path

from training.checkpoint import save_fit_checkpoint
from training.hycot.data import HyCoTData
from training.hycot.module import TASK, HyCoTTask
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.trainer import fit_provenance, fit_trainer, start_fit

CHECKPOINT_NAME = "checkpoint.pt"


def fit_hycot(
    data: Path,
    out: Path,
    compression_ratio: float = 8,
    strategy: str = "easy",
    max_steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 16,
    pixels_per_patch: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    model_options: dict | None = None,
    accelerator: str = "auto",
    command: str = "",
    scale_out: ScaleOut = SINGLE_DEVICE,
) -> Path:
    """Train HyCoT on the ``strategy`` train split of a HySpecNet-11k root for ``max_steps`` or ``epochs``;
    returns the checkpoint.

    ``model_options``: ``dim``, ``depth``, ``heads``, ``head_dim``, ``mlp_dim``, ``hidden_dim``,
    ``final_norm``.
    """
    out = start_fit(out, seed, max_steps, epochs)
    hyspecnet = HyCoTData(data, strategy, batch_size)
    module = HyCoTTask(len(hyspecnet.train_set.bands), compression_ratio, pixels_per_patch, lr, **(model_options or {}))
    trainer = fit_trainer(out, accelerator, max_steps or -1, epochs or -1, scale_out, deterministic="warn")
    started = time.monotonic()
    trainer.fit(module, datamodule=hyspecnet)
    provenance = {
        **fit_provenance(trainer, command, seed, started),
        "final_train_metrics": {name: float(value) for name, value in trainer.callback_metrics.items()},
    }
    return save_fit_checkpoint(trainer, out / CHECKPOINT_NAME, TASK, module, hyspecnet.description(seed), provenance)
