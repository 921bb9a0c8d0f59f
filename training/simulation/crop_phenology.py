"""Simulated Sentinel-2 / Sentinel-1 time series of crop parcels driven by crop phenology (numpy only).

No crop time series can be downloaded here, so crop-mapping models learn from landscapes simulated
from how crops develop over a season, in PASTIS-R's format (``write_pastis_r_fixture``; Garnot et
al., ISPRS J. 2022) or as GeoTIFFs (``training.simulation.crop_geotiffs``).

- Landscape: parcels are Voronoi cells (convex polygons) of a jittered seed grid, one land cover
  each, half of them edged by 1-pixel grass margins or tracks (background); land covers are drawn with frequencies
  like those of French farmland (wheat, meadow and maize first). A parcel mostly outside its patch
  is labelled void (19) as in PASTIS.
- Phenology: per crop a calendar of green-vegetation cover (autumn emergence and winter cover of
  autumn-sown crops, spring or early-summer green-up, peak, senescence into dry vegetation, harvest
  to stubble and soil, regrowth after mowing for meadows, yellow flowering of rapeseed, inter-row
  grass of vineyards) with logistic transitions; every parcel shifts the dates (~1 week) and
  amplitudes, every tile shifts the season, and pixels vary smoothly inside a parcel.
- Sentinel-2: linear mixing of endmember spectra (soil darkened by moisture, green vegetation, dry
  vegetation, flowers; litter, water or built-up for non-crop covers) in PASTIS's band order, a
  per-date haze (Angstrom-like, strongest in blue), sensor noise, clouds (smooth random fields,
  more frequent in winter) with their shadows, partial nodata at swath edges, int16 x 10000.
- Sentinel-1: the water cloud model (Attema & Ulaby, Radio Science 1978): sigma0 = A V cos(theta)
  (1 - tau^2) + tau^2 sigma0_soil, tau^2 = exp(-2 B V / cos(theta)), V the vegetation amount (cover
  times canopy size), sigma0_soil rising with soil moisture (rain events) and roughness; VH has a
  stronger volume term than VV, VV a stronger attenuation. Built-up returns are bright (double
  bounce), water is dark. Multiplicative speckle (Gamma, 4 looks); stored in dB with VV_dB - VH_dB.
- Dates: S2 every 5 days with some acquisitions missing per patch, S1 ascending and descending
  every 6 days with tile-specific offsets: the three date sets differ, as in PASTIS-R.
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.datasets.pastis_r_format import (
    BACKGROUND_LABEL,
    DATE_KEYS,
    DIRECTORY,
    METADATA_FILE,
    ORBITS,
    S2_SCALE,
    SIMULATION_RECORD,
    VOID_LABEL,
)

# Endmember reflectance in PASTIS's S2 band order: B02 B03 B04 B05 B06 B07 B08 B8A B11 B12.
SOIL = np.array([0.075, 0.105, 0.140, 0.160, 0.180, 0.195, 0.210, 0.220, 0.320, 0.270])
GREEN_VEGETATION = np.array([0.030, 0.070, 0.035, 0.100, 0.300, 0.400, 0.450, 0.460, 0.220, 0.100])
DRY_VEGETATION = np.array([0.070, 0.100, 0.125, 0.160, 0.205, 0.235, 0.265, 0.280, 0.380, 0.290])
YELLOW_FLOWERS = np.array([0.040, 0.190, 0.160, 0.230, 0.340, 0.400, 0.430, 0.440, 0.250, 0.120])
FOREST_FLOOR = np.array([0.030, 0.045, 0.050, 0.075, 0.110, 0.130, 0.150, 0.160, 0.170, 0.110])
WATER = np.array([0.060, 0.050, 0.030, 0.020, 0.015, 0.012, 0.010, 0.009, 0.005, 0.003])
BUILT_UP = np.array([0.100, 0.110, 0.120, 0.130, 0.150, 0.160, 0.170, 0.180, 0.220, 0.200])
CLOUD = np.array([0.450, 0.440, 0.440, 0.450, 0.460, 0.470, 0.470, 0.470, 0.350, 0.250])
WAVELENGTH_NM = np.array([490, 560, 665, 705, 740, 783, 842, 865, 1610, 2190], dtype=float)
MOISTURE_DARKENING = np.where(WAVELENGTH_NM > 1500, 0.5, 0.3)  # wet soil is darker, most in SWIR
SURFACES = {"soil": SOIL, "forest floor": FOREST_FLOOR, "water": WATER, "built-up": BUILT_UP}
SPECKLE_LOOKS = 4  # equivalent number of looks of the S1 backscatter
S2_REVISIT_DAYS, S1_REVISIT_DAYS = 5, 6  # Sentinel-2A+B, Sentinel-1A+B (PASTIS-R's 2019 season)


@dataclass(frozen=True)
class Calendar:
    """A land cover's season: green and dry vegetation cover (0-1) by day of year.

    green = [winter + (peak - winter) * rise] * (1 - fall) + late * fall, times (1 - harvest),
    plus the autumn emergence of the next autumn-sown crop; dry = peak_dry * fall until harvest,
    then stubble until the next crop; rise, fall, harvest, emergence are logistic in the day.
    """

    label: int  # PASTIS class code
    peak_green: float
    green_up_day: float = 100.0
    green_up_days: float = 8.0  # logistic time scale of the green-up
    winter_green: float = 0.0
    senescence_day: float = 999.0
    senescence_days: float = 6.0
    late_green: float = 0.0  # green cover after senescence (perennials)
    peak_dry: float = 0.0
    harvest_day: float = 999.0
    stubble: float = 0.0
    autumn_emergence_day: float = 999.0
    autumn_green: float = 0.0
    mowing_days: tuple[float, ...] = ()
    flowering_day: float = 0.0  # 0: no conspicuous flowering
    inter_row_green: float = 0.0
    canopy_size: float = 0.5  # 0-1: how much vegetation a full cover holds (S1 volume scattering)
    surface: str = "soil"


CROPS = {
    "meadow": Calendar(1, 0.85, 80, 15, winter_green=0.55, senescence_day=300, senescence_days=20,
                       late_green=0.55, peak_dry=0.1, mowing_days=(140, 190, 245), canopy_size=0.3),
    "soft_winter_wheat": Calendar(2, 0.9, 75, 9, winter_green=0.25, senescence_day=165, senescence_days=7,
                                  peak_dry=0.75, harvest_day=192, stubble=0.35, autumn_emergence_day=305,
                                  autumn_green=0.2, canopy_size=0.55),
    "corn": Calendar(3, 0.92, 168, 8, senescence_day=250, senescence_days=10, peak_dry=0.65, harvest_day=285,
                     stubble=0.25, canopy_size=1.0),
    "winter_barley": Calendar(4, 0.88, 68, 9, winter_green=0.3, senescence_day=150, senescence_days=7,
                              peak_dry=0.7, harvest_day=178, stubble=0.35, autumn_emergence_day=298,
                              autumn_green=0.22, canopy_size=0.5),
    "winter_rapeseed": Calendar(5, 0.92, 60, 10, winter_green=0.5, senescence_day=160, senescence_days=8,
                                peak_dry=0.6, harvest_day=185, stubble=0.3, autumn_emergence_day=250,
                                autumn_green=0.45, flowering_day=112, canopy_size=0.75),
    "spring_barley": Calendar(6, 0.85, 112, 7, senescence_day=182, senescence_days=6, peak_dry=0.7,
                              harvest_day=208, stubble=0.3, canopy_size=0.45),
    "sunflower": Calendar(7, 0.8, 152, 8, senescence_day=215, senescence_days=8, peak_dry=0.6,
                          harvest_day=255, stubble=0.2, canopy_size=0.8),
    "grapevine": Calendar(8, 0.45, 122, 10, senescence_day=285, senescence_days=12, peak_dry=0.15,
                          inter_row_green=0.15, canopy_size=0.4),
    "beet": Calendar(9, 0.95, 150, 10, harvest_day=285, stubble=0.05, canopy_size=0.5),
    "soybeans": Calendar(15, 0.88, 172, 8, senescence_day=245, senescence_days=7, peak_dry=0.6,
                         harvest_day=275, stubble=0.2, canopy_size=0.6),
}
BACKGROUND_COVERS = {
    "deciduous forest": Calendar(BACKGROUND_LABEL, 0.9, 115, 6, winter_green=0.1, senescence_day=295,
                                 senescence_days=8, late_green=0.1, peak_dry=0.35, canopy_size=1.0,
                                 surface="forest floor"),
    "coniferous forest": Calendar(BACKGROUND_LABEL, 0.78, 100, 20, winter_green=0.7, canopy_size=1.0,
                                  surface="forest floor"),
    "built-up": Calendar(BACKGROUND_LABEL, 0.05, canopy_size=0.0, surface="built-up"),
    "water": Calendar(BACKGROUND_LABEL, 0.0, canopy_size=0.0, surface="water"),
    "fallow": Calendar(BACKGROUND_LABEL, 0.65, 85, 15, winter_green=0.4, senescence_day=205,
                       senescence_days=20, late_green=0.35, peak_dry=0.25, canopy_size=0.25),
}
MARGIN = Calendar(BACKGROUND_LABEL, 0.7, 80, 15, winter_green=0.45, senescence_day=210, senescence_days=20,
                  late_green=0.4, peak_dry=0.2, canopy_size=0.2)
# Share of parcels per land cover (French farmland-like; background covers 20 %).
COVER_FREQUENCY = {
    "soft_winter_wheat": 0.18, "meadow": 0.15, "corn": 0.12, "winter_barley": 0.08, "winter_rapeseed": 0.06,
    "spring_barley": 0.04, "sunflower": 0.05, "grapevine": 0.04, "beet": 0.04, "soybeans": 0.04,
    "deciduous forest": 0.06, "coniferous forest": 0.03, "built-up": 0.04, "water": 0.02, "fallow": 0.05,
}
ALL_COVERS = {**CROPS, **BACKGROUND_COVERS}
SIMULATED_LABELS = tuple(sorted({BACKGROUND_LABEL, *(c.label for c in CROPS.values())}))


def logistic(days: np.ndarray, centre: np.ndarray | float, scale: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip((days - centre) / scale, -60, 60)))


def vegetation_cover(calendar: Calendar, days: np.ndarray, shift: np.ndarray, gain: np.ndarray):
    """Green, dry and flower cover [fields, dates] on ``days`` for fields whose season is shifted by
    ``shift`` days and whose peak cover is scaled by ``gain`` (both [fields, 1])."""
    day = days[None, :] - shift
    rise = logistic(day, calendar.green_up_day, calendar.green_up_days)
    fall = logistic(day, calendar.senescence_day, calendar.senescence_days)
    harvest = logistic(day, calendar.harvest_day, 2.0)
    emergence = logistic(day, calendar.autumn_emergence_day, 10.0)
    peak = np.clip(calendar.peak_green * gain, 0, 1)
    season = calendar.winter_green + (peak - calendar.winter_green) * rise
    green = (season * (1 - fall) + calendar.late_green * fall) * (1 - harvest) + calendar.autumn_green * emergence
    for mowing_day in calendar.mowing_days:
        since = day - mowing_day
        green = green * (1 - 0.55 * logistic(since, 0.0, 1.0) * np.exp(-np.clip(since, 0, None) / 20))
    dry = calendar.peak_dry * fall * (1 - harvest) + calendar.stubble * harvest * (1 - emergence)
    flowers = np.zeros_like(green)
    if calendar.flowering_day:
        flowers = 0.4 * np.exp(-0.5 * ((day - calendar.flowering_day) / 9.0) ** 2) * green
        green = green - 0.6 * flowers
    green = green + calendar.inter_row_green
    total = np.maximum(green + dry + flowers, 1.0)
    return green / total, dry / total, flowers / total


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], scale_px: float) -> np.ndarray:
    """Gaussian-filtered white noise over the last two axes, unit standard deviation."""
    white = rng.standard_normal(shape)
    rows = np.fft.fftfreq(shape[-2])[:, None]
    cols = np.fft.fftfreq(shape[-1])[None, :]
    kernel = np.exp(-2 * (np.pi * scale_px) ** 2 * (rows**2 + cols**2))
    smooth = np.fft.ifft2(np.fft.fft2(white) * kernel).real
    return (smooth - smooth.mean(axis=(-2, -1), keepdims=True)) / (smooth.std(axis=(-2, -1), keepdims=True) + 1e-12)


@dataclass
class Landscape:
    """Parcels of a square area: per-pixel parcel index, per-parcel land cover and PASTIS labels."""

    parcel: np.ndarray  # int [H, W], index into covers; margins point at the margin cover
    covers: list[str]  # land cover name per parcel index ("margin" for the grass margins)
    labels: np.ndarray  # uint8 [H, W] PASTIS semantic classes
    instances: np.ndarray  # int64 [H, W] parcel ids of crop parcels, 0 elsewhere


def simulate_landscape(rng: np.random.Generator, size: int, border: int = 8) -> Landscape:
    """Voronoi parcels over the area and a ``border`` around it (to find parcels mostly outside)."""
    canvas = size + 2 * border
    spacing = rng.uniform(8, 14)
    grid = np.arange(spacing / 2, canvas, spacing)
    seeds = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    seeds = seeds + rng.uniform(-0.4, 0.4, seeds.shape) * spacing
    rows, cols = np.mgrid[0:canvas, 0:canvas]
    distance = (rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2
    cell = distance.argmin(-1)
    names = list(COVER_FREQUENCY)
    frequency = np.array(list(COVER_FREQUENCY.values()))
    covers = list(rng.choice(names, size=len(seeds), p=frequency / frequency.sum()))
    inside = cell[border:-border, border:-border]
    total_area = np.bincount(cell.ravel(), minlength=len(seeds))
    inside_area = np.bincount(inside.ravel(), minlength=len(seeds))
    labels = np.array([ALL_COVERS[name].label for name in covers], dtype=np.uint8)
    is_crop = np.array([name in CROPS for name in covers])
    labels[is_crop & (inside_area < 0.5 * total_area)] = VOID_LABEL
    boundary = np.zeros_like(cell, dtype=bool)
    boundary[1:, :] |= cell[1:, :] != cell[:-1, :]
    boundary[:, 1:] |= cell[:, 1:] != cell[:, :-1]
    hedged = rng.random(len(seeds)) < 0.5  # half the parcels have a grass margin or track on their edge
    margin = (boundary & hedged[cell])[border:-border, border:-border]
    parcel = np.where(margin, len(covers), inside)
    semantic = np.where(margin, BACKGROUND_LABEL, labels[inside]).astype(np.uint8)
    instances = np.where(margin | ~is_crop[inside], 0, inside + 1).astype(np.int64)
    return Landscape(parcel, covers + ["margin"], semantic, instances)


@dataclass(frozen=True)
class TileConditions:
    """What parcels of one satellite tile share: season shift, weather, acquisition calendars."""

    year: int
    season_shift_days: float
    rain_days: np.ndarray
    rain_amounts: np.ndarray
    s2_days: np.ndarray  # every acquisition of the tile's S2 orbit (patches drop some)
    s1_days: dict[str, np.ndarray]  # "s1a" / "s1d" -> acquisition days
    incidence_deg: dict[str, float]

    def soil_moisture(self, days: np.ndarray) -> np.ndarray:
        """0-1: wetter in winter, wetted by rain events that dry out in ~4 days."""
        base = 0.35 + 0.2 * np.cos(2 * np.pi * (days - 20) / 365)
        since = days[:, None] - self.rain_days[None, :]
        wetting = (self.rain_amounts * np.exp(-np.clip(since, 0, None) / 4.0) * (since >= 0)).sum(axis=1)
        return np.clip(base + wetting, 0, 1)


def simulate_tile_conditions(rng: np.random.Generator, year: int) -> TileConditions:
    year_days = (datetime.date(year, 12, 31) - datetime.date(year, 1, 1)).days + 1
    rain_days = np.sort(rng.uniform(1, year_days, size=rng.integers(25, 45)))
    s1_days = {}
    for orbit in ORBITS:
        offset = rng.integers(1, S1_REVISIT_DAYS + 1)
        days = np.arange(offset, year_days + 1, S1_REVISIT_DAYS)
        s1_days[orbit] = days[rng.random(len(days)) > 0.05]
    return TileConditions(
        year=year,
        season_shift_days=float(rng.normal(0, 5)),
        rain_days=rain_days,
        rain_amounts=rng.uniform(0.1, 0.4, size=len(rain_days)),
        s2_days=np.arange(rng.integers(1, S2_REVISIT_DAYS + 1), year_days + 1, S2_REVISIT_DAYS),
        s1_days=s1_days,
        incidence_deg={"s1a": float(rng.uniform(33, 43)), "s1d": float(rng.uniform(33, 43))},
    )


@dataclass
class SimulatedSeries:
    """One simulated area: S2 reflectance with clouds, S1 backscatter per orbit, labels."""

    year: int
    s2_days: np.ndarray  # day of year per S2 date
    s2: np.ndarray  # float32 [T, 10, H, W] reflectance (0-1); 0 in every band = nodata
    cloud: np.ndarray  # float32 [T, H, W] cloud opacity 0-1 (what a perfect cloud mask would see)
    s1_days: dict[str, np.ndarray]
    s1: dict[str, np.ndarray]  # "s1a" / "s1d" -> float32 [T, 3, H, W]: VV dB, VH dB, VV_dB - VH_dB
    landscape: Landscape = field(repr=False)

    def dates(self, days: np.ndarray) -> list[datetime.date]:
        return [datetime.date(self.year, 1, 1) + datetime.timedelta(days=int(d) - 1) for d in days]


def simulate_series(
    rng: np.random.Generator, size: int, conditions: TileConditions, s2_keep: float = 0.6
) -> SimulatedSeries:
    """Simulate one ``size`` x ``size`` area of a tile; ``s2_keep``: share of S2 acquisitions kept."""
    landscape = simulate_landscape(rng, size)
    s2_days = conditions.s2_days[rng.random(len(conditions.s2_days)) < s2_keep]
    covers = landscape.covers
    shift = rng.normal(conditions.season_shift_days, 6.0, size=(len(covers), 1))
    gain = rng.normal(1.0, 0.05, size=(len(covers), 1))
    heterogeneity = np.clip(1 + 0.08 * smooth_noise(rng, (size, size), 3.0), 0.7, 1.3)
    soil_brightness = rng.uniform(0.8, 1.2, size=len(covers))[landscape.parcel][None]
    roughness_db = rng.normal(0, 1.0, size=len(covers))[landscape.parcel][None]

    def pixel_covers(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        per_parcel = [np.zeros((len(covers), len(days))) for _ in range(3)]
        for index, name in enumerate(covers):
            parts = vegetation_cover(_calendar(name), days, shift[index : index + 1], gain[index : index + 1])
            for whole, part in zip(per_parcel, parts):
                whole[index] = part[0]
        green, dry, flowers = (part[landscape.parcel].transpose(2, 0, 1) for part in per_parcel)  # [T, H, W]
        return np.clip(green * heterogeneity, 0, 1), dry, flowers

    surface = np.array([_calendar(name).surface for name in covers])[landscape.parcel]  # [H, W]
    s2, cloud = _sentinel2(rng, s2_days, pixel_covers(s2_days), surface, soil_brightness, conditions)
    s1 = {}
    for orbit, days in conditions.s1_days.items():
        s1[orbit] = _sentinel1(
            rng, days, pixel_covers(days), landscape, roughness_db, conditions, conditions.incidence_deg[orbit]
        )
    return SimulatedSeries(conditions.year, s2_days, s2, cloud, dict(conditions.s1_days), s1, landscape)


def _calendar(name: str) -> Calendar:
    """The calendar of a land cover name, or of the grass margins between parcels ("margin")."""
    return MARGIN if name == "margin" else ALL_COVERS[name]


def _sentinel2(rng, days, covers, surface, soil_brightness, conditions):
    """Reflectance [T, 10, H, W] with clouds, shadows and swath-edge nodata; cloud opacity [T, H, W]."""
    green, dry, flowers = (c[:, None] for c in covers)  # [T, 1, H, W]
    bands = (slice(None), None, None)
    moisture = conditions.soil_moisture(days)[:, None, None, None]
    wet_soil = SOIL[bands] * soil_brightness[:, None] * (1 - MOISTURE_DARKENING[bands] * moisture)
    background = np.where(
        surface == "soil", wet_soil, np.stack([SURFACES[name] for name in surface.ravel()], -1).reshape(10, *surface.shape)
    )
    reflectance = (
        np.clip(1 - green - dry - flowers, 0, 1) * background
        + green * GREEN_VEGETATION[bands]
        + dry * DRY_VEGETATION[bands]
        + flowers * YELLOW_FLOWERS[bands]
    )
    count, _, height, width = reflectance.shape
    haze = np.abs(rng.normal(0, 0.008, size=(count, 1, 1, 1))) * (WAVELENGTH_NM[bands] / 490.0) ** -2
    reflectance = reflectance * rng.normal(1.0, 0.02, size=(count, 1, 1, 1)) + haze
    reflectance += rng.normal(0, 0.004, reflectance.shape)
    cloud_probability = 0.3 + 0.25 * np.cos(2 * np.pi * (days - 15) / 365)
    cloudy = rng.random(count) < cloud_probability
    cloud = np.zeros((count, height, width))
    for index in np.flatnonzero(cloudy):  # opacity ramps from 0 to 1 over 0.5 std of a smooth field
        cloud_field = smooth_noise(rng, (height, width), rng.uniform(3, 7))
        threshold = np.quantile(cloud_field, 1 - rng.uniform(0.05, 1.0))
        cloud[index] = np.clip((cloud_field - threshold) / 0.5 + 0.5, 0, 1)
    shadow = np.roll(cloud, shift=(3, 4), axis=(1, 2)) * (1 - cloud)
    brightness = rng.uniform(0.7, 1.1, size=(count, 1, 1, 1))
    opacity = cloud[:, None]
    reflectance = reflectance * (1 - 0.55 * shadow[:, None]) * (1 - opacity) + opacity * brightness * CLOUD[bands]
    reflectance = np.clip(reflectance, 1 / S2_SCALE, 1.0)
    swath_edge = rng.random(count) < 0.05
    for index in np.flatnonzero(swath_edge):
        rows, cols = np.mgrid[0:height, 0:width]
        angle, offset = rng.uniform(0, 2 * np.pi), rng.uniform(-0.3, 0.3) * (height + width)
        outside = np.cos(angle) * (rows - height / 2) + np.sin(angle) * (cols - width / 2) > offset
        reflectance[index, :, outside] = 0.0
        cloud[index, outside] = 0.0
    return reflectance.astype(np.float32), cloud.astype(np.float32)


def _sentinel1(rng, days, covers, landscape, roughness_db, conditions, incidence_deg):
    """VV, VH (dB) by the water cloud model with speckle, and their dB difference."""
    green, dry, _ = covers
    cos_theta = np.cos(np.radians(incidence_deg + rng.normal(0, 0.5, size=(len(days), 1, 1))))
    canopy = np.array([_calendar(name).canopy_size for name in landscape.covers])[landscape.parcel][None]
    vegetation = (green + 0.6 * dry) * canopy
    moisture = conditions.soil_moisture(days)[:, None, None]
    soil_vv_db = -17.0 + 10.0 * moisture + roughness_db
    channels = []
    for a, b, soil_offset_db in ((0.13, 0.9, 0.0), (0.07, 0.5, -7.5)):  # VV, VH
        attenuation = np.exp(-2 * b * vegetation / cos_theta)
        sigma0 = a * vegetation * cos_theta * (1 - attenuation) + attenuation * 10 ** ((soil_vv_db + soil_offset_db) / 10)
        channels.append(sigma0)
    surfaces = np.array([_calendar(name).surface for name in landscape.covers])[landscape.parcel]
    built_up, water = surfaces == "built-up", surfaces == "water"
    for sigma0, (built_db, water_db) in zip(channels, ((-3.0, -21.0), (-10.5, -27.0))):
        sigma0[:, built_up] = 10 ** ((built_db + rng.normal(0, 2.0, size=(len(days), int(built_up.sum())))) / 10)
        sigma0[:, water] = 10 ** ((water_db + rng.normal(0, 1.5, size=(len(days), 1))) / 10)
    vv, vh = (10 * np.log10(s * rng.gamma(SPECKLE_LOOKS, 1 / SPECKLE_LOOKS, size=s.shape)) for s in channels)
    return np.stack([vv, vh, vv - vh], axis=1).astype(np.float32)


def write_pastis_r_fixture(
    root: Path, patches: int = 120, size: int = 48, seed: int = 0, year: int = 2019, tiles: int = 4
) -> list[int]:
    """Write ``patches`` simulated patches in PASTIS-R's layout under ``root/PASTIS-R``.

    Patches are spread over ``tiles`` tiles (shared weather and acquisition calendars) and over the
    5 folds round-robin; returns the patch ids. Real PASTIS-R patches are 128 x 128 over 2018-09 to
    2019-11; these are ``size`` x ``size`` over the calendar year ``year``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / DIRECTORY
    subfolders = {"s2": "DATA_S2", "s1a": "DATA_S1A", "s1d": "DATA_S1D", "target": "ANNOTATIONS",
                  "instances": "INSTANCE_ANNOTATIONS"}
    for name in subfolders.values():
        (folder / name).mkdir(parents=True, exist_ok=True)
    tile_conditions = [simulate_tile_conditions(rng, year) for _ in range(tiles)]
    features, ids, statistics = [], [], {key: {} for key in ("s2", "s1a", "s1d")}
    for index in range(patches):
        patch_id, fold, tile = 10000 + index, index % 5 + 1, index % tiles
        series = simulate_series(rng, size, tile_conditions[tile])
        arrays = {
            "s2": np.round(series.s2 * S2_SCALE).astype(np.int16),
            "s1a": series.s1["s1a"],
            "s1d": series.s1["s1d"],
        }
        for key, array in arrays.items():
            np.save(folder / subfolders[key] / f"{ORBITS.get(key, 'S2')}_{patch_id}.npy", array)
            _accumulate(statistics[key].setdefault(fold, [0.0, 0.0, 0]), array)
        labels = series.landscape.labels
        np.save(folder / subfolders["target"] / f"TARGET_{patch_id}.npy",
                np.stack([labels, np.zeros_like(labels), np.zeros_like(labels)]))
        np.save(folder / subfolders["instances"] / f"INSTANCES_{patch_id}.npy", series.landscape.instances)
        features.append(_feature(patch_id, fold, tile, index, size, series))
        ids.append(patch_id)
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::2154"}},
        "features": features,
    }
    (folder / METADATA_FILE).write_text(json.dumps(collection))
    for key, per_fold in statistics.items():
        norm = {f"Fold_{fold}": _mean_std(*sums) for fold, sums in sorted(per_fold.items())}
        (folder / f"NORM_{ORBITS.get(key, 'S2')}_patch.json").write_text(json.dumps(norm))
    record = {
        "generator": "training/simulation/crop_phenology.py (SIMULATED crop phenology, not real imagery)",
        "patches": patches, "size": size, "seed": seed, "year": year, "tiles": tiles,
        "labels": list(SIMULATED_LABELS), "land_covers": COVER_FREQUENCY,
    }
    (folder / SIMULATION_RECORD).write_text(json.dumps(record, indent=2))
    return ids


