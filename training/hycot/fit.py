"""Fit HyCoT (Fuchs, Rasti & Demir, "HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image
Compression", 2024) on HySpecNet-11k (Fuchs & Demir, 2023), read with torchgeo's ``HySpecNet11k`` (202
bands, water-vapour bands dropped), real or simulated (``training/simulation/hyperspectral.py``), and
write a safe checkpoint; ``training.checkpoint.load_checkpoint`` reads it back."""
from __future__ import annotations

from pathlib import Path

from training.hycot.data import HyCoTData
from training.hycot.module import TASK, HyCoTTask
from training.trainer import FitRun, fit_and_save, fit_trainer, start_fit


def fit_hycot(
    run: FitRun,
    compression_ratio: float = 8,
    strategy: str = "easy",
    pixels_per_patch: int = 16,
    model_options: dict | None = None,
) -> Path:
    """Train HyCoT on the ``strategy`` train split of the HySpecNet-11k root ``run.data`` for
    ``run.max_steps`` or ``run.epochs`` (batch size default 16, learning rate 1e-3); returns the checkpoint.

    ``model_options``: ``dim``, ``depth``, ``heads``, ``head_dim``, ``mlp_dim``, ``hidden_dim``,
    ``final_norm``.
    """
    start_fit(run)
    hyspecnet = HyCoTData(run.data, strategy, run.batch_size or 16)
    module = HyCoTTask(len(hyspecnet.train_set.bands), compression_ratio, pixels_per_patch, run.lr or 1e-3,
                       **(model_options or {}))
    trainer = fit_trainer(run, run.max_steps or -1, run.epochs or -1, deterministic="warn")
    return fit_and_save(trainer, module, hyspecnet, run, TASK, lambda: hyspecnet.description(run.seed))
