"""The text-search commands of ``python -m training`` (arguments and runners; imports stay light
until a command runs).

    training/simulation/fetch_caption_imagery.sh out/text_search/imagery
    python -m training make-caption-fixtures --out DIR --imagery out/text_search/imagery \\
        --scenes great-salt-lake olinda --change-pairs-per-scene 400 [--sar]
    python -m training fit --task locked-text --data DIR/gaia --max-steps 1500 --out runs/rgb
    python -m training fit --task clip-finetune --data DIR/gaia --clip-model ViT-B-32 \\
        --init RemoteCLIP-ViT-B-32.pt --wise-ft-alpha 0.5 --epochs 5 --out runs/clip
    python -m training fit --task align-modality --data DIR/gaia --teacher runs/rgb/checkpoint.pt \\
        --max-steps 800 --out runs/s2
    python -m training fit --task align-modality --data DIR/gaia --paired-folder sar \\
        --teacher runs/rgb/checkpoint.pt --max-steps 800 --out runs/s1_sim    # needs make-caption-fixtures --sar
    python -m training fit --task bitemporal --data DIR/levir_cc --temporal-fusion tff \\
        --init runs/rgb/checkpoint.pt --max-steps 800 --out runs/change
    python -m training evaluate --data DIR/gaia --checkpoint runs/rgb/checkpoint.pt
    python -m training export --checkpoint runs/rgb/checkpoint.pt --out models_onnx/search_image_rgb.onnx
    python -m training export-text-encoder --out models_onnx/search_text_minilm.onnx [--quantize none]
    python -m training measure-queries --image-model models_onnx/search_image_rgb.onnx \\
        --text-model models_onnx/search_text_minilm.onnx --data DIR/gaia --json-out runs/rgb/query_precision.json
    python -m training convert-clip --init RemoteCLIP-ViT-B-32.pt --model ViT-B-32 --out models_onnx/remoteclip
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.scale_out import ScaleOut

# Repeated from training.text_search.model.FUSIONS, training.simulation.caption_scenes and
# training.text_search.export (which import torch / rasterio) so that the CLI starts fast; a test keeps them equal.
FUSIONS = ("gff-difference", "gff-concat", "gff-sum", "tff")
REAL_SCENES = ("great-salt-lake", "olinda")
SIMULATED_LANDSCAPES = ("coastal city", "desert lake")
QUANTIZATIONS = ("none", "int8")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """No flags beyond --data: a caption-fixture folder (GAIA-like or LEVIR-CC-like)."""


def add_import_arguments(imported: argparse.ArgumentParser) -> None:
    """Choices repeated from training/text_search/importers.py (which imports torch) so that the CLI starts
    fast; a test keeps them equal."""
    group = imported.add_argument_group(
        "open_clip CLIP (--source open-clip; writes <out stem>_image.onnx and <out stem>_text.onnx)"
    )
    group.add_argument("--architecture", help="open_clip model name (ViT-B-32, ViT-L-14-quickgelu, RN50, ...) "
                       "or model-config JSON; with --preset: the published name")
    group.add_argument(
        "--preset", choices=("remoteclip", "georsclip", "skyclip"),
        help="known release: picks the architecture and activation from the weights",
    )


def add_fit_arguments(fit: argparse.ArgumentParser) -> None:
    group = fit.add_argument_group(
        "text search (--task locked-text | clip-finetune | align-modality | bitemporal; also uses --weight-decay)"
    )
    group.add_argument("--image-size", type=int, help="model input side in px (default: the data's tile; clip: the model's)")
    group.add_argument("--embedding-width", type=int, default=32, help="width of the tile image encoder's first stage")
    group.add_argument(
        "--clip-model", default="ViT-B-32",
        help="clip-finetune: open_clip architecture name, or an open_clip model-config JSON file",
    )
    group.add_argument(
        "--init", type=Path,
        help="clip-finetune: local open_clip checkpoint to start from (RemoteCLIP, GeoRSCLIP, ...); "
        "bitemporal: a locked-text checkpoint whose image encoder starts the backbone",
    )
    group.add_argument(
        "--wise-ft-alpha", type=float, default=0.5,
        help="clip-finetune: WiSE-FT mixing, (1-alpha)*zero-shot + alpha*fine-tuned (1: plain fine-tuning)",
    )
    group.add_argument("--teacher", type=Path, help="align-modality: checkpoint of the RGB teacher (locked-text or clip-finetune)")
    group.add_argument("--zero-shot-weight", type=float, default=0.1, help="align-modality: weight of the zero-shot-head term")
    group.add_argument(
        "--paired-folder", default="multispectral",
        help="align-modality: folder under --data holding the other modality as <GAIA id>.tif (e.g. sentinel1 with VV, VH)",
    )
    group.add_argument("--temporal-fusion", choices=FUSIONS, default="gff-difference", help="bitemporal: date fusion")


def add_commands(commands: argparse._SubParsersAction) -> None:
    fixtures = commands.add_parser(
        "make-caption-fixtures",
        help="write GAIA-format captions, paired multispectral (and simulated SAR) tiles and LEVIR-CC-style "
        "change pairs from scenes",
    )
    fixtures.add_argument(
        "--out", type=Path, required=True, help="root to write (gets gaia/, gaia/multispectral/, [sar/], levir_cc/)"
    )
    fixtures.add_argument("--imagery", type=Path, help="folder of fetch_imagery.sh (for --scenes)")
    fixtures.add_argument("--scenes", nargs="*", choices=REAL_SCENES, default=[], help="real Landsat 7 scenes")
    fixtures.add_argument("--simulated", nargs="*", choices=SIMULATED_LANDSCAPES, default=[], help="simulated scenes")
    fixtures.add_argument("--simulated-size", type=int, default=128, help="side of each simulated scene in px")
    fixtures.add_argument("--simulated-per-landscape", type=int, default=1, help="simulated scenes per landscape")
    fixtures.add_argument("--tile-size", type=int, default=32, help="tile side in px")
    fixtures.add_argument("--train-stride", type=int, default=8, help="step between training tiles (others: half a tile)")
    fixtures.add_argument("--max-train-per-scene", type=int, help="random subset of training tiles per scene")
    fixtures.add_argument("--max-eval-per-scene", type=int, help="random subset of validation / test tiles per scene")
    fixtures.add_argument("--change-pairs-per-scene", type=int, default=0, help="LEVIR-CC-style pairs per scene")
    fixtures.add_argument(
        "--sar", action="store_true",
        help="also write gaia/sar/<id>.tif: SIMULATED Sentinel-1-like VV, VH sigma0 (dB) from each tile's land cover "
        "(training/simulation/sar_backscatter.py; --paired-folder sar)",
    )
    fixtures.add_argument("--seed", type=int, default=0)
    fixtures.set_defaults(run=_make_fixtures)

    text = commands.add_parser("export-text-encoder", help="export all-MiniLM-L6-v2 as the toolbox's text encoder")
    text.add_argument("--out", type=Path, required=True, help="model.onnx to write")
    text.add_argument("--max-length", type=int, default=128, help="word pieces kept per sentence")
    text.add_argument(
        "--quantize", choices=QUANTIZATIONS, default="int8",
        help="int8: onnxruntime dynamic quantisation, per-channel weights (about 24 MB instead of 91.5 MB)",
    )
    text.set_defaults(run=_export_text_encoder)

    queries = commands.add_parser(
        "measure-queries",
        help="precision@k of the model cards' free-text queries through an exported image (or change) + text ONNX pair",
    )
    queries.add_argument(
        "--image-model", type=Path, required=True, help="image_embedding ONNX (3 or 6 bands) or change_embedding ONNX"
    )
    queries.add_argument("--text-model", type=Path, required=True, help="text_embedding ONNX of the same space")
    queries.add_argument(
        "--data", type=Path, required=True,
        help="GAIA-format root (with multispectral/ for 6 bands); LEVIR-CC root for a change encoder",
    )
    queries.add_argument("--split", default="test")
    queries.add_argument("--top", type=int, default=10, help="k of precision@k")
    queries.add_argument("--json-out", type=Path, help="write the result here too")
    queries.set_defaults(run=_measure_queries)

    convert = commands.add_parser(
        "convert-clip", help="convert a local open_clip checkpoint into the toolbox's image + text ONNX pair"
    )
    convert.add_argument("--init", type=Path, required=True, help="open_clip-compatible checkpoint file")
    convert.add_argument("--model", required=True, help="open_clip architecture (ViT-B-32, RN50, ...) or model-config JSON")
    convert.add_argument("--out", type=Path, required=True, help="stem: writes <stem>_image.onnx and <stem>_text.onnx")
    convert.add_argument("--threads", type=int, help="torch CPU threads")
    convert.set_defaults(run=_convert_clip)


def run_fit(args: argparse.Namespace) -> Path:
    from training.text_search import fit
    from training.trainer import FitRun

    run = FitRun.from_arguments(args)
    if args.task == "locked-text":
        return fit.fit_locked_text(run, args.image_size, args.embedding_width)
    if args.task == "clip-finetune":
        return fit.fit_clip_finetune(run, args.clip_model, args.init, args.wise_ft_alpha, args.weight_decay)
    if args.task == "align-modality":
        if args.teacher is None:
            sys.exit("align-modality needs --teacher CHECKPOINT")
        return fit.fit_align_modality(run, args.teacher, args.zero_shot_weight, args.image_size, args.embedding_width,
                                      args.paired_folder)
    return fit.fit_bitemporal(run, args.temporal_fusion, args.init, args.image_size, args.embedding_width)


def run_evaluate(args: argparse.Namespace) -> dict:
    from training.text_search.evaluate import evaluate_search

    if ScaleOut.from_arguments(args).processes > 1:
        sys.exit("evaluate ranks text-search galleries in one process; leave out --devices and --num-nodes")
    return evaluate_search(args.checkpoint, args.data, args.split, args.batch_size or 64, args.task)


def run_export(args: argparse.Namespace, metrics: dict | None) -> None:
    """Search encoders keep the training tile size and no overlap (one embedding per tile)."""
    from training.text_search.export import export_search

    result = export_search(args.checkpoint, args.out, metrics, args.command_line, args.task)
    print(f"wrote {', '.join(result['paths'])}; onnxruntime vs torch max abs diff {result['max_abs_diff']:.2e}")


def _make_fixtures(args: argparse.Namespace) -> None:
    from training.simulation.caption_fixtures import write_caption_fixtures
    from training.simulation.caption_scenes import read_real_scene, simulate_scene

    if args.scenes and args.imagery is None:
        sys.exit("--scenes needs --imagery (the folder training/simulation/fetch_caption_imagery.sh fills)")
    scenes = [read_real_scene(name, args.imagery) for name in args.scenes]
    scenes += [
        simulate_scene(landscape, args.simulated_size, args.seed + 100 * index + number)
        for index, landscape in enumerate(args.simulated) for number in range(args.simulated_per_landscape)
    ]
    if not scenes:
        sys.exit("give --scenes and/or --simulated")
    counts = write_caption_fixtures(
        args.out, scenes, args.tile_size, args.train_stride, args.max_train_per_scene, args.max_eval_per_scene,
        args.change_pairs_per_scene, args.seed, args.sar,
    )
    print(f"{args.out}: {counts}")


def _export_text_encoder(args: argparse.Namespace) -> None:
    from training.text_search.export import export_minilm_text_encoder

    result = export_minilm_text_encoder(args.out, args.command_line, args.max_length, args.quantize)
    print(f"wrote {result['paths'][0]}; fp32 onnxruntime vs torch max abs diff {result['max_abs_diff']:.2e}"
          + (f"; int8 vs torch min cosine {result['min_cosine']:.4f}" if "min_cosine" in result else ""))


def _measure_queries(args: argparse.Namespace) -> None:
    import json

    from training.text_search.evaluate import query_precision

    result = query_precision(args.image_model, args.text_model, args.data, args.split, args.top)
    for query, measured in result["queries"].items():
        print(f"{query!r}: precision@{args.top} {measured['precision']:.2f} (share of items {measured['share']:.2f})")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=1))


def _convert_clip(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from training.text_search.export import convert_clip

    result = convert_clip(args.init, args.model, args.out, args.command_line)
    print(f"wrote {', '.join(result['paths'])} (space {result['space']}); max abs diff {result['max_abs_diff']:.2e}")
