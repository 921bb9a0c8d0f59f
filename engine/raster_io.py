"""Raster input and output: the only module that opens GeoTIFFs.

Input: a processing grid over a raster (whole layer, an extent, or resampled to the model's ground
sampling distance), read window by window in the model's band order with nodata and masks honoured.
Output: tiled, compressed GeoTIFFs on that grid, written atomically (a temporary file in the target
folder renamed into place only when complete; removed on any failure or cancel).
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import Geod
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds

from engine.contract import Band, ModelContract
from engine.errors import EngineError
from engine.output_files import check_output_file, partial_path, remove_stale_partials, write_failed
from engine.radiometry import check_product_level, check_radiometry

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32")
OUTPUT_BLOCK = 256  # GeoTIFF block size; output strips are flushed in multiples of it
# deflate's fastest level: a 2048^2 float32 depth raster compressed in 0.25 s instead of 0.6 s at the default
# level 6, 2.8 % larger (model outputs carry noise that no level compresses away); any reader of deflate reads it
DEFLATE_LEVEL = 1
GDAL_OPTIONS = {"GDAL_CACHEMAX": 32 * 2**20, "GDAL_NUM_THREADS": "1"}  # bounded GDAL block cache
BAND_TOKEN = re.compile(r"(?<![A-Za-z0-9])(B8A|B\d{1,2}|VV|VH|HH|HV)(?![A-Za-z0-9])", re.IGNORECASE)


def parse_band_mapping(text: str | dict | None) -> dict[str, int]:
    """'B02=1,B03=2' (or a dict) -> {'B02': 1, 'B03': 2} (1-based raster band indexes)."""
    if not text:
        return {}
    if isinstance(text, dict):
        items = text.items()
    else:
        items = []
        for part in str(text).split(","):
            name, sep, index = part.partition("=")
            if not sep:
                raise EngineError(
                    f"band mapping item {part.strip()!r} is not NAME=INDEX; "
                    "write it like 'B02=1,B03=2,B04=3' (1-based band numbers of the input raster)"
                )
            items.append((name, index))
    mapping = {}
    for name, index in items:
        name = str(name).strip()
        if name in mapping:
            raise EngineError(f"band mapping names {name} twice ({text}); give each model band one input band, "
                              "like 'B02=1,B03=2,B04=3'")
        try:
            mapping[name] = int(index)
        except ValueError:
            raise EngineError(f"band mapping for {name!r}: {index!r} is not a band number") from None
    return mapping


def resolve_bands(labels: list[str | None], contract: ModelContract, mapping: dict[str, int]) -> list[int]:
    """Pick the 1-based input band for every model band: mapping, then band names, then order.
    ``labels`` are the names of all input bands (of all input files, in order)."""
    count = len(labels)
    wanted = ", ".join(
        f"{b.name}" + (f" ({'/'.join(b.aliases)})" if b.aliases else "") for b in contract.bands
    )
    unknown = set(mapping) - set(contract.band_names)
    if unknown:
        raise EngineError(
            f"band mapping names {sorted(unknown)} that the model does not use; it needs: {wanted}"
        )
    chosen = []
    for band in contract.bands:
        if band.name in mapping:
            index = mapping[band.name]
        else:
            named = [i + 1 for i, label in enumerate(labels) if label and band.matches(label)]
            index = named[0] if named else None
        chosen.append(index)
    if all(i is None for i in chosen) and count == len(contract.bands):
        chosen = list(range(1, count + 1))  # no names to go by: same count, take them in order
    missing = [b.name for b, i in zip(contract.bands, chosen) if i is None]
    if missing:
        raise EngineError(
            f"the input has {count} band(s) but the model needs {len(contract.bands)}: {wanted}; "
            f"cannot tell which band is {', '.join(missing)}. Name the bands (band descriptions, or "
            "the band in single-band file names) or give a band mapping such as "
            + ",".join(f"{b.name}={n + 1}" for n, b in enumerate(contract.bands))
            + " (numbers count the bands of all input files in order)"
        )
    bad = [i for i in chosen if not 1 <= i <= count]
    if bad:
        raise EngineError(f"band mapping refers to band(s) {bad}, but the input has bands 1..{count}")
    return chosen


def present_bands(paths: list[str], bands: tuple[Band, ...]) -> tuple[Band, ...]:
    """Those of ``bands`` that a band of the input files is named after (descriptions, file names)."""
    labels = []
    for path in paths:
        with _open_raster(path) as dataset:
            labels += band_labels(dataset, path)
    return tuple(band for band in bands if any(label and band.matches(label) for label in labels))


COLOUR_BANDS = ("red", "green", "blue")  # GDAL colour interpretations that name a band


def band_labels(dataset, path: str) -> list[str | None]:
    """Band names of a file: its band descriptions; for a single unnamed band the band token in the
    file name (``..._B8A_20m.tif`` -> B8A, ``s1_vh.tif`` -> VH, ``..._B2.tif`` -> B02); for the
    unnamed bands of an RGBA rendering (e.g. of a web map layer) their colour. (Only with an alpha
    band: GDAL marks every 3-band byte GeoTIFF red, green, blue, whatever its bands hold.)"""
    labels = list(dataset.descriptions)
    interpretations = [c.name for c in dataset.colorinterp]
    if "alpha" in interpretations:
        labels = [label or (c if c in COLOUR_BANDS else None) for label, c in zip(labels, interpretations)]
    if dataset.count == 1 and not labels[0]:
        tokens = BAND_TOKEN.findall(Path(path).stem)
        if tokens:
            token = tokens[-1].upper()
            if token.startswith("B") and token != "B8A":
                token = f"B{int(token[1:]):02d}"
            labels = [token]
    return labels


def _grid_transform_at_gsd(src, bounds, gsd_m: float) -> tuple[Affine, int, int]:
    """Transform and size of a grid over bounds with pixels of gsd_m metres (in the source CRS), the
    last partial row and column of pixels left out."""
    left, bottom, right, top = bounds
    if src.crs.is_geographic:
        lon, lat = (left + right) / 2, (bottom + top) / 2
        geod = Geod(ellps="WGS84")
        metres_per_deg_x = geod.inv(lon - 0.5, lat, lon + 0.5, lat)[2]
        metres_per_deg_y = geod.inv(lon, lat - 0.5, lon, lat + 0.5)[2]
        step_x, step_y = gsd_m / metres_per_deg_x, gsd_m / metres_per_deg_y
    else:
        unit = src.crs.linear_units_factor[1]
        step_x = step_y = gsd_m / unit
    # whole pixels only: the grid stays inside the bounds, so a file in its CRS is read directly
    width = max(1, math.floor((right - left) / step_x + 1e-9))
    height = max(1, math.floor((top - bottom) / step_y + 1e-9))
    return Affine(step_x, 0, left, 0, -step_y, top), width, height


@dataclass(frozen=True)
class OutputGrid:
    """A grid to write on other than the processing grid (e.g. one pixel per patch)."""

    crs: object
    transform: Affine
    width: int
    height: int


@dataclass
class Source:
    """Bands of one opened input, and where the processing grid lies in it: grid pixel (col, row)
    is source pixel ((col_off + col) / scale, (row_off + row) / scale), resampled by GDAL's raster
    reading (``resampling``). A source on another grid is a warped view (WarpedVRT) that has the
    processing grid itself (offsets 0, scale 1)."""

    dataset: rasterio.io.DatasetReader | WarpedVRT
    path: str  # the file, named in errors
    bands: list[int]  # 1-based bands to read
    positions: list[int]  # their places in the model's band order
    col_off: float = 0  # in grid pixels
    row_off: float = 0
    scale: float = 1  # grid pixels per source pixel (> 1: a coarser band, its pixels repeated)
    resampling: rasterio.enums.Resampling = rasterio.enums.Resampling.nearest
    reopen: Callable[[contextlib.ExitStack], rasterio.io.DatasetReader | WarpedVRT] | None = None  # another handle

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.scale
        window = Window((self.col_off + col) / k, (self.row_off + row) / k, width / k, height / k)
        shape = (len(self.bands), height, width)
        try:
            data = self.dataset.read(self.bands, window=window, out_shape=shape, out_dtype="float32",
                                     resampling=self.resampling)
            masks = self.dataset.read_masks(self.bands, window=window, out_shape=shape,
                                            resampling=rasterio.enums.Resampling.nearest)
        except rasterio.errors.RasterioIOError as err:
            raise EngineError(
                f"input raster {self.path} is damaged: rows {row}-{row + height}, columns {col}-{col + width} of "
                f"the processing grid cannot be read ({_gdal_reason(err)}). The file may be truncated (an interrupted "
                "download or copy): fetch or export it again"
            ) from None
        return data, np.all(masks > 0, axis=0)


@dataclass(frozen=True)
class BandInfo:
    dtype: str
    nodata: float | None
    label: str


@dataclass
class InputGrid:
    """Input rasters seen through one processing grid, read in the model's band order."""

    sources: list[Source]
    crs: object
    transform: Affine  # of the processing grid
    width: int
    height: int
    band_info: list[BandInfo]  # per model band: the input's dtype, nodata and name
    warnings: list[str]
    ratios: list[tuple[int, int, int]] = field(default_factory=list)  # (band, numerator, denominator)

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels [bands, h, w] as float32 and a validity mask [h, w] for a window of the grid."""
        data = np.empty((len(self.band_info), height, width), np.float32)
        valid = np.ones((height, width), bool)
        for source in self.sources:
            data[source.positions], source_valid = source.read(row, col, height, width)
            valid &= source_valid
        for band, numerator, denominator in self.ratios:
            data[band] = data[numerator] - data[denominator]  # a ratio of dB values
        valid &= np.all(np.isfinite(data), axis=0)
        return data, valid

    def reopened(self) -> tuple[InputGrid, Callable[[], None]]:
        """This grid with handles of its own on the input files (a GDAL dataset is used by one thread
        at a time: one copy per reading thread), and what closes them."""
        stack = contextlib.ExitStack()
        sources = [replace(source, dataset=source.reopen(stack)) for source in self.sources]
        return replace(self, sources=sources), stack.close

    def read_tiles(self, contract: ModelContract, row: int, cols: list[int], height: int, width: int
                   ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Read and normalise the tiles at ``row`` and ``cols`` as one model batch [N, bands, tile, tile].

        One read covers the whole row of tiles (far fewer GDAL calls than one per tile). Windows are
        clipped to the grid; what lies outside, and invalid pixels, are fed as zeros (the band mean
        after normalisation) and reported invalid: validity masks [height, width].
        """
        h = min(height, self.height - row)
        span_end = min(max(cols) + width, self.width)
        data, valid = self.read(row, cols[0], h, span_end - cols[0])
        normalised = normalise(data, valid, contract.mean, contract.std)
        batch = np.zeros((len(cols), len(contract.bands), contract.tile_size, contract.tile_size), np.float32)
        valids = []
        for index, col in enumerate(cols):
            start, w = col - cols[0], min(width, span_end - col)
            batch[index, :, :h, :w] = normalised[:, :, start:start + w]
            mask = np.zeros((height, width), bool)
            mask[:h, :w] = valid[:, start:start + w]
            valids.append(mask)
        return batch, valids


