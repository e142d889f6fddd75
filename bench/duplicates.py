"""Near-duplicate search at scale, on the path production runs, measured side by side.

    python bench/duplicates.py [--images 1000000] [--sample-rows 256] [--queries 200]
                               [--postgres loupe_perf [--reuse]] [--skip-scan] [--skip-db]
                               [--skip-verify]

1. Full scan, candidate generation: ``hash_candidates`` (what ``duplicates_scan`` runs) on
   1,000,000 random 64-bit pHashes and dHashes and 7,000,000 probe hashes (7 per image), with
   planted near pairs of each kind (pHash-pHash, probe-pHash, dHash-dHash at 0-8 bits). It is
   checked against a brute force on sampled images, in numpy and in faiss ``IndexBinaryFlat``
   (a C++ brute force), both timed: their time for the whole scan is extrapolated from the
   hashes they compared (their cost is linear in it). Every planted pair must be found, and on
   the sampled images the candidates (pair, distance, signal) must be exactly the brute
   force's.
2. Verification cost per candidate pair, on real-size JPEGs (1 to 12 megapixels, scaled and
   tiled from scikit-image's photographs, stored in a scratch library): ``verify_candidates``
   from a cold cache (both originals read and decoded, ORB + RANSAC), on copies and on pairs of
   distinct photos, per size; then the whole scan's time at 100,000 images of that size, from
   the candidate count of a 100,000-image synthetic library and the per-pair cost measured
   here (an extrapolation, printed as one).
3. On-import lookup: 1,000,000 images with features and 7,000,000 probe rows in the database
   (SQLite in a scratch folder, or PostgreSQL with ``--postgres NAME``: that database is
   dropped and created again unless ``--reuse``), then ``near_candidates`` per image (the two
   indexed look-ups ``duplicates_check`` runs in the worker right after import), median and
   p95, each checked against a brute force over the arrays.

Threads: the scan uses every CPU this process may run on (``curation.hamming``), and so does
verification. Times are wall-clock with this process's CPU time beside them; the machine's
load average is printed, since other work may share the cores.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--planted", type=int, default=2_000, help="near pairs of each kind")
    parser.add_argument("--sample-rows", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--scan-images", type=int, default=100_000, help="for the estimate")
    parser.add_argument("--postgres", metavar="NAME", help="PostgreSQL database for part 3")
    parser.add_argument("--reuse", action="store_true", help="keep the populated database")
    parser.add_argument("--skip-scan", action="store_true")
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--skip-db", action="store_true")
    return parser.parse_args()


ARGS = _arguments()
if ARGS.postgres:
    os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{ARGS.postgres}"
    if not ARGS.reuse:
        for sql in (f"DROP DATABASE IF EXISTS {ARGS.postgres}", f"CREATE DATABASE {ARGS.postgres}"):
            subprocess.run(
                ["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql],
                check=True,
                stdout=subprocess.DEVNULL,
            )
else:
    os.environ.pop("DATABASE_URL", None)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")

import django  # noqa: E402

django.setup()

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

from curation.hamming import part_values, plan, popcount, search_threads, signed_of  # noqa: E402
from curation.models import ImportKind  # noqa: E402
from curation.services.duplicates import (  # noqa: E402
    DEFAULT_MAX_DISTANCE,
    Candidate,
    CopyFeatureCache,
    hash_candidates,
    near_candidates,
    verify_candidates,
)
from curation.services.images import file_inspect, image_import, import_batch_create  # noqa: E402

PROBES = 7
U64 = np.ndarray


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


@contextmanager
def timed(into: dict[str, float]) -> Iterator[None]:
    started, started_cpu = time.perf_counter(), time.process_time()
    yield
    into["wall"] = time.perf_counter() - started
    into["cpu"] = time.process_time() - started_cpu


# --- Synthetic library -----------------------------------------------------------------------


def flipped(rng: np.random.Generator, value: int, max_distance: int) -> int:
    for bit in rng.choice(64, size=int(rng.integers(0, max_distance + 1)), replace=False):
        value ^= 1 << int(bit)
    return value


def synthetic_library(
    n: int, planted: int, max_distance: int, seed: int = 7
) -> tuple[dict[str, np.ndarray], set[tuple[int, int]]]:
    """Random hashes of ``n`` images (positions 0..n-1) and their probe hashes, with
    ``planted`` near pairs of each kind; returns the arrays and the planted pairs."""
    rng = np.random.default_rng(seed)

    def random(size: int) -> U64:
        return rng.integers(0, 2**64 - 1, size=size, dtype=np.uint64, endpoint=True)

    phashes, dhashes, probes = random(n), random(n), random(n * PROBES)
    planted = min(planted, n // 6)
    # Disjoint images for each kind: sources in the first half, copies in the second.
    sources = rng.permutation(n // 2)[: 3 * planted].reshape(3, planted)
    copies = (n // 2 + rng.permutation(n - n // 2)[: 3 * planted]).reshape(3, planted)
    pairs: set[tuple[int, int]] = set()
    for source, copy in zip(sources[0].tolist(), copies[0].tolist(), strict=True):
        phashes[copy] = flipped(rng, int(phashes[source]), max_distance)
        pairs.add((source, copy))
    for source, copy in zip(sources[1].tolist(), copies[1].tolist(), strict=True):
        probe = source * PROBES + int(rng.integers(PROBES))
        phashes[copy] = flipped(rng, int(probes[probe]), max_distance)
        pairs.add((source, copy))
    for source, copy in zip(sources[2].tolist(), copies[2].tolist(), strict=True):
        dhashes[copy] = flipped(rng, int(dhashes[source]), max_distance)
        pairs.add((source, copy))
    library = {
        "ids": np.arange(1, n + 1, dtype=np.int64),
        "phashes": phashes,
        "dhashes": dhashes,
        "probe_owners": np.repeat(np.arange(1, n + 1, dtype=np.int64), PROBES),
        "probe_values": probes,
    }
    return library, pairs


# --- 1. Full scan ----------------------------------------------------------------------------


def numpy_within(queries: U64, base: U64, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocked numpy brute force: every (query, base) position pair within the distance."""
    rows, cols = [], []
    for begin in range(0, len(base), 1 << 20):
        chunk = base[begin : begin + (1 << 20)]
        for q in range(0, len(queries), 16):
            distance = popcount(queries[q : q + 16, None] ^ chunk[None, :])
            row, col = np.nonzero(distance <= max_distance)
            rows.append(row + q)
            cols.append(col + begin)
    return np.concatenate(rows), np.concatenate(cols)


