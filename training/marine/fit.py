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
from training.trainer import FitRun, fit_and_save, fit_trainer, start_fit


def fit(
    run: FitRun,
    task: str,
    areas: Sequence[str] = ("agia_napa",),
    modality: str = "s2",
    model_options: dict | None = None,
) -> Path:
    """Train ``task`` ("bathymetry" or "seabed") on ``run.data``; returns the checkpoint path under
    ``run.out``.

    ``model_options``: ``base_channels`` (bathymetry) or ``encoder``, ``encoder_depth``,
    ``decoder_channels`` (seabed). ``run.lr`` defaults to the task's own default, ``run.batch_size``
    to 16. One area per model, as in the paper (``MarineData.for_fit``).
    """
    start_fit(run)
    datamodule = MarineData.for_fit(run.data, areas, modality, task, run.batch_size or 16)
    options = dict(model_options or {}) | ({"lr": run.lr} if run.lr is not None else {})
    module = MODULES[task](**datamodule.task_options(), **options)
    trainer = fit_trainer(run, run.max_steps or -1, run.epochs or -1, deterministic="warn")
    return fit_and_save(trainer, module, datamodule, run, task, datamodule.description)