def normalise(data: np.ndarray, valid: np.ndarray, mean, std) -> np.ndarray:
    """(value - mean) / std per band [bands, ...]; invalid pixels become 0 (the band mean)."""
    shape = (len(mean),) + (1,) * (data.ndim - 1)
    mean, std = np.asarray(mean, np.float32).reshape(shape), np.asarray(std, np.float32).reshape(shape)
    return np.where(valid, (data - mean) / std, 0.0).astype(np.float32, copy=False)


def _open_raster(path: str):
    if not Path(path).exists():
        raise EngineError(f"input raster {path} does not exist")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as err:
        raise EngineError(
            f"cannot open input raster {path}: {str(err).rstrip('.')}. The file is not a raster GDAL reads, or "
            "it is damaged (an interrupted download or copy): check that it opens in QGIS, or export or fetch it again"
        ) from None


def _open_georeferenced(path: str):
    src = _open_raster(path)
    if src.crs is None or src.transform == Affine.identity():
        src.close()
        raise EngineError(
            f"input raster {path} is not georeferenced (no CRS or geotransform): outputs could "
            "not be placed on the map. Georeference it first (QGIS Georeferencer, or "
            "gdal_translate -a_srs EPSG:... -a_ullr ...)."
        )
    if src.transform.b != 0 or src.transform.d != 0:
        src.close()
        raise EngineError(f"input raster {path} is rotated; warp it to a north-up grid first (gdalwarp)")
    return src


