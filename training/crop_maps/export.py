"""Export a crop-map checkpoint to ONNX with the model contract, and check parity with torch.

Convention for the engine (``engine.contract.Modality``), task ``"crop_map"``; for each modality
``m`` of ``contract.modalities`` in that order ("s2", then "s1" when present):

- ``m`` float32 ``[N, T_m, C_m, H, W]``: the series in the modality's band order (S2: B02, B03,
  B04, B05, B06, B07, B08, B8A, B11, B12, reflectance x 10000; S1: VV, VH, VV/VH in dB),
  standardised with the modality's mean/std, invalid pixels 0;
- ``m_doy`` int64 ``[N, T_m]``: day of year 1..366 of each date, 0 for padding dates;
- ``m_mask`` float32 ``[N, T_m, H, W]``: 1 where the pixel is valid on that date (0: cloud,
  nodata, padding).

N, every T_m, H and W are dynamic (H and W multiples of the patch size; the engine uses
H = W = tile_size, the training tile). T_m may differ between modalities and from training; a
series longer than ``max_dates`` should be subsampled evenly (``training.crop_maps.data.evenly_spaced``).
Output ``output`` float32 ``[N, K, H, W]``: softmax class probabilities in the contract's class
order. bands, mean and std at the top level of the contract stay empty.
"""
from __future__ import annotations

from pathlib import Path

import torch

from engine.contract import Band, Modality, ModelContract
from training.checkpoint import load_checkpoint
from training.crop_maps.data import describe_training_data
from training.crop_maps.fit import TASK
from training.onnx_export import export_graph, parity, write_contract
from training.sentinel_bands import SENTINEL_BANDS

CONTRACT_TASK = "crop_map"
PARITY_TOLERANCE = 1e-5  # probabilities
PAPERS = (
    "Tarasiou, Chavez, Zafeiriou: ViTs for SITS: Vision Transformers for Satellite Image Time Series, "
    "CVPR 2023 (TSViT); multi-modal multi-temporal TSViT fusion (early / cross-attention / synchronised "
    "class token), IGARSS 2024; Garnot, Landrieu, Chehata: Multi-modal temporal attention models for "
    "crop mapping from satellite time series, ISPRS J. 2022 (PASTIS-R)"
)
S1_BAND_ALIASES = {
    "VV": (("sigma0_vv", "vv_db"), "Sentinel-1 IW GRD VV backscatter sigma0, dB"),
    "VH": (("sigma0_vh", "vh_db"), "Sentinel-1 IW GRD VH backscatter sigma0, dB"),
    "VV/VH": (("VV_VH", "ratio", "vv/vh ratio"), "VV/VH ratio in dB (VV_dB - VH_dB)"),
}
MODALITY_DESCRIPTION = {"s2": "Sentinel-2 L2A", "s1": "Sentinel-1 GRD"}


