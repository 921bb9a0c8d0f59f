"""Search similar tiles ("find tiles like this one"): rank the indexed tiles by their similarity to
one indexed tile, named by layer and tile number or by a point inside it. The query tile itself is
left out of the results.
"""
from __future__ import annotations

import time

from pyproj import CRS, Transformer

from engine.embedding_index import Entry, LoadedStore, load_store
from engine.errors import EngineError
from engine.pipeline import IsCancelled, Progress
from engine.tasks.parameters import ListOf
from engine.tasks.search_results import SEARCH_PARAMS, image_entries, run_search


def tile_at(store: LoadedStore, entry: Entry, point: list[float], point_crs: str | None) -> int:
    """The indexed tile of ``entry`` whose footprint holds ``point`` (nearest centre if several)."""
    x, y = point
    if point_crs:
        transformer = Transformer.from_crs(CRS.from_user_input(point_crs), CRS.from_wkt(entry.crs_wkt), always_xy=True)
        x, y = transformer.transform(x, y)
    a, b, c, d, e, f = entry.transform
    determinant = a * e - b * d
    col = (e * (x - c) - b * (y - f)) / determinant
    row = (a * (y - f) - d * (x - c)) / determinant
    tiles = store.tiles(entry)
    inside = ((tiles[:, 0] <= row) & (row < tiles[:, 0] + entry.tile_size)
              & (tiles[:, 1] <= col) & (col < tiles[:, 1] + entry.tile_size))
    if not inside.any():
        raise EngineError(f"no indexed tile of {entry.name!r} holds the point ({point[0]}, {point[1]}); pick a point "
                          "inside the indexed layer (tiles with too little valid data are not indexed)")
    half = entry.tile_size / 2
    distance = (tiles[:, 0] + half - row) ** 2 + (tiles[:, 1] + half - col) ** 2
    return int(min(inside.nonzero()[0], key=lambda k: distance[k]))


class SearchSimilar:
    name = "search_similar"
    params = {**SEARCH_PARAMS, "layer": (str, True), "tile": (int, False), "point": (ListOf(float, 2), False),
              "point_crs": (str, False)}

    def run(self, params: dict, progress: Progress, cancelled: IsCancelled) -> dict:
        started = time.perf_counter()
        store = load_store(params["index"])
        entry = store.manifest.entry(params["layer"])
        if entry.kind != "image":
            raise EngineError(f"{entry.name!r} is a change pair; similar-tile search takes a layer indexed on its own")
        if (params.get("tile") is None) == (params.get("point") is None):
            raise EngineError("give either tile (a tile number from a search result) or point [x, y] (inside the tile)")
        tile = params["tile"] if params.get("tile") is not None else tile_at(
            store, entry, params["point"], params.get("point_crs"))
        label = f"tiles like {entry.name} tile {tile}"
        query = store.embedding(entry, tile)
        result = run_search(params, store, query, label, image_entries(store), (entry.name, tile))
        return {**result, "query_tile": {"layer": entry.name, "tile": tile},
                "seconds": round(time.perf_counter() - started, 3)}
