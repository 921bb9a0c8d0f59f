"""What every search shares: embed the query sentence, rank the index, and hand the hits back as a
JSON list, a GeoPackage of tile polygons (rank, score, layer, tile) and optionally a similarity
heatmap raster.

Queries are tokenised without torch: text encoders carry a HuggingFace ``tokenizers`` JSON in their
ONNX metadata (key ``rsai_tokenizer``; training/text_search/tokenization.py makes it).
"""
from __future__ import annotations

import functools
import math
import time

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer
from tokenizers import Tokenizer

from engine.contract import TOKENIZER_KEY
from engine.embedding_index import Entry, Hit, LoadedStore
from engine.errors import EngineError
from engine.raster_io import OutputGrid, OutputSpec, atomic_outputs, check_output_path
from engine.runtime import MODELS_DIR, Model
from engine.tasks.parameters import PATH
from engine.tasks.search_index import embedding_model
from engine.vector_io import Field, atomic_geopackage

DEFAULT_TEXT_MODEL = "search_text_minilm.onnx"
DEFAULT_TOP_K = 20
HEATMAP_NODATA = -2.0  # cosine scores lie in [-1, 1]
SEARCH_PARAMS = {
    "index": (PATH, True),
    "output": (PATH, False),  # GeoPackage of the result tiles
    "heatmap": (PATH, False),  # GeoTIFF: every tile's score on the best result's layer
    "top_k": (int, False),
    "probes": (int, False),  # inverted lists scanned per query (large indexes; default: 1/10 of them)
    "exact": (bool, False),  # scan every tile instead
    "device": (str, False),
}
HIT_FIELDS = [Field("rank", int), Field("score", float), Field("layer", str), Field("tile", int),
              Field("tile_row", int), Field("tile_col", int), Field("query", str)]


def embed_text(model: Model, sentences: list[str]) -> np.ndarray:
    """Unit text embeddings [N, dim] from a ``text_embedding`` model and the tokenizer it carries."""
    tokenizer_json = model.session.get_modelmeta().custom_metadata_map.get(TOKENIZER_KEY)
    if not tokenizer_json:
        raise EngineError(f"text model {model.path} carries no tokenizer (metadata {TOKENIZER_KEY!r}); export it "
                          "with python -m training export-text-encoder or convert-clip")
    encodings = tokenizer_from(tokenizer_json).encode_batch(list(sentences))
    feeds = {"input_ids": np.array([e.ids for e in encodings], np.int64),
             "attention_mask": np.array([e.attention_mask for e in encodings], np.int64)}
    vectors = model.run(feeds).reshape(len(sentences), -1).astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=4)
def tokenizer_from(tokenizer_json: str) -> Tokenizer:
    """Parsing a tokenizer takes longer than a query; a worker keeps the few it has seen."""
    return Tokenizer.from_str(tokenizer_json)


def text_query(params: dict, store: LoadedStore, sentence: str) -> tuple[np.ndarray, Model]:
    """The query sentence's embedding and the text model that made it (the shipped one by default),
    checked to be in the index's space."""
    if not sentence.strip():
        raise EngineError("the query is empty: type what to look for, e.g. 'flooded fields near a river'")
    model = embedding_model(params.get("text_model") or str(MODELS_DIR / DEFAULT_TEXT_MODEL),
                            params.get("device", "auto"), "text_embedding")
    space = model.contract.provenance["space"]
    if space != store.manifest.space:
        raise EngineError(f"text model {model.contract.name} embeds into space {space!r} but index "
                          f"{store.index.folder} holds space {store.manifest.space!r}; use the text model of "
                          "the image encoder the index was built with")
    return embed_text(model, [sentence])[0], model


def check_search_outputs(params: dict) -> int:
    """Refuse bad output paths and parameters before any work; return top_k."""
    top_k = int(params.get("top_k", DEFAULT_TOP_K))
    if top_k < 1:
        raise EngineError(f"top_k must be at least 1; got {top_k}")
    if params.get("probes") is not None and params["probes"] < 1:
        raise EngineError(f"probes must be at least 1; got {params['probes']}")
    if params.get("heatmap"):
        check_output_path(params["heatmap"])
    return top_k


