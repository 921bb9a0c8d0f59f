"""Which device the engine runs each shipped model on, and in plain words why not on a CUDA GPU:
``python -m engine doctor [--json]`` (the plugin's Diagnostics view shows the same report).

The reasons are looked for in the order a user fixes them:
1. onnxruntime cannot be imported, or two onnxruntime flavours are installed (``onnxruntime`` and
   ``onnxruntime-gpu`` share one import folder: the last one installed wins, and removing one
   breaks the other);
2. no NVIDIA driver: ``libcuda.so.1`` (``nvcuda.dll`` on Windows) is not in the library search path
   and ``nvidia-smi`` is not on PATH; macOS has no CUDA at all;
3. the onnxruntime flavour installed has no CUDA provider (the CPU or DirectML build);
4. CUDA or cuDNN libraries that the onnxruntime-gpu build needs are not found where its CUDA provider
   looks: the folder ``RSAI_CUDA_DIR`` names (else the ``nvidia-*`` pip packages of the environment),
   then the system's library search (``LD_LIBRARY_PATH``, the ldconfig cache, the system folders; PATH
   on Windows). Each missing file is named;
5. everything is found but the CUDA provider still does not start: onnxruntime's own message.
Then one tile of the shipped bathymetry model runs on every device that can start, timed.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

CUDA_DIR_ENV = "RSAI_CUDA_DIR"  # a folder holding the CUDA and cuDNN libraries, searched first
FLAVOURS = {  # onnxruntime distributions (they all install the one import package onnxruntime)
    "onnxruntime": "CPU (CoreML on macOS)",
    "onnxruntime-gpu": "CUDA",
    "onnxruntime-directml": "DirectML",
    "onnxruntime-openvino": "OpenVINO",
    "onnxruntime-silicon": "CoreML",
}
SYSTEM_LIBRARY_DIRS = ("/lib64", "/usr/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                       "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib/wsl/lib", "/lib", "/usr/lib")
LIBRARY_ROLES = (("cudnn", "cuDNN"), ("cublasLt", "cuBLASLt"), ("cublas", "cuBLAS"), ("cudart", "CUDA runtime"),
                 ("curand", "cuRAND"), ("cufft", "cuFFT"), ("nvrtc", "NVRTC"))
CUDA_FIX = ("install them into the engine's environment with `pip install onnxruntime-gpu[cuda,cudnn]` (the Engine "
            f"set-up does this on a machine with an NVIDIA driver), or install the CUDA toolkit and cuDNN and name "
            f"their library folder in the environment variable {CUDA_DIR_ENV}")


@dataclass
class DeviceTest:
    device: str  # the engine's device name: cpu, cuda, or auto (DirectML or CoreML where listed)
    provider: str | None = None  # the onnxruntime provider that really ran the tile
    load_seconds: float | None = None
    tile_seconds: float | None = None
    error: str | None = None


@dataclass
class Diagnosis:
    python: str
    platform: str
    flavours: dict[str, str] = field(default_factory=dict)  # installed onnxruntime distributions: name -> version
    onnxruntime: str | None = None  # version imported, None when it cannot be imported
    cuda_build: str | None = None  # the CUDA version onnxruntime-gpu was built for
    providers: list[str] = field(default_factory=list)
    driver: str | None = None  # where the NVIDIA driver was found
    cuda_libraries: dict[str, str | None] = field(default_factory=dict)  # file -> where found (None: missing)
    problems: list[str] = field(default_factory=list)  # why CUDA is not used (or would not be), in plain words
    tests: list[DeviceTest] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)  # shipped model -> device it runs on

    @property
    def cuda_works(self) -> bool:
        return any(test.provider == "CUDAExecutionProvider" for test in self.tests)


def installed_flavours() -> dict[str, str]:
    """The onnxruntime distributions installed in this environment, by name."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name in FLAVOURS:
            found[name] = dist.version
    return dict(sorted(found.items()))


