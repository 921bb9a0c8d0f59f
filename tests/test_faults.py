"""Faults survived and implausible input caught (issue #14): a really full filesystem, real signals to
real engine processes, temporaries of killed processes, truncated GeoTIFFs, wrong radiometry."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.contract import Band
from engine.errors import EngineError
from engine.output_files import PARTIAL_MARKER, OutputWriteError
from engine.tasks import run_task
from engine.vector_io import Field, atomic_geopackage
from raster_fixtures import UTM36N, contract, scene, write_model, write_raster

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "olinda_landsat7.tif"
BANDS = ("B02", "B03", "B04")


def run(task, **params):
    return run_task(task, params, lambda fraction, message: None, lambda: False)


def engine_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if PARTIAL_MARKER in p.name)


@pytest.fixture
def depth_model(tmp_path):
    return write_model(tmp_path / "depth.onnx", contract(), [[1.0, 0.0, 0.0]], [0.0])


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MiB filesystem (tmpfs), so that writes really fail with ENOSPC."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"no small filesystem can be mounted here ({mounted.stderr.strip() or 'mount refused'}); "
                    "the disk-full tests need root, as on the CI machine")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> None:
    """Fill ``disk`` until about ``leave_bytes`` remain free."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler.bin", "wb") as filler:
        filler.write(b"\1" * max(0, free - leave_bytes))


def noisy_scene(tmp_path, size: int, name: str = "noisy.tif") -> str:
    """Random reflectance-like values: the depth output compresses badly and so fills disks fast."""
    rng = np.random.default_rng(1)
    data = rng.integers(300, 3000, size=(3, size, size)).astype("uint16")
    return write_raster(tmp_path / name, data, descriptions=BANDS)


# --- a full disk ------------------------------------------------------------------------------

def test_a_full_disk_fails_the_run_and_keeps_the_previous_output(small_disk, tmp_path, depth_model):
    output = small_disk / "depth.tif"
    run("estimate_bathymetry", input=write_raster(tmp_path / "small.tif", scene(40, 40), descriptions=BANDS),
        output=str(output), model=depth_model)
    previous = output.read_bytes()
    fill(small_disk, 64 * 1024)
    cli = engine_cli("run", "estimate_bathymetry", "--input", noisy_scene(tmp_path, 600), "--output", str(output),
                     "--model", depth_model)
    _, stderr = cli.communicate(timeout=300)
    assert cli.returncode == 2, stderr
    message = stderr.strip().splitlines()[-1]
    assert f"could not write {output}" in message and "MB free on the disk of" in message, message
    assert "free some space or choose a folder on another disk" in message.lower()
    assert "internal error" not in stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["depth.tif", "filler.bin"]
    assert output.read_bytes() == previous


def test_a_full_disk_fails_a_geopackage_and_leaves_nothing(small_disk):
    fill(small_disk, 48 * 1024)
    ring = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]
    with pytest.raises(OutputWriteError) as refused:
        with atomic_geopackage(str(small_disk / "hits.gpkg"), "hits", [Field("label", str)], "", 32636) as layer:
            for number in range(20_000):
                layer.add(ring, {"label": f"tile {number} " + "x" * 40})
    assert str(small_disk / "hits.gpkg") in str(refused.value) and "full" in str(refused.value)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler.bin"]


def test_a_full_disk_leaves_the_search_index_as_it_was(small_disk, tmp_path):
    folder = small_disk / "index"
    run("build_search_index", input=str(SAMPLE), index=str(folder), names=["olinda"], device="cpu")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    hits = run("search_text", index=str(folder), query="the sea", top_k=5, device="cpu")["results"]
    fill(small_disk, 16 * 1024)
    with pytest.raises(OutputWriteError, match="could not write .*index"):
        run("build_search_index", input=[str(SAMPLE), str(SAMPLE)], names=["olinda", "again"], index=str(folder),
            device="cpu")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert run("search_text", index=str(folder), query="the sea", top_k=5, device="cpu")["results"] == hits
    with pytest.raises(OutputWriteError):
        run("build_search_index", input=str(SAMPLE), index=str(small_disk / "new_index"), device="cpu")
    assert not (small_disk / "new_index").exists()


# --- signals and killed processes ---------------------------------------------------------------

def started_writing(process: subprocess.Popen, folder: Path) -> None:
    deadline = time.monotonic() + 120
    while not partials(folder):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the engine never started writing"
        time.sleep(0.02)


