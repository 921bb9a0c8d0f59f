"""Importer of CLIP checkpoints in open_clip's format, among them the remote-sensing CLIPs RemoteCLIP
(Liu et al.: "RemoteCLIP: A Vision Language Foundation Model for Remote Sensing", IEEE TGRS 2024),
GeoRSCLIP (Zhang et al.: "RS5M and GeoRSCLIP: A Large Scale Vision-Language Dataset and A Large
Vision-Language Model for Remote Sensing", IEEE TGRS 2024) and SkyCLIP (Wang et al.: "SkyScript: A
Large and Semantically Diverse Vision-Language Dataset for Remote Sensing", AAAI 2024).

One import writes the image and the text encoder as a pair in one embedding space
(``export.export_clip_pair``: ``<out stem>_image.onnx`` + ``<out stem>_text.onnx``), which the
search algorithms and the dock offer together. The published layouts:

- RemoteCLIP (huggingface.co/chendelong/RemoteCLIP): ``RemoteCLIP-{RN50,ViT-B-32,ViT-L-14}.pt``,
  plain state dicts under open_clip's names. The authors' retrieval evaluation builds the model
  as OpenAI's (``pretrained='openai'``: QuickGELU) before loading them;
- GeoRSCLIP (huggingface.co/Zilun/GeoRSCLIP): ``ckpt/RS5M_ViT-B-32.pt`` (built on OpenAI's model:
  QuickGELU) and ``ckpt/RS5M_ViT-H-14.pt`` (on LAION's: GELU), plain state dicts; the later
  ViT-L-14 files come without the architecture they were built on, so they need --architecture;
- SkyCLIP (github.com/wangzhecheng/SkyScript, ``ckpt/SkyCLIP_ViT_*.zip``): open_clip training
  checkpoints (``state_dict`` with ``module.`` names, optimiser state); ViT-L-14 continued from
  OpenAI's model (QuickGELU, as the authors' notebooks force), ViT-B-32 from LAION's (GELU).

The activation is not visible in the weights: ``--preset`` supplies it with the architecture, which
it recognises from the names and shapes of the weights. All use CLIP's preprocessing (224 px,
OpenAI's mean and std), which the image contract carries.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from training.importers import ImportedModel, Importer, ImportRefused, load_state_dict, load_weights
from training.text_search.export import PAPERS, export_clip_pair
from training.text_search.model import build_open_clip, clip_space, open_clip_config


@dataclass(frozen=True)
class Preset:
    title: str
    paper: str
    licence: str
    url: str
    architectures: dict[str, str]  # published name -> open_clip model (activation included)


PRESETS = {
    "remoteclip": Preset(
        "RemoteCLIP", "Liu et al.: RemoteCLIP: A Vision Language Foundation Model for Remote Sensing, IEEE TGRS "
        "2024 (arXiv:2306.11029)", "no licence stated with the weights", "https://huggingface.co/chendelong/RemoteCLIP",
        {"RN50": "RN50-quickgelu", "ViT-B-32": "ViT-B-32-quickgelu", "ViT-L-14": "ViT-L-14-quickgelu"},
    ),
    "georsclip": Preset(
        "GeoRSCLIP", "Zhang et al.: RS5M and GeoRSCLIP: A Large Scale Vision-Language Dataset and A Large "
        "Vision-Language Model for Remote Sensing, IEEE TGRS 2024 (arXiv:2306.11300)",
        "CC (the hub page's tag, variant unstated)", "https://huggingface.co/Zilun/GeoRSCLIP",
        {"ViT-B-32": "ViT-B-32-quickgelu", "ViT-H-14": "ViT-H-14"},
    ),
    "skyclip": Preset(
        "SkyCLIP", "Wang et al.: SkyScript: A Large and Semantically Diverse Vision-Language Dataset for Remote "
        "Sensing, AAAI 2024 (arXiv:2312.12856)", "MIT (SkyScript repository)",
        "https://github.com/wangzhecheng/SkyScript",
        {"ViT-B-32": "ViT-B-32", "ViT-L-14": "ViT-L-14-quickgelu"},
    ),
}


def _shapes(model_name: str) -> dict[str, torch.Size]:
    """Names and shapes of an open_clip model's weights, without allocating them."""
    import open_clip

    return {key: value.shape
            for key, value in open_clip.create_model(model_name, pretrained=None, device="meta").state_dict().items()}


