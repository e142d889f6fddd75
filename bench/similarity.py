""" "More like this" at 100,000 images: the similarity index against numpy brute force.

    python bench/similarity.py [--images 100000] [--dims 1280] [--queries 200] [--pairs]

Builds a scratch SQLite library (a temporary LOUPE_DATA_DIR) of ``--images`` active images
with synthetic embeddings: random unit vectors, a fifth of them in planted clusters of five
near-duplicates (cosine about 0.98 to one another), stored as the embedding job stores them.
Then:

1. builds the similarity index through the service the worker uses, and times it;
2. times ``similar_images`` (the function behind the image page and
   ``GET /api/v1/images/{id}/similar/``) for ``--queries`` images, half of them cluster
   members, end to end with its database reads: median and p95;
3. times the same top-20 by numpy brute force over the float32 matrix already in memory
   (the fastest a scan can be; no database; one thread, as a request has) and prints the
   ratio, and once with the vectors read from the database (what a page without an index
   held in memory would do);
4. checks the answers: the index's top 20 against the brute force's (same images), and each
   cluster member's four siblings first;
5. times the same query with 1,000 rows embedded after the index was built (the exact scan of
   newer rows), and with ``--pairs`` the embedding near-duplicate scan of the whole library.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ["LOUPE_DATA_DIR"] = tempfile.mkdtemp(prefix="loupe-bench-similarity-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
# A web request runs on one thread: the brute force gets one BLAS thread, as the index
# search runs on one OpenMP thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import django

django.setup()

import numpy as np  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from curation.models import Image  # noqa: E402
from inference.embeddings import (  # noqa: E402
    VECTOR_DTYPE,
    embedding_matrix,
    embedding_pairs,
    similar_images,
    similarity_index_build,
    similarity_index_load,
)
from inference.models import ImageEmbedding, ModelVersion  # noqa: E402

K = 20
CLUSTER = 5


def synthetic(n: int, dims: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (float16-rounded, as stored) and each row's cluster (-1: none)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dims), dtype=np.float32)
    clusters = np.full(n, -1, dtype=np.int64)
    planted = n // 5 // CLUSTER
    rows = rng.choice(n, size=planted * CLUSTER, replace=False).reshape(planted, CLUSTER)
    for cluster, members in enumerate(rows):
        centre = rng.standard_normal(dims, dtype=np.float32)
        centre /= np.linalg.norm(centre)
        noise = rng.standard_normal((CLUSTER, dims), dtype=np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        vectors[members] = centre + 0.15 * noise
        clusters[members] = cluster
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(VECTOR_DTYPE).astype(np.float32), clusters


def load(vectors: np.ndarray, version: ModelVersion, first_id: int = 1) -> None:
    n = len(vectors)
    for begin in range(0, n, 10_000):
        ids = range(first_id + begin, first_id + min(n, begin + 10_000))
        with transaction.atomic():
            Image.objects.bulk_create(
                Image(
                    pk=i,
                    sha256=f"{i:064x}",
                    extension="jpg",
                    content_type="image/jpeg",
                    format="JPEG",
                    width=640,
                    height=480,
                    file_size=1000,
                    thumbnail_ready=True,
                )
                for i in ids
            )
            ImageEmbedding.objects.bulk_create(
                ImageEmbedding(
                    model_version=version,
                    image_id=i,
                    vector=vectors[i - first_id].astype(VECTOR_DTYPE).tobytes(),
                )
                for i in ids
            )


def brute_force(matrix: np.ndarray, query: np.ndarray, exclude: int) -> list[int]:
    scores = matrix @ query
    scores[exclude] = -np.inf
    top = np.argpartition(-scores, K)[:K]
    return top[np.argsort(-scores[top], kind="stable")].tolist()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--pairs", action="store_true", help="also time the duplicate scan")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=OFF")
    version = ModelVersion.objects.create(
        number=1,
        name="bench",
        onnx_file="models/bench.onnx",
        sha256="0" * 64,
        file_size=1,
        label_map=["a"],
        input_name="image",
        output_name="logits",
        embedding_output="embedding",
    )
    vectors, clusters = synthetic(args.images, args.dims)
    started = time.perf_counter()
    load(vectors, version)
    print(
        f"{args.images:,} embeddings of {args.dims} dims stored in SQLite in "
        f"{time.perf_counter() - started:.0f} s"
    )

    info = similarity_index_build(version=version)
    size = info.path.stat().st_size / 1024**2
    print(f"index build (read rows, add, write): {info.seconds:.1f} s, {size:.0f} MiB file")
    started = time.perf_counter()
    similarity_index_load(version=version)
    print(
        f"index load by a web process (first query after a build): "
        f"{time.perf_counter() - started:.2f} s"
    )

    rng = np.random.default_rng(5)
    members = np.flatnonzero(clusters >= 0)
    picks = np.concatenate(
        [
            rng.choice(members, size=args.queries // 2, replace=False),
            rng.choice(args.images, size=args.queries - args.queries // 2, replace=False),
        ]
    )
    similar_images(image_id=int(picks[0]) + 1, k=K, version=version)  # loads the index
    index_ms, brute_ms = [], []
    same = siblings_first = cluster_queries = 0
    for row in picks.tolist():
        started = time.perf_counter()
        found = similar_images(image_id=row + 1, k=K, version=version)
        index_ms.append((time.perf_counter() - started) * 1000)
        assert found is not None
        started = time.perf_counter()
        expected = brute_force(vectors, vectors[row], row)
        brute_ms.append((time.perf_counter() - started) * 1000)
        got = [s.image.pk - 1 for s in found]
        same += set(got) == set(expected)
        if clusters[row] >= 0:
            cluster_queries += 1
            siblings = set(np.flatnonzero(clusters == clusters[row]).tolist()) - {row}
            siblings_first += set(got[: CLUSTER - 1]) == siblings
    index_ms_a, brute_ms_a = np.array(index_ms), np.array(brute_ms)
    print(
        f"{len(picks)} queries, top {K}: index median {np.median(index_ms_a):.1f} ms, "
        f"p95 {np.percentile(index_ms_a, 95):.1f} ms (target < 200 ms; with the database reads)"
    )
    print(
        f"  numpy brute force over the float32 matrix in memory: median "
        f"{np.median(brute_ms_a):.1f} ms, p95 {np.percentile(brute_ms_a, 95):.1f} ms; "
        f"brute force / index {np.median(brute_ms_a) / np.median(index_ms_a):.2f}x"
    )
    print(
        f"  same top {K} as brute force: {same} of {len(picks)}; cluster siblings first: "
        f"{siblings_first} of {cluster_queries}"
    )

    loaded = similarity_index_load(version=version)
    assert loaded is not None
    search_ms = []
    for row in picks.tolist():
        started = time.perf_counter()
        loaded[0].search(vectors[row][None, :], K + 11)
        search_ms.append((time.perf_counter() - started) * 1000)
    print(
        f"  of which the index search alone: median {np.median(search_ms):.1f} ms, p95 "
        f"{np.percentile(search_ms, 95):.1f} ms (it reads every stored vector once)"
    )

    started = time.perf_counter()
    _, matrix = embedding_matrix(model_version=version)
    brute_force(matrix, matrix[int(picks[0])], int(picks[0]))
    print(
        f"  brute force reading the vectors from the database for one query (a page without "
        f"the index): {(time.perf_counter() - started) * 1000:.0f} ms"
    )

    newer, _ = synthetic(1000, args.dims, seed=12)
    load(newer, version, first_id=args.images + 1)
    timings = []
    for row in picks[:50].tolist():
        started = time.perf_counter()
        similar_images(image_id=row + 1, k=K, version=version)
        timings.append((time.perf_counter() - started) * 1000)
    print(
        f"  with 1,000 rows embedded after the build (exact scan of them): median "
        f"{np.median(timings):.1f} ms"
    )

    if args.pairs:
        started = time.perf_counter()
        _, left, _, _ = embedding_pairs(min_similarity=0.95, version=version)
        print(
            f"embedding near-duplicate pairs over {args.images + 1000:,} images: "
            f"{time.perf_counter() - started:.1f} s, {len(left):,} pairs at 0.95"
        )


if __name__ == "__main__":
    main()
