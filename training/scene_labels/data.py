"""reBEN splits for training, from a GeoTIFF tree or a ``prepare`` store, and what they hold."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import Dataset
from torchvision.transforms import Compose

from training.datasets.ben_store import BigEarthNetV2Store, is_store, read_store_record
from training.datasets.reben import BigEarthNetV2Nearest, ReferenceInputs, random_flips
from training.datasets.reben_format import METADATA_FILE, MODALITY_BANDS, SPLITS, TORCHGEO_BANDS, fixture_record
from training.input_statistics import input_statistics, sampled_pixels


def scene_label_dataset(data: Path, split: str, modalities: str, flips: bool = False) -> Dataset:
    """Split "train", "val" or "test" in the reference conventions (``ReferenceInputs``)."""
    transforms = Compose([ReferenceInputs(modalities), random_flips]) if flips else ReferenceInputs(modalities)
    source = BigEarthNetV2Store if is_store(data) else BigEarthNetV2Nearest
    return source(root=Path(data), split=split, bands=TORCHGEO_BANDS[modalities], transforms=transforms)


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


def training_data_sentence(data: dict) -> str:
    """One honest sentence about what a model was trained on."""
    if data["fixture"]:
        fixture = data["fixture"]
        return (
            f"GENERATED fixture in BigEarthNet v2.0 layout (training/simulation/bigearthnet_fixture.py, "
            f"{fixture['patches']} patches, seed {fixture['seed']}; {data['training_patches']} in the train "
            "split): class-dependent synthetic spectra, not Sentinel imagery"
        )
    return f"reBEN / BigEarthNet v2.0 train split ({data['training_patches']} patches) read from {data['root']}"
