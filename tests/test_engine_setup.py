"""The plugin installed from its zip into a fresh QGIS profile sets the engine up offline from a
wheelhouse built from this environment's packages, then runs rsai:estimate_bathymetry through
qgis_process with that environment; and the set-up's failures (no Python, a wheelhouse missing a
package, an install failing half-way) leave no broken environment and name the fix."""
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "sample_data" / "agia_napa_sim_s2.tif"
EXTRA_WHEELS = REPO_ROOT / ".cache" / "engine-wheels"  # the CPU onnxruntime wheel scripts/setup.sh keeps
VENV_BIN = Path(sys.executable).parent  # holds uv (the test extra)


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    from package_plugin import build

    return build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    """Wheels of the engine's CPU install, written from this environment's distributions (no network)."""
    assert list(EXTRA_WHEELS.glob("onnxruntime-*.whl")), f"no CPU onnxruntime wheel in {EXTRA_WHEELS}: run scripts/setup.sh"
    folder = tmp_path_factory.mktemp("wheelhouse")
    done = subprocess.run([sys.executable, "-m", "engine", "wheelhouse", "--out", str(folder), "--from-installed",
                           "--flavour", "cpu", "--find-links", str(EXTRA_WHEELS)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="module")
def engine_wheel(plugin_zip, tmp_path_factory) -> str:
    """The engine wheel the plugin zip carries, for set-ups run in this process."""
    folder = tmp_path_factory.mktemp("engine_wheel")
    with zipfile.ZipFile(plugin_zip) as bundle:
        name = next(n for n in bundle.namelist() if n.startswith("rs_qgis_plugin/engine_wheel/"))
        bundle.extract(name, folder)
    return str(folder / name)


def qgis_process(profile: Path, *args: str, path: str | None = None, uv_cache: Path | None = None) -> dict:
    """qgis_process with ``profile`` as its profile folder and no engine named in the environment
    (``uv_cache``: an empty cache for uv, as on a machine where it never ran)."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("RSAI_PYTHON", "QGIS_PLUGINPATH", "PYTHONPATH")}
    environment.update(QGIS_CUSTOM_CONFIG_PATH=str(profile), QT_QPA_PLATFORM="offscreen",
                       PATH=path or environment["PATH"], **({"UV_CACHE_DIR": str(uv_cache)} if uv_cache else {}))
    done = subprocess.run(["qgis_process.bin", "--json", *args], env=environment, capture_output=True, text=True,
                          timeout=900, cwd=profile)
    start = done.stdout.find("{")
    assert done.returncode == 0 and start >= 0, done.stdout + done.stderr
    return json.loads(done.stdout[start:])


def install_from_zip(archive: Path, profile: Path) -> Path:
    """What Plugins > Install from ZIP does: unpack into the profile's plugin folder and enable it."""
    plugins = profile / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(plugins)
    settings = profile / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    settings.parent.mkdir(parents=True)
    settings.write_text("[PythonPlugins]\nrs_qgis_plugin=true\n")
    return plugins / "rs_qgis_plugin"


@pytest.fixture(scope="module")
def installed_profile(plugin_zip, wheelhouse, tmp_path_factory):
    """A fresh profile with the plugin installed from the zip and the engine set up by rsai:setup_engine
    (uv on PATH); the seconds from unpacking the zip to the first bathymetry result."""
    profile = tmp_path_factory.mktemp("profile")
    started = time.monotonic()
    plugin = install_from_zip(plugin_zip, profile)
    set_up = qgis_process(profile, "run", "rsai:setup_engine", "--", f"WHEELHOUSE={wheelhouse}",
                          path=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", uv_cache=profile / "uv-cache")
    output = profile / "depth.tif"
    ran = qgis_process(profile, "run", "rsai:estimate_bathymetry", "--", f"INPUT={SAMPLE}", f"OUTPUT={output}")
    seconds = time.monotonic() - started
    print(f"\nZIP install to first result with a local wheelhouse: {seconds:.1f} s "
          f"(set-up {set_up['results']['SECONDS']} s)")
    return {"profile": profile, "plugin": plugin, "set_up": set_up["results"], "ran": ran["results"],
            "output": output, "seconds": seconds}


@pytest.mark.slow
def test_zip_install_sets_the_engine_up_outside_the_plugin_and_runs_bathymetry(installed_profile):
    import rasterio

    profile, set_up = installed_profile["profile"], installed_profile["set_up"]
    environment = profile / "profiles" / "default" / "rsai-toolbox" / "engine-env"
    assert set_up["ENGINE_PYTHON"] == str(environment / "bin" / "python")
    assert set_up["FLAVOUR_USED"] == "cpu"  # no NVIDIA driver here
    assert not str(environment).startswith(str(installed_profile["plugin"]))
    assert not (environment.parent / "engine-env.new").exists()
    log = (environment.parent / "engine-setup.log").read_text()
    assert "uv venv" in log and "--offline" in log and "no NVIDIA driver is installed" in log
    assert "cpu: ran on CPUExecutionProvider" in log  # the new environment ran a tile before it was swapped in
    engine_file = subprocess.run([set_up["ENGINE_PYTHON"], "-c", "import engine; print(engine.__file__)"],
                                 capture_output=True, text=True, cwd=profile).stdout
    assert engine_file.startswith(str(environment))  # the engine from the plugin's wheel, not this checkout
    assert installed_profile["ran"]["DEVICE_USED"] == "CPUExecutionProvider"
    with rasterio.open(installed_profile["output"]) as depth, rasterio.open(SAMPLE) as scene:
        assert depth.crs == scene.crs and depth.shape == scene.shape
        assert (depth.read(1, masked=True).count()) > 0


@pytest.mark.slow
def test_after_a_plugin_update_the_kept_environment_is_named_outdated(installed_profile, tmp_path, qgis_app):
    from rs_qgis_plugin.engine_setup import outdated_engine

    environment = installed_profile["profile"] / "profiles" / "default" / "rsai-toolbox" / "engine-env"
    carried = next((installed_profile["plugin"] / "engine_wheel").glob("*.whl"))
    assert outdated_engine(environment, carried) == ""
    newer = tmp_path / carried.name.replace("0.1.0", "0.2.0")
    assert outdated_engine(environment, newer).startswith(
        f"The plugin was updated: it carries {newer.name} but its engine environment holds {carried.name}.")


@pytest.mark.slow
def test_a_pip_failure_half_way_keeps_the_previous_environment(installed_profile, wheelhouse, engine_wheel, tmp_path,
                                                               qgis_app):
    from rs_qgis_plugin.engine_setup import SetupFailed, set_up_engine

    broken = tmp_path / "broken"
    shutil.copytree(wheelhouse, broken)
    wheel = next(broken.glob("rasterio-*.whl"))  # damaged in the middle of its data: pip fails while unpacking
    data = bytearray(wheel.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)
    wheel.write_bytes(bytes(data))
    environment = installed_profile["profile"] / "profiles" / "default" / "rsai-toolbox" / "engine-env"
    before = sorted(path.name for path in (environment / "lib").rglob("*.dist-info"))
    with pytest.raises(SetupFailed) as failed:
        set_up_engine(flavour="cpu", wheelhouse=str(broken), target=environment, source=engine_wheel)
    message = str(failed.value)
    assert f"The previous engine environment {environment} is unchanged." in message
    assert "build the wheelhouse again" in message
    last_run = (environment.parent / "engine-setup.log").read_text().split("== Engine set-up")[-1]
    assert "Installing collected packages" in last_run  # pip failed half-way: while installing
    assert not (environment.parent / "engine-env.new").exists()
    assert sorted(path.name for path in (environment / "lib").rglob("*.dist-info")) == before
    assert subprocess.run([str(environment / "bin" / "python"), "-c", "import engine.tasks"],
                          cwd=environment).returncode == 0


def test_a_wheelhouse_missing_a_package_names_it_and_the_fix(wheelhouse, engine_wheel, tmp_path, qgis_app):
    from rs_qgis_plugin.engine_setup import SetupFailed, set_up_engine

    partial = tmp_path / "partial"
    shutil.copytree(wheelhouse, partial)
    next(partial.glob("affine-*.whl")).unlink()
    target = tmp_path / "env" / "engine-env"
    with pytest.raises(SetupFailed) as failed:
        set_up_engine(flavour="cpu", wheelhouse=str(partial), target=target, source=engine_wheel)
    message = str(failed.value)
    assert f"The wheelhouse {partial} lacks affine" in message
    assert f"scripts/build_wheelhouse.sh {partial} cpu" in message and "No engine environment was created." in message
    assert not target.exists() and not target.with_name("engine-env.new").exists()


def test_no_python_found_says_how_to_get_one(tmp_path, monkeypatch, qgis_app):
    from rs_qgis_plugin.engine_setup import SetupFailed, set_up_engine

    monkeypatch.setenv("PATH", str(tmp_path))  # no interpreter on PATH
    with pytest.raises(SetupFailed, match=r"No Python 3\.10 or later was found on this machine .*sudo apt install "
                                          r"python3 python3-venv.*choose the interpreter"):
        set_up_engine(target=tmp_path / "env" / "engine-env")
    with pytest.raises(SetupFailed, match="The chosen interpreter .* cannot hold the engine: it does not run"):
        set_up_engine(python=str(tmp_path / "python3"), target=tmp_path / "env" / "engine-env")
    assert not (tmp_path / "env" / "engine-env").exists()


def test_the_flavour_follows_the_nvidia_driver_the_engine_probe_finds(tmp_path, qgis_app, monkeypatch):
    from engine.doctor import ldconfig_cache, nvidia_driver
    from rs_qgis_plugin.engine_setup import choose_flavour

    if nvidia_driver(ldconfig_cache())[0] is not None:
        pytest.skip("this machine has an NVIDIA driver")
    assert choose_flavour("auto", sys.executable, str(REPO_ROOT)) == ("cpu", "no NVIDIA driver is installed")
    (tmp_path / "libcuda.so.1").write_bytes(b"not a library")  # the driver library, simulated
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    assert choose_flavour("auto", sys.executable, str(REPO_ROOT)) == (
        "cuda", f"an NVIDIA driver is installed ({tmp_path / 'libcuda.so.1'})")
    assert choose_flavour("directml", sys.executable, str(REPO_ROOT)) == ("directml", "as chosen")


def engine_doctor(python: str, **environment_changes) -> dict:
    done = subprocess.run([python, "-m", "engine", "doctor", "--json", "--no-tests"], capture_output=True, text=True,
                          env={**os.environ, **environment_changes}, timeout=300, cwd=Path(python).parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_a_driver_beside_the_cpu_onnxruntime_is_explained(installed_profile, tmp_path):
    (tmp_path / "libcuda.so.1").write_bytes(b"not a library")  # the driver library, simulated
    found = engine_doctor(installed_profile["set_up"]["ENGINE_PYTHON"], LD_LIBRARY_PATH=str(tmp_path))
    assert found["flavours"] == {"onnxruntime": found["onnxruntime"]}  # the real CPU package
    assert any("has no CUDA provider: it is a CPU-only build. Install onnxruntime-gpu instead" in problem
               for problem in found["problems"])


@pytest.mark.slow
def test_the_zip_install_offers_the_catalogue_from_the_engine_wheel(installed_profile):
    catalogue = json.loads((REPO_ROOT / "engine" / "published_models.json").read_text())["models"]
    described = qgis_process(installed_profile["profile"], "help", "rsai:download_model")
    options = described["parameters"]["MODEL"]["available_options"]
    assert len(options) == len(catalogue) and options["0"].startswith(catalogue[0]["title"])

@pytest.mark.slow
def test_two_onnxruntime_flavours_installed_are_named(installed_profile, tmp_path):
    """Last in this module: it leaves the set-up environment with both flavours."""
    import importlib.metadata

    from engine.wheelhouse import repack

    try:
        gpu = importlib.metadata.distribution("onnxruntime-gpu")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("onnxruntime-gpu is not installed here")
    python = installed_profile["set_up"]["ENGINE_PYTHON"]
    wheel = repack(gpu, tmp_path)
    subprocess.run([str(VENV_BIN / "uv"), "pip", "install", "--python", python, "--offline", "--no-deps", str(wheel)],
                   check=True, capture_output=True)
    found = engine_doctor(python)
    assert set(found["flavours"]) == {"onnxruntime", "onnxruntime-gpu"}
    assert found["problems"][0].startswith("onnxruntime and onnxruntime-gpu are installed together; they share one folder")

