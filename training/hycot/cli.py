"""The HyCoT commands of ``python -m training`` (arguments and runners; imports stay light until a
command runs).

    python -m training simulate-hyperspectral --out DIR --patches 300 --size 64 --seed 1
    python -m training simulate-hyperspectral-scene --out scene.tif --size 256 --seed 5
    python -m training fit --task hycot --cr 8 --data DIR --strategy hard --max-steps 300 --out runs/hycot
    python -m training evaluate --task hycot --data DIR --checkpoint runs/hycot/checkpoint.pt
    python -m training export --task hycot --checkpoint runs/hycot/checkpoint.pt --out models_onnx/hycot_cr8

``--data`` is a HySpecNet-11k root (the folder holding ``hyspecnet-11k/``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.scale_out import ScaleOut

TASK = "hycot"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument_group("HySpecNet-11k (--task hycot)").add_argument(
        "--strategy", choices=("easy", "hard"),
        help="HySpecNet-11k split, easy (by patch) or hard (by tile); default easy, evaluate: as trained",
    )


def add_import_arguments(imported: argparse.ArgumentParser) -> None:
    group = imported.add_argument_group(
        "HyCoT (--source hycot; writes <out stem>_encoder.onnx and <out stem>_decoder.onnx)"
    )
    group.add_argument(
        "--compression-ratio", type=int,
        help="the published CR (4, 8, 16, 32); default: inferred from the checkpoint's latent size",
    )


def add_fit_arguments(fit: argparse.ArgumentParser) -> None:
    hycot = fit.add_argument_group("HyCoT (--task hycot; defaults are the paper's)")
    hycot.add_argument("--cr", type=float, default=8, help="compression ratio: latent values L = ceil(bands / CR)")
    hycot.add_argument(
        "--pixels-per-patch", type=int, default=16, help="K: each step uses K x K random pixels of every patch"
    )
    hycot.add_argument("--dim", type=int, default=64, help="token width")
    hycot.add_argument("--depth", type=int, default=5, help="transformer blocks")
    hycot.add_argument("--heads", type=int, default=4, help="attention heads")
    hycot.add_argument("--head-dim", type=int, default=16, help="width of each attention head")
    hycot.add_argument("--mlp-dim", type=int, default=8, help="transformer MLP width")
    hycot.add_argument("--hidden-dim", type=int, default=1024, help="hidden width of the latent and decoder MLPs")
    hycot.add_argument(
        "--final-norm", action="store_true",
        help="LayerNorm after the last block, as in the shipped models (the paper's model has none)",
    )


def add_commands(commands) -> None:
    hyperspectral = commands.add_parser(
        "simulate-hyperspectral", help="write simulated EnMAP-like patches in HySpecNet-11k's layout"
    )
    hyperspectral.add_argument("--out", type=Path, required=True, help="dataset root to write (gets hyspecnet-11k/)")
    hyperspectral.add_argument("--patches", type=int, default=300, help="patches in all")
    hyperspectral.add_argument("--size", type=int, default=64, help="patch side in pixels (HySpecNet-11k: 128)")
    hyperspectral.add_argument("--patches-per-tile", type=int, default=9, help="patches cut from each simulated tile")
    hyperspectral.add_argument("--seed", type=int, default=0)
    hyperspectral.set_defaults(run=simulate_patches)

    hyperspectral_scene = commands.add_parser(
        "simulate-hyperspectral-scene", help="write one simulated 202-band EnMAP-like scene GeoTIFF"
    )
    hyperspectral_scene.add_argument("--out", type=Path, required=True, help="int16 reflectance x 10000, 30 m")
    hyperspectral_scene.add_argument("--size", type=int, default=256, help="scene side in pixels")
    hyperspectral_scene.add_argument("--seed", type=int, default=5)
    hyperspectral_scene.add_argument(
        "--landscape", choices=("agricultural", "forest", "urban", "arid", "coastal"), help="default: drawn by seed"
    )
    hyperspectral_scene.set_defaults(run=simulate_scene)



def run_fit(args: argparse.Namespace) -> Path:
    from training.hycot.fit import fit_hycot
    from training.trainer import FitRun

    model_options = {
        key: getattr(args, key) for key in ("dim", "depth", "heads", "head_dim", "mlp_dim", "hidden_dim", "final_norm")
    }
    return fit_hycot(
        FitRun.from_arguments(args), args.cr, args.strategy or "easy", args.pixels_per_patch, model_options
    )


def run_evaluate(args: argparse.Namespace) -> dict:
    from training.hycot.evaluate import evaluate_hycot

    return evaluate_hycot(args.checkpoint, args.data, args.strategy, args.split, args.batch_size or 2, args.accelerator,
                          ScaleOut.from_arguments(args))


def run_export(args: argparse.Namespace, metrics: dict | None) -> None:
    from training.hycot.export import export_hycot

    result = export_hycot(args.checkpoint, args.out, args.tile_size, metrics, args.command_line)
    print(f"wrote {result['encoder']} and {result['decoder']} (pair {result['pair_id']}); "
          f"onnxruntime vs torch max abs diff {result['max_abs_diff']:.2e}")


def record_statistics(args: argparse.Namespace, contract) -> tuple[dict, dict]:
    """The encoder's training input statistics (recorded, and by name for the report)."""
    from training.hycot.data import training_input_statistics

    if contract.task != "hycot_encoder":
        sys.exit(f"{args.model} is a {contract.task} model, not a hycot model encoder (its decoder takes latents)")
    recorded = training_input_statistics(args.data, args.strategy or "easy", args.seed)
    return recorded, {"": recorded}


def simulate_patches(args: argparse.Namespace) -> None:
    from training.simulation.hyperspectral import write_hyspecnet_layout

    paths = write_hyspecnet_layout(args.out, args.patches, args.size, args.seed, args.patches_per_tile)
    print(f"{args.out / 'hyspecnet-11k'}: {len(paths)} simulated patches of {args.size}x{args.size} px")


def simulate_scene(args: argparse.Namespace) -> None:
    from training.simulation import hyperspectral

    scene = hyperspectral.simulate_scene(args.size, args.size, args.seed, args.landscape)
    hyperspectral.write_scene_geotiff(scene, args.out)
    print(f"wrote {args.out} ({scene.landscape})")
