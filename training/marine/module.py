"""The MagicBathyNet tasks (Agrafiotis et al., IGARSS 2024): bathymetry regression and seabed classes.

Both take whole patches at native size (the networks pad inside; the reference zooms them to 256 px),
min/max-normalised with the area's ``norm_param`` (``band_mean`` its minimum, ``band_std`` its maximum
- minimum, exported in the model contract), and train with Adam, learning rate lowered late in training
(here: cosine decay, ``training/schedule.py``).

Bathymetry: the light U-Net (``training/marine/model.py``) regresses depth divided by a per-site
constant (30.443 m for Agia Napa); the loss is the RMSE over pixels with known depth and a valid image
(torchgeo's PixelwiseRegressionTask has no such masking). Adam, learning rate 1e-4 in the paper.
Metrics: RMSE, MAE and the standard deviation of the error in metres over the same pixels.

Seabed classes: a U-Net (Ronneberger et al., MICCAI 2015; here segmentation_models_pytorch's, randomly
initialised, with a shallow encoder for small patches) trained with class-weighted cross-entropy; the
"undefined" class is ignored (the paper gives it weight 0). Metrics: overall accuracy and per-class F1.
Where the reference zooms 16 px windows to 256 px, the input is edge-padded to a multiple of the
encoder's stride inside the network (also in the exported graph) and the output cropped back, so real
18x18 Sentinel-2 and 30x30 SPOT-6 patches run whole.
"""
from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from engine.contract import Outputs
from training.datasets.magicbathynet import IGNORE_INDEX
from training.marine.model import LightUNet, StridePadded
from training.schedule import adam_with_cosine_decay
from training.task_io import NormalisedInput, class_outputs


class DepthErrorStatistics(Metric):
    """RMSE, MAE, mean (bias) and standard deviation of predicted - true depth, in metres."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("error_sum", "squared_error_sum", "absolute_error_sum", "pixels"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predicted: torch.Tensor, true: torch.Tensor) -> None:
        error = (predicted - true).double()
        self.error_sum += error.sum()
        self.squared_error_sum += (error**2).sum()
        self.absolute_error_sum += error.abs().sum()
        self.pixels += error.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        bias = self.error_sum / self.pixels
        mean_squared = self.squared_error_sum / self.pixels
        return {
            "rmse_m": mean_squared.sqrt(),
            "mae_m": self.absolute_error_sum / self.pixels,
            "std_m": (mean_squared - bias**2).clamp_min(0).sqrt(),
            "bias_m": bias,
            "pixels": self.pixels,  # here, not read off the state: compute() sums it over processes
        }


class MagicBathyNetTask(NormalisedInput):
    """What both tasks share: the input's min/max normalisation (``band_mean`` the area's ``norm_param``
    minimum, ``band_std`` its maximum - minimum; not saved in the state dict, the hyperparameters hold
    them) and the optimiser. The subclass saves its hyperparameters, ``lr`` among them."""

    def configure_optimizers(self) -> dict:
        return adam_with_cosine_decay(self, self.hparams.lr)


class BathymetryTask(MagicBathyNetTask):
    """Light U-Net depth regression with the loss masked to known depth.

    ``mean_training_depth_m`` gives the constant-prediction baseline that evaluation reports beside the
    model's errors.
    """

    def __init__(
        self,
        band_mean: list[float],
        band_std: list[float],
        depth_scale_m: float = 30.443,
        mean_training_depth_m: float = 0.0,
        base_channels: int = 32,
        lr: float = 1e-4,
    ) -> None:
        super().__init__(band_mean, band_std)
        self.save_hyperparameters()
        self.network = LightUNet(len(band_mean), 1, base_channels)
        self.test_errors = DepthErrorStatistics()
        self.test_baseline_errors = DepthErrorStatistics()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Depth in metres (positive down) from raw band values ``[B, C, H, W]``."""
        return self.network(self.normalise(image))[:, 0] * self.hparams.depth_scale_m

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor | None:
        known = torch.isfinite(batch["depth"])
        if not known.any():
            return None
        scale = self.hparams.depth_scale_m
        predicted = self(batch["image"])[known] / scale
        loss = torch.sqrt(torch.mean((predicted - batch["depth"][known] / scale) ** 2))
        self.log("train_rmse_m", loss * scale, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def test_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        known = torch.isfinite(batch["depth"])
        true = batch["depth"][known]
        self.test_errors.update(self(batch["image"])[known], true)
        self.test_baseline_errors.update(torch.full_like(true, self.hparams.mean_training_depth_m), true)

    def on_test_epoch_end(self) -> None:
        metrics = self.test_errors.compute()
        metrics["baseline_rmse_m"] = self.test_baseline_errors.compute()["rmse_m"]
        self.log_dict({name: value.float() for name, value in metrics.items()})
        self.test_errors.reset()
        self.test_baseline_errors.reset()

    @property
    def architecture(self) -> str:
        widths = "-".join(str(self.hparams.base_channels * 2**level) for level in range(4))
        return f"light U-Net of MagicBathyNet (encoder {widths}, ConvTranspose decoder, no BatchNorm)"

    def export_graph(self) -> nn.Module:
        """Normalised image -> depth / ``depth_scale_m`` (the ONNX graph convention)."""
        return self.network

    def contract_outputs(self) -> Outputs:
        return Outputs(
            kind="regression",
            names=("depth",),
            units="m",
            scale=float(self.hparams.depth_scale_m),
            description="depth below the water surface, positive down",
        )


class SeabedTask(MagicBathyNetTask):
    """Per-pixel seabed classes; ``class_weights`` come from the training split's frequencies."""

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
        super().__init__(band_mean, band_std)
        self.save_hyperparameters()
        self.network = smp.Unet(
            encoder_name=encoder,
            encoder_weights=None,
            encoder_depth=encoder_depth,
            decoder_channels=list(decoder_channels),
            in_channels=len(band_mean),
            classes=len(class_names),
        )
        self.loss = nn.CrossEntropyLoss(weight=torch.tensor(class_weights), ignore_index=IGNORE_INDEX)
        classes = len(class_names)
        self.test_accuracy = MulticlassAccuracy(classes, average="micro", ignore_index=IGNORE_INDEX)
        self.test_f1 = MulticlassF1Score(classes, average="none", ignore_index=IGNORE_INDEX)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, classes, H, W]`` from raw band values ``[B, C, H, W]``."""
        return StridePadded(self.network)(self.normalise(image))

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
        return class_outputs(self.hparams, "probability of each seabed class")


MODULES = {"bathymetry": BathymetryTask, "seabed": SeabedTask}
