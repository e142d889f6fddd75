"""Image embeddings: the embedding model's pooled feature vector of every active image, the
similarity index behind "more like this", and out-of-distribution scores.

Vectors are L2-normalised before they are stored (little-endian float16), so a dot product is
the cosine similarity. The embedding model is the version ``LOUPE_EMBEDDING_MODEL`` names, or
else the lowest-numbered version with an embedding output: the installed backbone, whose
features later models built on it share.

The similarity index is a derivative: a file under ``LOUPE_DATA_DIR/similarity`` that the
worker rebuilds after embedding jobs and that web processes load lazily (and reload when the
file changes). Rows embedded after the index was built are found by an exact scan of the rows
newer than it, so a fresh import is searchable before the next rebuild.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, Max, OuterRef, Q, QuerySet

from accounts.models import User
from curation.imaging import ImageRejected
from curation.models import Image, ImageStatus, Job
from curation.services.jobs import job_create, job_enqueue
from inference.models import ImageEmbedding, ModelVersion
from inference.pipeline import decoded_batches
from inference.preprocessing import PreprocessSpec, load_input
from inference.runtime import session_for

logger = logging.getLogger(__name__)

EMBEDDINGS_KIND = "inference.embeddings_compute"
BATCH_SIZE = 32
VECTOR_DTYPE = np.dtype("<f2")
# Upper bound of an OOD score: a cosine distance lies between 0 and 2.
OOD_MAX = 2.0
# Rows read per query when ids are given (SQLite accepts 32,766 parameters a statement).
_ID_CHUNK = 10_000
# Rows embedded since the last index build beyond which the import path rebuilds the index:
# the exact scan of newer rows (about 60 ms per 1,000 on SQLite, mostly reading them) stays
# well inside the page's budget.
INDEX_REBUILD_PENDING = 2_000


class EmbeddingError(Exception):
    """Embeddings cannot be computed or searched as asked; the message says why."""


# --- The embedding model --------------------------------------------------------------------


def embedding_version() -> ModelVersion | None:
    """The model version whose embedding output Loupe uses; None when no version has one.
    Raises EmbeddingError when ``LOUPE_EMBEDDING_MODEL`` names a version that cannot serve."""
    number = int(getattr(settings, "LOUPE_EMBEDDING_MODEL", 0) or 0)
    if number:
        version = ModelVersion.objects.filter(number=number).first()
        if version is None:
            raise EmbeddingError(f"LOUPE_EMBEDDING_MODEL names model v{number}, which is missing.")
        if not version.embedding_output:
            raise EmbeddingError(
                f"LOUPE_EMBEDDING_MODEL names model v{number}, which has no embedding output."
            )
        return version
    return ModelVersion.objects.exclude(embedding_output="").order_by("number").first()


def embedding_version_required() -> ModelVersion:
    """The embedding model; raises EmbeddingError saying how to get one when there is none."""
    version = embedding_version()
    if version is None:
        raise EmbeddingError(
            "No model version has an embedding output; run `manage.py install_backbone`."
        )
    return version


def vector_encode(vector: np.ndarray) -> bytes:
    """A vector as stored: L2-normalised, little-endian float16."""
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if norm > 0:
        vector = vector / norm
    return vector.astype(VECTOR_DTYPE).tobytes()


def vector_decode(data: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=VECTOR_DTYPE).astype(np.float32)


def _stack(blobs: Sequence[bytes | memoryview]) -> np.ndarray:
    """Stored vectors as one float32 matrix (n x d)."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    joined = b"".join(bytes(blob) for blob in blobs)
    return np.frombuffer(joined, dtype=VECTOR_DTYPE).reshape(len(blobs), -1).astype(np.float32)


# --- Reads ----------------------------------------------------------------------------------