def image_entries(store: LoadedStore) -> list[Entry]:
    entries = [e for e in store.manifest.entries if e.kind == "image"]
    if not entries:
        raise EngineError(f"index {store.index.folder} holds no layers indexed on their own (only change pairs); "
                          "build layers into it first")
    return entries


def run_search(params: dict, store: LoadedStore, query: np.ndarray, label: str, entries: list[Entry],
               exclude: tuple[str, int] | None = None) -> dict:
    """Rank the tiles of ``entries``, write the optional outputs, and report the hits (bounds in the
    CRS of the first of ``entries``)."""
    top_k = check_search_outputs(params)
    started = time.perf_counter()
    names = {e.name for e in entries}
    hits = store.search(query, top_k, names, params.get("probes"), params.get("exact", False), exclude)
    query_ms = (time.perf_counter() - started) * 1000
    migration = store.take_migration()
    crs_wkt = entries[0].crs_wkt
    records = [hit_record(rank, hit, crs_wkt) for rank, hit in enumerate(hits, start=1)]
    if params.get("output"):
        write_hits(params["output"], records, crs_wkt, label)
    heatmap_layer = None
    if params.get("heatmap") and hits:
        heatmap_layer = hits[0].entry.name
        write_heatmap(params["heatmap"], store, hits[0].entry, query)
    return {
        "outputs": {"output": params.get("output"), "heatmap": params.get("heatmap")},
        "results": records,
        "crs": crs_wkt,
        "query": label,
        "searched_tiles": sum(e.tiles for e in entries),
        "query_ms": round(query_ms, 2),
        "approximate": not store.scans_exactly(names, params.get("exact", False)),
        "heatmap_layer": heatmap_layer,
        "warnings": ([migration] if migration else [])
                    + ([] if hits else ["no tile to rank: the searched layers have no indexed tiles"]),
    }


def hit_record(rank: int, hit: Hit, crs_wkt: str) -> dict:
    ring = hit.entry.tile_ring(hit.row, hit.col)
    if hit.entry.crs_wkt != crs_wkt:
        ring = reproject_ring(ring, hit.entry.crs_wkt, crs_wkt)
    xs, ys = [x for x, _ in ring], [y for _, y in ring]
    return {"rank": rank, "score": round(hit.score, 5), "layer": hit.entry.name, "tile": hit.tile,
            "tile_row": hit.row, "tile_col": hit.col, "ring": [list(p) for p in ring],
            "bounds": [min(xs), min(ys), max(xs), max(ys)], "inputs": hit.entry.inputs}


def reproject_ring(ring: list[tuple[float, float]], source_wkt: str, target_wkt: str) -> list[tuple[float, float]]:
    transformer = Transformer.from_crs(CRS.from_wkt(source_wkt), CRS.from_wkt(target_wkt), always_xy=True)
    return [tuple(transformer.transform(x, y)) for x, y in ring]


def write_hits(path: str, records: list[dict], crs_wkt: str, label: str) -> None:
    crs = CRS.from_wkt(crs_wkt)
    with atomic_geopackage(path, "search_results", HIT_FIELDS, crs_wkt, crs.to_epsg(),
                           f"tiles ranked for: {label}") as layer:
        for record in records:
            layer.add([tuple(p) for p in record["ring"]], {**record, "query": label})


def write_heatmap(path: str, store: LoadedStore, entry: Entry, query: np.ndarray) -> None:
    """One cell per tile stride on ``entry``'s grid holding its tile's score: tile origins are
    multiples of the stride except the last row and column, which end at the layer's edge and take
    the next cell (cells without an indexed tile are nodata)."""
    scores = store.entry_vectors(entry) @ query
    tiles = store.tiles(entry)
    width, height = (math.ceil(size / entry.stride) for size in entry.grid_size)
    values = np.full((1, height, width), HEATMAP_NODATA, np.float32)
    cells = -(-tiles // entry.stride)  # ceil: a shifted last tile keeps a cell of its own
    np.maximum.at(values[0], (cells[:, 0], cells[:, 1]), scores)
    grid = OutputGrid(entry.crs_wkt, Affine(*entry.transform) @ Affine.scale(entry.stride), width, height)
    spec = OutputSpec(path, 1, "float32", HEATMAP_NODATA, band_names=("similarity",),
                      tags={"layer": entry.name, "model": entry.model_name})
    with atomic_outputs(grid, [spec]) as (dataset,):
        dataset.write(values)