def _feature(patch_id: int, fold: int, tile: int, index: int, size: int, series: SimulatedSeries) -> dict:
    def date_dict(days):
        return {str(i): int(d.strftime("%Y%m%d")) for i, d in enumerate(series.dates(days))}

    x0, y0 = 600000.0 + 10 * size * (index % 20), 6700000.0 + 10 * size * (index // 20)  # Lambert-93
    side = 10.0 * size
    labels = series.landscape.labels
    return {
        "type": "Feature",
        "properties": {
            "ID_PATCH": patch_id,
            "Fold": fold,
            "TILE": f"T31SIM{tile}",
            "N_Parcel": int(len(np.unique(series.landscape.instances)) - 1),
            "Parcel_Cover": float(np.mean((labels != BACKGROUND_LABEL) & (labels != VOID_LABEL))),
            DATE_KEYS["s2"]: date_dict(series.s2_days),
            DATE_KEYS["s1a"]: date_dict(series.s1_days["s1a"]),
            DATE_KEYS["s1d"]: date_dict(series.s1_days["s1d"]),
        },
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]],
        },
    }


def _accumulate(sums: list, array: np.ndarray) -> None:
    values = array.astype(np.float64).transpose(1, 0, 2, 3).reshape(array.shape[1], -1)
    sums[0] = sums[0] + values.sum(axis=1)
    sums[1] = sums[1] + (values**2).sum(axis=1)
    sums[2] += values.shape[1]


def _mean_std(total, squares, count) -> dict:
    mean = total / count
    return {"mean": mean.tolist(), "std": np.sqrt(np.maximum(squares / count - mean**2, 1e-12)).tolist()}
