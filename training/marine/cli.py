"""The MagicBathyNet commands of ``python -m training`` (arguments and runners; imports stay light until a
command runs).

    python -m training simulate --out DIR --areas agia_napa --patches 400 --size 64 --seed 1
    python -m training simulate-scene --out-image X.tif --out-depth D.tif --out-classes C.tif
    python -m training fit --task bathymetry --data DIR --max-steps 500 --out runs/bathymetry
    python -m training fit --task seabed --data DIR --max-steps 500 --out runs/seabed
    python -m training evaluate --data DIR --checkpoint runs/bathymetry/checkpoint.pt
    python -m training export --checkpoint runs/bathymetry/checkpoint.pt --out model.onnx [--fp16]

``--data`` is a MagicBathyNet root (holds ``<area>/img/...``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from training.datasets.magicbathynet_format import AREAS, MODALITIES
from training.scale_out import ScaleOut


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("MagicBathyNet (--task bathymetry | seabed)")
    group.add_argument(
        "--area", dest="areas", nargs="+", choices=AREAS,
        help="areas to use (fit: one, default agia_napa; evaluate: default the training areas)",
    )


def add_import_arguments(imported: argparse.ArgumentParser) -> None:
    group = imported.add_argument_group("MagicBathyNet (--source magicbathynet-*)")
    group.add_argument("--area", choices=AREAS, help="area the weights were trained on (class table, depth scale)")
    group.add_argument("--modality", choices=MODALITIES, help="imagery the weights were trained on")
    group.add_argument(
        "--norm-param", type=Path,
        help="the area's normalisation file, norm_param_<modality>_<an|pl>.npy or .txt (minima row, maxima row)",
    )


def add_fit_arguments(fit: argparse.ArgumentParser) -> None:
    group = fit.add_argument_group("MagicBathyNet models (--task bathymetry | seabed; lr: bathymetry 1e-4 as in "
                                   "the paper, seabed 1e-3)")
    group.add_argument("--modality", choices=MODALITIES, default="s2")
    group.add_argument("--base-channels", type=int, default=32, help="bathymetry light U-Net width (paper: 32)")
    group.add_argument("--encoder", default="resnet18", help="seabed U-Net encoder (segmentation_models_pytorch name)")
    group.add_argument("--encoder-depth", type=int, default=3, help="seabed encoder stages (3-5)")
    group.add_argument("--decoder-channels", type=int, nargs="+", default=[64, 32, 16], help="one per encoder stage")


def add_commands(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser("simulate", help="write simulated patches in MagicBathyNet's layout")
    simulate.add_argument("--out", type=Path, required=True, help="dataset root to write")
    simulate.add_argument("--areas", nargs="+", choices=AREAS, default=["agia_napa"], help="site profiles to simulate")
    simulate.add_argument("--patches", type=int, default=400, help="patches per area")
    simulate.add_argument("--size", type=int, default=64, help="patch side in pixels")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--modality", choices=MODALITIES, default="s2", help="folder name only: always Sentinel-2-like")
    simulate.set_defaults(run=_simulate)

    scene = commands.add_parser("simulate-scene", help="write one simulated scene: image, depth and class GeoTIFFs")
    scene.add_argument("--out-image", type=Path, required=True, help="uint16 B04,B03,B02 reflectance x 10000")
    scene.add_argument("--out-depth", type=Path, required=True, help="float32 depth, m positive down, NaN unknown")
    scene.add_argument("--out-classes", type=Path, required=True, help="uint8 seabed class index, 255 undefined")
    scene.add_argument("--size", type=int, default=512, help="scene side in pixels")
    scene.add_argument("--seed", type=int, default=7)
    scene.add_argument("--site", choices=AREAS, default="agia_napa")
    scene.set_defaults(run=_simulate_scene)


def run_fit(args: argparse.Namespace) -> Path:
    from training.marine.fit import fit
    from training.trainer import FitRun

    if args.task == "bathymetry":
        model_options = {"base_channels": args.base_channels}
    else:
        model_options = {
            "encoder": args.encoder, "encoder_depth": args.encoder_depth, "decoder_channels": args.decoder_channels,
        }
    return fit(FitRun.from_arguments(args), args.task, args.areas or ("agia_napa",), args.modality, model_options)


def run_evaluate(args: argparse.Namespace) -> dict:
    from training.marine.evaluate import evaluate

    return evaluate(args.checkpoint, args.data, args.areas, args.split, args.batch_size or 16, args.accelerator,
                    args.task, ScaleOut.from_arguments(args))


def run_export(args: argparse.Namespace, metrics: dict | None) -> None:
    from training.marine.export import export_onnx

    result = export_onnx(
        args.checkpoint, args.out, args.tile_size, args.overlap, metrics, args.command_line, args.task, args.fp16
    )
    print(f"wrote {result['path']}; onnxruntime vs torch max abs diff {result['max_abs_diff']:.2e}")
    if args.fp16:
        parity = result["fp16"]
        print(f"wrote {parity['path']}; fp16 vs float32 max abs diff {parity['max_abs_diff']:.2e}, mean "
              f"{parity['mean_abs_diff']:.2e} (tolerance {parity['tolerance']}) on {parity['tiles']}")


def _simulate(args: argparse.Namespace) -> None:
    from training.simulation.shallow_water import write_magicbathynet_layout

    for area in args.areas:
        ids = write_magicbathynet_layout(args.out, area, args.patches, args.size, args.seed, args.modality)
        print(f"{args.out / area}: {len(ids)} simulated patches of {args.size}x{args.size} px")


def _simulate_scene(args: argparse.Namespace) -> None:
    from training.simulation.shallow_water import simulate_scene, write_scene_geotiffs

    scene = simulate_scene(args.size, args.size, args.seed, args.site)
    write_scene_geotiffs(scene, args.out_image, args.out_depth, args.out_classes)
    print(f"wrote {args.out_image}, {args.out_depth}, {args.out_classes}")
