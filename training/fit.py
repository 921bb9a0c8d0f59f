"""Fit a task on MagicBathyNet-layout data and write a safe checkpoint.

The input normalisation is the area's ``norm_param`` file (per-band minimum and maximum, min/max
normalised as in Agrafiotis et al., IGARSS 2024); the mean training depth (bathymetry baseline) and
the class weights (inverse class frequency, seabed) come from the training split. All are stored in
the checkpoint's hyperparameters, so evaluation and export use exactly what training used.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import lightning
import numpy as np
import rasterio
import torch
from torch.utils.data import DataLoader

from training.checkpoint import save_fit_checkpoint
from training.datasets.magicbathynet import IGNORE_INDEX, MagicBathyNet
from training.datasets.magicbathynet_format import DEPTH_SCALE_M, MODALITY_BANDS, MODALITY_GSD_M
from training.input_statistics import input_statistics
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.simulation.shallow_water import REFLECTANCE_SCALE, SITES, deep_ratio_tolerance, simulation_records
from training.tasks.bathymetry import BathymetryTask
from training.tasks.seabed import SeabedTask
from training.transforms import random_dihedral
from training.trainer import fit_provenance, fit_trainer

CHECKPOINT_NAME = "checkpoint.pt"


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
    as in the paper: each has its own normalisation file and depth constant (``DEPTH_SCALE_M``).
    """
    if not max_steps and not epochs:
        raise ValueError("give max_steps or epochs")
    if len(areas) != 1:
        raise ValueError(
            f"fit one area at a time (got {list(areas)}): MagicBathyNet normalises each area with its own "
            "norm_param file and depth constant"
        )
    (area,) = areas
    lightning.seed_everything(seed, workers=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    statistics_view = MagicBathyNet(data, areas, modality, task, "train")
    training_set = MagicBathyNet(data, areas, modality, task, "train", transforms=random_dihedral)
    minimum, maximum = statistics_view.norm_params[area]
    options = dict(model_options or {}) | ({"lr": lr} if lr is not None else {})
    if task == "bathymetry":
        options |= {
            "depth_scale_m": DEPTH_SCALE_M[area],
            "mean_training_depth_m": _mean_depth(statistics_view),
        }
    else:
        options |= {
            "class_names": list(statistics_view.classes),
            "class_colours": ["#{:02x}{:02x}{:02x}".format(*colour) for colour in statistics_view.colours],
            "class_weights": _class_weights(statistics_view),
        }
    module = {"bathymetry": BathymetryTask, "seabed": SeabedTask}[task](band_mean=minimum.tolist(), band_std=(maximum - minimum).tolist(), **options)
    quality = _quality_record(statistics_view, task, modality, simulation_records(data, areas))

    trainer = fit_trainer(out, accelerator, max_steps or -1, epochs or -1, scale_out, deterministic="warn")
    started = time.monotonic()
    loader = DataLoader(
        training_set, batch_size=batch_size, shuffle=True, drop_last=len(training_set) > batch_size
    )
    trainer.fit(module, loader)
    data_description = {
        "root": str(data),
        "areas": list(areas),
        "modality": modality,
        "bands": list(MODALITY_BANDS[modality]),
        "gsd_m": MODALITY_GSD_M[modality],
        "input_units": _input_units(training_set),
        "training_patches": len(training_set),
        "simulation": simulation_records(data, areas),
        "quality": quality,
        "input_statistics": _input_statistics(statistics_view),
    }
    provenance = {
        **fit_provenance(trainer, command, seed, started),
        "final_train_metrics": {name: float(value) for name, value in trainer.callback_metrics.items()},
    }
    return save_fit_checkpoint(trainer, out / CHECKPOINT_NAME, task, module, data_description, provenance)


def _quality_record(dataset: MagicBathyNet, task: str, modality: str, simulation: dict) -> dict:
    """What the engine's quality layers need from the training data (engine/quality.py): the
    depths trained on (0.5 and 99.5 percentiles, bathymetry), the deep-water signal per band and how
    far the green/blue ratio of optically deep water may stray from it, which only simulated data
    knows (the simulator's R_inf, attenuation and noise); real MagicBathyNet patches cover surveyed
    water only."""
    record = {}
    if task == "bathymetry":
        depths = torch.cat([sample["depth"].flatten() for sample in dataset]).numpy()
        record["depth_range_m"] = [round(float(v), 2) for v in np.nanquantile(depths, [0.005, 0.995])]
    if simulation:
        (site_name,) = {entry["area"] for entry in simulation.values()}
        deep = SITES[site_name].deep_water_reflectance
        record["deep_water"] = {band: round(value * REFLECTANCE_SCALE, 1)
                                for band, value in zip(MODALITY_BANDS[modality], deep)}
        record["deep_ratio_tolerance"] = deep_ratio_tolerance(SITES[site_name])
    return record


def _input_statistics(dataset: MagicBathyNet) -> dict:
    """The training pixels' statistics for the engine's out-of-distribution flag, from each patch's
    pixels with data (MagicBathyNet marks missing pixels 0 in every band), in patch order."""
    patches = [sample["image"].flatten(1).numpy() for sample in dataset]
    return input_statistics([patch[:, (patch != 0).any(axis=0)] for patch in patches])


def _mean_depth(dataset: MagicBathyNet) -> float:
    depths = torch.cat([sample["depth"].flatten() for sample in dataset])
    return float(torch.nanmean(depths))


def _class_weights(dataset: MagicBathyNet) -> list[float]:
    """Inverse class frequency, normalised so that a balanced split gives every class weight 1."""
    classes = len(dataset.classes)
    counts = torch.zeros(classes, dtype=torch.float64)
    for sample in dataset:
        labels = sample["mask"][sample["mask"] != IGNORE_INDEX]
        counts += torch.bincount(labels, minlength=classes).double()
    weights = torch.where(counts > 0, counts.sum() / (classes * counts.clamp_min(1)), 0.0)
    return weights.tolist()


def _input_units(dataset: MagicBathyNet) -> str:
    """The ``units`` tag of the first image (the simulator writes it), else unknown."""
    with rasterio.open(dataset.patches[0][0]) as src:
        return src.tags().get("units", "")


def describe_training_data(data: dict) -> str:
    """One honest sentence for model cards and contracts."""
    if data["simulation"]:
        parts = [
            f"{area}: {record['patches']} patches of {record['patch_size']} px square, seed {record['seed']}"
            for area, record in data["simulation"].items()
        ]
        return (
            "SIMULATED Sentinel-2-like shallow-water scenes from training/simulation/shallow_water.py "
            f"(Lyzenga 1978 / Stumpf et al. 2003 attenuation model; {'; '.join(parts)}); "
            "not real MagicBathyNet imagery"
        )
    return f"MagicBathyNet ({', '.join(data['areas'])}, {data['modality']}) read from {data['root']}"

