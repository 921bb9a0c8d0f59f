"""Cost of the trust layers (issue #16) as a ratio to the plain run of the same model, in one run:
water quality layers (engine/quality.py), the out-of-distribution flag (engine/input_distribution.py)
and test-time augmentation (engine/uncertainty.py), on a simulated coastal scene with the shipped
bathymetry (regression) and seabed (classes) models.

The plain run is ``run_onnx`` with the same model: the same tiled pipeline and output, without
quality tests. A shipped file exported before these records gets them in a temporary copy, so that
every cost is measured whatever the file holds: ``test_time_augmentations`` "dihedral" (what
``python -m training export`` writes: fit trains with every flip and rotation) and the
``input_statistics`` of a second simulated scene cut into 64 px patches.
The out-of-distribution flag of the other tasks that record their training inputs is measured the
same way, the shipped model against a copy without ``input_statistics``: the HyCoT encoder
(principal-component projection of 202 bands) on a simulated EnMAP-like scene, and the crop model
(per-modality statistics, median over the dates, which reads every date once more) on a simulated
season.
Each figure is the best of two runs; ratios of wall time and of model time (inside session.run).
Usage: python bench/quality.py [--size 1024] [--other-size 64] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.contract import CONTRACT_KEY  # noqa: E402
from engine.onnx_metadata import write_metadata  # noqa: E402
from engine.runtime import Model  # noqa: E402
from engine.tasks import run_task  # noqa: E402
from tests.raster_fixtures import write_raster  # noqa: E402
from training.input_statistics import input_statistics  # noqa: E402
from training.simulation.shallow_water import BANDS, NIR_BAND, simulate_scene  # noqa: E402

PATCH = 64


def timed(task: str, params: dict) -> tuple[float, dict]:
    """Best wall seconds of two runs, and that run's result."""
    runs = []
    for _ in range(2):
        began = time.perf_counter()
        result = run_task(task, params, lambda fraction, message: None, lambda: False)
        runs.append((time.perf_counter() - began, result))
    return min(runs, key=lambda run: run[0])


def model_copy(model: str, path: Path, **fields) -> str:
    """A copy of ``model`` at ``path`` whose contract has ``fields`` replaced."""
    contract = json.loads(Model(model, "cpu").contract.to_json()) | fields
    write_metadata(model, {CONTRACT_KEY: json.dumps(contract)}, path, lambda written: Model(written, "cpu"))
    return str(path)


def missing_records(model: str) -> dict:
    """The records an older export lacks: what ``python -m training export`` writes now."""
    contract = Model(model, "cpu").contract
    added = {}
    if contract.test_time_augmentations == "none":
        added["test_time_augmentations"] = "dihedral"
    if not contract.input_statistics:
        scene = simulate_scene(512, 512, seed=7)
        added["input_statistics"] = input_statistics([
            scene.image[:, row:row + PATCH, col:col + PATCH].reshape(3, -1)
            for row in range(0, 512, PATCH) for col in range(0, 512, PATCH)])
    return added


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--other-size", type=int, default=64, help="side of the HyCoT and crop scenes (px)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rsai-bench-quality-"))
    scene = simulate_scene(args.size, args.size, seed=12, clouds=0.05, glint=0.05)
    profile = dict(crs=scene.site.crs, origin=(scene.transform.c, scene.transform.f))
    inputs = [write_raster(workdir / "visible.tif", scene.image, descriptions=BANDS, **profile),
              write_raster(workdir / f"T36SWD_{NIR_BAND}_10m.tif", scene.nir[None], **profile)]
    print(f"simulated coastal scene {args.size}x{args.size} px (5 % clouds, 5 % glint), device {args.device}")
    for task, model in (("estimate_bathymetry", "bathymetry_s2_sim.onnx"), ("classify_seabed", "seabed_s2_sim.onnx")):
        shipped = str(REPO / "models_onnx" / model)
        added = missing_records(shipped)
        recorded = model_copy(shipped, workdir / model, **added)
        plain_model = model_copy(recorded, workdir / f"plain_{model}", input_statistics={})
        common = {"input": inputs, "device": args.device, "output": str(workdir / "o.tif")}
        cases = [
            ("plain model run (run_onnx)", "run_onnx", plain_model, {}),
            ("quality layers + quality raster", task, plain_model, {"quality_layer": str(workdir / "q.tif")}),
            ("out-of-distribution flag", "run_onnx", recorded, {}),
            ("test-time augmentation", "run_onnx", plain_model, {"uncertainty": str(workdir / "u.tif")}),
            ("all: quality + flag + augmentation", task, recorded,
             {"quality_layer": str(workdir / "q.tif"), "uncertainty": str(workdir / "u.tif")}),
        ]
        print(f"\n{model}" + (f" (added to a copy: {', '.join(added)})" if added else ""))
        print(f"{'':38s} {'wall s':>8s} {'ratio':>7s} {'model s':>8s} {'ratio':>7s}")
        baseline = None
        for name, case_task, case_model, extra in cases:
            seconds, result = timed(case_task, {**common, "model": case_model, **extra})
            baseline = baseline or (seconds, result["model_seconds"])
            views = result.get("uncertainty", {}).get("augmentations")
            print(f"{name:38s} {seconds:8.2f} {seconds / baseline[0]:7.2f} {result['model_seconds']:8.2f} "
                  f"{result['model_seconds'] / baseline[1]:7.2f}" + (f"   ({views} views)" if views else ""))
    other_flags(workdir, args.other_size, args.device)


def other_flags(workdir: Path, size: int, device: str) -> None:
    """The out-of-distribution flag of the HyCoT encoder and the crop model vs the same run without it."""
    from training.simulation.crop_geotiffs import write_crop_time_series
    from training.simulation.hyperspectral import simulate_scene as simulate_hyperspectral
    from training.simulation.hyperspectral import write_scene_geotiff

    write_scene_geotiff(simulate_hyperspectral(size, size, seed=99), workdir / "enmap.tif")
    season = write_crop_time_series(workdir / "season", size=size, seed=77, year=2022, stack=True)
    runs = (
        ("hycot_cr8_enmap_sim_encoder.onnx", "compress_hyperspectral", {"input": str(workdir / "enmap.tif")}),
        ("crop_tsvit_s1s2_sim.onnx", "map_crops", {"s2": str(season.s2_stack), "s1": str(season.s1_stack)}),
    )
    print(f"\nout-of-distribution flag of other tasks, {size}x{size} px")
    print(f"{'':38s} {'wall s':>8s} {'ratio':>7s} {'flagged':>8s}")
    for model, task, inputs in runs:
        shipped = str(REPO / "models_onnx" / model)
        plain = model_copy(shipped, workdir / f"plain_{model}", input_statistics={})
        common = {**inputs, "device": device, "output": str(workdir / f"{task}.tif")}
        baseline, _ = timed(task, {**common, "model": plain})
        seconds, result = timed(task, {**common, "model": shipped})
        print(f"{task + ' without the flag':38s} {baseline:8.2f} {1.0:7.2f}")
        print(f"{task + ' with the flag':38s} {seconds:8.2f} {seconds / baseline:7.2f} "
              f"{result['out_of_distribution']['share']:8.1%}")


if __name__ == "__main__":
    main()
