"""The crop-map commands of ``python -m training`` (arguments and runners; imports stay light until
a command runs).

    python -m training simulate-pastis-r --out DIR --patches 120 --size 48 --seed 0
    python -m training simulate-crop-series --out DIR --size 96 --seed 0 --year 2023
    python -m training fit --task crop --data DIR --modalities s1,s2 --fusion sync-class-token \\
        --max-steps 300 --out runs/crop
    python -m training evaluate --task crop --data DIR --checkpoint runs/crop/checkpoint.pt
    python -m training export --task crop --checkpoint runs/crop/checkpoint.pt --out crop.onnx

``--data`` is a PASTIS-R root (the folder holding ``PASTIS-R/``, or ``PASTIS-R`` itself).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.scale_out import ScaleOut

TASK = "crop"
# Repeated from training.crop_maps.model.FUSIONS (which imports torch) so that the CLI starts
# fast; a test keeps them equal.
FUSIONS = ("early", "cross-attention", "sync-class-token")
MODALITY_ORDER = ("s2", "s1")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """No flags beyond --data: a PASTIS-R root (the modalities and orbit come from --modalities, --s1-orbit or
    the checkpoint)."""


def add_import_arguments(imported: argparse.ArgumentParser) -> None:
    """No flags beyond the common ones: the published TSViT's sizes come from its weights."""


def add_fit_arguments(fit: argparse.ArgumentParser) -> None:
    group = fit.add_argument_group(
        "crop maps (--task crop, TSViT; also uses --modalities, --weight-decay, --warmup-steps)"
    )
    group.add_argument(
        "--fusion", choices=FUSIONS,
        help="multi-modal fusion (default sync-class-token with two modalities; none with one)",
    )
    group.add_argument("--s1-orbit", choices=("s1a", "s1d"), default="s1a", help="PASTIS-R S1 orbit read as 's1'")
    group.add_argument("--tile-size", type=int, default=24, help="training tile side in px (PASTIS24: 24)")
    group.add_argument("--patch-size", type=int, default=2, help="TSViT patch side p (PASTIS24: 2)")
    group.add_argument("--tsvit-dim", type=int, default=128, help="token width (PASTIS24: 128)")
    group.add_argument("--temporal-depth", type=int, default=4, help="temporal encoder layers (PASTIS24: 4)")
    group.add_argument("--spatial-depth", type=int, default=4, help="spatial encoder layers (PASTIS24: 4)")
    group.add_argument("--tsvit-heads", type=int, default=4, help="attention heads (PASTIS24: 4)")
    group.add_argument("--tsvit-head-dim", type=int, default=32, help="width per head (PASTIS24: 32)")
    group.add_argument("--max-dates-s2", type=int, default=32, help="most S2 dates per training sample")
    group.add_argument("--max-dates-s1", type=int, default=32, help="most S1 dates per training sample")


def add_commands(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser(
        "simulate-pastis-r", help="write simulated crop-phenology S2/S1 time series in PASTIS-R's layout"
    )
    simulate.add_argument("--out", type=Path, required=True, help="root to write (gets PASTIS-R/)")
    simulate.add_argument("--patches", type=int, default=120, help="patches over the 5 folds")
    simulate.add_argument("--size", type=int, default=48, help="patch side in px (real PASTIS: 128)")
    simulate.add_argument("--tiles", type=int, default=4, help="tiles (shared weather and acquisition dates)")
    simulate.add_argument("--year", type=int, default=2019)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.set_defaults(run=_simulate_pastis_r)

    series = commands.add_parser(
        "simulate-crop-series", help="write a simulated crop season as per-date and stacked GeoTIFFs + labels"
    )
    series.add_argument("--out", type=Path, required=True, help="folder for S2_YYYYMMDD.tif, S1_..., stacks, labels.tif")
    series.add_argument("--size", type=int, default=96, help="area side in px (10 m)")
    series.add_argument("--year", type=int, default=2023)
    series.add_argument("--seed", type=int, default=0)
    series.add_argument("--crs", default="EPSG:32631")
    series.add_argument("--keep-clouds", action="store_true", help="do not mask clouds to nodata in S2")
    series.set_defaults(run=_simulate_crop_series)


def run_fit(args: argparse.Namespace) -> Path:
    from training.crop_maps.fit import fit_crop
    from training.crop_maps.model import TSViTConfig
    from training.trainer import FitRun

    modalities = [m for m in MODALITY_ORDER if m in args.modalities.split(",")]
    fusion = args.fusion or ("sync-class-token" if len(modalities) > 1 else None)
    if len(modalities) == 1 and args.fusion:
        sys.exit(f"--fusion {args.fusion} needs two modalities (--modalities s1,s2)")
    config = TSViTConfig(
        image_size=args.tile_size, patch_size=args.patch_size, dim=args.tsvit_dim,
        temporal_depth=args.temporal_depth, spatial_depth=args.spatial_depth, heads=args.tsvit_heads,
        head_dim=args.tsvit_head_dim,
    )
    return fit_crop(
        FitRun.from_arguments(args), modalities, fusion, args.s1_orbit, config,
        {"s2": args.max_dates_s2, "s1": args.max_dates_s1}, args.weight_decay, args.warmup_steps,
    )


def run_evaluate(args: argparse.Namespace) -> dict:
    from training.crop_maps.evaluate import evaluate_crop

    return evaluate_crop(args.checkpoint, args.data, args.split, args.batch_size or 8, args.accelerator,
                         ScaleOut.from_arguments(args))


def run_export(args: argparse.Namespace, metrics: dict | None) -> None:
    """The ONNX tile is the training tile (TSViT's spatial embedding); --overlap applies when it is
    smaller than the tile, else a third of the tile is used."""
    from training.crop_maps.export import export_crop

    result = export_crop(args.checkpoint, args.out, args.overlap, metrics, args.command_line)
    contract = result["contract"]
    print(
        f"wrote {result['path']} (tile {contract.tile_size}, overlap {contract.overlap}); "
        f"onnxruntime vs torch max abs diff {result['max_abs_diff']:.2e}"
    )


def record_statistics(args: argparse.Namespace, contract) -> tuple[dict, dict]:
    """The model's training input statistics per modality (recorded, and by modality for the report)."""
    from training.crop_maps.data import training_input_statistics

    if contract.task != "crop_map":
        sys.exit(f"{args.model} is a {contract.task} model, not a {TASK} model")
    modalities = [modality.name for modality in contract.modalities]
    recorded = training_input_statistics(args.data, modalities, contract.provenance["modalities"]["s1_orbit"], args.seed)
    return recorded, recorded


def _simulate_pastis_r(args: argparse.Namespace) -> None:
    from training.simulation.crop_phenology import write_pastis_r_fixture

    ids = write_pastis_r_fixture(args.out, args.patches, args.size, args.seed, args.year, args.tiles)
    print(f"{args.out / 'PASTIS-R'}: {len(ids)} simulated patches of {args.size}x{args.size} px")


def _simulate_crop_series(args: argparse.Namespace) -> None:
    from training.simulation.crop_geotiffs import write_crop_time_series

    files = write_crop_time_series(args.out, args.size, args.seed, args.year, args.crs, mask_clouds=not args.keep_clouds)
    print(f"{args.out}: {len(files.s2)} S2 and {len(files.s1)} S1 dates, stacks and labels.tif")
