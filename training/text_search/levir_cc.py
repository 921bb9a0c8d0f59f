"""LEVIR-CC-style change-caption data (bitemporal image pairs with five sentences): reader, writer.

Liu, Zhao, Chen, Shi, Zou: "Remote Sensing Image Change Captioning With Dual-Branch Transformers:
A New Method and a Large Scale Dataset", IEEE TGRS 2022 (LEVIR-CC: 10,077 pairs, five sentences
each). Used for text - image time series retrieval (text-ITSR) in this toolbox.

On disk::

    {root}/LevirCCcaptions.json
    {root}/images/{train,val,test}/A/{filename}   before (pre-phase), RGB PNG
    {root}/images/{train,val,test}/B/{filename}   after (post-phase)

``LevirCCcaptions.json`` is COCO/Karpathy style: ``{"images": [{"filepath": split, "filename",
"imgid", "split", "sentences": [{"tokens": [...], "raw": " sentence ", "imgid", "sentid"}, ...],
"sentids": [...], "changeflag": 0 | 1}, ...]}``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

CAPTIONS_FILE = "LevirCCcaptions.json"


@dataclass(frozen=True)
class ChangePair:
    before: Path
    after: Path
    captions: tuple[str, ...]
    changed: bool
    id: str


class LevirCCPairs(Dataset):
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


def write_levir_cc(root: Path, pairs: list[dict]) -> None:
    """``pairs``: ``{"split", "before", "after" (uint8 [3, H, W]), "captions" (5 str), "changed"}``."""
    root = Path(root)
    images, sentence_id = [], 0
    for image_id, pair in enumerate(pairs):
        filename = f"{pair['split']}_{image_id:06d}.png"
        for phase in ("A", "B"):
            folder = root / "images" / pair["split"] / phase
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.moveaxis(pair["before" if phase == "A" else "after"], 0, -1)).save(folder / filename)
        sentences = []
        for caption in pair["captions"]:
            tokens = caption.lower().replace(",", " ").replace(".", " ").split()
            sentences.append({"tokens": tokens, "raw": f" {' '.join(tokens)} ", "imgid": image_id, "sentid": sentence_id})
            sentence_id += 1
        images.append({
            "filepath": pair["split"], "filename": filename, "imgid": image_id, "split": pair["split"],
            "sentences": sentences, "sentids": [s["sentid"] for s in sentences], "changeflag": int(pair["changed"]),
        })
    (root / CAPTIONS_FILE).write_text(json.dumps({"images": images}))
