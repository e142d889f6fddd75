"""Folder import throughput on typical 1-2 MP JPEGs, on SQLite and on PostgreSQL.

    python bench/import_throughput.py [-n 400] [--workers N] [--db sqlite,postgres] [--profile]

Generates N unique JPEGs (crops and rescales of scikit-image's sample photos with noise,
1600x1000 or 1920x1080, quality 90) into a folder tree ``<class>/<file>.jpg`` once (kept
between runs under /tmp), measures the raw cost of the pieces of an import in this process
(read, SHA-256, full decode, draft decode, the whole ``file_inspect``), then runs
``manage.py import_library --json`` on a fresh database of each kind and prints images/s side
by side with the pieces. ``--profile`` runs one more SQLite import in-process under cProfile.

Target: at least 100 images/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(tempfile.gettempdir()) / "loupe-bench-import"
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.base"
os.environ.setdefault("LOUPE_DATA_DIR", str(WORK / "data-pieces"))
os.environ.setdefault("LOUPE_SECRET_KEY", "bench-only-secret-key-0123456789-0123456789-0123456789")
sys.path.insert(0, str(ROOT))

PG_URL = "postgres://postgres@127.0.0.1:5432/loupe_bench"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina", "camera")
SIZES = ((1600, 1000), (1920, 1080))
CLASSES = 8


# --- Corpus -------------------------------------------------------------------------------


def _make_one(args: tuple[int, str]) -> int:
    import numpy as np
    import skimage.data
    from PIL import Image

    index, folder = args
    rng = np.random.default_rng(1000 + index)
    name = PHOTOS[index % len(PHOTOS)]
    pixels = np.asarray(getattr(skimage.data, name)())
    photo = Image.fromarray(pixels).convert("RGB")
    width, height = SIZES[index % len(SIZES)]
    # A random crop (60-100% of the photo), rescaled to the target size: unique framing.
    share = float(rng.uniform(0.6, 1.0))
    cw, ch = int(photo.width * share), int(photo.height * share)
    left = int(rng.integers(0, photo.width - cw + 1))
    top = int(rng.integers(0, photo.height - ch + 1))
    photo = photo.crop((left, top, left + cw, top + ch)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    # Sensor-like noise makes every file unique and gives it the size of a real photo.
    noisy = np.asarray(photo, dtype=np.int16) + rng.normal(0, 6, (height, width, 3)).astype(
        np.int16
    )
    photo = Image.fromarray(noisy.clip(0, 255).astype(np.uint8))
    target = Path(folder, f"class-{index % CLASSES:02d}", f"photo-{index:05d}.jpg")
    target.parent.mkdir(parents=True, exist_ok=True)
    photo.save(target, format="JPEG", quality=90)
    return target.stat().st_size


def corpus(n: int) -> Path:
    """The folder tree of ``n`` JPEGs, generated once and reused."""
    tree = WORK / f"tree-{n}"
    stamp = tree / ".complete"
    if stamp.exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    import multiprocessing

    started = time.monotonic()
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        sizes = pool.map(_make_one, [(i, str(tree)) for i in range(n)], chunksize=4)
    stamp.write_text("ok")
    print(
        f"generated {n} JPEGs in {time.monotonic() - started:.1f} s: "
        f"{statistics.mean(sizes) / 1024:.0f} KB mean, "
        f"{min(sizes) / 1024:.0f}-{max(sizes) / 1024:.0f} KB"
    )
    return tree


def corpus_files(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*.jpg"))


# --- Pieces -------------------------------------------------------------------------------


def _timed(label: str, files: list[bytes], work: object) -> float:
    started = time.perf_counter()
    for data in files:
        work(data)  # type: ignore[operator]
    per_image = (time.perf_counter() - started) / len(files)
    print(f"  {label:<44} {per_image * 1000:7.2f} ms/image  {1 / per_image:8.1f} images/s/core")
    return per_image


def pieces(paths: list[Path]) -> dict[str, float]:
    import hashlib

    import django

    django.setup()
    from PIL import Image

    from curation.imaging import decode_image
    from curation.services.images import file_inspect

    sample = paths[: min(len(paths), 200)]
    started = time.perf_counter()
    blobs = [p.read_bytes() for p in sample]
    read = (time.perf_counter() - started) / len(sample)
    mp = (
        statistics.mean(
            Image.open(io.BytesIO(b)).size[0] * Image.open(io.BytesIO(b)).size[1]
            for b in blobs[:20]
        )
        / 1e6
    )
    print(
        f"pieces, one core, {len(sample)} files "
        f"(mean {statistics.mean(len(b) for b in blobs) / 1024:.0f} KB, {mp:.2f} MP):"
    )
    print(f"  {'read file (page cache)':<44} {read * 1000:7.2f} ms/image")

    def full_decode(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.load()

    def draft_decode(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (image.width // 8, image.height // 8))
            image.load()

    def draft_decode_grey(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (image.width // 8, image.height // 8))
            image.load()

    def headers_only(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.size  # noqa: B018 - parsing the header is the work measured

    store_dir = WORK / "store-piece"
    shutil.rmtree(store_dir, ignore_errors=True)
    from curation.storage import AtomicFileSystemStorage

    storage = AtomicFileSystemStorage(location=str(store_dir))
    counter = iter(range(10**9))

    def store_fsync(data: bytes) -> None:
        from django.core.files.base import ContentFile

        storage.save(f"originals/{next(counter):08d}.jpg", ContentFile(data))

    def store_plain(data: bytes) -> None:
        path = store_dir / "plain" / f"{next(counter):08d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return {
        "read": read,
        "store_fsync": _timed("store original (temp + fsync + rename)", blobs, store_fsync),
        "store_plain": _timed("plain write, no fsync (for comparison)", blobs, store_plain),
        "headers_only": _timed("header parse only (Image.open)", blobs, headers_only),
        "sha256": _timed("sha256 only", blobs, lambda d: hashlib.sha256(d).hexdigest()),
        "full_decode": _timed("full decode (PIL load)", blobs, full_decode),
        "draft_decode": _timed("draft decode (1/8 scale DCT)", blobs, draft_decode),
        "draft_decode_grey": _timed(
            "draft decode to greyscale (1/8, mode L)", blobs, draft_decode_grey
        ),
        "decode_image": _timed(
            "decode_image (the import's check)", blobs, lambda d: decode_image(io.BytesIO(d))
        ),
        "file_inspect": _timed(
            "file_inspect (sha256 + decode_image)",
            blobs,
            lambda d: file_inspect(data=d, name="x.jpg"),
        ),
    }


# --- Imports ------------------------------------------------------------------------------


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run_import(kind: str, tree: Path, workers: int | None) -> dict[str, Any]:
    data_dir = WORK / f"data-{kind}"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    env = {**os.environ, "LOUPE_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    if kind == "postgres":
        _psql("DROP DATABASE IF EXISTS loupe_bench")
        _psql("CREATE DATABASE loupe_bench")
        env["DATABASE_URL"] = PG_URL
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
    command = [*manage, "import_library", str(tree), "--json"]
    if workers:
        command += ["--workers", str(workers)]
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(command, env=env, check=True, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the command and its pool processes: less sensitive than wall time to
    # other work on a shared machine (includes Django's start-up, about 1.5 s).
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["wall_seconds"] = round(wall, 2)
    summary["cpu_ms_per_image"] = round(cpu * 1000 / max(1, int(summary["files"])), 1)
    summary.pop("rejections", None)
    return summary


def profile_import(tree: Path, workers: int | None) -> None:
    """One more SQLite import in this process under cProfile: the recording process's view
    (the pool processes that hash and decode are not in it)."""
    import pstats

    data_dir = WORK / "data-profile"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    env = {**os.environ, "LOUPE_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "migrate", "-v0"], env=env, check=True, cwd=ROOT
    )
    out = WORK / "import.prof"
    command = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(out),
        str(ROOT / "manage.py"),
        "import_library",
        str(tree),
        "--json",
    ]
    if workers:
        command += ["--workers", str(workers)]
    subprocess.run(command, env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    stats = pstats.Stats(str(out))
    print("\ncProfile of the importing (recording) process, top 25 by cumulative time:")
    stats.sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=400, help="images (default 400)")
    parser.add_argument("--workers", type=int, default=None, help="import_library --workers")
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite,postgres or one")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    tree = corpus(args.n)
    paths = corpus_files(tree)
    total_bytes = sum(p.stat().st_size for p in paths)
    print(
        f"corpus: {len(paths)} JPEGs, {total_bytes / len(paths) / 1024:.0f} KB mean, "
        f"{os.cpu_count()} cores\n"
    )
    cost = pieces(paths)

    cores = os.cpu_count() or 1
    per_image = cost["read"] + cost["file_inspect"] + cost["store_fsync"]
    bound = cores / per_image
    print(
        f"\nbound from the pieces alone (read + inspect + store on {cores} cores, recording "
        f"not counted): {bound:.0f} images/s"
    )
    print("\nimport_library on a fresh database (subprocess, --json):")
    print(
        f"  {'database':<10} {'files':>6} {'created':>8} {'import s':>9} {'images/s':>9} "
        f"{'wall s':>7} {'vs bound':>8} {'CPU ms/image':>13}"
    )
    for kind in args.db.split(","):
        result = run_import(kind, tree, args.workers)
        rate = float(result["files_per_second"] or 0)
        print(
            f"  {kind:<10} {result['files']:>6} {result['created']:>8} {result['seconds']:>9} "
            f"{rate:>9.1f} {result['wall_seconds']:>7} {rate / bound:>8.2f} "
            f"{result['cpu_ms_per_image']:>13}"
        )
    print(
        "  (images/s counts the import itself; wall s adds Django start-up and migrations "
        "are excluded)"
    )
    print(
        f"  ratios: full decode / draft decode = "
        f"{cost['full_decode'] / cost['draft_decode']:.1f}x; "
        f"decode_image / sha256 = {cost['decode_image'] / cost['sha256']:.1f}x"
    )
    print(f"load average after the run: {os.getloadavg()}")
    if args.profile:
        profile_import(tree, args.workers)


if __name__ == "__main__":
    main()