@pytest.mark.parametrize(("signal_number", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_cli_and_removes_its_temporary_file(tmp_path, depth_model, signal_number, exit_code):
    out = tmp_path / "out"
    out.mkdir()
    cli = engine_cli("run", "estimate_bathymetry", "--input", noisy_scene(tmp_path, 1500), "--output",
                     str(out / "depth.tif"), "--model", depth_model)
    started_writing(cli, out)
    cli.send_signal(signal_number)
    _, stderr = cli.communicate(timeout=60)
    assert cli.returncode == exit_code, stderr
    assert "no output was written" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []


def test_sigterm_stops_the_worker_mid_task_and_removes_its_temporary_file(tmp_path, depth_model):
    out = tmp_path / "out"
    out.mkdir()
    worker = subprocess.Popen([sys.executable, "-m", "engine.worker"], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    request = {"id": "1", "task": "estimate_bathymetry", "params": {
        "input": noisy_scene(tmp_path, 1500), "output": str(out / "depth.tif"), "model": depth_model}}
    worker.stdin.write(json.dumps(request) + "\n")
    worker.stdin.flush()
    started_writing(worker, out)
    worker.terminate()
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 143, stderr
    assert list(out.iterdir()) == []


def test_the_next_run_removes_what_a_killed_process_left(tmp_path, depth_model):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = out / f".depth{PARTIAL_MARKER}{dead.pid}-0badc0de.tif"
    running = out / f".depth{PARTIAL_MARKER}{os.getpid()}-c0ffee00.tif"  # another run still writing
    for path in (left, running):
        path.write_bytes(b"II*\0 half a GeoTIFF")
    run("estimate_bathymetry", input=write_raster(tmp_path / "s.tif", scene(40, 40), descriptions=BANDS),
        output=str(out / "depth.tif"), model=depth_model)
    assert sorted(p.name for p in out.iterdir()) == sorted(["depth.tif", running.name])


# --- damaged input ------------------------------------------------------------------------------

def test_a_truncated_geotiff_is_named_as_damaged(tmp_path, depth_model):
    path = tmp_path / "truncated.tif"
    data = np.random.default_rng(2).integers(100, 1000, size=(3, 512, 512)).astype("uint16")
    with rasterio.open(path, "w", driver="GTiff", width=512, height=512, count=3, dtype="uint16", crs=UTM36N,
                       transform=rasterio.transform.from_origin(580000, 3870000, 10, 10), tiled=True,
                       blockxsize=64, blockysize=64) as raster:
        raster.write(data)
        raster.descriptions = BANDS
    os.truncate(path, int(path.stat().st_size * 0.4))
    cli = engine_cli("run", "estimate_bathymetry", "--input", str(path), "--output", str(tmp_path / "d.tif"),
                     "--model", depth_model)
    _, stderr = cli.communicate(timeout=120)
    assert cli.returncode == 2, stderr
    message = stderr.strip().splitlines()[-1]
    assert f"input raster {path} is damaged" in message and "TIFFReadEncodedTile" in message, message
    assert "fetch or export it again" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["depth.onnx", "truncated.tif"]


# --- radiometric plausibility -------------------------------------------------------------------

@pytest.fixture
def reflectance_model(tmp_path):
    return write_model(tmp_path / "reflectance.onnx", replace(contract(), input_units="surface reflectance x 10000"),
                       [[1.0, 0.0, 0.0]], [0.0])


def as_8bit(data: np.ndarray) -> np.ndarray:
    return np.clip(data / np.percentile(data, 99) * 255, 0, 255).astype("uint8")


def reflectance_scene() -> np.ndarray:
    """Water (300-900) with a bright sandbar (2000-3500): surface reflectance x 10000."""
    data = scene(120, 120).astype("float32") * 0.6 + 300
    data[:, 40:60, :] += 2500
    return data.astype("uint16")


def test_plausible_reflectance_runs_without_warning(tmp_path, reflectance_model):
    result = run("estimate_bathymetry", input=write_raster(tmp_path / "r.tif", reflectance_scene(), descriptions=BANDS),
                 output=str(tmp_path / "d.tif"), model=reflectance_model)
    assert result["warnings"] == []


def test_an_8bit_rendering_is_flagged_and_refused_when_strict(tmp_path, reflectance_model):
    rendering = write_raster(tmp_path / "rgb.tif", as_8bit(reflectance_scene()), descriptions=BANDS)
    result = run("estimate_bathymetry", input=rendering, output=str(tmp_path / "d.tif"), model=reflectance_model)
    (warning,) = result["warnings"]
    assert "do not look like surface reflectance x 10000" in warning and "B02, B03, B04" in warning
    assert "8-bit (0-255) or 0-1 values" in warning and "--strict" in warning
    with pytest.raises(EngineError, match="Nothing was written: implausible input is refused"):
        run("estimate_bathymetry", input=rendering, output=str(tmp_path / "strict.tif"), model=reflectance_model,
            strict=True)
    assert not (tmp_path / "strict.tif").exists() and not partials(tmp_path)


def test_reflectance_given_to_an_8bit_model_is_flagged(tmp_path):
    model = write_model(tmp_path / "rgb.onnx", replace(contract(), input_units="8-bit values 0-255"),
                        [[1.0, 0.0, 0.0]], [0.0])
    result = run("estimate_bathymetry", input=write_raster(tmp_path / "r.tif", reflectance_scene(), descriptions=BANDS),
                 output=str(tmp_path / "d.tif"), model=model)
    (warning,) = result["warnings"]
    assert "lie outside 0 to 255 (100%, 100%, 100%)" in warning


def test_linear_power_given_to_a_decibel_model_is_flagged(tmp_path):
    sar = replace(contract(), bands=(Band("VV"), Band("VH")), mean=(-12.0, -19.0), std=(5.0, 5.0),
                  input_units="sigma0 in dB (10 log10)")
    model = write_model(tmp_path / "sar.onnx", sar, [[1.0, 0.0]], [0.0])
    decibels = np.random.default_rng(3).normal([[[-12.0]], [[-19.0]]], 4.0, size=(2, 80, 80)).astype("float32")
    for values, flagged in ((decibels, False), (10 ** (decibels / 10), True)):
        path = write_raster(tmp_path / "sar.tif", values, descriptions=("VV", "VH"))
        warnings = run("estimate_bathymetry", input=path, output=str(tmp_path / "d.tif"), model=model)["warnings"]
        assert bool(warnings) == flagged, warnings
    assert "bands VV, VH have a median above 0, as linear power has" in warnings[0]


def test_sampling_reads_only_a_grid_of_windows(tmp_path, reflectance_model):
    """The check stays cheap on large inputs: 64 windows of 32 px, whatever the raster's size."""
    from engine.radiometry import SAMPLE_SIZE, SAMPLE_WINDOWS, sample
    from engine.raster_io import open_input
    from engine.runtime import Model

    path = noisy_scene(tmp_path, 1000)
    with open_input(path, Model(reflectance_model).contract) as grid:
        values = sample(grid)
    assert values.shape == (3, SAMPLE_WINDOWS ** 2 * SAMPLE_SIZE ** 2)
    assert 300 <= values.min() and values.max() < 3000


@pytest.mark.slow
def test_qgis_process_reports_implausible_input_and_refuses_it_when_asked(qgis_process, tmp_path, reflectance_model):
    rendering = write_raster(tmp_path / "rgb.tif", as_8bit(reflectance_scene()), descriptions=BANDS)
    warned = qgis_process("run", "rsai:estimate_bathymetry", "--", f"INPUT={rendering}", f"MODEL={reflectance_model}",
                          f"OUTPUT={tmp_path / 'warned.tif'}")
    assert warned.returncode == 0, warned.log
    assert "do not look like surface reflectance x 10000" in warned.output["results"]["WARNINGS"]
    refused = qgis_process("run", "rsai:estimate_bathymetry", "--", f"INPUT={rendering}", f"MODEL={reflectance_model}",
                           "STRICT=true", f"OUTPUT={tmp_path / 'refused.tif'}")
    assert refused.returncode != 0 and "implausible input is refused" in refused.log
    assert not (tmp_path / "refused.tif").exists() and not partials(tmp_path)


def test_a_smaller_batch_gives_the_same_output(tmp_path, depth_model):
    """What the advice after an out-of-memory kill suggests: fewer tiles per model run, same result."""
    source = write_raster(tmp_path / "s.tif", scene(200, 230), descriptions=BANDS)
    run("estimate_bathymetry", input=source, output=str(tmp_path / "default.tif"), model=depth_model)
    run("estimate_bathymetry", input=source, output=str(tmp_path / "one.tif"), model=depth_model, batch_size=1)
    with rasterio.open(tmp_path / "default.tif") as default, rasterio.open(tmp_path / "one.tif") as one:
        assert np.array_equal(default.read(), one.read())
    with pytest.raises(EngineError, match="batch_size is 0; give a whole number >= 1"):
        run("estimate_bathymetry", input=source, output=str(tmp_path / "zero.tif"), model=depth_model, batch_size=0)
