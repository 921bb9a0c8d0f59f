"""Text search in the engine: index build and cache, exact and inverted-file ranking, outputs, errors.

Real GeoTIFFs (the Landsat 7 sample scene and layers cut from it), the shipped encoders, real
onnxruntime. The truth for the ranking checks is measured from the scene's own bands (water by
MNDWI, vegetation by NDVI) or constructed (a layer whose tiles are copies of another's).
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from engine import embedding_index
from engine.embedding_index import EmbeddingIndex, Entry, load_store
from engine.errors import Cancelled, EngineError, ModelContractError
from engine.tasks import run_task
from engine.runtime import MODELS_DIR

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_data" / "olinda_landsat7.tif"
TILE, GSD = 32, 30.0


def run(task, cancelled=None, **params):
    return run_task(task, params, lambda fraction, message: None, cancelled or (lambda: False))


def write_layer(path: Path, data: np.ndarray, origin=(290000.0, 9120000.0), crs="EPSG:31985") -> str:
    """uint8 [6, h, w] at the models' 30 m, bands described as the sample's."""
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=6,
                       dtype="uint8", crs=crs, transform=from_origin(*origin, GSD, GSD)) as raster:
        raster.write(data)
        for band, name in enumerate(("blue", "green", "red", "nir", "swir1", "swir2"), start=1):
            raster.set_band_description(band, name)
    return str(path)


@pytest.fixture(scope="module")
def tiles_of_sample():
    """The sample's first 320 x 320 px as a 10 x 10 grid of 32 px tiles [100, 6, 32, 32]."""
    with rasterio.open(SAMPLE) as raster:
        data = raster.read(window=((0, 320), (0, 320)))
    return data.reshape(6, 10, TILE, 10, TILE).transpose(1, 3, 0, 2, 4).reshape(100, 6, TILE, TILE)


def mosaic(tiles: np.ndarray, order) -> np.ndarray:
    grid = tiles[np.asarray(order)].reshape(10, 10, 6, TILE, TILE)
    return grid.transpose(2, 0, 3, 1, 4).reshape(6, 10 * TILE, 10 * TILE)


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("search") / "index"
    result = run("build_search_index", input=str(SAMPLE), index=str(folder), device="cpu")
    return folder, result


def tile_shares(folder: Path) -> dict[int, tuple[float, float]]:
    """Per indexed tile of the sample: (water share by MNDWI > 0, vegetation share by NDVI > 0.15,
    the thresholds the training captions used for this scene), measured on the tile's own footprint
    in the original raster."""
    store = load_store(folder)
    entry = store.manifest.entries[0]
    with rasterio.open(SAMPLE) as raster:
        blue, green, red, nir, swir1, _ = raster.read().astype(np.float64)
        inverse = ~raster.transform
    mndwi = (green - swir1) / np.maximum(green + swir1, 1)
    ndvi = (nir - red) / np.maximum(nir + red, 1)
    shares = {}
    for tile in range(entry.tiles):
        ring = entry.tile_ring(*store.tiles(entry)[tile])
        (c0, r0), (c1, r1) = (inverse @ ring[0]), (inverse @ ring[2])
        window = (slice(max(0, round(r0)), round(r1)), slice(max(0, round(c0)), round(c1)))
        shares[tile] = (float((mndwi[window] > 0).mean()), float((ndvi[window] > 0.15).mean()))
    return shares


def test_index_of_the_sample_covers_it_with_model_tiles(sample_index):
    folder, result = sample_index
    assert result["built"] == 1 and result["reused"] == 0 and result["model"] == "search_image_rgb"
    store = load_store(folder)
    entry = store.manifest.entries[0]
    with rasterio.open(SAMPLE) as raster:
        bounds = raster.bounds
    # 349 x 352 px of 28.5 m = 331.6 x 334.4 px of 30 m (the whole pixels inside): 11 x 11 tiles,
    # the last ones ending at the edge
    assert entry.grid_size == [331, 334] and entry.tiles == 121 == result["tiles"]
    assert entry.tile_size == TILE and entry.stride == TILE and store.manifest.space == "all-MiniLM-L6-v2"
    rings = np.array([entry.tile_ring(*rc) for rc in store.tiles(entry)])
    assert rings[..., 0].min() == pytest.approx(bounds.left) and rings[..., 1].max() == pytest.approx(bounds.top)
    assert rings[..., 0].max() <= bounds.right + GSD and rings[..., 1].min() >= bounds.bottom - GSD
    vectors = store.entry_vectors(entry)
    assert vectors.shape == (121, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=2e-3)
    assert result["store"]["kind"] == "flat" and result["store"]["vectors"] == 121
    assert result["store"]["recall_at_10"] is None  # a flat store is the exact scan


