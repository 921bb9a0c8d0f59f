"""Batch over files on a real local Ray (engine/tasks/batch_over_files.py): outputs equal to single runs,
resume, failures, a killed worker, STAC input; the engine core imports neither Ray nor QGIS."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import rasterio
import ray

from engine.batch_manifest import MANIFEST_NAME
from engine.errors import EngineError
from engine.output_files import PARTIAL_MARKER
from engine.tasks import run_task
from raster_fixtures import contract, scene, write_model, write_raster

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRIDS = [("EPSG:32636", (580000.0, 3870000.0)), ("EPSG:32633", (440000.0, 5090000.0)),
         ("EPSG:3035", (4321000.0, 3210000.0))]
SCENES = 20


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for the module (2 CPUs, no dashboard, the smallest object store): batch runs use it."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20,
             log_to_driver=False, logging_level="warning")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def depth_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp("model") / "depth.onnx", contract(), [[0.5, -2.0, 1.0]], [3.0])


def write_scenes(folder, count=SCENES, size=(48, 56)):
    """``count`` real GeoTIFFs in two sub-folders, on three CRSs, with nodata."""
    paths = []
    for number in range(count):
        crs, origin = GRIDS[number % len(GRIDS)]
        data = scene(*size, seed=number)
        data[:, :3, :5] = 0
        subfolder = folder / ("north" if number % 2 else "south")
        subfolder.mkdir(parents=True, exist_ok=True)
        paths.append(write_raster(subfolder / f"scene_{number:02d}.tif", data, crs=crs, nodata=0,
                                  origin=(origin[0] + 1000 * number, origin[1]), descriptions=("B02", "B03", "B04")))
    return paths


def batch(inputs, output_dir, model, cancelled=lambda: False, **params):
    request = {"task": "estimate_bathymetry", "inputs": str(inputs), "output_dir": str(output_dir),
               "params": {"model": model}, **params}
    return run_task("batch_over_files", request, lambda fraction, message: None, cancelled)


def single_run(path, output, model):
    run_task("estimate_bathymetry", {"input": path, "output": str(output), "model": model},
             lambda fraction, message: None, lambda: False)
    return output


def assert_same_raster(path, reference):
    with rasterio.open(path) as got, rasterio.open(reference) as expected:
        assert got.crs == expected.crs and got.transform == expected.transform
        assert (got.width, got.height, got.dtypes, got.nodatavals) == \
               (expected.width, expected.height, expected.dtypes, expected.nodatavals)
        assert got.read().tobytes() == expected.read().tobytes()


def manifest_lines(output_dir):
    return [json.loads(line) for line in (output_dir / MANIFEST_NAME).read_text().splitlines()]


def partials(folder):
    return [p for p in folder.rglob("*") if PARTIAL_MARKER in p.name]


@pytest.fixture(scope="module")
def first_run(local_ray, depth_model, tmp_path_factory):
    """20 scenes and a corrupt one through one batch run."""
    root = tmp_path_factory.mktemp("batch")
    paths = write_scenes(root / "scenes")
    (root / "scenes" / "north" / "scene_99.tif").write_bytes(b"II*\x00 not a whole GeoTIFF")
    result = batch(root / "scenes" / "**" / "*.tif", root / "out", depth_model)
    return root, paths, result


def test_outputs_equal_the_single_process_engine(first_run, depth_model, tmp_path):
    root, paths, result = first_run
    assert (result["scenes"], result["done"], result["failed"], result["skipped"]) == (SCENES + 1, SCENES, 1, 0)
    assert result["devices"] == ["CPUExecutionProvider"] and result["workers"] >= 1
    for path in paths:
        relative = os.path.relpath(path, root / "scenes")
        assert_same_raster(root / "out" / relative, single_run(path, tmp_path / os.path.basename(path), depth_model))
    assert not partials(root / "out")


def test_manifest_records_every_scene_and_the_corrupt_one(first_run):
    root, paths, result = first_run
    records = {r["scene"]: r for r in manifest_lines(root / "out")}
    assert len(records) == SCENES + 1
    broken = records.pop("north/scene_99")
    assert broken["status"] == "failed" and "scene_99.tif" in broken["error"] and "damaged" in broken["error"]
    assert result["failed_scenes"] == [{"scene": "north/scene_99", "error": broken["error"]}]
    for path in paths:
        record = records[os.path.relpath(path, root / "scenes")[:-4]]
        assert record["status"] == "done" and record["input"] == path and record["error"] is None
        assert record["output"] == str(root / "out" / os.path.relpath(path, root / "scenes"))
        assert record["device"] == "CPUExecutionProvider" and record["seconds"] > 0


def test_a_second_run_does_nothing_and_a_third_retries_only_the_failed_scene(first_run, depth_model):
    root, paths, _ = first_run
    stamps = {p: p.stat().st_mtime_ns for p in (root / "out").rglob("*.tif")}
    lines = len(manifest_lines(root / "out"))
    again = batch(root / "scenes" / "**" / "*.tif", root / "out", depth_model, skip_failed=True)
    assert (again["done"], again["failed"], again["skipped"]) == (0, 0, SCENES + 1)
    assert [s["scene"] for s in again["failed_scenes"]] == ["north/scene_99"]  # reported, not run
    assert len(manifest_lines(root / "out")) == lines
    assert {p: p.stat().st_mtime_ns for p in (root / "out").rglob("*.tif")} == stamps
    retried = batch(root / "scenes" / "**" / "*.tif", root / "out", depth_model)
    assert (retried["done"], retried["failed"], retried["skipped"]) == (0, 1, SCENES)
    assert len(manifest_lines(root / "out")) == lines + 1


def test_a_changed_scene_runs_again(local_ray, depth_model, tmp_path):
    paths = write_scenes(tmp_path / "scenes", count=3)
    batch(tmp_path / "scenes", tmp_path / "out", depth_model)
    write_raster(paths[1], scene(48, 56, seed=7), descriptions=("B02", "B03", "B04"))
    again = batch(tmp_path / "scenes", tmp_path / "out", depth_model)
    assert (again["done"], again["skipped"]) == (1, 2)
    assert_same_raster(tmp_path / "out" / "north" / "scene_01.tif",
                       single_run(paths[1], tmp_path / "reference.tif", depth_model))


def running_scene_workers():
    """This test's Ray worker processes while they run a scene (Ray titles them after the function)."""
    return [p for p in psutil.Process().children(recursive=True)
            if p.is_running() and "outcome_of" in " ".join(p.cmdline())]


