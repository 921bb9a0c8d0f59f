"""Hyperspectral compression and decompression with a learned pixelwise codec (HyCoT).

HyCoT: Fuchs & Demir, "HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image
Compression", 2024. The encoder maps each pixel's spectrum to L = ceil(bands / CR) latent values in
[0, 1]; the decoder maps them back. Any encoder/decoder pair with the same contract form works (the
PCA baseline of bench/ is one).

The compressed file is a GeoTIFF on the input grid with L UInt16 bands: latent z is stored as
1 + round(z * 65534), and 0 marks nodata, so the file is viewable in QGIS and self-describing: its
tags name the codec, the decoder model and the pair id shared by encoder and decoder, and the
original band names, dtype and nodata, which decompression restores.

The reported ``bits_per_pixel_per_channel`` is the figure the encoder's contract records, in the
paper's convention (32 bits per latent value over the unpadded band count, written at export by
training/bit_rate.py); ``stored_bits_per_pixel_per_channel`` measures the file as written.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from engine.contract import ModelContract
from engine.errors import EngineError, ModelContractError
from engine.pipeline import IsCancelled, Progress, RunStats, Strip, infer_strips
from engine.raster_io import InputGrid, OutputSpec, normalise, open_input, read_tags
from engine.runtime import MODELS_DIR, Model
from engine.tasks.raster_task import RASTER_PARAMS, RasterTask

CODEC_TAG = "rsai_codec"
LATENT_BITS = 16
LATENT_NODATA = 0
LATENT_LEVELS = 2**LATENT_BITS - 2  # z in [0, 1] -> 1 .. 65535
RATIOS = (4, 8, 16, 32)
DTYPE_RANGES = {"uint8": (0, 255), "uint16": (0, 65535), "int16": (-32768, 32767)}


def encoder_file(ratio: int) -> str:
    return f"hycot_cr{ratio}_enmap_sim_encoder.onnx"


def decoder_beside(encoder_path: str) -> Path:
    """Encoder and decoder files are named <stem>_encoder.onnx and <stem>_decoder.onnx."""
    encoder = Path(encoder_path)
    return encoder.with_name(encoder.name.replace("_encoder", "_decoder"))


def _require_task(contract: ModelContract, task: str, role: str) -> None:
    if contract.task != task:
        raise ModelContractError(
            f"model {contract.name} is a {contract.task!r} model, not a HyCoT {role} ({task!r}); "
            f"choose the {role} .onnx file"
        )


class CompressHyperspectral(RasterTask):
    name = "compress_hyperspectral"
    output_kind = "regression"
    params = {**{k: v for k, v in RASTER_PARAMS.items() if k != "resample"},
              "ratio": (int, False), "quality": (bool, False)}

    def model_path(self, params: dict) -> str:
        if params.get("model"):
            return params["model"]
        ratio = params.get("ratio", 8)
        if ratio not in RATIOS:
            raise EngineError(f"compression ratio {ratio} has no shipped model; choose one of {RATIOS}")
        return str(MODELS_DIR / encoder_file(ratio))

    def check_model(self, contract: ModelContract, params: dict) -> None:
        _require_task(contract, "hycot_encoder", "encoder")

    def outputs(self, contract: ModelContract, params: dict, grid: InputGrid) -> dict[str, OutputSpec]:
        decoder = decoder_beside(self.model_path(params)).name
        tags = {
            CODEC_TAG: "hycot",
            "encoder": contract.name,
            "decoder": decoder,
            "pair_id": str(contract.provenance.get("pair_id", "")),
            "compression_ratio": str(contract.provenance.get("cr", "")),
            "latent_bits": str(LATENT_BITS),
            "bits_per_pixel_per_channel": str(contract.provenance.get("bits_per_pixel_per_channel", "")),
            "latent_encoding": "z = (value - 1) / 65534; 0 = nodata",
            "original_dtype": grid.band_info[0].dtype,
            "original_nodata": json.dumps(grid.band_info[0].nodata),
            "original_band_names": json.dumps([band.label for band in grid.band_info]),
        }
        names = contract.outputs.names
        return {"output": OutputSpec(params["output"], len(names), "uint16", LATENT_NODATA,
                                     band_names=tuple(names), tags=tags)}

    def convert(self, contract: ModelContract, strip: Strip, specs: list[OutputSpec]) -> list[np.ndarray]:
        latent = 1 + np.rint(np.clip(strip.values, 0.0, 1.0) * LATENT_LEVELS)
        latent[:, ~strip.valid] = LATENT_NODATA
        return [latent.astype(np.uint16)]

    def report(self, params: dict, result: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        grid, tags = result["grid"], read_tags(params["output"])
        bands = len(json.loads(tags["original_band_names"]))
        itemsize = np.dtype(tags["original_dtype"]).itemsize
        latents = len(result["names"])
        rate = tags.get("bits_per_pixel_per_channel")  # absent or empty if the contract has none
        raw_bytes = grid["width"] * grid["height"] * bands * itemsize
        file_bytes = Path(params["output"]).stat().st_size
        figures = {
            "bands": bands,
            "latent_bands": latents,
            "bits_per_pixel_per_channel": float(rate) if rate else None,
            "stored_bits_per_pixel_per_channel": round(8 * file_bytes / (grid["width"] * grid["height"] * bands), 4),
            "size_ratio": round(raw_bytes / file_bytes, 3),
        }
        if params.get("quality"):
            figures.update(measure_quality(params, result["device"], progress, cancelled))
        return figures


def measure_quality(params: dict, device: str, progress: Progress, cancelled: IsCancelled) -> dict:
    """PSNR (peak 1.0) and mean spectral angle of decompress(compress(input)) against the input,
    both in the encoder's normalised units, streamed strip by strip."""
    encoder_path = CompressHyperspectral().model_path(params)
    decoder = Model(decoder_beside(encoder_path), "cuda" if device == "CUDAExecutionProvider" else "cpu")
    encoder_contract = Model(encoder_path, "cpu").contract
    squared_error, values, angle_sum, pixels = 0.0, 0, 0.0, 0
    with open_input(params["input"], encoder_contract, params.get("bands"), params.get("extent")) as original, \
            open_input(params["output"], decoder.contract) as compressed:
        def quality_progress(fraction: float, message: str) -> None:
            progress(fraction, "measuring quality: " + message)

        for strip in infer_strips(decoder, compressed, quality_progress, cancelled, RunStats()):
            data, valid = original.read(strip.row, 0, strip.valid.shape[0], compressed.width)
            valid &= strip.valid
            reference = normalise(data, valid, encoder_contract.mean, encoder_contract.std)[:, valid]
            decoded = strip.values[:, valid]
            squared_error += float(((decoded - reference) ** 2).sum())
            values += reference.size
            cosine = (decoded * reference).sum(0) / (
                np.linalg.norm(decoded, axis=0) * np.linalg.norm(reference, axis=0) + 1e-12)
            angle_sum += float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))).sum())
            pixels += reference.shape[1]
    if pixels == 0:
        return {"psnr_db": None, "spectral_angle_deg": None}
    mse = squared_error / values
    return {"psnr_db": round(10 * math.log10(1.0 / mse), 3) if mse > 0 else math.inf,
            "spectral_angle_deg": round(angle_sum / pixels, 4)}