def faiss_within(queries: U64, index: Any, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss IndexBinaryFlat range search (strictly below its radius)."""
    codes = np.ascontiguousarray(queries).view(np.uint8).reshape(-1, 8)
    limits, _, labels = index.range_search(codes, max_distance + 1)
    return np.repeat(np.arange(len(queries)), np.diff(limits).astype(np.int64)), labels


def reference_candidates(
    library: dict[str, np.ndarray],
    rows: np.ndarray,
    max_distance: int,
    within: Callable[[U64, str], tuple[np.ndarray, np.ndarray]],
) -> dict[tuple[int, int], tuple[int, int]]:
    """Brute-force candidates of the images at positions ``rows``: pair -> (bits, signal),
    the smallest distance and then the first signal, as ``hash_candidates`` defines them."""
    phashes, dhashes = library["phashes"], library["dhashes"]
    probes = library["probe_values"]
    found: dict[tuple[int, int], tuple[int, int]] = {}

    def add(a: int, b: int, bits: int, kind: int) -> None:
        if a == b:
            return
        pair = (min(a, b), max(a, b))
        if pair not in found or (bits, kind) < found[pair]:
            found[pair] = (bits, kind)

    row_list = rows.tolist()
    q, j = within(phashes[rows], "phashes")  # pHash against every pHash
    for r, other in zip(q.tolist(), j.tolist(), strict=True):
        add(row_list[r], other, int(popcount(phashes[row_list[r]] ^ phashes[other])), 0)
    q, j = within(dhashes[rows], "dhashes")  # dHash against every dHash
    for r, other in zip(q.tolist(), j.tolist(), strict=True):
        add(row_list[r], other, int(popcount(phashes[row_list[r]] ^ phashes[other])), 2)
    own = (rows[:, None] * PROBES + np.arange(PROBES)).ravel()
    q, j = within(probes[own], "phashes")  # the row's probes against every pHash
    for p, other in zip(q.tolist(), j.tolist(), strict=True):
        owner = int(own[p]) // PROBES
        add(owner, other, int(popcount(probes[own[p]] ^ phashes[other])), 1)
    q, j = within(phashes[rows], "probes")  # every probe against the row's pHash
    for r, probe in zip(q.tolist(), j.tolist(), strict=True):
        row = row_list[r]
        add(row, probe // PROBES, int(popcount(probes[probe] ^ phashes[row])), 1)
    return found


def full_scan(library: dict[str, np.ndarray], planted: set[tuple[int, int]], args: Any) -> None:
    n = len(library["ids"])
    k = args.max_distance
    print(
        f"\n1. Full scan, candidate generation: {n:,} images, {n * PROBES:,} probe hashes, "
        f"k = {k}, {search_threads()} threads; {load_average()}"
    )
    print(f"   index: {plan(n, k).describe()}")
    took: dict[str, float] = {}
    with timed(took):
        left, right, bits, kind = hash_candidates(
            library["ids"],
            library["phashes"],
            library["dhashes"],
            library["probe_owners"],
            library["probe_values"],
            k,
        )
    print(
        f"   hash_candidates: {took['wall']:.1f} s wall ({took['cpu']:.1f} s CPU), "
        f"{len(left):,} candidate pairs; target <= 60 s: "
        f"{'met' if took['wall'] <= 60 else 'MISSED'}; {load_average()}"
    )
    found = set(zip(left.tolist(), right.tolist(), strict=True))
    print(f"   planted pairs found: {len(planted & found):,} of {len(planted):,}")

    # Half the sampled images have a planted copy, half are drawn at random.
    rng = np.random.default_rng(1)
    picked = {
        a for pair in sorted(planted)[:: max(1, len(planted) // args.sample_rows)] for a in pair
    }
    picked = set(sorted(picked)[: args.sample_rows // 2])
    while len(picked) < args.sample_rows:
        picked.add(int(rng.integers(n)))
    rows = np.array(sorted(picked), dtype=np.int64)
    compared = len(rows) * (2 * n + 2 * PROBES * n)  # pHash, dHash, probes both ways
    whole = 8 * n * n  # pHash and dHash self-joins (n^2 / 2 each) and 7n probes x n pHashes
    flat = {name: faiss.IndexBinaryFlat(64) for name in ("phashes", "dhashes", "probes")}
    for name, values in (
        ("phashes", library["phashes"]),
        ("dhashes", library["dhashes"]),
        ("probes", library["probe_values"]),
    ):
        flat[name].add(np.ascontiguousarray(values).view(np.uint8).reshape(-1, 8))
    arrays = {
        "phashes": library["phashes"],
        "dhashes": library["dhashes"],
        "probes": library["probe_values"],
    }
    references = {}
    for name, within in (
        ("numpy", lambda q, base: numpy_within(q, arrays[base], k)),
        ("faiss IndexBinaryFlat", lambda q, base: faiss_within(q, flat[base], k)),
    ):
        spent: dict[str, float] = {}
        with timed(spent):
            references[name] = reference_candidates(library, rows, k, within)
        extrapolated = spent["wall"] * whole / compared
        print(
            f"   brute force, {name:<22} {extrapolated:9,.0f} s for the whole scan "
            f"(extrapolated from {len(rows)} images x all hashes: {spent['wall']:.1f} s); "
            f"hash_candidates is {extrapolated / took['wall']:,.0f}x faster"
        )
    in_sample = set(rows.tolist())
    ours = {
        (a, b): (int(d), int(s))
        for a, b, d, s in zip(
            left.tolist(), right.tolist(), bits.tolist(), kind.tolist(), strict=True
        )
        if a in in_sample or b in in_sample
    }
    for name, reference in references.items():
        print(
            f"   hash_candidates == {name} brute force on the {len(rows)} sampled images "
            f"({len(reference)} pairs, distances and signals): {ours == reference}"
        )


# --- 2. Verification -------------------------------------------------------------------------

SIZES = {"1 MP": (1280, 800), "3 MP": (2048, 1536), "6 MP": (3000, 2000), "12 MP": (4000, 3000)}
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "horse", "clock", "coins"]


def photo(name: str, size: tuple[int, int], seed: int) -> PILImage.Image:
    """A scikit-image photograph scaled up to ``size`` (above 4 megapixels, a 2x2 mosaic of it
    and the next three photos, so the detail grows with the size), with its own noise so each
    file is distinct."""
    base = PILImage.fromarray(getattr(skimage.data, name)()).convert("RGB")
    if size[0] * size[1] > 4_000_000:
        first = PHOTOS.index(name)
        names = [PHOTOS[(first + i) % len(PHOTOS)] for i in range(4)]
        tiles = [
            PILImage.fromarray(getattr(skimage.data, n)()).convert("RGB").resize(base.size)
            for n in names
        ]
        base = PILImage.new("RGB", (base.width * 2, base.height * 2))
        for i, tile in enumerate(tiles):
            base.paste(tile, ((i % 2) * tile.width, (i // 2) * tile.height))
    pixels = np.asarray(base.resize(size, PILImage.Resampling.BICUBIC), dtype=np.int16)
    noise = np.random.default_rng(seed).normal(0, 4, pixels.shape).astype(np.int16)
    return PILImage.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def jpeg_bytes(image: PILImage.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def stored(data: bytes) -> int:
    batch = import_batch_create(kind=ImportKind.UPLOAD, name="bench", actor=None)
    result = image_import(
        inspection=file_inspect(data=data, name="photo.jpg"),
        content=io.BytesIO(data),
        subclass=None,
        actor=None,
        batch=batch,
    )
    assert result.image is not None, result.reason
    return result.image.pk


def verification(args: Any) -> dict[str, float]:
    """Seconds per candidate pair by size, from a cold cache."""
    print(f"\n2. Verification per candidate pair (ORB + RANSAC), {search_threads()} threads")
    per_pair: dict[str, float] = {}
    for label, size in SIZES.items():
        copies: dict[tuple[int, int], Candidate] = {}
        distinct: dict[tuple[int, int], Candidate] = {}
        originals = []
        megabytes = 0.0
        for i, name in enumerate(PHOTOS):
            image = photo(name, size, seed=i)
            data = jpeg_bytes(image)
            megabytes += len(data) / 1e6
            original = stored(data)
            # A re-encoded, slightly rotated and cropped copy.
            w, h = image.size
            edited = image.rotate(3, resample=PILImage.Resampling.BILINEAR).crop(
                (w // 25, h // 25, w - w // 25, h - h // 25)
            )
            copy = stored(jpeg_bytes(edited, quality=70))
            copies[(original, copy)] = Candidate(6, "pHash 6 bits")
            originals.append(original)
        # Photos whose mosaics share no tile.
        for a, b in zip(originals[:4], originals[4:], strict=True):
            distinct[(a, b)] = Candidate(8, "pHash 8 bits")
        results = {}
        for kind, candidates in (("copies", copies), ("distinct photos", distinct)):
            spent: dict[str, float] = {}
            with timed(spent):
                verdicts = verify_candidates(candidates, cache=CopyFeatureCache())
            results[kind] = (spent, sum(v.is_copy for v in verdicts.values()), len(candidates))
        total_wall = sum(r[0]["wall"] for r in results.values())
        total_pairs = sum(r[2] for r in results.values())
        per_pair[label] = total_wall / total_pairs
        details = "; ".join(
            f"{kind}: {1000 * s['wall'] / count:.0f} ms/pair wall ({1000 * s['cpu'] / count:.0f} "
            f"CPU), {verified} of {count} verified"
            for kind, (s, verified, count) in results.items()
        )
        print(
            f"   {label} ({size[0]}x{size[1]}, {megabytes / len(PHOTOS):.1f} MB JPEGs), cold "
            f"cache (both originals read): {details}"
        )
    return per_pair


def scan_estimate(per_pair: dict[str, float], args: Any) -> None:
    n = args.scan_images
    library, planted = synthetic_library(n, n // 100, args.max_distance, seed=11)
    took: dict[str, float] = {}
    with timed(took):
        left, *_ = hash_candidates(
            library["ids"],
            library["phashes"],
            library["dhashes"],
            library["probe_owners"],
            library["probe_values"],
            args.max_distance,
        )
    print(
        f"   whole scan at {n:,} images, extrapolated: candidate search measured on a "
        f"synthetic library ({took['wall']:.1f} s, {len(left):,} candidate pairs, "
        f"{len(planted):,} of them planted copies: 3% of images have a copy), verification "
        "extrapolated as candidates x the cost per pair measured above (each image's "
        "features read once as long as they stay in the cache):"
    )
    for label, seconds in per_pair.items():
        total = took["wall"] + len(left) * seconds
        print(
            f"     {label}: {took['wall']:.1f} s + {len(left):,} x {1000 * seconds:.0f} ms = "
            f"{total:,.0f} s ({total / 60:.1f} min)"
        )


# --- 3. On-import lookup ---------------------------------------------------------------------


def _indexes(table: str) -> list[tuple[str, str]]:
    """Name and definition of each non-unique index of ``table``, to rebuild after a load."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s"
                " AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE%%'",
                [table],
            )
        else:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s"
                " AND indexdef NOT LIKE 'CREATE UNIQUE%%'",
                [table],
            )
        return list(cursor.fetchall())


