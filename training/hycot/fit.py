"""Fit HyCoT (Fuchs, Rasti & Demir, "HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image
Compression", 2024) on HySpecNet-11k (Fuchs & Demir, 2023), read with torchgeo's ``HySpecNet11k`` (202
bands, water-vapour bands dropped), real or simulated (``training/simulation/hyperspectral.py``), and
write a safe checkpoint; ``load_hycot_checkpoint`` reads it back."""
from __future__ import annotations

import time
from pathlib import Path

import lightning
import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import HySpecNet11k

from training.checkpoint import CHECKPOINT_FORMAT, save_fit_checkpoint
from training.hycot.data import training_input_statistics
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.simulation.hyperspectral import GSD_M, read_simulation_record
from training.tasks.hycot import HyCoTTask, scale_reflectance
from training.trainer import fit_provenance, fit_trainer

TASK = "hycot"
CHECKPOINT_NAME = "checkpoint.pt"
PAPER = (
    "Fuchs, Rasti, Demir: HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image Compression, WHISPERS "
    "2024 (arXiv:2408.08700) (data: Fuchs, Demir: HySpecNet-11k, IGARSS 2023)"
)
INPUT_UNITS = "surface reflectance x 10000"


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
    """Train HyCoT on the ``strategy`` train split of a HySpecNet-11k root; returns the checkpoint.

    ``model_options``: ``dim``, ``depth``, ``heads``, ``head_dim``, ``mlp_dim``, ``hidden_dim``,
    ``final_norm``.
    """
    if not max_steps and not epochs:
        raise ValueError("give max_steps or epochs")
    lightning.seed_everything(seed, workers=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    training_set = HySpecNet11k(data, split="train", strategy=strategy, transforms=scale_reflectance)
    module = HyCoTTask(len(training_set.bands), compression_ratio, pixels_per_patch, lr, **(model_options or {}))
    trainer = fit_trainer(out, accelerator, max_steps or -1, epochs or -1, scale_out, deterministic="warn")
    started = time.monotonic()
    loader = DataLoader(training_set, batch_size=batch_size, shuffle=True, drop_last=len(training_set) > batch_size)
    trainer.fit(module, loader)
    data_description = {
        "root": str(data),
        "dataset": "HySpecNet-11k",
        "strategy": strategy,
        "bands": list(training_set.bands),
        "wavelengths_nm": [round(float(w) * 1000.0, 1) for w in training_set.wavelengths],
        "gsd_m": GSD_M,
        "input_units": INPUT_UNITS,
        "training_patches": len(training_set),
        "simulation": read_simulation_record(data),
        "input_statistics": training_input_statistics(data, strategy, seed),
    }
    provenance = {
        **fit_provenance(trainer, command, seed, started),
        "final_train_metrics": {name: float(value) for name, value in trainer.callback_metrics.items()},
    }
    return save_fit_checkpoint(trainer, out / CHECKPOINT_NAME, TASK, module, data_description, provenance)


def load_hycot_checkpoint(path: Path) -> tuple[HyCoTTask, dict]:
    """Rebuild the HyCoT module from a checkpoint read with ``weights_only=True`` (runs no code).

    Checkpoints written before ``final_norm`` existed all have the final LayerNorm."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by `python -m training fit`")
    if checkpoint["task"] != TASK:
        raise ValueError(f"{path} holds a {checkpoint['task']!r} model, not {TASK!r}")
    module = HyCoTTask(**{"final_norm": True, **checkpoint["hyper_parameters"]})
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval(), checkpoint
