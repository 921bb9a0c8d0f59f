"""Tile policy (engine/tile_plan.py): fully convolutional models at the largest tile a memory budget
allows, stitched so that the result equals a whole-image run; tuning cached per model and device;
reading and writing on threads of their own with the same bytes as on one thread."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio

import engine.pipeline
import engine.tasks.raster_task
from engine.pipeline import stitch_span, tile_origins
from engine.contract import ModelContract
from engine.errors import EngineError, ModelContractError
from engine.model_catalogue import file_sha256
from engine.runtime import MODELS_DIR, Model
from engine.tasks import run_task
from engine.tasks.raster_task import LAYER_BYTES_PER_PX
from engine.tile_plan import TUNING_FILE, fully_convolutional_overlap, plan_tiles
from raster_fixtures import contract, scene, write_model, write_raster
from training.fully_convolutional import measured_bytes_per_px, receptive_field
from training.simulation.shallow_water import simulate_scene, write_scene_geotiffs

BATHYMETRY = MODELS_DIR / "bathymetry_s2_sim.onnx"


def run(**params):
    return run_task("estimate_bathymetry", params, lambda f, m: None, lambda: False)


@pytest.fixture(scope="module")
def sea(tmp_path_factory):
    """A simulated shallow-water scene whose sides are multiples of the U-Net's size multiple."""
    folder = tmp_path_factory.mktemp("sea")
    paths = [str(folder / f"{name}.tif") for name in ("image", "depth", "classes")]
    write_scene_geotiffs(simulate_scene(520, 600, seed=7), *paths)
    return paths[0]


def test_the_shipped_u_nets_are_declared_fully_convolutional_as_their_graphs_are():
    for name in ("bathymetry_s2_sim.onnx", "seabed_s2_sim.onnx"):
        recorded = Model(MODELS_DIR / name, "cpu").contract.fully_convolutional
        assert {k: recorded[k] for k in ("receptive_radius", "size_multiple")} == receptive_field(MODELS_DIR / name)
        assert recorded["activation_bytes_per_px"] > 0


def test_the_memory_probe_measures_the_model_not_the_process_that_exports_it():
    """The probe runs in a child process: started from a process that has held more memory than the
    model needs (as `python -m training export` has, after torch and the fit), it still measures the
    model's own activations, as from a small process."""
    alone = measured_bytes_per_px(BATHYMETRY, 3)
    held = np.ones(400 * 2**20, np.uint8)  # 400 MB resident in this process
    from_a_large_process = measured_bytes_per_px(BATHYMETRY, 3)
    del held
    assert alone > 100 and from_a_large_process == pytest.approx(alone, rel=0.25)


def test_receptive_radius_bounds_what_an_output_pixel_sees():
    """Changing every input pixel farther than the radius from an output pixel leaves it unchanged;
    changing one just inside the radius on the far side changes some output at that distance."""
    model = Model(BATHYMETRY, "cpu")
    radius = model.contract.fully_convolutional["receptive_radius"]
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 3, 256, 256), np.float32)
    centre = 128
    changed = image.copy()
    outside = np.ones((256, 256), bool)
    outside[centre - radius:centre + radius + 1, centre - radius:centre + radius + 1] = False
    changed[:, :, outside] = rng.standard_normal((3, outside.sum()), np.float32)
    assert model.run(image)[0, 0, centre, centre] == pytest.approx(model.run(changed)[0, 0, centre, centre], abs=1e-5)


def test_fully_convolutional_tiles_equal_a_whole_image_run_away_from_the_edges(sea, tmp_path):
    tiled = run(input=sea, output=str(tmp_path / "tiled.tif"), keep_masked=True, max_memory=128)
    whole = run(input=sea, output=str(tmp_path / "whole.tif"), keep_masked=True, max_memory=4096)
    model = Model(BATHYMETRY, "cpu")
    assert whole["tiles"] == 1 and whole["tile_size"] == 600
    # the least budget still cuts the scene into several tiles down and across: seams both ways
    assert tiled["tile_size"] < 520 and tiled["tiles"] >= 4
    assert tiled["overlap"] == fully_convolutional_overlap(model.contract)
    assert tiled["overlap"] < 2 * model.contract.fully_convolutional["receptive_radius"] + 16
    with rasterio.open(tmp_path / "tiled.tif") as a, rasterio.open(tmp_path / "whole.tif") as b:
        tiled_depth, whole_depth = a.read(1), b.read(1)
    edge = model.contract.fully_convolutional["receptive_radius"]
    np.testing.assert_allclose(tiled_depth[edge:-edge, edge:-edge], whole_depth[edge:-edge, edge:-edge],
                               rtol=0, atol=1e-4)


