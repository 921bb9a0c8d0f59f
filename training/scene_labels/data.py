"""reBEN splits for training, from a GeoTIFF tree or a ``prepare`` store, their Lightning data module,
and what they hold."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import Compose

from training.datasets.ben_store import BigEarthNetV2Store, is_store, read_store_record
from training.datasets.reben import BigEarthNetV2Nearest, ReferenceInputs, random_flips
from training.datasets.reben_format import METADATA_FILE, MODALITY_BANDS, SPLITS, TORCHGEO_BANDS, fixture_record
from training.input_statistics import input_statistics, sampled_pixels
from training.trainer import FamilyData


def scene_label_dataset(data: Path, split: str, modalities: str, flips: bool = False) -> Dataset:
    """Split "train", "val" or "test" in the reference conventions (``ReferenceInputs``)."""
    transforms = Compose([ReferenceInputs(modalities), random_flips]) if flips else ReferenceInputs(modalities)
    source = BigEarthNetV2Store if is_store(data) else BigEarthNetV2Nearest
    return source(root=Path(data), split=split, bands=TORCHGEO_BANDS[modalities], transforms=transforms)


class SceneLabelsData(FamilyData):
    """The splits of ``data`` (a BigEarthNet v2 root or a ``prepare`` store) for ``modalities``: "train"
    (random flips) to fit on and "val" to validate on (both read with ``num_workers`` loader processes)
    or, with ``test_split``, that split to test on."""

    def __init__(self, data: Path, modalities: str, batch_size: int, num_workers: int = 0,
                 test_split: str | None = None) -> None:
        super().__init__(batch_size, num_workers=num_workers)
        self.data, self.modalities = Path(data), modalities
        if test_split is None:
            self.train_set = scene_label_dataset(data, "train", modalities, flips=True)
            self.val_set = scene_label_dataset(data, "val", modalities)
        else:
            self.test_set = scene_label_dataset(data, test_split, modalities)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def description(self, seed: int) -> dict:
        """What a checkpoint records of the training data (``describe_data``), with its input statistics."""
        return describe_data(self.data, self.modalities, len(self.train_set)) | {
            "input_statistics": training_input_statistics(self.data, self.modalities, seed)}


def training_input_statistics(data: Path, modalities: str, seed: int = 0) -> dict:
    """The contract's ``input_statistics`` (training/input_statistics.py) of the train split's
    pixels in raw units (dB, reflectance x 10000) and the contract's band order, a sample of each
    patch, in split order; the engine gives each patch the share of its pixels unlike them."""
    rng = np.random.default_rng(seed)
    training = scene_label_dataset(data, "train", modalities)
    patches = [sampled_pixels(training[index]["image"].flatten(1).numpy(), rng) for index in range(len(training))]
    return input_statistics(patches, seed=seed)


def classes_in_split(data: Path, split: str) -> set[str]:
    """Names of the classes labelled on at least one patch of ``split`` (from the metadata)."""
    metadata = pd.read_parquet(Path(data) / METADATA_FILE, columns=["labels", "split"])
    return {name for labels in metadata.loc[metadata["split"] == SPLITS[split], "labels"] for name in labels}


def describe_data(data: Path, modalities: str, training_patches: int) -> dict:
    """Plain-value description for checkpoints, contracts and model cards."""
    fixture = read_store_record(data)["fixture"] if is_store(data) else fixture_record(data)
    return {
        "root": str(data),
        "format": "LMDB store" if is_store(data) else "GeoTIFF tree",
        "modalities": modalities,
        "bands": list(MODALITY_BANDS[modalities]),
        "gsd_m": 10.0,
        "training_patches": training_patches,
        "fixture": fixture,
    }


def describe_training_data(data: dict) -> str:
    """One honest sentence about what a model was trained on."""
    if data["fixture"]:
        fixture = data["fixture"]
        return (
            f"GENERATED fixture in BigEarthNet v2.0 layout (training/simulation/bigearthnet_fixture.py, "
            f"{fixture['patches']} patches, seed {fixture['seed']}; {data['training_patches']} in the train "
            "split): class-dependent synthetic spectra, not Sentinel imagery"
        )
    return f"reBEN / BigEarthNet v2.0 train split ({data['training_patches']} patches) read from {data['root']}"
