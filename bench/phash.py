"""Perceptual hashing throughput on 1920x1080 JPEGs, measured side by side in one run.

    python bench/phash.py [--images 48] [--rounds 3]

Compares plain ``imagehash.phash(Image.open(path))`` (full decode), a draft-mode decode
alone (the floor for any JPEG hash), and Loupe's hashing (draft decode, pHash and dHash),
interleaving the methods round by round so a busy machine slows them alike. Then prints how
many bits the draft-decoded pHash differs from the full-decode pHash of the same file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django

django.setup()

import imagehash  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
from PIL import Image  # noqa: E402

from curation.imaging import ANALYSIS_MIN_SIDE  # noqa: E402
from curation.services.hashing import hash_value, image_hashes  # noqa: E402

PHOTOS = [
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "camera", "retina", "coins", "moon", "horse", "clock", "page", "brick",
]  # fmt: skip


def make_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """1920x1080 JPEGs from scikit-image's bundled photos, each with its own noise and crop."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        base = Image.fromarray(getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()).convert("RGB")
        w, h = base.size
        left = int(rng.integers(0, max(1, w // 10)))
        top = int(rng.integers(0, max(1, h // 10)))
        right, bottom = w - int(rng.integers(0, w // 10)), h - int(rng.integers(0, h // 10))
        base = base.crop((left, top, right, bottom))
        pixels = np.asarray(base.resize((1920, 1080), Image.Resampling.BICUBIC), dtype=np.int16)
        noisy = pixels + rng.normal(0, 6, pixels.shape).astype(np.int16)
        path = folder / f"photo{i:03d}.jpg"
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def plain_phash(path: Path) -> int:
    return hash_value(imagehash.phash(Image.open(path)))


def draft_decode_only(path: Path) -> None:
    image = Image.open(path)
    width, height = image.size
    scale = min(width, height) / ANALYSIS_MIN_SIDE
    image.draft("L", (int(width / scale), int(height / scale)))
    image.load()


def loupe_hashes(path: Path) -> int:
    with open(path, "rb") as stream:
        return image_hashes(stream).phash


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    methods: dict[str, Callable[[Path], object]] = {
        "plain imagehash.phash(Image.open(path))": plain_phash,
        "draft decode only": draft_decode_only,
        "Loupe: draft decode + pHash + dHash": loupe_hashes,
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.images)
        for path in paths[:2]:  # warm the page cache and imports
            for method in methods.values():
                method(path)
        spent = dict.fromkeys(methods, 0.0)
        for _ in range(args.rounds):
            for name, method in methods.items():
                started = time.perf_counter()
                for path in paths:
                    method(path)
                spent[name] += time.perf_counter() - started
        differences = Counter(
            (plain_phash(path) ^ loupe_hashes(path)).bit_count() for path in paths
        )
        decode_mode = image_hashes(open(paths[0], "rb")).decode_mode  # noqa: SIM115
    n = args.images * args.rounds
    rate = {name: n / seconds for name, seconds in spent.items()}
    plain, draft, ours = (rate[name] for name in methods)
    print(f"{args.images} JPEGs of 1920x1080, {args.rounds} interleaved rounds, one process")
    print(f"Loupe decode mode: {decode_mode}")
    for name in methods:
        print(f"  {name:<45} {rate[name]:8.1f} images/s")
    print(f"Loupe vs plain imagehash:      {ours / plain:5.2f}x   (target >= 2.5x)")
    print(f"Loupe vs draft decode only:    {100 * ours / draft:5.1f}%   (target >= 80%)")
    print("draft vs full-decode pHash, bits different: images")
    for bits in sorted(differences):
        print(f"  {bits:2d} bits: {differences[bits]}")
    worst = max(differences)
    print(
        f"max difference {worst} bits (target <= 4); identical for {differences[0]} of {len(paths)}"
    )


if __name__ == "__main__":
    main()