def test_a_pointwise_fully_convolutional_model_is_exact_everywhere(tmp_path):
    pointwise = write_model(tmp_path / "p.onnx", replace(contract(tile=64, overlap=16), fully_convolutional={
        "receptive_radius": 0, "size_multiple": 1, "activation_bytes_per_px": 100.0}), [[0.5, -2.0, 1.0]], [3.0])
    image = write_raster(tmp_path / "in.tif", scene(height=301, width=333))
    small = run(input=image, output=str(tmp_path / "small.tif"), model=pointwise, max_memory=128, batch_size=2)
    whole = run(input=image, output=str(tmp_path / "whole.tif"), model=pointwise)
    assert small["overlap"] == 0 and whole["tiles"] == 1
    with rasterio.open(tmp_path / "small.tif") as a, rasterio.open(tmp_path / "whole.tif") as b:
        assert np.array_equal(a.read(), b.read())


def test_fixed_size_models_keep_their_tile_size(tmp_path):
    fixed = write_model(tmp_path / "f.onnx", contract(tile=64, overlap=16), [[1.0, 0.0, 0.0]], [0.0])
    result = run(input=write_raster(tmp_path / "in.tif", scene()), output=str(tmp_path / "o.tif"), model=fixed)
    assert (result["tile_size"], result["overlap"]) == (64, 16)


def test_a_graph_of_fixed_size_cannot_be_declared_fully_convolutional(tmp_path):
    declared = replace(contract(tile=64, overlap=16), fully_convolutional={
        "receptive_radius": 0, "size_multiple": 1, "activation_bytes_per_px": 1.0})
    path = write_model(tmp_path / "fixed.onnx", declared, [[1.0, 0.0, 0.0]], [0.0])
    graph = onnx.load(path)
    for dim in graph.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_value = 64
    onnx.save(graph, path)
    with pytest.raises(ModelContractError, match="declares the model fully convolutional but its graph takes fixed"):
        Model(path, "cpu")


def test_a_bad_fully_convolutional_record_is_named():
    with pytest.raises(ModelContractError, match="fully_convolutional.receptive_radius is -3"):
        ModelContract.from_dict(json.loads(replace(contract(), fully_convolutional={}).to_json())
                                | {"fully_convolutional": {"receptive_radius": -3, "size_multiple": 8,
                                                           "activation_bytes_per_px": 10}})


def test_batch_size_and_threads_are_measured_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("RSAI_CACHE_DIR", str(tmp_path / "cache"))
    model = Model(BATHYMETRY, "cpu")
    first = plan_tiles(model, 4096, 4096, channels=1, max_memory=160)
    assert first.tuning == "measured"
    cached = json.loads((tmp_path / "cache" / TUNING_FILE).read_text())
    assert len(cached) == 1 and next(iter(cached)).startswith(file_sha256(BATHYMETRY))
    again = plan_tiles(Model(BATHYMETRY, "cpu"), 4096, 4096, channels=1, max_memory=160)
    assert again.tuning == "cached" and (again.batch_size, again.threads) == (first.batch_size, first.threads)
    given = plan_tiles(model, 4096, 4096, channels=1, max_memory=160, batch_size=3)
    assert given.batch_size == 3 and given.tuning == "given"


