"""Text search: query latency vs index size, index build throughput vs the bare encoder, index size.

1. Query latency over 10^4, 10^5 and 10^6 stored embeddings (goal: < 50 ms at 10^6 on CPU). The
   embeddings are the shipped RGB encoder's embeddings of the sample scene's tiles, each repeated
   with small noise (so the store has the clustered structure of real tile embeddings); the queries
   are real sentences through the shipped text encoder. Reported: the median time of the whole
   ``search_text`` request (tokenise, text encoder, ranking) the first time a query reads its
   lists (pages of the memory-mapped store still to be mapped) and again (a worker serving the
   dock), of the ranking alone, exact scan vs inverted file, and the inverted file's recall@10
   against the exact scan.
2. Index build throughput: tiles/s of ``build_search_index`` on a mosaic of the sample scene vs
   ``session.run`` alone on the same number of tiles in the same batches.
3. Index size on disk per tile.
Usage: python bench/search.py [--sizes 10000 100000 1000000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.embedding_index import EmbeddingIndex, Entry, load_store  # noqa: E402
from engine.runtime import MODELS_DIR, Model  # noqa: E402
from engine.tasks import run_task  # noqa: E402
from engine.tasks.search_index import DEFAULT_IMAGE_MODEL, EMBED_BATCH  # noqa: E402

SAMPLE = REPO / "sample_data" / "olinda_landsat7.tif"
QUERIES = ("the sea", "a city", "dense green vegetation, forest", "dry desert land", "bright white salt flats",
           "lake water next to arid land", "a city with some vegetation", "flooded fields near a river")


def quiet(fraction: float, message: str) -> None:
    pass


def run(task: str, **params) -> dict:
    return run_task(task, params, quiet, lambda: False)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def synthetic_index(folder: Path, seeds: np.ndarray, size: int) -> None:
    """``size`` unit vectors: the seed embeddings repeated with noise, in one entry."""
    rng = np.random.default_rng(size)
    index = EmbeddingIndex(folder)
    manifest = index.open_for("all-MiniLM-L6-v2", seeds.shape[1])
    vectors = np.empty((size, seeds.shape[1]), np.float16)
    for start in range(0, size, 100_000):
        stop = min(size, start + 100_000)
        noise = 0.05 * rng.standard_normal((stop - start, seeds.shape[1]))
        block = seeds[rng.integers(0, len(seeds), stop - start)] + noise
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    side = int(np.ceil(np.sqrt(size)))
    tiles = np.stack(np.divmod(np.arange(size), side), axis=1) * 32
    entry = Entry("synthetic", "synthetic", "image", {"image": ["synthetic.tif"]}, "search_image_rgb.onnx",
                  "search_image_rgb", "EPSG:32633", [30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0], 32, 32,
                  [32 * side, 32 * side], size)
    index.write_entry(entry, vectors, tiles)
    manifest.entries.append(entry)
    index.save(manifest)


def latency(folder: Path, seeds: np.ndarray, size: int) -> dict:
    started = time.perf_counter()
    synthetic_index(folder, seeds, size)
    build_s = time.perf_counter() - started
    store = load_store(folder)
    names = {"synthetic"}
    cold, requests, approximate, exact, recalls = [], [], [], [], []
    for query in QUERIES:  # first touch of the memory-mapped lists each query reads
        begun = time.perf_counter()
        run("search_text", index=str(folder), query=query, top_k=10, device="cpu")
        cold.append(time.perf_counter() - begun)
    for query in QUERIES:
        begun = time.perf_counter()
        result = run("search_text", index=str(folder), query=query, top_k=10, device="cpu")
        requests.append(time.perf_counter() - begun)
        vector = np.asarray(store.embedding(store.manifest.entries[0], result["results"][0]["tile"]))
        begun = time.perf_counter()
        found = store.search(vector, 10, names)
        approximate.append(time.perf_counter() - begun)
        begun = time.perf_counter()
        truth = store.search(vector, 10, names, exact=True)
        exact.append(time.perf_counter() - begun)
        recalls.append(len({h.tile for h in found} & {h.tile for h in truth}) / 10)
    return {"size": size, "store_build_s": build_s, "lists": len(store.centroids),
            "cold_ms": 1000 * statistics.median(cold[1:]),  # the first also loads the text encoder
            "request_ms": 1000 * statistics.median(requests),
            "ranking_ms": 1000 * statistics.median(approximate), "exact_ms": 1000 * statistics.median(exact),
            "recall10": float(np.mean(recalls)), "bytes_per_tile": folder_bytes(folder) / size}


def build_throughput(work: Path, repeat: int) -> dict:
    """A mosaic of ``repeat`` x ``repeat`` copies of the sample, indexed from scratch, vs bare runs."""
    with rasterio.open(SAMPLE) as raster:
        profile, data = raster.profile, raster.read()
    mosaic = np.tile(data, (1, repeat, repeat))
    profile.update(width=mosaic.shape[2], height=mosaic.shape[1])
    path = work / "mosaic.tif"
    with rasterio.open(path, "w", **profile) as raster:
        raster.write(mosaic)
        raster.descriptions = tuple(("blue", "green", "red", "nir", "swir1", "swir2"))
    result = run("build_search_index", input=str(path), index=str(work / "mosaic_index"), device="cpu")
    tiles = result["tiles"]
    model = Model(MODELS_DIR / DEFAULT_IMAGE_MODEL, "cpu")
    batch = np.random.default_rng(0).standard_normal((EMBED_BATCH, 3, 32, 32)).astype(np.float32)
    model.run(batch)
    begun = time.perf_counter()
    for start in range(0, tiles, EMBED_BATCH):
        model.run(batch[:min(EMBED_BATCH, tiles - start)])
    bare = tiles / (time.perf_counter() - begun)
    again = run("build_search_index", input=str(path), index=str(work / "mosaic_index"), device="cpu")
    return {"tiles": tiles, "engine_tiles_per_s": result["embedded_tiles_per_s"], "bare_tiles_per_s": bare,
            "reindex_s": again["seconds"], "bytes_per_tile": folder_bytes(work / "mosaic_index") / tiles}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--mosaic", type=int, default=4, help="copies of the sample per side for the build figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        build = build_throughput(work, args.mosaic)
        print(f"index build: {build['tiles']} tiles, engine {build['engine_tiles_per_s']:.0f} tiles/s vs bare encoder "
              f"{build['bare_tiles_per_s']:.0f} tiles/s "
              f"(ratio {build['bare_tiles_per_s'] / build['engine_tiles_per_s']:.2f}); "
              f"re-index of the unchanged layer {build['reindex_s'] * 1000:.0f} ms; "
              f"{build['bytes_per_tile']:.0f} bytes per tile on disk")
        run("build_search_index", input=str(SAMPLE), index=str(work / "sample_index"), device="cpu")
        sample = load_store(work / "sample_index")
        seeds = np.asarray(sample.index.entry_embeddings(sample.manifest.entries[0]), np.float32)
        print("stored embeddings | lists | search_text request ms, first / again | ranking ms (IVF) | exact scan ms | "
              "recall@10 | bytes/tile | store build s")
        for size in args.sizes:
            row = latency(work / f"index_{size}", seeds, size)
            print(f"{row['size']:>9} | {row['lists']:>5} | {row['cold_ms']:6.1f} / {row['request_ms']:5.1f} | "
                  f"{row['ranking_ms']:8.2f} | "
                  f"{row['exact_ms']:8.2f} | {row['recall10']:.2f} | {row['bytes_per_tile']:.0f} | "
                  f"{row['store_build_s']:.1f}")


if __name__ == "__main__":
    main()