def test_the_sea_and_forest_are_found_where_the_bands_say_they_are(sample_index):
    folder, _ = sample_index
    shares = tile_shares(folder)
    sea = run("search_text", index=str(folder), query="the sea", top_k=5, device="cpu")
    forest = run("search_text", index=str(folder), query="dense green vegetation, forest", top_k=5, device="cpu")
    water_share = np.mean([s[0] for s in shares.values()])
    assert water_share < 0.4  # the sea is a minority of the scene: ranking it first is not luck
    assert [shares[r["tile"]][0] for r in sea["results"]] == pytest.approx([1.0] * 5, abs=0.25)
    upper_quartile = np.quantile([s[1] for s in shares.values()], 0.75)
    assert all(shares[r["tile"]][1] >= upper_quartile for r in forest["results"])
    scores = [r["score"] for r in sea["results"]]
    assert scores == sorted(scores, reverse=True) and [r["rank"] for r in sea["results"]] == [1, 2, 3, 4, 5]


def test_reindexing_reuses_unchanged_layers_and_rebuilds_changed_ones(tiles_of_sample, tmp_path):
    first = write_layer(tmp_path / "a.tif", mosaic(tiles_of_sample, range(100)))
    second = write_layer(tmp_path / "b.tif", mosaic(tiles_of_sample, range(99, -1, -1)), origin=(300000.0, 9120000.0))
    folder = tmp_path / "index"
    built = run("build_search_index", input=[first, second], index=str(folder), device="cpu")
    assert [(layer["name"], layer["reused"], layer["tiles"]) for layer in built["layers"]] == [
        ("a", False, 100), ("b", False, 100)]
    again = run("build_search_index", input=[first, second], index=str(folder), device="cpu")
    assert [layer["reused"] for layer in again["layers"]] == [True, True] and again["embedded_tiles_per_s"] is None
    manifest = json.loads((folder / "manifest.json").read_text())
    old_id = manifest["entries"][1]["id"]

    write_layer(tmp_path / "b.tif", mosaic(tiles_of_sample, range(100)), origin=(300000.0, 9120000.0))
    os.utime(second, ns=(1, 1_700_000_000_000_000_000))  # a new content and a new time
    changed = run("build_search_index", input=[first, second], index=str(folder), device="cpu")
    assert [layer["reused"] for layer in changed["layers"]] == [True, False]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [e["name"] for e in manifest["entries"]] == ["a", "b"] and manifest["entries"][1]["id"] != old_id
    assert not list(folder.glob(f"{old_id}.*")), "the replaced entry's files are deleted"

    other_tiling = run("build_search_index", input=[first], index=str(folder), overlap=16, device="cpu")
    assert other_tiling["layers"][0]["reused"] is False and other_tiling["layers"][0]["tiles"] == 19 * 19


