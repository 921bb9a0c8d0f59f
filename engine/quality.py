"""Quality layers of water tasks (bathymetry, seabed classes): where a pixel's value means nothing.

Every pixel gets one reason, tested in this order on surface reflectance (the input's reflectance
x 10000 divided by 10000):

1. cloud: bright and white and hazy: mean visible reflectance above 0.25, whiteness (sum of the
   visible bands' absolute deviations from their mean, over the mean) below 0.7 (Zhu & Woodcock,
   "Object-based cloud and cloud shadow detection in Landsat imagery", RSE 118, 2012: Fmask's
   whiteness test) and a positive haze-optimised transform blue - 0.5 red - 0.08 (Zhang, Guindon &
   Cihlar, RSE 82, 2002, as in Fmask). The brightness floor keeps shallow sand (about 0.2) out.
2. land: NDWI = (green - NIR) / (green + NIR) below 0 (McFeeters, "The use of the Normalized
   Difference Water Index (NDWI) in the delineation of open water features", IJRS 17(7), 1996).
3. sun glint: water whose NIR reflectance exceeds 0.05. Water absorbs NIR within centimetres, so
   NIR over water is glint (Hedley, Harborne & Mumby, IJRS 26(10), 2005; Kay, Hedley & Lavender,
   Remote Sensing 1(4), 2009); shallow bright sand stays below about 0.02.
4. optically deep: the water looks like the deep water of the training data, whose blue and green
   signal the contract records. Over deep water the bottom adds nothing, so the signal equals
   the deep-water signal R_inf of Lyzenga's model (Applied Optics 17(3), 1978) up to noise and
   illumination. Averaged over ``DEEP_WINDOW`` px (sensor noise is white, the bottom smooth), the
   green/blue ratio, which illumination does not change, lies within ``DEEP_RATIO_TOLERANCE`` of
   R_inf's and the blue signal within ``DEEP_BRIGHTNESS_TOLERANCE`` of R_inf's (both as natural
   logarithms). On simulated scenes where the bottom adds less than the sensor noise to 4-16 % of
   the pixels, this found them with a precision of 0.85-0.93 and a recall of 0.78-0.86 (seeds
   11-14 of training/simulation/shallow_water.py); where such water is rare (1 %), precision drops
   to about 0.5.
5. out of range: the estimated depth lies outside the depths the model was trained on (the
   contract's ``quality.depth_range_m``, percentiles of the training depths) by more than
   ``RANGE_MARGIN`` of that range.
6. out of distribution: the pixel's band values are unlike the model's training inputs (Mahalanobis
   distance beyond the threshold calibrated on the training data, engine/input_distribution.py);
   tested where the contract records ``input_statistics``.

Land and glint need a NIR band (Sentinel-2 B08) in the input, beside the model's own bands; the
model does not need to use it. Tests whose bands or contract records are missing are skipped and
named in the run's warnings. Masked pixels become nodata in the task's output.
"""
from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from engine.contract import Band, ModelContract

VALID, LAND, CLOUD, GLINT, DEEP, OUT_OF_RANGE, OUT_OF_DISTRIBUTION = 0, 1, 2, 3, 4, 5, 6
NO_DATA = 255
REASONS = {VALID: "valid", LAND: "land", CLOUD: "cloud", GLINT: "sun glint", DEEP: "optically deep",
           OUT_OF_RANGE: "out of range", OUT_OF_DISTRIBUTION: "out of distribution"}
REASON_COLOURS = {VALID: (46, 139, 87, 255), LAND: (166, 124, 82, 255), CLOUD: (240, 240, 240, 255),
                  GLINT: (255, 215, 0, 255), DEEP: (16, 32, 96, 255), OUT_OF_RANGE: (220, 20, 60, 255),
                  OUT_OF_DISTRIBUTION: (200, 0, 200, 255), NO_DATA: (0, 0, 0, 0)}
NIR = Band("B08", ("B8", "nir", "band 8"), "Sentinel-2 NIR, 842 nm (quality layers only)")
ROLES = ("blue", "green", "red")  # matched against the model bands' names and aliases
REFLECTANCE_SCALE = 10000.0
CLOUD_BRIGHTNESS, CLOUD_WHITENESS, HOT_OFFSET = 0.25, 0.7, 0.08
GLINT_NIR = 0.05
DEEP_WINDOW = 7
DEEP_RATIO_TOLERANCE = DEEP_BRIGHTNESS_TOLERANCE = 0.08
RANGE_MARGIN = 0.1


def _role_positions(bands: tuple[Band, ...]) -> dict[str, int]:
    positions = {role: k for k, band in enumerate(bands) for role in ROLES if band.matches(role)}
    positions.update({"nir": k for k, band in enumerate(bands) if band.name == NIR.name})
    return positions


def nir_contract(contract: ModelContract) -> ModelContract:
    """What opens the input's NIR band on the processing grid, beside the model's bands (its values
    are judged by the quality tests, not by the radiometric check of the model's input)."""
    return replace(contract, bands=(NIR,), mean=(0.0,), std=(1.0,), input_units="", quality={},
                   input_statistics={})


