"""Satellite image time series as model input: dated rasters of one area on one grid.

A modality (Sentinel-2, Sentinel-1) comes as one raster per date, or as one stack whose band
descriptions carry the date ("2023-04-15 B02"). Acquisition dates come from, in order: the dates
the user gives, the band descriptions of a stack, the file name (20230415 or 2023-04-15), the
file's ACQUISITION_DATE / DATE tag. Every date is opened with engine.raster_io.open_input on the
grid of the first date of the first modality, so dates and modalities may differ in resolution and
CRS. Tiles are read as the named inputs of a multi-temporal model (engine.contract.Modality):
values normalised with invalid pixels 0, day of year, and a per-pixel validity mask per date, so
clouds and nodata are masked, not fed as data.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.contract import ModelContract, Modality
from engine.errors import EngineError
from engine.raster_io import InputGrid, OutputGrid, open_input, read_band_descriptions, read_tags

DATE_IN_TEXT = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


def date_in(text: str) -> dt.date | None:
    for match in DATE_IN_TEXT.finditer(text or ""):
        try:
            return dt.date(*(int(g) for g in match.groups()))
        except ValueError:
            continue
    return None


def modality_contract(contract: ModelContract, modality: Modality) -> ModelContract:
    """The single-image view of one modality: its bands, normalisation and training-input statistics."""
    return replace(contract, bands=modality.bands, mean=modality.mean, std=modality.std, modalities=(),
                   input_statistics=contract.input_statistics.get(modality.name, {}))


@dataclass(frozen=True)
class DatedInput:
    date: dt.date
    path: str
    bands: dict[str, int] | None  # model band -> band number, for one date inside a stack


def dated_inputs(paths: list[str], dates: list[str] | None, modality: Modality) -> list[DatedInput]:
    """The dates of a modality's rasters, sorted; a clear error when a date cannot be found."""
    if dates:
        if len(dates) != len(paths):
            raise EngineError(
                f"{modality.name}: {len(dates)} dates given for {len(paths)} rasters; give one per raster")
        parsed = [date_in(d) for d in dates]
        if None in parsed:
            raise EngineError(f"{modality.name}: cannot read the date {dates[parsed.index(None)]!r}; use YYYY-MM-DD")
        return sorted((DatedInput(d, p, None) for d, p in zip(parsed, paths)), key=lambda i: i.date)
    found = []
    for path in paths:
        descriptions = read_band_descriptions(path)
        stack_dates = {date_in(d) for d in descriptions if d}
        if len(stack_dates - {None}) > 1:
            found.extend(_stack_dates(path, descriptions, modality))
            continue
        date = date_in(Path(path).stem) or date_in(_date_tag(path))
        if date is None:
            raise EngineError(
                f"{modality.name}: no acquisition date for {path}: put it in the file name (e.g. "
                f"S2_20230415.tif), in band descriptions of a stack ('2023-04-15 B02'), or give the dates"
            )
        found.append(DatedInput(date, path, None))
    return sorted(found, key=lambda i: i.date)


def _date_tag(path: str) -> str:
    tags = read_tags(path)
    return next((tags[k] for k in ("ACQUISITION_DATE", "DATE", "date", "TIFFTAG_DATETIME") if k in tags), "")


def _stack_dates(path: str, descriptions: list[str | None], modality: Modality) -> list[DatedInput]:
    by_date: dict[dt.date, dict[str, int]] = {}
    for number, description in enumerate(descriptions, start=1):
        date = date_in(description or "")
        label = DATE_IN_TEXT.sub("", description or "").strip(" _-:")
        band = next((b for b in modality.bands if b.matches(label)), None)
        if date and band:
            by_date.setdefault(date, {})[band.name] = number
    names = {b.name for b in modality.bands}
    for date, mapping in by_date.items():
        if set(mapping) != names:
            raise EngineError(f"{modality.name}: the stack {path} lacks band(s) {sorted(names - set(mapping))} "
                              f"on {date}")
    return [DatedInput(date, path, mapping) for date, mapping in by_date.items()]


def subsample(inputs: list[DatedInput], most: int) -> list[DatedInput]:
    """At most ``most`` dates, evenly spread over the series (the model's max_dates)."""
    if len(inputs) <= most:
        return inputs
    keep = np.unique(np.round(np.linspace(0, len(inputs) - 1, most)).astype(int))
    return [inputs[i] for i in keep]


