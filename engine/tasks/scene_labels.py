"""Scene multi-labels on a patch grid (reBEN / BigEarthNet v2, 19 classes, Sentinel-1 + Sentinel-2).

Clasen et al., "reBEN: Refined BigEarthNet Dataset for Remote Sensing Image Analysis", 2024. The
area is cut into patches of the model's tile size at its ground sampling distance (120 x 120 px at
10 m = 1200 m x 1200 m, the reference grid), aligned to the top-left corner of the processed area
in the input CRS. Each patch gets the model's per-class probabilities (sigmoid, multi-label).
Inputs may be several files (S2 stack or one file per band, S1 VV/VH): they are warped onto the
grid of the first one at the model's resolution (engine.raster_io.open_input).

Outputs: a GeoPackage polygon layer, one feature per patch, with the labels above the threshold,
the top label, every class probability, the patch's uncertainty (mean binary entropy of the 19
probabilities, 0 = every label certain, 1 = every label a coin toss) and, when the contract records
its training inputs' statistics, the share of the patch's pixels unlike them (engine/input_distribution.py)
as fields; patches without enough valid pixels are
kept, marked ``status = 'nodata'``, and not classified. Optionally a GeoTIFF with one pixel per
patch and one band per class probability.
"""
from __future__ import annotations

import re
import time
from contextlib import ExitStack

import numpy as np

from engine.errors import Cancelled, EngineError, ModelContractError
from engine.input_distribution import InputDistribution
from engine.pipeline import IsCancelled, Progress
from engine.raster_io import OutputGrid, OutputSpec, atomic_outputs, check_output_path, open_input
from engine.runtime import MODELS_DIR, Model
from engine.tasks.class_map import PROBABILITY_NODATA
from engine.tasks.parameters import EXTENT, PATH
from engine.tasks.raster_task import RASTER_PARAMS, as_list
from engine.uncertainty import class_uncertainty
from engine.vector_io import Field, atomic_geopackage



def probability_field(class_name: str) -> str:
    return "p_" + re.sub(r"[^0-9a-z]+", "_", class_name.lower()).strip("_")


