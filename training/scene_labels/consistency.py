"""Physical consistency of channel augmentations against each pixel's natural variation.

Implements the idea of shared/papers.md section 4 (physical consistency of channel augmentations
for multi-label remote-sensing classification): an augmented pixel signature is physically
plausible when it stays as close to what that pixel really looks like as real acquisitions of it
are to each other. With ``x[p, t]`` the signature (bands) of pixel p at date t and ``d`` the
Euclidean distance in reflectance units:

- natural deviation = mean over p, t of ``min_{t' != t} d(x[p, t], x[p, t'])``: how far a real
  observation lies from the nearest other observation of the same pixel (acquisition conditions,
  phenology, noise);
- score of an augmentation ``a`` = mean over p, t of ``min_{t'} d(a(x)[p, t], x[p, t'])``: how far
  the augmented signature lies from the nearest real observation of the pixel (its source
  observation included, so the identity scores 0).

An augmentation is consistent when its score does not exceed the natural deviation. The exact
formula of the paper was not at hand; this is our reading of it, stated here so it can be checked.

Augmentations act on one acquisition at a time (all pixels of a date form the "image"), on
reflectance in [0, 1], and clip to [0, 1] as image pipelines do.

Pixel time-series input (``.npz``, see ``load_pixel_series``)::

    reflectance  float32 [pixels, dates, bands]  surface reflectance (0-1); NaN = no valid
                                                 observation (cloud, shadow, nodata)
    dates        str [dates]                      acquisition dates, ISO "YYYY-MM-DD"
    bands        str [bands]                      band names, e.g. B02 ... B12
    land_cover   str [pixels]                     optional: the class of each pixel
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Augmentation = Callable[[np.ndarray, np.random.Generator], np.ndarray]  # [pixels, bands] -> same


@dataclass(frozen=True)
class PixelSeries:
    reflectance: np.ndarray  # [pixels, dates, bands]
    dates: np.ndarray
    bands: np.ndarray
    land_cover: np.ndarray | None = None


@dataclass(frozen=True)
class ConsistencyResult:
    augmentation: str
    score: float
    natural_deviation: float

    @property
    def ratio(self) -> float:
        return self.score / self.natural_deviation

    @property
    def consistent(self) -> bool:
        return self.score <= self.natural_deviation


def load_pixel_series(path: Path) -> PixelSeries:
    with np.load(path, allow_pickle=False) as data:
        missing = {"reflectance", "dates", "bands"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: a pixel time series needs the arrays {sorted(missing)}")
        reflectance = data["reflectance"].astype(np.float32)
        if reflectance.ndim != 3 or reflectance.shape[1:] != (len(data["dates"]), len(data["bands"])):
            raise ValueError(f"{path}: reflectance must be [pixels, dates, bands] matching dates and bands")
        land_cover = data["land_cover"] if "land_cover" in data.files else None
        return PixelSeries(reflectance, data["dates"], data["bands"], land_cover)


def _grayscale(image: np.ndarray) -> np.ndarray:
    """Every band replaced by the pixel's mean over bands (equal weights: no RGB here)."""
    return np.repeat(image.mean(axis=1, keepdims=True), image.shape[1], axis=1)


def brightness(factor: float) -> Augmentation:
    return lambda image, rng: image * factor


def contrast(factor: float) -> Augmentation:
    """Stretch around the image mean (torchvision's adjust_contrast, over all bands)."""

    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean = np.nanmean(image)
        return mean + factor * (image - mean)

    return apply


def saturation(factor: float) -> Augmentation:
    """Stretch each signature around its grayscale value (torchvision's adjust_saturation)."""
    return lambda image, rng: _grayscale(image) + factor * (image - _grayscale(image))


def gamma(exponent: float) -> Augmentation:
    return lambda image, rng: np.clip(image, 0, None) ** exponent


def solarize(threshold: float) -> Augmentation:
    return lambda image, rng: np.where(image >= threshold, 1 - image, image)


def grayscale() -> Augmentation:
    return lambda image, rng: _grayscale(image)


def noise(sigma: float) -> Augmentation:
    return lambda image, rng: image + rng.normal(0, sigma, image.shape)