def test_a_killed_worker_is_retried_and_the_run_completes(local_ray, depth_model, tmp_path):
    paths = write_scenes(tmp_path / "scenes", count=8, size=(700, 700))
    outcome, killed = {}, []
    runner = threading.Thread(target=lambda: outcome.update(batch(tmp_path / "scenes", tmp_path / "out", depth_model)))
    runner.start()
    deadline = time.monotonic() + 120
    while not killed and runner.is_alive() and time.monotonic() < deadline:
        for process in running_scene_workers():
            process.send_signal(signal.SIGKILL)
            killed.append(process.pid)
            break
        time.sleep(0.01)
    runner.join(300)
    assert killed, "no worker was seen running a scene"
    assert (outcome["done"], outcome["failed"]) == (8, 0)
    records = manifest_lines(tmp_path / "out")
    assert sorted(r["scene"] for r in records) == sorted(os.path.relpath(p, tmp_path / "scenes")[:-4] for p in paths)
    assert all(r["status"] == "done" for r in records)
    assert not partials(tmp_path / "out")
    for path in paths[:2]:
        assert_same_raster(tmp_path / "out" / os.path.relpath(path, tmp_path / "scenes"),
                           single_run(path, tmp_path / "reference.tif", depth_model))


def test_cancel_stops_the_running_scenes_and_keeps_the_finished_ones(local_ray, depth_model, tmp_path):
    write_scenes(tmp_path / "scenes", count=12, size=(500, 500))
    manifest = tmp_path / "out" / MANIFEST_NAME
    result = batch(tmp_path / "scenes", tmp_path / "out", depth_model, max_in_flight=2,
                   cancelled=lambda: manifest.is_file() and len(manifest.read_text().splitlines()) >= 2)
    assert result["cancelled"] and 2 <= result["done"] < 12
    kept = {r["output"] for r in manifest_lines(tmp_path / "out")}
    written = {str(p) for p in (tmp_path / "out").rglob("*.tif")}
    assert kept <= written and len(written - kept) <= 2  # stopped as it finished: complete, written again next run
    for path in written:
        with rasterio.open(path) as output:
            output.read()
    assert not partials(tmp_path / "out")
    resumed = batch(tmp_path / "scenes", tmp_path / "out", depth_model)
    assert (resumed["done"], resumed["skipped"]) == (12 - result["done"], result["done"])


