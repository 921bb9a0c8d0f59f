"""How well the optically-deep test (engine/quality.py, reason 4) finds the simulator's optically deep
water, over many simulated scenes, and how well any per-pixel ratio test could (issue #16).

For each seed of each simulated site (training/simulation/shallow_water.py, 384 x 384 px, 5 % clouds
and glint), given the true water (so that land, cloud and glint tests do not enter), it prints the
share of the scene that is optically deep and the precision / recall of
- ``engine``: ``engine.quality.optically_deep`` with the tolerance ``training fit`` records for the
  site (``deep_ratio_tolerance``), on the scene as simulated;
- ``engine, no noise``: the same on the same scene without sensor noise (reflectance x 10000 rounded
  to integers only);
- ``pixel, no noise``: each pixel's own green/blue ratio and blue signal against the same tolerances,
  without sensor noise: the ceiling of a ratio test that needs no neighbours.
The truth is the simulator's: the bottom adds less than the sensor noise in every band. Where the
deep water is a thin band along a gentle slope, the pixels whose bottom signal lies within a few
percent of the noise are a large part of it, and even the noise-free test misjudges them.
Usage: python bench/deep_water_mask.py [--size 384] [--seeds 11-14,41-48]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.quality import DEEP, DEEP_BRIGHTNESS_TOLERANCE, VALID, optically_deep  # noqa: E402
from training.simulation.shallow_water import (  # noqa: E402
    REFLECTANCE_SCALE,
    SITES,
    deep_ratio_tolerance,
    simulate_scene,
)

GOAL = 0.9


def seed_list(text: str) -> list[int]:
    """"11-14,41" -> [11, 12, 13, 14, 41]."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def scores(truth: np.ndarray, found: np.ndarray) -> tuple[float, float]:
    hits = (truth & found).sum()
    return hits / max(found.sum(), 1), hits / max(truth.sum(), 1)


def pixel_test(blue: np.ndarray, green: np.ndarray, deep_blue: float, deep_green: float, tolerance: float) -> np.ndarray:
    return (np.abs(np.log(green / blue) - np.log(deep_green / deep_blue)) <= tolerance) & (
        np.abs(np.log(blue / deep_blue)) <= DEEP_BRIGHTNESS_TOLERANCE)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--seeds", default="11-14,41-48")
    parser.add_argument("--sites", nargs="+", default=sorted(SITES), choices=sorted(SITES))
    args = parser.parse_args()
    seeds = seed_list(args.seeds)
    for name in args.sites:
        site = SITES[name]
        tolerance = deep_ratio_tolerance(site)
        _, deep_green, deep_blue = (value * REFLECTANCE_SCALE for value in site.deep_water_reflectance)
        print(f"\n{name}: ratio tolerance {tolerance}, {args.size} x {args.size} px, precision / recall")
        print(f"{'seed':>5s} {'deep':>6s} {'engine':>11s} {'engine, no noise':>17s} {'pixel, no noise':>16s}")
        reached = np.zeros(3, int)
        for seed in seeds:
            row = []
            for noise_scale in (1.0, 0.0):
                scene = simulate_scene(args.size, args.size, seed=seed, site=name, clouds=0.05, glint=0.05,
                                       noise_scale=noise_scale)
                truth = scene.surface == DEEP
                water = (scene.surface == VALID) | truth
                blue, green = (np.maximum(scene.image[band].astype(np.float64), 1.0) for band in (2, 1))
                row.append(scores(truth, optically_deep(blue, green, water, deep_blue, deep_green, tolerance)))
            row.append(scores(truth, water & pixel_test(blue, green, deep_blue, deep_green, tolerance)))
            reached += [min(pair) >= GOAL for pair in row]
            print(f"{seed:5d} {truth.mean():6.1%} " + " ".join(
                f"{f'{precision:.2f} / {recall:.2f}':>{width}s}"
                for (precision, recall), width in zip(row, (11, 17, 16))))
        print(f"both >= {GOAL} on {' / '.join(f'{count} of {len(seeds)}' for count in reached)} seeds "
              "(engine / engine, no noise / pixel, no noise)")


if __name__ == "__main__":
    main()
