"""Measurable tile content: per-pixel land cover from spectral indices, and its fractions and layout.

Captions of the offline fixtures are derived from what the pixels measurably contain, not invented:
water from the modified normalised difference water index (Xu 2006, MNDWI = (green - SWIR1) /
(green + SWIR1)), vegetation from NDVI ((NIR - red) / (NIR + red), Rouse et al. 1974), and the
remaining land named by the scene's known land use (a city's non-vegetated land is built-up; a
desert's splits into bright salt flats / playas and darker arid land by visible brightness).
Thresholds are per scene because 8-bit Landsat files carry different, undocumented gains.

Multispectral arrays here are ``[6, H, W]`` in ``MULTISPECTRAL_BANDS`` order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MULTISPECTRAL_BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")
LAND_COVER = ("water", "vegetation", "built-up", "salt flat", "arid land")
RGB_FROM_MULTISPECTRAL = (2, 1, 0)  # red, green, blue


@dataclass(frozen=True)
class LandUseContext:
    """How to read one scene's indices: thresholds and what its non-vegetated land is."""

    water_noun: str  # "sea", "lake", ... (captions only; the class is "water")
    vegetation_ndvi: float = 0.3
    water_mndwi: float = 0.2
    bare_land: tuple[str, ...] = ("built-up",)  # one class, or ("arid land", "salt flat") split by brightness
    bright_land_threshold: float = 0.0  # visible mean (same units as the bands) above which land is bright


def normalised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a - b) / np.maximum(a + b, 1e-6)


def classify(multispectral: np.ndarray, context: LandUseContext) -> np.ndarray:
    """Per-pixel index into ``LAND_COVER`` (int8 ``[H, W]``)."""
    blue, green, red, nir, swir1, _ = multispectral.astype(np.float64)
    ndvi = normalised_difference(nir, red)
    water = (normalised_difference(green, swir1) > context.water_mndwi) & (ndvi < context.vegetation_ndvi)
    vegetation = (ndvi > context.vegetation_ndvi) & ~water
    if len(context.bare_land) == 1:
        land = np.full(ndvi.shape, LAND_COVER.index(context.bare_land[0]), dtype=np.int8)
    else:
        dark, bright = (LAND_COVER.index(name) for name in context.bare_land)
        land = np.where((blue + green + red) / 3 > context.bright_land_threshold, bright, dark).astype(np.int8)
    return np.where(water, LAND_COVER.index("water"), np.where(vegetation, LAND_COVER.index("vegetation"), land)).astype(
        np.int8
    )


def fractions(classes: np.ndarray) -> dict[str, float]:
    """Share of the tile's pixels in each ``LAND_COVER`` class."""
    counts = np.bincount(classes.ravel(), minlength=len(LAND_COVER))
    return {name: float(count) / classes.size for name, count in zip(LAND_COVER, counts)}


def side_of(mask: np.ndarray) -> str:
    """Where the pixels of ``mask`` lie in the tile: "north", "south", "east", "west" or "centre"
    (from their centroid; rows grow southwards, columns eastwards)."""
    rows, cols = np.nonzero(mask)
    height, width = mask.shape
    dy = rows.mean() / max(height - 1, 1) - 0.5
    dx = cols.mean() / max(width - 1, 1) - 0.5
    if max(abs(dx), abs(dy)) < 0.12:
        return "centre"
    if abs(dy) >= abs(dx):
        return "south" if dy > 0 else "north"
    return "east" if dx > 0 else "west"