def test_stac_item_collection_with_asset_band_mapping(local_ray, depth_model, tmp_path):
    items, references = [], []
    for number in range(3):
        data = scene(40, 44, seed=number)
        stack = write_raster(tmp_path / f"stack_{number}.tif", data, descriptions=("B02", "B03", "B04"))
        references.append(single_run(stack, tmp_path / f"reference_{number}.tif", depth_model))
        assets = {}
        for key, band in (("red", 2), ("green", 1), ("blue", 0)):  # not the model's order, names without band tokens
            href = f"assets/item{number}_{key}.tif"
            (tmp_path / "assets").mkdir(exist_ok=True)
            write_raster(tmp_path / href, data[band:band + 1])
            assets[key] = {"href": href, "type": "image/tiff; application=geotiff", "eo:bands": [{"name": key}]}
        assets["thumbnail"] = {"href": "https://example.com/thumb.png"}
        items.append({"type": "Feature", "stac_version": "1.0.0", "id": f"S2_item_{number}", "assets": assets,
                      "geometry": None, "properties": {"datetime": "2024-05-0%dT10:00:00Z" % (number + 1)}})
    collection = tmp_path / "items.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    result = batch(collection, tmp_path / "out", depth_model, asset_bands="red=B04,green=B03,blue=B02")
    assert (result["done"], result["failed"]) == (3, 0)
    for number, reference in enumerate(references):
        assert_same_raster(tmp_path / "out" / f"S2_item_{number}.tif", reference)
    with pytest.raises(EngineError, match="asset 'red' has 1 bands, asset_bands gives 3"):
        batch(collection, tmp_path / "out2", depth_model, asset_bands="red=B04+B03+B02")
    with pytest.raises(EngineError, match="needs asset_bands"):
        batch(collection, tmp_path / "out2", depth_model)


def test_parameters_the_task_does_not_take_are_refused_before_ray_runs(depth_model, tmp_path):
    write_scenes(tmp_path / "scenes", count=2)
    with pytest.raises(EngineError, match="unknown parameter.*ratio"):
        run_task("batch_over_files", {"task": "estimate_bathymetry", "inputs": str(tmp_path / "scenes"),
                                      "output_dir": str(tmp_path / "out"), "params": {"ratio": 8}},
                 lambda fraction, message: None, lambda: False)
    with pytest.raises(EngineError, match="names no raster"):
        batch(tmp_path / "nothing_*.tif", tmp_path / "out", depth_model)
    (tmp_path / "a_file").write_text("")
    with pytest.raises(EngineError, match="is a file; give a folder"):
        batch(tmp_path / "scenes", tmp_path / "a_file", depth_model)


def test_a_scene_s_model_uses_its_ray_worker_s_cpus_not_every_core(local_ray, depth_model, monkeypatch):
    def session_threads(model: str) -> int:  # nested: Ray ships it by value (workers cannot import tests/)
        from engine.runtime import Model
        return Model(model, "cpu").session.get_session_options().intra_op_num_threads

    check = ray.remote(session_threads)
    assert ray.get(check.options(num_cpus=1).remote(depth_model)) == 1  # Ray sets OMP_NUM_THREADS to the CPUs
    assert ray.get(check.options(num_cpus=2).remote(depth_model)) == 2
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert session_threads(depth_model) == 0  # no budget given: onnxruntime's own choice


def test_gpus_no_node_has_are_refused(local_ray, depth_model, tmp_path):
    write_scenes(tmp_path / "scenes", count=1)
    with pytest.raises(EngineError, match="no node of the Ray cluster has 1 CPU and 1 GPU"):
        batch(tmp_path / "scenes", tmp_path / "out", depth_model, gpus_per_task=1)


def test_cli_batch_runs_a_local_ray_and_resumes(depth_model, tmp_path):
    write_scenes(tmp_path / "scenes", count=3)
    command = [sys.executable, "-m", "engine", "batch", "--task", "estimate_bathymetry", "--inputs",
               str(tmp_path / "scenes" / "*" / "*.tif"), "--output-dir", str(tmp_path / "out"), "--model", depth_model,
               "--workers", "1"]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["done"] == 3 and "scenes/s" in first.stderr
    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert json.loads(second.stdout)["skipped"] == 3