@dataclass
class TimeSeriesGrid:
    """Every date of every modality on one grid; reads batches of tiles as a model's named inputs."""

    dated: dict[str, list[tuple[dt.date, InputGrid]]]
    crs: object
    transform: object
    width: int
    height: int
    warnings: list[str]

    def read(self, row: int, col: int, height: int, width: int
             ) -> tuple[dict[str, list[tuple[np.ndarray, np.ndarray]]], np.ndarray]:
        """A window of every date in raw units: per modality, each date's pixels [bands, h, w] and
        validity [h, w]; and where any date is valid [h, w]."""
        series = {name: [grid.read(row, col, height, width) for _, grid in dates] for name, dates in self.dated.items()}
        return series, np.any([valid for dates in series.values() for _, valid in dates], axis=0)

    def reopened(self) -> tuple[TimeSeriesGrid, Callable[[], None]]:
        """This grid with handles of its own on every date's files (one copy per reading thread of
        engine/pipeline.py, as ``InputGrid.reopened``), and what closes them."""
        stack = contextlib.ExitStack()
        dated = {}
        for name, series in self.dated.items():
            dated[name] = []
            for date, grid in series:
                own, close = grid.reopened()
                stack.callback(close)
                dated[name].append((date, own))
        return replace(self, dated=dated), stack.close

    def read_tiles(self, contract: ModelContract, row: int, cols: list[int], height: int, width: int
                   ) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
        tile = contract.tile_size
        feeds, valid_any = {}, np.zeros((len(cols), height, width), bool)
        for modality in contract.modalities:
            series = self.dated[modality.name]
            view = modality_contract(contract, modality)
            values = np.zeros((len(cols), len(series), len(modality.bands), tile, tile), np.float32)
            masks = np.zeros((len(cols), len(series), tile, tile), np.float32)
            for t, (_, grid) in enumerate(series):
                batch, valids = grid.read_tiles(view, row, cols, height, width)
                values[:, t] = batch
                masks[:, t, :height, :width] = np.stack(valids)
                valid_any |= np.stack(valids)
            feeds[modality.name] = values
            feeds[f"{modality.name}_doy"] = np.tile(
                np.array([[date.timetuple().tm_yday for date, _ in series]], np.int64), (len(cols), 1))
            feeds[f"{modality.name}_mask"] = masks
        return feeds, list(valid_any)


@contextlib.contextmanager
def open_time_series(contract: ModelContract, inputs: dict[str, list[str]], dates: dict[str, list[str] | None],
                     extent: list[float] | None = None, resample: bool = False, strict: bool = False):
    """Open each modality's dated rasters on the grid of the first date of the first modality."""
    missing = [m.name for m in contract.modalities if not inputs.get(m.name)]
    if missing:
        raise EngineError(f"the model needs the {', '.join(missing)} time series; give its rasters")
    series = {}
    warnings = []
    for modality in contract.modalities:
        found = dated_inputs(inputs[modality.name], dates.get(modality.name), modality)
        kept = subsample(found, modality.max_dates)
        if len(kept) < len(found):
            warnings.append(f"{modality.name}: {len(found)} dates; the model takes at most {modality.max_dates}, "
                            f"so {len(kept)} evenly spread dates are used")
        series[modality.name] = kept
    with contextlib.ExitStack() as stack:
        first_modality = contract.modalities[0]
        first = series[first_modality.name][0]
        reference = stack.enter_context(open_input(first.path, modality_contract(contract, first_modality),
                                                   first.bands, extent, resample, strict=strict))
        target = OutputGrid(reference.crs, reference.transform, reference.width, reference.height)
        warnings.extend(reference.warnings)
        dated = {}
        for modality in contract.modalities:
            view = modality_contract(contract, modality)
            dated[modality.name] = []
            for item in series[modality.name]:
                grid = stack.enter_context(open_input(item.path, view, item.bands, target=target, strict=strict))
                warnings.extend(w for w in grid.warnings if w not in warnings)
                dated[modality.name].append((item.date, grid))
        yield TimeSeriesGrid(dated, target.crs, target.transform, target.width, target.height, warnings)