def ldconfig_cache() -> dict[str, str]:
    """Library file name -> path, from the dynamic loader's cache (``ldconfig -p``); empty elsewhere."""
    ldconfig = shutil.which("ldconfig") or next((p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig")
                                                   if os.path.exists(p)), None)
    if sys.platform != "linux" or ldconfig is None:
        return {}
    try:
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    cache = {}
    for line in listing.splitlines()[1:]:
        name, _, path = line.strip().partition(" => ")
        cache.setdefault(name.split(" (")[0], path.strip())
    return cache


def library_path_dirs() -> list[str]:
    """The folders the library loader searches before its cache: LD_LIBRARY_PATH (System32 and PATH on Windows)."""
    variable = "PATH" if sys.platform == "win32" else "LD_LIBRARY_PATH"
    listed = [d for d in os.environ.get(variable, "").split(os.pathsep) if d]
    if sys.platform == "win32":
        return [os.path.join(os.environ.get("SystemRoot", r"C:\Windows"), "System32"), *listed]
    return listed


def cuda_package_dirs() -> list[str]:
    """Where onnxruntime-gpu looks first for CUDA and cuDNN: ``RSAI_CUDA_DIR``, else the library
    folders of the environment's ``nvidia-*`` pip packages (onnxruntime.preload_dlls)."""
    if os.environ.get(CUDA_DIR_ENV):
        return [os.environ[CUDA_DIR_ENV]]
    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations or []) if spec else []
    return sorted(str(d) for root in roots for d in Path(root).glob("*/*") if d.name in ("lib", "bin") and d.is_dir())


def find_library(name: str, first: list[str], cache: dict[str, str]) -> str | None:
    """Where the loader finds the library file ``name``: the folders ``first``, the library path,
    the loader's cache, the system folders; None when nowhere."""
    for folder in (*first, *library_path_dirs()):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    if name in cache:
        return cache[name]
    return next((os.path.join(d, name) for d in SYSTEM_LIBRARY_DIRS if os.path.isfile(os.path.join(d, name))), None)


def nvidia_driver(cache: dict[str, str]) -> tuple[str | None, str]:
    """(where the NVIDIA driver was found, or None; what was looked for)."""
    if sys.platform == "darwin":
        return None, "macOS has no CUDA (NVIDIA stopped CUDA for macOS)"
    library = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    where = find_library(library, [], cache)
    smi = shutil.which("nvidia-smi")
    searched = ("PATH and System32" if sys.platform == "win32"
                else "LD_LIBRARY_PATH, the ldconfig cache and the system library folders")
    if where:
        return where, library
    if smi:
        return None, f"nvidia-smi is at {smi} but the driver library {library} is not in {searched}"
    return None, f"{library} is not in {searched} and nvidia-smi is not on PATH"


def needed_cuda_libraries(ort) -> list[str]:
    """The CUDA and cuDNN files this onnxruntime-gpu build loads, as onnxruntime lists them."""
    listing = getattr(ort, "_get_nvidia_dll_paths", None)
    if listing is None:
        return []
    return [path[-1] for path in listing(sys.platform == "win32", True, True)]


def library_role(name: str) -> str:
    return next((role for key, role in LIBRARY_ROLES if key.lower() in name.lower()), "CUDA")


