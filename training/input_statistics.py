"""The training inputs' statistics a contract records for the engine's out-of-distribution flag
(engine/input_distribution.py, which computes the distances both here and at run time).

Components are fitted on the first three quarters of the training patches; the distance threshold
is calibrated on the last quarter. Patches, not pixels, are held out, and a contiguous block of them
(patches are numbered along the scenes they were cut from), because neighbouring pixels are alike:
a threshold calibrated on pixels of patches the components have seen is too tight for new scenes.
The threshold is the 0.995 quantile of the held-out distances, bounded above over resamples of the
held-out patches. Measured on the simulated data of the shipped marine models (400 patches of 64 px,
training seeds 1, 3, 5, held-out simulations of seeds 2, 4, 6): 0.40-0.50 % of the held-out pixels are
flagged; the same pixels divided by 10 or in 8 bits: 100 %.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.contract import CONTRACT_KEY
from engine.input_distribution import DISTANCE_QUANTILE, InputDistribution, projection_features
from engine.onnx_metadata import write_metadata
from engine.runtime import Model

COMPONENTS = 16
FIT_PIXELS = 200_000  # pixels sampled for the k-means clusters and their covariances
LLOYD_ITERATIONS = 30
PERCENTILES = (1, 50, 99)
CALIBRATION_SHARE = 4  # the last quarter of the patches calibrates the threshold
BOOTSTRAP_RESAMPLES, BOOTSTRAP_CONFIDENCE = 200, 0.95
PIXELS_PER_PATCH = 2048  # sampled from each patch by sampled_pixels
RIDGE = 1e-5  # added to each component's covariance diagonal, relative to the band's overall variance


def sampled_pixels(pixels: np.ndarray, rng: np.random.Generator, count: int = PIXELS_PER_PATCH) -> np.ndarray:
    """At most ``count`` of a patch's pixels [bands, n], drawn without replacement (bounded memory
    for datasets of many large patches)."""
    return pixels[:, rng.choice(pixels.shape[1], min(count, pixels.shape[1]), replace=False)]


def input_statistics(patches: Sequence[np.ndarray], components: int = COMPONENTS, seed: int = 0,
                     projection_axes: int | None = None) -> dict:
    """``patches``: the valid pixels of each training patch, ``[bands, pixels]`` in raw input units
    and the model's band order -> the contract's ``input_statistics``. ``projection_axes``: fit the
    components on that many principal-component scores and the residual norm instead of the bands
    (engine/input_distribution.py: for hundreds of nearly collinear bands); the record then has no
    band covariance but the share of the variance the axes explain."""
    if len(patches) < 2:
        raise ValueError(f"input statistics need at least 2 training patches (one to calibrate on), got {len(patches)}")
    held_out = max(1, len(patches) // CALIBRATION_SHARE)
    fitting, calibration = patches[:-held_out], patches[-held_out:]
    pixels = np.concatenate(fitting, axis=1).astype(np.float64)
    rng = np.random.default_rng(seed)
    if pixels.shape[1] > FIT_PIXELS:
        pixels = pixels[:, rng.choice(pixels.shape[1], FIT_PIXELS, replace=False)]
    statistics = {
        "pixels": int(sum(p.shape[1] for p in fitting)),
        "calibration_pixels": int(sum(p.shape[1] for p in calibration)),
        "mean": _rounded(pixels.mean(axis=1)),
        "percentiles": {str(q): _rounded(np.percentile(pixels, q, axis=1)) for q in PERCENTILES},
        "distance_quantile": DISTANCE_QUANTILE,
    }
    if projection_axes:
        mean, axes = principal_axes(pixels.T, projection_axes)
        statistics["projection"] = {"mean": _rounded(mean), "axes": _rounded(axes)}
        centred = pixels - mean[:, None]
        statistics["projection"]["explained_variance"] = round(
            float(((axes @ centred) ** 2).sum() / (centred ** 2).sum()), 6)
        features = projection_features(pixels, *(np.asarray(statistics["projection"][key]) for key in ("mean", "axes")))
    else:
        statistics["covariance"] = _rounded(np.atleast_2d(np.cov(pixels)))
        features = pixels
    ridge = np.diag(RIDGE * np.var(features, axis=1, ddof=1) + 1e-12)
    statistics["components"] = _components(features, components, ridge, rng)
    distribution = InputDistribution(statistics)
    statistics["distance_threshold"] = round(
        _calibrated_threshold([distribution.distances(patch) for patch in calibration], rng), 4)
    return statistics


def series_statistics(series: Sequence[tuple[np.ndarray, np.ndarray]], components: int = COMPONENTS,
                      seed: int = 0) -> dict:
    """``series``: per training patch of a time series, sampled pixels' values ``[dates, bands, pixels]``
    (raw input units) and validity ``[dates, pixels]`` -> ``input_statistics`` of their valid
    single-date pixels, plus ``series_distance_threshold``: the calibrated bound of what the engine
    flags a series by, the median over its valid dates of the distance, on the same held-out patches.
    The median of a series of ordinary dates is much smaller than the tail of single dates, so a
    series scaled otherwise (e.g. reflectance divided by 10), whose every date lies just inside the
    single-date tail, is still flagged."""
    pixel_dates = [np.concatenate([values[t][:, valid[t]] for t in range(len(values))], axis=1)
                   for values, valid in series]
    statistics = input_statistics(pixel_dates, components, seed)
    distribution = InputDistribution(statistics)
    held_out = series[-max(1, len(series) // CALIBRATION_SHARE):]  # those input_statistics calibrated on
    medians = [distribution.median_distances(list(zip(values, valid))) for values, valid in held_out]
    statistics["series_distance_threshold"] = round(_calibrated_threshold(
        [median[np.isfinite(median)] for median in medians], np.random.default_rng([seed, 1])), 4)
    return statistics


def principal_axes(pixels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """pixels [n, bands] -> their mean [bands] and ``count`` leading principal axes [count, bands]
    (orthonormal rows: right singular vectors of the centred pixels, Pearson 1901 / Hotelling 1933)."""
    mean = pixels.mean(axis=0)
    _, _, vt = np.linalg.svd(pixels - mean, full_matrices=False)
    return mean, vt[:count]


def _calibrated_threshold(per_patch: Sequence[np.ndarray], rng: np.random.Generator) -> float:
    """The upper ``BOOTSTRAP_CONFIDENCE`` bound of the ``DISTANCE_QUANTILE`` quantile of the calibration
    patches' distances ``per_patch``, over resamples of whole patches (Efron's bootstrap, "Bootstrap
    methods: another look at the jackknife", Annals of Statistics 7(1), 1979): a plain quantile of a
    few correlated patches lets new scenes be flagged more often than the calibrated share."""
    quantiles = [np.quantile(np.concatenate([per_patch[k] for k in rng.integers(len(per_patch), size=len(per_patch))]),
                             DISTANCE_QUANTILE) for _ in range(BOOTSTRAP_RESAMPLES)]
    return float(np.quantile(quantiles, BOOTSTRAP_CONFIDENCE))


def _components(pixels: np.ndarray, count: int, ridge: np.ndarray, rng: np.random.Generator) -> list[dict]:
    """Gaussian components of the k-means clusters of ``pixels`` [bands, n] (k-means++ seeding,
    Lloyd iterations); clusters too small for a covariance are left out."""
    centres = _kmeans_plus_plus(pixels, min(count, pixels.shape[1]), rng)
    for _ in range(LLOYD_ITERATIONS):
        nearest = _nearest(pixels, centres)
        centres = np.stack([pixels[:, nearest == k].mean(axis=1) if np.any(nearest == k) else centres[:, k]
                            for k in range(centres.shape[1])], axis=1)
    nearest = _nearest(pixels, centres)
    bands = len(pixels)
    components = []
    for k in range(centres.shape[1]):
        members = pixels[:, nearest == k]
        if members.shape[1] > 2 * (bands + 1):
            components.append({"weight": round(members.shape[1] / pixels.shape[1], 6),
                               "mean": _rounded(members.mean(axis=1)),
                               "covariance": _rounded(np.atleast_2d(np.cov(members)) + ridge)})
    return components


def _kmeans_plus_plus(pixels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Arthur & Vassilvitskii's seeding: each next centre drawn in proportion to the squared
    distance to the nearest centre so far."""
    centres = [pixels[:, rng.integers(pixels.shape[1])]]
    squared = ((pixels - centres[0][:, None]) ** 2).sum(axis=0)
    for _ in range(1, count):
        if squared.sum() == 0:  # fewer distinct pixels than components
            break
        centres.append(pixels[:, rng.choice(pixels.shape[1], p=squared / squared.sum())])
        squared = np.minimum(squared, ((pixels - centres[-1][:, None]) ** 2).sum(axis=0))
    return np.stack(centres, axis=1)


def _nearest(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    squared = ((pixels ** 2).sum(axis=0)[:, None] - 2 * pixels.T @ centres + (centres ** 2).sum(axis=0)[None])
    return squared.argmin(axis=1)


def _rounded(values: np.ndarray) -> list:
    """JSON numbers with 7 significant digits (float32 precision is all the engine uses)."""
    return np.vectorize(lambda v: float(f"{v:.7g}"))(values).tolist()


def record_in_model(model: str | Path, statistics: dict, command: str) -> dict:
    """Set ``statistics`` as the ``input_statistics`` of the ONNX model at ``model`` and ``command``
    (how they were computed) in its provenance, in place and atomically; the graph and its weights
    are copied byte for byte (engine/onnx_metadata.py). Returns the new contract's JSON object."""
    contract = json.loads(Model(str(model), "cpu").contract.to_json())
    contract["input_statistics"] = statistics
    contract["provenance"] = contract.get("provenance", {}) | {"input_statistics_command": command}
    write_metadata(model, {CONTRACT_KEY: json.dumps(contract)}, model, lambda written: Model(written, "cpu"))
    return contract
