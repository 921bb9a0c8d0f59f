"""What the task modules share at their two ends: the per-band normalisation of raw inputs, and the
model contract's outputs of a classifier.

The normalisation is the contract's mean/std: the engine applies it before the exported ONNX graph,
which starts after this step, so training and inference see the same values. Crop maps keep their
own (one mean/std per modality of a time series, invalid pixels zeroed).
"""
from __future__ import annotations

import torch
from lightning import LightningModule

from engine.contract import Outputs


class NormalisedInput(LightningModule):
    """Holds the per-band ``band_mean`` and ``band_std`` of the raw inputs ``[N, C, H, W]`` as buffers
    (not saved in the state dict: the hyperparameters hold them) and applies them. The subclass saves
    its hyperparameters, ``band_mean`` and ``band_std`` among them."""

    def __init__(self, band_mean: list[float], band_std: list[float]) -> None:
        super().__init__()
        self.register_buffer("band_mean", torch.tensor(band_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("band_std", torch.tensor(band_std).view(-1, 1, 1), persistent=False)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.band_mean) / self.band_std


def class_outputs(hparams, description: str) -> Outputs:
    """The contract's outputs of a classifier: one channel per class, named and coloured by the
    ``class_names`` and ``class_colours`` hyperparameters."""
    return Outputs(
        kind="classes",
        names=tuple(hparams.class_names),
        colors=tuple(hparams.class_colours),
        description=description,
    )
