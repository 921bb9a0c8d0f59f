"""The reBEN scene-label commands of ``python -m training`` (arguments and runners; imports stay
light until a command runs).

    python -m training simulate-bigearthnet --out DIR --patches 500 --seed 0
    python -m training prepare --task scene-labels --data DIR --out STORE
    python -m training fit --task scene-labels --data STORE --modalities s1,s2 --model resnet50 \\
        --epochs 100 --out runs/ben
    python -m training evaluate --task scene-labels --data STORE --checkpoint runs/ben/checkpoint.pt
    python -m training export --task scene-labels --checkpoint runs/ben/checkpoint.pt --out model.onnx
    python -m training federated --clients 3 --non-iid dirichlet:0.5 --rounds 10 --model convmixer \\
        --data STORE
    python -m training federated --clients 100 --client-runtime ray --client-cpus 2 --data STORE ...
    python -m training simulate-pixel-series --out series.npz
    python -m training augmentation-consistency --data series.npz --augment brightness,grayscale
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.datasets.reben_format import MODALITY_BANDS
from training.scale_out import ScaleOut

TASK = "scene-labels"
# Repeated from training.scene_labels.model.MODELS, training.scene_labels.module.AUGMENTATIONS and
# training.scene_labels.federated.CLIENT_RUNTIMES (which import torch, timm and flwr) so that the CLI
# starts fast; a test keeps them equal.
MODELS = ("resnet50", "mlp-mixer", "convmixer", "poolformer")
AUGMENTS = ("none", "cutmix", "cutmix-lp")
CLIENT_RUNTIMES = ("in-process", "ray")
DEFAULT_CONSISTENCY_CHECKS = (
    "brightness:1.02,brightness:1.1,contrast:1.2,saturation:1.5,gamma:0.8,solarize:0.3,grayscale,"
    "noise:0.02,channel-shuffle"
)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """No flags beyond --data: a BigEarthNet v2.0 root or a `prepare` store."""


def add_import_arguments(imported: argparse.ArgumentParser) -> None:
    """Choices repeated from training/scene_labels/importers.py (which imports torch) so that the CLI starts
    fast; a test keeps them equal."""
    group = imported.add_argument_group("reBEN / BigEarthNet v2.0 (--source reben; default: config.json beside it)")
    group.add_argument("--backbone", help="timm name of the published network, e.g. resnet50, mobilevit_s, "
                       "vit_base_patch8_224")
    group.add_argument("--bands", choices=("s1", "s2", "s1s2"), help="modality the weights were trained on")
    group.add_argument(
        "--release", choices=("v0.2.0", "v0.1.1"),
        help="hub release (band orders differ); default: the -v0.x.y the checkpoint's folder name ends with",
    )


def add_fit_arguments(fit: argparse.ArgumentParser) -> None:
    group = fit.add_argument_group(
        "scene labels (--task scene-labels, reBEN; --data is a BigEarthNet v2 root or a `prepare` store)"
    )
    _add_model_arguments(group)
    group.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (reference: 0.01)")
    group.add_argument(
        "--warmup-steps", type=int, help="linear warm-up before the cosine decay (default: 5%% of steps)"
    )
    group.add_argument("--dropout", type=float, default=0.15, help="dropout and drop-path rate (reference: 0.15)")
    group.add_argument("--validate-every", type=int, help="steps between validations (default: every epoch)")
    group.add_argument("--patience", type=int, help="stop after this many validations without a better macro AP")


def _add_model_arguments(parser) -> None:
    parser.add_argument(
        "--modalities", choices=tuple(MODALITY_BANDS), default="s1,s2", metavar="{s1,s2|s2|s1}", help="input sensors"
    )
    parser.add_argument(
        "--model", choices=MODELS, default="resnet50",
        help="timm backbone; convmixer is ConvMixer-<width>/<depth> (kernel 7, patch 7, ReLU), default 768/32",
    )
    parser.add_argument("--model-width", type=int, help="backbone width (channels / embedding; default: reference)")
    parser.add_argument("--model-depth", type=int, help="blocks per stage / in all (default: reference)")
    parser.add_argument(
        "--augment", choices=AUGMENTS, default="none",
        help="cutmix: labels mixed by area ratio; cutmix-lp: labels recomputed from the mixed reference maps",
    )


def add_commands(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser(
        "simulate-bigearthnet", help="write a learnable fixture in BigEarthNet v2.0's exact layout"
    )
    simulate.add_argument("--out", type=Path, required=True, help="dataset root to write")
    simulate.add_argument("--patches", type=int, default=500, help="patches over 5 tiles (3 train, 1 val, 1 test)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.set_defaults(run=_simulate_bigearthnet)

    prepare = commands.add_parser("prepare", help="convert a dataset into a deep-learning-optimised store")
    prepare.add_argument("--task", choices=(TASK,), required=True)
    prepare.add_argument("--data", type=Path, required=True, help="BigEarthNet v2.0 root (metadata.parquet, ...)")
    prepare.add_argument("--out", type=Path, required=True, help="store folder to write (LMDB + metadata)")
    prepare.set_defaults(run=_prepare)

    series = commands.add_parser(
        "simulate-pixel-series", help="write simulated Sentinel-2 pixel time series (.npz) with phenology"
    )
    series.add_argument("--out", type=Path, required=True, help=".npz to write")
    series.add_argument("--pixels-per-cover", type=int, default=50, help="pixels of each of 6 land covers")
    series.add_argument("--dates", type=int, default=36, help="acquisitions over one year")
    series.add_argument("--seed", type=int, default=0)
    series.set_defaults(run=_simulate_pixel_series)

    consistency = commands.add_parser(
        "augmentation-consistency",
        help="score channel augmentations against the natural deviation of pixel time series",
    )
    consistency.add_argument(
        "--data", type=Path, required=True,
        help=".npz: reflectance [pixels, dates, bands] (0-1, NaN = no observation), dates, bands",
    )
    consistency.add_argument(
        "--augment", default=DEFAULT_CONSISTENCY_CHECKS,
        help="comma-separated NAME or NAME:VALUE (brightness, contrast, saturation: factor; gamma: exponent; "
        "solarize: threshold; noise: sigma; grayscale; channel-shuffle)",
    )
    consistency.add_argument("--csv", type=Path, help="also write the table here (default: <data>_consistency.csv)")
    consistency.add_argument("--seed", type=int, default=0, help="for random augmentations")
    consistency.set_defaults(run=_augmentation_consistency)

    federated = commands.add_parser("federated", help="FedAvg on Flower over non-IID clients (scene labels)")
    federated.add_argument("--data", type=Path, required=True, help="BigEarthNet v2 root or `prepare` store")
    federated.add_argument("--clients", type=int, default=3)
    federated.add_argument("--non-iid", default="dirichlet:1.0", help="iid or dirichlet:ALPHA (smaller: more skewed)")
    federated.add_argument("--rounds", type=int, default=10)
    federated.add_argument("--local-steps", type=int, default=10, help="optimiser steps per client per round")
    federated.add_argument("--batch-size", type=int, default=16)
    federated.add_argument("--lr", type=float, default=1e-3)
    federated.add_argument("--evaluate-split", choices=("val", "test"), default="test")
    federated.add_argument("--seed", type=int, default=0)
    federated.add_argument("--json-out", type=Path, help="also write the per-round report here")
    federated.add_argument("--out", type=Path, help="write the final global model as <out>/checkpoint.pt (for export)")
    federated.add_argument("--threads", type=int, help="torch CPU threads")
    federated.add_argument(
        "--client-runtime", choices=CLIENT_RUNTIMES, default="in-process",
        help="in-process: clients train one after another in this process; ray: as actors of Flower's simulation "
        "engine on Ray, as many at once as the CPUs allow (for many clients)",
    )
    federated.add_argument("--client-cpus", type=float, default=1.0, help="ray: CPUs each client actor holds")
    federated.add_argument(
        "--ray-address", help="ray: an existing Ray cluster (auto, ray://HEAD:10001) whose nodes see --data at the "
        "same path; default: a local Ray with this machine's CPUs",
    )
    _add_model_arguments(federated)
    federated.set_defaults(run=_federated)


def run_fit(args: argparse.Namespace) -> Path:
    from training.scene_labels.fit import fit_scene_labels
    from training.trainer import FitRun

    return fit_scene_labels(
        FitRun.from_arguments(args), args.modalities, args.model, args.model_width, args.model_depth, args.augment,
        args.weight_decay, args.warmup_steps, args.dropout, args.validate_every, args.patience,
    )


def run_evaluate(args: argparse.Namespace) -> dict:
    from training.scene_labels.evaluate import evaluate_scene_labels

    return evaluate_scene_labels(args.checkpoint, args.data, args.split, args.batch_size or 32, args.accelerator,
                                 ScaleOut.from_arguments(args))


def run_export(args: argparse.Namespace, metrics: dict | None) -> None:
    """Scene labels always export on reBEN's patch grid (120 px, no overlap): --tile-size and
    --overlap do not apply."""
    from training.scene_labels.export import export_scene_labels

    result = export_scene_labels(args.checkpoint, args.out, metrics, args.command_line)
    print(f"wrote {result['path']}; onnxruntime vs torch max abs diff {result['max_abs_diff']:.2e}")


def record_statistics(args: argparse.Namespace, contract) -> tuple[dict, dict]:
    """The model's training input statistics (recorded, and by name for the report)."""
    from training.scene_labels.data import training_input_statistics

    if contract.task != "scene_labels":
        sys.exit(f"{args.model} is a {contract.task} model, not a {TASK} model")
    recorded = training_input_statistics(args.data, contract.provenance["modalities"], args.seed)
    return recorded, {"": recorded}