def test_sigterm_stops_the_cli_and_keeps_the_finished_scenes(depth_model, tmp_path):
    write_scenes(tmp_path / "scenes", count=8, size=(400, 400))
    manifest = tmp_path / "out" / MANIFEST_NAME
    command = [sys.executable, "-m", "engine", "batch", "--task", "estimate_bathymetry", "--inputs",
               str(tmp_path / "scenes"), "--output-dir", str(tmp_path / "out"), "--model", depth_model, "--workers", "1"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and not (
            manifest.is_file() and manifest.read_text().count("\n") >= 1):
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "the finished scenes are kept" in stderr, stderr[:3000]
    finished = manifest_lines(tmp_path / "out")
    assert 1 <= len(finished) < 8 and all(r["status"] == "done" for r in finished)
    assert not partials(tmp_path / "out")
    resumed = json.loads(subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=180).stdout)
    assert (resumed["done"], resumed["skipped"]) == (8 - len(finished), len(finished))


def test_engine_core_imports_neither_ray_nor_qgis():
    code = ("import sys, engine.__main__, engine.worker; from engine.tasks import TASKS; "
            "print(sorted(m for m in ('ray', 'qgis', 'torch', 'faiss') if m in sys.modules))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.stdout.strip() == "[]", completed.stderr


# --- multi-input tasks: one scene = the files of one area ----------------------------------------------------------

def run_single(task, **params):
    return run_task(task, params, lambda fraction, message: None, lambda: False)


def batch_of(task, inputs, output_dir, **params):
    return run_task("batch_over_files", {"task": task, "inputs": str(inputs), "output_dir": str(output_dir),
                                         "params": params}, lambda fraction, message: None, lambda: False)


def test_crop_maps_per_tile_from_folders_of_dated_files(local_ray, tmp_path):
    from test_crop_engine import crop_model, s1_series, s2_series

    model = crop_model(tmp_path / "crops.onnx")
    tiles = {}
    for number, tile in enumerate(("T31TCJ", "T31TDJ", "T32ULU")):
        folder = tmp_path / "tiles" / tile
        folder.mkdir(parents=True)
        _, s2 = s2_series(folder, dates=(f"2023-04-1{number}", "2023-06-01", "2023-07-20"))
        tiles[tile] = (s2, s1_series(folder, count=2 + number))
    result = batch_of("map_crops", tmp_path / "tiles", tmp_path / "out", model=model)
    assert (result["done"], result["failed"]) == (3, 0), result["failed_scenes"]
    for tile, (s2, s1) in tiles.items():
        run_single("map_crops", s2=s2, s1=s1, output=str(tmp_path / f"{tile}.tif"), model=model)
        assert_same_raster(tmp_path / "out" / f"{tile}.tif", tmp_path / f"{tile}.tif")


def write_ben_patch(root, patch, s1_name, seed):
    """One BigEarthNet v2 patch: 10 S2 band files at 10 m / 20 m and its S1 partner's VV, VH (reben_format.py)."""
    from engine.batch_scenes import BEN_S1, BEN_S2
    from test_scene_labels_engine import S2

    rng = np.random.default_rng(seed)
    s2_folder = root / BEN_S2 / "_".join(patch.split("_")[:-2]) / patch
    s1_folder = root / BEN_S1 / "_".join(s1_name.split("_")[:-3]) / s1_name
    s2_folder.mkdir(parents=True)
    s1_folder.mkdir(parents=True)
    origin = (400000.0 + 1200 * seed, 5000000.0)
    for band in S2:
        pixel = 20.0 if band in ("B05", "B06", "B07", "B8A", "B11", "B12") else 10.0
        side = int(1200 / pixel)
        write_raster(s2_folder / f"{patch}_{band}.tif", rng.integers(500, 1500, (1, side, side)).astype("uint16"),
                     crs="EPSG:32633", pixel=pixel, origin=origin)
    for band in ("VV", "VH"):
        write_raster(s1_folder / f"{s1_name}_{band}.tif", rng.normal(1000, 200, (1, 120, 120)).astype("float32"),
                     crs="EPSG:32633", origin=origin)
    return s2_folder, s1_folder


def geopackage_rows(path):
    import sqlite3

    with sqlite3.connect(path) as database:
        return (database.execute("SELECT * FROM scene_labels ORDER BY fid").fetchall(),
                database.execute("SELECT srs_id, definition FROM gpkg_spatial_ref_sys").fetchall())


def test_scene_labels_from_bigearthnet_folders_with_their_sentinel1_partners(local_ray, tmp_path):
    from test_scene_labels_engine import CLASSES, MEAN, STD, S2
    from engine.contract import Band, ModelContract, Outputs
    from training.pointwise_onnx import patch_classifier_model
    import onnx

    model_contract = ModelContract(
        task="scene_labels", name="test-scenes", bands=(Band("VV"), Band("VH"), *(Band(b) for b in S2)),
        mean=(MEAN,) * 12, std=(STD,) * 12, outputs=Outputs("classes", CLASSES), tile_size=120, overlap=0,
        gsd_m=10.0, batch_size=2)
    weights = np.zeros((3, 12))
    weights[0, 2], weights[1, 3], weights[2, 0] = 4.0, 4.0, 4.0
    model = str(tmp_path / "scenes.onnx")
    onnx.save(patch_classifier_model(model_contract, weights, np.zeros(3)), model)
    root = tmp_path / "BigEarthNet"
    patches = [write_ben_patch(root, f"S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_{57 + k}",
                               f"S1A_IW_GRDH_1SDV_20170613T165043_33UUP_26_{57 + k}", k) for k in range(4)]
    result = batch_of("classify_scenes", root, tmp_path / "out", model=model)
    assert (result["done"], result["failed"]) == (4, 0)
    for s2_folder, s1_folder in patches:
        files = sorted(str(p) for p in s2_folder.glob("*.tif")) + sorted(str(p) for p in s1_folder.glob("*.tif"))
        reference = tmp_path / f"{s2_folder.name}.gpkg"
        run_single("classify_scenes", input=files, output=str(reference), model=model)
        batch_output = tmp_path / "out" / f"{s2_folder.name}.gpkg"  # named relative to the folder all patches share
        assert geopackage_rows(batch_output) == geopackage_rows(reference)


def test_hyperspectral_compression_of_a_folder_of_cubes(local_ray, tmp_path):
    from test_hycot_engine import WAVELENGTHS, codec, cube

    (tmp_path / "cubes").mkdir()
    cubes = [write_raster(tmp_path / "cubes" / f"cube_{k}.tif", cube(seed=k, height=30, width=40), crs="EPSG:32633",
                          pixel=30.0, nodata=-1, descriptions=WAVELENGTHS) for k in range(3)]
    encoder, _ = codec(tmp_path, cube(seed=9), ratio=4)
    result = batch_of("compress_hyperspectral", tmp_path / "cubes", tmp_path / "out", model=encoder)
    assert (result["done"], result["failed"]) == (3, 0)
    for k, path in enumerate(cubes):
        run_single("compress_hyperspectral", input=path, output=str(tmp_path / f"c{k}.tif"), model=encoder)
        assert_same_raster(tmp_path / "out" / f"cube_{k}.tif", tmp_path / f"c{k}.tif")


def test_one_search_index_from_many_scenes_equals_the_single_build(local_ray, tmp_path):
    from engine.embedding_index import load_store
    from test_search_engine import SAMPLE, write_layer

    with rasterio.open(SAMPLE) as sample:
        data = sample.read(window=((0, 192), (0, 288)))
    layers = []
    for row in range(2):
        for col in range(3):
            (tmp_path / "scenes").mkdir(exist_ok=True)
            layers.append(write_layer(tmp_path / "scenes" / f"olinda_{row}{col}.tif",
                                      data[:, 96 * row:96 * row + 96, 96 * col:96 * col + 96],
                                      origin=(290000.0 + 96 * 30 * col, 9120000.0 - 96 * 30 * row)))
    result = batch_of("build_search_index", tmp_path / "scenes" / "*.tif", tmp_path / "out", device="cpu")
    assert (result["done"], result["merged"], result["index_tiles"]) == (6, 6, 54)
    single = run_single("build_search_index", input=layers, names=[os.path.basename(p)[:-4] for p in layers],
                        index=str(tmp_path / "single"), device="cpu")
    batch_store, single_store = load_store(tmp_path / "out" / "index"), load_store(tmp_path / "single")
    assert {e.id for e in batch_store.manifest.entries} == {layer["id"] for layer in single["layers"]}
    for entry in single_store.manifest.entries:
        twin = batch_store.manifest.entry(entry.name)
        assert np.array_equal(batch_store.entry_vectors(twin), single_store.entry_vectors(entry))
        assert np.array_equal(batch_store.tiles(twin), single_store.tiles(entry))
    again = batch_of("build_search_index", tmp_path / "scenes" / "*.tif", tmp_path / "out", device="cpu")
    assert (again["done"], again["skipped"], again["merged"]) == (0, 6, 0)
