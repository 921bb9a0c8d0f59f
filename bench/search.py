"""Text search: query latency and recall@10 at 10^6 and 10^7 stored embeddings, FAISS against the previous
numpy store and the exact scan; store build time; index build throughput vs the bare encoder; bytes per tile.

1. Index build throughput: tiles/s of ``build_search_index`` on a mosaic of the sample scene vs
   ``session.run`` alone on the same number of tiles in the same batches.
2. At each size: ``size`` unit vectors of 384 values, the shipped RGB encoder's embeddings of the
   sample scene's tiles each repeated with noise (the clustered structure of real tile embeddings),
   committed through the engine's own build (``EmbeddingIndex.save``: the FAISS store the engine picks
   for that size). Queries are real sentences through the shipped text encoder; the truth is their
   exact top 10 by numpy over the stored float16 vectors. Reported: the store's build time and the
   recall@10 it reported (stored vectors as queries); the time to add a layer of 1 % more vectors
   (the trained lists kept); per probes setting, the median ranking time of one
   query and its recall@10 for the sentences; the exact scan (``exact=True``); the whole ``search_text``
   request (tokenise, text encoder, ranking, result) the first time and again; and the same for the
   previous store (the numpy inverted file this replaced, run from git history: commit
   ``PREVIOUS_STORE_COMMIT``) where it fits in memory.
Usage: python bench/search.py [--sizes 1000000 10000000] [--previous-up-to 1000000]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine import embedding_index  # noqa: E402
from engine.embedding_index import EmbeddingIndex, load_store  # noqa: E402
from engine.runtime import MODELS_DIR, Model  # noqa: E402
from engine.tasks import run_task  # noqa: E402
from engine.tasks.search_index import DEFAULT_IMAGE_MODEL, EMBED_BATCH  # noqa: E402
from engine.tasks.search_results import DEFAULT_TEXT_MODEL, embed_text  # noqa: E402

SAMPLE = REPO / "sample_data" / "olinda_landsat7.tif"
PREVIOUS_STORE_COMMIT = "b84b17320d395bfc96c87235e7d13dca3f2f8085"  # the last numpy store (INDEX_VERSION 2)
QUERIES = ("the sea", "a city", "dense green vegetation, forest", "dry desert land", "bright white salt flats",
           "lake water next to arid land", "a city with some vegetation", "flooded fields near a river",
           "open water", "a harbour on the coast", "farmland", "bare soil", "a beach", "mangroves along a river",
           "a town surrounded by fields", "grassland", "a river", "wetlands", "clouds over the land",
           "a road through the forest", "sand dunes", "an airport", "a dense urban centre", "a lagoon")
REPEATS = 3  # timed runs of every query, after one untimed run


def quiet(fraction: float, message: str) -> None:
    pass


def run(task: str, **params) -> dict:
    return run_task(task, params, quiet, lambda: False)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def median_ms(search, queries: np.ndarray, repeats: int = REPEATS) -> tuple[float, list]:
    """Median ms of ``search(query)`` over the queries (each run once untimed first) and the last results."""
    times, results = [], []
    for query in queries:
        search(query)
        for _ in range(repeats):
            begun = time.perf_counter()
            found = search(query)
            times.append(time.perf_counter() - begun)
        results.append(found)
    return 1000 * statistics.median(times), results


def recall(found: list[set[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(rows & set(best)) / 10 for rows, best in zip(found, truth)]))


def synthetic_vectors(path: Path, seeds: np.ndarray, size: int) -> np.ndarray:
    """``size`` unit vectors, float16, memory-mapped: the seed embeddings repeated with noise."""
    rng = np.random.default_rng(size)
    vectors = np.lib.format.open_memmap(path, "w+", np.float16, (size, seeds.shape[1]))
    for start in range(0, size, 100_000):
        stop = min(size, start + 100_000)
        block = seeds[rng.integers(0, len(seeds), stop - start)] + np.float32(0.05) * rng.standard_normal(
            (stop - start, seeds.shape[1]), np.float32)
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    vectors.flush()
    return vectors


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The truth: every query's 10 best rows by numpy over all vectors [queries, 10]."""
    best_scores = np.full((len(queries), 10), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 10), np.int64)
    for start in range(0, len(vectors), 1_000_000):
        scores = np.asarray(vectors[start:start + 1_000_000], np.float32) @ queries.T
        top = np.argpartition(-scores, 10, axis=0)[:10].T
        candidates = np.concatenate([best_scores, np.take_along_axis(scores.T, top, axis=1)], axis=1)
        rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-candidates, axis=1, kind="stable")[:, :10]
        best_scores, best_rows = np.take_along_axis(candidates, keep, 1), np.take_along_axis(rows, keep, 1)
    return best_rows