def _simulate_bigearthnet(args: argparse.Namespace) -> None:
    from training.simulation.bigearthnet_fixture import write_bigearthnet_fixture

    metadata = write_bigearthnet_fixture(args.out, args.patches, args.seed)
    counts = metadata["split"].value_counts().to_dict()
    print(f"{args.out}: {len(metadata)} generated patches in BigEarthNet v2.0 layout ({counts})")


def _prepare(args: argparse.Namespace) -> None:
    from training.datasets.ben_store import write_store

    record = write_store(args.data, args.out, lambda done, total: print(f"{done}/{total} patches", flush=True))
    print(f"wrote {args.out}: {record['patches']} patches in {record['seconds']} s")


def _simulate_pixel_series(args: argparse.Namespace) -> None:
    from training.simulation.pixel_time_series import write_pixel_series

    path = write_pixel_series(args.out, args.pixels_per_cover, args.dates, args.seed)
    print(f"wrote {path}")


def _augmentation_consistency(args: argparse.Namespace) -> None:
    from training.scene_labels.consistency import consistency, format_table, load_pixel_series, write_csv

    specs = [spec for spec in args.augment.split(",") if spec.strip()]
    results = consistency(load_pixel_series(args.data), specs, args.seed)
    csv_path = args.csv or args.data.with_name(args.data.stem + "_consistency.csv")
    write_csv(results, csv_path)
    print(format_table(results))
    print(f"wrote {csv_path}")


