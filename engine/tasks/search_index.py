"""Build search index: cut raster layers into tiles, embed each with an image encoder, and store the
embeddings (engine.embedding_index) so that text, image and change queries rank them later.

Tiles have the model's tile size at its ground sampling distance (layers are resampled to it), with
the contract's overlap unless ``tile_size`` / ``overlap`` are given; the last row and column of tiles
end at the layer's edge. Tiles with less than ``min_valid`` valid pixels are not indexed. A layer
indexed before with the same files, model and tiling is reused without running the model.

CLIP-style retrieval: Radford et al., ICML 2021; the shipped encoders and their spaces are
described in models_onnx/search_*.md.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.contract import ModelContract
from engine.embedding_index import EmbeddingIndex, Entry, Manifest, cache_key
from engine.errors import Cancelled, EngineError, ModelContractError
from engine.pipeline import IsCancelled, Progress, tile_origins
from engine.raster_io import OutputGrid, open_input
from engine.runtime import MODELS_DIR, Model, shared_model
from engine.tasks.parameters import EXTENT, PATH, ListOf
from engine.tasks.raster_task import RASTER_PARAMS, as_list

DEFAULT_IMAGE_MODEL = "search_image_rgb.onnx"
DEFAULT_MIN_VALID = 0.5
EMBED_BATCH = 64


def embedding_model(path: str, device: str, task: str) -> Model:
    """An encoder whose contract has ``task`` and an embedding space, or a clear refusal."""
    model = shared_model(path, device, spin=task != "text_embedding")  # text: one run per query
    contract = model.contract
    if contract.task != task or "space" not in contract.provenance:
        raise ModelContractError(
            f"model {contract.name} is a {contract.task!r} model; this needs a {task!r} model with an "
            "embedding space in its provenance (e.g. models_onnx/search_image_rgb.onnx)"
        )
    return model


def tiling_of(contract: ModelContract, params: dict) -> dict:
    """Tile size, stride and what else decides which pixels each tile holds (part of the cache key)."""
    tile = int(params.get("tile_size") or contract.tile_size)
    overlap = int(params["overlap"]) if params.get("overlap") is not None else contract.overlap
    min_valid = float(params.get("min_valid", DEFAULT_MIN_VALID))
    if tile < 8 or not 0 <= overlap < tile:
        raise EngineError(f"tile_size must be at least 8 px and overlap in [0, tile_size); got {tile} and {overlap}")
    if not 0 < min_valid <= 1:
        raise EngineError(f"min_valid must be in (0, 1]; got {min_valid}")
    return {"tile_size": tile, "stride": tile - overlap, "min_valid": min_valid, "gsd_m": contract.gsd_m,
            "bands": params.get("bands"), "extent": params.get("extent")}


def index_entry(index: EmbeddingIndex, manifest: Manifest, name: str, kind: str, inputs: dict[str, list[str]],
                model: Model, params: dict, progress: Progress, cancelled: IsCancelled
                ) -> tuple[Entry, bool, list[str]]:
    """The entry for ``inputs`` (role -> files): reused when its cache key is in the index, else
    embedded and written. Returns (entry, reused, warnings)."""
    contract = model.contract
    tiling = tiling_of(contract, params)
    key = cache_key(name, inputs, model.path, tiling)
    for entry in manifest.entries:
        if entry.id == key and index.has_entry(key):
            return entry, True, []
    tile, stride = tiling["tile_size"], tiling["stride"]
    fixed = {size for i in model.session.get_inputs() for size in i.shape[2:] if isinstance(size, int)}
    if fixed and fixed != {tile}:
        raise EngineError(f"model {contract.name} takes tiles of exactly {min(fixed)} px; leave tile_size empty "
                          f"(or give {min(fixed)}) instead of {tile}")
    tile_contract = replace(contract, tile_size=tile)
    with ExitStack() as stack:
        roles = list(inputs)
        first = stack.enter_context(open_input(inputs[roles[0]], contract, params.get("bands"), params.get("extent"),
                                               resample=bool(contract.gsd_m), strict=params.get("strict", False)))
        target = OutputGrid(first.crs, first.transform, first.width, first.height)
        grids = [first] + [stack.enter_context(open_input(inputs[r], contract, params.get("bands"), target=target,
                                                              strict=params.get("strict", False)))
                           for r in roles[1:]]
        feeds = roles if len(roles) > 1 else model.input_names[:1]  # change models take 'before', 'after'
        rows, cols = tile_origins(first.height, tile, tile - stride), tile_origins(first.width, tile, tile - stride)
        embeddings, positions = [], []
        for number, row in enumerate(rows):
            for start in range(0, len(cols), EMBED_BATCH):
                if cancelled():
                    raise Cancelled("cancelled by the user; the index was left as it was")
                batch_cols = cols[start:start + EMBED_BATCH]
                reads = [grid.read_tiles(tile_contract, row, batch_cols, tile, tile) for grid in grids]
                valid = np.all([np.stack(valids) for _, valids in reads], axis=0).mean(axis=(1, 2))
                keep = valid >= tiling["min_valid"]
                if keep.any():
                    output = model.run({feed: tiles[keep] for feed, (tiles, _) in zip(feeds, reads)})
                    embeddings.append(output.reshape(int(keep.sum()), -1))
                    positions += [(row, col) for col, kept in zip(batch_cols, keep) if kept]
            progress((number + 1) / len(rows), f"{name}: {number + 1}/{len(rows)} rows of tiles")
        warnings = [f"{name}: {w}" for grid in grids for w in grid.warnings]
    if not positions:
        raise EngineError(f"{name} has no tile with at least {tiling['min_valid']:.0%} valid pixels at "
                          f"{tile} px of {contract.gsd_m} m: nothing to index (is the layer all nodata, or "
                          "smaller than one tile?)")
    vectors = np.concatenate(embeddings).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    entry = Entry(key, name, kind, inputs, model.path, contract.name, first.crs.to_wkt(), list(first.transform)[:6],
                  tile, stride, [first.width, first.height], len(positions))
    index.write_entry(entry, vectors, np.array(positions))
    return entry, False, warnings


def put_entry(manifest: Manifest, entry: Entry) -> None:
    """Add ``entry``, replacing the entry of the same name (a rebuilt layer)."""
    names = [e.name for e in manifest.entries]
    if entry.name in names:
        manifest.entries[names.index(entry.name)] = entry
    else:
        manifest.entries.append(entry)


def layer_name(paths: list[str]) -> str:
    return "+".join(Path(p).stem for p in paths)


class BuildSearchIndex:
    name = "build_search_index"
    params = {
        "input": ((PATH, ListOf((PATH, ListOf(PATH)))), True),  # layers: each a raster path, or files of one area
        "index": (PATH, True),  # folder
        "names": (ListOf(str), False),  # one display name per layer (default: file names)
        "model": (PATH, False),
        "bands": RASTER_PARAMS["bands"],
        "extent": (EXTENT, False),
        "tile_size": (int, False),
        "overlap": (int, False),
        "min_valid": (float, False),
        "device": (str, False),
        "strict": (bool, False),
    }

    def model_path(self, params: dict) -> str:
        return params.get("model") or str(MODELS_DIR / DEFAULT_IMAGE_MODEL)

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        started = time.perf_counter()
        layers = [as_list(layer) for layer in as_list(params["input"])]
        if not layers or not all(layers):
            raise EngineError("input has an empty layer: give each layer a raster path, or a list of paths")
        names = params.get("names") or [layer_name(paths) for paths in layers]
        if len(names) != len(layers) or len(set(names)) != len(names):
            raise EngineError(f"give one distinct name per layer: {len(layers)} layer(s), names {names}")
        model = embedding_model(self.model_path(params), params.get("device", "auto"), "image_embedding")
        contract = model.contract
        index = EmbeddingIndex(params["index"])
        manifest = index.open_for(contract.provenance["space"], int(contract.provenance["dim"]))
        report, warnings = [], [index.migration] if index.migration else []
        try:
            for number, (name, paths) in enumerate(zip(names, layers)):
                def layer_progress(fraction: float, message: str, number=number) -> None:
                    progress((number + fraction) / len(layers), message)

                layer_started = time.perf_counter()
                entry, reused, layer_warnings = index_entry(index, manifest, name, "image", {"image": paths}, model,
                                                            params, layer_progress, cancelled)
                put_entry(manifest, entry)
                warnings += layer_warnings
                report.append({"name": name, "tiles": entry.tiles, "reused": reused, "id": entry.id,
                               "seconds": round(time.perf_counter() - layer_started, 3)})
            store = index.save(manifest)
        except BaseException:
            index.discard([r["id"] for r in report if not r["reused"]])
            raise
        built = [r for r in report if not r["reused"]]
        return {
            "outputs": {"index": str(index.folder)},
            "index": str(index.folder),
            "layers": report,
            "tiles": sum(r["tiles"] for r in report),
            "built": len(built),
            "reused": len(report) - len(built),
            "embedded_tiles_per_s": round(sum(r["tiles"] for r in built)
                                          / max(1e-9, sum(r["seconds"] for r in built)), 1) if built else None,
            "index_tiles": sum(e.tiles for e in manifest.entries),
            "store": store,  # FAISS store kind, lists, default probes, recall@10 against the exact scan, seconds
            "device": model.provider,
            "model": contract.name,
            "space": contract.provenance["space"],
            "seconds": round(time.perf_counter() - started, 3),
            "warnings": warnings,
        }
