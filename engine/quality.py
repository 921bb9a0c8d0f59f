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
4. optically deep: the bottom adds less than the sensor noise to the signal, so the water looks
   like the deep water of the training data, whose blue and green signal R_inf the contract records
   (Lyzenga's model, Applied Optics 17(3), 1978: R = R_inf + (A_b - R_inf) exp(-2 K z)). Illumination
   scales every band alike, so the green/blue ratio is the test: a bottom signal below the noise in
   both bands moves ln(green/blue) by at most about noise_green/R_inf,green + noise_blue/R_inf,blue
   (0.08 over clear water with seagrass, where both bands still carry signal of opposite signs), but
   only by noise_green/R_inf,green where blue vanishes first (CDOM-rich water): the contract's
   ``quality.deep_ratio_tolerance`` (the training simulator's, training/simulation/shallow_water.py
   ``deep_ratio_tolerance``) says which, else ``DEEP_RATIO_TOLERANCE``; the blue signal must also lie within ``DEEP_BRIGHTNESS_TOLERANCE`` of
   R_inf's in natural logarithms (which keeps out bright sand whose ratio crosses R_inf's at some
   depth). One pixel's ratio is far too noisy for that tolerance (0.06 at Sentinel-2's noise of about
   0.001 reflectance), and a plain window mean mixes sand into seagrass at patch edges, whose ratio
   then looks deep. So the ratio is that of the means over a ``DEEP_WINDOW`` window of the water
   pixels of the same bottom: a joint sigma filter (Lee, "Digital image smoothing and the sigma
   filter", CVGIP 24(2), 1983, with the neighbour selection guided by another image as in the joint
   bilateral filter of Petschnigg et al., ACM TOG 23(3), 2004) whose guide is each band's 5 x 5
   running median (Tukey, Exploratory Data Analysis, 1977), which keeps bottom edges sharp: a
   neighbour counts where both guides lie within ``DEEP_GUIDE_TOLERANCE`` (twice the noise) of the
   pixel's. On simulated Agia Napa scenes (training/simulation/shallow_water.py, 384 x 384 px with
   5 % clouds and 5 % glint) this finds the truth's optically deep pixels with a precision and a
   recall of at least 0.9 where they cover more than about 3 % of the scene (README gives the
   figures per seed); where such water is rare (below 1 %) the boundary band of pixels whose bottom
   signal is just above the noise dominates and precision drops towards 0.6.
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
DEEP_WINDOW = 23  # px: the joint sigma filter's window
DEEP_GUIDE_WINDOW = 5  # px: the running median that guides it
DEEP_GUIDE_TOLERANCE = 20.0  # reflectance x 10000: twice Sentinel-2's noise over dark water
DEEP_RATIO_TOLERANCE = DEEP_BRIGHTNESS_TOLERANCE = 0.08
MEDIAN_ROWS = 32  # rows of running medians computed at once (bounded temporaries)
FAR_GUIDE = 1e9  # the guides of pixels far from deep water's blue: within no tolerance of any real guide
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
        self.deep_ratio_tolerance = contract.quality.get("deep_ratio_tolerance", DEEP_RATIO_TOLERANCE)

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

    @property
    def halo(self) -> int:
        """Rows above and below, and columns left and right of, a window that ``reasons`` needs to judge
        the window's pixels as it would inside a larger one (the optically-deep test's neighbourhood)."""
        return DEEP_WINDOW // 2 + DEEP_GUIDE_WINDOW // 2 if len(self.deep) == 2 else 0

    def reasons(self, values: np.ndarray, valid: np.ndarray, depth: np.ndarray | None,
                unlike_training: np.ndarray | None, rows: slice = slice(None), cols: slice = slice(None)) -> np.ndarray:
        """uint8 reasons for a window: ``values`` [model bands (+ NIR), h, w] raw input and ``valid``
        [h, w], both with up to ``halo`` rows and columns around the window (``rows`` and ``cols``
        select the window's); ``depth`` [window h, w] the estimated depth in metres (regression tasks)
        or None, ``unlike_training`` [window h, w] the pixels out of the training distribution, or None."""
        reason, valid = self._surface(values, valid)[rows, cols].copy(), valid[rows, cols]
        if depth is not None and self.depth_range:
            low, high = self.depth_range
            margin = RANGE_MARGIN * (high - low)
            self._mark(reason, (depth < low - margin) | (depth > high + margin), OUT_OF_RANGE)
        if unlike_training is not None:
            self._mark(reason, unlike_training, OUT_OF_DISTRIBUTION)
        reason[~valid] = NO_DATA
        self.counts += np.bincount(reason.ravel(), minlength=NO_DATA + 1)
        return reason

    def _surface(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Cloud, land, sun glint and optically deep water (reasons 1-4) of [bands, h, w] raw values."""
        reason = np.full(valid.shape, VALID, np.uint8)
        if self.reflectance:
            band = {role: values[k].astype(np.float32) / np.float32(REFLECTANCE_SCALE) for role, k in self.roles.items()}
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
            blue, green = (np.maximum(values[self.roles[role]], 1.0) for role in ("blue", "green"))
            self._mark(reason, optically_deep(blue, green, valid & (reason == VALID), self.deep["blue"],
                                              self.deep["green"], self.deep_ratio_tolerance), DEEP)
        return reason

    @staticmethod
    def _mark(reason: np.ndarray, test: np.ndarray, code: int) -> None:
        reason[(reason == VALID) & test] = code

    def summary(self) -> dict[str, float]:
        """Share of each reason among the pixels with data."""
        total = self.counts[:NO_DATA].sum()
        return {name: round(float(self.counts[code] / total), 4) if total else 0.0 for code, name in REASONS.items()}


def optically_deep(blue: np.ndarray, green: np.ndarray, water: np.ndarray, deep_blue: float,
                   deep_green: float, ratio_tolerance: float = DEEP_RATIO_TOLERANCE) -> np.ndarray:
    """The pixels of ``water`` [h, w] whose blue and green signals (raw input, [h, w]) are those of
    deep water (``deep_blue``, ``deep_green``) up to the noise: ratio (within ``ratio_tolerance``)
    and brightness of their joint sigma-filtered means (module docstring, reason 4). The filter runs
    only where the guides themselves are within twice the tolerances (the rest cannot pass), and the
    guides are made only for the water they may matter to (``median_within``): 40 % of a simulated
    Agia Napa scene."""
    # Guides only where they can matter: water whose blue guide may pass the brightness test, or lie
    # within the guide tolerance of one that does; the others get FAR_GUIDE, which passes neither.
    margin = np.exp(2 * DEEP_BRIGHTNESS_TOLERANCE)
    useful = water & median_within(blue, DEEP_GUIDE_WINDOW, deep_blue / margin - DEEP_GUIDE_TOLERANCE,
                                   deep_blue * margin + DEEP_GUIDE_TOLERANCE)
    guide_blue, guide_green = (running_median(band, DEEP_GUIDE_WINDOW, useful, FAR_GUIDE) for band in (blue, green))
    deep_ratio = np.log(deep_green / deep_blue)
    candidates = water & (np.abs(np.log(guide_green / guide_blue) - deep_ratio) <= 2 * ratio_tolerance) & (
        np.abs(np.log(guide_blue / deep_blue)) <= 2 * DEEP_BRIGHTNESS_TOLERANCE)
    rows, cols = np.nonzero(candidates)
    radius = DEEP_WINDOW // 2
    width = blue.shape[1] + 2 * radius
    # float32 and flat indices: the sums of at most DEEP_WINDOW^2 values stay far within its precision
    padded = [np.pad(image, radius, mode="edge").ravel().astype(np.float32)
              for image in (blue, green, guide_blue, guide_green)]
    neighbour_is_water = np.pad(water, radius).ravel()  # outside the window: not water
    centres = (rows + radius) * width + cols + radius
    centre_blue, centre_green = padded[2][centres], padded[3][centres]
    sums, count = np.zeros((2, len(centres)), np.float32), np.zeros(len(centres), np.float32)
    for offset in (dy * width + dx for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)):
        neighbours = centres + offset
        alike = (neighbour_is_water.take(neighbours)
                 & (np.abs(padded[2].take(neighbours) - centre_blue) <= DEEP_GUIDE_TOLERANCE)
                 & (np.abs(padded[3].take(neighbours) - centre_green) <= DEEP_GUIDE_TOLERANCE))
        sums[0] += padded[0].take(neighbours) * alike
        sums[1] += padded[1].take(neighbours) * alike
        count += alike
    mean_blue, mean_green = sums.astype(np.float64) / np.maximum(count, 1)
    deep = np.zeros_like(water)
    deep[rows, cols] = (count > 0) & (np.abs(np.log(mean_green / mean_blue) - deep_ratio) <= ratio_tolerance) & (
        np.abs(np.log(mean_blue / deep_blue)) <= DEEP_BRIGHTNESS_TOLERANCE)
    return deep


def running_median(image: np.ndarray, size: int, where: np.ndarray, fill: float) -> np.ndarray:
    """Median over the size x size window of each pixel of ``where`` (edges padded with their own
    values), ``fill`` elsewhere."""
    radius = size // 2
    padded = np.pad(image.astype(np.float32), radius, mode="edge")
    median = np.full(image.shape, fill, np.float32)
    middle = size * size // 2
    for row in range(0, image.shape[0], MEDIAN_ROWS):
        rows = slice(row, row + MEDIAN_ROWS)
        wanted = np.nonzero(where[rows])
        if len(wanted[0]):
            windows = np.lib.stride_tricks.sliding_window_view(padded[row:row + MEDIAN_ROWS + 2 * radius], (size, size))
            median[rows][wanted] = np.partition(windows[wanted].reshape(-1, size * size), middle, axis=1)[:, middle]
    return median


def median_within(image: np.ndarray, size: int, low: float, high: float) -> np.ndarray:
    """Where the size x size running median (``running_median``) lies in [low, high], without computing
    it: the median of n values is at least ``low`` exactly when (n + 1) / 2 of them are, and at most
    ``high`` when (n + 1) / 2 of them are (window counts from cumulative sums)."""
    needed = (size * size + 1) // 2
    return (_window_count(image >= low, size) >= needed) & (_window_count(image <= high, size) >= needed)


def _window_count(mask: np.ndarray, size: int) -> np.ndarray:
    """How many pixels of each size x size window (edges padded with their own values) are set."""
    sums = np.pad(np.pad(mask, size // 2, mode="edge").astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return sums[size:, size:] - sums[:-size, size:] - sums[size:, :-size] + sums[:-size, :-size]
