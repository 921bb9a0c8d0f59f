"""Out-of-distribution flag: is a pixel's band vector like the inputs the model was trained on?

The contract's ``input_statistics`` (written at export from the training data, training/input_statistics.py)
describe the training pixels, in raw input units and the model's band order:

- ``mean``, ``covariance`` and ``percentiles`` ({"1": [...], "50": [...], "99": [...]}) per band, for
  the model card and ``describe``;
- ``components``: Gaussian components ({"weight", "mean", "covariance"}) of the k-means clusters of
  the training pixels (Lloyd, "Least squares quantization in PCM", IEEE Trans. Inf. Theory 28(2),
  1982; k-means++ seeding after Arthur & Vassilvitskii, SODA 2007);
- ``distance_threshold``: the ``distance_quantile`` (0.995) of the distances of training pixels the
  components were NOT fitted on (every fourth training patch), so that about 0.5 % of pixels like the
  training data's are flagged.

A pixel's distance is its Mahalanobis distance to the nearest component, the class-conditional
Gaussian score of Lee, Lee, Lee & Shin, "A Simple Unified Framework for Detecting Out-of-Distribution
Samples and Adversarial Attacks", NeurIPS 2018, with k-means clusters of the input in place of classes:
one Gaussian over land and water together is so wide that a scene divided by 10 still falls inside
it. A pixel is flagged when its distance exceeds the threshold. Measured on simulated Agia Napa
data (tests/test_input_distribution.py): a held-out split is flagged at or below 0.5 %, the same
pixels divided by 10, in 8 bits, or with a top-of-atmosphere path reflectance added almost everywhere.

Many bands (HyCoT's 202 hyperspectral bands): neighbouring bands are nearly collinear, so a
202 x 202 covariance is ill-conditioned and its inverse amplifies noise. Such a record has a
``projection`` ({"mean": per band, "axes": [k][bands]}, the k leading principal axes of the training
pixels), and its components live in k + 1 dimensions: the pixel's k principal-component scores
(where Hotelling's T^2 lives) and the norm of its residual off those axes (the Q statistic of
Jackson & Mudholkar, "Control procedures for residuals associated with principal component
analysis", Technometrics 21(3), 1979), which catches spectra of another shape than any trained on.

Time-series models (crop maps) record one such record per modality (``{"s2": {...}, "s1": {...}}``),
of single-date pixels: Sentinel-1 backscatter in dB and Sentinel-2 reflectance are unlike each
other and have different band counts. A pixel's distance in a modality is the median over its valid
dates (one cloudy or flooded date does not flag it; a series from another product level or scaling
is far on every date), judged against ``series_distance_threshold``, calibrated on that median of
held-out training series; its distance is the largest over the modalities (``SeriesDistribution``).
"""
from __future__ import annotations

import math

import numpy as np

DISTANCE_QUANTILE = 0.995
PIXELS_PER_PASS = 32768  # pixels whose distances are computed at once (bounded temporaries)


def _matrix(value, size: int) -> bool:
    return (isinstance(value, list) and len(value) == size
            and all(isinstance(row, list) and len(row) == size and all(_finite(v) for v in row) for row in value))


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _vector(value, size: int) -> bool:
    return isinstance(value, list) and len(value) == size and all(_finite(v) for v in value)


