"""GAIA image-caption data: the reader (the writer: ``gaia_format``).

Zavras, Michail, Zhu, Demir, Papoutsis: "GAIA: A Global, Multi-modal, Multi-scale Vision-Language
Dataset for Remote Sensing Image Analysis", 2025 (arXiv:2502.09598). 41,030 RS images, five
synthetic, scientifically grounded captions each; splits train (70%), test (20%), validation (10%).

On disk: ``training.datasets.gaia_format`` (both layouts are read).

The reader prefers the shards when a split has them (that is what a GAIA user has after
img2dataset); otherwise it opens each ``image_src`` that is a local file, or ``images/{id}.png``.
"""
from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torchgeo.datasets import NonGeoDataset

from training.datasets.gaia_format import SPLITS


@dataclass(frozen=True)
class CaptionedImage:
    id: str
    captions: tuple[str, ...]
    source: str  # file path, or "shard.tar::member.png"


class GaiaCaptions(NonGeoDataset):
    """One split of GAIA; items are ``{"image": uint8 [3, H, W], "captions": tuple[str], "id": str}``."""

    def __init__(self, root: Path, split: str = "train") -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split = Path(root), split
        shards = sorted((self.root / split).glob("*.tar"))
        self.samples = self._from_shards(shards) if shards else self._from_annotations()
        if not self.samples:
            raise FileNotFoundError(f"no GAIA samples for split {split!r} under {self.root}")
        self._open_shards: dict[str, tarfile.TarFile] = {}

    def _from_annotations(self) -> list[CaptionedImage]:
        annotation_file = self.root / f"{self.split}_data.json"
        if not annotation_file.exists():
            raise FileNotFoundError(f"{annotation_file} (GAIA annotations) or {self.root / self.split}/*.tar missing")
        samples = []
        for entry in json.loads(annotation_file.read_text()):
            source = Path(entry["image_src"])
            path = source if source.is_absolute() else self.root / source
            if not path.exists():
                path = self.root / "images" / f"{entry['id']}.png"
            if not path.exists():
                raise FileNotFoundError(
                    f"image of GAIA sample {entry['id']} not found ({entry['image_src']}); rebuild the "
                    "webdataset with img2dataset as GAIA's instructions say"
                )
            samples.append(CaptionedImage(str(entry["id"]), tuple(entry["captions"]), str(path)))
        return samples

    def _from_shards(self, shards: list[Path]) -> list[CaptionedImage]:
        samples = []
        for shard in shards:
            with tarfile.open(shard) as archive:
                names = set(archive.getnames())
                for name in sorted(n for n in names if n.endswith(".json")):
                    key = name[: -len(".json")]
                    record = json.load(archive.extractfile(name))
                    if record.get("status", "success") != "success" or f"{key}.png" not in names:
                        continue
                    samples.append(CaptionedImage(str(record["id"]), tuple(record["captions"]), f"{shard}::{key}.png"))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        return {"image": self.read_image(sample.source), "captions": sample.captions, "id": sample.id}

    def read_image(self, source: str) -> np.ndarray:
        if "::" in source:
            shard, member = source.split("::")
            if shard not in self._open_shards:
                self._open_shards[shard] = tarfile.open(shard)
            data = self._open_shards[shard].extractfile(member).read()
            image = Image.open(io.BytesIO(data))
        else:
            image = Image.open(source)
        return np.moveaxis(np.asarray(image.convert("RGB")), -1, 0).copy()