def embedding_matrix(
    *, image_ids: Sequence[int] | None = None, model_version: ModelVersion | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(image ids as int64, float32 matrix n x d) of the images that have an embedding from
    ``model_version`` (default: the embedding model), in image-id order.

    With ``image_ids`` only those images (whatever their status); without, every active image.
    Rows are L2-normalised, so ``matrix @ matrix.T`` holds cosine similarities. Images with no
    embedding yet are left out: compare the returned ids with the ones asked for.
    """
    version = model_version or embedding_version()
    if version is None:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    rows = ImageEmbedding.objects.filter(model_version=version)
    ids: list[int] = []
    blobs: list[bytes | memoryview] = []
    if image_ids is None:
        active = rows.filter(image__status=ImageStatus.ACTIVE).order_by("image_id")
        for image_id, blob in active.values_list("image_id", "vector").iterator(chunk_size=5000):
            ids.append(image_id)
            blobs.append(blob)
    else:
        wanted = sorted({int(i) for i in image_ids})
        for start in range(0, len(wanted), _ID_CHUNK):
            chunk = rows.filter(image_id__in=wanted[start : start + _ID_CHUNK]).order_by("image_id")
            for image_id, blob in chunk.values_list("image_id", "vector"):
                ids.append(image_id)
                blobs.append(blob)
    return np.array(ids, dtype=np.int64), _stack(blobs)


def embedding_of(*, image_id: int, version: ModelVersion) -> np.ndarray | None:
    blob = (
        ImageEmbedding.objects.filter(model_version=version, image_id=image_id)
        .values_list("vector", flat=True)
        .first()
    )
    return None if blob is None else vector_decode(blob)


def embedding_counts(*, version: ModelVersion | None = None) -> dict[str, int]:
    """Active images, and how many of them have an embedding (two counts)."""
    version = version or embedding_version()
    active = Image.objects.filter(status=ImageStatus.ACTIVE).count()
    if version is None:
        return {"active": active, "embedded": 0}
    embedded = ImageEmbedding.objects.filter(
        model_version=version, image__status=ImageStatus.ACTIVE
    ).count()
    return {"active": active, "embedded": embedded}


def ood_at_least(minimum: float, *, image_field: str = "pk") -> Exists | Q:
    """A filter condition for rows whose image (``image_field``: the image id column of the
    filtered model) has an OOD score from the embedding model of at least ``minimum``: an
    EXISTS on the (model_version, ood_score) index. No embedding model: nothing matches."""
    try:
        version = embedding_version()
    except EmbeddingError:
        version = None
    if version is None:
        return Q(pk__in=[])
    return Exists(
        ImageEmbedding.objects.filter(
            model_version=version, image_id=OuterRef(image_field), ood_score__gte=minimum
        )
    )


def images_with_ood_at_least(images: QuerySet[Image], *, minimum: float) -> QuerySet[Image]:
    """``images`` narrowed to those whose OOD score is at least ``minimum``."""
    return images.filter(ood_at_least(minimum))


# --- Computing ------------------------------------------------------------------------------


def _embed_batch(version: ModelVersion, samples: list[np.ndarray]) -> np.ndarray:
    """The embedding output for preprocessed samples (a model exported with a fixed batch
    size is run at that size, padded)."""
    session = session_for(version)
    fixed = session.get_inputs()[0].shape[0]
    size = fixed if isinstance(fixed, int) and fixed > 0 else len(samples)
    parts = []
    for start in range(0, len(samples), size):
        chunk = samples[start : start + size]
        batch = np.stack(chunk)
        if len(chunk) < size:
            pad = np.zeros((size - len(chunk), *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, pad])
        out = session.run([version.embedding_output], {version.input_name: batch})[0]
        parts.append(np.asarray(out, dtype=np.float32).reshape(len(batch), -1)[: len(chunk)])
    return np.concatenate(parts)


def _load_image(image: Image, spec: PreprocessSpec) -> np.ndarray | None:
    try:
        with default_storage.open(image.storage_name, "rb") as stream:
            return load_input(stream, spec)
    except (ImageRejected, OSError) as exc:
        logger.warning("No embedding for image %s: %s", image.pk, exc)
        return None


def embeddings_make(*, image_ids: Iterable[int], version: ModelVersion | None = None) -> list[int]:
    """Store the embedding of ``version`` (default: the embedding model) for the active images
    among ``image_ids`` that have none yet. Idempotent (the unique constraint settles races);
    images that cannot be decoded are skipped and logged. Returns the ids of the images that
    got one."""
    version = version or embedding_version()
    if version is None:
        return []
    ids = list(image_ids)
    done = set(
        ImageEmbedding.objects.filter(model_version=version, image_id__in=ids).values_list(
            "image_id", flat=True
        )
    )
    images = list(
        Image.objects.filter(pk__in=[i for i in ids if i not in done], status=ImageStatus.ACTIVE)
        .only("pk", "sha256", "extension")
        .order_by("pk")
    )
    spec = PreprocessSpec.of(version)
    made: list[int] = []
    for batch in decoded_batches(
        images, lambda image: _load_image(image, spec), batch_size=BATCH_SIZE
    ):
        vectors = _embed_batch(version, [sample for _, sample in batch])
        rows = [
            ImageEmbedding(model_version=version, image_id=image.pk, vector=vector_encode(vector))
            for (image, _), vector in zip(batch, vectors, strict=True)
        ]
        ImageEmbedding.objects.bulk_create(rows, ignore_conflicts=True)
        made.extend(image.pk for image, _ in batch)
    return made


def embeddings_for_new_images(*, image_ids: list[int]) -> int:
    """The worker's embedding step after import: embeddings and OOD scores of new images, and
    an index rebuild when many rows wait outside it. A failure here never fails the rest of
    image processing (embeddings can be computed again)."""
    try:
        version = embedding_version()
        if version is None:
            return 0
        made = embeddings_make(image_ids=image_ids, version=version)
        if made:
            ood_scores_fill(version=version, image_ids=made, fresh=False)
            if _rows_outside_index(version) >= INDEX_REBUILD_PENDING:
                similarity_index_build(version=version)
        return len(made)
    except Exception:
        logger.exception("Embeddings failed for %d images", len(image_ids))
        return 0


def embeddings_missing(*, version: ModelVersion) -> Any:
    """Active images with no embedding from ``version``."""
    has = ImageEmbedding.objects.filter(model_version=version, image=OuterRef("pk"))
    return Image.objects.filter(status=ImageStatus.ACTIVE).filter(~Exists(has))


def embeddings_compute(
    *,
    version: ModelVersion | None = None,
    progress: Callable[[int, int], None] | None = None,
    stage: Callable[[str], None] | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Embeddings for every active image that has none, then the OOD scores still missing and
    a fresh similarity index (``stage`` hears which of the three is running).

    Walks the images still missing one in primary-key order, a chunk at a time; running it
    again computes nothing new, and a run cut short resumes where it stopped.
    ``progress(done, total)`` counts the images that needed an embedding when the run began.
    Raises EmbeddingError when no model version has an embedding output.
    """
    version = version or embedding_version_required()
    chunk_size = chunk_size or settings.LOUPE_PROCESS_CHUNK
    missing = embeddings_missing(version=version)
    total = missing.count()
    last_id = 0
    seen = written = 0
    while True:
        ids = list(
            missing.filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:chunk_size]
        )
        if not ids:
            break
        written += len(embeddings_make(image_ids=ids, version=version))
        seen += len(ids)
        last_id = ids[-1]
        if progress:
            progress(seen, max(total, seen))
    if progress and not seen:
        progress(0, 0)
    if stage:
        stage("scoring out-of-distribution")
    scored = ood_scores_fill(version=version)
    if stage:
        stage("building the similarity index")
    index = similarity_index_build(version=version)
    return {
        "images": seen,
        "written": written,
        "skipped": seen - written,
        "ood_scored": scored,
        "indexed": index.count,
        "model_version": version.number,
        "message": f"{written} new embeddings from v{version.number}; {scored} OOD scores; "
        f"index of {index.count} images",
    }


