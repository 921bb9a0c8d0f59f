"""The 19-class reBEN nomenclature in ONE order, and the explicit map from torchgeo's order.

reBEN / BigEarthNet v2.0 (Clasen et al., "reBEN: Refined BigEarthNet Dataset for Remote Sensing
Image Analysis", 2024) labels every 1200 m patch with the classes of the 19-class nomenclature that
occur in its pixel-level CORINE Land Cover 2018 reference map.

Our order (``CLASS_NAMES``) is alphabetical (Python ``sorted``), the order the reference weights
use; every model, metric, contract and model card of this toolbox uses it. torchgeo's
``BigEarthNetV2`` returns labels and reference-map ordinals in CLC-code order
(``TORCHGEO_CLASS_NAMES``); ``REFERENCE_FROM_TORCHGEO`` converts them. Torch-free on purpose: the
fixture generator, the store and the export share it.
"""
from __future__ import annotations

# (name, CLC level-3 codes merged into it, CLC legend colour); alphabetical by name.
CLASSES: tuple[tuple[str, tuple[int, ...], str], ...] = (
    ("Agro-forestry areas", (244,), "#f2cca6"),
    ("Arable land", (211, 212, 213), "#ffffa8"),
    ("Beaches, dunes, sands", (331,), "#e6e6e6"),
    ("Broad-leaved forest", (311,), "#80ff00"),
    ("Coastal wetlands", (421, 422), "#ccccff"),
    ("Complex cultivation patterns", (242,), "#ffe64d"),
    ("Coniferous forest", (312,), "#00a600"),
    ("Industrial or commercial units", (121,), "#cc4df2"),
    ("Inland waters", (511, 512), "#80f2e6"),
    ("Inland wetlands", (411, 412), "#a6a6ff"),
    (
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
        (243,),
        "#e6cc4d",
    ),
    ("Marine waters", (521, 522, 523), "#e6f2ff"),
    ("Mixed forest", (313,), "#4dff00"),
    ("Moors, heathland and sclerophyllous vegetation", (322, 323), "#a6ff80"),
    ("Natural grassland and sparsely vegetated areas", (321, 333), "#ccf24d"),
    ("Pastures", (231,), "#e6e64d"),
    ("Permanent crops", (221, 222, 223, 241), "#e68000"),
    ("Transitional woodland, shrub", (324,), "#a6f200"),
    ("Urban fabric", (111, 112), "#e6004d"),
)
CLASS_NAMES: tuple[str, ...] = tuple(name for name, _, _ in CLASSES)
CLASS_COLOURS: tuple[str, ...] = tuple(colour for _, _, colour in CLASSES)
NUM_CLASSES = len(CLASSES)

# Level-3 CLC codes that the 19-class nomenclature leaves out (roads, ports, airports, mines,
# dumps, construction, green urban and leisure areas, bare rock, burnt areas, glaciers, intertidal
# flats): they occur in reference maps but give no label.
CLC_CODES_WITHOUT_CLASS: tuple[int, ...] = (122, 123, 124, 131, 132, 133, 141, 142, 332, 334, 335, 423)
CLC_TO_CLASS: dict[int, int] = {code: index for index, (_, codes, _) in enumerate(CLASSES) for code in codes}
NO_CLASS = 255  # reference-map pixels whose CLC code is outside the nomenclature

# torchgeo.datasets.BigEarthNetV2.class_set (CLC-code order); tests check it is still torchgeo's.
TORCHGEO_CLASS_NAMES: tuple[str, ...] = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)
# REFERENCE_FROM_TORCHGEO[i]: torchgeo's index of our class i (so labels[..., this] reorders them);
# CLASS_FROM_TORCHGEO[j]: our index of torchgeo's class j (maps reference-map ordinals).
REFERENCE_FROM_TORCHGEO: tuple[int, ...] = tuple(TORCHGEO_CLASS_NAMES.index(name) for name in CLASS_NAMES)
CLASS_FROM_TORCHGEO: tuple[int, ...] = tuple(CLASS_NAMES.index(name) for name in TORCHGEO_CLASS_NAMES)
