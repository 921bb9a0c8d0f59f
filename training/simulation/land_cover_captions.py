"""Captions derived from measured tile content (``training.simulation.land_cover``).

GAIA (Zavras et al. 2025) gives every image five synthetic, scientifically grounded captions;
these fixtures do the same from what the pixels measurably hold: the land-cover fractions, the
side of the tile where the water lies, and whether the tile holds a shoreline. Five templates
phrase the same facts differently (amount words, percentages, layout), so that a model must learn
the content rather than one wording. Change sentences (LEVIR-CC style) name the class whose share
grew or shrank most between two dates and where.
"""
from __future__ import annotations

import numpy as np

from training.simulation.land_cover import LAND_COVER, LandUseContext, fractions, side_of

PRESENT = 0.1  # a class is mentioned from this share of the tile on
NOUNS = {
    "vegetation": "green vegetation",
    "built-up": "built-up urban land",
    "salt flat": "bright salt flats",
    "arid land": "dry arid land",
}
SHORT_NOUNS = {"vegetation": "vegetation", "built-up": "city", "salt flat": "salt flats", "arid land": "desert"}
NO_CHANGE = ("the scene is the same as before", "there is no change", "nothing has changed in this area")
CHANGE_VERBS = {
    ("water", "grew"): ("new water appeared", "the area was flooded"),
    ("water", "shrank"): ("the water receded", "water dried up"),
    ("vegetation", "grew"): ("vegetation grew", "new vegetation appeared"),
    ("vegetation", "shrank"): ("vegetation was cleared", "the vegetation was removed"),
    ("built-up", "grew"): ("new buildings were built", "the city expanded"),
    ("built-up", "shrank"): ("buildings were demolished", "built-up land was removed"),
    ("salt flat", "grew"): ("bright salt flats appeared", "salt crust spread"),
    ("salt flat", "shrank"): ("the salt flats disappeared", "the bright salt crust shrank"),
    ("arid land", "grew"): ("bare arid land appeared", "the land became bare"),
    ("arid land", "shrank"): ("bare arid land was covered", "the arid land shrank"),
}
CHANGE_SHARE = 0.05  # a class whose share moved less than this did not change
LAND_COVER_PREFIX = "Land cover: "
SHORELINE_PREFIX = "A shoreline where"


def _noun(name: str, context: LandUseContext, short: bool = False) -> str:
    if name == "water":
        return context.water_noun if short else f"{context.water_noun} water"
    return (SHORT_NOUNS if short else NOUNS)[name]


def _amount(share: float) -> str:
    if share >= 0.85:
        return "entirely"
    if share >= 0.6:
        return "mostly"
    if share >= 0.3:
        return "partly"
    return "a little"


def image_captions(classes: np.ndarray, context: LandUseContext) -> list[str]:
    """Five captions of one tile from its land-cover map (``land_cover.classify``)."""
    share = fractions(classes)
    present = sorted((name for name in LAND_COVER if share[name] >= PRESENT), key=lambda n: -share[n])
    main, others = present[0], present[1:]
    water = share["water"]
    nouns = [_noun(name, context) for name in present]
    short = [_noun(name, context, short=True) for name in present]

    if not others:
        first = f"A satellite image of {nouns[0]} only."
        second = f"The whole area is {short[0]}."
    else:
        first = f"A satellite image {_amount(share[main])} of {nouns[0]}, with " + " and ".join(
            f"{_amount(share[name])} {noun}" for name, noun in zip(others, nouns[1:])
        ) + "."
        second = "An area of " + ", ".join(short[:-1]) + f" and {short[-1]}."
    third = LAND_COVER_PREFIX + ", ".join(
        f"{noun} {round(100 * share[name])}%" for name, noun in zip(present, short)
    ) + "."
    if PRESENT <= water <= 1 - PRESENT:
        land = max((n for n in LAND_COVER if n != "water"), key=lambda n: share[n])
        fourth = f"{SHORELINE_PREFIX} the {_noun('water', context, short=True)} meets {_noun(land, context)}."
        fifth = (
            f"{_noun('water', context, short=True).capitalize()} on the "
            f"{side_of(classes == LAND_COVER.index('water'))} side of the image, {_noun(land, context, short=True)} elsewhere."
        )
    elif others:
        fourth = f"Mainly {short[0]}, some {short[1]}."
        fifth = f"{nouns[1].capitalize()} in the {side_of(classes == LAND_COVER.index(others[0]))} of an area of {short[0]}."
    else:
        fourth = f"A uniform area of {nouns[0]} with no other land cover."
        fifth = f"Nothing but {short[0]} in this tile."
    return [first, second, third, fourth, fifth]


def image_answers(captions: tuple[str, ...]) -> frozenset[str]:
    """What ``image_captions`` stated, as search answers: the short noun of the tile's largest class
    (the first of the "Land cover: ..." caption: "lake", "sea", "city", "vegetation", "salt flats",
    "desert"), plus "shoreline" when the tile holds one."""
    (shares,) = [c for c in captions if c.startswith(LAND_COVER_PREFIX)]
    largest = shares[len(LAND_COVER_PREFIX):].split(",")[0].rsplit(" ", 1)[0]
    return frozenset({largest} | ({"shoreline"} if any(c.startswith(SHORELINE_PREFIX) for c in captions) else set()))


def change_answers(captions: tuple[str, ...]) -> frozenset[str]:
    """What ``change_captions`` stated (also after LEVIR-CC's lower-casing): the ``LAND_COVER``
    class that grew, or "no change"."""
    first = captions[0].strip().lower()
    if first == NO_CHANGE[0]:
        return frozenset({"no change"})
    grown = [name for (name, way), (phrase, _) in CHANGE_VERBS.items() if way == "grew" and first.startswith(phrase)]
    if len(grown) != 1:
        raise ValueError(f"not a sentence of change_captions: {captions[0]!r}")
    return frozenset(grown)


def change_captions(before: np.ndarray, after: np.ndarray, context: LandUseContext) -> list[str]:
    """Five LEVIR-CC-style sentences for two land-cover maps of the same tile."""
    share_before, share_after = fractions(before), fractions(after)
    moved = {name: share_after[name] - share_before[name] for name in LAND_COVER}
    grown = max(moved, key=lambda name: moved[name])
    if moved[grown] < CHANGE_SHARE:
        return [*NO_CHANGE, "the two images show the same land cover", "no change between the two dates"]
    shrunk = min(moved, key=lambda name: moved[name])
    new_pixels = (after == LAND_COVER.index(grown)) & (before != LAND_COVER.index(grown))
    where = side_of(new_pixels)
    place = "in the centre" if where == "centre" else f"in the {where}"
    appeared, also = CHANGE_VERBS[(grown, "grew")]
    removed, _ = CHANGE_VERBS[(shrunk, "shrank")]
    grown_noun, shrunk_noun = _noun(grown, context, short=True), _noun(shrunk, context, short=True)
    return [
        f"{appeared} {place}",
        f"{also} where there was {shrunk_noun} before",
        f"{removed} and {grown_noun} took its place",
        f"{grown_noun} now covers about {round(100 * moved[grown])}% more of the area",
        f"{shrunk_noun} changed into {grown_noun} {place}",
    ]