def test_a_copied_tile_is_found_first_in_another_layer_and_crs(tiles_of_sample, tmp_path):
    """Layer b holds the tiles of layer a shuffled, in another CRS (WGS 84 / UTM 25S): the tile
    most like a's tile t is b's copy of it, whatever t is, and its polygon is where the copy is."""
    order = np.random.default_rng(3).permutation(100)
    first = write_layer(tmp_path / "a.tif", mosaic(tiles_of_sample, range(100)))
    second = write_layer(tmp_path / "b.tif", mosaic(tiles_of_sample, order), origin=(310000.0, 9110000.0),
                         crs="EPSG:32725")
    folder = tmp_path / "index"
    run("build_search_index", input=[first, second], index=str(folder), device="cpu")
    for tile in (0, 37, 99):
        result = run("search_similar", index=str(folder), layer="a", tile=tile, top_k=3)
        best = result["results"][0]
        position = int(np.nonzero(order == tile)[0][0])
        assert (best["layer"], best["tile"]) == ("b", position) and best["score"] > 0.995
        assert (best["tile_row"], best["tile_col"]) == (TILE * (position // 10), TILE * (position % 10))
        left, top = 310000.0 + GSD * best["tile_col"], 9110000.0 - GSD * best["tile_row"]
        # WGS 84 and SIRGAS 2000 differ by well under a metre here
        assert best["bounds"] == pytest.approx([left, top - TILE * GSD, left + TILE * GSD, top], abs=2.0)
        assert all((r["layer"], r["tile"]) != ("a", tile) for r in result["results"])
    by_point = run("search_similar", index=str(folder), layer="a", point=[290000.0 + 40 * GSD, 9120000.0 - 70 * GSD])
    assert by_point["query_tile"] == {"layer": "a", "tile": 2 * 10 + 1}


def test_search_outputs_a_geopackage_and_a_heatmap(sample_index, tmp_path):
    folder, _ = sample_index
    output, heatmap = tmp_path / "hits.gpkg", tmp_path / "heat.tif"
    result = run("search_text", index=str(folder), query="a city", top_k=7, output=str(output),
                 heatmap=str(heatmap), device="cpu")
    with sqlite3.connect(output) as db:
        rows = db.execute("SELECT rank, score, layer, tile, query FROM search_results ORDER BY rank").fetchall()
        srs = db.execute("SELECT organization_coordsys_id FROM gpkg_spatial_ref_sys s JOIN gpkg_geometry_columns g "
                         "ON s.srs_id = g.srs_id").fetchone()
    assert [r[0] for r in rows] == list(range(1, 8)) and srs == (31985,)
    assert [r[1] for r in rows] == pytest.approx([r["score"] for r in result["results"]], abs=1e-5)
    assert {r[2] for r in rows} == {"olinda_landsat7"} and {r[4] for r in rows} == {"a city"}
    store = load_store(folder)
    entry = store.manifest.entries[0]
    with rasterio.open(heatmap) as raster:
        values = raster.read(1)
        assert raster.crs.to_epsg() == 31985 and (raster.width, raster.height) == (11, 11)
        assert raster.transform.a == pytest.approx(TILE * GSD)
        assert raster.transform.c == pytest.approx(entry.transform[2])
    best = result["results"][0]
    assert values[-(-best["tile_row"] // TILE), -(-best["tile_col"] // TILE)] == pytest.approx(best["score"], abs=1e-3)
    assert values.max() == pytest.approx(best["score"], abs=1e-3) and (values > -2).sum() == 121


def clustered_index(folder: Path, tiles: int = 6000, layers: int = 2) -> tuple[np.ndarray, dict]:
    """An index of ``layers`` entries holding clustered unit vectors (like tile embeddings: many
    near-duplicates of a few kinds of land), committed through the index's own build. Returns the
    vectors [tiles, 384] at the float16 precision they are stored at, in store order, and the build's
    report of the store."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 384))
    vectors = centres[rng.integers(0, 40, tiles)] + 0.6 * rng.normal(size=(tiles, 384))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)
    index = EmbeddingIndex(folder)
    manifest = index.open_for("test-space", 384)
    for number, part in enumerate(np.split(vectors, layers)):
        entry = Entry(f"id{number}", f"layer{number}", "image", {"image": [f"{number}.tif"]}, "m.onnx", "m",
                      "EPSG:4326", [1.0, 0, 0, 0, -1.0, 0], 8, 8, [800, 800], len(part))
        rows, cols = np.divmod(np.arange(len(part)) * 8, 800)
        index.write_entry(entry, part, np.stack([rows * 8, cols], axis=1))
        manifest.entries.append(entry)
    report = index.save(manifest)
    return vectors.astype(np.float32), report


def store_rows(hits, per_layer: int) -> list[int]:
    return [per_layer * int(h.entry.name[-1]) + h.tile for h in hits]


def test_a_small_index_ranks_exactly_like_a_scan_of_every_vector(tmp_path):
    vectors, report = clustered_index(tmp_path / "index")
    store = load_store(tmp_path / "index")
    assert report["kind"] == "flat" and not store.approximate
    for query in vectors[[5, 2500, 4999]] + 0.3 * np.random.default_rng(1).normal(size=(3, 384)):
        query = (query / np.linalg.norm(query)).astype(np.float32)
        scores = vectors @ query
        truth = np.argsort(-scores, kind="stable")[:10]
        hits = store.search(query, 10, {"layer0", "layer1"})
        assert store_rows(hits, 3000) == list(truth)
        assert [h.score for h in hits] == pytest.approx(scores[truth], abs=1e-5)
    only_one = store.search(vectors[0], 5, {"layer1"})
    assert {h.entry.name for h in only_one} == {"layer1"}
    assert store_rows(only_one, 3000) == list(3000 + np.argsort(-(vectors[3000:] @ vectors[0]))[:5])


def test_an_ivf_index_reports_its_recall_and_finds_what_an_exact_scan_finds(tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_index, "IVF_MIN_TILES", 1000)
    vectors, report = clustered_index(tmp_path / "index")
    assert report["kind"] == "ivf-flat" and report["lists"] == round(np.sqrt(6000)) == 77
    assert report["probes"] == 8 and report["recall_queries"] == 100 and report["recall_at_10"] >= 0.9
    store = load_store(tmp_path / "index")
    names, rng, recalls = {"layer0", "layer1"}, np.random.default_rng(2), []
    for query in vectors[rng.choice(6000, 20, replace=False)] + 0.3 * rng.normal(size=(20, 384)):
        query = (query / np.linalg.norm(query)).astype(np.float32)
        truth = np.argsort(-(vectors @ query))[:10]
        assert store_rows(store.search(query, 10, names, exact=True), 3000) == list(truth)
        recalls.append(len(set(store_rows(store.search(query, 10, names), 3000)) & set(truth)) / 10)
        assert len(set(store_rows(store.search(query, 10, names, probes=77), 3000)) & set(truth)) == 10
    assert np.mean(recalls) >= 0.8
    # the reported recall is measured: with one list scanned per query it falls
    monkeypatch.setattr(embedding_index, "PROBE_SHARE", 1 / 77)
    assert clustered_index(tmp_path / "one_probe")[1]["recall_at_10"] < report["recall_at_10"] - 0.1


def add_layer(folder: Path, number: int, vectors: np.ndarray, replaces: int | None = None) -> dict:
    """Add (or, with ``replaces``, put in place of that layer) a layer of ``vectors`` to the index at
    ``folder`` through the index's own build; returns the build's report."""
    index = EmbeddingIndex(folder)
    manifest = index.open_for("test-space", 384)
    entry = Entry(f"id{number}", f"layer{number if replaces is None else replaces}", "image",
                  {"image": [f"{number}.tif"]}, "m.onnx", "m", "EPSG:4326", [1.0, 0, 0, 0, -1.0, 0], 8, 8,
                  [800, 800], len(vectors))
    rows, cols = np.divmod(np.arange(len(vectors)) * 8, 800)
    index.write_entry(entry, vectors.astype(np.float16), np.stack([rows * 8, cols], axis=1))
    if replaces is None:
        manifest.entries.append(entry)
    else:
        manifest.entries[replaces] = entry
    return index.save(manifest)


def test_adding_a_layer_keeps_the_trained_lists_and_replacing_one_trains_them_again(tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_index, "IVF_MIN_TILES", 1000)
    vectors, first = clustered_index(tmp_path / "index")
    assert first["lists"] == 77 and first["lists_kept"] is False
    rng = np.random.default_rng(5)
    more = vectors[rng.integers(0, 6000, 1500)] + 0.1 * rng.normal(size=(1500, 384))
    more = (more / np.linalg.norm(more, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)
    added = add_layer(tmp_path / "index", 2, more)
    # 77 lists kept for 7500 vectors (a new training would make round(sqrt(7500)) = 87)
    assert added["lists_kept"] is True and added["lists"] == 77 and added["vectors"] == 7500
    assert added["recall_at_10"] >= embedding_index.APPEND_MIN_RECALL
    store = load_store(tmp_path / "index")
    assert [e.name for e in store.manifest.entries] == ["layer0", "layer1", "layer2"]
    assert np.array_equal(store.embedding(store.manifest.entries[2], 7), more[7])
    assert np.array_equal(store.embedding(store.manifest.entries[1], 7), vectors[3007])
    everything = np.concatenate([vectors, more])
    query = more[11]
    hits = store.search(query, 10, {"layer0", "layer1", "layer2"}, exact=True)
    assert [3000 * int(h.entry.name[-1]) + h.tile for h in hits] == list(np.argsort(-(everything @ query))[:10])
    assert store.search(query, 1, {"layer2"})[0].tile == 11
    generations = sorted(p.name for p in (tmp_path / "index").glob("store-*.faiss"))
    assert len(generations) == 1  # the previous generation is deleted once the new one is committed
    # a replaced layer changes the rows of those after it: the lists are trained on every vector again
    replaced = add_layer(tmp_path / "index", 3, more[:500], replaces=0)
    assert replaced["lists_kept"] is False and replaced["lists"] == round(np.sqrt(3000 + 1500 + 500))
    # lists kept only while their recall holds up
    monkeypatch.setattr(embedding_index, "APPEND_MIN_RECALL", 1.01)
    retrained = add_layer(tmp_path / "index", 4, more[500:1000])
    assert retrained["lists_kept"] is False and retrained["lists"] == round(np.sqrt(5500))


def test_an_ivf_pq_index_reranks_its_candidates_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_index, "IVF_MIN_TILES", 1000)
    monkeypatch.setattr(embedding_index, "PQ_MIN_TILES", 4000)
    vectors, report = clustered_index(tmp_path / "index")
    assert report["kind"] == "ivf-pq" and report["recall_at_10"] >= 0.8
    files = sorted(p.name for p in (tmp_path / "index").iterdir())
    generation = json.loads((tmp_path / "index" / "manifest.json").read_text())["store"]
    assert files == ["id0.tiles.npy", "id1.tiles.npy", "manifest.json", f"store-{generation}.faiss",
                     f"store-{generation}.vectors.faiss"]
    # the vectors are kept once, at float16, in the re-rank file; the PQ store holds 96-byte codes
    pq_bytes, vector_bytes = ((tmp_path / "index" / f"store-{generation}{part}.faiss").stat().st_size
                              for part in ("", ".vectors"))
    assert 6000 * 384 * 2 <= vector_bytes < 6000 * 384 * 2 + 4096 and pq_bytes < vector_bytes / 4
    store = load_store(tmp_path / "index")
    query = vectors[7] + 0.2 * np.random.default_rng(3).normal(size=384)
    query = (query / np.linalg.norm(query)).astype(np.float32)
    hits = store.search(query, 10, {"layer0", "layer1"})
    rows = store_rows(hits, 3000)
    assert [h.score for h in hits] == pytest.approx(vectors[rows] @ query, abs=1e-5)  # exact scores
    assert store_rows(store.search(query, 10, {"layer0", "layer1"}, exact=True), 3000) == list(
        np.argsort(-(vectors @ query))[:10])
    assert np.array_equal(store.embedding(store.manifest.entries[1], 5), vectors[3005])


def test_each_vector_is_stored_once_and_an_unchanged_layer_is_read_back_from_the_store(tiles_of_sample, tmp_path):
    first = write_layer(tmp_path / "a.tif", mosaic(tiles_of_sample, range(100)))
    second = write_layer(tmp_path / "b.tif", mosaic(tiles_of_sample, range(99, -1, -1)), origin=(300000.0, 9120000.0))
    folder = tmp_path / "index"
    run("build_search_index", input=[first, second], index=str(folder), device="cpu")
    store = load_store(folder)
    kept = store.entry_vectors(store.manifest.entries[0])
    write_layer(tmp_path / "b.tif", mosaic(tiles_of_sample, np.roll(range(100), 5)), origin=(300000.0, 9120000.0))
    os.utime(second, ns=(1, 1_700_000_000_000_000_000))
    rebuilt = run("build_search_index", input=[first, second], index=str(folder), device="cpu")
    assert [layer["reused"] for layer in rebuilt["layers"]] == [True, False]
    manifest = json.loads((folder / "manifest.json").read_text())
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert sorted(sizes) == sorted(["manifest.json", f"store-{manifest['store']}.faiss",
                                    *(f"{e['id']}.tiles.npy" for e in manifest["entries"])])
    # 200 tiles of 384 float16 values once (76.8 kB), and 8 bytes of position per tile
    assert 200 * 384 * 2 <= sizes[f"store-{manifest['store']}.faiss"] < 200 * 384 * 2 + 4096
    assert all(size <= 100 * 8 + 128 for name, size in sizes.items() if name.endswith(".tiles.npy"))
    store = load_store(folder)
    assert np.array_equal(store.entry_vectors(store.manifest.entries[0]), kept)  # read back bit for bit


def write_format_2(folder: Path) -> None:
    """Turn an index into the layout of format 2 (before FAISS), as that version wrote it: each layer's
    float16 embeddings in <id>.embeddings.npy, a float32 numpy store with its rows and (no) lists."""
    store = load_store(folder)
    vectors = [store.entry_vectors(e) for e in store.manifest.entries]
    for entry, part in zip(store.manifest.entries, vectors):
        np.save(folder / f"{entry.id}.embeddings.npy", part.astype(np.float16))
    np.save(folder / "store-0123456789ab.npy", np.concatenate(vectors))
    np.save(folder / "store-0123456789ab.rows.npy", np.concatenate(
        [np.stack([np.full(len(v), k), np.arange(len(v))], axis=1) for k, v in enumerate(vectors)]))
    np.savez(folder / "store-0123456789ab.lists.npz", centroids=np.zeros((0, 384), np.float32),
             offsets=np.array([0, sum(map(len, vectors))]))
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / f"store-{manifest['store']}.faiss").unlink()
    (folder / "manifest.json").write_text(json.dumps({**manifest, "version": 2, "store": "0123456789ab"}))


def test_an_index_of_format_2_is_migrated_without_running_a_model(tiles_of_sample, tmp_path):
    layers = [write_layer(tmp_path / "a.tif", mosaic(tiles_of_sample, range(100))),
              write_layer(tmp_path / "b.tif", mosaic(tiles_of_sample, range(99, -1, -1)), origin=(300000.0, 9120000.0))]
    folder = tmp_path / "index"
    run("build_search_index", input=layers, index=str(folder), device="cpu")
    before = run("search_text", index=str(folder), query="the sea", top_k=5, device="cpu")
    assert before["warnings"] == []
    migrated_message = (rf"index {folder} was in format 2 \(the numpy store of earlier versions\): its 2 layer\(s\) "
                        r"were moved into a FAISS store \(format 3\) from their saved embeddings in .* s, without "
                        "running a model")

    write_format_2(folder)
    searched = run("search_text", index=str(folder), query="the sea", top_k=5, device="cpu")
    assert re.fullmatch(migrated_message, searched["warnings"][0]) and searched["results"] == before["results"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["version"] == 3 and sorted(p.name for p in folder.iterdir()) == sorted(
        ["manifest.json", f"store-{manifest['store']}.faiss", *(f"{e['id']}.tiles.npy" for e in manifest["entries"])])
    assert run("search_text", index=str(folder), query="the sea", top_k=5, device="cpu")["warnings"] == []

    write_format_2(folder)  # a build into an index of format 2 migrates it, and reuses its layers
    built = run("build_search_index", input=layers, index=str(folder), device="cpu")
    assert re.fullmatch(migrated_message, built["warnings"][0])
    assert [layer["reused"] for layer in built["layers"]] == [True, True]

    (folder / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    with pytest.raises(EngineError, match=r"index .* has format version 1; this toolbox reads version 3 \(and "
                                          r"migrates version 2\): build the index again into a new folder"):
        run("search_text", index=str(folder), query="the sea", device="cpu")


def test_cancelled_build_leaves_the_index_as_it_was(tiles_of_sample, tmp_path):
    first, second, third = (write_layer(tmp_path / f"{name}.tif", mosaic(tiles_of_sample, np.roll(range(100), shift)))
                            for name, shift in (("a", 0), ("b", 10), ("c", 20)))
    folder = tmp_path / "index"
    run("build_search_index", input=[first], index=str(folder), device="cpu")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls = iter(range(1000))  # one call per row of 10 tiles: b is embedded whole, c is cancelled
    with pytest.raises(Cancelled):
        run("build_search_index", input=[first, second, third], index=str(folder), device="cpu",
            cancelled=lambda: next(calls) >= 13)
    assert next(calls) == 14
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_bad_requests_name_the_problem_and_the_fix(sample_index, tmp_path):
    folder, _ = sample_index
    with pytest.raises(EngineError, match="not a search index .* build one first"):
        run("search_text", index=str(tmp_path / "missing"), query="the sea")
    with pytest.raises(EngineError, match="query is empty"):
        run("search_text", index=str(folder), query="   ")
    with pytest.raises(EngineError, match="top_k must be at least 1"):
        run("search_text", index=str(folder), query="the sea", top_k=0)
    with pytest.raises(ModelContractError, match="'image_embedding' model; this needs a 'text_embedding'"):
        run("search_text", index=str(folder), query="the sea", text_model=str(MODELS_DIR / "search_image_rgb.onnx"))
    with pytest.raises(ModelContractError, match="needs a 'image_embedding' model"):
        run("build_search_index", input=str(SAMPLE), index=str(tmp_path / "i"),
            model=str(MODELS_DIR / "bathymetry_s2_sim.onnx"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(EngineError, match="not empty and holds no search index"):
        run("build_search_index", input=str(SAMPLE), index=str(tmp_path / "full"))
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    with pytest.raises(EngineError, match="no layer named 'nope'; it has: olinda_landsat7"):
        run("search_similar", index=str(folder), layer="nope", tile=1)
    with pytest.raises(EngineError, match="either tile .* or point"):
        run("search_similar", index=str(folder), layer="olinda_landsat7")
    with pytest.raises(EngineError, match="no indexed tile of 'olinda_landsat7' holds the point"):
        run("search_similar", index=str(folder), layer="olinda_landsat7", point=[0.0, 0.0])
    with pytest.raises(EngineError, match="takes tiles of exactly 32 px; leave tile_size empty"):
        run("search_changes", before=str(SAMPLE), after=str(SAMPLE), index=str(tmp_path / "k"), query="new water",
            fusion="tff", tile_size=48)
    with pytest.raises(EngineError, match="one distinct name per layer"):
        run("build_search_index", input=[str(SAMPLE), str(SAMPLE)], index=str(tmp_path / "j"))
    assert not any((tmp_path / name).exists() for name in ("i", "j", "k"))


def test_multispectral_and_rgb_layers_share_one_index_and_one_query(sample_index, tmp_path):
    """The 6-band student (search_image_ms) embeds into the RGB encoder's space: one index holds
    both, and one sentence ranks the tiles of both by what the bands say they hold."""
    shares = tile_shares(sample_index[0])
    folder = tmp_path / "index"
    run("build_search_index", input=str(SAMPLE), names=["rgb"], index=str(folder), device="cpu")
    multispectral = run("build_search_index", input=str(SAMPLE), names=["multispectral"], index=str(folder),
                        model=str(MODELS_DIR / "search_image_ms.onnx"), device="cpu")
    assert multispectral["model"] == "search_image_ms" and multispectral["index_tiles"] == 242
    store = load_store(folder)
    assert [(e.name, e.model_name) for e in store.manifest.entries] == [
        ("rgb", "search_image_rgb"), ("multispectral", "search_image_ms")]
    sea = run("search_text", index=str(folder), query="the sea", top_k=20, device="cpu")
    layers = {r["layer"] for r in sea["results"]}
    assert layers == {"rgb", "multispectral"}
    assert all(shares[r["tile"]][0] > 0.5 for r in sea["results"])  # same tiling: tile numbers agree


@pytest.mark.parametrize("fusion, at_least", [("gff", 6), ("tff", 3)])
def test_change_search_finds_the_tiles_where_the_city_replaced_vegetation(tiles_of_sample, tmp_path, fusion, at_least):
    """Two dates of 100 tiles: in the second, the 8 most vegetated tiles were replaced by tiles of
    the city; "the city expanded" must rank those pairs first (by chance, 8 % of a top 8 would be).
    The pair's embeddings are kept in the index: a second query embeds nothing."""
    folder = tmp_path / "index"
    run("build_search_index", input=write_layer(tmp_path / "scan.tif", mosaic(tiles_of_sample, range(100))),
        index=str(folder), device="cpu")
    shares = tile_shares(folder)
    vegetated = sorted(range(100), key=lambda t: -shares[t][1])[:8]
    city = [t for t in range(100) if shares[t][0] < 0.1 and shares[t][1] < 0.1]
    order = np.arange(100)
    order[vegetated] = np.random.default_rng(0).choice(city, len(vegetated))
    before = write_layer(tmp_path / "before.tif", mosaic(tiles_of_sample, range(100)))
    after = write_layer(tmp_path / "after.tif", mosaic(tiles_of_sample, order))
    first = run("search_changes", before=before, after=after, index=str(folder), query="the city expanded",
                top_k=8, fusion=fusion, device="cpu")
    assert first["pair"] == {"name": "before -> after", "tiles": 100, "reused": False}
    assert first["model"] == f"search_change_rgb_{fusion}"
    assert len(set(r["tile"] for r in first["results"]) & set(vegetated)) >= at_least
    again = run("search_changes", before=before, after=after, index=str(folder), query="new buildings were built",
                top_k=8, fusion=fusion, device="cpu")
    assert again["pair"]["reused"] is True and {r["layer"] for r in again["results"]} == {"before -> after"}
    texts = run("search_text", index=str(folder), query="the city expanded", top_k=5)
    assert {r["layer"] for r in texts["results"]} == {"scan"}  # change pairs are not searched as layers


def test_an_rgba_rendering_is_read_by_its_colours_and_describe_knows_search_models(tiles_of_sample, tmp_path):
    """What QGIS writes when it renders a web or virtual layer: four unnamed bytes, RGBA."""
    rgb = mosaic(tiles_of_sample, range(100))[[2, 1, 0]]
    path = tmp_path / "render.tif"
    with rasterio.open(path, "w", driver="GTiff", width=320, height=320, count=4, dtype="uint8", crs="EPSG:31985",
                       transform=from_origin(290000.0, 9120000.0, GSD, GSD), photometric="RGB", alpha="YES") as raster:
        raster.write(np.concatenate([rgb, np.full((1, 320, 320), 255, np.uint8)]))
    rendered = run("build_search_index", input=str(path), index=str(tmp_path / "a"), device="cpu")
    named = run("build_search_index", input=write_layer(tmp_path / "named.tif", mosaic(tiles_of_sample, range(100))),
                index=str(tmp_path / "b"), device="cpu")
    first, second = (load_store(tmp_path / folder).entry_vectors(load_store(tmp_path / folder).manifest.entries[0])
                     for folder in ("a", "b"))
    assert rendered["tiles"] == named["tiles"] == 100 and np.abs(first - second).max() < 1e-3
    for task, model in (("build_search_index", "search_image_rgb"), ("search_changes", "search_change_rgb_gff")):
        described = run_task("describe_model", {"task": task}, lambda fraction, message: None, lambda: False)
        assert described["contract"]["name"] == model


def test_sentinel1_band_files_are_searched_by_text(sample_index, tmp_path):
    """VV and VH as two single-band dB files (named as Sentinel-1 products are), simulated from the
    sample's land cover with the simulator the S1 student was trained with, at a seed it never saw."""
    from training.simulation.caption_scenes import REAL_SCENES
    from training.simulation.land_cover import LAND_COVER, classify
    from training.simulation.sar_backscatter import simulate_backscatter

    with rasterio.open(SAMPLE) as raster:
        profile, classes = raster.profile, classify(raster.read(), REAL_SCENES["olinda"].context)
    sigma0 = simulate_backscatter(classes, LAND_COVER, seed=12345)
    paths = []
    for band, values in zip(("VV", "VH"), sigma0):
        path = tmp_path / f"S1A_IW_GRDH_olinda_{band.lower()}.tif"
        with rasterio.open(path, "w", **{**profile, "count": 1, "dtype": "float32", "nodata": None}) as raster:
            raster.write(values[None])
        paths.append(str(path))
    folder = tmp_path / "index"
    built = run("build_search_index", input=[paths], names=["olinda S1"], index=str(folder),
                model=str(MODELS_DIR / "search_image_s1_sim.onnx"), device="cpu")
    assert built["tiles"] == 121
    shares = tile_shares(sample_index[0])
    sea = run("search_text", index=str(folder), query="the sea", top_k=5, device="cpu")
    assert all(shares[r["tile"]][0] > 0.5 for r in sea["results"])  # backscatter tells water, not sea from lake
