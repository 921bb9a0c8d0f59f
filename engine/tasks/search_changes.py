"""Search changes: given two rasters of one area at two dates, rank tile pairs by how well a change
sentence ("new buildings on former farmland") describes what happened between them.

Text-to-image-time-series retrieval (text-ITSR; Hoxha et al., TGRS 2025, arXiv:2501.19043;
papers.md section 10): a bitemporal encoder embeds each (before, after) tile pair into the text
space, with either fusion of the paper: global feature fusion (``gff``: the two dates' pooled
features combined) or transformer feature fusion (``tff``: a transformer over both dates' feature
tokens). On the held-out fixture pairs both rank about equally (mAP 18.8 vs 19.6,
models_onnx/search_change_rgb.md); on constructed two-date layers they differ: where whole tiles
were replaced, global fusion finds them far better (tests/test_search_engine.py), where part of a
tile changed, transformer fusion does (tests/test_plugin_search.py). Global fusion, the smaller
model, is the default; with it a pair that did not change at all always gets the same embedding,
so unchanged tiles tie.

The pair's embeddings are stored in the index like a layer's (same cache rules), so a second query
on the same pair runs no image model. The after raster is read on the before raster's grid
(reprojected when needed).
"""
from __future__ import annotations

import time

from engine.embedding_index import EmbeddingIndex, load_store
from engine.errors import EngineError
from engine.pipeline import IsCancelled, Progress
from engine.runtime import MODELS_DIR
from engine.tasks.parameters import PATH
from engine.tasks.raster_task import RASTER_PARAMS, as_list
from engine.tasks.search_index import BuildSearchIndex, embedding_model, index_entry, layer_name, put_entry
from engine.tasks.search_results import SEARCH_PARAMS, run_search, text_query

FUSION_MODELS = {"gff": "search_change_rgb_gff.onnx", "tff": "search_change_rgb_tff.onnx"}
TILING_PARAMS = ("bands", "extent", "tile_size", "overlap", "min_valid", "strict")


class SearchChanges:
    name = "search_changes"
    params = {**SEARCH_PARAMS, "query": (str, True), "text_model": (PATH, False),
              "before": RASTER_PARAMS["input"], "after": RASTER_PARAMS["input"], "name": (str, False),
              "fusion": (str, False), "model": (PATH, False),
              **{key: BuildSearchIndex.params[key] for key in TILING_PARAMS}}

    def model_path(self, params: dict) -> str:
        fusion = params.get("fusion", "gff")
        if fusion not in FUSION_MODELS:
            raise EngineError(f"fusion must be one of {sorted(FUSION_MODELS)} (global or transformer feature "
                              f"fusion); got {fusion!r}")
        return params.get("model") or str(MODELS_DIR / FUSION_MODELS[fusion])

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        started = time.perf_counter()
        model = embedding_model(self.model_path(params), params.get("device", "auto"), "change_embedding")
        before, after = as_list(params["before"]), as_list(params["after"])
        name = params.get("name") or f"{layer_name(before)} -> {layer_name(after)}"
        index = EmbeddingIndex(params["index"])
        manifest = index.open_for(model.contract.provenance["space"], int(model.contract.provenance["dim"]))
        entry, reused, warnings = index_entry(index, manifest, name, "change", {"before": before, "after": after},
                                              model, params, progress, cancelled)
        if not reused:
            put_entry(manifest, entry)
            index.save(manifest)
        store = load_store(index.folder)
        query, text_model = text_query(params, store, params["query"])
        result = run_search(params, store, query, params["query"], [store.manifest.entry(name)])
        return {**result, "pair": {"name": name, "tiles": entry.tiles, "reused": reused},
                "model": model.contract.name, "text_model": text_model.contract.name, "device": model.provider,
                "warnings": ([index.migration] if index.migration else []) + warnings + result["warnings"],
                "seconds": round(time.perf_counter() - started, 3)}
