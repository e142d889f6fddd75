"""Dataset export throughput against a plain file copy of the same images, in one run.

    python bench/export.py [--images 10000] [--kb 60] [--shard-size 1000] [--workers N]
                           [--rounds 3]

A scratch library (SQLite and media in a temporary folder) gets ``--images`` originals of
about ``--kb`` KB each and a dataset version over all of them. The same originals are then
(1) copied file by file with ``shutil.copyfile`` into a fresh folder, (2) exported as
WebDataset shards, (3) as a folder tree (the default: copies, or reflinks where the file
system has them) and (4) as a folder tree of hard links (``hard_links=True``). Page cache is
warmed first so every side reads from memory, and dirty pages are flushed before each timing
so no side pays for the writes of the one before. Every side runs once per round, in a rotated
order; prints images/s and MB/s of each and the median over the rounds of the ratio
export / copy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
SCRATCH = Path(tempfile.mkdtemp(prefix="loupe-bench-export-"))
os.environ["LOUPE_DATA_DIR"] = str(SCRATCH)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from curation.models import Image, LabelClass, SubClass  # noqa: E402
from curation.services.datasets import (  # noqa: E402
    DatasetParams,
    dataset_build,
    dataset_version_create,
)
from curation.services.export import dataset_export  # noqa: E402
from curation.storage import original_name  # noqa: E402


def make_library(images: int, kb: int, classes: int = 50) -> list[Path]:
    media = Path(settings.MEDIA_ROOT)
    subclasses = []
    for index in range(classes):
        label_class = LabelClass.objects.create(name=f"Class {index:03d}")
        subclasses.append(
            SubClass.objects.create(label_class=label_class, name="default", is_default=True)
        )
    rows, paths = [], []
    for index in range(images):
        body = os.urandom(kb * 1024 + index % 4096)
        sha = hashlib.sha256(body).hexdigest()
        path = media / original_name(sha, "jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        paths.append(path)
        rows.append(
            Image(
                sha256=sha,
                extension="jpg",
                content_type="image/jpeg",
                format="JPEG",
                width=640,
                height=480,
                file_size=len(body),
                subclass=subclasses[index % classes],
            )
        )
    Image.objects.bulk_create(rows, batch_size=2000)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--kb", type=int, default=60)
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    print(f"scratch library in {SCRATCH}; {args.images} images of ~{args.kb} KB")
    paths = make_library(args.images, args.kb)
    total_bytes = sum(p.stat().st_size for p in paths)
    version = dataset_version_create(
        name="bench",
        params=DatasetParams(min_per_class=1, max_per_class=10**9, ratios=(90, 10, 0)),
        actor=None,
    )
    started = time.perf_counter()
    dataset_build(version=version)
    print(f"build_dataset: {args.images} images in {time.perf_counter() - started:.2f} s")

    for path in paths:  # warm the page cache for both sides
        path.read_bytes()

    def report(label: str, seconds: float) -> None:
        print(
            f"  {label:<44} {seconds:7.2f} s  {args.images / seconds:9.0f} images/s  "
            f"{total_bytes / seconds / 1e6:8.1f} MB/s"
        )

    def plain_copy(out: Path) -> str:
        out.mkdir()
        for path in paths:
            shutil.copyfile(path, out / path.name)
        return "plain file copy (shutil.copyfile)"

    def webdataset(out: Path) -> str:
        result = dataset_export(
            version=version,
            out=out,
            format="webdataset",
            shard_size=args.shard_size,
            workers=args.workers,
        )
        return f"export webdataset ({len(result.files)} shards, {args.workers} proc)"

    def folder(out: Path) -> str:
        result = dataset_export(version=version, out=out, format="folder", workers=args.workers)
        return f"export folder ({result.copied} copies, {result.reflinked} reflinks)"

    def hard_links(out: Path) -> str:
        result = dataset_export(version=version, out=out, format="folder", hard_links=True)
        return f"export folder, hard links ({result.linked})"

    sides = {"copy": plain_copy, "wds": webdataset, "folder": folder, "links": hard_links}
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    # Each round runs every side back to back, in a rotated order, so that a busy moment on
    # a shared machine lands on every side alike; the ratios are per round, then the median.
    for round_number in range(args.rounds):
        print(f"round {round_number + 1}")
        names = list(sides)
        names = names[round_number % len(names) :] + names[: round_number % len(names)]
        for name in names:
            out = SCRATCH / f"{name}-{round_number}"
            os.sync()  # no side pays for the writes of the one before
            started = time.perf_counter()
            label = sides[name](out)
            seconds[name].append(time.perf_counter() - started)
            report(label, seconds[name][-1])
            shutil.rmtree(out)

    def ratio(name: str) -> str:
        ratios = [c / s for c, s in zip(seconds["copy"], seconds[name], strict=True)]
        each = ", ".join(f"{r:.2f}" for r in ratios)
        return f"{statistics.median(ratios):.2f} (rounds: {each})"

    print(f"ratio webdataset / copy:        {ratio('wds')}, target >= 0.80")
    print(f"ratio folder / copy:            {ratio('folder')}, target >= 0.80")
    print(f"ratio folder hard links / copy: {ratio('links')}")
    shutil.rmtree(SCRATCH)


if __name__ == "__main__":
    main()
