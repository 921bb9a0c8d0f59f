"""Radiometric plausibility: does the input hold the kind of values the model was trained on?

A model trained on surface reflectance x 10000 gives confident nonsense on an 8-bit rendering of the
same scene, and a model trained on backscatter in dB does the same on linear power. The contract's
``input_units`` says what the model expects; from it each band gets an expected value range:

=====================  ================  =====================================================
units (input_units)    range per band    also implausible
=====================  ================  =====================================================
reflectance x 10000    -1000 .. 20000    99th percentile below 300 (0-255 or 0-1 values)
8-bit (0-255)          0 .. 255          99th percentile below 8.5 (0-1 values)
dB (SAR VV, VH, ...)   -60 .. 30         median above 0 dB (linear power, not 10 log10)
=====================  ================  =====================================================

Reflectance x 10000 reaches 20000 only on specular glint and saturated clouds, and -1000 with the
Sentinel-2 L2A offset; a scene whose brightest 1 % stays below 3 % reflectance has neither land
nor glint nor white caps. Backscatter sigma0 of natural surfaces lies between -30 and +5 dB
(Ulaby & Long, "Microwave Radar and Radiometric Remote Sensing", 2014), so a median above 0 dB
means linear values. Bands whose units say none of these are not checked.

The engine samples a regular grid of windows over the processing grid (64 windows of 32 px, a few
ms) and reports what it finds; ``strict`` refuses the input instead.

The product level is checked too: a model trained on surface reflectance (Sentinel-2 Level-2A,
atmospherically corrected) is biased on top-of-atmosphere reflectance (Level-1C), whose values
are of the same order. Where a file says its level (a SAFE-style name such as ``S2A_MSIL1C_...``,
or a ``PROCESSING_LEVEL`` / ``PRODUCT_TYPE`` tag), it is compared with what the contract's units
say the model expects.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from engine.contract import ModelContract
from engine.errors import EngineError

SAMPLE_WINDOWS = 8  # per side of the grid
SAMPLE_SIZE = 32  # pixels per side of each window
OUTSIDE_SHARE = 0.01  # more than this share of values outside the range is implausible
SAR_BAND = re.compile(r"^(VV|VH|HH|HV)(/(VV|VH|HH|HV))?$", re.IGNORECASE)


@dataclass(frozen=True)
class ExpectedValues:
    """What one band's raw values should look like."""

    units: str
    low: float
    high: float
    least_p99: float | None = None  # the brightest values reach at least this
    most_median: float | None = None  # the median stays at or below this

    def problems(self, values: np.ndarray) -> dict[str, str]:
        """What is implausible about one band's sampled values: {problem: the band's figure}."""
        found = {}
        outside = float(np.mean((values < self.low) | (values > self.high)))
        if outside > OUTSIDE_SHARE:
            found[f"lie outside {self.low:g} to {self.high:g}"] = f"{outside:.0%}"
        p99, median = np.percentile(values, [99, 50])
        if self.least_p99 is not None and p99 < self.least_p99:
            found[f"have their brightest values (99th percentile) far below what {self.units} reaches, as "
                  "8-bit (0-255) or 0-1 values do"] = f"{p99:.3g}"
        if self.most_median is not None and median > self.most_median:
            found[f"have a median above {self.most_median:g}, as linear power has (dB = 10 log10 of it)"] = \
                f"{median:.3g}"
        return found


REFLECTANCE = ExpectedValues("surface reflectance x 10000", -1000, 20000, least_p99=300)
EIGHT_BIT = ExpectedValues("8-bit values 0-255", 0, 255, least_p99=8.5)
DECIBELS = ExpectedValues("backscatter in dB", -60, 30, most_median=0)
DECIBEL_RATIO = ExpectedValues("a ratio of backscatter in dB", -60, 60)


def expected_values(contract: ModelContract) -> list[ExpectedValues | None]:
    """Per model band, the values the contract's ``input_units`` imply (None: not checked)."""
    units = contract.input_units
    reflectance = bool(re.search(r"x\s*10\s*000", units))
    eight_bit = bool(re.search(r"8-bit|0\s*-\s*255", units))
    expected = []
    for band in contract.bands:
        if SAR_BAND.match(band.name) and "dB" in units:
            expected.append(DECIBEL_RATIO if "/" in band.name else DECIBELS)
        elif reflectance:
            expected.append(REFLECTANCE)
        elif eight_bit:
            expected.append(EIGHT_BIT)
        else:
            expected.append(None)
    return expected