def _federated(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from training.scene_labels.federated import run_federated

    logging.getLogger("flwr").setLevel(logging.WARNING)
    print(f"{'round':>5s} {'AP macro':>9s} {'AP micro':>9s} {'client loss':>12s} {'MB to clients':>14s} "
          f"{'MB from clients':>16s} {'s':>7s}")

    def report(round_report) -> None:
        print(
            f"{round_report.round:5d} {100 * round_report.ap_macro:9.2f} {100 * round_report.ap_micro:9.2f} "
            f"{round_report.client_train_loss:12.4f} {round_report.bytes_to_clients / 1e6:14.3f} "
            f"{round_report.bytes_from_clients / 1e6:16.3f} {round_report.seconds:7.1f}",
            flush=True,
        )

    result = run_federated(
        args.data, args.clients, args.rounds, args.non_iid, args.modalities, args.model, args.model_width,
        args.model_depth, args.augment, args.local_steps, args.batch_size, args.lr, args.evaluate_split,
        args.seed, report, args.out, args.command_line, args.client_runtime, args.client_cpus, args.ray_address,
    )
    result["command"] = args.command_line
    print(f"clients' patches {result['client_patches']}, classes {result['client_classes']}; "
          f"{result['parameters']} parameters" + (f"; wrote {result['checkpoint']}" if args.out else ""))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