@contextlib.contextmanager
def open_input(
    paths: str | list[str],
    contract: ModelContract,
    bands: str | dict | None = None,
    extent: list[float] | None = None,
    resample: bool = False,
    target: OutputGrid | None = None,
    strict: bool = False,
):
    """Open one or several rasters of one area as an InputGrid for ``contract``.

    The grid is ``target`` when given, else that of the finest raster holding a band the model uses
    (over ``extent``, in its CRS; files of unused bands are ignored, with a warning), at the model's
    ground sampling distance when ``resample`` is set. Rasters in the grid's CRS that
    cover it are read directly (``_direct_placement``: copied on its pixel lattice, else resampled as
    they are read); others are warped onto it, reprojected when their CRS differs. Coarser bands are
    upsampled with nearest neighbour (as reBEN prepares 20/60 m bands), finer ones bilinearly.
    Every problem raises EngineError with a fix. Values implausible for the
    contract's input units (engine/radiometry.py) are a warning, or an EngineError when ``strict``.
    """
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise EngineError("no input raster given")
    with contextlib.ExitStack() as stack, rasterio.Env(**GDAL_OPTIONS):
        datasets = [stack.enter_context(_open_georeferenced(p)) for p in paths]
        owners = [(d, band) for d in datasets for band in range(1, d.count + 1)]
        labels = [label for d, p in zip(datasets, paths) for label in band_labels(d, p)]
        mapping = parse_band_mapping(bands)
        ratios = _ratio_bands(contract, labels, mapping)
        read_contract = replace(contract, bands=tuple(b for k, b in enumerate(contract.bands) if k not in ratios),
                                mean=tuple(m for k, m in enumerate(contract.mean) if k not in ratios),
                                std=tuple(v for k, v in enumerate(contract.std) if k not in ratios),
                                input_statistics={})  # of the model's bands, the ratios included
        chosen = resolve_bands(labels, read_contract, mapping)
        band_info = [BandInfo(owners[i - 1][0].dtypes[owners[i - 1][1] - 1],
                              owners[i - 1][0].nodatavals[owners[i - 1][1] - 1], labels[i - 1] or f"band {i}")
                     for i in chosen]
        unsupported = {b.dtype for b in band_info} - set(SUPPORTED_DTYPES)
        if unsupported:
            raise EngineError(
                f"input raster has data type {', '.join(sorted(unsupported))}, which the engine "
                f"does not read; supported: {', '.join(SUPPORTED_DTYPES)}. Convert it, e.g. "
                "gdal_translate -ot Float32 in.tif out.tif"
            )
        used = [k for k, dataset in enumerate(datasets) if any(owners[i - 1][0] is dataset for i in chosen)]
        warnings = [f"{', '.join(Path(paths[k]).name for k in range(len(paths)) if k not in used)}: no band the "
                    "model uses, so the model does not read it"] if len(used) < len(paths) else []
        # The grid is that of the finest file the model reads (a product folder's 60 m B01 never decides it).
        first = min(used, key=lambda k: (datasets[k].crs != datasets[used[0]].crs, abs(datasets[k].transform.a), k))
        reference = datasets[first]
        crs = reference.crs if target is None else target.crs
        bounds = reference.bounds if extent is None else _clip_extent(reference, extent, paths[first])
        if target is not None:
            transform, width, height = target.transform, target.width, target.height
        elif resample and contract.gsd_m:
            transform, width, height = _grid_transform_at_gsd(reference, bounds, contract.gsd_m)
        else:
            window = _window_for(reference, bounds)
            transform, width, height = reference.window_transform(window), int(window.width), int(window.height)
            _warn_pixel_size(reference, contract, warnings)
        sources = []
        read_positions = [k for k in range(len(contract.bands)) if k not in ratios]  # model order
        for dataset, path in zip(datasets, paths):
            positions = [read_positions[k] for k, i in enumerate(chosen) if owners[i - 1][0] is dataset]
            if not positions:
                continue
            bands_here = [owners[i - 1][1] for i in chosen if owners[i - 1][0] is dataset]
            placed = _direct_placement(dataset, bands_here, crs, transform, width, height)
            if placed:
                sources.append(Source(dataset, path, bands_here, positions, *placed,
                                      reopen=functools.partial(_reopen, path, None)))
                continue
            if dataset.crs != crs:
                warnings.append(f"{Path(path).name} is in {dataset.crs}; reprojected to {crs}")
            warp = dict(
                crs=crs, transform=transform, width=width, height=height,
                resampling=_resampling(dataset, crs, transform),
                # masks where the file has no data, unless its nodata or its own alpha band (which the
                # warper carries over) say where
                add_alpha=all(v is None for v in dataset.nodatavals) and not any(
                    rasterio.enums.MaskFlags.alpha in flags for flags in dataset.mask_flag_enums),
            )
            vrt = stack.enter_context(WarpedVRT(dataset, **warp))
            sources.append(Source(vrt, path, bands_here, positions, reopen=functools.partial(_reopen, path, warp)))
        for k in ratios:
            band_info.insert(k, BandInfo("float32", None, f"{contract.bands[k].name} (computed from dB bands)"))
        grid = InputGrid(sources, crs, transform, width, height, band_info, warnings,
                         [(k, *ratios[k]) for k in sorted(ratios)])
        warnings += check_product_level([(paths[k], datasets[k].tags()) for k in used], contract, strict)
        warnings += check_radiometry(grid, contract, strict)
        yield grid


