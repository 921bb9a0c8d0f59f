"""Importers of published weights: import time, ONNX-vs-torch difference, engine vs bare session.run.

For each MagicBathyNet importer a checkpoint in the authors' layout (random weights, their parameter
names, zipped) is imported, then the engine task runs the imported model over a Sentinel-2-sized scene;
for HyCoT (Fuchs, Rasti, Demir, WHISPERS 2024) a ``hycot_cr<N>.pth.tar`` in the authors' layout at the
published sizes is imported and its encoder compresses a simulated EnMAP-like scene (202 bands).
The overhead ratio is engine wall time / bare ``session.run`` over the same tiles (bench/throughput.py).
Usage: python bench/import_models.py [--size 192] [--segformer B5] [--hycot-size 128] [--hycot-cr 16]
    [--sources hycot ...]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from hycot_reference import ReferenceHyCoT, published_checkpoint  # noqa: E402
from magicbathynet_reference import ReferenceBathymetryUNet, published_zip, randomise  # noqa: E402
from throughput import bare_session_seconds  # noqa: E402

from engine.runtime import Model  # noqa: E402
from engine.tasks import run_task  # noqa: E402
from training.importers import import_model  # noqa: E402
from training.models.seabed_unet import SeabedUNet  # noqa: E402
from training.models.segformer import SegFormer  # noqa: E402
from training.simulation.hyperspectral import simulate_scene, write_scene_geotiff  # noqa: E402

LOW, HIGH = np.array([100.0, 200.0, 300.0]), np.array([1500.0, 1700.0, 1900.0])


def engine_seconds(task: str, scene: Path, model: str, out: Path) -> tuple[float, dict]:
    began = time.perf_counter()
    result = run_task(task, {"input": str(scene), "output": str(out), "model": model, "device": "cpu"},
                      lambda *_: None, lambda: False)
    return time.perf_counter() - began, result


def report(source: str, checkpoint: Path, options: argparse.Namespace, task: str, scene: Path, image: np.ndarray,
           work: Path) -> None:
    """Import ``checkpoint``, run its (first) model through the engine task and print one table row."""
    began = time.perf_counter()
    result = import_model(source, checkpoint, work / f"{source}.onnx", options)
    import_seconds = time.perf_counter() - began
    model = Model(result["paths"][0], "cpu")
    bare = min(bare_session_seconds(model, image.astype(np.float32)) for _ in range(2))
    engine, run = min((engine_seconds(task, scene, result["paths"][0], work / f"{source}.tif") for _ in range(2)),
                      key=lambda pair: pair[0])
    print(f"| {source} | {import_seconds:.1f} | {result['max_abs_diff']:.1e} | {run['tiles']} "
          f"({model.contract.tile_size}) | {engine:.1f} | {bare:.1f} | {engine / bare:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=192, help="scene side in Sentinel-2 pixels")
    parser.add_argument("--segformer", default="B5", help="MiT variant of the SegFormer checkpoint (published: B5)")
    parser.add_argument("--hycot-size", type=int, default=128, help="EnMAP-like scene side in 30 m pixels")
    parser.add_argument("--hycot-cr", type=int, default=16, choices=(4, 8, 16, 32), help="published HyCoT CR")
    parser.add_argument("--sources", nargs="+", help="only these importers' rows (default: every one)")
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
    cases = (  # source, the network in the authors' layout, the engine task
        ("magicbathynet-bathymetry", ReferenceBathymetryUNet, "estimate_bathymetry"),
        ("magicbathynet-seabed-unet", lambda: SeabedUNet(3, 5), "classify_seabed"),
        ("magicbathynet-seabed-segformer", lambda: SegFormer(args.segformer, 5), "classify_seabed"),
    )
    wanted = set(args.sources or [source for source, _, _ in cases] + ["hycot"])
    print(f"scenes: {args.size}x{args.size} S2 px, HyCoT {args.hycot_size}x{args.hycot_size} EnMAP px; CPU; "
          "the faster of two runs each")
    print("| source | import s | ONNX vs torch max diff | tiles (px) | engine s | bare session.run s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for source, network, task in (case for case in cases if case[0] in wanted):
        checkpoint = published_zip(work / f"{source}.zip", randomise(network(), seed=1))
        options = argparse.Namespace(area="agia_napa", modality="s2", norm_param=norm_param, tile_size=None)
        report(source, checkpoint, options, task, scene, image, work)
    if "hycot" not in wanted:
        return
    torch.manual_seed(1)
    hycot = published_checkpoint(work / f"hycot_cr{args.hycot_cr}.pth.tar", ReferenceHyCoT(202, args.hycot_cr))
    enmap = simulate_scene(args.hycot_size, args.hycot_size, seed=5)
    write_scene_geotiff(enmap, work / "enmap.tif")
    report("hycot", hycot, argparse.Namespace(tile_size=None, compression_ratio=None), "compress_hyperspectral",
           work / "enmap.tif", enmap.kept_bands, work)


if __name__ == "__main__":
    main()
