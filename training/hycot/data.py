"""HyCoT's data: HySpecNet-11k (Fuchs & Demir, "HySpecNet-11k: A Large-Scale Hyperspectral Dataset for
Benchmarking Learning-Based Hyperspectral Image Compression Methods", IGARSS 2023) read with torchgeo's
``HySpecNet11k`` (202 bands, water-vapour bands dropped), real or simulated
(``training/simulation/hyperspectral.py``); what a fit records of it, and the input statistics of the
train split that the encoder's contract records (``training/input_statistics.py``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torchgeo.datasets import HySpecNet11k

from training.hycot.module import scale_reflectance
from training.input_statistics import input_statistics, sampled_pixels
from training.simulation.hyperspectral import GSD_M, read_simulation_record
from training.trainer import FamilyData

INPUT_UNITS = "surface reflectance x 10000"
PROJECTION_AXES = 10  # principal axes of the training pixels the out-of-distribution flag works on


class HyCoTData(FamilyData):
    """The ``strategy`` split (easy: by patch, hard: by tile) of the HySpecNet-11k root ``root``, scaled
    to reflectance in [0, 1] (``scale_reflectance``): the train split to fit on or, with ``test_split``,
    that split to test on."""

    def __init__(self, root: Path, strategy: str, batch_size: int, test_split: str | None = None) -> None:
        super().__init__(batch_size)
        self.root, self.strategy = root, strategy
        if test_split is None:
            self.train_set = HySpecNet11k(root, split="train", strategy=strategy, transforms=scale_reflectance)
        else:
            self.test_set = HySpecNet11k(root, split=test_split, strategy=strategy, transforms=scale_reflectance)

    def description(self, seed: int) -> dict:
        """What a checkpoint records of the training data (plain values), with its input statistics."""
        return {
            "root": str(self.root),
            "dataset": "HySpecNet-11k",
            "strategy": self.strategy,
            "bands": list(self.train_set.bands),
            "wavelengths_nm": [round(float(w) * 1000.0, 1) for w in self.train_set.wavelengths],
            "gsd_m": GSD_M,
            "input_units": INPUT_UNITS,
            "training_patches": len(self.train_set),
            "simulation": read_simulation_record(self.root),
            "input_statistics": training_input_statistics(self.root, self.strategy, seed),
        }


def describe_training_data(data: dict) -> str:
    """One honest sentence for model cards and contracts about ``data`` (``HyCoTData.description``)."""
    simulation = data["simulation"]
    if simulation:
        return (
            "SIMULATED EnMAP-like scenes from training/simulation/hyperspectral.py (linear mixtures of "
            "physically built endmember spectra with terrain illumination and sensor noise; "
            f"{simulation['patches']} patches of {simulation['patch_size']}x{simulation['patch_size']} px in "
            f"{simulation['tiles']} tiles, seed {simulation['seed']}; {data['strategy']} split, "
            f"{data['training_patches']} training patches) in HySpecNet-11k's layout; not real EnMAP or "
            "HySpecNet-11k data"
        )
    return (
        f"HySpecNet-11k ({data['strategy']} split, {data['training_patches']} training patches) "
        f"read from {data['root']}"
    )


def training_input_statistics(data: Path, strategy: str, seed: int = 0) -> dict:
    """The encoder contract's ``input_statistics`` (training/input_statistics.py) of the ``strategy``
    train split's pixels with data (reflectance x 10000), a sample of each patch, projected on their
    ``PROJECTION_AXES`` leading principal axes plus the residual norm: a 202-band covariance is too
    ill-conditioned to invert (engine/input_distribution.py)."""
    rng = np.random.default_rng(seed)
    training = HySpecNet11k(data, split="train", strategy=strategy)
    patches = []
    for index in range(len(training)):
        pixels = training[index]["image"].flatten(1).numpy().astype(np.float64)
        patches.append(sampled_pixels(pixels[:, (pixels != 0).any(axis=0)], rng))
    return input_statistics(patches, seed=seed, projection_axes=PROJECTION_AXES)