def _reopen(path: str, warp: dict | None, stack: contextlib.ExitStack):
    """Another handle on an input file, warped onto the grid like the first when ``warp`` is given."""
    dataset = stack.enter_context(rasterio.open(path))
    return stack.enter_context(WarpedVRT(dataset, **warp)) if warp else dataset


def _ratio_bands(contract: ModelContract, labels: list[str | None], mapping: dict[str, int]) -> dict:
    """Model bands named 'A/B' (e.g. Sentinel-1 VV/VH) that no input provides but whose A and B the
    model also takes: {band position: (A position, B position)}, computed as A - B of dB values."""
    positions = {band.name: k for k, band in enumerate(contract.bands)}
    ratios = {}
    for k, band in enumerate(contract.bands):
        numerator, slash, denominator = band.name.partition("/")
        provided = band.name in mapping or any(label and band.matches(label) for label in labels)
        if slash and not provided and numerator in positions and denominator in positions:
            ratios[k] = (positions[numerator], positions[denominator])
    return ratios


def _resampling(dataset, crs, transform: Affine) -> rasterio.enums.Resampling:
    """Nearest neighbour for a coarser file in the grid's CRS (its pixels repeated, as reBEN prepares
    20/60 m bands), else bilinear."""
    coarser = abs(dataset.transform.a) > abs(transform.a) * 1.01 and dataset.crs == crs
    return rasterio.enums.Resampling.nearest if coarser else rasterio.enums.Resampling.bilinear