def preset_architecture(preset: str, state: dict[str, torch.Tensor], given: str | None = None) -> str:
    """The open_clip model of a preset's release: ``given`` (a published name) or the one whose
    weights have exactly the names and shapes of ``state``."""
    known = PRESETS[preset]
    releases = ", ".join(known.architectures)
    if given:
        if given in known.architectures.values():
            return given
        if given not in known.architectures:
            raise ImportRefused(f"{known.title} was published as {releases}, not {given}; leave --preset out to "
                                "import another architecture")
        return known.architectures[given]
    shapes = {key: value.shape for key, value in state.items()}
    matches = [model for model in known.architectures.values() if _shapes(model) == shapes]
    if len(matches) != 1:
        raise ImportRefused(f"the weights are none of {known.title}'s releases ({releases}); give --architecture "
                            "(an open_clip model name or config JSON, with -quickgelu if it was trained from "
                            "OpenAI's CLIP) without --preset")
    return matches[0]


def import_open_clip(checkpoint: Path, out: Path, options: argparse.Namespace, provenance: dict) -> ImportedModel:
    if not options.architecture and not options.preset:
        raise ImportRefused("--source open-clip needs --architecture (an open_clip model name such as ViT-B-32, "
                            "or a model-config JSON) or --preset (" + ", ".join(PRESETS) + ")")
    state = load_state_dict(checkpoint)
    model = preset_architecture(options.preset, state, options.architecture) if options.preset else options.architecture
    try:
        name, config = open_clip_config(model)
        clip = build_open_clip(name, config)
    except (RuntimeError, ValueError) as err:  # an unknown model name, or a text tower without argmax pooling
        raise ImportRefused(f"--architecture {model}: {err}") from None
    load_weights(clip, state, checkpoint, f"an open_clip {name} checkpoint")
    preset = PRESETS.get(options.preset)
    papers = [PAPERS["clip"]] + ([preset.paper] if preset else [])
    details = {"paper": papers, "preset": options.preset}
    if preset:
        details |= {"licence": preset.licence, "published_at": preset.url}
    exported = export_clip_pair(clip, name, out.with_suffix(""), clip_space(name, provenance["checkpoint_sha256"]),
                                provenance | details)
    activation = "QuickGELU" if config.get("quick_gelu") else "GELU"
    return ImportedModel(
        tuple(Path(path) for path in exported["paths"]), exported["max_abs_diff"],
        f"open_clip {name} ({activation}): image and text towers, text context {clip.context_length} tokens",
        ((f"{preset.title}: {preset.paper}; licence of the weights: {preset.licence}; published at {preset.url}.",)
         if preset else ()) + (
            "The pair shares one embedding space (its provenance 'space'): index imagery with the image model "
            "and query it with this text model only.",
            "Inputs are 8-bit RGB tiles of the model's size (CLIP's preprocessing); how well a query is answered "
            "depends on how close the imagery's resolution and rendering are to the checkpoint's training images.",
        ),
    )


IMPORTERS = (
    Importer(
        "open-clip", "text_search", "CLIP image + text encoders in open_clip's format (RemoteCLIP, GeoRSCLIP, SkyCLIP)",
        "as published with each checkpoint (" + "; ".join(f"{p.title}: {p.licence}" for p in PRESETS.values()) + ")",
        "; ".join([PAPERS["clip"], *(preset.paper for preset in PRESETS.values())]),
        "https://github.com/mlfoundations/open_clip (" + ", ".join(p.url for p in PRESETS.values()) + ")",
        import_open_clip,
    ),
)