def input_statistics_problems(statistics: dict, bands: int) -> list[str]:
    """What is wrong with a contract's ``input_statistics`` for a model of ``bands`` bands."""
    if not statistics:
        return []
    where = "input_statistics"
    problems = []
    projection = statistics.get("projection")
    if projection is not None:
        axes = projection.get("axes") if isinstance(projection, dict) else None
        if not (isinstance(projection, dict) and _vector(projection.get("mean"), bands) and isinstance(axes, list)
                and axes and all(_vector(axis, bands) for axis in axes)):
            return [f"{where}.projection must have a 'mean' of {bands} numbers and 'axes', a list of principal axes "
                    f"of {bands} numbers each"]
    for key in ("mean", "covariance"):
        if key in statistics and not (_vector if key == "mean" else _matrix)(statistics[key], bands):
            problems.append(f"{where}.{key} must be {'a list' if key == 'mean' else 'a square matrix'} of "
                            f"finite numbers for the model's {bands} bands")
    for name, values in statistics.get("percentiles", {}).items():
        if not _vector(values, bands):
            problems.append(f"{where}.percentiles[{name!r}] must list one finite number per band ({bands})")
    features = len(projection["axes"]) + 1 if projection is not None else bands  # the components' space
    components = statistics.get("components")
    if not isinstance(components, list) or not components:
        return [*problems, f"{where}.components is missing or empty: re-export the model to record the "
                           "Gaussian components of its training inputs"]
    malformed = [k for k, c in enumerate(components) if not (
        isinstance(c, dict) and _vector(c.get("mean"), features) and _matrix(c.get("covariance"), features))]
    if malformed:
        problems.append(f"{where}.components {malformed[:5]} must each have a 'mean' of {features} numbers and a "
                        f"{features} x {features} 'covariance' (the model's bands, or the projection's scores and "
                        "residual)")
    singular = [k for k, c in enumerate(components) if k not in malformed
                and np.any(np.linalg.eigvalsh(np.asarray(c["covariance"], float)) <= 0)]
    if singular:
        problems.append(f"{where}.components {singular[:5]} have a covariance that is not positive definite")
    threshold, quantile = statistics.get("distance_threshold"), statistics.get("distance_quantile")
    if not (_finite(threshold) and threshold > 0):
        problems.append(f"{where}.distance_threshold is {threshold!r}; give the calibrated distance as a number > 0")
    if not (_finite(quantile) and 0 < quantile < 1):
        problems.append(f"{where}.distance_quantile is {quantile!r}; give the quantile the threshold was "
                        "calibrated at, between 0 and 1 (e.g. 0.995)")
    return problems