def embeddings_job_start(*, actor: User | None) -> Job:
    """Queue ``embeddings_compute`` as a job. Raises EmbeddingError when no model version has
    an embedding output."""
    version = embedding_version_required()
    with transaction.atomic():
        job = job_create(kind=EMBEDDINGS_KIND, actor=actor, params={"model_version_id": version.pk})
        job_enqueue(job=job)
    return job


# --- Out-of-distribution scores -------------------------------------------------------------


# How long a worker process reuses its index of the labelled images for the OOD scores of
# new images; any labelling, trashing or restoring that changes the labelled set (its count,
# newest row or id sum) rebuilds it sooner. A full embeddings job always starts afresh.
LABELLED_INDEX_SECONDS = 600
_labelled_cache: dict[int, tuple[float, tuple[Any, ...], np.ndarray, Any]] = {}


def labelled_index_clear() -> None:
    _labelled_cache.clear()


def _labelled_index(version: ModelVersion, *, fresh: bool = False) -> tuple[np.ndarray, Any]:
    """Ids of the labelled active images with embeddings, and an exact inner-product index
    over them (float32: batched searches run on BLAS). Reused between the import chunks a
    worker process handles (reading every labelled vector for each chunk of new images would
    cost more than embedding them)."""
    import faiss
    from django.db.models import Count, Sum

    rows = ImageEmbedding.objects.filter(
        model_version=version, image__status=ImageStatus.ACTIVE, image__subclass__isnull=False
    )
    state = tuple(rows.aggregate(n=Count("pk"), newest=Max("pk"), ids=Sum("image_id")).values())
    cached = _labelled_cache.get(version.pk)
    if (
        cached is not None
        and not fresh
        and cached[1] == state
        and time.monotonic() - cached[0] < LABELLED_INDEX_SECONDS
    ):
        return cached[2], cached[3]
    rows = rows.order_by("image_id")
    ids: list[int] = []
    blobs: list[bytes | memoryview] = []
    for image_id, blob in rows.values_list("image_id", "vector").iterator(chunk_size=5000):
        ids.append(image_id)
        blobs.append(blob)
    matrix = _stack(blobs)
    index = faiss.IndexFlatIP(matrix.shape[1]) if len(ids) else None
    if index is not None:
        index.add(matrix)
    labelled = np.array(ids, dtype=np.int64)
    _labelled_cache[version.pk] = (time.monotonic(), state, labelled, index)
    return labelled, index


