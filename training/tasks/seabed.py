"""Seabed classification as in MagicBathyNet (Agrafiotis et al., IGARSS 2024).

A U-Net (Ronneberger et al., MICCAI 2015; here segmentation_models_pytorch's, randomly
initialised, with a shallow encoder for small patches) trained with class-weighted cross-entropy;
the "undefined" class is ignored (the paper gives it weight 0). Metrics: overall accuracy and
per-class F1. Whole patches at native size: where the reference zooms 16 px windows to 256 px, the
input is edge-padded to a multiple of the encoder's stride inside the network (also in the exported
graph) and the output cropped back, so real 18x18 Sentinel-2 and 30x30 SPOT-6 patches run whole.
"""
from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from lightning import LightningModule
from torch import nn
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from engine.contract import Outputs
from training.datasets.magicbathynet import IGNORE_INDEX
from training.schedule import adam_with_cosine_decay


class StridePadded(nn.Module):
    """Run an encoder-decoder on any size: edge-pad to a multiple of its stride, crop the output back."""

    def __init__(self, network: smp.Unet) -> None:
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        stride = self.network.encoder.output_stride
        padded = F.pad(image, [0, (-width) % stride, 0, (-height) % stride], mode="replicate")
        return self.network(padded)[..., :height, :width]


class SeabedTask(LightningModule):
    """Per-pixel seabed classes; ``class_weights`` come from the training split's frequencies,
    ``band_mean``/``band_std`` are the area's ``norm_param`` minimum and maximum - minimum."""

    def __init__(
        self,
        band_mean: list[float],
        band_std: list[float],
        class_names: list[str],
        class_colours: list[str],
        class_weights: list[float],
        encoder: str = "resnet18",
        encoder_depth: int = 3,
        decoder_channels: Sequence[int] = (64, 32, 16),
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = smp.Unet(
            encoder_name=encoder,
            encoder_weights=None,
            encoder_depth=encoder_depth,
            decoder_channels=list(decoder_channels),
            in_channels=len(band_mean),
            classes=len(class_names),
        )
        self.register_buffer("band_mean", torch.tensor(band_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("band_std", torch.tensor(band_std).view(-1, 1, 1), persistent=False)
        self.loss = nn.CrossEntropyLoss(weight=torch.tensor(class_weights), ignore_index=IGNORE_INDEX)
        classes = len(class_names)
        self.test_accuracy = MulticlassAccuracy(classes, average="micro", ignore_index=IGNORE_INDEX)
        self.test_f1 = MulticlassF1Score(classes, average="none", ignore_index=IGNORE_INDEX)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, classes, H, W]`` from raw band values ``[B, C, H, W]``."""
        return StridePadded(self.network)((image - self.band_mean) / self.band_std)

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor | None:
        if not (batch["mask"] != IGNORE_INDEX).any():
            return None
        loss = self.loss(self(batch["image"]), batch["mask"])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def test_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        predicted = self(batch["image"]).argmax(dim=1)
        self.test_accuracy.update(predicted, batch["mask"])
        self.test_f1.update(predicted, batch["mask"])

    def on_test_epoch_end(self) -> None:
        f1 = self.test_f1.compute()
        metrics = {"overall_accuracy": self.test_accuracy.compute(), "mean_f1": f1.mean()}
        metrics |= {f"f1_{name}": score for name, score in zip(self.hparams.class_names, f1)}
        self.log_dict(metrics)
        self.test_accuracy.reset()
        self.test_f1.reset()

    def configure_optimizers(self) -> dict:
        return adam_with_cosine_decay(self, self.hparams.lr)

    @property
    def architecture(self) -> str:
        hparams = self.hparams
        return (
            f"U-Net (segmentation_models_pytorch), {hparams.encoder} encoder with {hparams.encoder_depth} "
            f"stages, decoder {'-'.join(map(str, hparams.decoder_channels))}, randomly initialised"
        )

    def export_graph(self) -> nn.Module:
        """Normalised image -> per-class probabilities (softmax inside the exported graph)."""
        return nn.Sequential(StridePadded(self.network), nn.Softmax(dim=1))

    def contract_outputs(self) -> Outputs:
        return Outputs(
            kind="classes",
            names=tuple(self.hparams.class_names),
            colors=tuple(self.hparams.class_colours),
            description="probability of each seabed class",
        )
