"""HyCoT compression: throughput and the PSNR vs bit-rate curve against a PCA baseline.

For each shipped compression ratio (4, 8, 16, 32): compress and decompress a held-out simulated
EnMAP-like scene through the engine (megapixels per second, CPU; CUDA too where onnxruntime can
use it), and PSNR / mean spectral angle of the round trip, for the HyCoT model and for PCA with
the same number of latent components at the same bit rate (both store 16-bit codes; the bpppc
column counts 32 bits per latent value, as the HyCoT paper does), fitted on pixels of
the same simulated training data the shipped models were trained on (training/reproduce_hycot_models.sh:
simulate-hyperspectral --patches 300 --size 64 --patches-per-tile 4 --seed 1, hard split, train).
Usage: python bench/hycot.py [--size 128] [--fit-patches 60]
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import rasterio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.runtime import CUDA, MODELS_DIR, Model  # noqa: E402
from engine.tasks import run_task  # noqa: E402
from engine.tasks.hycot import RATIOS, decoder_beside, encoder_file  # noqa: E402
from training.hycot.pca_codec import fit_pca_codec  # noqa: E402
from training.simulation.hyperspectral import (  # noqa: E402
    KEPT_BANDS, band_name, simulate_scene, write_hyspecnet_layout, write_scene_geotiff,
)


def training_pixels(folder: Path, patches: int, per_patch: int = 400) -> np.ndarray:
    """Pixels [n, 202] from the train split of the shipped models' simulated training data."""
    write_hyspecnet_layout(folder, 300, 64, seed=1, patches_per_tile=4)
    root = folder / "hyspecnet-11k"
    with open(root / "splits" / "hard" / "train.csv") as split:
        names = [row[0] for row in csv.reader(split)][:patches]
    rng = np.random.default_rng(0)
    pixels = []
    for name in names:
        image = root / "patches" / name.replace("-DATA.npy", "-SPECTRAL_IMAGE.TIF")  # the split lists DATA.npy
        with rasterio.open(image) as patch:
            cube = patch.read(list(KEPT_BANDS)).reshape(len(KEPT_BANDS), -1).T
        pixels.append(cube[rng.choice(len(cube), per_patch, replace=False)])
    return np.concatenate(pixels)


def round_trip(scene: str, encoder: str, decoder: str, device: str, folder: Path) -> dict:
    """Quality of compress + decompress, and the speed of each step timed on its own."""
    def run(task: str, **params) -> tuple[dict, float]:
        began = time.perf_counter()
        result = run_task(task, {**params, "device": device}, lambda f, m: None, lambda: False)
        return result, time.perf_counter() - began

    with rasterio.open(scene) as src:
        megapixels = src.width * src.height / 1e6
    measured, _ = run("compress_hyperspectral", input=scene, output=str(folder / "q.tif"), model=encoder, quality=True)
    _, compress_seconds = run("compress_hyperspectral", input=scene, output=str(folder / "c.tif"), model=encoder)
    _, decompress_seconds = run("decompress_hyperspectral", input=str(folder / "c.tif"),
                                output=str(folder / "r.tif"), model=decoder)
    return {"bpppc": measured["bits_per_pixel_per_channel"], "psnr": measured["psnr_db"],
            "sa": measured["spectral_angle_deg"], "compress_mpx_s": megapixels / compress_seconds,
            "decompress_mpx_s": megapixels / decompress_seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--fit-patches", type=int, default=60)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rsai-bench-"))
    scene = str(folder / "heldout.tif")
    write_scene_geotiff(simulate_scene(args.size, args.size, seed=4242), scene)  # seed not used in training
    pixels = training_pixels(folder / "train", args.fit_patches)
    names = [band_name(b) for b in KEPT_BANDS]
    print(f"held-out simulated scene {args.size}x{args.size} px x 202 bands; PCA fitted on {len(pixels)} "
          "training pixels")
    print(f"{'CR':>3} {'bpppc':>6} | {'HyCoT PSNR':>10} {'SA':>6} {'comp Mpx/s':>10} {'dec Mpx/s':>9} | "
          f"{'PCA PSNR':>8} {'SA':>6}")
    gpu = CUDA in Model(MODELS_DIR / encoder_file(RATIOS[0]), "auto").session.get_providers()[:1]
    for ratio in RATIOS:
        encoder = MODELS_DIR / encoder_file(ratio)
        if not encoder.exists():
            print(f"{ratio:>3}  (no shipped model)")
            continue
        hycot = round_trip(scene, str(encoder), str(decoder_beside(str(encoder))), "cpu", folder)
        pca_encoder, pca_decoder = fit_pca_codec(pixels, ratio, names)
        onnx.save(pca_encoder, folder / f"pca{ratio}_encoder.onnx")
        onnx.save(pca_decoder, folder / f"pca{ratio}_decoder.onnx")
        pca = round_trip(scene, str(folder / f"pca{ratio}_encoder.onnx"), str(folder / f"pca{ratio}_decoder.onnx"),
                         "cpu", folder)
        print(f"{ratio:>3} {hycot['bpppc']:>6.3f} | {hycot['psnr']:>10.2f} {hycot['sa']:>6.2f} "
              f"{hycot['compress_mpx_s']:>10.3f} {hycot['decompress_mpx_s']:>9.3f} | {pca['psnr']:>8.2f} {pca['sa']:>6.2f}")
        if gpu:
            cuda = round_trip(scene, str(encoder), str(decoder_beside(str(encoder))), "cuda", folder)
            print(f"    CUDA: compress {cuda['compress_mpx_s']:.2f} Mpx/s, decompress {cuda['decompress_mpx_s']:.2f} Mpx/s")
    if not gpu:
        print("CUDA: not usable by onnxruntime on this machine; CPU figures only")


if __name__ == "__main__":
    main()
