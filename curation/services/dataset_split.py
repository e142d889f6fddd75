"""Placing a dataset build's images in train, val and test.

Pure functions (no database): ``dataset_build`` reads the library, decides per class which
images are used, how many of them the ratios apply to (its *budget*: at most
``max_per_class``) and hands them here with the near-duplicate unit of every image. The
ratios give each class's train, val and test targets out of its budget; the images beyond the
budget (the overflow) add to its test target.

A *unit* is what must land in one split: the members of one near-duplicate group (groups
sharing an image join), or a single image. A unit whose images carry different classes is
still placed whole and counted in each class it holds. Placement, deterministic for a seed:

1. Units of two or more images, largest first (ties in a seeded order), each go to the split
   that takes them without passing any of their classes' targets, the one left with the most
   room relative to its targets; where none can, to the split they pass least.
2. Single images fill each class's splits up to its targets, in the class's seeded order:
   train, then val, then test.

Single images never pass a target, so a class misses its ratios only where some unit passed
one; those units are the groups named in the report.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from curation.hamming import pairs_within

SPLIT_NAMES = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2
# Achieved counts within this share of a class's budget, or one image, keep its ratios.
TOLERANCE_SHARE = 0.02
# Groups named per class that missed its ratios, and straddling pairs shown as examples.
FORCED_SHOWN = 20
EXAMPLE_PAIRS = 10


def targets(total: int, ratios: tuple[int, int, int]) -> tuple[int, int, int]:
    """How many of ``total`` go to train, val and test. Train takes what rounding leaves, so a
    zero test ratio never gets a stray image, and a validation split asked for is never
    empty."""
    whole = sum(ratios)
    val = round(total * ratios[1] / whole)
    test = round(total * ratios[2] / whole)
    if ratios[1] and not val and total > 1:
        val = 1
    train = max(0, total - val - test)
    return train, val, total - train - val


def tolerance(budget: int) -> float:
    """How far a class's achieved count in one split may be from its target: the larger of
    one image and 2% of the images the ratios apply to."""
    return max(1.0, round(TOLERANCE_SHARE * budget, 2))


@dataclass
class ClassShare:
    """One included class: its images in the class's seeded order, and how many of them the
    ratios apply to (the rest overflow to test)."""

    name: str
    images: list[int]
    budget: int
    ratios: tuple[int, int, int]

    @property
    def overflow(self) -> int:
        return len(self.images) - self.budget

    @property
    def requested(self) -> tuple[int, int, int]:
        return targets(self.budget, self.ratios)

    @property
    def goal(self) -> tuple[int, int, int]:
        """What each split should hold: the requested counts, the overflow added to test."""
        train, val, test = self.requested
        return train, val, test + self.overflow


@dataclass
class _Unit:
    key: int
    images: list[int] = field(default_factory=list)
    per_class: Counter[int] = field(default_factory=Counter)  # class id → its images here


@dataclass
class Placement:
    split_of: dict[int, str]
    # Per class id: requested against achieved counts (see ``_ratio_row``).
    ratios: dict[int, dict[str, Any]]


def place(
    *,
    shares: dict[int, ClassShare],
    unit_of: dict[int, int],
    groups_of: dict[int, list[int]],
    order_of: dict[int, str],
    seed: int,
) -> Placement:
    """Image id → split for every image of ``shares``.

    ``unit_of`` maps each image in a near-duplicate unit to the unit's key (images absent are
    units of their own), ``groups_of`` each key to its group ids, and ``order_of`` each image
    to a stable sort key (its SHA-256), so that the result depends on nothing but the inputs.
    """
    units: dict[int, _Unit] = {}
    for class_id, share in shares.items():
        for image_id in share.images:
            key = unit_of.get(image_id, image_id)
            unit = units.get(key)
            if unit is None:
                unit = units[key] = _Unit(key=key)
            unit.images.append(image_id)
            unit.per_class[class_id] += 1

    goal = {class_id: share.goal for class_id, share in shares.items()}
    placed = {class_id: [0, 0, 0] for class_id in shares}
    passed: dict[int, list[tuple[_Unit, int]]] = {class_id: [] for class_id in shares}
    split_of: dict[int, str] = {}

    # A stable order of the units, shuffled by the seed, then largest first (the sort is
    # stable, so units of one size keep the seeded order).
    grouped = sorted(
        (u for u in units.values() if len(u.images) > 1),
        key=lambda u: min(order_of[i] for i in u.images),
    )
    random.Random(f"loupe-dataset:{seed}:units").shuffle(grouped)
    grouped.sort(key=lambda u: -len(u.images))
    for unit in grouped:
        split = _best_split(unit, goal, placed)
        for image_id in unit.images:
            split_of[image_id] = SPLIT_NAMES[split]
        for class_id, count in unit.per_class.items():
            if count > goal[class_id][split] - placed[class_id][split]:
                passed[class_id].append((unit, split))
            placed[class_id][split] += count

    for class_id, share in shares.items():
        left = [goal[class_id][s] - placed[class_id][s] for s in (TRAIN, VAL, TEST)]
        for image_id in share.images:
            if len(units[unit_of.get(image_id, image_id)].images) > 1:
                continue
            # The first split with room; every split is full only where a unit passed a
            # target, and then the one passed least.
            fill = min(
                (TRAIN, VAL, TEST), key=lambda s: (left[s] <= 0, s if left[s] > 0 else -left[s])
            )
            left[fill] -= 1
            placed[class_id][fill] += 1
            split_of[image_id] = SPLIT_NAMES[fill]

    ratios = {
        class_id: _ratio_row(class_id, share, placed[class_id], passed[class_id], groups_of)
        for class_id, share in shares.items()
    }
    return Placement(split_of=split_of, ratios=ratios)


def _best_split(
    unit: _Unit, goal: dict[int, tuple[int, int, int]], placed: dict[int, list[int]]
) -> int:
    """The split that takes ``unit`` passing its classes' targets least, and among those the
    one left with the most room relative to its targets (so groups spread over the splits in
    proportion instead of filling train first)."""

    def cost(split: int) -> tuple[int, float, int]:
        passing = 0
        room = 0.0
        for class_id, count in unit.per_class.items():
            left = goal[class_id][split] - placed[class_id][split]
            passing += max(0, count - left)
            room += (left - count) / max(1, goal[class_id][split])
        return passing, -room, split

    return min((TRAIN, VAL, TEST), key=cost)


def _ratio_row(
    class_id: int,
    share: ClassShare,
    placed: list[int],
    passed: list[tuple[_Unit, int]],
    groups_of: dict[int, list[int]],
) -> dict[str, Any]:
    """Requested and achieved train/val/test counts (test includes the overflow), whether
    they are within the tolerance and, where not, the groups that passed a target."""
    requested = share.goal
    achieved = tuple(placed)
    allowed = tolerance(share.budget)
    within = all(abs(achieved[s] - requested[s]) <= allowed for s in (TRAIN, VAL, TEST))
    forced: list[dict[str, Any]] = []
    if not within:
        # Largest first: the groups that did most to push the class off its ratios.
        for unit, split in sorted(passed, key=lambda p: (-p[0].per_class[class_id], p[0].key)):
            forced.append(
                {
                    "groups": groups_of.get(unit.key, []),
                    "images": len(unit.images),
                    "in_class": unit.per_class[class_id],
                    "split": SPLIT_NAMES[split],
                }
            )
    return {
        "requested": dict(zip(SPLIT_NAMES, requested, strict=True)),
        "achieved": dict(zip(SPLIT_NAMES, achieved, strict=True)),
        "budget": share.budget,
        "overflow": share.overflow,
        "tolerance": allowed,
        "within": within,
        "forced_by": forced[:FORCED_SHOWN],
        "forced_more": max(0, len(forced) - FORCED_SHOWN),
    }


def straddling_pairs(
    *,
    image_ids: npt.NDArray[np.int64],
    hashes: npt.NDArray[np.uint64],
    split_of: dict[int, str],
    max_distance: int,
) -> dict[str, Any]:
    """pHash pairs within ``max_distance`` bits among the version's images (``image_ids`` and
    their unsigned ``hashes``), and those whose two images sit in different splits: the
    candidates no verified group held together. Examples are the nearest such pairs."""
    codes = np.fromiter(
        (SPLIT_NAMES.index(split_of[int(i)]) for i in image_ids),
        dtype=np.int8,
        count=len(image_ids),
    )
    left, right, distances = pairs_within(hashes, max_distance)
    apart = codes[left] != codes[right]
    apart_left, apart_right, apart_distances = left[apart], right[apart], distances[apart]
    nearest = np.lexsort((apart_right, apart_left, apart_distances))[:EXAMPLE_PAIRS]
    examples = [
        {
            "images": [int(image_ids[apart_left[k]]), int(image_ids[apart_right[k]])],
            "splits": [
                SPLIT_NAMES[codes[apart_left[k]]],
                SPLIT_NAMES[codes[apart_right[k]]],
            ],
            "distance": int(apart_distances[k]),
        }
        for k in nearest
    ]
    return {
        "max_distance": max_distance,
        "hashed_images": len(image_ids),
        "pairs": len(left),
        "straddling": int(apart.sum()),
        "examples": examples,
    }
