"""``python -m training``: simulate data, fit, evaluate, export and import models, one family at a time.

With no command it lists the families (training/families.py). Every family answers the same commands
and flags; ``--task`` picks the family (evaluate and export read it from the checkpoint):

    python -m training simulate --out DIR --areas agia_napa --patches 400 --size 64 --seed 1
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

Each family's own commands and examples: training/<family>/cli.py.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from types import ModuleType

from training.families import FAMILIES, TASK_NAMES, Family, checkpoint_task, family_of, listing
from training.scale_out import add_scale_out_arguments


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(listing())
        return
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
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n")[0],
                                     epilog="Run it with no command to list the families.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    clis = [family.cli() for family in FAMILIES]

    fit = commands.add_parser("fit", help="train a task and write <out>/checkpoint.pt")
    fit.add_argument("--task", choices=TASK_NAMES, required=True)
    fit.add_argument("--data", type=Path, required=True, help="the training data (the family's dataset root)")
    fit.add_argument("--out", type=Path, required=True, help="folder for the checkpoint and training logs")
    fit.add_argument("--max-steps", type=int, help="optimiser steps (give this or --epochs)")
    fit.add_argument("--epochs", type=int, help="passes over the training split")
    fit.add_argument("--batch-size", type=int, default=16)
    fit.add_argument("--lr", type=float, help="learning rate (default: the family's recipe)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--num-workers", type=int, default=0,
                     help="DataLoader worker processes (scene labels, crop maps)")
    _add_device_arguments(fit)
    add_scale_out_arguments(fit)
    for cli in clis:
        cli.add_data_arguments(fit)
        cli.add_fit_arguments(fit)
    fit.set_defaults(run=_fit)

    evaluate = commands.add_parser("evaluate", help="print a checkpoint's metrics on a split as JSON")
    evaluate.add_argument("--task", choices=TASK_NAMES, help="checked against the checkpoint's task")
    evaluate.add_argument("--data", type=Path, required=True, help="the data to evaluate on (the family's dataset root)")
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    evaluate.add_argument("--split", choices=("train", "val", "test"), default="test")
    evaluate.add_argument("--batch-size", type=int, help="default: the family's")
    evaluate.add_argument("--json-out", type=Path, help="also write the result here")
    _add_device_arguments(evaluate)
    add_scale_out_arguments(evaluate, fitting=False)
    for cli in clis:
        cli.add_data_arguments(evaluate)
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
        help=f"{', '.join(_tasks(family for family in FAMILIES if family.fp16_variant))}: also write "
        "<out stem>.fp16.onnx (float16 weights and compute, float32 inputs and outputs) and record its parity with "
        "the float32 model; the engine runs it on CUDA",
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
    imported.add_argument(
        "--tile-size", type=int,
        help="magicbathynet-*: tile side in input pixels, fixed in the graph (default: 2x the training window; aerial "
        "1x); hycot: the engine's tile (default 64)",
    )
    for cli in clis:
        cli.add_import_arguments(imported)
    imported.set_defaults(run=_import)

    recording = [family for family in FAMILIES if family.records_statistics]
    statistics = commands.add_parser(
        "record-statistics", help="write the statistics of a model's training inputs (the engine's out-of-distribution "
        "flag) into its contract; the graph and weights are not touched")
    statistics.add_argument("--task", choices=_tasks(recording), required=True)
    statistics.add_argument("--data", type=Path, required=True, help="the data the model was trained on")
    statistics.add_argument("--model", type=Path, required=True, help="the .onnx to update in place")
    statistics.add_argument("--seed", type=int, default=0, help="pixel sampling and k-means seeding")
    for family in recording:
        family.cli().add_data_arguments(statistics)
    statistics.set_defaults(run=_record_statistics)
    for cli in clis:
        cli.add_commands(commands)
    return parser


def _tasks(families) -> list[str]:
    return [task for family in families for task in family.tasks]


def _family(args: argparse.Namespace) -> Family:
    """The family of --task, or of the checkpoint's task (evaluate and export without --task)."""
    return family_of(args.task or checkpoint_task(args.checkpoint))


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


def _fit(args: argparse.Namespace) -> None:
    if not args.max_steps and not args.epochs:
        sys.exit("fit needs --max-steps or --epochs")
    _set_threads(args)
    try:
        checkpoint = family_of(args.task).cli().run_fit(args)
    except ValueError as refused:  # bad data or options: one line, not a traceback
        sys.exit(f"fit refused: {refused}")
    _print_on_rank_zero(f"wrote {checkpoint}")


def _evaluate(args: argparse.Namespace) -> None:
    _set_threads(args)
    try:
        result = _family(args).cli().run_evaluate(args)
    except ValueError as refused:  # a checkpoint of another task, bad data: one line, not a traceback
        sys.exit(f"evaluate refused: {refused}")
    result["command"] = args.command_line
    text = json.dumps(result, indent=2)
    if _print_on_rank_zero(text) and args.json_out:
        args.json_out.write_text(text + "\n")


def _export(args: argparse.Namespace) -> None:
    _set_threads(args)
    try:
        family = _family(args)
        if args.fp16 and not family.fp16_variant:
            offered = _tasks(candidate for candidate in FAMILIES if candidate.fp16_variant)
            sys.exit(f"export --fp16 is offered for {' and '.join(offered)} models; export this task without --fp16")
        family.cli().run_export(args, json.loads(args.metrics.read_text()) if args.metrics else None)
    except ValueError as refused:  # not our checkpoint, or one of another task: one line, not a traceback
        sys.exit(f"export refused: {refused}")


def _record_statistics(args: argparse.Namespace) -> None:
    from engine.runtime import Model
    from training.input_statistics import record_in_model

    cli: ModuleType = family_of(args.task).cli()
    contract = Model(str(args.model), "cpu").contract
    recorded, records = cli.record_statistics(args, contract)
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
