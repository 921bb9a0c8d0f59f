"""Bathymetry regression as in MagicBathyNet (Agrafiotis et al., IGARSS 2024).

The light U-Net regresses depth divided by a per-site constant (30.443 m for Agia Napa) from
min/max-normalised bands, on whole patches at native size (the U-Net pads inside; the reference
zooms them to 256 px); the loss is the RMSE over pixels with known depth and a valid image (torchgeo's
PixelwiseRegressionTask has no such masking). Adam, learning rate 1e-4 in the paper, lowered late
in training (here: cosine decay). Metrics: RMSE, MAE and the standard deviation of the error in
metres over the same pixels.
"""
from __future__ import annotations

import torch
from lightning import LightningModule
from torch import nn
from torchmetrics import Metric

from engine.contract import Outputs
from training.models.light_unet import LightUNet
from training.schedule import adam_with_cosine_decay


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


class BathymetryTask(LightningModule):
    """Light U-Net depth regression with the loss masked to known depth.

    ``band_mean``/``band_std`` normalise the input (the area's ``norm_param`` minimum and
    maximum - minimum, i.e. the reference's min/max normalisation, exported in the model contract); ``mean_training_depth_m`` gives the constant-prediction baseline that
    evaluation reports beside the model's errors.
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
        super().__init__()
        self.save_hyperparameters()
        self.network = LightUNet(len(band_mean), 1, base_channels)
        self.register_buffer("band_mean", torch.tensor(band_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("band_std", torch.tensor(band_std).view(-1, 1, 1), persistent=False)
        self.test_errors = DepthErrorStatistics()
        self.test_baseline_errors = DepthErrorStatistics()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Depth in metres (positive down) from raw band values ``[B, C, H, W]``."""
        return self.network((image - self.band_mean) / self.band_std)[:, 0] * self.hparams.depth_scale_m

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

    def configure_optimizers(self) -> dict:
        return adam_with_cosine_decay(self, self.hparams.lr)

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
