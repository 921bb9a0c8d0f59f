"""LEVIR-CC's on-disk conventions and a format-faithful writer, free of torch: shared by the dataset
(``training.datasets.levir_cc``) and the caption fixtures (``training.simulation.caption_fixtures``).

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
from pathlib import Path

import numpy as np
from PIL import Image

CAPTIONS_FILE = "LevirCCcaptions.json"


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