def _direct_placement(dataset, bands: list[int], crs, transform: Affine, width: int, height: int
                      ) -> tuple[float, float, float, rasterio.enums.Resampling] | None:
    """(col_off, row_off, scale, resampling) when the grid lies inside ``dataset``, in its CRS, north
    up, with square pixels in the same ratio to the file's across and down: read directly, resampled by
    GDAL's raster reading (RFC 51), without the warper, which took 190 ns a grid pixel for bilinear
    against 30 here (3 bands; bench/search.py's index build). On the file's own lattice or an integer
    subdivision of it (a 20 m band under a 10 m grid) pixels are copied or repeated; off it, the
    warper's choice of resampling (``_resampling``) holds. Like the warper, GDAL's reading leaves
    nodata out of the bilinear kernel (the same masks, tested); files with an alpha band or a mask are
    left to the warper for bilinear."""
    if dataset.crs != crs or dataset.transform.b or dataset.transform.d:
        return None
    scale = dataset.transform.a / transform.a
    if scale <= 0 or abs(dataset.transform.e / transform.e - scale) > 1e-9 * scale:
        return None
    col_off = (transform.c - dataset.transform.c) / transform.a
    row_off = (transform.f - dataset.transform.f) / transform.e
    nearest = rasterio.enums.Resampling.nearest
    if (abs(scale - round(scale)) <= 1e-9 and round(scale) >= 1
            and abs(col_off - round(col_off)) <= 1e-6 and abs(row_off - round(row_off)) <= 1e-6):
        col_off, row_off, scale, resampling = round(col_off), round(row_off), round(scale), nearest
    else:
        resampling = _resampling(dataset, crs, transform)
        flags = rasterio.enums.MaskFlags
        masked = any(dataset.mask_flag_enums[band - 1] not in ([flags.all_valid], [flags.nodata]) for band in bands)
        if resampling != nearest and masked:  # an alpha band or a mask: left to the warper
            return None
    margin = 1e-6 * max(1.0, scale)
    inside = (col_off >= -margin and row_off >= -margin and col_off + width <= dataset.width * scale + margin
              and row_off + height <= dataset.height * scale + margin)
    return (col_off, row_off, scale, resampling) if inside else None


