"""GPU check of the shipped bathymetry model, self-contained for a machine with a GPU (issue #15).

Needs numpy, onnx, onnxruntime and, for the torch rows, torch: no rasterio, GDAL, QGIS or Lightning.
It prints ``onnxruntime.get_available_providers()`` first, then output Mpx/s of the shipped
bathymetry light U-Net over the same random reflectance tiles, in one run:
- ORT-CPU: the engine's ``Model`` on onnxruntime's CPU provider (plain ``session.run``);
- where onnxruntime has the CUDA provider: the engine's ``Model`` on CUDA (IO binding, pinned host
  buffers) in float32 and through its fp16 variant (training/fp16_variant.py), plain ``session.run``
  on CUDA, and batches submitted while the next is normalised (``Model.submit``); the fp16 variant's
  parity measured on the GPU;
- where torch sees a GPU: the same network in torch on CUDA (weights read from the ONNX file into
  training/marine/model.py), float32 and float16, host-to-device copies from pinned memory
  included, with its difference to ORT-CPU. This is the GPU figure where the machine's onnxruntime
  is a CPU-only package.
Two tilings: the contract's (8 tiles of 128 px a batch) and a GPU-sized one (8 tiles of 512 px;
the network is fully convolutional). Every row's time includes copying results back to the host.

    python3 bench/gpu_device_check.py [--seconds 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.runtime import CPU, CUDA, MODELS_DIR, Model  # noqa: E402
from training.fp16_variant import write_fp16_variant  # noqa: E402

MODEL = MODELS_DIR / "bathymetry_s2_sim.onnx"
TILINGS = ((8, 128), (8, 512))  # tiles a batch, tile side in px


def reflectance_batches(model: Model, tiles: int, side: int, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``count`` raw uint16 batches (reflectance x 10000, as the engine reads them) and the normaliser."""
    rng = np.random.default_rng(0)
    raw = [rng.integers(100, 3000, size=(tiles, 3, side, side), dtype=np.uint16) for _ in range(count)]
    mean = np.reshape(model.contract.mean, (1, 3, 1, 1)).astype(np.float32)
    std = np.reshape(model.contract.std, (1, 3, 1, 1)).astype(np.float32)
    return raw, np.stack([mean, std])


