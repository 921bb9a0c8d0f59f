"""Search text: rank the indexed tiles by their similarity to a sentence ("flooded fields near a
river"), through a text encoder in the index's embedding space (CLIP-style retrieval, Radford et
al., ICML 2021; the shipped pair: models_onnx/search_text_minilm.md and search_image_rgb.md).
"""
from __future__ import annotations

import time

from engine.embedding_index import load_store
from engine.pipeline import IsCancelled, Progress
from engine.tasks.parameters import PATH
from engine.tasks.search_results import SEARCH_PARAMS, image_entries, run_search, text_query


class SearchText:
    name = "search_text"
    params = {**SEARCH_PARAMS, "query": (str, True), "text_model": (PATH, False)}

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        started = time.perf_counter()
        store = load_store(params["index"])
        query, text_model = text_query(params, store, params["query"])
        result = run_search(params, store, query, params["query"], image_entries(store))
        return {**result, "text_model": text_model.contract.name, "device": text_model.provider, "seconds": round(time.perf_counter() - started, 3)}
