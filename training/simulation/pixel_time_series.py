"""Simulated one-year Sentinel-2 pixel time series for the augmentation-consistency check.

Each pixel mixes a background (soil, bark, water, built-up) and green-vegetation spectrum with a
greenness that follows a double-logistic phenology (start and end of season vary per pixel); on
top come acquisition conditions that L2A correction leaves: a per-date illumination factor
(residual of solar elevation and BRDF), a per-date residual haze that decreases with wavelength
(Angstrom-like lambda^-2, strongest in blue), per-observation noise, and cloudy dates (NaN).
The output follows the format of ``training.scene_labels.consistency`` (.npz).
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.datasets.reben_format import S2_BANDS

WAVELENGTH_NM = np.array([490, 560, 665, 705, 740, 783, 842, 865, 1610, 2190], dtype=float)  # S2_BANDS
GREEN_VEGETATION = np.array([0.03, 0.06, 0.035, 0.09, 0.28, 0.36, 0.40, 0.41, 0.20, 0.09])


@dataclass(frozen=True)
class LandCover:
    background: tuple[float, ...]  # soil, bark, water or built-up reflectance in S2_BANDS order
    greenness_min: float  # share of green vegetation out of season
    greenness_max: float  # and at the peak of the season
    season_start_day: int  # day of year of the green-up / senescence inflections
    season_end_day: int
    slope_days: float  # how fast green-up and senescence go


LAND_COVERS = {
    "Arable land": LandCover((0.07, 0.09, 0.11, 0.13, 0.16, 0.18, 0.20, 0.21, 0.28, 0.22), 0.0, 0.9, 120, 210, 8),
    "Pastures": LandCover((0.06, 0.08, 0.09, 0.11, 0.14, 0.16, 0.18, 0.19, 0.25, 0.19), 0.3, 0.85, 100, 280, 15),
    "Broad-leaved forest": LandCover(
        (0.04, 0.05, 0.06, 0.08, 0.12, 0.15, 0.17, 0.18, 0.20, 0.14), 0.05, 0.9, 125, 290, 7
    ),
    "Coniferous forest": LandCover(
        (0.02, 0.035, 0.02, 0.06, 0.16, 0.20, 0.22, 0.23, 0.11, 0.05), 0.6, 0.75, 130, 270, 20
    ),
    "Inland waters": LandCover(
        (0.05, 0.04, 0.025, 0.015, 0.01, 0.008, 0.007, 0.006, 0.003, 0.002), 0.0, 0.0, 150, 250, 10
    ),
    "Urban fabric": LandCover((0.10, 0.11, 0.12, 0.13, 0.15, 0.16, 0.17, 0.18, 0.22, 0.19), 0.05, 0.1, 120, 280, 10),
}


def simulate_pixel_series(
    pixels_per_cover: int = 50, dates: int = 36, seed: int = 0, cloud_fraction: float = 0.2
) -> dict[str, np.ndarray]:
    """Arrays of the pixel time-series format: reflectance, dates, bands, land_cover."""
    rng = np.random.default_rng(seed)
    day_of_year = np.sort(rng.choice(np.arange(1, 366), size=dates, replace=False))
    illumination = rng.normal(1.0, 0.03, size=dates)
    haze = np.abs(rng.normal(0.0, 0.006, size=dates))[:, None] * (WAVELENGTH_NM / 490.0) ** -2
    series, covers = [], []
    for name, cover in LAND_COVERS.items():
        start_day = cover.season_start_day + rng.normal(0, 8, size=(pixels_per_cover, 1))
        end_day = cover.season_end_day + rng.normal(0, 8, size=(pixels_per_cover, 1))
        green_up = 1 / (1 + np.exp(-(day_of_year - start_day) / cover.slope_days))
        senescence = 1 / (1 + np.exp(-(day_of_year - end_day) / cover.slope_days))
        greenness = cover.greenness_min + (cover.greenness_max - cover.greenness_min) * (green_up - senescence)
        pixel_gain = rng.normal(1.0, 0.05, size=(pixels_per_cover, 1, 1))
        surface = pixel_gain * (
            (1 - greenness[..., None]) * np.array(cover.background) + greenness[..., None] * GREEN_VEGETATION
        )
        observed = surface * illumination[:, None] + haze + rng.normal(0, 0.004, surface.shape)
        series.append(np.clip(observed, 0, 1))
        covers += [name] * pixels_per_cover
    reflectance = np.concatenate(series).astype(np.float32)
    reflectance[rng.random(reflectance.shape[:2]) < cloud_fraction] = np.nan
    year_start = datetime.date(2018, 1, 1)
    return {
        "reflectance": reflectance,
        "dates": np.array([str(year_start + datetime.timedelta(days=int(day) - 1)) for day in day_of_year]),
        "bands": np.array(S2_BANDS),
        "land_cover": np.array(covers),
    }


def write_pixel_series(path: Path, pixels_per_cover: int = 50, dates: int = 36, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **simulate_pixel_series(pixels_per_cover, dates, seed))
    return path