def diagnose(run_tests: bool = True) -> Diagnosis:
    diagnosis = Diagnosis(python=f"{sys.executable} (Python {sys.version.split()[0]})", platform=sys.platform)
    diagnosis.flavours = installed_flavours()
    try:
        import onnxruntime as ort
    except Exception as err:  # a broken install raises ImportError, OSError or onnxruntime's own errors
        listed = ", ".join(f"{name} {version}" for name, version in diagnosis.flavours.items()) or "none"
        diagnosis.problems.append(
            f"onnxruntime cannot be imported ({type(err).__name__}: {err}); installed according to pip: {listed}. "
            "When two flavours were installed and one removed, the other's files are gone too: uninstall every "
            "onnxruntime package, then install one (run the Engine set-up again)."
        )
        return diagnosis
    diagnosis.onnxruntime = ort.__version__
    diagnosis.providers = list(ort.get_available_providers())
    diagnosis.cuda_build = getattr(ort, "cuda_version", None) or None
    if len(diagnosis.flavours) > 1:
        diagnosis.problems.append(
            f"{' and '.join(diagnosis.flavours)} are installed together; they share one folder and the last one "
            f"installed wins, so which one runs is an accident: uninstall all of them, then install only "
            f"{'onnxruntime-gpu' if 'onnxruntime-gpu' in diagnosis.flavours else 'one'} (run the Engine set-up again)."
        )
    cache = ldconfig_cache()
    diagnosis.driver, looked_for = nvidia_driver(cache)
    has_cuda_provider = "CUDAExecutionProvider" in diagnosis.providers
    if diagnosis.driver is None:
        diagnosis.problems.append(
            f"No NVIDIA driver: {looked_for}. Without an NVIDIA GPU the CPU is the right device; on a machine "
            "with one, install NVIDIA's driver (the CUDA toolkit alone is not enough).")
    elif not has_cuda_provider:
        flavour = ", ".join(diagnosis.flavours) or "onnxruntime"
        diagnosis.problems.append(
            f"An NVIDIA driver is installed ({diagnosis.driver}) but the engine's onnxruntime ({flavour}) has no "
            "CUDA provider: it is a CPU-only build. Install onnxruntime-gpu instead (run the Engine set-up again: "
            "it chooses onnxruntime-gpu where it finds the driver).")
    if has_cuda_provider:
        first = cuda_package_dirs()
        diagnosis.cuda_libraries = {name: find_library(name, first, cache) for name in needed_cuda_libraries(ort)}
        missing = [name for name, where in diagnosis.cuda_libraries.items()
                   if where is None and library_role(name) not in ("cuFFT", "NVRTC")]  # optional for onnxruntime
        if missing:
            where = (f"{CUDA_DIR_ENV}={first[0]}" if os.environ.get(CUDA_DIR_ENV) else
                     "the nvidia-* packages of this environment") + ", then the system's library search"
            diagnosis.problems.append(
                f"onnxruntime-gpu {diagnosis.onnxruntime} (built for CUDA {diagnosis.cuda_build}) needs libraries "
                f"that are not found ({where}): " + ", ".join(f"{name} ({library_role(name)})" for name in missing)
                + f". Fix: {CUDA_FIX}.")
    if run_tests:
        run_device_tests(diagnosis)
    return diagnosis


def run_device_tests(diagnosis: Diagnosis) -> None:
    """One tile of the shipped bathymetry model on the CPU, on CUDA where onnxruntime lists it, and on
    the engine's automatic choice where it lists DirectML or CoreML; then the device each shipped model
    runs on."""
    import numpy as np

    from engine.errors import EngineError
    from engine.runtime import MODELS_DIR, OTHER_ACCELERATORS, Model
    from engine.tasks import RASTER_TASKS

    path = RASTER_TASKS["estimate_bathymetry"].model_path({})
    other_accelerators = [p for p in OTHER_ACCELERATORS if p in diagnosis.providers]  # DirectML, CoreML: "auto"
    devices = ["cpu", *(["cuda"] if "CUDAExecutionProvider" in diagnosis.providers else []),
               *(["auto"] if other_accelerators else [])]
    for device in devices:
        test = DeviceTest(device)
        if device == "cuda":
            prepare_cuda()  # as an engine run does
        try:
            started = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # onnxruntime prints library failures on stdout
                model = Model(path, device)
            test.load_seconds = round(time.perf_counter() - started, 4)
            contract = model.contract
            tile = np.zeros((1, len(contract.bands), contract.tile_size, contract.tile_size), np.float32)
            model.run(tile)  # the first run includes onnxruntime's one-off allocations
            started = time.perf_counter()
            model.run(tile)
            test.tile_seconds = round(time.perf_counter() - started, 4)
            test.provider = model.provider
        except EngineError as err:
            test.error = str(err)
        diagnosis.tests.append(test)
    cuda_test = next((test for test in diagnosis.tests if test.device == "cuda"), None)
    if cuda_test is not None and not diagnosis.cuda_works and not diagnosis.problems:
        diagnosis.problems.append(
            "The NVIDIA driver and the CUDA libraries are found, but onnxruntime's CUDA provider did not start: "
            f"{cuda_test.error or 'it fell back to the CPU'}. Check that the driver supports CUDA "
            f"{diagnosis.cuda_build} (nvidia-smi shows the highest CUDA version it supports).")
    for model_path in sorted(MODELS_DIR.glob("*.onnx")):
        if diagnosis.cuda_works or other_accelerators:
            try:
                diagnosis.models[model_path.name] = Model(model_path, "auto").provider
            except EngineError as err:
                diagnosis.models[model_path.name] = f"cannot load: {err}"
        else:
            diagnosis.models[model_path.name] = "CPUExecutionProvider"


