"""Remote-sensing CLIP checkpoints in the layouts their authors publish, with random weights, for the
import tests and bench/import_models.py (training/text_search/importers.py describes the layouts):

- RemoteCLIP (Liu et al., IEEE TGRS 2024) and GeoRSCLIP (Zhang et al., IEEE TGRS 2024): a plain
  state dict under open_clip's names;
- SkyCLIP (Wang et al., AAAI 2024): an open_clip training checkpoint (``state_dict`` with
  DistributedDataParallel's ``module.`` names, epoch, name, optimiser state) inside a zip.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import open_clip
import torch


def random_clip(name: str, seed: int = 7) -> torch.nn.Module:
    """An open_clip model of a known architecture (a published one, or one added with
    ``configured_clip``) with open_clip's random initial weights."""
    torch.manual_seed(seed)
    return open_clip.create_model(name, pretrained=None).eval()


def configured_clip(folder: Path, name: str, config: dict) -> tuple[Path, torch.nn.Module]:
    """(model-config JSON, open_clip model with random weights) of an architecture given as ``config``."""
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(folder)
    return path, random_clip(name)


def remoteclip_checkpoint(path: Path, model: torch.nn.Module) -> Path:
    """RemoteCLIP's and GeoRSCLIP's layout: ``torch.save`` of the plain state dict."""
    torch.save(model.state_dict(), path)
    return path


def skyclip_checkpoint(path: Path, model: torch.nn.Module, name: str) -> Path:
    """SkyCLIP's layout: ``<name>/epoch_20.pt``, open_clip's training checkpoint, zipped as ``path``."""
    saved = path.with_name("epoch_20.pt")
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    torch.save({"epoch": 20, "name": name, "state_dict": state,
                "optimizer": {"state": {}, "param_groups": [{"lr": 3e-9, "betas": (0.9, 0.98), "params": [0, 1]}]}},
               saved)
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(saved, f"{name}/epoch_20.pt")
    return path
