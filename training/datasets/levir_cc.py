"""LEVIR-CC-style change-caption data (bitemporal image pairs with five sentences): the reader
(the writer: ``levir_cc_format``).

Liu, Zhao, Chen, Shi, Zou: "Remote Sensing Image Change Captioning With Dual-Branch Transformers:
A New Method and a Large Scale Dataset", IEEE TGRS 2022 (LEVIR-CC: 10,077 pairs, five sentences
each). Used for text - image time series retrieval (text-ITSR) in this toolbox.

On disk: ``training.datasets.levir_cc_format``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torchgeo.datasets import NonGeoDataset

from training.datasets.levir_cc_format import CAPTIONS_FILE


@dataclass(frozen=True)
class ChangePair:
    before: Path
    after: Path
    captions: tuple[str, ...]
    changed: bool
    id: str


class LevirCCPairs(NonGeoDataset):
    """One split; items are ``{"before", "after": uint8 [3, H, W], "captions": tuple[str],
    "changed": bool, "id": str}``."""

    def __init__(self, root: Path, split: str = "train") -> None:
        self.root, self.split = Path(root), split
        annotation = json.loads((self.root / CAPTIONS_FILE).read_text())
        self.samples = [
            ChangePair(
                self.root / "images" / entry["filepath"] / "A" / entry["filename"],
                self.root / "images" / entry["filepath"] / "B" / entry["filename"],
                tuple(sentence["raw"].strip() for sentence in entry["sentences"]),
                bool(entry["changeflag"]),
                Path(entry["filename"]).stem,
            )
            for entry in annotation["images"]
            if entry["split"] == split
        ]
        if not self.samples:
            raise FileNotFoundError(f"no {split!r} pairs in {self.root / CAPTIONS_FILE}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        pair = self.samples[index]
        return {
            "before": _read_rgb(pair.before), "after": _read_rgb(pair.after), "captions": pair.captions,
            "changed": pair.changed, "id": pair.id,
        }


def _read_rgb(path: Path) -> np.ndarray:
    return np.moveaxis(np.asarray(Image.open(path).convert("RGB")), -1, 0).copy()
