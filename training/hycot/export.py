"""Export HyCoT hyperspectral compression models (fitted on HySpecNet-11k) as an ONNX pair.

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
(``training.hycot.bit_rate``); the engine copies it into the compressed file and its report.

Memory: onnxruntime holds about 0.3 MB per pixel of an encoder tile (every pixel is a sequence of
52 tokens through 5 attention blocks), so the shipped models use 64 x 64 tiles (about 1.2 GB);
tiles do not change the result of a pixelwise model, hence overlap 0.

Spectral bands are named by EnMAP band number (``b001``..``b224``, the 202 kept ones) with the
aliases ``B<n>`` (torchgeo's names) and the centre wavelength (``418.4 nm`` / ``418.4nm``), which
is how ``write_scene_geotiff`` describes its bands.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from engine.contract import Band, ModelContract, Outputs
from training.checkpoint import load_checkpoint
from training.hycot.data import INPUT_UNITS, describe_training_data
from training.hycot.module import LATENT_BITS, LATENT_LEVELS, PAPER, REFLECTANCE_SCALE, TASK, HyCoTTask
from training.onnx_export import parity_check, write_onnx
from training.simulation.hyperspectral import VNIR_BANDS, band_label, band_name

ENCODER_BATCH = 1  # a 128 x 128 tile is 16384 pixel sequences of 52 tokens: keep one tile per run
DECODER_BATCH = 4


def export_hycot(
    checkpoint: Path, stem: Path, tile_size: int = 128, metrics: dict | None = None, command: str = ""
) -> dict:
    """Write ``<stem>_encoder.onnx`` and ``<stem>_decoder.onnx`` with their contracts; returns
    ``{"encoder", "decoder", "max_abs_diff", "pair_id"}`` (onnxruntime vs torch, both parts)."""
    module, saved = load_checkpoint(checkpoint, TASK)
    data = saved["data"]
    provenance = {
        "paper": PAPER,
        "training_data": describe_training_data(data),
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
        "model": module.encoder.sizes,
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

