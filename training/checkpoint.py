"""Checkpoints that hold only tensors and plain values, so loading them runs no code.

Lightning's own checkpoints pickle arbitrary objects; ours are read with
``torch.load(..., weights_only=True)``, which refuses anything but tensors and plain containers.
"""
from __future__ import annotations

from pathlib import Path

import torch
from lightning import LightningModule, Trainer

from training.families import family_of


CHECKPOINT_FORMAT = "rs-ai-toolbox checkpoint v1"


def save_checkpoint(path: Path, task: str, module: LightningModule, data: dict, provenance: dict,
                    state_dict: dict | None = None) -> None:
    """``data``: what the model was trained on (areas, modality, bands, ...); all plain values.
    ``state_dict``: the module's weights where the module itself holds only a shard of them (FSDP)."""
    state_dict = module.state_dict() if state_dict is None else state_dict
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "task": task,
            "hyper_parameters": dict(module.hparams),
            "state_dict": {name: tensor.cpu() for name, tensor in state_dict.items()},
            "data": data,
            "provenance": provenance,
        },
        path,
    )


def save_fit_checkpoint(trainer: Trainer, path: Path, task: str, module: LightningModule, data: dict,
                        provenance: dict) -> Path:
    """``save_checkpoint`` at the end of a fit, by the rank-0 process only (every process of a
    distributed fit gets here, and takes part in gathering the full weights where FSDP shards them);
    returns ``path``."""
    state_dict = trainer.strategy.lightning_module_state_dict()
    if trainer.is_global_zero:
        save_checkpoint(path, task, module, data, provenance, state_dict)
    return path


def read_checkpoint(path: Path, expected_task: str | None = None, mmap: bool = False) -> dict:
    """The checkpoint's contents, checked to be ours (and of ``expected_task`` if given); ``mmap``: its
    tensors mapped from the file instead of read (to look at its records only)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by `python -m training fit`")
    if expected_task is not None and checkpoint["task"] != expected_task:
        raise ValueError(f"{path} holds a {checkpoint['task']!r} model, not {expected_task!r}")
    return checkpoint


def load_checkpoint(path: Path, expected_task: str | None = None) -> tuple[LightningModule, dict]:
    """Rebuild the task module from a checkpoint (any family's); returns it (in eval mode) and the checkpoint.
    A module class's ``EARLIER_DEFAULTS`` (if it has them) fill the hyperparameters that checkpoints written
    before they existed lack."""
    checkpoint = read_checkpoint(path, expected_task)
    module_class = family_of(checkpoint["task"]).module_class(checkpoint["task"])
    module = module_class(**getattr(module_class, "EARLIER_DEFAULTS", {}) | checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval(), checkpoint