def _warn_pixel_size(src, contract: ModelContract, warnings: list[str]) -> None:
    if contract.gsd_m and not src.crs.is_geographic:
        pixel_m = abs(src.transform.a) * src.crs.linear_units_factor[1]
        if not 0.5 <= pixel_m / contract.gsd_m <= 2:
            warnings.append(
                f"input pixels are {pixel_m:g} m but the model was trained at {contract.gsd_m:g} m; "
                "results may be poor: enable resampling to the model's resolution"
            )


def _clip_extent(src, extent, path):
    xmin, ymin, xmax, ymax = (float(v) for v in extent)
    left, bottom, right, top = src.bounds
    clipped = (max(xmin, left), max(ymin, bottom), min(xmax, right), min(ymax, top))
    if clipped[0] >= clipped[2] or clipped[1] >= clipped[3]:
        raise EngineError(
            f"the extent {list(extent)} does not overlap input raster {path} "
            f"(bounds {list(src.bounds)} in {src.crs}); give the extent in the raster's CRS"
        )
    return clipped


def _window_for(src, bounds) -> Window:
    window = from_bounds(*bounds, transform=src.transform)
    col0, row0 = math.floor(window.col_off + 1e-6), math.floor(window.row_off + 1e-6)
    col1 = math.ceil(window.col_off + window.width - 1e-6)
    row1 = math.ceil(window.row_off + window.height - 1e-6)
    col0, row0 = max(col0, 0), max(row0, 0)
    col1, row1 = min(max(col1, col0 + 1), src.width), min(max(row1, row0 + 1), src.height)
    return Window(col0, row0, col1 - col0, row1 - row0)


def read_tags(path: str) -> dict[str, str]:
    """The dataset-level metadata tags of a raster."""
    with _open_raster(path) as dataset:
        return dataset.tags()


def read_band_descriptions(path: str) -> list[str | None]:
    with _open_raster(path) as dataset:
        return list(dataset.descriptions)


def check_output_path(path: str, *inputs: str) -> None:
    """Refuse a GeoTIFF output that would fail late or overwrite an input."""
    check_output_file(path, "GeoTIFF", (".tif", ".tiff"))
    target = Path(path)
    for source in inputs:
        if Path(source).exists() and target.exists() and target.samefile(source):
            raise EngineError(f"output {path} is the input raster; inputs are never overwritten")


def check_output_paths(outputs: dict[str, str], *inputs: str) -> None:
    """``check_output_path`` for each output (by parameter name), and no two of them the same file."""
    seen: dict[str, str] = {}
    for key, path in outputs.items():
        check_output_path(path, *inputs)
        same = seen.setdefault(os.path.realpath(path), key)
        if same != key:
            raise EngineError(f"{same} and {key} are the same file {path}; one would overwrite the other: "
                              f"give {key} another file name")


@dataclass
class OutputSpec:
    """What one output GeoTIFF holds: bands of a dtype with a nodata value, colours, tags."""

    path: str
    count: int
    dtype: str
    nodata: float
    band_names: tuple[str, ...] = ()
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    tags: dict[str, str] | None = None


@contextlib.contextmanager
def atomic_outputs(grid: InputGrid | OutputGrid, specs: list[OutputSpec]):
    """Open every output as a temporary file; rename all into place only if the block succeeds and
    every file was written completely (engine/output_files.py)."""
    opened, partials = [], []  # a partial is listed before it exists: a signal may come at any line
    try:
        with rasterio.Env(**GDAL_OPTIONS):
            for spec in specs:
                target = Path(spec.path)
                remove_stale_partials(target)
                partial = partial_path(target, ".tif")
                partials.append(partial)
                profile = dict(
                    driver="GTiff", width=grid.width, height=grid.height, count=spec.count,
                    dtype=spec.dtype, nodata=spec.nodata, crs=grid.crs, transform=grid.transform,
                    compress="deflate", zlevel=DEFLATE_LEVEL, predictor=3 if spec.dtype == "float32" else 2,
                    BIGTIFF="IF_SAFER", tiled=True, blockxsize=OUTPUT_BLOCK, blockysize=OUTPUT_BLOCK,
                )
                dataset = _written(target, lambda: rasterio.open(partial, "w", **profile))
                opened.append((dataset, partial, target))
                for index, name in enumerate(spec.band_names, start=1):
                    dataset.set_band_description(index, name)
                if spec.colormap:
                    dataset.write_colormap(1, spec.colormap)
                if spec.tags:
                    dataset.update_tags(**spec.tags)
            try:
                yield [dataset for dataset, _, _ in opened]
            except rasterio.errors.RasterioIOError as err:  # input read errors are EngineErrors already
                raise write_failed(", ".join(str(target) for _, _, target in opened), _gdal_reason(err)) from None
            for dataset, partial, target in opened:
                _written(target, dataset.close)
                _verify_complete(partial, target)
        for _, partial, target in opened:
            os.replace(partial, target)
    except BaseException:
        for dataset, _, _ in opened:
            with contextlib.suppress(rasterio.errors.RasterioIOError, OSError):
                dataset.close()
        for partial in partials:
            partial.unlink(missing_ok=True)
        raise