def ood_scores(
    vectors: np.ndarray,
    query_ids: np.ndarray,
    labelled_ids: np.ndarray,
    index: Any,
    *,
    neighbours: int,
) -> np.ndarray:
    """Mean cosine distance (1 - similarity) of each vector to its ``neighbours`` nearest
    labelled images, the image itself left out. NaN where no labelled image is left."""
    k = min(neighbours + 1, len(labelled_ids))
    if k == 0 or len(vectors) == 0:
        return np.full(len(vectors), np.nan)
    similarities, positions = index.search(np.ascontiguousarray(vectors, np.float32), k)
    found = np.where(positions >= 0, labelled_ids[np.maximum(positions, 0)], -1)
    keep = (found != query_ids[:, None]) & (positions >= 0)
    # Keep the nearest ``neighbours`` of what is left in each row.
    keep &= np.cumsum(keep, axis=1) <= neighbours
    counts = keep.sum(axis=1)
    distances = np.where(keep, 1.0 - similarities, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, distances / np.maximum(counts, 1), np.nan)


def ood_scores_fill(
    *,
    version: ModelVersion,
    image_ids: Sequence[int] | None = None,
    recompute: bool = False,
    fresh: bool = True,
    chunk_size: int = 4096,
) -> int:
    """Store the OOD score of the embedded images that have none (or, with ``recompute``,
    of all of them; with ``image_ids``, of those only). ``fresh=False`` lets the worker reuse
    its recent index of the labelled images. Returns how many were stored."""
    rows = ImageEmbedding.objects.filter(model_version=version)
    if not recompute:
        rows = rows.filter(ood_score__isnull=True)
    if image_ids is not None:
        rows = rows.filter(image_id__in=list(image_ids))
    pending = list(rows.order_by("pk").values_list("pk", flat=True))
    if not pending:
        return 0
    labelled_ids, index = _labelled_index(version, fresh=fresh)
    if index is None:
        return 0
    neighbours = int(settings.LOUPE_OOD_NEIGHBOURS)
    stored = 0
    for start in range(0, len(pending), chunk_size):
        chunk = list(
            ImageEmbedding.objects.filter(pk__in=pending[start : start + chunk_size]).values_list(
                "pk", "image_id", "vector"
            )
        )
        scores = ood_scores(
            _stack([blob for _, _, blob in chunk]),
            np.array([image_id for _, image_id, _ in chunk], dtype=np.int64),
            labelled_ids,
            index,
            neighbours=neighbours,
        )
        updates = [
            ImageEmbedding(pk=pk, ood_score=round(float(score), 5))
            for (pk, _, _), score in zip(chunk, scores, strict=True)
            if np.isfinite(score)
        ]
        with transaction.atomic():
            ImageEmbedding.objects.bulk_update(updates, ["ood_score"], batch_size=1000)
        stored += len(updates)
    return stored


# --- Near-duplicate pairs -------------------------------------------------------------------


# How many images the library's mean embedding is weighed against before it is subtracted:
# with a few images (a few of them copies of one photo) the mean is mostly those copies and is
# hardly subtracted; with thousands it is, nearly in full.
CENTRE_PRIOR = 200


def centred(matrix: np.ndarray, mean: np.ndarray, count: int) -> np.ndarray:
    """Rows less the library's mean embedding (shrunk by ``count / (count + CENTRE_PRIOR)``),
    L2-normalised again: the similarity near-duplicates are judged by.

    A library of one kind of subject sits in a narrow cone of the backbone's feature space
    (in the demo's digit drawings, raw cosines of different drawings run above 0.95), and
    that shared direction, not the picture, dominates the raw cosine. Subtracting it leaves
    what tells one image from another; copies of one photograph stay above 0.95 and different
    photographs fall well below.
    """
    if len(matrix) == 0 or len(mean) != matrix.shape[1]:
        return matrix
    shifted = matrix - np.asarray(mean, np.float32) * np.float32(count / (count + CENTRE_PRIOR))
    norms = np.linalg.norm(shifted, axis=1, keepdims=True)
    return np.ascontiguousarray(shifted / np.maximum(norms, 1e-12), dtype=np.float32)


