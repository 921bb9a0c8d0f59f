"""`python -m engine doctor` on this machine (no NVIDIA GPU) and with the missing pieces of a CUDA
set-up simulated in the environment: a file named like the driver library on LD_LIBRARY_PATH, and
RSAI_CUDA_DIR pointing the CUDA library search at a folder with some of the libraries. The real
onnxruntime of the environment is used throughout; fake files are only the GPU pieces that cannot
exist here."""
import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from engine.doctor import find_library, ldconfig_cache, needed_cuda_libraries, nvidia_driver
from engine.runtime import MODELS_DIR

REPO_ROOT = Path(__file__).resolve().parent.parent
HAS_CUDA_PROVIDER = "CUDAExecutionProvider" in ort.get_available_providers()
needs_no_driver = pytest.mark.skipif(nvidia_driver(ldconfig_cache())[0] is not None,
                                     reason="this machine has an NVIDIA driver")
needs_gpu_build = pytest.mark.skipif(not HAS_CUDA_PROVIDER, reason="onnxruntime-gpu is not installed here")


def doctor(env_changes: dict, *options: str) -> dict:
    env = {**os.environ, **env_changes}
    done = subprocess.run([sys.executable, "-m", "engine", "doctor", "--json", *options], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def fake_driver(folder: Path) -> dict:
    """LD_LIBRARY_PATH with a file named like NVIDIA's driver library (it cannot load)."""
    folder.mkdir()
    (folder / "libcuda.so.1").write_bytes(b"not a library")
    return {"LD_LIBRARY_PATH": str(folder)}


@needs_no_driver
def test_this_machine_runs_every_shipped_model_on_the_cpu_and_says_there_is_no_driver():
    found = doctor({})
    assert found["driver"] is None and not found["cuda_works"]
    assert found["problems"][0].startswith("No NVIDIA driver: libcuda.so.1 is not in LD_LIBRARY_PATH")
    cpu = next(test for test in found["tests"] if test["device"] == "cpu")
    assert cpu["provider"] == "CPUExecutionProvider" and cpu["tile_seconds"] > 0 and cpu["error"] is None
    assert set(found["models"]) == {path.name for path in MODELS_DIR.glob("*.onnx")}
    assert set(found["models"].values()) == {"CPUExecutionProvider"}
    assert "Why CUDA is not used: No NVIDIA driver" in found["report"]
    assert f"cpu: ran on CPUExecutionProvider, {cpu['tile_seconds'] * 1000:.1f} ms a tile" in found["report"]


@needs_gpu_build
def test_a_driver_without_cuda_libraries_names_each_missing_library(tmp_path):
    empty = tmp_path / "cuda"
    empty.mkdir()
    found = doctor({**fake_driver(tmp_path / "driver"), "RSAI_CUDA_DIR": str(empty)}, "--no-tests")
    assert found["driver"] == str(tmp_path / "driver" / "libcuda.so.1")
    elsewhere = ldconfig_cache()
    expected_missing = [name for name in needed_cuda_libraries(ort) if find_library(name, [], elsewhere) is None
                        and not name.startswith(("libcufft", "libnvrtc"))]
    assert expected_missing, "the system itself holds every CUDA library: nothing to simulate"
    problem = next(p for p in found["problems"] if "needs libraries that are not found" in p)
    for name in expected_missing:
        assert name in problem
        assert found["cuda_libraries"][name] is None
    assert f"RSAI_CUDA_DIR={empty}" in problem and "pip install onnxruntime-gpu[cuda,cudnn]" in problem


@needs_gpu_build
def test_cuda_libraries_without_cudnn_name_cudnn_only(tmp_path):
    cuda = tmp_path / "cuda"
    cuda.mkdir()
    needed = needed_cuda_libraries(ort)
    cudnn = [name for name in needed if "cudnn" in name]
    if not cudnn or find_library(cudnn[0], [], ldconfig_cache()):
        pytest.skip("this onnxruntime needs no cuDNN, or the system has it")
    for name in needed:
        if name not in cudnn:
            (cuda / name).write_bytes(b"not a library")
    found = doctor({**fake_driver(tmp_path / "driver"), "RSAI_CUDA_DIR": str(cuda)}, "--no-tests")
    problem = next(p for p in found["problems"] if "needs libraries that are not found" in p)
    assert problem.split(": ", 1)[1].startswith(f"{cudnn[0]} (cuDNN).")
    assert all(found["cuda_libraries"][name] == str(cuda / name) for name in needed if name not in cudnn)


@needs_gpu_build
def test_everything_found_but_a_provider_that_does_not_start_gives_onnxruntimes_reason(tmp_path):
    cuda = tmp_path / "cuda"
    cuda.mkdir()
    for name in needed_cuda_libraries(ort):
        (cuda / name).write_bytes(b"not a library")
    found = doctor({**fake_driver(tmp_path / "driver"), "RSAI_CUDA_DIR": str(cuda)})
    assert not found["cuda_works"]
    cuda_test = next(test for test in found["tests"] if test["device"] == "cuda")
    assert cuda_test["error"] and cuda_test["provider"] is None
    assert found["problems"] == [found["problems"][0]] and found["problems"][0].startswith(
        "The NVIDIA driver and the CUDA libraries are found, but onnxruntime's CUDA provider did not start")
    cpu = next(test for test in found["tests"] if test["device"] == "cpu")
    assert cpu["provider"] == "CPUExecutionProvider" and cpu["tile_seconds"] > 0


@needs_no_driver
def test_a_run_on_the_cpu_says_why_not_on_a_gpu(tmp_path):
    from engine.tasks import run_task

    result = run_task("estimate_bathymetry", {"input": str(REPO_ROOT / "sample_data" / "agia_napa_sim_s2.tif"),
                                              "output": str(tmp_path / "depth.tif")}, lambda *_: None, lambda: False)
    assert result["device"] == "CPUExecutionProvider"
    assert result["device_note"].startswith("No NVIDIA driver")