def _insert(table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
    if connection.vendor == "postgresql":
        raw = connection.connection
        copy_sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join(["%s"] * len(columns))
    insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608
    with connection.cursor() as cursor:
        while batch := list(itertools.islice(rows, 100_000)):
            cursor.executemany(insert, batch)


IMAGE_COLUMNS = [
    "id", "sha256", "extension", "content_type", "format", "width", "height", "file_size",
    "original_filename", "status", "trashed_reason", "version", "created_at", "thumbnail_ready",
]  # fmt: skip
FEATURE_COLUMNS = [
    "image_id", "phash", "dhash", "phash_part0", "phash_part1", "phash_part2", "decode_mode",
    "error", "computed_at", "is_grayscale",
]  # fmt: skip
PROBE_COLUMNS = ["id", "image_id", "value", "part0", "part1", "part2"]
CREATED = "2024-01-01T00:00:00+00:00"


def populate(library: dict[str, np.ndarray]) -> None:
    """Image rows (no files) with features and probe rows, indexes built after the load."""
    n = len(library["ids"])
    tables = ["curation_image", "curation_imagefeatures", "curation_imageprobe"]
    dropped = [index for table in tables for index in _indexes(table)]
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA synchronous=OFF")
        for name, _ in dropped:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
    phashes = library["phashes"].tolist()
    dhashes = library["dhashes"].tolist()
    probes = library["probe_values"].tolist()
    image_row = ("jpg", "image/jpeg", "JPEG", 640, 480, 1000, "", "active", "", 1, CREATED, True)
    images = ((i, f"{i:064x}", *image_row) for i in range(1, n + 1))
    _insert("curation_image", IMAGE_COLUMNS, images)
    features = (
        (i + 1, signed_of(p), signed_of(d), *part_values(p, 3), "draft-1/8", "", CREATED, False)
        for i, (p, d) in enumerate(zip(phashes, dhashes, strict=True))
    )
    _insert("curation_imagefeatures", FEATURE_COLUMNS, features)
    probe_rows = (
        (j + 1, j // PROBES + 1, signed_of(v), *part_values(v, 3)) for j, v in enumerate(probes)
    )
    _insert("curation_imageprobe", PROBE_COLUMNS, probe_rows)
    with connection.cursor() as cursor:
        for _, definition in dropped:
            cursor.execute(definition)
        if connection.vendor == "postgresql":
            # The rows came with their ids: later imports continue after them.
            for table in ("curation_image", "curation_imageprobe"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                    f"(SELECT MAX(id) FROM {table}))"
                )
        cursor.execute("ANALYZE" if connection.vendor == "sqlite" else "VACUUM ANALYZE")


def expected_candidates(
    library: dict[str, np.ndarray], position: int, max_distance: int
) -> dict[int, int]:
    phashes, probes = library["phashes"], library["probe_values"]
    own = phashes[position]
    queries = np.concatenate([[own], probes[position * PROBES : (position + 1) * PROBES]])
    direct = popcount(queries[:, None] ^ phashes[None, :]).min(axis=0)
    reverse = popcount(probes ^ own).reshape(-1, PROBES).min(axis=1)
    best = np.minimum(direct, reverse)
    best[position] = 64
    near = np.flatnonzero(best <= max_distance)
    return {int(i) + 1: int(best[i]) for i in near}


def lookup(library: dict[str, np.ndarray], planted: set[tuple[int, int]], args: Any) -> None:
    n = len(library["ids"])
    k = args.max_distance
    engine = f"PostgreSQL {args.postgres}" if connection.vendor == "postgresql" else "SQLite"
    print(f"\n3. On-import lookup, {n:,} images and {n * PROBES:,} probe rows ({engine})")
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM curation_imageprobe")
        (present,) = cursor.fetchone()
    if present == n * PROBES and args.reuse:
        print("   reusing the loaded rows")
    elif present:
        raise SystemExit("the database already holds probe rows: use a fresh one")
    else:
        took: dict[str, float] = {}
        with timed(took):
            populate(library)
        print(f"   loaded in {took['wall']:.0f} s; {load_average()}")
    rng = np.random.default_rng(3)
    with_copies = sorted({b for _, b in planted})
    picks = [*rng.choice(with_copies, size=args.queries // 2, replace=False).tolist()]
    picks += rng.choice(n, size=args.queries - len(picks), replace=False).tolist()
    timings = []
    exact = 0
    found_any = 0
    for position in picks:
        own = int(library["phashes"][position])
        probes = library["probe_values"][position * PROBES : (position + 1) * PROBES].tolist()
        started = time.perf_counter()
        found = near_candidates(
            phash=own, probes=[int(p) for p in probes], max_distance=k, exclude_id=position + 1
        )
        timings.append(time.perf_counter() - started)
        want = expected_candidates(library, position, k)
        exact += {i: c.bits for i, c in found.items()} == want
        found_any += bool(found)
    ms = np.array(timings) * 1000
    print(
        f"   near_candidates, {len(picks)} images ({found_any} with candidates): median "
        f"{np.median(ms):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms "
        f"per image (target < 20 ms); same candidates and distances as brute force: "
        f"{exact} of {len(picks)}; {load_average()}"
    )


def main() -> None:
    args = ARGS
    args.max_distance = DEFAULT_MAX_DISTANCE
    print(f"bench/duplicates.py, default threshold k = {args.max_distance} bits; {load_average()}")
    library, planted = synthetic_library(args.images, args.planted, args.max_distance)
    if not args.skip_scan:
        full_scan(library, planted, args)
    call_command("migrate", verbosity=0)
    if not args.skip_db:
        lookup(library, planted, args)
    if not args.skip_verify:
        per_pair = verification(args)
        scan_estimate(per_pair, args)


if __name__ == "__main__":
    main()