def sample(grid) -> tuple[np.ndarray, np.ndarray]:
    """Valid values of a regular grid of windows over ``grid`` (an InputGrid): [bands, pixels]."""
    rows = np.linspace(0, max(0, grid.height - SAMPLE_SIZE), SAMPLE_WINDOWS).astype(int)
    cols = np.linspace(0, max(0, grid.width - SAMPLE_SIZE), SAMPLE_WINDOWS).astype(int)
    values = []
    for row in np.unique(rows):
        for col in np.unique(cols):
            data, valid = grid.read(int(row), int(col), min(SAMPLE_SIZE, grid.height - row),
                                    min(SAMPLE_SIZE, grid.width - col))
            values.append(data[:, valid])
    return np.concatenate(values, axis=1)


LEVEL_NAMES = {"L1C": "top-of-atmosphere reflectance (Level-1C)", "L2A": "surface reflectance (Level-2A)"}
LEVEL_TAGS = ("PROCESSING_LEVEL", "PRODUCT_TYPE", "LEVEL")
LEVEL_TOKEN = re.compile(r"(?:MSI|[^A-Z0-9]|^)(?:LEVEL-?)?(L?1C|L?2A)(?:[^A-Z0-9]|$)")


def product_level(path: str, tags: dict[str, str]) -> tuple[str, str] | None:
    """("L1C" or "L2A", the evidence) where the file's name or tags state its Sentinel-2 level."""
    for key, value in tags.items():
        if key.upper() in LEVEL_TAGS and (found := LEVEL_TOKEN.search(value.upper())):
            return "L" + found.group(1).lstrip("L"), f"tag {key}={value}"
    name = path.replace("\\", "/").upper()
    if found := LEVEL_TOKEN.search(name):
        return "L" + found.group(1).lstrip("L"), f"its name {path}"
    return None


def expected_level(contract: ModelContract) -> str | None:
    units = contract.input_units.lower()
    if "top-of-atmosphere" in units or "toa" in units.split():
        return "L1C"
    if "surface reflectance" in units:
        return "L2A"
    return None


def check_product_level(files: list[tuple[str, dict[str, str]]], contract: ModelContract,
                        strict: bool = False) -> list[str]:
    """Warnings for files whose stated product level is not the one the model expects."""
    wanted = expected_level(contract)
    problems = []
    for path, tags in files:
        level = product_level(path, tags)
        if wanted and level and level[0] != wanted:
            problems.append(f"{path} is {LEVEL_NAMES[level[0]]} by {level[1]}, and model {contract.name} expects "
                            f"{LEVEL_NAMES[wanted]}: its output would be biased. Give the "
                            f"{'Level-2A product' if wanted == 'L2A' else 'Level-1C product'}"
                            + (" (or correct the scene, e.g. with Sen2Cor)" if wanted == "L2A" else ""))
    if problems and strict:
        raise EngineError(f"{'; '.join(problems)}. Nothing was written: implausible input is refused (strict)")
    return problems


def check_radiometry(grid, contract: ModelContract, strict: bool = False) -> list[str]:
    """Warnings about input values the model cannot have been trained on; raises when ``strict``."""
    expected = expected_values(contract)
    if not any(expected):
        return []
    values = sample(grid)
    if values.shape[1] == 0:
        return []
    figures: dict[str, dict[str, str]] = {}  # problem -> {band: figure}
    for band, wanted, band_values in zip(contract.bands, expected, values):
        for problem, figure in (wanted.problems(band_values) if wanted else {}).items():
            figures.setdefault(problem, {})[band.name] = figure
    if not figures:
        return []
    problems = [f"bands {', '.join(bands)} {problem} ({', '.join(bands.values())})" for problem, bands in figures.items()]
    message = (f"the input values do not look like {contract.input_units} that model {contract.name} expects: "
               f"{'; '.join(problems)}. Its output would be meaningless: give the model data in those units "
               "(for example the reflectance product rather than a rendered image, or convert the values)")
    if strict:
        raise EngineError(f"{message}. Nothing was written: implausible input is refused (strict)")
    return [f"{message}. 'Refuse implausible input' (--strict) stops such runs instead of warning"]
