"""Hashing throughput of the worker's real path on real-size JPEGs, measured side by side.

    python bench/phash.py [--images 48] [--rounds 5] [--width 1920] [--height 1080]

What the worker runs on every new image is ``curation.services.hashing.analyse`` (through
``features_make``): one reduced decode (``open_for_analysis``: luma and chroma at the smallest
JPEG DCT scale that keeps 128 pixels a side, no colour conversion), the pHash, the dHash, the
seven probe hashes and the quality metrics. It is timed against

* plain imagehash, ``phash`` and ``dhash`` of ``Image.open(path)`` (one full decode), the
  ratio that says what the reduced decode buys (target >= 2.5x), and
* a draft-mode grey decode alone (``draft("L", ...)`` and ``load()``, nothing computed), the
  floor for any JPEG hash: the share of it the whole analysis keeps (target >= 80%).

Photos are scikit-image's bundled photographs, each cropped, scaled to the size asked and
given its own noise, saved at quality 90. Methods alternate round by round, so a busy machine
slows them alike; each is timed in this process's CPU time (what the ratios use, since the
2 cores are shared) and in wall time. Then it checks the values: the pHash ``analyse`` stores
is imagehash's pHash of the decoded luma bit for bit, and how far the draft-decoded pHash is
from the full-decode pHash of the same file.
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

from curation.imaging import ANALYSIS_MIN_SIDE, open_for_analysis  # noqa: E402
from curation.nearcopy import probe_images  # noqa: E402
from curation.services.hashing import analyse, hash_value  # noqa: E402

PHOTOS = [
    "astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
    "camera", "retina", "coins", "moon", "horse", "clock", "page", "brick",
]  # fmt: skip


SIZE = [1920, 1080]


def make_jpegs(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """JPEGs of ``size`` from scikit-image's bundled photos, each with its own noise and crop."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        base = Image.fromarray(getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()).convert("RGB")
        w, h = base.size
        left = int(rng.integers(0, max(1, w // 10)))
        top = int(rng.integers(0, max(1, h // 10)))
        right, bottom = w - int(rng.integers(0, w // 10)), h - int(rng.integers(0, h // 10))
        base = base.crop((left, top, right, bottom))
        pixels = np.asarray(base.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
        noisy = pixels + rng.normal(0, 6, pixels.shape).astype(np.int16)
        path = folder / f"photo{i:03d}.jpg"
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def plain_imagehash(path: Path) -> int:
    image = Image.open(path)
    phash = hash_value(imagehash.phash(image))
    imagehash.dhash(image)
    return phash


def draft_decode_only(path: Path) -> None:
    image = Image.open(path)
    width, height = image.size
    scale = min(width, height) / ANALYSIS_MIN_SIDE
    image.draft("L", (int(width / scale), int(height / scale)))
    image.load()


def worker_analyse(path: Path) -> int:
    # The worker reads the size from the image row; every photo here has the same.
    with open(path, "rb") as stream:
        return int(analyse(stream, width=SIZE[0], height=SIZE[1])["phash"]) & (2**64 - 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    args = parser.parse_args()
    SIZE[:] = [args.width, args.height]
    methods: dict[str, Callable[[Path], object]] = {
        "plain imagehash: phash + dhash of Image.open(path)": plain_imagehash,
        "draft decode alone (grey, nothing computed)": draft_decode_only,
        "Loupe worker: analyse() (hashes, probes, metrics)": worker_analyse,
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.images, (args.width, args.height))
        megabytes = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        for path in paths[:2]:  # warm the page cache and imports
            for method in methods.values():
                method(path)
        cpu = dict.fromkeys(methods, 0.0)
        wall = dict.fromkeys(methods, 0.0)
        for _ in range(args.rounds):
            for name, method in methods.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                for path in paths:
                    method(path)
                wall[name] += time.perf_counter() - started
                cpu[name] += time.process_time() - started_cpu
        differences = Counter(
            (plain_imagehash(path) ^ worker_analyse(path)).bit_count() for path in paths
        )
        exact = 0
        for path in paths:
            with open(path, "rb") as stream:
                luma = open_for_analysis(stream).image.getchannel(0)
            want = [hash_value(imagehash.phash(x)) for x in [luma, *probe_images(luma)]]
            with open(path, "rb") as stream:
                got = analyse(stream, width=args.width, height=args.height)
            values = [got["phash"] & (2**64 - 1), *got["probes"]]
            exact += values == want
        with open(paths[0], "rb") as stream:
            decode_mode = open_for_analysis(stream).mode
    n = args.images * args.rounds
    print(
        f"{args.images} JPEGs of {args.width}x{args.height} ({megabytes:.2f} MB on average), "
        f"{args.rounds} interleaved rounds, one process; Loupe decode mode {decode_mode}"
    )
    print(f"  {'':52} {'ms/image CPU':>12} {'images/s (wall)':>16}")
    for name in methods:
        print(f"  {name:<52} {1000 * cpu[name] / n:12.2f} {n / wall[name]:16.1f}")
    plain, draft, ours = (cpu[name] for name in methods)
    plain_wall, draft_wall, ours_wall = (wall[name] for name in methods)
    print(
        f"Loupe analyse() vs plain imagehash:   {plain / ours:5.2f}x CPU time "
        f"({plain_wall / ours_wall:.2f}x wall)   (target >= 2.5x)"
    )
    print(
        f"Loupe analyse() vs draft decode alone: {100 * draft / ours:5.1f}% CPU time "
        f"({100 * draft_wall / ours_wall:.1f}% wall)   (target >= 80%)"
    )
    print(
        f"stored pHash and probe hashes == imagehash.phash of the decoded luma: "
        f"{exact} of {len(paths)} images"
    )
    print("draft vs full-decode pHash, bits different: images")
    for bits in sorted(differences):
        print(f"  {bits:2d} bits: {differences[bits]}")
    print(
        f"max difference {max(differences)} bits (target <= 4); identical for "
        f"{differences[0]} of {len(paths)}"
    )


if __name__ == "__main__":
    main()