class DecompressHyperspectral(RasterTask):
    name = "decompress_hyperspectral"
    output_kind = "regression"
    params = {k: RASTER_PARAMS[k] for k in ("input", "output", "model", "device")}

    def model_path(self, params: dict) -> str:
        if params.get("model"):
            return params["model"]
        decoder = _codec_tags(params.get("input", ""))["decoder"]
        if not (MODELS_DIR / decoder).is_file():
            raise EngineError(f"the decoder {decoder} named in {params['input']} is not among the shipped "
                              "models; give the decoder .onnx file as the model")
        return str(MODELS_DIR / decoder)

    def check_model(self, contract: ModelContract, params: dict) -> None:
        _require_task(contract, "hycot_decoder", "decoder")
        tags = _codec_tags(params["input"])
        if str(contract.provenance.get("pair_id", "")) != tags.get("pair_id", ""):
            raise ModelContractError(
                f"{params['input']} was compressed by encoder {tags.get('encoder')!r} (pair "
                f"{tags.get('pair_id')!r}), not by the partner of decoder {contract.name!r} (pair "
                f"{contract.provenance.get('pair_id')!r}); decompress it with the decoder {tags.get('decoder')!r}"
            )

    def outputs(self, contract: ModelContract, params: dict, grid: InputGrid) -> dict[str, OutputSpec]:
        tags = _codec_tags(params["input"])
        dtype = tags["original_dtype"]
        if dtype not in DTYPE_RANGES and dtype != "float32":
            raise EngineError(f"{params['input']}: cannot restore original data type {dtype!r}")
        nodata = json.loads(tags["original_nodata"])
        return {"output": OutputSpec(
            params["output"], contract.outputs.channels, dtype,
            nodata if nodata is not None else (0 if dtype in DTYPE_RANGES else -9999.0),
            band_names=tuple(json.loads(tags["original_band_names"])),
            tags={"decompressed_by": contract.name, "pair_id": tags["pair_id"]},
        )}

    def convert(self, contract: ModelContract, strip: Strip, specs: list[OutputSpec]) -> list[np.ndarray]:
        spec = specs[0]
        values = strip.values * contract.outputs.scale + contract.outputs.offset
        if spec.dtype in DTYPE_RANGES:
            values = np.clip(np.rint(values), *DTYPE_RANGES[spec.dtype])
        values[:, ~strip.valid] = spec.nodata
        return [values.astype(spec.dtype)]


def _codec_tags(path: str) -> dict:
    tags = read_tags(path)
    if tags.get(CODEC_TAG) != "hycot":
        raise EngineError(
            f"{path} is not a HyCoT-compressed raster (no {CODEC_TAG}=hycot tag); "
            "decompress only files written by 'Compress hyperspectral raster'"
        )
    return tags