def normalise(raw: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (raw.astype(np.float32) - scale[0]) / scale[1]


def rate(run, batches: list, pixels: int, seconds: float) -> float:
    """Output Mpx/s of ``run`` over ``batches``, repeated for about ``seconds`` after one warm-up pass."""
    for batch in batches[:2]:
        run(batch)
    passes, began = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - began < seconds:
        for batch in batches:
            run(batch)
        passes += 1
    return passes * len(batches) * pixels / 1e6 / (time.perf_counter() - began)


def submitted_rate(model: Model, raw: list[np.ndarray], scale: np.ndarray, pixels: int, seconds: float) -> float:
    """Normalise batch k+1 on this thread while the model runs batch k (Model.submit)."""
    def run_all(_):
        pending = None
        for batch in raw:
            submitted = model.submit(normalise(batch, scale))
            if pending is not None:
                pending.result()
            pending = submitted
        pending.result()
    return rate(run_all, [None], pixels * len(raw), seconds)


def torch_rows(scale: np.ndarray, raw: list[np.ndarray], reference: np.ndarray, pixels: int, seconds: float) -> dict:
    """The ONNX file's network in torch on CUDA, float32 and float16, from pinned host memory."""
    import torch

    from training.marine.model import LightUNet

    weights = {tensor.name: torch.from_numpy(numpy_helper.to_array(tensor).copy())
               for tensor in onnx.load(str(MODEL)).graph.initializer}
    network = LightUNet(3, weights["head.weight"].shape[0], weights["encoder.0.0.weight"].shape[0])
    network.load_state_dict({name: weights[name] for name in network.state_dict()})  # the rest: graph constants
    network = network.eval().cuda()
    torch.backends.cudnn.benchmark = True  # each batch shape picks its fastest convolution once, in the warm-up
    rows = {}
    for dtype in (torch.float32, torch.float16):
        net = network.to(dtype)

        def run(batch: np.ndarray) -> np.ndarray:
            host = torch.from_numpy(normalise(batch, scale)).pin_memory()
            with torch.inference_mode():
                out = net(host.cuda(non_blocking=True).to(dtype))
            return out.float().cpu().numpy()
        name = str(dtype).removeprefix("torch.")
        rows[f"torch CUDA {name}"] = rate(run, raw, pixels, seconds)
        rows[f"torch CUDA {name} max abs diff to ORT-CPU"] = float(np.abs(run(raw[0]) - reference).max())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per row, roughly")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    providers = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__} providers: {providers}", flush=True)
    figures: dict = {"onnxruntime": ort.__version__, "providers": providers}
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        figures["torch"] = torch.__version__
    except ImportError:
        gpu = None
    print(f"torch sees GPU: {gpu}", flush=True)
    if CUDA not in providers:
        print("onnxruntime has no CUDA provider here (onnxruntime, not onnxruntime-gpu): its GPU rows are "
              "skipped; torch CUDA stands in for the GPU", flush=True)
    cpu_model = Model(MODEL, "cpu")
    cuda_models = {}
    if CUDA in providers:
        try:
            cuda_models["ORT-CUDA float32 (IO binding)"] = Model(MODEL, "cuda")
            folder = Path(tempfile.mkdtemp())
            copy = folder / MODEL.name
            shutil.copy(MODEL, copy)
            raw, scale = reflectance_batches(cpu_model, 8, 128, 4)
            record = write_fp16_variant(copy, {"image": normalise(np.concatenate(raw), scale)},
                                        "32 random reflectance tiles of 128 px")
            figures["fp16 parity on ORT-CPU"] = {k: record[k] for k in ("max_abs_diff", "mean_abs_diff")}
            cuda_models["ORT-CUDA fp16 variant (IO binding)"] = Model(copy, "cuda")
        except Exception as err:  # the engine says why CUDA did not start; report it and go on with the rest
            print(f"ORT-CUDA unusable: {err}", flush=True)
    for tiles, side in TILINGS:
        raw, scale = reflectance_batches(cpu_model, tiles, side, 8)
        pixels = tiles * side * side
        reference = cpu_model.run(normalise(raw[0], scale))
        rows = {"ORT-CPU (engine Model, session.run)": rate(lambda b: cpu_model.run(normalise(b, scale)), raw,
                                                            pixels, args.seconds)}
        for label, model in cuda_models.items():
            rows[label] = rate(lambda b, m=model: m.run(normalise(b, scale)), raw, pixels, args.seconds)
            rows[f"{label} max abs diff to ORT-CPU"] = float(np.abs(model.run(normalise(raw[0], scale))
                                                                    - reference).max())
            rows[f"{label}, normalise overlapped (Model.submit)"] = submitted_rate(model, raw, scale, pixels,
                                                                                   args.seconds)
            rows[f"{label}: graph run"] = f"{model.precision}, {model.device_batches.host_memory} host buffers"
        if cuda_models:
            session = cuda_models["ORT-CUDA float32 (IO binding)"].session
            rows["ORT-CUDA float32 plain session.run"] = rate(
                lambda b: session.run(None, {"image": normalise(b, scale)}), raw, pixels, args.seconds)
        if gpu:
            rows |= torch_rows(scale, raw, reference, pixels, args.seconds)
        cpu_rate = rows["ORT-CPU (engine Model, session.run)"]
        print(f"\n{tiles} tiles of {side} px a batch (output Mpx/s; x = over ORT-CPU):", flush=True)
        for label, value in rows.items():
            if isinstance(value, float) and "diff" not in label:
                print(f"  {label:<62} {value:9.2f}  x{value / cpu_rate:.1f}", flush=True)
            else:
                print(f"  {label:<62} {value}", flush=True)
        figures[f"{tiles}x{side}px"] = rows
    figures["providers_used"] = {label: model.provider for label, model in cuda_models.items()} | {
        "ORT-CPU": CPU}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
