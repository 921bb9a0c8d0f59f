"""MagicBathyNet's on-disk conventions (Agrafiotis et al., IGARSS 2024), free of torch.

Shared by the dataset class, the simulator that writes data in the same layout, and the importer of
the published weights (``read_norm_param``).

Split files (``<area>/<modality>_split_{bathymetry,pixel_class}.txt``): the authors' code does not
read them and their exact text is not published. The one public reader of the real files we found
(allenai/olmoearth_pretrain, ``open_set_segmentation_data/datasets/magicbathynet.py``) describes
them as "several labelled Python-list blocks", the first after ``annotated sample:`` being all
annotated patches (train and test; 35 for Agia Napa, the ids of the authors' notebooks). The labels
of the other blocks are not documented, so ``read_split_file`` accepts any labelled or unlabelled
list of ids (see there) and ``format_split_file`` writes the documented block plus ``train sample:``
and ``test sample:`` blocks.

Normalisation files (``<area>/norm_param_<modality>_<an|pl>.txt``, the authors' notebooks load
``.npy`` copies): per-band minima, then maxima; inputs are min/max normalised with them.
"""
from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np

AREAS = ("agia_napa", "puck_lagoon")
AREA_SUFFIX = {"agia_napa": "an", "puck_lagoon": "pl"}  # as in norm_param_s2_an.txt
MODALITIES = ("s2", "spot6", "aerial")
# Class index -> (name, colour in the gts files), in the order of the dataset's README.
AREA_CLASSES = {
    "agia_napa": (
        ("seagrass", (0, 128, 0)),
        ("rock", (0, 0, 255)),
        ("macroalgae", (255, 0, 0)),
        ("sand", (255, 128, 0)),
    ),
    "puck_lagoon": (("sand", (255, 128, 0)), ("eelgrass", (0, 128, 0))),
}
UNDEFINED_COLOUR = (0, 0, 0)
# The paper divides depth by a per-site constant so that the network regresses values near [0, 1].
DEPTH_SCALE_M = {"agia_napa": 30.443, "puck_lagoon": 11.0}
# Bands as stored in the img files (red, green, blue) and the ground sampling distance.
MODALITY_BANDS = {
    "s2": ("B04", "B03", "B02"),
    "spot6": ("red", "green", "blue"),
    "aerial": ("red", "green", "blue"),
}
MODALITY_GSD_M = {"s2": 10.0, "spot6": 6.0, "aerial": None}
SPLIT_TASK_NAMES = {"bathymetry": "bathymetry", "seabed": "pixel_class"}
SPLITS = ("train", "test")

_ID = r"(?<![\w.])(?:img_|depth_|gts_)?(\d+)(?:\.tiff?)?(?![\w.])"
_NOT_ID = r"(?!(?:img|depth|gts)_\d)"
_LABEL = _NOT_ID + r"([A-Za-z][\w()%.-]*(?:[^\S\n]+[\w()%.-]+)*)[^\S\n]*[:=]"
_HEADER = r"^[^\S\n]*" + _NOT_ID + r"([A-Za-z][\w()%.-]*(?:[^\S\n]+[\w()%.-]+)*)[^\S\n]*$"
_TOKENS = re.compile(f"{_LABEL}|{_HEADER}|{_ID}", re.MULTILINE)
_SKIPPED_LABELS = re.compile(r"unannot|unlabel|pre-?train|self-?sup", re.IGNORECASE)
_LABEL_KINDS = (
    ("annotated", re.compile(r"annot|\ball\b", re.IGNORECASE)),
    ("train", re.compile(r"train", re.IGNORECASE)),
    ("test", re.compile(r"test|eval|val", re.IGNORECASE)),
)


def split_file(area_root: Path, modality: str, task: str) -> Path:
    """``<area>/<modality>_split_{bathymetry,pixel_class}.txt``."""
    return Path(area_root) / f"{modality}_split_{SPLIT_TASK_NAMES[task]}.txt"


