"""Scene multi-label classification on reBEN (Clasen et al., 2024) with the reference recipe.

A timm backbone (``training.scene_labels.model``) with 19 logits, BCE-with-logits, AdamW
(lr 1e-3, weight decay 0.01) with a linear warm-up then a cosine decay to zero, dropout and
drop-path 0.15; optional CutMix or CutMix with label propagation (``training.scene_labels.cutmix``).
Inputs are raw band values in the reference band order, standardised inside ``forward`` with the
reference statistics; the exported graph starts after that standardisation (the engine applies
the contract's mean/std). Metrics as in the paper: average precision, F1 and precision, macro and
micro (threshold 0.5 for F1 and precision). ``reben_task`` builds the module with reBEN's band
statistics and its 19 classes.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MultilabelAveragePrecision,
    MultilabelF1Score,
    MultilabelPrecision,
)

from engine.contract import Outputs
from training.datasets.ben_labels import CLASS_COLOURS, CLASS_NAMES
from training.datasets.reben_format import BAND_MEAN, BAND_STD, MODALITY_BANDS
from training.schedule import adamw_with_warmup_cosine
from training.scene_labels.cutmix import CUTMIX_MODES, CUTMIX_PROBABILITY, cutmix
from training.scene_labels.model import scene_backbone
from training.task_io import NormalisedInput, class_outputs

AUGMENTATIONS = ("none", *CUTMIX_MODES)


def scene_label_metrics(num_classes: int) -> MetricCollection:
    """The paper's metrics; macro averages skip classes absent from the evaluated split."""
    metrics = {}
    for average in ("macro", "micro"):
        metrics[f"ap_{average}"] = MultilabelAveragePrecision(num_classes, average=average)
        metrics[f"f1_{average}"] = MultilabelF1Score(num_classes, average=average)
        metrics[f"precision_{average}"] = MultilabelPrecision(num_classes, average=average)
    return MetricCollection(metrics)


class SceneLabelsTask(NormalisedInput):
    """19 independent class probabilities per 120x120 patch."""

    def __init__(
        self,
        band_mean: list[float],
        band_std: list[float],
        class_names: list[str],
        class_colours: list[str],
        model: str = "resnet50",
        width: int | None = None,
        depth: int | None = None,
        dropout: float = 0.15,
        augment: str = "none",
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        total_steps: int = 1,
    ) -> None:
        super().__init__(band_mean, band_std)
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        self.save_hyperparameters()
        self.network = scene_backbone(model, len(band_mean), len(class_names), width, depth, dropout)
        self.loss = nn.BCEWithLogitsLoss()
        self.validation_metrics = scene_label_metrics(len(class_names)).clone(prefix="val_")
        self.test_metrics = scene_label_metrics(len(class_names))

    def forward(self, image: Tensor) -> Tensor:
        """Logits ``[N, classes]`` from raw band values ``[N, C, 120, 120]``."""
        return self.network(self.normalise(image))

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        if self.hparams.augment != "none" and torch.rand(()) < CUTMIX_PROBABILITY:
            batch = cutmix(batch, self.hparams.augment)
        loss = self.loss(self(batch["image"]), batch["label"])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self.validation_metrics.update(torch.sigmoid(self(batch["image"])), batch["label"].long())

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.validation_metrics.compute())
        self.validation_metrics.reset()

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self.test_metrics.update(torch.sigmoid(self(batch["image"])), batch["label"].long())

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def configure_optimizers(self):
        return adamw_with_warmup_cosine(self)

    def export_graph(self) -> nn.Module:
        """Standardised image ``[N, C, 120, 120]`` -> sigmoid probabilities ``[N, classes, 1, 1]``."""
        return ProbabilitiesAsPixels(self.network)

    def contract_outputs(self) -> Outputs:
        return class_outputs(
            self.hparams,
            "multi-label scene classes: one independent probability (sigmoid) per class for the "
            "whole 120x120 patch, shape [N, 19, 1, 1]; the classes do not sum to 1",
        )


class ProbabilitiesAsPixels(nn.Module):
    """Wraps a classifier so that its output is 4-D as the model contract requires."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: Tensor) -> Tensor:
        return torch.sigmoid(self.network(image))[:, :, None, None]


def reben_task(modalities: str, **hyperparameters) -> SceneLabelsTask:
    """A scene-labels module for ``modalities`` with reBEN's band statistics and the 19 classes."""
    bands = MODALITY_BANDS[modalities]
    return SceneLabelsTask(band_mean=[BAND_MEAN[band] for band in bands], band_std=[BAND_STD[band] for band in bands],
                           class_names=list(CLASS_NAMES), class_colours=list(CLASS_COLOURS), **hyperparameters)


MODULES = {"scene-labels": SceneLabelsTask}
