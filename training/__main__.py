"""``python -m training``: simulate data, fit, evaluate and export models (MagicBathyNet, HyCoT, reBEN).

    python -m training simulate --out DIR --areas agia_napa --patches 400 --size 64 --seed 1
    python -m training simulate-scene --out-image X.tif --out-depth D.tif --out-classes C.tif
    python -m training fit --task bathymetry --data DIR --max-steps 500 --out runs/bathymetry
    python -m training evaluate --data DIR --checkpoint runs/bathymetry/checkpoint.pt
    python -m training export --checkpoint runs/bathymetry/checkpoint.pt --out model.onnx

    python -m training import --source magicbathynet-bathymetry --checkpoint bathymetry_s2_an.zip \
        --area agia_napa --modality s2 --norm-param norm_param_s2_an.npy --out models/bathymetry_s2_an.onnx
    python -m training import --source reben --checkpoint resnet50-all-v0.2.0/model.safetensors \
        --out models/reben_resnet50_s1s2.onnx
    python -m training import --source open-clip --preset remoteclip --checkpoint RemoteCLIP-ViT-B-32.pt \
        --out models/remoteclip_vit_b32.onnx
    python -m training import --source hycot --checkpoint hycot_cr16.pth.tar --out models/hycot_cr16.onnx

    HyCoT (HySpecNet-11k, simulate-hyperspectral, simulate-hyperspectral-scene): training/hycot/cli.py
    reBEN scene labels (prepare, federated, augmentation-consistency, ...): training/scene_labels/cli.py
    Crop maps (TSViT on PASTIS-R, simulate-pastis-r, simulate-crop-series): training/crop_maps/cli.py
    Text search (CLIP-style retrieval, make-caption-fixtures, convert-clip, ...): training/text_search/cli.py
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from training.crop_maps import cli as crop_maps
from training.hycot import cli as hycot
from training.datasets.magicbathynet_format import AREAS, MODALITIES
from training.scale_out import ScaleOut, add_scale_out_arguments
from training.scene_labels import cli as scene_labels
from training.text_search import cli as text_search

TASK_NAMES = ("bathymetry", "seabed", hycot.TASK, scene_labels.TASK, crop_maps.TASK, *text_search.TASKS)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    args.command_line = "python -m training " + shlex.join(argv)
    args.run(args)
    _end_process_group()


def _end_process_group() -> None:
    """Ends a DDP run's process group before the interpreter exits: left to the exit, gloo's threads
    aborted a torchrun process after its evaluation had finished ('terminate called without an active
    exception', seen in CI). No torch import where the command did not use it."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    simulate = commands.add_parser("simulate", help="write simulated patches in MagicBathyNet's layout")
    simulate.add_argument("--out", type=Path, required=True, help="dataset root to write")
    simulate.add_argument(
        "--areas", nargs="+", choices=AREAS, default=["agia_napa"], help="site profiles to simulate"
    )
    simulate.add_argument("--patches", type=int, default=400, help="patches per area")
    simulate.add_argument("--size", type=int, default=64, help="patch side in pixels")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument(
        "--modality", choices=MODALITIES, default="s2", help="folder name only: always Sentinel-2-like"
    )
    simulate.set_defaults(run=_simulate)

    scene = commands.add_parser(
        "simulate-scene", help="write one simulated scene: image, depth and class GeoTIFFs"
    )
    scene.add_argument("--out-image", type=Path, required=True, help="uint16 B04,B03,B02 reflectance x 10000")
    scene.add_argument(
        "--out-depth", type=Path, required=True, help="float32 depth, m positive down, NaN unknown"
    )
    scene.add_argument(
        "--out-classes", type=Path, required=True, help="uint8 seabed class index, 255 undefined"
    )
    scene.add_argument("--size", type=int, default=512, help="scene side in pixels")
    scene.add_argument("--seed", type=int, default=7)
    scene.add_argument("--site", choices=AREAS, default="agia_napa")
    scene.set_defaults(run=_simulate_scene)

    fit = commands.add_parser("fit", help="train a task and write <out>/checkpoint.pt")
    fit.add_argument("--task", choices=TASK_NAMES, required=True)
    _add_data_arguments(fit)
    fit.add_argument("--modality", choices=MODALITIES, default="s2")
    fit.add_argument("--out", type=Path, required=True, help="folder for the checkpoint and training logs")
    fit.add_argument("--max-steps", type=int, help="optimiser steps (give this or --epochs)")
    fit.add_argument("--epochs", type=int, help="passes over the training split")
    fit.add_argument("--batch-size", type=int, default=16)
    fit.add_argument(
        "--lr", type=float, help="learning rate (default: bathymetry 1e-4 as in the paper, seabed 1e-3, hycot 1e-3)"
    )
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--base-channels", type=int, default=32, help="bathymetry light U-Net width (paper: 32)")
    fit.add_argument(
        "--encoder", default="resnet18", help="seabed U-Net encoder (segmentation_models_pytorch name)"
    )
    fit.add_argument("--encoder-depth", type=int, default=3, help="seabed encoder stages (3-5)")
    fit.add_argument(
        "--decoder-channels", type=int, nargs="+", default=[64, 32, 16], help="one per encoder stage"
    )
    hycot.add_fit_arguments(fit)
    scene_labels.add_fit_arguments(fit)
    crop_maps.add_fit_arguments(fit)
    text_search.add_fit_arguments(fit)
    _add_device_arguments(fit)
    add_scale_out_arguments(fit)
    fit.set_defaults(run=_fit)

    evaluate = commands.add_parser("evaluate", help="print a checkpoint's metrics on a split as JSON")
    evaluate.add_argument("--task", choices=TASK_NAMES, help="checked against the checkpoint's task")
    _add_data_arguments(evaluate, areas_default=None)
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    evaluate.add_argument("--split", choices=("train", "val", "test"), default="test")
    evaluate.add_argument("--batch-size", type=int, help="default 16; hycot 2 (whole patches); scene-labels 32")
    evaluate.add_argument("--json-out", type=Path, help="also write the result here")
    _add_device_arguments(evaluate)
    add_scale_out_arguments(evaluate, fitting=False)
    evaluate.set_defaults(run=_evaluate)

    export = commands.add_parser(
        "export", help="write an ONNX model with its contract; checks parity with torch"
    )
    export.add_argument("--task", choices=TASK_NAMES, help="checked against the checkpoint's task")
    export.add_argument("--checkpoint", type=Path, required=True)
    export.add_argument(
        "--out", type=Path, required=True,
        help="model.onnx to write; hycot: a stem, writes <stem>_encoder.onnx and <stem>_decoder.onnx",
    )
    export.add_argument(
        "--tile-size", type=int, default=128, help="tile side the engine should use (any size: the networks pad inside)"
    )
    export.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels (hycot: always 0, pixelwise)")
    export.add_argument(
        "--metrics", type=Path, help="JSON written by `evaluate --json-out`, kept as provenance"
    )
    export.add_argument("--threads", type=int, help="torch CPU threads")
    export.add_argument(
        "--fp16", action="store_true",
        help="bathymetry, seabed: also write <out stem>.fp16.onnx (float16 weights and compute, float32 inputs and "
        "outputs) and record its parity with the float32 model; the engine runs it on CUDA",
    )
    export.set_defaults(run=_export)

    imported = commands.add_parser(
        "import", help="turn a published checkpoint into a contract ONNX model with a model card"
    )
    imported.add_argument("--source", required=True, help="who published it, e.g. magicbathynet-bathymetry")
    imported.add_argument(
        "--checkpoint", type=Path, required=True,
        help="the downloaded checkpoint (.zip, .pt, .pth, .ckpt, .safetensors)",
    )
    imported.add_argument("--out", type=Path, required=True, help="model.onnx to write (its card: model.md)")
    imported.add_argument("--sha256", help="expected SHA-256 of the checkpoint; a mismatch is refused")
    marine = imported.add_argument_group("MagicBathyNet (--source magicbathynet-*)")
    marine.add_argument("--area", choices=AREAS, help="area the weights were trained on (class table, depth scale)")
    marine.add_argument("--modality", choices=MODALITIES, help="imagery the weights were trained on")
    marine.add_argument(
        "--norm-param", type=Path,
        help="the area's normalisation file, norm_param_<modality>_<an|pl>.npy or .txt (minima row, maxima row)",
    )
    marine.add_argument(
        "--tile-size", type=int,
        help="tile side in input pixels, fixed in the graph (default: 2x the training window; aerial 1x); "
        "hycot: the engine's tile (default 64)",
    )
    # Choices repeated from training/scene_labels/importers.py and training/text_search/importers.py (which
    # import torch) so that the CLI starts fast; tests keep them equal.
    reben = imported.add_argument_group("reBEN / BigEarthNet v2.0 (--source reben; default: config.json beside it)")
    reben.add_argument("--backbone", help="timm name of the published network, e.g. resnet50, mobilevit_s, "
                       "vit_base_patch8_224")
    reben.add_argument("--bands", choices=("s1", "s2", "s1s2"), help="modality the weights were trained on")
    reben.add_argument(
        "--release", choices=("v0.2.0", "v0.1.1"),
        help="hub release (band orders differ); default: the -v0.x.y the checkpoint's folder name ends with",
    )
    clip = imported.add_argument_group(
        "open_clip CLIP (--source open-clip; writes <out stem>_image.onnx and <out stem>_text.onnx)"
    )
    clip.add_argument("--architecture", help="open_clip model name (ViT-B-32, ViT-L-14-quickgelu, RN50, ...) "
                      "or model-config JSON; with --preset: the published name")
    clip.add_argument(
        "--preset", choices=("remoteclip", "georsclip", "skyclip"),
        help="known release: picks the architecture and activation from the weights",
    )
    hycot_import = imported.add_argument_group(
        "HyCoT (--source hycot; writes <out stem>_encoder.onnx and <out stem>_decoder.onnx)"
    )
    hycot_import.add_argument(
        "--compression-ratio", type=int,
        help="the published CR (4, 8, 16, 32); default: inferred from the checkpoint's latent size",
    )
    imported.set_defaults(run=_import)

    statistics = commands.add_parser(
        "record-statistics", help="write the statistics of a model's training inputs (the engine's out-of-distribution "
        "flag) into its contract; the graph and weights are not touched")
    statistics.add_argument("--task", choices=(scene_labels.TASK, crop_maps.TASK, "hycot"), required=True)
    statistics.add_argument("--data", type=Path, required=True,
                            help="the data the model was trained on (scene-labels: the `prepare` store or reBEN root; "
                            "crop: the PASTIS-R root; hycot: the HySpecNet-11k root)")
    statistics.add_argument("--strategy", choices=("easy", "hard"), default="easy",
                            help="hycot: the split the model was trained on")
    statistics.add_argument("--model", type=Path, required=True, help="the .onnx to update in place")
    statistics.add_argument("--seed", type=int, default=0, help="pixel sampling and k-means seeding")
    statistics.set_defaults(run=_record_statistics)
    hycot.add_commands(commands)
    scene_labels.add_commands(commands)
    crop_maps.add_commands(commands)
    text_search.add_commands(commands)
    return parser


def _add_data_arguments(parser: argparse.ArgumentParser, areas_default=("agia_napa",)) -> None:
    parser.add_argument(
        "--data", type=Path, required=True,
        help="MagicBathyNet root (holds <area>/img/...); hycot: HySpecNet-11k root (holds hyspecnet-11k/); "
        "scene-labels: BigEarthNet v2.0 root or `prepare` store",
    )
    parser.add_argument(
        "--area", dest="areas", nargs="+", choices=AREAS, default=areas_default,
        help="areas to use" + ("" if areas_default else " (default: the training areas)"),
    )
    parser.add_argument(
        "--strategy", choices=("easy", "hard"),
        help="hycot: HySpecNet-11k split, easy (by patch) or hard (by tile); default easy, evaluate: as trained",
    )


def _add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads")


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _print_on_rank_zero(text: str) -> bool:
    """Prints ``text`` in the rank-0 process only (every process of a distributed run gets here);
    True there."""
    from training.trainer import is_rank_zero

    if is_rank_zero():
        print(text)
    return is_rank_zero()


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


def _fit(args: argparse.Namespace) -> None:
    _set_threads(args)
    if text_search.is_text_search(args):
        return text_search.run_fit(args)
    if scene_labels.is_scene_labels(args):
        return scene_labels.run_fit(args)
    if crop_maps.is_crop(args):
        return crop_maps.run_fit(args)
    if hycot.is_hycot(args):
        return hycot.run_fit(args)
    from training.fit import fit

    if not args.max_steps and not args.epochs:
        sys.exit("fit needs --max-steps or --epochs")
    if args.task == "bathymetry":
        model_options = {"base_channels": args.base_channels}
    else:
        model_options = {
            "encoder": args.encoder,
            "encoder_depth": args.encoder_depth,
            "decoder_channels": args.decoder_channels,
        }
    try:
        checkpoint = fit(
            args.task, args.data, args.out, args.areas, args.modality, args.max_steps, args.epochs,
            args.batch_size, args.lr, args.seed, model_options, args.accelerator, args.command_line,
            ScaleOut.from_arguments(args),
        )
    except ValueError as refused:  # bad data or options: one line, not a traceback
        sys.exit(f"fit refused: {refused}")
    _print_on_rank_zero(f"wrote {checkpoint}")


def _evaluate(args: argparse.Namespace) -> None:
    _set_threads(args)
    if ScaleOut.from_arguments(args).processes > 1 and text_search.is_text_search(args):
        sys.exit("evaluate ranks text-search galleries in one process; leave out --devices and --num-nodes")
    if text_search.is_text_search(args):
        result = text_search.run_evaluate(args)
    elif scene_labels.is_scene_labels(args):
        result = scene_labels.run_evaluate(args)
    elif crop_maps.is_crop(args):
        result = crop_maps.run_evaluate(args)
    elif hycot.is_hycot(args):
        result = hycot.run_evaluate(args)
    else:
        from training.evaluate import evaluate

        result = evaluate(
            args.checkpoint, args.data, args.areas, args.split, args.batch_size or 16, args.accelerator, args.task,
            ScaleOut.from_arguments(args),
        )
    result["command"] = args.command_line
    text = json.dumps(result, indent=2)
    if args.json_out and _print_on_rank_zero(text):
        args.json_out.write_text(text + "\n")


def _export(args: argparse.Namespace) -> None:
    _set_threads(args)
    metrics = json.loads(args.metrics.read_text()) if args.metrics else None
    if args.fp16 and (text_search.is_text_search(args) or scene_labels.is_scene_labels(args)
                      or crop_maps.is_crop(args) or hycot.is_hycot(args)):
        sys.exit("export --fp16 is offered for bathymetry and seabed models; export this task without --fp16")
    if text_search.is_text_search(args):
        return text_search.run_export(args, metrics)
    if scene_labels.is_scene_labels(args):
        return scene_labels.run_export(args, metrics)
    if crop_maps.is_crop(args):
        return crop_maps.run_export(args, metrics)
    if hycot.is_hycot(args):
        return hycot.run_export(args, metrics)
    from training.export import export_onnx

    result = export_onnx(
        args.checkpoint, args.out, args.tile_size, args.overlap, metrics, args.command_line, args.task, args.fp16
    )
    print(f"wrote {result['path']}; onnxruntime vs torch max abs diff {result['max_abs_diff']:.2e}")
    if args.fp16:
        parity = result["fp16"]
        print(f"wrote {parity['path']}; fp16 vs float32 max abs diff {parity['max_abs_diff']:.2e}, mean "
              f"{parity['mean_abs_diff']:.2e} (tolerance {parity['tolerance']}) on {parity['tiles']}")


def _record_statistics(args: argparse.Namespace) -> None:
    from engine.runtime import Model
    from training.input_statistics import record_in_model

    contract = Model(str(args.model), "cpu").contract
    if contract.task != {scene_labels.TASK: "scene_labels", crop_maps.TASK: "crop_map", "hycot": "hycot_encoder"}[args.task]:
        sys.exit(f"{args.model} is a {contract.task} model, not a {args.task} model"
                 + (" encoder (its decoder takes latents)" if args.task == "hycot" else ""))
    if args.task == "hycot":
        from training.hycot.data import training_input_statistics

        recorded = training_input_statistics(args.data, args.strategy, args.seed)
        records = {"": recorded}
    elif args.task == scene_labels.TASK:
        from training.scene_labels.data import training_input_statistics

        recorded = training_input_statistics(args.data, contract.provenance["modalities"], args.seed)
        records = {"": recorded}
    else:
        from training.crop_maps.data import training_input_statistics

        modalities = [modality.name for modality in contract.modalities]
        records = recorded = training_input_statistics(args.data, modalities,
                                                       contract.provenance["modalities"]["s1_orbit"], args.seed)
    record_in_model(args.model, recorded, args.command_line)
    for name, statistics in records.items():
        series = (f", over the median of a series' dates {statistics['series_distance_threshold']}"
                  if "series_distance_threshold" in statistics else "")
        print(f"{args.model}: {name + ': ' if name else ''}input statistics of {statistics['pixels']} training "
              f"pixels, distance threshold {statistics['distance_threshold']}{series} (flags "
              f"{1 - statistics['distance_quantile']:.1%} of held-out pixels)")


def _import(args: argparse.Namespace) -> None:
    from training.importers import ImportRefused, import_model

    try:
        result = import_model(args.source, args.checkpoint, args.out, args, args.sha256, args.command_line)
    except ImportRefused as refused:
        sys.exit(f"import refused: {refused}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
