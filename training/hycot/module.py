"""Learned hyperspectral compression with HyCoT (Fuchs, Rasti & Demir, "HyCoT: A Transformer-Based
Autoencoder for Hyperspectral Image Compression", 2024).

Loss: mean squared error of the reconstruction; Adam. The paper's efficient training: the model is
pixelwise, so each step encodes only a random subset of K x K pixels of every patch (K = 16 in the
paper), which reaches the same quality with far less computation than whole patches.
Inputs are reflectance in [0, 1] (int16 reflectance / 10000, clipped; ``scale_reflectance``).
Metrics, as in the paper: PSNR with peak 1.0 (per patch, averaged over patches) and the mean
spectral angle between original and reconstructed pixel spectra in degrees; at test time the
latents pass through the 16-bit quantisation the compressed files use (``quantise_latent``). The
bit rate is the paper's (32-bit latents, ``training.hycot.bit_rate``), not the 16 bits the files store.

``MODULES``: the task's module, which ``training/checkpoint.py`` ``load_checkpoint`` rebuilds from a checkpoint.
"""
from __future__ import annotations


import torch
from lightning import LightningModule
from torchmetrics import MeanMetric

from training.hycot.bit_rate import bits_per_pixel_per_channel, latent_channels
from training.hycot.model import HyCoTDecoder, HyCoTEncoder

TASK = "hycot"
PAPER = (
    "Fuchs, Rasti, Demir: HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image Compression, WHISPERS "
    "2024 (arXiv:2408.08700) (data: Fuchs, Demir: HySpecNet-11k, IGARSS 2023)"
)

REFLECTANCE_SCALE = 10000.0
LATENT_BITS = 16
LATENT_LEVELS = 2**LATENT_BITS - 2  # stored value 1 + round(z * 65534); 0 is the files' nodata
GROUP_SIZE = 4  # adjacent bands per token, the paper's


def scale_reflectance(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sample transform: int16 reflectance x 10000 -> [0, 1] (HySpecNet-11k's preprocessing)."""
    return sample | {"image": (sample["image"] / REFLECTANCE_SCALE).clamp(0.0, 1.0)}


def quantise_latent(latent: torch.Tensor) -> torch.Tensor:
    """Round latents in [0, 1] to the 16-bit codes of a compressed file and back."""
    return torch.round(latent.clamp(0.0, 1.0) * LATENT_LEVELS) / LATENT_LEVELS


def psnr_per_image(original: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, peak 1.0) of each image in ``[N, C, H, W]``."""
    mse = ((original - reconstructed) ** 2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


def spectral_angle_degrees(original: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
    """Angle between the spectra of each pixel of ``[N, C, H, W]`` images, in degrees ``[N, H, W]``."""
    cosine = (original * reconstructed).sum(dim=1) / (
        original.norm(dim=1) * reconstructed.norm(dim=1)
    ).clamp_min(1e-12)
    return torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))


def random_pixels(image: torch.Tensor, side: int) -> torch.Tensor:
    """``side x side`` pixels drawn without replacement from each image ``[N, C, H, W]``."""
    n, channels, height, width = image.shape
    if side * side >= height * width:
        return image
    chosen = torch.rand(n, height * width, device=image.device).argsort(dim=1)[:, : side * side]
    pixels = image.flatten(2).gather(2, chosen[:, None, :].expand(-1, channels, -1))
    return pixels.reshape(n, channels, side, side)


class HyCoTTask(LightningModule):
    """HyCoT autoencoder trained with MSE on random pixel subsets.

    ``bands``: spectral bands per pixel; ``compression_ratio``: CR, so L = ceil(bands / CR);
    ``pixels_per_patch``: K, each step uses K x K random pixels of every patch. ``sizes``: the
    encoder's widths (``HyCoTEncoder``: ``dim``, ``depth``, ``heads``, ``head_dim``, ``mlp_dim``,
    ``hidden_dim``, ``final_norm``), by default the paper's (token width 64, depth 5, 4 heads of 16, MLP
    8, hidden 1024); ``final_norm`` adds the LayerNorm after the last block that the shipped models have
    and the paper's has not. The hyperparameters hold every size, defaults included.
    """

    EARLIER_DEFAULTS = {"final_norm": True}  # checkpoints written before final_norm existed all have the LayerNorm

    def __init__(self, bands: int = 202, compression_ratio: float = 8, pixels_per_patch: int = 16, lr: float = 1e-3,
                 **sizes) -> None:
        super().__init__()
        self.latent = latent_channels(bands, compression_ratio)
        self.encoder = HyCoTEncoder(bands, self.latent, GROUP_SIZE, **sizes)
        self.decoder = HyCoTDecoder(self.latent, bands, self.encoder.sizes["hidden_dim"])
        self.save_hyperparameters({"bands": bands, "compression_ratio": compression_ratio,
                                   "pixels_per_patch": pixels_per_patch, "lr": lr, **self.encoder.sizes})
        self.test_psnr = MeanMetric()
        self.test_spectral_angle = MeanMetric()

    @property
    def bits_per_pixel_per_channel(self) -> float:
        """The paper's bit rate: 32 L / bands."""
        return bits_per_pixel_per_channel(self.hparams.bands, self.latent)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Reconstruction of reflectance images ``[N, bands, H, W]`` in [0, 1]."""
        return self.decoder(self.encoder(image))

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        pixels = random_pixels(batch["image"], self.hparams.pixels_per_patch)
        reconstructed = self(pixels)
        loss = torch.nn.functional.mse_loss(reconstructed, pixels)
        self.log("train_mse", loss, prog_bar=True, batch_size=len(pixels))
        self.log("train_psnr_db", psnr_per_image(pixels, reconstructed.detach()).mean(), batch_size=len(pixels))
        return loss

    def test_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        image = batch["image"]
        reconstructed = self.decoder(quantise_latent(self.encoder(image)))
        self.test_psnr.update(psnr_per_image(image, reconstructed))
        self.test_spectral_angle.update(spectral_angle_degrees(image, reconstructed).flatten())

    def on_test_epoch_end(self) -> None:
        self.log("psnr_db", self.test_psnr.compute())
        self.log("spectral_angle_deg", self.test_spectral_angle.compute())
        self.test_psnr.reset()
        self.test_spectral_angle.reset()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


MODULES = {TASK: HyCoTTask}