def embedding_pairs(
    *, min_similarity: float, version: ModelVersion | None = None, batch: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of active images whose embeddings, ``centred`` on the library's mean, have
    a cosine similarity above ``min_similarity``: (ids searched, left ids, right ids,
    similarities), left < right.

    A range search of each batch of rows against an exact float32 inner-product index of all
    rows: batched, it runs as matrix products on BLAS, where the float16 index answers one
    query at a time.
    """
    import faiss

    ids, matrix = embedding_matrix(model_version=version)
    empty = np.zeros(0, dtype=np.int64)
    if len(ids) < 2:
        return ids, empty, empty, np.zeros(0, dtype=np.float32)
    matrix = centred(matrix, matrix.mean(axis=0), len(ids))
    index = faiss.IndexFlatIP(matrix.shape[1])
    index.add(matrix)
    lefts, rights, similarities = [], [], []
    for start in range(0, len(ids), batch):
        limits, found, positions = index.range_search(
            matrix[start : start + batch], float(min_similarity)
        )
        rows = np.repeat(np.arange(len(limits) - 1) + start, np.diff(limits.astype(np.int64)))
        keep = positions > rows  # each pair once, and never an image with itself
        lefts.append(ids[rows[keep]])
        rights.append(ids[positions[keep]])
        similarities.append(found[keep])
    return ids, np.concatenate(lefts), np.concatenate(rights), np.concatenate(similarities)


def nearest_similarities(*, groups: Sequence[Sequence[int]]) -> dict[int, float]:
    """For each image of a few groups (duplicate groups), the ``centred`` cosine similarity
    to the nearest other member of its group (centred on the mean the similarity index
    recorded); images with no embedding are left out. One query."""
    version = embedding_version()
    ids, matrix = embedding_matrix(
        image_ids=[i for members in groups for i in members], model_version=version
    )
    info = similarity_index_info(version=version) if version is not None else None
    if info is not None:
        matrix = centred(matrix, np.asarray(info.mean, np.float32), info.count)
    row = {int(image_id): position for position, image_id in enumerate(ids)}
    nearest: dict[int, float] = {}
    for members in groups:
        present = [i for i in members if i in row]
        if len(present) < 2:
            continue
        vectors = matrix[[row[i] for i in present]]
        similarities = vectors @ vectors.T
        np.fill_diagonal(similarities, -np.inf)
        for image_id, best in zip(present, similarities.max(axis=1), strict=True):
            nearest[image_id] = round(float(best), 4)
    return nearest


# --- Similarity index -----------------------------------------------------------------------

_MAGIC = b"LOUPESIM1"


@dataclass(frozen=True)
class IndexInfo:
    path: Path
    count: int
    max_embedding_id: int
    dimensions: int
    built_at: float
    seconds: float = 0.0
    # The mean of the indexed vectors, for near-duplicate similarities (see ``centred``).
    mean: tuple[float, ...] = ()


def index_path(version: ModelVersion) -> Path:
    folder = Path(settings.DATA_DIR) / "similarity"
    return folder / f"v{version.number}-{version.sha256[:12]}.faiss"


def similarity_index_build(*, version: ModelVersion) -> IndexInfo:
    """Write the similarity index of every embedding of ``version`` (trashed images included:
    they are filtered at query time, so a restored image is found again without a rebuild).

    The index is exact: inner product over float16-quantised vectors (faiss
    ``IndexScalarQuantizer`` QT_fp16), the stored precision, so it ranks exactly as a scan of
    the stored vectors would. The file is written under a temporary name and renamed into
    place, so readers see the old index or the new one, never half of one.
    """
    import faiss

    started = time.perf_counter()
    rows = ImageEmbedding.objects.filter(model_version=version)
    max_id = rows.aggregate(m=Max("pk"))["m"] or 0
    ids: list[int] = []
    blobs: list[bytes | memoryview] = []
    for image_id, blob in (
        rows.filter(pk__lte=max_id)
        .order_by("pk")
        .values_list("image_id", "vector")
        .iterator(chunk_size=5000)
    ):
        ids.append(image_id)
        blobs.append(blob)
    matrix = _stack(blobs)
    dimensions = matrix.shape[1] if len(ids) else 0
    quantizer = faiss.IndexScalarQuantizer(
        max(dimensions, 1), faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    index = faiss.IndexIDMap2(quantizer)
    if len(ids):
        index.add_with_ids(matrix, np.array(ids, dtype=np.int64))
    info = IndexInfo(
        path=index_path(version),
        count=len(ids),
        max_embedding_id=max_id,
        dimensions=dimensions,
        built_at=time.time(),
        mean=tuple(float(x) for x in matrix.mean(axis=0)) if len(ids) else (),
    )
    _write_index(info, index)
    return IndexInfo(**{**info.__dict__, "seconds": time.perf_counter() - started})


def _write_index(info: IndexInfo, index: Any) -> None:
    import faiss

    info.path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(
        {
            "count": info.count,
            "max_embedding_id": info.max_embedding_id,
            "dimensions": info.dimensions,
            "built_at": info.built_at,
            "mean": [round(x, 6) for x in info.mean],
        }
    ).encode()
    data = faiss.serialize_index(index)
    handle, temporary = tempfile.mkstemp(dir=info.path.parent, prefix=".building-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(_MAGIC + struct.pack("<I", len(meta)) + meta)
            data.tofile(out)
        os.replace(temporary, info.path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@dataclass
class _Loaded:
    stamp: tuple[int, int]
    index: Any
    info: IndexInfo


_loaded: dict[Path, _Loaded] = {}
_load_lock = threading.Lock()


def similarity_index_load(*, version: ModelVersion) -> tuple[Any, IndexInfo] | None:
    """The process's copy of the version's index, read on first use and again whenever the
    file changes (its modification time or size); None when no index was built yet."""
    import faiss

    path = index_path(version)
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    stamp = (status.st_mtime_ns, status.st_size)
    loaded = _loaded.get(path)
    if loaded is not None and loaded.stamp == stamp:
        return loaded.index, loaded.info
    with _load_lock:
        loaded = _loaded.get(path)
        if loaded is None or loaded.stamp != stamp:
            data = path.read_bytes()
            info, body_offset = _parse_header(path, data)
            index = faiss.deserialize_index(np.frombuffer(data, np.uint8, offset=body_offset))
            loaded = _Loaded(stamp=stamp, index=index, info=info)
            _loaded[path] = loaded
    return loaded.index, loaded.info


def _parse_header(path: Path, head: bytes) -> tuple[IndexInfo, int]:
    """The index's description and where the faiss data starts."""
    if not head.startswith(_MAGIC):
        raise EmbeddingError(f"{path} is not a similarity index; delete it and rebuild.")
    offset = len(_MAGIC)
    (size,) = struct.unpack("<I", head[offset : offset + 4])
    meta = json.loads(head[offset + 4 : offset + 4 + size])
    info = IndexInfo(
        path=path,
        count=meta["count"],
        max_embedding_id=meta["max_embedding_id"],
        dimensions=meta["dimensions"],
        built_at=meta["built_at"],
        mean=tuple(meta.get("mean", ())),
    )
    return info, offset + 4 + size


def similarity_index_info(*, version: ModelVersion) -> IndexInfo | None:
    """The description of the version's index file, read from its header alone."""
    path = index_path(version)
    try:
        with path.open("rb") as stream:
            head = stream.read(len(_MAGIC) + 4)
            if len(head) == len(_MAGIC) + 4:
                head += stream.read(struct.unpack("<I", head[-4:])[0])
    except FileNotFoundError:
        return None
    return _parse_header(path, head)[0]


def _rows_outside_index(version: ModelVersion) -> int:
    info = similarity_index_info(version=version)
    after = info.max_embedding_id if info else 0
    return ImageEmbedding.objects.filter(model_version=version, pk__gt=after).count()


# --- "More like this" -----------------------------------------------------------------------


@dataclass(frozen=True)
class SimilarImage:
    image: Image
    similarity: float


def faiss_threads(count: int) -> None:
    """OpenMP threads for faiss calls made from this thread."""
    import faiss

    faiss.omp_set_num_threads(count)


def _exact_scan(
    query: np.ndarray, version: ModelVersion, after_embedding_id: int
) -> dict[int, float]:
    """Similarities of the query to the rows newer than the index (all rows without one)."""
    rows = ImageEmbedding.objects.filter(model_version=version, pk__gt=after_embedding_id)
    found: dict[int, float] = {}
    ids: list[int] = []
    blobs: list[bytes | memoryview] = []
    for image_id, blob in rows.values_list("image_id", "vector").iterator(chunk_size=5000):
        ids.append(image_id)
        blobs.append(blob)
        if len(ids) == 5000:
            found.update(zip(ids, (_stack(blobs) @ query).tolist(), strict=True))
            ids, blobs = [], []
    if ids:
        found.update(zip(ids, (_stack(blobs) @ query).tolist(), strict=True))
    return found


def similar_images(
    *,
    image_id: int,
    k: int = 20,
    version: ModelVersion | None = None,
    images: QuerySet[Image] | None = None,
) -> list[SimilarImage] | None:
    """The ``k`` active images most like ``image_id`` by cosine similarity of embeddings, most
    similar first; None when the image has no embedding yet.

    The index gives the candidates, the rows embedded since it was built are scanned exactly,
    and trashed images are dropped (asking the index for more when too many were). Three to
    five queries, none proportional to the library. ``images`` is the queryset the results are
    read from (default: images with their label), so a caller can select what it shows.
    """
    images = Image.objects.select_related("subclass__label_class") if images is None else images
    version = version or embedding_version()
    if version is None:
        return None
    query = embedding_of(image_id=image_id, version=version)
    if query is None:
        return None
    loaded = similarity_index_load(version=version)
    newer = _exact_scan(query, version, loaded[1].max_embedding_id if loaded else 0)
    # One query gains nothing from OpenMP threads and, on a busy machine, loses much to their
    # hand-offs (1.5 ms on one thread against 11-36 ms on two, measured at 5,000 rows). The
    # setting is per calling thread, so the worker's batched searches keep theirs.
    faiss_threads(1)
    ask = k + 11
    while True:
        candidates: dict[int, float] = {}
        exhausted = True
        if loaded is not None and loaded[1].count:
            index, info = loaded
            ask = min(ask, info.count)
            similarities, ids = index.search(query[None, :], ask)
            candidates.update(
                (int(i), float(s)) for i, s in zip(ids[0], similarities[0], strict=True) if i >= 0
            )
            exhausted = ask >= info.count
        candidates.update(newer)
        candidates.pop(image_id, None)
        ranked = sorted(candidates.items(), key=lambda item: (-item[1], item[0]))
        found = images.filter(pk__in=[i for i, _ in ranked[: k + ask]], status=ImageStatus.ACTIVE)
        by_id = {image.pk: image for image in found}
        result = [SimilarImage(by_id[i], round(s, 4)) for i, s in ranked if i in by_id][:k]
        if len(result) >= k or exhausted:
            return result
        ask *= 4


@dataclass(frozen=True)
class SimilarPanel:
    """What the image page shows under "More like this"."""

    results: list[SimilarImage]
    ood_score: float | None
    model_version: int | None
    missing: str = ""  # why there are no results, when there are none


def similar_panel(*, image_id: int, k: int = 20) -> SimilarPanel:
    try:
        version = embedding_version()
    except EmbeddingError as exc:
        return SimilarPanel([], None, None, missing=str(exc))
    if version is None:
        return SimilarPanel(
            [], None, None, missing="No model has an embedding output; install the backbone."
        )
    found = similar_images(image_id=image_id, k=k, version=version)
    if found is None:
        return SimilarPanel(
            [],
            None,
            version.number,
            missing="This image has no embedding yet: the worker computes it after import.",
        )
    ood = (
        ImageEmbedding.objects.filter(model_version=version, image_id=image_id)
        .values_list("ood_score", flat=True)
        .first()
    )
    return SimilarPanel(found, ood, version.number)


def with_ood_scores(rows: QuerySet[Any], *, image_field: str = "image_id") -> QuerySet[Any]:
    """``rows`` (pointing at images through ``image_field``) annotated with ``ood_score``,
    each read through the (model_version, image) key."""
    from django.db.models import Subquery

    try:
        version = embedding_version()
    except EmbeddingError:
        version = None
    score = ImageEmbedding.objects.filter(
        model_version=version, image_id=OuterRef(image_field)
    ).values("ood_score")[:1]
    return rows.annotate(ood_score=Subquery(score))


def ood_threshold() -> float:
    """Scores at or above this count as unlike the library (``LOUPE_OOD_THRESHOLD``)."""
    return float(settings.LOUPE_OOD_THRESHOLD)


def ood_score_of(*, image_id: int) -> float | None:
    """The stored OOD score of one image by the embedding model (None: not scored yet)."""
    try:
        version = embedding_version()
    except EmbeddingError:
        return None
    return (
        ImageEmbedding.objects.filter(model_version=version, image_id=image_id)
        .values_list("ood_score", flat=True)
        .first()
    )


def ood_param(text: str | None) -> float | None:
    """An ``ood_min`` query parameter as a bound (None: absent or not a number); clamped to
    the score's range."""
    try:
        value = float(text or "")
    except ValueError:
        return None
    return min(max(value, 0.0), OOD_MAX) if value == value else None  # NaN is no bound


def ood_choices() -> list[tuple[str, str]]:
    """The OOD filter's presets for the list pages, the dashboard threshold among them."""
    threshold = ood_threshold()
    values = sorted({0.3, 0.4, 0.5, 0.6, 0.7, round(threshold, 2)})
    return [
        (f"{v:g}", f"≥ {v:g}" + (" (threshold)" if v == round(threshold, 2) else ""))
        for v in values
    ]


# --- Production dashboard -------------------------------------------------------------------

OOD_PANEL_SAMPLE = 5_000  # logs of the range the panel reads, spread evenly over it
OOD_BINS = 10  # histogram bins over 0..1 (scores above 1 go to the last)


@dataclass(frozen=True)
class OodDay:
    day: str  # ISO date
    scored: int
    above: int

    @property
    def share(self) -> float | None:
        return self.above / self.scored if self.scored else None


@dataclass(frozen=True)
class OodPanel:
    """How unlike the library the production images of a range are, from stored scores."""

    threshold: float
    logs: int  # logs read
    capped: bool  # a sample of the range's logs (OOD_PANEL_SAMPLE), not all of them
    scored: int
    above: int
    days: list[OodDay]
    histogram: list[tuple[str, int]]  # (bin label, logs)

    @property
    def share(self) -> float | None:
        return self.above / self.scored if self.scored else None


def ood_dashboard(
    *, start: Any, end: Any, threshold: float | None = None, sample: int = OOD_PANEL_SAMPLE
) -> OodPanel:
    """Share of logged production images at or above the OOD threshold per day, and the
    histogram of their scores, over the logs received in [start, end): all of them, or
    ``sample`` of them spread evenly over the range.

    Work is bounded by ``sample``, not by the logs in the range: the first and last log ids of
    the range (two index probes on received_at; ids grow with it), ``sample`` evenly spaced ids
    between them, and the stored scores of their images on the (model_version, image) key.
    No k-NN per request. Images not embedded yet count as logs but not as scored.
    """
    from datetime import timedelta

    from django.utils import timezone

    from inference.models import PredictionLog

    threshold = ood_threshold() if threshold is None else threshold
    logs = PredictionLog.objects.filter(received_at__gte=start, received_at__lt=end)
    first = logs.order_by("received_at", "pk").values_list("pk", flat=True).first()
    last = logs.order_by("-received_at", "-pk").values_list("pk", flat=True).first()
    rows: list[tuple[Any, int]] = []
    capped = False
    if first is not None and last is not None:
        low, high = min(first, last), max(first, last)
        if high - low + 1 > sample:
            capped = True
            ids = np.unique(np.linspace(low, high, sample).round().astype(np.int64)).tolist()
            logs = logs.filter(pk__in=ids)
        else:
            logs = logs.filter(pk__gte=low, pk__lte=high)
        rows = list(logs.values_list("received_at", "image_id"))
    scores: dict[int, float | None] = {}
    try:
        version = embedding_version()
    except EmbeddingError:
        version = None
    if version is not None and rows:
        scores = dict(
            ImageEmbedding.objects.filter(
                model_version=version, image_id__in={image_id for _, image_id in rows}
            ).values_list("image_id", "ood_score")
        )
    per_day: dict[str, list[int]] = {}
    bins = [0] * OOD_BINS
    for received, image_id in rows:
        day = timezone.localtime(received).date().isoformat()
        tally = per_day.setdefault(day, [0, 0])
        ood = scores.get(image_id)
        if ood is None:
            continue
        tally[0] += 1
        tally[1] += ood >= threshold
        bins[min(int(ood * OOD_BINS), OOD_BINS - 1)] += 1
    first_day = timezone.localtime(start).date()
    last_day = timezone.localtime(end - timedelta(microseconds=1)).date()
    days = []
    current = first_day
    while current <= last_day:
        scored, above = per_day.get(current.isoformat(), [0, 0])
        days.append(OodDay(current.isoformat(), scored, above))
        current += timedelta(days=1)
    width = 1 / OOD_BINS
    labels = [f"{i * width:.1f}–{(i + 1) * width:.1f}" for i in range(OOD_BINS)]
    labels[-1] = f"≥ {1 - width:.1f}"
    return OodPanel(
        threshold=threshold,
        logs=len(rows),
        capped=capped,
        scored=sum(day.scored for day in days),
        above=sum(day.above for day in days),
        days=days,
        histogram=list(zip(labels, bins, strict=True)),
    )
