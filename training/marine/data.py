"""MagicBathyNet data for the marine tasks (Agrafiotis et al., IGARSS 2024): the LightningDataModule over
``training/datasets/magicbathynet.MagicBathyNet``, and what the checkpoints and contracts record of the
training split.

The input normalisation is the area's ``norm_param`` file (per-band minimum and maximum, min/max
normalised as in the paper); the mean training depth (bathymetry baseline) and the class weights
(inverse class frequency, seabed) come from the training split. ``MarineData.task_options`` gives them to
the task module, whose hyperparameters keep them, so evaluation and export use exactly what training used.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch

from training.datasets.magicbathynet import IGNORE_INDEX, MagicBathyNet
from training.datasets.magicbathynet_format import DEPTH_SCALE_M, MODALITY_BANDS, MODALITY_GSD_M
from training.input_statistics import input_statistics
from training.simulation.shallow_water import REFLECTANCE_SCALE, SITES, deep_ratio_tolerance, simulation_records
from training.trainer import FamilyData


def random_dihedral(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply one random flip/rotation by 90 degrees to every raster in the sample alike (a torchgeo-style
    transform).

    Seabed and water have no preferred orientation, so the eight symmetries of the square are
    equally likely views of a patch; uses torch's global generator (seeded by Lightning).
    """
    quarter_turns = int(torch.randint(4, ()))
    flip = bool(torch.randint(2, ()))
    transformed = {}
    for key, raster in sample.items():
        raster = torch.rot90(raster, quarter_turns, dims=(-2, -1))
        transformed[key] = torch.flip(raster, dims=(-1,)) if flip else raster
    return transformed


class MarineData(FamilyData):
    """MagicBathyNet patches of one task (``bathymetry`` or ``seabed``) and modality under ``root``.

    ``for_fit``: one area's train split, every patch in a random flip and 90-degree rotation
    (``random_dihedral``), and the same patches untransformed (``statistics_view``) for the statistics
    the module and checkpoint record. ``for_test``: the ``split`` patches of ``areas``, for evaluation.
    """

    def __init__(self, root: Path, areas: Sequence[str], modality: str, task: str, batch_size: int) -> None:
        super().__init__(batch_size)
        self.root, self.areas, self.modality, self.task = Path(root), list(areas), modality, task
        self.statistics_view: MagicBathyNet | None = None

    @classmethod
    def for_fit(cls, root: Path, areas: Sequence[str], modality: str, task: str, batch_size: int) -> MarineData:
        """One area per model, as in the paper: each has its own normalisation file and depth constant
        (``DEPTH_SCALE_M``)."""
        if len(areas) != 1:
            raise ValueError(
                f"fit one area at a time (got {list(areas)}): MagicBathyNet normalises each area with its own "
                "norm_param file and depth constant"
            )
        data = cls(root, areas, modality, task, batch_size)
        data.statistics_view = MagicBathyNet(root, areas, modality, task, "train")
        data.train_set = MagicBathyNet(root, areas, modality, task, "train", transforms=random_dihedral)
        return data

    @classmethod
    def for_test(cls, root: Path, areas: Sequence[str], modality: str, task: str, split: str,
                 batch_size: int) -> MarineData:
        data = cls(root, areas, modality, task, batch_size)
        data.test_set = MagicBathyNet(root, areas, modality, task, split)
        return data

    def task_options(self) -> dict:
        """The task module's arguments that come from the training split: the normalisation, and the
        depth constant and mean depth (bathymetry) or the class table and weights (seabed)."""
        (area,) = self.areas
        view = self.statistics_view
        minimum, maximum = view.norm_params[area]
        options = {"band_mean": minimum.tolist(), "band_std": (maximum - minimum).tolist()}
        if self.task == "bathymetry":
            return options | {"depth_scale_m": DEPTH_SCALE_M[area], "mean_training_depth_m": mean_depth(view)}
        return options | {
            "class_names": list(view.classes),
            "class_colours": ["#{:02x}{:02x}{:02x}".format(*colour) for colour in view.colours],
            "class_weights": class_weights(view),
        }

    def description(self) -> dict:
        """What the checkpoint records of the training data (``describe_training_data`` reads it)."""
        simulation = simulation_records(self.root, self.areas)
        return {
            "root": str(self.root),
            "areas": self.areas,
            "modality": self.modality,
            "bands": list(MODALITY_BANDS[self.modality]),
            "gsd_m": MODALITY_GSD_M[self.modality],
            "input_units": input_units(self.train_set),
            "training_patches": len(self.train_set),
            "simulation": simulation,
            "quality": quality_record(self.statistics_view, self.task, self.modality, simulation),
            "input_statistics": training_input_statistics(self.statistics_view),
        }


def quality_record(dataset: MagicBathyNet, task: str, modality: str, simulation: dict) -> dict:
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


def training_input_statistics(dataset: MagicBathyNet) -> dict:
    """The training pixels' statistics for the engine's out-of-distribution flag, from each patch's
    pixels with data (MagicBathyNet marks missing pixels 0 in every band), in patch order."""
    patches = [sample["image"].flatten(1).numpy() for sample in dataset]
    return input_statistics([patch[:, (patch != 0).any(axis=0)] for patch in patches])


def mean_depth(dataset: MagicBathyNet) -> float:
    depths = torch.cat([sample["depth"].flatten() for sample in dataset])
    return float(torch.nanmean(depths))


def class_weights(dataset: MagicBathyNet) -> list[float]:
    """Inverse class frequency, normalised so that a balanced split gives every class weight 1."""
    classes = len(dataset.classes)
    counts = torch.zeros(classes, dtype=torch.float64)
    for sample in dataset:
        labels = sample["mask"][sample["mask"] != IGNORE_INDEX]
        counts += torch.bincount(labels, minlength=classes).double()
    weights = torch.where(counts > 0, counts.sum() / (classes * counts.clamp_min(1)), 0.0)
    return weights.tolist()


def input_units(dataset: MagicBathyNet) -> str:
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
