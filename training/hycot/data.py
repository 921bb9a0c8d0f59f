"""What the HyCoT encoder's contract records of its training data: the input statistics of the
HySpecNet-11k train split (``training/input_statistics.py``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torchgeo.datasets import HySpecNet11k

from training.input_statistics import input_statistics, sampled_pixels

PROJECTION_AXES = 10  # principal axes of the training pixels the out-of-distribution flag works on


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