class ClassifyScenes:
    name = "classify_scenes"
    default_model = "scene_labels_s1s2_fixture.onnx"
    params = {
        "input": RASTER_PARAMS["input"],
        "output": (PATH, True),
        "probabilities": (PATH, False),
        "model": (PATH, False),
        "bands": RASTER_PARAMS["bands"],
        "extent": (EXTENT, False),
        "device": (str, False),
        "threshold": (float, False),
        "min_valid": (float, False),
        "strict": (bool, False),
    }

    def model_path(self, params: dict) -> str:
        return params.get("model") or str(MODELS_DIR / self.default_model)

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        started = time.perf_counter()
        model = Model(self.model_path(params), params.get("device", "auto"))
        contract = model.contract
        if contract.task != "scene_labels":
            raise ModelContractError(f"model {contract.name} is a {contract.task!r} model; "
                                     "classify_scenes needs a 'scene_labels' model")
        threshold = float(params.get("threshold", 0.5))
        min_valid = float(params.get("min_valid", 0.9))
        if not (0 < threshold < 1 and 0 < min_valid <= 1):
            raise EngineError("threshold must be in (0, 1) and min_valid in (0, 1]")
        if params.get("probabilities"):
            check_output_path(params["probabilities"], *as_list(params["input"]))
        names = contract.outputs.names
        fields = [Field("patch_row", int), Field("patch_col", int), Field("status", str),
                  Field("valid_fraction", float), Field("labels", str), Field("top_label", str),
                  Field("top_probability", float), Field("uncertainty", float), Field("unlike_training", float),
                  *(Field(probability_field(n), float) for n in names)]
        distribution = InputDistribution(contract.input_statistics) if contract.input_statistics else None
        patch = contract.tile_size
        counts = {"classified": 0, "nodata": 0}
        with open_input(params["input"], contract, params.get("bands"), params.get("extent"), resample=True,
                        strict=params.get("strict", False)) as grid, \
                ExitStack() as outputs:
            rows = range(0, grid.height, patch)
            cols = list(range(0, grid.width, patch))
            layer = outputs.enter_context(atomic_geopackage(
                params["output"], "scene_labels", fields, grid.crs.to_wkt(), grid.crs.to_epsg(),
                f"{contract.name}: multi-labels per {patch} px patch"))
            raster = None
            if params.get("probabilities"):
                patch_grid = OutputGrid(grid.crs, grid.transform * grid.transform.scale(patch, patch),
                                        len(cols), len(rows))
                spec = OutputSpec(params["probabilities"], len(names), "float32", PROBABILITY_NODATA,
                                  band_names=tuple(names), tags={"model": contract.name})
                raster = outputs.enter_context(atomic_outputs(patch_grid, [spec]))[0]
            for patch_row, row in enumerate(rows):
                row_probabilities = np.full((len(names), 1, len(cols)), PROBABILITY_NODATA, np.float32)
                for start in range(0, len(cols), contract.batch_size):
                    if cancelled():
                        raise Cancelled("cancelled by the user; no output was written")
                    batch_cols = cols[start:start + contract.batch_size]
                    tiles, valids = grid.read_tiles(contract, row, batch_cols, patch, patch)
                    probabilities = model.run(tiles).reshape(len(batch_cols), len(names))
                    unlike = [None] * len(batch_cols)
                    if distribution is not None:  # the share of each patch's pixels unlike the training inputs
                        raw = tiles * np.reshape(contract.std, (1, -1, 1, 1)) + np.reshape(contract.mean, (1, -1, 1, 1))
                        unlike = [float(np.mean(distribution.relative_distances(values, valid)[valid] > 1))
                                  if valid.any() else None for values, valid in zip(raw, valids)]
                    for offset, (col, valid, probs) in enumerate(zip(batch_cols, valids, probabilities)):
                        fraction = float(valid.sum()) / valid.size  # parts beyond the area count as missing
                        x0, y0 = grid.transform * (col, row)
                        x1, y1 = grid.transform * (col + patch, row + patch)
                        ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
                        record = {"patch_row": patch_row, "patch_col": start + offset,
                                  "valid_fraction": round(fraction, 4)}
                        if fraction < min_valid:
                            counts["nodata"] += 1
                            layer.add(ring, {**record, "status": "nodata"})
                            continue
                        counts["classified"] += 1
                        order = np.argsort(-probs)
                        layer.add(ring, {
                            **record, "status": "classified",
                            "labels": "; ".join(names[i] for i in order if probs[i] >= threshold),
                            "top_label": names[order[0]], "top_probability": float(probs[order[0]]),
                            "uncertainty": round(float(class_uncertainty(probs[:, None], "sigmoid")[0][0]), 4),
                            "unlike_training": None if unlike[offset] is None else round(unlike[offset], 4),
                            **{probability_field(n): float(p) for n, p in zip(names, probs)},
                        })
                        row_probabilities[:, 0, start + offset] = probs
                    done = patch_row * len(cols) + start + len(batch_cols)
                    progress(done / (len(rows) * len(cols)), f"{done}/{len(rows) * len(cols)} patches")
                if raster is not None:
                    raster.write(row_probabilities, window=((patch_row, patch_row + 1), (0, len(cols))))
            warnings = list(grid.warnings)
        if distribution is not None and distribution.warning(contract.name):
            warnings.append(distribution.warning(contract.name))
        if counts["classified"] == 0:
            warnings.append("no patch had enough valid pixels to be classified: every patch is marked nodata")
        return {
            "outputs": {"output": params["output"], "probabilities": params.get("probabilities")},
            "device": model.provider,
            "tiles": counts["classified"] + counts["nodata"],
            "patches": counts,
            "seconds": round(time.perf_counter() - started, 3),
            "model": contract.name,
            "kind": "scene_labels",
            "names": list(names),
            "colors": list(contract.outputs.colors),
            "threshold": threshold,
            "out_of_distribution": distribution.summary() if distribution else None,
            "warnings": warnings,
        }
