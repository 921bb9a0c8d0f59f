"""Fit a task on MagicBathyNet-layout data and write a safe checkpoint.

The input normalisation is the area's ``norm_param`` file (per-band minimum and maximum, min/max
normalised as in Agrafiotis et al., IGARSS 2024); the mean training depth (bathymetry baseline) and
the class weights (inverse class frequency, seabed) come from the training split
(``training/marine/data.py``). All are stored in the checkpoint's hyperparameters, so evaluation and
export use exactly what training used.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from training.marine.data import MarineData
from training.marine.module import MODULES
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.trainer import fit_and_save, fit_trainer, start_fit


def fit(
    task: str,
    data: Path,
    out: Path,
    areas: Sequence[str] = ("agia_napa",),
    modality: str = "s2",
    max_steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 16,
    lr: float | None = None,
    seed: int = 0,
    model_options: dict | None = None,
    accelerator: str = "auto",
    command: str = "",
    scale_out: ScaleOut = SINGLE_DEVICE,
) -> Path:
    """Train ``task`` ("bathymetry" or "seabed"); returns the checkpoint path under ``out``.

    ``model_options``: ``base_channels`` (bathymetry) or ``encoder``, ``encoder_depth``,
    ``decoder_channels`` (seabed). ``lr`` defaults to the task's own default. One area per model,
    as in the paper (``MarineData.for_fit``).
    """
    out = start_fit(out, seed, max_steps, epochs)
    datamodule = MarineData.for_fit(data, areas, modality, task, batch_size)
    options = dict(model_options or {}) | ({"lr": lr} if lr is not None else {})
    module = MODULES[task](**datamodule.task_options(), **options)
    trainer = fit_trainer(out, accelerator, max_steps or -1, epochs or -1, scale_out, deterministic="warn")
    return fit_and_save(trainer, module, datamodule, out, task, command, seed, datamodule.description)