def export_crop(
    checkpoint: Path,
    out: Path,
    overlap: int | None = None,
    metrics: dict | None = None,
    command: str = "",
) -> dict:
    """Write ``out`` (.onnx); returns ``{"path", "max_abs_diff", "contract"}``. The tile size is the
    training tile; ``overlap`` is used when smaller than the tile, else (and by default) a third of
    the tile. ``metrics``: an ``evaluate`` result, kept as provenance."""
    module, saved = load_checkpoint(checkpoint, TASK)
    data, training, hyper = saved["data"], saved["provenance"], module.hparams
    tile_size = module.config.image_size
    aliases = {**SENTINEL_BANDS, **S1_BAND_ALIASES}
    contract = ModelContract(
        task=CONTRACT_TASK,
        name=Path(out).stem,
        bands=(),
        mean=(),
        std=(),
        modalities=tuple(
            Modality(
                name=m,
                bands=tuple(Band(name, *aliases[name]) for name in hyper.band_names[m]),
                mean=tuple(hyper.band_mean[m]),
                std=tuple(hyper.band_std[m]),
                max_dates=int(hyper.max_dates[m]),
            )
            for m in hyper.modalities
        ),
        outputs=module.contract_outputs(),
        tile_size=tile_size,
        overlap=overlap if overlap is not None and overlap < tile_size else tile_size // 3,
        gsd_m=data["gsd_m"],
        input_units="; ".join(f"{m}: {units}" for m, units in data["input_units"].items()),
        test_time_augmentations="dihedral",  # trained on random symmetries of the square (RandomTrainingView)
        input_statistics=data.get("input_statistics", {}),  # per modality; older checkpoints lack them
        provenance={
            "paper": PAPERS,
            "fusion": hyper.fusion or "none (single modality)",
            "modalities": {m: MODALITY_DESCRIPTION[m] for m in hyper.modalities} | {"s1_orbit": data["s1_orbit"]},
            "architecture": module.architecture,
            "model": module.config.as_dict(),
            "class_codes": list(hyper.class_codes),
            "training_data": describe_training_data(data),
            "command": training["command"],
            "export_command": command,
            "training": {key: training[key] for key in ("seed", "steps", "epochs", "seconds", "parameters")},
            "metrics": metrics or {},
        },
    )
    graph = module.export_graph().eval()
    channels = [len(hyper.band_names[m]) for m in hyper.modalities]
    write_crop_onnx(graph, hyper.modalities, channels, tile_size, Path(out), contract)
    cases = ((2, [7, 11, 4], tile_size), (1, [3, 1, 6], tile_size + 2 * module.config.patch_size))
    max_abs_diff = parity_check(graph, Path(out), hyper.modalities, channels, cases)
    return {"path": str(out), "max_abs_diff": max_abs_diff, "contract": contract}


def example_series(
    modalities, channels, dates, batch: int, size: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Random inputs of the convention: days sorted with trailing padding, ~30 % invalid pixels,
    invalid values 0."""
    series = []
    for modality_channels, count in zip(channels, dates):
        mask = (torch.rand(batch, count, size, size, generator=generator) > 0.3).float()
        days = torch.randint(1, 367, (batch, count), generator=generator).sort(dim=1).values
        days[0, -1] = 0  # a padding date
        mask[0, -1] = 0
        values = torch.randn(batch, count, modality_channels, size, size, generator=generator) * mask[:, :, None]
        series += [values, days, mask]
    return series


def input_names(modalities) -> list[str]:
    return [name for m in modalities for name in (m, f"{m}_doy", f"{m}_mask")]


def write_crop_onnx(graph, modalities, channels, tile_size: int, out: Path, contract: ModelContract,
                    dynamic_size: bool = True, max_dates: int | None = None) -> None:
    """Export with dynamic batch, dates per modality (at most ``max_dates`` when given), height and
    width (fixed to the tile unless ``dynamic_size``); the contract goes into the metadata."""
    dimension = torch.export.Dim
    batch = dimension("batch")
    height, width = (dimension("height"), dimension("width")) if dynamic_size else (dimension.STATIC,) * 2
    axes = {}
    for modality in modalities:
        dates = dimension(f"{modality}_dates", max=max_dates)
        axes |= {modality: {0: batch, 1: dates, 3: height, 4: width}, f"{modality}_doy": {0: batch, 1: dates},
                 f"{modality}_mask": {0: batch, 1: dates, 2: height, 3: width}}
    example = example_series(modalities, channels, [5 + 2 * i for i in range(len(modalities))], 2, tile_size,
                             torch.Generator().manual_seed(0))
    export_graph(graph, dict(zip(input_names(modalities), example)), axes, out)
    write_contract(out, contract)


def parity_check(graph, path: Path, modalities, channels, cases) -> float:
    """``parity`` (tolerance ``PARITY_TOLERANCE``) over ``cases`` of (batch, dates per modality, tile
    size), e.g. date counts that differ between modalities and from training, or another tile size."""
    generator = torch.Generator().manual_seed(1)
    names = input_names(modalities)
    series = (example_series(modalities, channels, dates[: len(modalities)], batch, size, generator)
              for batch, dates, size in cases)
    return parity(graph, path, (dict(zip(names, inputs)) for inputs in series), PARITY_TOLERANCE)
