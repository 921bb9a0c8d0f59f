"""Importers of published weights: import time, ONNX-vs-torch difference, engine vs bare session.run.

For each MagicBathyNet importer a checkpoint in the authors' layout (random weights, their parameter
names, zipped) is imported, then the engine task runs the imported model over a Sentinel-2-sized scene;
the overhead ratio is engine wall time / bare ``session.run`` over the same tiles (bench/throughput.py).
Usage: python bench/import_models.py [--size 192] [--segformer B5]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from magicbathynet_reference import ReferenceBathymetryUNet, published_zip, randomise  # noqa: E402
from throughput import bare_session_seconds  # noqa: E402

from engine.runtime import Model  # noqa: E402
from engine.tasks import run_task  # noqa: E402
from training.importers import import_model  # noqa: E402
from training.models.seabed_unet import SeabedUNet  # noqa: E402
from training.models.segformer import SegFormer  # noqa: E402

LOW, HIGH = np.array([100.0, 200.0, 300.0]), np.array([1500.0, 1700.0, 1900.0])


def engine_seconds(task: str, scene: Path, model: str, out: Path) -> tuple[float, dict]:
    began = time.perf_counter()
    result = run_task(task, {"input": str(scene), "output": str(out), "model": model, "device": "cpu"},
                      lambda *_: None, lambda: False)
    return time.perf_counter() - began, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=192, help="scene side in Sentinel-2 pixels")
    parser.add_argument("--segformer", default="B5", help="MiT variant of the SegFormer checkpoint (published: B5)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rsai-import-bench-"))
    norm_param = work / "norm_param_s2_an.npy"
    np.save(norm_param, np.stack([LOW, HIGH]))
    image = np.random.default_rng(0).integers(200, 1500, size=(3, args.size, args.size)).astype(np.uint16)
    scene = work / "scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=args.size, height=args.size, count=3, dtype="uint16",
                       crs="EPSG:32636", transform=from_origin(580000, 3870000, 10, 10)) as dst:
        dst.write(image)
        for band, name in enumerate(("B04", "B03", "B02"), start=1):
            dst.set_band_description(band, name)
    cases = (
        ("magicbathynet-bathymetry", ReferenceBathymetryUNet(), "estimate_bathymetry"),
        ("magicbathynet-seabed-unet", SeabedUNet(3, 5), "classify_seabed"),
        ("magicbathynet-seabed-segformer", SegFormer(args.segformer, 5), "classify_seabed"),
    )
    print(f"scene {args.size}x{args.size} S2 px; CPU; the faster of two runs each")
    print("| source | import s | ONNX vs torch max diff | tiles (px) | engine s | bare session.run s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for source, network, task in cases:
        checkpoint = published_zip(work / f"{source}.zip", randomise(network, seed=1))
        options = argparse.Namespace(area="agia_napa", modality="s2", norm_param=norm_param, tile_size=None)
        began = time.perf_counter()
        result = import_model(source, checkpoint, work / f"{source}.onnx", options)
        import_seconds = time.perf_counter() - began
        model = Model(result["paths"][0], "cpu")
        bare = min(bare_session_seconds(model, image.astype(np.float32)) for _ in range(2))
        engine, run = min((engine_seconds(task, scene, result["paths"][0], work / f"{source}.tif") for _ in range(2)),
                          key=lambda pair: pair[0])
        print(f"| {source} | {import_seconds:.1f} | {result['max_abs_diff']:.1e} | {run['tiles']} "
              f"({model.contract.tile_size}) | {engine:.1f} | {bare:.1f} | {engine / bare:.2f} |")


if __name__ == "__main__":
    main()
