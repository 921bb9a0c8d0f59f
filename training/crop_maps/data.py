"""Crop-map data: PASTIS-R splits, training views (random tile, dihedral symmetry, date subsets),
evaluation tiles, their Lightning data module, normalisation statistics and the class list.

TSViT trains on small tiles cut from PASTIS patches (PASTIS24: 24 x 24 crops of the 128 x 128
patches, Tarasiou et al. 2023). Training samples a random tile, one of the 8 symmetries of the
square and, per modality, a random subset of at most ``max_dates`` dates (kept in time order).
Evaluation cuts every patch into a grid of non-overlapping tiles (a remainder narrower than a tile
at the right and bottom is not evaluated) and keeps at most ``max_dates`` evenly spaced dates,
which is what the engine does with longer series.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchgeo.datasets import PASTIS

from training.datasets.pastis_r import PASTISR, collate_series
from training.input_statistics import series_statistics
from training.datasets.pastis_r_format import (
    FOLDS,
    GSD_M,
    INPUT_UNITS,
    S1_CHANNELS,
    S2_BANDS,
    SIMULATION_RECORD,
    VOID_LABEL,
    pastis_directory,
)
from training.trainer import FamilyData

MODALITY_BANDS = {"s2": S2_BANDS, "s1": S1_CHANNELS}


def class_name(code: int) -> str:
    return PASTIS.classes[code]


def class_colour(code: int) -> str:
    return "#{:02x}{:02x}{:02x}".format(*PASTIS.cmap[code][:3])


def evenly_spaced(count: int, keep: int) -> Tensor:
    """Indices of ``min(count, keep)`` dates spread evenly over ``count`` (first and last kept)."""
    if count <= keep:
        return torch.arange(count)
    return torch.linspace(0, count - 1, keep).round().long()


def select_dates(sample: dict[str, Tensor], modality: str, indices: Tensor) -> None:
    for key in (modality, f"{modality}_doy", f"{modality}_mask"):
        sample[key] = sample[key][indices]


def spatial_keys(sample: dict[str, Tensor]) -> list[str]:
    return [key for key in sample if not key.endswith("_doy")]


class RandomTrainingView:
    """Random tile, random symmetry of the square and random date subsets (training transform)."""

    def __init__(self, tile_size: int, max_dates: dict[str, int]) -> None:
        self.tile_size, self.max_dates = tile_size, max_dates

    def __call__(self, sample: dict[str, Tensor]) -> dict[str, Tensor]:
        height, width = sample["label"].shape
        top = int(torch.randint(height - self.tile_size + 1, ()))
        left = int(torch.randint(width - self.tile_size + 1, ()))
        quarter_turns, flip = int(torch.randint(4, ())), bool(torch.randint(2, ()))
        for key in spatial_keys(sample):
            tile = sample[key][..., top : top + self.tile_size, left : left + self.tile_size]
            tile = torch.rot90(tile, quarter_turns, dims=(-2, -1))
            sample[key] = torch.flip(tile, dims=(-1,)) if flip else tile
        for modality, keep in self.max_dates.items():
            count = len(sample[f"{modality}_doy"])
            if count > keep:
                select_dates(sample, modality, torch.randperm(count)[:keep].sort().values)
        return sample


class EvaluationTiles(Dataset):
    """Every non-overlapping ``tile_size`` tile of every patch, each with at most ``max_dates``
    evenly spaced dates per modality."""

    def __init__(self, patches: PASTISR, tile_size: int, max_dates: dict[str, int]) -> None:
        self.patches, self.tile_size, self.max_dates = patches, tile_size, max_dates
        self.height, self.width = patches[0]["label"].shape if len(patches) else (tile_size, tile_size)
        self.rows, self.cols = self.height // tile_size, self.width // tile_size
        if len(patches) and not (self.rows and self.cols):
            raise ValueError(f"patches of {self.height}x{self.width} px are smaller than tiles of {tile_size}")
        self._cached: tuple[int, dict[str, Tensor]] | None = None

    def __len__(self) -> int:
        return len(self.patches) * self.rows * self.cols

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        patch, position = divmod(index, self.rows * self.cols)
        if self._cached is None or self._cached[0] != patch:
            sample = self.patches[patch]
            for modality, keep in self.max_dates.items():
                select_dates(sample, modality, evenly_spaced(len(sample[f"{modality}_doy"]), keep))
            self._cached = (patch, sample)
        sample = self._cached[1]
        top, left = (position // self.cols) * self.tile_size, (position % self.cols) * self.tile_size
        return {
            key: value if key.endswith("_doy") else value[..., top : top + self.tile_size, left : left + self.tile_size]
            for key, value in sample.items()
        }


def crop_dataset(data: Path, split: str, modalities: Sequence[str], s1_orbit: str = "s1a", transforms=None) -> PASTISR:
    """The PASTIS-R folds of ``split`` (train: 1-3, val: 4, test: 5)."""
    return PASTISR(data, FOLDS[split], modalities, s1_orbit, transforms)


class CropData(FamilyData):
    """The PASTIS-R folds of ``data`` for ``modalities`` (``s1_orbit`` read as "s1"), batched by
    ``collate_series``: the train folds as random training views (``RandomTrainingView``) to fit on or,
    with ``test_split``, that split's ``EvaluationTiles`` to test on; ``tile_size`` tiles with at most
    ``max_dates`` dates per modality."""

    def __init__(self, data: Path, modalities: Sequence[str], s1_orbit: str, tile_size: int,
                 max_dates: dict[str, int], batch_size: int, num_workers: int = 0,
                 test_split: str | None = None) -> None:
        super().__init__(batch_size, collate_series, num_workers)
        self.data, self.modalities, self.s1_orbit = data, modalities, s1_orbit
        if test_split is None:
            self.train_set = crop_dataset(data, "train", modalities, s1_orbit, RandomTrainingView(tile_size, max_dates))
            return
        patches = crop_dataset(data, test_split, modalities, s1_orbit)
        if not len(patches):
            raise ValueError(f"{data} has no patches in the {test_split!r} split")
        self.test_set = EvaluationTiles(patches, tile_size, max_dates)

    def description(self, seed: int) -> dict:
        """What a checkpoint records of the training data (``describe_data``), with its input statistics."""
        return describe_data(self.data, self.modalities, self.s1_orbit, len(self.train_set)) | {
            "input_statistics": training_input_statistics(self.data, self.modalities, self.s1_orbit, seed)}


def present_class_codes(dataset: PASTISR) -> list[int]:
    """PASTIS labels occurring in ``dataset`` except void: the classes a model trained on it predicts."""
    codes = set()
    for index in range(len(dataset)):
        codes.update(np.unique(np.load(dataset.files[index]["semantic"])[0]).tolist())
    return sorted(int(code) for code in codes - {VOID_LABEL})


def band_statistics(dataset: PASTISR, max_patches: int = 64) -> tuple[dict, dict]:
    """Per modality, mean and std per band over valid pixels of up to ``max_patches`` patches
    spread over the dataset."""
    totals: dict[str, list] = {m: [0.0, 0.0, 0.0] for m in dataset.modalities}
    for index in evenly_spaced(len(dataset), max_patches).tolist():
        sample = dataset[index]
        for modality, sums in totals.items():
            values = sample[modality].double().transpose(0, 1).flatten(1)  # [C, T*H*W]
            valid = values[:, sample[f"{modality}_mask"].flatten() > 0]
            sums[0] = sums[0] + valid.sum(dim=1)
            sums[1] = sums[1] + (valid**2).sum(dim=1)
            sums[2] += valid.shape[1]
    mean = {m: (s[0] / s[2]) for m, s in totals.items()}
    std = {m: (totals[m][1] / totals[m][2] - mean[m] ** 2).clamp_min(1e-12).sqrt() for m in totals}
    return {m: v.tolist() for m, v in mean.items()}, {m: v.tolist() for m, v in std.items()}


SERIES_PER_PATCH = 256  # pixels whose time series each training patch gives the input statistics


def training_input_statistics(data: Path, modalities: Sequence[str], s1_orbit: str = "s1a", seed: int = 0) -> dict:
    """Per modality, the contract's ``input_statistics`` (training/input_statistics.py
    ``series_statistics``) of ``SERIES_PER_PATCH`` pixel time series of each patch of the train
    folds, in raw units and fold order: the engine flags a pixel whose median distance over its
    dates is beyond the calibrated bound (engine/input_distribution.py, ``SeriesDistribution``)."""
    rng = np.random.default_rng(seed)
    training = crop_dataset(data, "train", modalities, s1_orbit)
    series: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {m: [] for m in training.modalities}
    for index in range(len(training)):
        sample = training[index]
        for modality, patches in series.items():
            values = sample[modality].double().flatten(2).numpy()  # [T, C, H*W]
            valid = sample[f"{modality}_mask"].flatten(1).numpy() > 0  # [T, H*W]
            seen = np.flatnonzero(valid.any(axis=0))
            if len(seen):
                chosen = rng.choice(seen, min(SERIES_PER_PATCH, len(seen)), replace=False)
                patches.append((values[:, :, chosen], valid[:, chosen]))
    return {modality: series_statistics(patches, seed=seed) for modality, patches in series.items()}


def describe_data(data: Path, modalities: Sequence[str], s1_orbit: str, training_patches: int) -> dict:
    """What a model was trained on, for the checkpoint (plain values)."""
    record = pastis_directory(data) / SIMULATION_RECORD
    return {
        "root": str(data),
        "modalities": list(modalities),
        "s1_orbit": s1_orbit,
        "bands": {m: list(MODALITY_BANDS[m]) for m in modalities},
        "input_units": {m: INPUT_UNITS[m] for m in modalities},
        "gsd_m": GSD_M,
        "training_folds": list(FOLDS["train"]),
        "training_patches": training_patches,
        "simulation": json.loads(record.read_text()) if record.exists() else None,
    }


def describe_training_data(data: dict) -> str:
    """One honest sentence for model cards and contracts."""
    simulation = data["simulation"]
    if simulation:
        return (
            "SIMULATED crop phenology time series (training/simulation/crop_phenology.py: per-crop "
            "green-up / senescence / harvest calendars, linear spectral mixing for Sentinel-2, water "
            "cloud model with speckle for Sentinel-1, clouds) in PASTIS-R's layout: "
            f"{simulation['patches']} patches of {simulation['size']} px, seed {simulation['seed']}, "
            f"year {simulation['year']}, training folds {data['training_folds']}; not real imagery"
        )
    return f"PASTIS-R ({', '.join(data['modalities'])}, S1 orbit {data['s1_orbit']}) read from {data['root']}, folds {data['training_folds']}"
