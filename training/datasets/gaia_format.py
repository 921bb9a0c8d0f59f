"""GAIA's on-disk conventions and a format-faithful writer, free of torch: shared by the dataset
(``training.datasets.gaia``) and the caption fixtures (``training.simulation.caption_fixtures``).

On disk (both layouts are read; the writer produces both):

``{root}/{split}_data.json``
    The annotation file GAIA distributes: a JSON list, one object per image with the keys ``id``,
    ``image_src`` (the image's URL; here also a path relative to ``root`` or absolute),
    ``image_alt``, ``captions`` (list of 5 strings), ``credits``, ``location``, ``lat``, ``lon``,
    ``tag``, ``resolution``, ``satellite``, ``sensor``, ``modalities``.
``{root}/{split}/NNNNN.tar``
    The webdataset that GAIA's instructions rebuild from that file with img2dataset
    (``--output_format webdataset --save_additional_columns "['id','captions']" --encode_format png``):
    per sample ``KEY.png`` (the image), ``KEY.txt`` (``image_alt``) and ``KEY.json`` (img2dataset's
    record: ``url``, ``key``, ``status``, ``width``, ``height``, plus ``id`` and ``captions``).
"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")
ANNOTATION_KEYS = (
    "id", "image_src", "image_alt", "captions", "credits", "location", "lat", "lon", "tag",
    "resolution", "satellite", "sensor", "modalities",
)
SAMPLES_PER_SHARD = 512  # img2dataset --number_sample_per_shard in GAIA's instructions


def write_gaia_split(root: Path, split: str, entries: list[dict], images: list[np.ndarray]) -> None:
    """Write ``{split}_data.json``, ``images/{id}.png`` and the img2dataset shards of one split.

    ``entries``: GAIA annotation objects (``ANNOTATION_KEYS``; ``image_src`` is set here);
    ``images``: uint8 ``[3, H, W]`` RGB, one per entry.
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / split).mkdir(parents=True, exist_ok=True)
    annotations = []
    for entry, image in zip(entries, images):
        relative = f"images/{entry['id']}.png"
        Image.fromarray(np.moveaxis(image, 0, -1)).save(root / relative)
        annotation = {key: entry.get(key) for key in ANNOTATION_KEYS} | {"image_src": relative}
        annotations.append(annotation)
    (root / f"{split}_data.json").write_text(json.dumps(annotations, indent=1))
    for shard_index, start in enumerate(range(0, len(annotations), SAMPLES_PER_SHARD)):
        with tarfile.open(root / split / f"{shard_index:05d}.tar", "w") as archive:
            for offset, annotation in enumerate(annotations[start:start + SAMPLES_PER_SHARD]):
                key = f"{shard_index:05d}{offset:04d}"
                png = (root / annotation["image_src"]).read_bytes()
                height, width = images[start + offset].shape[1:]
                record = {
                    "url": annotation["image_src"], "key": key, "status": "success", "error_message": None,
                    "width": width, "height": height, "original_width": width, "original_height": height,
                    "id": annotation["id"], "captions": annotation["captions"],
                }
                for suffix, payload in (
                    ("png", png), ("txt", (annotation["image_alt"] or "").encode()), ("json", json.dumps(record).encode())
                ):
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size = len(payload)
                    archive.addfile(info, io.BytesIO(payload))
