"""Evaluate a HyCoT checkpoint on a HySpecNet-11k split: PSNR and spectral angle through 16-bit latents,
and the paper's bit rate."""
from __future__ import annotations

from pathlib import Path

from training.hycot.data import HyCoTData
from training.checkpoint import load_checkpoint
from training.hycot.module import TASK
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.simulation.hyperspectral import read_simulation_record
from training.trainer import evaluation_record, test_metrics


def evaluate_hycot(
    checkpoint: Path,
    data: Path,
    strategy: str | None = None,
    split: str = "test",
    batch_size: int = 2,
    accelerator: str = "auto",
    scale_out: ScaleOut = SINGLE_DEVICE,
) -> dict:
    """PSNR (peak 1.0) and mean spectral angle of whole patches through 16-bit latents, and the
    paper's bit rate. ``strategy`` defaults to the split strategy the model was trained with."""
    module, saved = load_checkpoint(checkpoint, TASK)
    strategy = strategy or saved["data"]["strategy"]
    hyspecnet = HyCoTData(data, strategy, batch_size, test_split=split)
    metrics = test_metrics(module, hyspecnet, accelerator, scale_out)
    return evaluation_record(
        TASK, checkpoint, data, split,
        strategy=strategy,
        patches=len(hyspecnet.test_set),
        simulation=read_simulation_record(data),
        compression_ratio=module.hparams.compression_ratio,
        latent_channels=module.latent,
        bits_per_pixel_per_channel=round(module.bits_per_pixel_per_channel, 4),
        metrics={name: round(float(value), 4) for name, value in metrics.items()},
    )