class QualityLayer:
    """Per-pixel reasons over one processing grid, and the running count of each reason."""

    def __init__(self, contract: ModelContract, has_nir: bool):
        self.contract = contract
        self.bands = (*contract.bands, *((NIR,) if has_nir else ()))
        self.roles = _role_positions(self.bands)
        self.reflectance = bool(re.search(r"reflectance x\s*10\s*000", contract.input_units))
        self.counts = np.zeros(NO_DATA + 1, np.int64)
        deep = contract.quality.get("deep_water", {})
        self.deep = {role: deep[band.name] for role in ("blue", "green") for band in contract.bands
                     if band.matches(role) and band.name in deep}
        self.depth_range = contract.quality.get("depth_range_m")

    def notes(self) -> list[str]:
        """The tests this layer cannot run, and why (for the run's warnings)."""
        notes = []
        if not self.reflectance:
            notes.append(f"model {self.contract.name} does not take surface reflectance x 10000, so land, cloud "
                         "and sun glint are not masked")
        elif not all(role in self.roles for role in ROLES):
            notes.append(f"model {self.contract.name} has no blue, green and red bands: clouds are not masked")
        if self.reflectance and not {"nir", "green"} <= set(self.roles):
            notes.append("the input has no NIR band (Sentinel-2 B08): land and sun glint are not masked. Give B08 "
                         "too (a band named B08, or its file beside the others) to mask them")
        if len(self.deep) < 2:
            notes.append(f"model {self.contract.name} records no blue and green deep-water signal: optically "
                         "deep water is not masked")
        if self.contract.outputs.kind == "regression" and not self.depth_range:
            notes.append(f"model {self.contract.name} records no training depth range: out-of-range depths are "
                         "not flagged")
        return notes

    def reasons(self, values: np.ndarray, valid: np.ndarray, depth: np.ndarray | None,
                unlike_training: np.ndarray | None) -> np.ndarray:
        """uint8 reasons for a window: ``values`` [model bands (+ NIR), h, w] raw input, ``valid``
        [h, w], ``depth`` [h, w] the estimated depth in metres (regression tasks) or None,
        ``unlike_training`` [h, w] the pixels out of the training distribution, or None."""
        reason = np.full(valid.shape, VALID, np.uint8)
        if self.reflectance:
            band = {role: values[k] / REFLECTANCE_SCALE for role, k in self.roles.items()}
            if all(role in band for role in ROLES):
                visible = np.stack([band[role] for role in ROLES])
                brightness = visible.mean(axis=0)
                whiteness = np.abs(visible - brightness).sum(axis=0) / np.maximum(brightness, 1e-6)
                haze = band["blue"] - 0.5 * band["red"] - HOT_OFFSET
                self._mark(reason, (brightness > CLOUD_BRIGHTNESS) & (whiteness < CLOUD_WHITENESS) & (haze > 0),
                           CLOUD)
            if {"nir", "green"} <= set(band):
                ndwi = (band["green"] - band["nir"]) / np.maximum(band["green"] + band["nir"], 1e-6)
                self._mark(reason, ndwi < 0, LAND)
                self._mark(reason, band["nir"] > GLINT_NIR, GLINT)
        if len(self.deep) == 2:
            blue, green = (box_mean(np.maximum(values[self.roles[role]], 1.0), DEEP_WINDOW // 2)
                           for role in ("blue", "green"))
            ratio = np.abs(np.log(green / blue) - np.log(self.deep["green"] / self.deep["blue"]))
            brightness = np.abs(np.log(blue / self.deep["blue"]))
            self._mark(reason, (ratio <= DEEP_RATIO_TOLERANCE) & (brightness <= DEEP_BRIGHTNESS_TOLERANCE), DEEP)
        if depth is not None and self.depth_range:
            low, high = self.depth_range
            margin = RANGE_MARGIN * (high - low)
            self._mark(reason, (depth < low - margin) | (depth > high + margin), OUT_OF_RANGE)
        if unlike_training is not None:
            self._mark(reason, unlike_training, OUT_OF_DISTRIBUTION)
        reason[~valid] = NO_DATA
        self.counts += np.bincount(reason.ravel(), minlength=NO_DATA + 1)
        return reason

    @staticmethod
    def _mark(reason: np.ndarray, test: np.ndarray, code: int) -> None:
        reason[(reason == VALID) & test] = code

    def summary(self) -> dict[str, float]:
        """Share of each reason among the pixels with data."""
        total = self.counts[:NO_DATA].sum()
        return {name: round(float(self.counts[code] / total), 4) if total else 0.0 for code, name in REASONS.items()}


def box_mean(image: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2 radius + 1)^2 window of every pixel, edges padded with their own values."""
    size = 2 * radius + 1
    padded = np.pad(image.astype(np.float64), radius, mode="edge")
    sums = np.pad(padded.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    return (sums[size:, size:] - sums[:-size, size:] - sums[size:, :-size] + sums[:-size, :-size]) / size ** 2