def format_split_file(train: list, test: list) -> str:
    """The documented ``annotated sample:`` block (all ids), then ``train sample:`` and ``test sample:``."""
    def block(label: str, ids: list) -> str:
        return f"{label}: [{', '.join(repr(str(i)) for i in ids)}]\n"

    return block("annotated sample", [*train, *test]) + block("train sample", train) + block("test sample", test)


def read_split_file(path: Path) -> dict[str, set[str]]:
    """Train and test patch ids of a split file; ids are digits, ``img_``/``.tif`` are dropped.

    Blocks start at a label (``name:``, ``name =`` or a line holding only a name) and hold the ids
    after it, in any form (Python lists, commas, spaces, one per line). Labels with "annot"/"all"
    list every annotated patch, "train" the training ones, "test"/"eval"/"val" the test ones;
    unannotated/pre-training and other labels are skipped. Ids before any label count as
    annotated. A side that no block lists is the annotated ids minus the other side; when neither
    is listed, ``default_split`` divides the annotated ids.
    """
    path = Path(path)
    found: dict[str, set[str]] = {"annotated": set(), "train": set(), "test": set()}
    kind: str | None = "annotated"
    for match in _TOKENS.finditer(path.read_text()):
        label, header, patch_id = match.groups()
        if patch_id is not None:
            if kind is not None:
                found[kind].add(patch_id)
            continue
        name = label or header
        kind = None if _SKIPPED_LABELS.search(name) else next(
            (kind for kind, pattern in _LABEL_KINDS if pattern.search(name)), None
        )
    train, test = found["train"], found["test"]
    if train & test:
        raise ValueError(f"{path}: ids {sorted(train & test)[:5]} are listed for both train and test")
    if not (train or test):
        if not found["annotated"]:
            raise ValueError(
                f"{path} lists no patch ids; expected e.g. \"annotated sample: ['409', '418', ...]\" "
                "and train/test blocks as shipped with MagicBathyNet"
            )
        train = {i for i in found["annotated"] if default_split(i) == "train"}
        test = found["annotated"] - train
    elif not test:
        test = found["annotated"] - train
    elif not train:
        train = found["annotated"] - test
    return {"train": train, "test": test}


def default_split(patch_id: str, test_percent: int = 20) -> str:
    """Deterministic split of annotated ids that no train/test block assigns: a CRC32 hash of the id."""
    return "test" if zlib.crc32(patch_id.encode()) % 100 < test_percent else "train"


def norm_param_name(modality: str, area: str) -> str:
    """``norm_param_<modality>_<an|pl>.txt`` as listed in the dataset's README."""
    return f"norm_param_{modality}_{AREA_SUFFIX[area]}.txt"


def norm_param_file(area_root: Path, modality: str, area: str) -> Path:
    """The area's normalisation file: the README's ``.txt``, else the notebooks' ``.npy``."""
    text = Path(area_root) / norm_param_name(modality, area)
    for candidate in (text, text.with_suffix(".npy")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{text} does not exist (nor {text.with_suffix('.npy').name}): MagicBathyNet ships each area's "
        f"min/max normalisation as {text.name}; copy it from the dataset into {area_root}"
    )


def read_norm_param(path: Path, bands: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(minimum, maximum) per band from a ``norm_param`` file: ``np.save``d (.npy, a (2, bands)
    array) as the authors' notebooks load it, or text (``np.savetxt`` or a printed array)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"normalisation file {path} does not exist; give the area's norm_param_* file")
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False).astype(np.float64).ravel()
        else:
            values = np.array([float(v) for v in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?",
                                                             path.read_text())])
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot read normalisation file {path}: {err}") from None
    if values.size != 2 * bands:
        raise ValueError(
            f"normalisation file {path} holds {values.size} numbers; expected {2 * bands} (a row of {bands} "
            "per-band minima, then a row of maxima)"
        )
    low, high = values.reshape(2, bands)
    if np.any(high <= low):
        raise ValueError(f"normalisation file {path}: every band's maximum must exceed its minimum ({low} vs {high})")
    return low, high


def write_norm_param(path: Path, low, high) -> None:
    """Two text rows, minima then maxima (``np.savetxt``), as ``read_norm_param`` reads them."""
    np.savetxt(path, np.stack([np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)]))
