"""Hyperspectral compression and decompression with a learned pixelwise codec (HyCoT).

HyCoT: Fuchs, Rasti & Demir, "HyCoT: A Transformer-Based Autoencoder for Hyperspectral Image
Compression", 2024. The encoder maps each pixel's spectrum to L = ceil(bands / CR) latent values in
[0, 1]; the decoder maps them back. Any encoder/decoder pair with the same contract form works (the
PCA baseline of bench/ is one).

The compressed file is a GeoTIFF on the input grid with L UInt16 bands: latent z is stored as
1 + round(z * 65534), and 0 marks nodata, so the file is viewable in QGIS and self-describing: its
tags name the codec, the decoder model and the pair id shared by encoder and decoder, and the
original band names, dtype and nodata, which decompression restores.

The reported ``bits_per_pixel_per_channel`` is the figure the encoder's contract records, in the
paper's convention (32 bits per latent value over the unpadded band count, written at export by
training/hycot/bit_rate.py); ``stored_bits_per_pixel_per_channel`` measures the file as written.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.contract import ModelContract
from engine.errors import EngineError, ModelContractError
from engine.model_catalogue import installed_model
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
        decoder = compressed_file(params["input"]).decoder
        return str(installed_model(decoder, f"the decoder tag of {params['input']}"))

    def check_model(self, contract: ModelContract, params: dict) -> None:
        _require_task(contract, "hycot_decoder", "decoder")
        compressed = compressed_file(params["input"])
        if str(contract.provenance.get("pair_id", "")) != compressed.pair_id:
            raise ModelContractError(
                f"{params['input']} was compressed by encoder {compressed.encoder!r} (pair "
                f"{compressed.pair_id!r}), not by the partner of decoder {contract.name!r} (pair "
                f"{contract.provenance.get('pair_id')!r}); decompress it with the decoder {compressed.decoder!r}"
            )
        if len(compressed.band_names) != contract.outputs.channels:
            raise _damaged_tag(params["input"], "original_band_names",
                               f"names {len(compressed.band_names)} bands but its decoder restores "
                               f"{contract.outputs.channels}")

    def outputs(self, contract: ModelContract, params: dict, grid: InputGrid) -> dict[str, OutputSpec]:
        compressed = compressed_file(params["input"])
        dtype, nodata = compressed.dtype, compressed.nodata
        return {"output": OutputSpec(
            params["output"], contract.outputs.channels, dtype,
            nodata if nodata is not None else (0 if dtype in DTYPE_RANGES else -9999.0),
            band_names=compressed.band_names,
            tags={"decompressed_by": contract.name, "pair_id": compressed.pair_id},
        )}

    def convert(self, contract: ModelContract, strip: Strip, specs: list[OutputSpec]) -> list[np.ndarray]:
        spec = specs[0]
        values = strip.values * contract.outputs.scale + contract.outputs.offset
        if spec.dtype in DTYPE_RANGES:
            values = np.clip(np.rint(values), *DTYPE_RANGES[spec.dtype])
        values[:, ~strip.valid] = spec.nodata
        return [values.astype(spec.dtype)]


@dataclass(frozen=True)
class CompressedFile:
    """What the tags of a compressed file say, each checked (the tags are not trusted)."""

    decoder: str  # a file name, resolved among the installed models only (installed_model)
    encoder: str
    pair_id: str
    dtype: str  # of the original raster
    nodata: float | None
    band_names: tuple[str, ...]


def compressed_file(path: str) -> CompressedFile:
    """The tags of a HyCoT-compressed raster; a missing or malformed tag raises EngineError naming it."""
    tags = read_tags(path)
    if tags.get(CODEC_TAG) != "hycot":
        raise EngineError(
            f"{path} is not a HyCoT-compressed raster (no {CODEC_TAG}=hycot tag); "
            "decompress only files written by 'Compress hyperspectral raster'"
        )
    missing = [tag for tag in ("decoder", "original_dtype", "original_nodata", "original_band_names")
               if not tags.get(tag)]
    if missing:
        raise _damaged_tag(path, missing[0], "is missing")
    dtype = tags["original_dtype"]
    if dtype not in DTYPE_RANGES and dtype != "float32":
        raise _damaged_tag(path, "original_dtype", f"is {dtype!r}, not one of {[*DTYPE_RANGES, 'float32']}")
    nodata = _json_tag(path, tags, "original_nodata")
    if isinstance(nodata, bool) or not isinstance(nodata, (int, float, type(None))):
        raise _damaged_tag(path, "original_nodata", f"is {tags['original_nodata']!r}, not a number or null")
    names = _json_tag(path, tags, "original_band_names")
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        raise _damaged_tag(path, "original_band_names",
                           f"is {tags['original_band_names'][:80]!r}, not a list of band names")
    return CompressedFile(tags["decoder"], tags.get("encoder", ""), tags.get("pair_id", ""), dtype, nodata,
                          tuple(names))


def _json_tag(path: str, tags: dict[str, str], tag: str):
    try:
        return json.loads(tags[tag])
    except json.JSONDecodeError as bad:
        raise _damaged_tag(path, tag, f"is {tags[tag][:80]!r}, not valid JSON ({bad})") from None


def _damaged_tag(path: str, tag: str, problem: str) -> EngineError:
    return EngineError(
        f"{path}: the HyCoT tag {tag!r} {problem}. The file's tags were damaged or edited after compression: "
        "compress the original raster again with 'Compress hyperspectral raster' (or restore the tag)"
    )