def projection_features(pixels: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Raw pixels [bands, n] -> their scores on the principal ``axes`` [k, bands] about ``mean`` [bands]
    and the norm of their residual off those axes [k + 1, n]."""
    centred = pixels.astype(np.float64) - mean[:, None]
    scores = axes @ centred
    residual = np.sqrt(np.maximum(np.einsum("bp,bp->p", centred, centred) - np.einsum("kp,kp->p", scores, scores), 0.0))
    return np.concatenate([scores, residual[None]])


class InputDistribution:
    """Distances of pixels to the training inputs, and the running share of flagged pixels."""

    def __init__(self, statistics: dict):
        """``statistics``: a contract's ``input_statistics`` (its threshold may be absent while the
        training side calibrates it)."""
        projection = statistics.get("projection")
        self.projection = (np.asarray(projection["mean"], np.float64),
                           np.asarray(projection["axes"], np.float64)) if projection else None
        # whitening: L^-1 (x - mean) has unit covariance where covariance = L L^T. All components' whitening
        # matrices stacked, so that one product whitens a chunk for every component (float32: the features'
        # differences from the means, some hundreds at most, keep about 7 digits)
        whitening = [np.linalg.inv(np.linalg.cholesky(np.asarray(c["covariance"], np.float64)))
                     for c in statistics["components"]]
        self.whitening = np.concatenate(whitening).astype(np.float32)
        self.whitened_means = np.concatenate([w @ np.asarray(c["mean"], np.float64)
                                              for w, c in zip(whitening, statistics["components"])]).astype(np.float32)
        self.components = len(whitening)
        self.threshold = statistics.get("distance_threshold")
        self.quantile = statistics.get("distance_quantile", DISTANCE_QUANTILE)
        self.flagged = self.pixels = 0

    def distances(self, values: np.ndarray) -> np.ndarray:
        """Mahalanobis distance to the nearest component of raw values ``[bands, ...]`` -> ``[...]``."""
        flat = values.reshape(len(values), -1)
        nearest = np.empty(flat.shape[1], np.float32)
        for start in range(0, flat.shape[1], PIXELS_PER_PASS):
            chunk = self.features(flat[:, start:start + PIXELS_PER_PASS]).astype(np.float32)
            whitened = (self.whitening @ chunk - self.whitened_means[:, None]).reshape(self.components, -1, chunk.shape[1])
            nearest[start:start + chunk.shape[1]] = np.einsum("kfp,kfp->kp", whitened, whitened).min(axis=0)
        return np.sqrt(nearest).reshape(values.shape[1:])

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Raw pixels [bands, n] -> what the components describe [features, n]: the pixels, or with
        a projection ``projection_features``."""
        pixels = pixels.astype(np.float64)
        return pixels if self.projection is None else projection_features(pixels, *self.projection)

    def median_distances(self, dates: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Median over the valid dates of the distances of a time series: per date, raw values
        ``[bands, ...]`` and validity ``[...]`` -> ``[...]``, NaN where no date is valid."""
        per_date = np.stack([np.where(valid, self.distances(values), np.nan) for values, valid in dates])
        median = np.full(per_date.shape[1:], np.nan)
        seen = np.isfinite(per_date).any(axis=0)
        median[seen] = np.nanmedian(per_date[:, seen], axis=0)
        return median

    def relative_distances(self, values: np.ndarray, valid: np.ndarray, rows: slice = slice(None),
                           cols: slice = slice(None)) -> np.ndarray:
        """Distance over the calibrated threshold per pixel of ``values`` [bands, rows, w] (raw input,
        as a grid's ``read`` gives it) in ``rows`` and ``cols``; above 1: unlike the training inputs. The
        flagged pixels among ``valid`` ones [rows' h, cols' w] are counted for ``summary``."""
        return self.counted((self.distances(values[:, rows, cols]) / self.threshold).astype(np.float32), valid)

    def counted(self, relative: np.ndarray, valid: np.ndarray) -> np.ndarray:
        self.flagged += int(np.count_nonzero((relative > 1) & valid))
        self.pixels += int(np.count_nonzero(valid))
        return relative

    @property
    def share(self) -> float:
        return self.flagged / self.pixels if self.pixels else 0.0

    def summary(self) -> dict:
        calibrated = round(1.0 - self.quantile, 6)
        return {"share": round(self.share, 4), "calibrated_share": calibrated,
                "distance_threshold": round(float(self.threshold), 4)}

    def warning(self, model: str) -> str | None:
        """A warning when far more pixels are flagged than the calibration lets through."""
        if self.share <= max(10 * (1.0 - self.quantile), 0.05):
            return None
        return (f"{self.share:.0%} of the valid pixels are unlike the training inputs of model {model} (Mahalanobis "
                f"distance beyond the {self.quantile:.1%} quantile of its training pixels', which flags "
                f"{1 - self.quantile:.1%} of those): the input may be another product level (Level-1C top of "
                "atmosphere instead of Level-2A surface reflectance), another sensor, or scaled otherwise (8-bit, "
                "reflectance instead of reflectance x 10000). Check the input against the model card; the flagged "
                "pixels are 'out of distribution' in the quality layer and above 1 in the uncertainty layer's "
                "input distance")


class SeriesDistribution(InputDistribution):
    """The out-of-distribution flag of a time-series model: one ``InputDistribution`` per modality
    (module docstring) whose threshold is its record's ``series_distance_threshold`` (calibrated on
    the median over dates, training/input_statistics.py ``series_statistics``); the running share
    over all of them and per modality."""

    def __init__(self, statistics: dict[str, dict]):
        self.modalities = {name: InputDistribution(record | {"distance_threshold": record["series_distance_threshold"]})
                           for name, record in statistics.items()}
        self.quantile = DISTANCE_QUANTILE
        self.flagged = self.pixels = 0

    def relative_distances(self, values: dict, valid: np.ndarray, rows: slice = slice(None),
                           cols: slice = slice(None)) -> np.ndarray:
        """``values``: per modality, each date's raw input and validity ``(values [bands, rows, w],
        valid [rows, w])`` as ``TimeSeriesGrid.read`` gives them -> the largest over the modalities of
        the median over valid dates of the distance, over the threshold [rows' h, cols' w] (0 without a
        valid date)."""
        largest = np.zeros(valid.shape, np.float32)
        for name, distribution in self.modalities.items():
            median = distribution.median_distances([(date[:, rows, cols], date_valid[rows, cols])
                                                    for date, date_valid in values[name]])
            seen = np.isfinite(median)
            relative = np.where(seen, median / distribution.threshold, 0.0).astype(np.float32)
            largest = np.maximum(largest, distribution.counted(relative, valid & seen))
        return self.counted(largest, valid)

    def summary(self) -> dict:
        return {"share": round(self.share, 4), "calibrated_share": round(1.0 - self.quantile, 6),
                "modalities": {name: {"share": round(d.share, 4), "distance_threshold": round(float(d.threshold), 4)}
                               for name, d in self.modalities.items()}}


def input_distribution(statistics: dict, time_series: bool) -> InputDistribution:
    """The flag of a contract's ``input_statistics`` (per modality for a time-series model)."""
    return SeriesDistribution(statistics) if time_series else InputDistribution(statistics)