class StripWriter:
    """Makes and writes strips into open outputs on a thread of its own, in the order given, with at
    most ``queued`` strips waiting (bounded memory): what a task computes per strip besides the model
    (its conversion, quality and uncertainty layers) and the deflate compression of the written blocks
    run beside the model instead of after it. An error is raised again by the next ``write`` or by
    ``close``. ``queued=0`` makes and writes on the caller's thread."""

    def __init__(self, datasets: list, queued: int):
        self.datasets, self.error = datasets, None
        self.queue: queue.Queue | None = queue.Queue(queued) if queued else None
        if self.queue is not None:
            self.thread = threading.Thread(target=self._write_queued, name="rsai-write", daemon=True)
            self.thread.start()

    def write(self, make: Callable[[], tuple[list[np.ndarray], tuple]]) -> None:
        """``make`` returns the arrays of one strip, one per output, and their window; it may only use
        what no other thread changes meanwhile."""
        if self.queue is None:
            self._write(make)
            return
        while True:
            self._raise_error()
            with contextlib.suppress(queue.Full):
                self.queue.put(make, timeout=0.5)  # the writer may have stopped on an error
                return

    def close(self) -> None:
        """Wait until every strip is written (raising an error); the outputs stay open."""
        if self.queue is not None:
            self.queue.put(None)
            self.thread.join()
            self.queue = None
        self._raise_error()

    def abandon(self) -> None:
        """Stop after the strip being written, dropping those queued (the run failed or was cancelled)."""
        if self.queue is not None:
            with contextlib.suppress(queue.Empty):
                while True:
                    self.queue.get_nowait()
            self.queue.put(None)
            self.thread.join()
            self.queue = None

    def _write(self, make) -> None:
        arrays, window = make()
        for dataset, array in zip(self.datasets, arrays):
            dataset.write(array, window=window)

    def _write_queued(self) -> None:
        while (make := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self._write(make)
                except BaseException as err:  # raised again on the caller's thread
                    self.error = err

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error


def _written(target: Path, write):
    try:
        return write()
    except (rasterio.errors.RasterioIOError, OSError) as err:
        raise write_failed(target, _gdal_reason(err)) from None


def _gdal_reason(err: Exception) -> str:
    """GDAL's own message: rasterio raises "Read failed. See previous exception" from it."""
    return str(err.__cause__ or err)


def _verify_complete(partial: Path, target: Path) -> None:
    """Every block of every band lies inside the closed file. GDAL reports a failed block write
    (disk full, quota) only to its log when the block cache is flushed at close, so this check is
    what stops a file with unreadable blocks from being renamed into place."""
    size = partial.stat().st_size
    try:
        with rasterio.open(partial) as dataset:
            for band in dataset.indexes:
                for (row, col), _ in dataset.block_windows(band):
                    offset = dataset.get_tag_item(f"BLOCK_OFFSET_{col}_{row}", "TIFF", bidx=band)
                    length = dataset.get_tag_item(f"BLOCK_SIZE_{col}_{row}", "TIFF", bidx=band)
                    if not offset or not length or int(offset) + int(length) > size:
                        raise write_failed(target, f"block ({row}, {col}) of band {band} did not reach the disk")
    except rasterio.errors.RasterioIOError as err:
        raise write_failed(target, f"the written file cannot be read back ({_gdal_reason(err)})") from None
