"""Engine: contract, raster IO, tiled pipeline with blending, bad input, worker and CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from engine.contract import ModelContract, contract_from_metadata
from engine.errors import Cancelled, EngineError, ModelContractError
from engine.pipeline import blend_ramp, tile_origins
from engine.raster_io import open_input
from engine.output_files import PARTIAL_MARKER
from engine.tasks import run_task
from raster_fixtures import contract, scene, write_model, write_raster

REPO = Path(__file__).resolve().parents[1]
IDENTITY_DEPTH = ([[1.0, 0.0, 0.0]], [0.0])  # output = normalised first band


def run(task, progress=None, cancelled=None, **params):
    return run_task(task, params, progress or (lambda f, m: None), cancelled or (lambda: False))


def leftovers(folder):
    return [p.name for p in Path(folder).iterdir() if PARTIAL_MARKER in p.name]


@pytest.fixture
def depth_model(tmp_path):
    return write_model(tmp_path / "depth.onnx", contract(), *IDENTITY_DEPTH)


# --- contract ---------------------------------------------------------------------------------

def test_contract_round_trips_through_onnx_metadata(tmp_path):
    original = contract(kind="classes", channels=3)
    path = write_model(tmp_path / "m.onnx", original, np.zeros((3, 3)), np.zeros(3))
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert contract_from_metadata(props, "m.onnx") == original


def test_contract_names_a_missing_field():
    data = json.loads(contract().to_json())
    del data["tile_size"]
    with pytest.raises(ModelContractError, match="missing the field 'tile_size'"):
        ModelContract.from_dict(data)


def test_contract_rejects_inconsistent_values():
    with pytest.raises(ModelContractError, match=r"std is \[1.0, 0.0, 1.0\]; every std must be a finite number > 0"):
        contract(std=(1.0, 0.0, 1.0))
    with pytest.raises(ModelContractError, match="overlap < tile_size"):
        contract(tile=32, overlap=32)


def test_deepness_metadata_is_mapped():
    meta = {"model_type": '"Segmentor"', "class_names": '{"0": "water", "1": "land"}',
            "resolution": "50", "tiles_size": "256", "standardization_mean": "[0.5, 0.5, 0.5]",
            "standardization_std": "[0.25, 0.25, 0.25]"}
    mapped = contract_from_metadata(meta, "deep.onnx")
    assert mapped.outputs.kind == "classes" and mapped.outputs.names == ("water", "land")
    assert mapped.gsd_m == 0.5 and mapped.tile_size == 256
    assert mapped.mean == (127.5,) * 3 and mapped.std == (63.75,) * 3


def test_model_without_contract_is_refused(tmp_path, depth_model):
    bare = onnx.load(depth_model)
    del bare.metadata_props[:]
    onnx.save(bare, tmp_path / "bare.onnx")
    image = write_raster(tmp_path / "in.tif", scene())
    with pytest.raises(ModelContractError, match="has no model contract"):
        run("estimate_bathymetry", input=image, output=str(tmp_path / "out.tif"), model=str(tmp_path / "bare.onnx"))
    assert not (tmp_path / "out.tif").exists()


def test_corrupt_onnx_is_refused(tmp_path, depth_model):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(Path(depth_model).read_bytes()[:200])
    image = write_raster(tmp_path / "in.tif", scene())
    with pytest.raises(EngineError, match="not a valid ONNX model"):
        run("estimate_bathymetry", input=image, output=str(tmp_path / "out.tif"), model=str(corrupt))
    assert not (tmp_path / "out.tif").exists()


def test_graph_band_count_must_match_contract(tmp_path):
    path = write_model(tmp_path / "m.onnx", contract(), np.ones((1, 4)), [0.0])  # graph takes 4 bands
    image = write_raster(tmp_path / "in.tif", scene())
    with pytest.raises(ModelContractError, match="graph takes 4 bands but the contract lists 3"):
        run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=path)


# --- tiling and blending ----------------------------------------------------------------------

def test_tile_origins_cover_the_raster_with_overlap():
    assert tile_origins(50, 64, 16) == [0]
    origins = tile_origins(300, 64, 16)
    assert origins[0] == 0 and origins[-1] == 300 - 64
    assert all(b - a <= 48 for a, b in zip(origins, origins[1:]))
    ramp = blend_ramp(64, 16)
    assert ramp.min() > 0 and ramp[32] == 1.0 and ramp[0] == ramp[-1]


def test_constant_model_over_overlapping_tiles_leaves_no_seams(tmp_path):
    constant = contract(tile=64, overlap=24)
    model = write_model(tmp_path / "c.onnx", constant, np.zeros((1, 3)), [2.5])
    image = write_raster(tmp_path / "in.tif", scene(height=301, width=333))
    result = run("estimate_bathymetry", input=image, output=str(tmp_path / "out.tif"), model=model)
    with rasterio.open(tmp_path / "out.tif") as out:
        depth = out.read(1)
    assert result["tiles"] > 30
    np.testing.assert_allclose(depth, 2.5, rtol=0, atol=1e-6)


def test_per_pixel_model_values_band_order_and_georeferencing(tmp_path):
    weights, bias = np.array([[0.5, -2.0, 1.0]]), np.array([3.0])
    model = write_model(tmp_path / "lin.onnx", contract(tile=64, overlap=16, scale=2.0), weights, bias)
    data = scene(height=130, width=97)
    data[:, 5:9, 10:20] = 0  # nodata block
    # bands stored in reverse order, named: the engine must pick them by description
    image = write_raster(tmp_path / "in.tif", data[::-1].copy(), nodata=0, descriptions=["B04", "B03", "B02"])
    run("estimate_bathymetry", input=image, output=str(tmp_path / "out.tif"), model=model)
    mean = np.array([500.0, 400.0, 300.0])[:, None, None]
    std = np.array([100.0, 80.0, 60.0])[:, None, None]
    expected = 2.0 * (np.tensordot(weights[0], (data - mean) / std, axes=1) + bias[0])
    with rasterio.open(tmp_path / "out.tif") as out, rasterio.open(image) as src:
        depth = out.read(1)
        assert out.crs == src.crs and out.transform == src.transform
        assert out.nodata == -9999.0 and out.dtypes[0] == "float32"
        assert out.profile["tiled"] and out.profile["compress"] == "deflate"
    assert (depth[5:9, 10:20] == -9999.0).all()
    valid = depth != -9999.0
    assert valid.sum() == data.shape[1] * data.shape[2] - 40
    np.testing.assert_allclose(depth[valid], expected[valid], rtol=1e-5, atol=1e-4)


def test_seabed_classes_palette_and_probabilities(tmp_path):
    weights = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    model = write_model(tmp_path / "cls.onnx", contract(kind="classes", channels=3), weights, np.zeros(3))
    data = scene(height=90, width=80, seed=3)
    image = write_raster(tmp_path / "in.tif", data)
    result = run("classify_seabed", input=image, output=str(tmp_path / "cls.tif"), model=model,
                 probabilities=str(tmp_path / "prob.tif"))
    mean = np.array([500.0, 400.0, 300.0])[:, None, None]
    std = np.array([100.0, 80.0, 60.0])[:, None, None]
    expected = ((data - mean) / std).argmax(axis=0)
    with rasterio.open(tmp_path / "cls.tif") as out, rasterio.open(tmp_path / "prob.tif") as prob:
        assert (out.read(1) == expected).all()
        assert out.colormap(1)[1][:3] == (40, 0, 0)
        assert out.tags()["class_2"] == "class2"
        probabilities = prob.read()
    assert probabilities.shape == (3, 90, 80)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert set(result["outputs"]) == {"output", "probabilities"}


# --- inputs: dtypes, band mapping, extent, resampling, edge cases ---------------------------

@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_supported_dtypes(tmp_path, depth_model, dtype):
    image = write_raster(tmp_path / "in.tif", scene(dtype=dtype, height=40, width=40))
    run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model)
    with rasterio.open(tmp_path / "o.tif") as out, rasterio.open(image) as src:
        np.testing.assert_allclose(out.read(1), (src.read(1).astype(float) - 500) / 100, atol=1e-4)


def test_unsupported_dtype_names_the_fix(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(dtype="float64", height=20, width=20))
    with pytest.raises(EngineError, match="float64.*gdal_translate -ot Float32"):
        run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model)


def test_too_few_bands_asks_for_a_mapping(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene()[:2])
    with pytest.raises(EngineError, match=r"has 2 band\(s\) but the model needs 3.*B02=1,B03=2,B04=3"):
        run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model)
    assert not (tmp_path / "o.tif").exists()


def test_band_mapping_selects_bands_of_a_larger_raster(tmp_path, depth_model):
    data = np.concatenate([scene(height=30, width=30, seed=1), scene(height=30, width=30, seed=2)])
    image = write_raster(tmp_path / "in.tif", data)
    run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model,
        bands="B02=5,B03=4,B04=6")
    with rasterio.open(tmp_path / "o.tif") as out:
        np.testing.assert_allclose(out.read(1), (data[4] - 500.0) / 100, atol=1e-4)
    with pytest.raises(EngineError, match="not NAME=INDEX"):
        run("estimate_bathymetry", input=image, output=str(tmp_path / "p.tif"), model=depth_model, bands="B02")


def test_extent_processes_a_subwindow_on_the_input_grid(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=100, width=100))
    x0, y0 = 580000.0, 3870000.0
    run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model,
        extent=[x0 + 200, y0 - 600, x0 + 505, y0 - 300])
    with rasterio.open(tmp_path / "o.tif") as out, rasterio.open(image) as src:
        assert (out.width, out.height) == (31, 30)
        assert out.transform.c == x0 + 200 and out.transform.f == y0 - 300
        np.testing.assert_allclose(out.read(1), (src.read(1)[30:60, 20:51] - 500.0) / 100, atol=1e-4)
    with pytest.raises(EngineError, match="does not overlap"):
        run("estimate_bathymetry", input=image, output=str(tmp_path / "p.tif"), model=depth_model,
            extent=[0, 0, 10, 10])


def test_resampling_to_model_resolution_in_metres_and_degrees(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=60, width=60), pixel=5.0)
    result = run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model,
                 resample=True)
    with rasterio.open(tmp_path / "o.tif") as out:
        assert (out.width, out.height) == (30, 30) and out.transform.a == 10.0
    assert result["warnings"] == []
    geographic = write_raster(tmp_path / "geo.tif", scene(height=40, width=40), crs="EPSG:4326",
                              pixel=0.0001, origin=(33.99, 34.98))
    run("estimate_bathymetry", input=geographic, output=str(tmp_path / "g.tif"), model=depth_model,
        resample=True)
    with rasterio.open(tmp_path / "g.tif") as out:
        assert out.crs.to_epsg() == 4326
        metres_per_degree = 111320 * np.cos(np.radians(34.98))  # spherical approximation, ~0.3 % off
        assert out.transform.a * metres_per_degree == pytest.approx(10.0, rel=0.01)
        assert abs(out.width - 40 * 0.0001 * metres_per_degree / 10) <= 1


@pytest.mark.parametrize("pixel, nodata", [(9.5, None), (3.3, None), (25.0, None), (9.5, 0.0), (3.3, 0.0)])
def test_a_file_in_the_grids_crs_is_resampled_as_the_warper_would(tmp_path, pixel, nodata):
    """Off the grid's pixel lattice, a file in its CRS that covers it is read directly and resampled by
    GDAL's raster reading: the values of a bilinear warp (finer files) or the nearest pixel (coarser),
    to 1e-3 of the values' range, with the warper's validity where the file has nodata."""
    rng = np.random.default_rng(7)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(3, 130, 140)), axis=1), axis=2).astype(np.float32)
    data = smooth - smooth.min() + 1.0
    if nodata is not None:
        data[:, 40:60, 50:90] = nodata  # a hole, and a border of no data
        data[:, :, :5] = nodata
    image = write_raster(tmp_path / "in.tif", data, pixel=pixel, nodata=nodata)
    with rasterio.open(image) as src, open_input(image, contract(gsd=10.0), resample=True) as grid:
        assert not isinstance(grid.sources[0].dataset, WarpedVRT)
        values, valid = grid.read(0, 0, grid.height, grid.width)
        with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                       resampling=Resampling.nearest if pixel > 10.0 else Resampling.bilinear) as warped:
            expected, expected_valid = warped.read([1, 2, 3]), warped.read_masks(1) > 0
    inner = (slice(2, -2), slice(2, -2))  # the warper and the reader treat the last pixels apart
    assert values.shape == expected.shape and np.array_equal(valid[inner], expected_valid[inner])
    assert valid.all() == (nodata is None)
    both = valid & expected_valid
    # next to no data the two weigh a partly empty kernel a little apart: within 1 % of the range there
    away = both & np.all([np.roll(both, shift, axis) for shift in (-1, 1) for axis in (0, 1)], axis=0)
    span = float(np.ptp(smooth))
    np.testing.assert_allclose(values[:, away], expected[:, away], atol=1e-3 * span)
    np.testing.assert_allclose(values[:, both], expected[:, both], atol=1e-2 * span)


def test_a_file_with_an_alpha_band_is_resampled_by_the_warper(tmp_path):
    """Its alpha band says where it has data (the warper used to refuse such a file: it added an alpha
    band of its own)."""
    path = tmp_path / "rgba.tif"
    with rasterio.open(path, "w", driver="GTiff", width=70, height=60, count=4, dtype="uint8", photometric="RGB",
                       alpha="YES", crs="EPSG:32636",
                       transform=rasterio.transform.from_origin(580000, 3870000, 9.5, 9.5)) as dst:
        rgba = np.full((4, 60, 70), 200, np.uint8)
        rgba[3, :, :30] = 0  # transparent: no data
        dst.write(rgba)
    with open_input(str(path), contract(gsd=10.0), bands={"B04": 1, "B03": 2, "B02": 3}, resample=True) as grid:
        assert isinstance(grid.sources[0].dataset, WarpedVRT)
        values, valid = grid.read(0, 0, grid.height, grid.width)
    assert not valid[:, :25].any() and valid[:, 35:].all() and np.all(values[:, valid] == 200)


def test_pixel_size_mismatch_is_warned(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=20, width=20), pixel=30.0)
    result = run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model)
    assert "trained at 10 m" in result["warnings"][0]


def test_all_nodata_input_gives_nodata_output_and_a_warning(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", np.zeros((3, 40, 50), "uint16"), nodata=0)
    result = run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model)
    with rasterio.open(tmp_path / "o.tif") as out:
        assert (out.read(1) == -9999.0).all()
    assert "no valid pixels" in result["warnings"][0]


def test_single_pixel_raster(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", np.full((3, 1, 1), 700, "uint16"))
    run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model)
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.shape == (1, 1) and out.read(1)[0, 0] == pytest.approx(2.0)


# --- bad input leaves nothing behind --------------------------------------------------------

def test_not_georeferenced_raster_is_refused(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=20, width=20), crs=None)
    with pytest.raises(EngineError, match="not georeferenced"):
        run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.onnx", "in.tif"]


def test_output_in_missing_folder_is_refused_before_work(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=20, width=20))
    with pytest.raises(EngineError, match="output folder .*missing.* does not exist"):
        run("estimate_bathymetry", input=image, output=str(tmp_path / "missing" / "o.tif"), model=depth_model)


def test_output_over_the_input_is_refused(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=20, width=20))
    before = Path(image).read_bytes()
    with pytest.raises(EngineError, match="inputs are never overwritten"):
        run("estimate_bathymetry", input=image, output=image, model=depth_model)
    assert Path(image).read_bytes() == before


def test_cancel_mid_run_leaves_no_output(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=400, width=400))
    seen = []
    with pytest.raises(Cancelled):
        run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model,
            progress=lambda f, m: seen.append(f), cancelled=lambda: len(seen) >= 3)
    assert 0 < seen[-1] < 1
    assert not (tmp_path / "o.tif").exists() and leftovers(tmp_path) == []


def test_cuda_request_without_cuda_is_a_clear_error(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=20, width=20))
    try:
        result = run("estimate_bathymetry", input=image, output=str(tmp_path / "o.tif"), model=depth_model,
                     device="cuda")
    except EngineError as err:  # the usual case here and in CI: no GPU
        assert "cuda" in str(err).lower() and "'auto' or 'cpu'" in str(err) or "onnxruntime-gpu" in str(err)
    else:
        assert result["device"] == "CUDAExecutionProvider"
    auto = run("estimate_bathymetry", input=image, output=str(tmp_path / "a.tif"), model=depth_model)
    assert auto["device"] in ("CPUExecutionProvider", "CUDAExecutionProvider")


# --- worker and CLI -----------------------------------------------------------------------------

def test_worker_serves_requests_and_rejects_unknown_tasks(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=60, width=60))
    requests = [
        {"id": "a", "task": "rm -rf /", "params": {}},
        {"id": "b", "task": "estimate_bathymetry", "params": {"input": image, "output": str(tmp_path / "o.tif"),
                                                               "model": depth_model, "device": "cpu"}},
        {"id": "c", "task": "estimate_bathymetry", "params": {"input": image, "output": "x.tif", "shell": "ls"}},
        {"id": "d", "task": "describe_model", "params": {"model": depth_model}},
    ]
    proc = subprocess.run([sys.executable, "-m", "engine.worker"], cwd=REPO, capture_output=True, text=True,
                          input="".join(json.dumps(r) + "\n" for r in requests), timeout=120)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    final = {e["id"]: e for e in events if e["event"] in ("result", "error")}
    assert final["a"]["event"] == "error" and "unknown task" in final["a"]["message"]
    assert final["b"]["event"] == "result" and final["b"]["result"]["device"] == "CPUExecutionProvider"
    assert any(e["event"] == "progress" and e["id"] == "b" for e in events)
    assert final["c"]["event"] == "error" and "unknown parameter(s) ['shell']" in final["c"]["message"]
    assert final["d"]["result"]["contract"]["bands"][0]["name"] == "B02"
    assert (tmp_path / "o.tif").exists()


def test_worker_cancel_line_stops_the_run(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=1500, width=1500))
    proc = subprocess.Popen([sys.executable, "-m", "engine.worker"], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    request = {"id": "r", "task": "estimate_bathymetry",
               "params": {"input": image, "output": str(tmp_path / "o.tif"), "model": depth_model}}
    proc.stdin.write(json.dumps(request) + "\n")
    for line in proc.stdout:
        if json.loads(line)["event"] == "progress":
            proc.stdin.write(json.dumps({"cancel": "r"}) + "\n")
            break
    final = None
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] in ("result", "error"):
            final = event
            break
    proc.stdin.close()
    proc.wait(timeout=60)
    assert final["event"] == "error" and final["kind"] == "Cancelled"
    assert not (tmp_path / "o.tif").exists() and leftovers(tmp_path) == []


def test_cli_runs_a_task_and_reports_bad_input(tmp_path, depth_model):
    image = write_raster(tmp_path / "in.tif", scene(height=30, width=30))
    ok = subprocess.run([sys.executable, "-m", "engine", "run", "estimate_bathymetry", "--input", image,
                         "--output", str(tmp_path / "o.tif"), "--model", depth_model],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["outputs"]["output"] == str(tmp_path / "o.tif")
    bad = subprocess.run([sys.executable, "-m", "engine", "run", "estimate_bathymetry", "--input",
                          str(tmp_path / "nope.tif"), "--output", str(tmp_path / "p.tif"), "--model", depth_model],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stderr


# --- several input files on one grid ------------------------------------------------------------

def test_single_band_files_are_named_by_file_name_and_coarser_bands_upsampled(tmp_path):
    model = write_model(tmp_path / "red.onnx", contract(), [[0.0, 0.0, 1.0]], [0.0])  # output = norm. B04
    data = scene(height=40, width=60)
    red_20m = data[2:3, ::2, ::2].copy()
    files = [write_raster(tmp_path / "T36_B02_10m.tif", data[0:1]),
             write_raster(tmp_path / "T36_B4_20m.tif", red_20m, pixel=20.0),
             write_raster(tmp_path / "T36_B03_10m.tif", data[1:2])]
    result = run("estimate_bathymetry", input=files, output=str(tmp_path / "o.tif"), model=model)
    assert result["warnings"] == []
    with rasterio.open(tmp_path / "o.tif") as out, rasterio.open(files[0]) as blue:
        assert out.transform == blue.transform and out.shape == (40, 60)
        upsampled = np.repeat(np.repeat(red_20m[0].astype(float), 2, 0), 2, 1)
        np.testing.assert_allclose(out.read(1), (upsampled - 300.0) / 60.0, atol=1e-4)


def test_a_file_in_another_crs_is_reprojected_onto_the_first_files_grid(tmp_path, depth_model):
    data = scene(height=50, width=50)
    rgb = write_raster(tmp_path / "rgb.tif", data[1:3], descriptions=["B03", "B04"])
    # the blue band as a geographic raster (about 9 m pixels) covering the west half of the area
    blue = write_raster(tmp_path / "blue_B02.tif", np.full((1, 80, 30), 700, "uint16"), crs="EPSG:4326",
                        pixel=0.0001, origin=(33.875, 34.970))
    with rasterio.open(rgb) as src:
        bounds = src.bounds
    result = run("estimate_bathymetry", input=[rgb, blue], output=str(tmp_path / "o.tif"), model=depth_model)
    assert "reprojected to EPSG:32636" in result["warnings"][0]
    with rasterio.open(tmp_path / "o.tif") as out:
        assert out.crs.to_epsg() == 32636 and out.bounds == bounds
        depth = out.read(1)
    covered = depth != -9999.0
    assert covered[:, :10].all() and not covered[:, -10:].any()  # nodata where the blue file ends
    np.testing.assert_allclose(depth[covered], 2.0, atol=1e-4)  # (700 - 500) / 100 wherever blue exists


def test_a_missing_db_ratio_band_is_computed_from_its_parts(tmp_path):
    from engine.contract import Band
    from engine.raster_io import open_input

    s1 = contract(bands=(Band("VV"), Band("VH"), Band("VV/VH")), mean=(0.0,) * 3, std=(1.0,) * 3)
    data = np.stack([np.full((5, 6), -12.0), np.full((5, 6), -19.5)]).astype("float32")
    path = write_raster(tmp_path / "s1.tif", data, descriptions=["VV", "VH"])
    with open_input(path, s1) as grid:
        values, valid = grid.read(0, 0, 5, 6)
        assert grid.band_info[2].label.startswith("VV/VH")
    assert valid.all()
    np.testing.assert_allclose(values[2], 7.5)
    three = write_raster(tmp_path / "s1_three.tif", np.concatenate([data, np.full((1, 5, 6), 1.0, "float32")]),
                         descriptions=["VV", "VH", "VV/VH"])
    with open_input(three, s1) as grid:  # a ratio band the file has is read, not computed
        np.testing.assert_allclose(grid.read(0, 0, 5, 6)[0][2], 1.0)