def one_entry(module, size: int) -> tuple:
    """The entry of ``size`` synthetic tiles (in ``module``: this engine's or the previous store's) and its tiles."""
    side = int(np.ceil(np.sqrt(size)))
    tiles = np.stack(np.divmod(np.arange(size), side), axis=1) * 32
    entry = module.Entry("synthetic", "synthetic", "image", {"image": ["synthetic.tif"]}, "search_image_rgb.onnx",
                         "search_image_rgb", "EPSG:32633", [30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0], 32, 32,
                         [32 * side, 32 * side], size)
    return entry, tiles


def previous_store_module() -> types.ModuleType:
    """engine/embedding_index.py as it was before FAISS, from git history, as a module of its own."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{PREVIOUS_STORE_COMMIT}:engine/embedding_index.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("previous_embedding_index")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, "previous_embedding_index.py", "exec"), module.__dict__)
    return module


def faiss_figures(folder: Path, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    index = EmbeddingIndex(folder)
    manifest = index.open_for("all-MiniLM-L6-v2", vectors.shape[1])
    entry, tiles = one_entry(embedding_index, len(vectors))
    index.write_entry(entry, vectors, tiles)
    manifest.entries.append(entry)
    begun = time.perf_counter()
    report = index.save(manifest)
    figures = {"build_s": time.perf_counter() - begun, "report": report, "bytes_per_tile": folder_bytes(folder)
               / len(vectors)}
    cold = []
    for query in QUERIES:  # the first request of each sentence: pages of the memory-mapped store still to be read
        begun = time.perf_counter()
        run("search_text", index=str(folder), query=query, top_k=10, device="cpu")
        cold.append(time.perf_counter() - begun)
    request_ms, _ = median_ms(lambda q: run("search_text", index=str(folder), query=q, top_k=10, device="cpu"),
                              QUERIES, repeats=1)
    figures["cold_ms"], figures["request_ms"] = 1000 * statistics.median(cold[1:]), request_ms
    store = load_store(folder)
    names = {"synthetic"}
    lists = report["lists"]
    sweep = sorted({max(1, lists // 32), report["probes"], lists // 8}) if lists else [None]
    figures["probes"] = []
    for probes in sweep:
        ms, hits = median_ms(lambda q, probes=probes: store.search(q, 10, names, probes), queries)
        figures["probes"].append((probes, ms, recall([{h.tile for h in found} for found in hits], truth)))
    ms, hits = median_ms(lambda q: store.search(q, 10, names, exact=True), queries[:4], repeats=1)
    figures["exact_ms"], figures["exact_recall"] = ms, recall([{h.tile for h in found} for found in hits], truth[:4])
    added, added_tiles = one_entry(embedding_index, max(1, len(vectors) // 100))
    added = replace(added, id="added", name="added")
    index.write_entry(added, vectors[:added.tiles], added_tiles)
    manifest.entries.append(added)
    begun = time.perf_counter()
    figures["added"] = {**index.save(manifest), "seconds": time.perf_counter() - begun, "tiles": added.tiles}
    return figures


def previous_figures(module, folder: Path, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> dict:
    index = module.EmbeddingIndex(folder)
    manifest = module.Manifest("all-MiniLM-L6-v2", vectors.shape[1])
    entry, tiles = one_entry(module, len(vectors))
    index.write_entry(entry, vectors, tiles)
    manifest.entries.append(entry)
    begun = time.perf_counter()
    index.save(manifest)
    figures = {"build_s": time.perf_counter() - begun, "bytes_per_tile": folder_bytes(folder) / len(vectors)}
    store = module.LoadedStore(index)
    figures["probes"] = []
    for probes in (module.DEFAULT_PROBES, 2 * module.DEFAULT_PROBES, 3 * module.DEFAULT_PROBES):
        ms, hits = median_ms(lambda q, probes=probes: store.search(q, 10, {"synthetic"}, probes), queries)
        figures["probes"].append((probes, ms, recall([{h.tile for h in found} for found in hits], truth)))
    figures["exact_ms"], _ = median_ms(lambda q: store.search(q, 10, {"synthetic"}, exact=True), queries[:4],
                                       repeats=1)
    return figures


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
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--previous-up-to", type=int, default=1_000_000,
                        help="largest size the previous store is measured at: it holds two float32 copies of "
                             "the vectors in RAM while it builds (30 GB at 10^7)")
    parser.add_argument("--mosaic", type=int, default=4, help="copies of the sample per side for the build figure")
    parser.add_argument("--work", help="folder for the indexes (default: a temporary folder; 10^7 needs 25 GB)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        work = Path(work)
        build = build_throughput(work, args.mosaic)
        print(f"index build: {build['tiles']} tiles, engine {build['engine_tiles_per_s']:.0f} tiles/s vs bare encoder "
              f"{build['bare_tiles_per_s']:.0f} tiles/s "
              f"(ratio {build['bare_tiles_per_s'] / build['engine_tiles_per_s']:.2f}); "
              f"re-index of the unchanged layer {build['reindex_s'] * 1000:.0f} ms; "
              f"{build['bytes_per_tile']:.0f} bytes per tile on disk", flush=True)
        run("build_search_index", input=str(SAMPLE), index=str(work / "sample_index"), device="cpu")
        sample = load_store(work / "sample_index")
        seeds = sample.entry_vectors(sample.manifest.entries[0])
        queries = embed_text(Model(MODELS_DIR / DEFAULT_TEXT_MODEL, "cpu"), list(QUERIES))
        previous = previous_store_module()
        for size in args.sizes:
            begun = time.perf_counter()
            vectors = synthetic_vectors(work / f"vectors_{size}.npy", seeds, size)
            truth = exact_top10(vectors, queries)
            print(f"\n{size} vectors x {vectors.shape[1]} (made and exact truth in {time.perf_counter() - begun:.0f} s; "
                  f"{len(QUERIES)} sentences, medians of {REPEATS} runs each)", flush=True)
            faiss = faiss_figures(work / f"faiss_{size}", vectors, queries, truth)
            report = faiss["report"]
            print(f"FAISS {report['kind']}: {report['lists']} lists, built in {faiss['build_s']:.1f} s, reported "
                  f"recall@10 {report['recall_at_10']} (stored vectors as queries, {report['probes']} probes), "
                  f"{faiss['bytes_per_tile']:.0f} bytes/tile")
            for probes, ms, found in faiss["probes"]:
                default = " (default)" if probes == report["probes"] else ""
                print(f"  probes {probes}{default}: {ms:.2f} ms/query, recall@10 {found:.3f}")
            print(f"  exact scan: {faiss['exact_ms']:.1f} ms/query (recall@10 {faiss['exact_recall']:.2f})")
            print(f"  search_text request: {faiss['cold_ms']:.1f} ms first, {faiss['request_ms']:.1f} ms again",
                  flush=True)
            added = faiss["added"]
            print(f"  adding a layer of {added['tiles']} vectors: {added['seconds']:.1f} s (lists kept: "
                  f"{added['lists_kept']}, {added['lists']} lists, recall@10 {added['recall_at_10']}) vs "
                  f"{faiss['build_s']:.1f} s for the whole store", flush=True)
            if size <= args.previous_up_to:
                old = previous_figures(previous, work / f"previous_{size}", vectors, queries, truth)
                print(f"previous numpy store: {previous.list_count(size)} "
                      f"lists, built in {old['build_s']:.1f} s, {old['bytes_per_tile']:.0f} bytes/tile")
                for probes, ms, found in old["probes"]:
                    default = " (default)" if probes == previous.DEFAULT_PROBES else ""
                    print(f"  probes {probes}{default}: {ms:.2f} ms/query, recall@10 {found:.3f}")
                print(f"  exact scan: {old['exact_ms']:.1f} ms/query", flush=True)
            else:
                print(f"previous numpy store: not measured above {args.previous_up_to} vectors (its build holds two "
                      f"float32 copies of them in RAM: {2 * size * vectors.shape[1] * 4 / 2**30:.0f} GiB)")
            for path in work.glob(f"*_{size}*"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()


if __name__ == "__main__":
    main()
