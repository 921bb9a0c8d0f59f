"""Fit, evaluate and export HyCoT hyperspectral compression models on HySpecNet-11k.

HyCoT: Fuchs, Rasti & Demir, "HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image
Compression", 2024; HySpecNet-11k: Fuchs & Demir, "HySpecNet-11k: A Large-Scale Hyperspectral
Dataset for Benchmarking Learning-Based Hyperspectral Image Compression Methods", 2023. Data is
read with torchgeo's ``HySpecNet11k`` (202 bands, water-vapour bands dropped), real or simulated
(``training/simulation/hyperspectral.py``).

Export writes two ONNX models that the engine pairs by ``pair_id`` (a hash of both parts'
weights):

- ``<stem>_encoder.onnx``, task ``hycot_encoder``: input ``image`` ``[N, bands, H, W]`` =
  int16 reflectance / 10000 (contract mean 0, std 10000; clipped to [0, 1] inside the graph),
  output ``output`` ``[N, L, H, W]``, latents in [0, 1] named ``z01``..``zL``.
- ``<stem>_decoder.onnx``, task ``hycot_decoder``: input ``image`` ``[N, L, H, W]`` = latents in
  [0, 1] read from the compressed file's 16-bit codes ``1 + round(z * 65534)`` (0 = nodata, so the
  contract normalises with mean 1 and std 65534), output ``output`` ``[N, bands, H, W]`` in [0, 1]
  with scale 10000 (reflectance x 10000).

Both contracts record ``bits_per_pixel_per_channel`` in the paper's convention
(``training.bit_rate``); the engine copies it into the compressed file and its report.

Memory: onnxruntime holds about 0.3 MB per pixel of an encoder tile (every pixel is a sequence of
52 tokens through 5 attention blocks), so the shipped models use 64 x 64 tiles (about 1.2 GB);
tiles do not change the result of a pixelwise model, hence overlap 0.

Spectral bands are named by EnMAP band number (``b001``..``b224``, the 202 kept ones) with the
aliases ``B<n>`` (torchgeo's names) and the centre wavelength (``418.4 nm`` / ``418.4nm``), which
is how ``write_scene_geotiff`` describes its bands.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader
from torchgeo.datasets import HySpecNet11k

from engine.contract import Band, ModelContract, Outputs
from training.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from training.export import parity_check, write_onnx
from training.input_statistics import input_statistics, sampled_pixels
from training.scale_out import SINGLE_DEVICE, ScaleOut
from training.simulation.hyperspectral import GSD_M, VNIR_BANDS, band_label, band_name, read_simulation_record
from training.tasks.hycot import LATENT_BITS, LATENT_LEVELS, REFLECTANCE_SCALE, HyCoTTask, scale_reflectance
from training.trainer import fit_provenance, fit_trainer, metrics_on

TASK = "hycot"
CHECKPOINT_NAME = "checkpoint.pt"
PAPER = (
    "Fuchs, Rasti, Demir: HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image Compression, WHISPERS "
    "2024 (arXiv:2408.08700) (data: Fuchs, Demir: HySpecNet-11k, IGARSS 2023)"
)
INPUT_UNITS = "surface reflectance x 10000"
ENCODER_BATCH = 1  # a 128 x 128 tile is 16384 pixel sequences of 52 tokens: keep one tile per run
DECODER_BATCH = 4
PROJECTION_AXES = 10  # principal axes of the training pixels the out-of-distribution flag works on


def fit_hycot(
    data: Path,
    out: Path,
    compression_ratio: float = 8,
    strategy: str = "easy",
    max_steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 16,
    pixels_per_patch: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    model_options: dict | None = None,
    accelerator: str = "auto",
    command: str = "",
    scale_out: ScaleOut = SINGLE_DEVICE,
) -> Path:
    """Train HyCoT on the ``strategy`` train split of a HySpecNet-11k root; returns the checkpoint.

    ``model_options``: ``dim``, ``depth``, ``heads``, ``head_dim``, ``mlp_dim``, ``hidden_dim``,
    ``final_norm``.
    """
    if not max_steps and not epochs:
        raise ValueError("give max_steps or epochs")
    lightning.seed_everything(seed, workers=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    training_set = HySpecNet11k(data, split="train", strategy=strategy, transforms=scale_reflectance)
    module = HyCoTTask(len(training_set.bands), compression_ratio, pixels_per_patch, lr, **(model_options or {}))
    trainer = fit_trainer(out, accelerator, max_steps or -1, epochs or -1, scale_out, deterministic="warn")
    started = time.monotonic()
    loader = DataLoader(training_set, batch_size=batch_size, shuffle=True, drop_last=len(training_set) > batch_size)
    trainer.fit(module, loader)
    data_description = {
        "root": str(data),
        "dataset": "HySpecNet-11k",
        "strategy": strategy,
        "bands": list(training_set.bands),
        "wavelengths_nm": [round(float(w) * 1000.0, 1) for w in training_set.wavelengths],
        "gsd_m": GSD_M,
        "input_units": INPUT_UNITS,
        "training_patches": len(training_set),
        "simulation": read_simulation_record(data),
        "input_statistics": hycot_input_statistics(data, strategy, seed),
    }
    provenance = {
        **fit_provenance(trainer, command, seed, started),
        "final_train_metrics": {name: float(value) for name, value in trainer.callback_metrics.items()},
    }
    path = out / CHECKPOINT_NAME
    if trainer.is_global_zero:
        save_checkpoint(path, TASK, module.cpu(), data_description, provenance)
    return path


def hycot_input_statistics(data: Path, strategy: str, seed: int = 0) -> dict:
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


def load_hycot_checkpoint(path: Path) -> tuple[HyCoTTask, dict]:
    """Rebuild the HyCoT module from a checkpoint read with ``weights_only=True`` (runs no code).

    Checkpoints written before ``final_norm`` existed all have the final LayerNorm."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by `python -m training fit`")
    if checkpoint["task"] != TASK:
        raise ValueError(f"{path} holds a {checkpoint['task']!r} model, not {TASK!r}")
    module = HyCoTTask(**{"final_norm": True, **checkpoint["hyper_parameters"]})
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval(), checkpoint


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
    module, saved = load_hycot_checkpoint(checkpoint)
    strategy = strategy or saved["data"]["strategy"]
    dataset = HySpecNet11k(data, split=split, strategy=strategy, transforms=scale_reflectance)
    metrics = metrics_on(module, dataset, batch_size, accelerator, scale_out)
    return {
        "task": TASK,
        "checkpoint": str(checkpoint),
        "data": str(data),
        "strategy": strategy,
        "split": split,
        "patches": len(dataset),
        "simulation": read_simulation_record(data),
        "compression_ratio": module.hparams.compression_ratio,
        "latent_channels": module.latent,
        "bits_per_pixel_per_channel": round(module.bits_per_pixel_per_channel, 4),
        "metrics": {name: round(float(value), 4) for name, value in metrics.items()},
    }