def test_the_layers_memory_comes_out_of_the_tile_budget(sea, tmp_path, monkeypatch):
    """The quality and out-of-distribution layers' arrays (engine/tasks/raster_task.py) are counted in
    the budget: at the same budget a run that makes them plans smaller tiles than one that does not."""
    monkeypatch.setenv("RSAI_CACHE_DIR", str(tmp_path / "cache"))
    model = Model(BATHYMETRY, "cpu")
    alone = plan_tiles(model, 16000, 16000, channels=1, max_memory=400, batch_size=1)
    layered = plan_tiles(model, 16000, 16000, channels=1, max_memory=400, batch_size=1, layer_bytes=64 * 2**20)
    assert layered.tile < alone.tile
    planned = []
    monkeypatch.setattr(engine.tasks.raster_task, "plan_tiles",
                        lambda *args, **kwargs: planned.append(args[-1]) or plan_tiles(*args, **kwargs))
    run(input=sea, output=str(tmp_path / "depth.tif"), quality_layer=str(tmp_path / "q.tif"))
    halo = 11 + 2  # the optically-deep test's window and guide radii
    strip = 600 * 256 * (4 + 1)  # a strip's out-of-distribution distances (float32) and reasons (uint8)
    assert planned == [(256 + 2 * halo) * (600 + 2 * halo) * LAYER_BYTES_PER_PX + strip]


def test_threaded_reading_and_writing_give_the_same_bytes_as_one_thread(sea, tmp_path, monkeypatch):
    """Reads on reader threads, layers and writes on the writer thread: the depth, quality and
    uncertainty rasters are the same files as made on one thread."""
    def outputs(name):
        return {"output": str(tmp_path / f"{name}.tif"), "quality_layer": str(tmp_path / f"{name}_q.tif"),
                "uncertainty": str(tmp_path / f"{name}_u.tif")}
    threaded = run(input=sea, max_memory=160, **outputs("threaded"))
    monkeypatch.setattr(engine.pipeline, "READ_THREADS", 0)
    monkeypatch.setattr(engine.tasks.raster_task, "WRITE_BEHIND_STRIPS", 0)
    sequential = run(input=sea, max_memory=160, **outputs("sequential"))
    assert threaded["tiles"] == sequential["tiles"] > 4
    for threaded_file, sequential_file in zip(outputs("threaded").values(), outputs("sequential").values()):
        assert Path(threaded_file).read_bytes() == Path(sequential_file).read_bytes()


def test_a_budget_below_the_least_is_refused_before_any_work(sea, tmp_path):
    with pytest.raises(EngineError, match="max_memory is 100 MB; give at least 128"):
        run(input=sea, output=str(tmp_path / "out.tif"), max_memory=100)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("length, tile, overlap", [(1000, 232, 112), (600, 600, 112), (130, 64, 0), (2048, 760, 112)])
def test_stitched_tiles_start_on_the_stride_and_give_every_pixel_exactly_one_tile(length, tile, overlap):
    origins = tile_origins(length, tile, overlap, aligned=True)
    assert all(origin % (tile - overlap) == 0 for origin in origins) and origins[-1] + tile >= length
    cover = np.zeros(origins[-1] + tile)
    for index, origin in enumerate(origins):
        span = stitch_span(tile, overlap, index == 0, index == len(origins) - 1)
        cover[origin + span.start:origin + span.stop] += 1
    assert np.array_equal(cover[:length], np.ones(length))


def test_batches_submitted_ahead_on_a_device_give_the_same_bytes(sea, tmp_path, monkeypatch):
    """With device batches (CUDA's IO binding, here staged on the CPU provider as in
    tests/test_gpu_path.py) the pipeline submits the next batch before taking a result: same bytes."""
    from engine.runtime import DeviceBatches

    plain = run(input=sea, max_memory=128, batch_size=2, output=str(tmp_path / "plain.tif"))
    submitted, ran = [], []
    opened = Model.__init__

    def with_device_batches(self, *args, **kwargs):
        opened(self, *args, **kwargs)
        self.device_batches = DeviceBatches(self.session, "cpu")
        self.submit = lambda batch, submit=self.submit: submitted.append(len(batch)) or submit(batch)
        self.run = lambda batch, run=self.run: ran.append(len(batch)) or run(batch)

    monkeypatch.setattr(Model, "__init__", with_device_batches)
    ahead = run(input=sea, max_memory=128, batch_size=2, output=str(tmp_path / "ahead.tif"))
    assert ahead["tiles"] == plain["tiles"] > 4 and sum(submitted) == plain["tiles"] and not ran
    assert (tmp_path / "ahead.tif").read_bytes() == (tmp_path / "plain.tif").read_bytes()
