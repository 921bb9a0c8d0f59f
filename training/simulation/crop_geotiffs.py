"""Write a simulated crop-season time series as georeferenced GeoTIFFs (engine / plugin tests, samples).

The series comes from ``training.simulation.crop_phenology`` (SIMULATED, not real imagery). Call
``write_crop_time_series(out_dir)``; it writes, on one 10 m grid (``crs``, upper-left ``origin``):

- ``S2_YYYYMMDD.tif`` per Sentinel-2 date: uint16, 10 bands B02, B03, B04, B05, B06, B07, B08, B8A,
  B11, B12 (band descriptions), L2A reflectance x 10000, nodata 0 (swath edges, and clouds when
  ``mask_clouds``: pixels a cloud mask would flag, opacity > ``CLOUD_MASK_OPACITY``; thin cloud
  edges and cloud shadows stay, as after a real L2A cloud mask);
- ``S1_YYYYMMDD.tif`` per Sentinel-1 (ascending) date: float32, 3 bands VV, VH (sigma0, dB) and
  VV/VH (VV_dB - VH_dB), nodata -9999;
- ``S2_stack.tif`` / ``S1_stack.tif``: every date in one file, band descriptions "YYYY-MM-DD BAND"
  (e.g. "2023-04-15 B02"), date-major, with band tags ``date`` and ``band``;
- ``labels.tif``: uint8 reference classes, PASTIS codes (0 background, 1..18 crops, 19 void).

Returns ``CropSeriesFiles`` (paths and ``datetime.date`` per file).
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from training.datasets.pastis_r_format import GSD_M, S1_CHANNELS, S2_BANDS, S2_SCALE
from training.simulation.crop_phenology import simulate_series, simulate_tile_conditions

CLOUD_MASK_OPACITY = 0.25
S1_NODATA = -9999.0


@dataclass
class CropSeriesFiles:
    s2: list[Path]
    s2_dates: list[datetime.date]
    s1: list[Path]
    s1_dates: list[datetime.date]
    s2_stack: Path | None
    s1_stack: Path | None
    labels: Path


def write_crop_time_series(
    out_dir: Path,
    size: int = 96,
    seed: int = 0,
    year: int = 2023,
    crs: str = "EPSG:32631",
    origin: tuple[float, float] = (600000.0, 5400000.0),
    mask_clouds: bool = True,
    stack: bool = True,
) -> CropSeriesFiles:
    """Simulate a ``size`` x ``size`` px area over ``year`` and write it under ``out_dir``."""
    rng = np.random.default_rng(seed)
    series = simulate_series(rng, size, simulate_tile_conditions(rng, year))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff", height=size, width=size, crs=crs, transform=from_origin(*origin, GSD_M, GSD_M),
        tiled=True, blockxsize=_block(size), blockysize=_block(size), compress="deflate",
    )
    s2 = np.round(series.s2 * S2_SCALE).astype(np.uint16)
    if mask_clouds:
        s2[np.broadcast_to((series.cloud > CLOUD_MASK_OPACITY)[:, None], s2.shape)] = 0
    s2_dates, s1_dates = series.dates(series.s2_days), series.dates(series.s1_days["s1a"])
    s1 = series.s1["s1a"]
    s2_profile, s1_profile = profile | {"dtype": "uint16", "nodata": 0}, profile | {"dtype": "float32", "nodata": S1_NODATA}
    s2_paths = [_write(out_dir / f"S2_{d:%Y%m%d}.tif", image, S2_BANDS, s2_profile, d) for d, image in zip(s2_dates, s2)]
    s1_paths = [_write(out_dir / f"S1_{d:%Y%m%d}.tif", image, S1_CHANNELS, s1_profile, d) for d, image in zip(s1_dates, s1)]
    s2_stack = _write_stack(out_dir / "S2_stack.tif", s2, s2_dates, S2_BANDS, s2_profile) if stack else None
    s1_stack = _write_stack(out_dir / "S1_stack.tif", s1, s1_dates, S1_CHANNELS, s1_profile) if stack else None
    labels = out_dir / "labels.tif"
    with rasterio.open(labels, "w", count=1, dtype="uint8", **profile) as dst:
        dst.write(series.landscape.labels, 1)
        dst.set_band_description(1, "PASTIS class code (0 background, 19 void)")
    return CropSeriesFiles(s2_paths, s2_dates, s1_paths, s1_dates, s2_stack, s1_stack, labels)


def _block(size: int) -> int:
    """Largest GeoTIFF tile side (a multiple of 16, at most 256) that fits ``size``, at least 16."""
    return max(16, min(256, size // 16 * 16))


def _write(path: Path, image: np.ndarray, bands, profile: dict, date: datetime.date) -> Path:
    with rasterio.open(path, "w", count=len(bands), **profile) as dst:
        dst.write(image)
        dst.update_tags(date=date.isoformat())
        for index, band in enumerate(bands, start=1):
            dst.set_band_description(index, band)
    return path


def _write_stack(path: Path, images: np.ndarray, dates, bands, profile: dict) -> Path:
    """All dates in one file, date-major: band (i * len(bands) + j + 1) is band j on date i."""
    with rasterio.open(path, "w", count=len(dates) * len(bands), **profile) as dst:
        dst.write(images.reshape(-1, *images.shape[2:]))
        for index, (date, band) in enumerate(((d, b) for d in dates for b in bands), start=1):
            dst.set_band_description(index, f"{date.isoformat()} {band}")
            dst.update_tags(index, date=date.isoformat(), band=band)
    return path