def export_hycot(
    checkpoint: Path, stem: Path, tile_size: int = 128, metrics: dict | None = None, command: str = ""
) -> dict:
    """Write ``<stem>_encoder.onnx`` and ``<stem>_decoder.onnx`` with their contracts; returns
    ``{"encoder", "decoder", "max_abs_diff", "pair_id"}`` (onnxruntime vs torch, both parts)."""
    module, saved = load_hycot_checkpoint(checkpoint)
    data = saved["data"]
    provenance = {
        "paper": PAPER,
        "training_data": describe_hycot_training_data(data),
        "command": saved["provenance"]["command"],
        "export_command": command,
        "training": {key: saved["provenance"][key] for key in ("seed", "steps", "epochs", "seconds")},
        "metrics": metrics or {},
    }
    return write_hycot_pair(module, stem, data, provenance, tile_size)


def write_hycot_pair(module: HyCoTTask, stem: Path, data: dict, provenance: dict, tile_size: int) -> dict:
    """The encoder/decoder pair of ``module`` as ``<stem>_encoder.onnx`` and ``<stem>_decoder.onnx``.

    ``data``: ``bands`` (EnMAP names ``B<n>``), ``wavelengths_nm``, ``gsd_m`` and ``input_units`` of
    the training data; ``provenance`` is recorded in both contracts, with the codec's figures
    (compression ratio, latent size and bits, the paper's bit rate, pair id, model sizes) added.
    Returns ``{"encoder", "decoder", "max_abs_diff", "pair_id"}`` (onnxruntime vs torch, both parts)."""
    stem = Path(stem)
    enmap_bands = [int(name[1:]) for name in data["bands"]]
    spectral = tuple(
        Band(band_name(n), (f"B{n}", band_label(n), band_label(n).replace(" ", "")),
             f"{band_label(n)} (EnMAP {'VNIR' if n <= VNIR_BANDS else 'SWIR'} band {n})")
        for n in enmap_bands
    )
    latents = tuple(f"z{i:02d}" for i in range(1, module.latent + 1))
    provenance = provenance | {
        "cr": module.hparams.compression_ratio,
        "latent_channels": module.latent,
        "latent_bits": LATENT_BITS,
        "bits_per_pixel_per_channel": round(module.bits_per_pixel_per_channel, 4),
        "pair_id": pair_id(module),
        "wavelengths_nm": data["wavelengths_nm"],
        "model": {key: module.hparams[key]
                  for key in ("dim", "depth", "heads", "head_dim", "mlp_dim", "hidden_dim", "final_norm")},
    }
    common = dict(tile_size=tile_size, overlap=0, gsd_m=data["gsd_m"], provenance=provenance)
    encoder_contract = ModelContract(
        task="hycot_encoder",
        name=f"{stem.name}_encoder",
        bands=spectral,
        mean=(0.0,) * len(spectral),
        std=(REFLECTANCE_SCALE,) * len(spectral),
        outputs=Outputs(kind="regression", names=latents,
                        description="HyCoT latent values in [0, 1]; stored as 16-bit codes 1 + round(z * 65534)"),
        batch_size=ENCODER_BATCH,
        input_units=data["input_units"],
        input_statistics=data.get("input_statistics", {}),  # checkpoints fitted before they were recorded lack them
        **common,
    )
    decoder_contract = ModelContract(
        task="hycot_decoder",
        name=f"{stem.name}_decoder",
        bands=tuple(Band(name) for name in latents),
        mean=(1.0,) * len(latents),
        std=(float(LATENT_LEVELS),) * len(latents),
        outputs=Outputs(kind="regression", names=tuple(b.name for b in spectral), units=INPUT_UNITS,
                        scale=REFLECTANCE_SCALE, description="reconstructed reflectance"),
        batch_size=DECODER_BATCH,
        input_units="HyCoT latent codes 1 + round(z * 65534), 0 = nodata",
        **common,
    )
    result = {"pair_id": provenance["pair_id"], "max_abs_diff": 0.0}
    parts = (("encoder", module.encoder, encoder_contract, len(spectral)),
             ("decoder", module.decoder, decoder_contract, len(latents)))
    for part, graph, contract, channels in parts:
        path = stem.with_name(f"{stem.name}_{part}.onnx")
        write_onnx(graph.eval(), channels, tile_size, path, contract)
        result[part] = str(path)
        result["max_abs_diff"] = max(result["max_abs_diff"], parity_check(graph, path, channels, 16))
    return result


def pair_id(module: HyCoTTask) -> str:
    """First 16 hex digits of the SHA-256 of the decoder's and encoder's weights."""
    digest = hashlib.sha256()
    for part in (module.decoder, module.encoder):
        for name, tensor in sorted(part.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def describe_hycot_training_data(data: dict) -> str:
    """One honest sentence for model cards and contracts."""
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