def channel_shuffle() -> Augmentation:
    return lambda image, rng: image[:, rng.permutation(image.shape[1])]


# name -> (builder, default parameter or None for parameterless ones)
AUGMENTATIONS: dict[str, tuple[Callable[..., Augmentation], float | None]] = {
    "brightness": (brightness, 1.1),
    "contrast": (contrast, 1.2),
    "saturation": (saturation, 1.5),
    "gamma": (gamma, 0.8),
    "solarize": (solarize, 0.3),
    "grayscale": (grayscale, None),
    "noise": (noise, 0.02),
    "channel-shuffle": (channel_shuffle, None),
}


def parse_augmentation(spec: str) -> tuple[str, Augmentation]:
    """``"name"`` or ``"name:value"`` -> (canonical label, function). Values: brightness factor,
    contrast / saturation factor, gamma exponent, solarize threshold (reflectance), noise sigma."""
    name, _, value = spec.strip().partition(":")
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}")
    build, default = AUGMENTATIONS[name]
    if default is None:
        return name, build()
    parameter = float(value) if value else default
    return f"{name}:{parameter:g}", build(parameter)


def augment_series(series: np.ndarray, augmentation: Augmentation, seed: int = 0) -> np.ndarray:
    """Apply ``augmentation`` to every acquisition (date) of ``series`` [pixels, dates, bands]."""
    rng = np.random.default_rng(seed)
    augmented = np.empty_like(series)
    for date in range(series.shape[1]):
        augmented[:, date] = np.clip(augmentation(series[:, date], rng), 0, 1)
    return np.where(np.isnan(series), np.nan, augmented)


def nearest_observation_distance(
    signatures: np.ndarray, series: np.ndarray, exclude_same_date: bool, chunk: int = 1024
) -> np.ndarray:
    """[pixels, dates]: distance from ``signatures[p, t]`` to the nearest valid ``series[p, t']``
    (``t' != t`` when ``exclude_same_date``); NaN where there is none."""
    result = np.empty(series.shape[:2], dtype=np.float64)
    for start in range(0, len(series), chunk):
        s = signatures[start : start + chunk, :, None, :].astype(np.float64)
        x = series[start : start + chunk, None, :, :].astype(np.float64)
        distance = np.sqrt(((s - x) ** 2).sum(axis=-1))  # [pixels, t, t']; NaN where invalid
        if exclude_same_date:
            distance[:, np.arange(series.shape[1]), np.arange(series.shape[1])] = np.nan
        with np.errstate(all="ignore"):
            valid = ~np.isnan(distance)
            nearest = np.where(valid, distance, np.inf).min(axis=-1)
        result[start : start + chunk] = np.where(np.isfinite(nearest), nearest, np.nan)
    return result


def natural_deviation(series: np.ndarray) -> float:
    return float(np.nanmean(nearest_observation_distance(series, series, exclude_same_date=True)))


def consistency(series: PixelSeries, specs: list[str], seed: int = 0) -> list[ConsistencyResult]:
    """Score each augmentation of ``specs`` (see ``parse_augmentation``) against the series."""
    natural = natural_deviation(series.reflectance)
    results = []
    for spec in specs:
        label, augmentation = parse_augmentation(spec)
        augmented = augment_series(series.reflectance, augmentation, seed)
        distances = nearest_observation_distance(augmented, series.reflectance, exclude_same_date=False)
        results.append(ConsistencyResult(label, float(np.nanmean(distances)), natural))
    return results


def format_table(results: list[ConsistencyResult]) -> str:
    lines = [f"{'augmentation':20s} {'score':>8s} {'natural':>8s} {'ratio':>6s}  consistent"]
    for result in results:
        lines.append(
            f"{result.augmentation:20s} {result.score:8.4f} {result.natural_deviation:8.4f} "
            f"{result.ratio:6.2f}  {'yes' if result.consistent else 'no'}"
        )
    return "\n".join(lines)


def write_csv(results: list[ConsistencyResult], path: Path) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["augmentation", "score", "natural_deviation", "ratio", "consistent"])
        for result in results:
            writer.writerow([
                result.augmentation, f"{result.score:.6f}", f"{result.natural_deviation:.6f}",
                f"{result.ratio:.4f}", result.consistent,
            ])
