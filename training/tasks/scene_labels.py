"""Scene multi-label classification on reBEN (Clasen et al., 2024) with the reference recipe.

A timm backbone (``training.models.scene_backbones``) with 19 logits, BCE-with-logits, AdamW
(lr 1e-3, weight decay 0.01) with a linear warm-up then a cosine decay to zero, dropout and
drop-path 0.15; optional CutMix or CutMix with label propagation (``training.augmentation.cutmix``).
Inputs are raw band values in the reference band order, standardised inside ``forward`` with the
reference statistics; the exported graph starts after that standardisation (the engine applies
the contract's mean/std). Metrics as in the paper: average precision, F1 and precision, macro and
micro (threshold 0.5 for F1 and precision).
"""
from __future__ import annotations

import math

import torch
from lightning import LightningModule
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MultilabelAveragePrecision,
    MultilabelF1Score,
    MultilabelPrecision,
)

from engine.contract import Outputs
from training.augmentation.cutmix import CUTMIX_MODES, CUTMIX_PROBABILITY, cutmix
from training.models.scene_backbones import scene_backbone

AUGMENTATIONS = ("none", *CUTMIX_MODES)


def scene_label_metrics(num_classes: int) -> MetricCollection:
    """The paper's metrics; macro averages skip classes absent from the evaluated split."""
    metrics = {}
    for average in ("macro", "micro"):
        metrics[f"ap_{average}"] = MultilabelAveragePrecision(num_classes, average=average)
        metrics[f"f1_{average}"] = MultilabelF1Score(num_classes, average=average)
        metrics[f"precision_{average}"] = MultilabelPrecision(num_classes, average=average)
    return MetricCollection(metrics)


class SceneLabelsTask(LightningModule):
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
        super().__init__()
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        self.save_hyperparameters()
        self.network = scene_backbone(model, len(band_mean), len(class_names), width, depth, dropout)
        self.register_buffer("band_mean", torch.tensor(band_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("band_std", torch.tensor(band_std).view(-1, 1, 1), persistent=False)
        self.loss = nn.BCEWithLogitsLoss()
        self.validation_metrics = scene_label_metrics(len(class_names)).clone(prefix="val_")
        self.test_metrics = scene_label_metrics(len(class_names))

    def forward(self, image: Tensor) -> Tensor:
        """Logits ``[N, classes]`` from raw band values ``[N, C, 120, 120]``."""
        return self.network((image - self.band_mean) / self.band_std)

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
        optimiser = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda step: warmup_cosine(step, self.hparams.warmup_steps, self.hparams.total_steps)
        )
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def export_graph(self) -> nn.Module:
        """Standardised image ``[N, C, 120, 120]`` -> sigmoid probabilities ``[N, classes, 1, 1]``."""
        return ProbabilitiesAsPixels(self.network)

    def contract_outputs(self) -> Outputs:
        return Outputs(
            kind="classes",
            names=tuple(self.hparams.class_names),
            colors=tuple(self.hparams.class_colours),
            description=(
                "multi-label scene classes: one independent probability (sigmoid) per class for the "
                "whole 120x120 patch, shape [N, 19, 1, 1]; the classes do not sum to 1"
            ),
        )


class ProbabilitiesAsPixels(nn.Module):
    """Wraps a classifier so that its output is 4-D as the model contract requires."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: Tensor) -> Tensor:
        return torch.sigmoid(self.network(image))[:, :, None, None]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear from 1/warmup to 1 over ``warmup_steps``, then cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * progress))