_CUDA_PREPARED = []


def prepare_cuda() -> None:
    """Before a CUDA session: where an NVIDIA driver is present, load the CUDA and cuDNN libraries
    from ``RSAI_CUDA_DIR`` or the environment's nvidia-* packages (onnxruntime.preload_dlls), so that
    the CUDA provider finds them where the doctor looked. Once a process; nothing without a driver."""
    import onnxruntime as ort

    if _CUDA_PREPARED or not hasattr(ort, "preload_dlls"):
        return
    _CUDA_PREPARED.append(True)
    if nvidia_driver(ldconfig_cache())[0] is not None:
        with contextlib.redirect_stdout(sys.stderr):  # it prints what it cannot load: stdout carries results
            ort.preload_dlls(directory=os.environ.get(CUDA_DIR_ENV) or None)


def why_not_cuda() -> str:
    """The first reason CUDA is not used, in a sentence (for a run's log); '' when nothing is found."""
    problems = diagnose(run_tests=False).problems
    return problems[0] if problems else ""


def report(diagnosis: Diagnosis) -> str:
    """The diagnosis in plain words, as the CLI prints it and the plugin shows it."""
    flavours = ", ".join(f"{name} {version} ({FLAVOURS[name]})" for name, version in diagnosis.flavours.items())
    lines = [f"Engine Python: {diagnosis.python}",
             f"onnxruntime: {flavours or 'not installed'}"
             + (f", built for CUDA {diagnosis.cuda_build}" if diagnosis.cuda_build else ""),
             f"Providers: {', '.join(diagnosis.providers) or 'none'}",
             f"NVIDIA driver: {diagnosis.driver or 'not found'}"]
    if diagnosis.cuda_libraries:
        lines.append("CUDA libraries: " + ", ".join(f"{name} {'found' if where else 'MISSING'}"
                                                     for name, where in diagnosis.cuda_libraries.items()))
    if diagnosis.cuda_works:
        lines.append("CUDA: used.")
    lines += [f"Why CUDA is not used: {problem}" if not diagnosis.cuda_works else f"Note: {problem}"
              for problem in diagnosis.problems]
    if diagnosis.tests:
        lines.append("One-tile test (shipped bathymetry model):")
        for test in diagnosis.tests:
            lines.append(f"  {test.device}: " + (
                f"ran on {test.provider}, {test.tile_seconds * 1000:.1f} ms a tile (session {test.load_seconds:.2f} s)"
                if test.error is None else f"failed: {test.error}"))
    if diagnosis.models:
        lines.append("Shipped models run on:")
        lines += [f"  {name}: {provider}" for name, provider in diagnosis.models.items()]
    return "\n".join(lines)


def as_json(diagnosis: Diagnosis) -> dict:
    return {**asdict(diagnosis), "cuda_works": diagnosis.cuda_works, "report": report(diagnosis)}


def main(argv: list[str] | None = None) -> int:
    """``python -m engine doctor [--json] [--no-tests]``; ``python -m engine.doctor`` also works when
    onnxruntime is too broken for the rest of the engine to import."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m engine doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the diagnosis as JSON (with the report)")
    parser.add_argument("--no-tests", dest="tests", action="store_false", help="skip the one-tile device tests")
    args = parser.parse_args(argv)
    diagnosis = diagnose(run_tests=args.tests)
    print(json.dumps(as_json(diagnosis), indent=2) if args.json else report(diagnosis))
    return 0


if __name__ == "__main__":
    sys.exit(main())
